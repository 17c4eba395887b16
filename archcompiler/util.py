"""Small helpers shared by the CLI and the backends."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager


def _default_mode(path: str) -> int:
    """The mode a plain open() would give a new file (0666 minus the umask), or the mode
    of the file being replaced."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


@contextmanager
def atomic_output(path: str, suffix: str = ""):
    """Yield a temporary path beside `path`; rename it into place only if the block
    succeeds. On any failure (or Ctrl-C) the temporary file is removed and an existing
    `path` is left untouched."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".archc-", suffix=suffix or ".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _default_mode(path))  # mkstemp makes 0600 files; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str, text: str) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
