"""Small helpers shared by the CLI and the backends: outputs written atomically.

An output is written to a temporary file beside it (`.archc-XXXX<suffix>`) and renamed
into place only when it is complete; several outputs that belong together (a generated
.py and its .safetensors) are renamed together, both or neither. On any failure, Ctrl-C
included, the temporary files are removed and existing outputs are left untouched.
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from typing import Optional, Sequence

TEMP_PREFIX = ".archc-"


class OutputError(OSError):
    """An output cannot be written: a missing or unwritable directory, a path that is a
    directory or a device, a full disk. The message names the path."""


def _default_mode(path: str) -> int:
    """The mode a plain open() would give a new file (0666 minus the umask), or the mode
    of the file being replaced."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def check_output(path: str) -> None:
    """Raise OutputError unless `path` can be (re)placed by a regular file: its directory
    exists and is writable, and `path` is absent or a regular file (never a directory, a
    device such as /dev/null, a FIFO or a socket: renaming over those would replace them)."""
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{path}: is a directory (give a file name)")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{path}: not a regular file (a device, FIFO or socket): refused, "
                              "archc replaces its outputs")
    directory = os.path.dirname(target) or "."
    if not os.path.isdir(directory):
        what = "does not exist" if not os.path.lexists(directory) else "is not a directory"
        raise OutputError(f"{path}: cannot write: directory {os.path.dirname(path) or '.'} {what}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write: permission denied in directory "
                          f"{os.path.dirname(path) or '.'}")


@contextmanager
def signals_deferred(signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)):
    """Hold SIGINT/SIGTERM while the block runs (a few renames); deliver them afterwards.
    Only in the main thread (the only one where Python runs signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = {}

    def hold(signum, frame):
        pending.append(signum)

    try:
        for s in signums:
            if signal.getsignal(s) is None:  # a handler installed outside Python: leave it
                continue
            old[s] = signal.signal(s, hold)
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(pending):
            signal.raise_signal(s)


def _unlink(path: Optional[str]) -> None:
    if path is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass


def _backup(target: str) -> Optional[str]:
    """A hard link to an existing `target` (to restore it if a later rename of the same
    group fails); None where there is nothing to keep or links are not possible."""
    if not os.path.isfile(target):
        return None
    name = os.path.join(os.path.dirname(target), f"{TEMP_PREFIX}{secrets.token_hex(6)}.bak")
    try:
        os.link(target, name)
    except OSError:
        return None
    return name


def _commit(pairs: list[tuple[str, str]]) -> None:
    """Rename each temporary file onto its target; if one rename fails, undo the others."""
    for tmp, target in pairs:
        os.chmod(tmp, _default_mode(target))  # mkstemp makes 0600 files; outputs are ordinary
    if len(pairs) == 1:
        os.replace(*pairs[0])
        return
    done: list[tuple[str, Optional[str], bool]] = []
    backups: list[Optional[str]] = []
    try:
        for tmp, target in pairs:
            existed = os.path.lexists(target)
            backup = _backup(target)
            backups.append(backup)
            os.replace(tmp, target)
            done.append((target, backup, existed))
    except BaseException:
        for target, backup, existed in reversed(done):
            try:
                if backup is not None:
                    os.replace(backup, target)  # the previous version back
                elif not existed:
                    os.unlink(target)
                # (an existing file that could not be linked stays replaced: no way back)
            except OSError:
                pass
        raise
    finally:
        for backup in backups:
            _unlink(backup)


@contextmanager
def atomic_outputs(paths: Sequence[str], suffixes: Optional[Sequence[str]] = None):
    """Yield one temporary path beside each of `paths`; when the block succeeds, rename
    them all into place (together: both or neither). On any failure (or Ctrl-C) the
    temporary files are removed and existing outputs are left untouched. A path that is
    a symlink is written through (its target is replaced). OSErrors (a missing
    directory, a full disk, ...) are raised as OutputError naming the output."""
    suffixes = list(suffixes) if suffixes is not None else [""] * len(paths)
    targets = [os.path.realpath(p) for p in paths]
    tmps: list[str] = []
    label = ", ".join(str(p) for p in paths)
    try:
        for path, target, suffix in zip(paths, targets, suffixes):
            check_output(path)
            try:
                fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix or ".tmp",
                                           dir=os.path.dirname(target) or ".")
            except OSError as exc:
                raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
            os.close(fd)
            tmps.append(tmp)
        try:
            yield list(tmps)
        except OutputError:
            raise
        except OSError as exc:
            raise OutputError(f"{label}: cannot write: {exc.strerror or exc}") from exc
        try:
            with signals_deferred():
                _commit(list(zip(tmps, targets)))
        except OutputError:
            raise
        except OSError as exc:
            raise OutputError(f"{label}: cannot write: {exc.strerror or exc}") from exc
    except BaseException:
        with signals_deferred():
            for tmp in tmps:
                _unlink(tmp)
        raise


@contextmanager
def atomic_output(path: str, suffix: str = ""):
    """Yield a temporary path beside `path`; rename it into place only if the block
    succeeds (see atomic_outputs)."""
    with atomic_outputs([path], [suffix]) as (tmp,):
        yield tmp


def atomic_write_text(path: str, text: str) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
