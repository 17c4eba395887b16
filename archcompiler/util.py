"""Small helpers shared by the CLI and the backends: outputs written atomically.

An output is written to a temporary file beside it (`.archc-<12 hex>.tmp<suffix>`),
locked with flock(2) for as long as it exists, and renamed into place only when it is
complete; several outputs that belong together (a generated .py and its .safetensors)
are renamed together, both or neither. On any failure, Ctrl-C included, the temporary
files are removed and existing outputs are left untouched. A temporary file left by a
killed build (SIGKILL, power loss) holds no lock any more: the next build into the same
folder removes it; a live build's file is locked and never removed.

An output path that is a symlink is replaced by the new file, as `mv` does: the file the
link pointed to is left untouched.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import signal
import stat
import threading
import time
from contextlib import contextmanager
from typing import Optional, Sequence

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks, stale files are kept
    fcntl = None

TEMP_PREFIX = ".archc-"
# this version's temporary files, and the unlocked ones of earlier versions (mkstemp names)
_TEMP_NAME = re.compile(r"\.archc-[0-9a-f]{12}\.(tmp|bak)[A-Za-z0-9.]*\Z")
_OLD_TEMP_NAME = re.compile(r"\.archc-[a-z0-9_]{8}\.(onnx|pt2|py|safetensors|tmp|bak)\Z")
_OLD_TEMP_AGE_S = 3600
# (temporary file, output) pairs being written now: what the progress line shows
WRITING: list = []


class OutputError(OSError):
    """An output cannot be written: a missing or unwritable directory, a path that is a
    directory or a device, a full disk. The message names the path."""


def os_reason(exc: BaseException) -> str:
    """The OS's words for an error, lower-cased like the rest of archc's messages
    ("no space left on device", "read-only file system", "permission denied")."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text[:1].lower() + text[1:]


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                 errno.EFBIG, errno.EIO)


def _write_error(exc: BaseException, directories: Sequence[str]) -> Optional[OSError]:
    """The OSError behind a failed write: the exception itself, one in its chain, or,
    for writers that wrap the OS error in their own exception (safetensors, torch,
    protobuf), the OS's own message inside it, or a full file system where the
    temporary files are (torch's zip writer only says "unexpected pos"). None when it
    is not an OS write error."""
    if isinstance(exc, OSError):
        return exc
    seen = set()
    e: Optional[BaseException] = exc.__cause__ or exc.__context__
    while e is not None and id(e) not in seen:  # only an OS error that writing can give
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    text = str(exc).lower()
    for code in _WRITE_ERRNOS:
        if os.strerror(code).lower() in text:
            return OSError(code, os.strerror(code))
    for directory in directories:
        try:
            vfs = os.statvfs(directory)
        except OSError:
            continue
        if vfs.f_bavail * vfs.f_frsize < 64 * 1024:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def _default_mode(path: str) -> int:
    """The mode a plain open() would give a new file (0666 minus the umask), or the mode
    of the regular file being replaced (never of a symlink's target)."""
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            return st.st_mode & 0o777
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def check_output(path: str) -> None:
    """Raise OutputError unless `path` can be (re)placed by a regular file: its directory
    exists and is writable, and `path` is absent, a regular file or a symlink (the link
    itself is replaced); never a directory, a device such as /dev/null, a FIFO or a
    socket: renaming over those would replace them."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {os_reason(exc)}") from None
    if st is not None and not stat.S_ISLNK(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{path}: is a directory (give a file name)")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{path}: not a regular file (a device, FIFO or socket): refused, "
                              "archc replaces its outputs")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        what = "does not exist" if not os.path.lexists(directory) else "is not a directory"
        raise OutputError(f"{path}: cannot write: directory {os.path.dirname(path) or '.'} {what}")
    if not os.access(directory, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(directory).f_flag & getattr(os, "ST_RDONLY", 1))
        except OSError:
            read_only = False
        if read_only:
            raise OutputError(f"{path}: cannot write: read-only file system")
        raise OutputError(f"{path}: cannot write: permission denied in directory "
                          f"{os.path.dirname(path) or '.'}")


def _lock(fd: int, wait: bool = True) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except OSError:
        return False


def _locked_temp(directory: str, kind: str, suffix: str) -> tuple[str, int]:
    """Create `.archc-<hex>.<kind><suffix>` in `directory`, locked (flock) for as long as
    the returned descriptor is open."""
    while True:
        name = os.path.join(directory, f"{TEMP_PREFIX}{secrets.token_hex(6)}.{kind}{suffix}")
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        _lock(fd)
        try:  # a cleanup that ran between the create and the lock removed it: again
            if os.path.samestat(os.fstat(fd), os.lstat(name)):
                return name, fd
        except OSError:
            pass
        os.close(fd)


def remove_stale_temps(directory: str) -> list[str]:
    """Remove the temporary files of killed builds in `directory`: those whose lock can
    be taken (a live build holds its lock). Returns the names removed; never raises."""
    removed = []
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return removed
    for name in names:
        new = _TEMP_NAME.match(name)
        if not new and not _OLD_TEMP_NAME.match(name):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or fcntl is None or not _lock(fd, wait=False):
                continue
            if not new and time.time() - st.st_mtime < _OLD_TEMP_AGE_S:
                continue  # an earlier archc did not lock: only old ones are surely dead
            if os.path.samestat(st, os.lstat(path)):
                os.unlink(path)
                removed.append(name)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


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
        # signal.signal() runs a handler whose signal came in meanwhile: restore them all
        # before letting its exception (KeyboardInterrupt) go on.
        late: Optional[BaseException] = None
        for s, handler in old.items():
            try:
                signal.signal(s, handler)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                late = late or exc
        if late is not None:
            raise late
        for s in dict.fromkeys(pending):
            signal.raise_signal(s)


def _unlink(path: Optional[str]) -> None:
    if path is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass


def _truncate(paths: Sequence[str]) -> None:
    for path in paths:
        try:
            os.truncate(path, 0)
        except OSError:
            pass


def _backup(target: str, fds: list) -> Optional[str]:
    """A hard link to an existing regular file or symlink `target` (to restore it if a
    later rename of the same group fails), locked like a temporary file; None where
    there is nothing to keep or links are not possible."""
    try:
        st = os.lstat(target)
    except OSError:
        return None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        return None
    name = os.path.join(os.path.dirname(target), f"{TEMP_PREFIX}{secrets.token_hex(6)}.bak")
    try:
        os.link(target, name, follow_symlinks=False)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        try:
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            _lock(fd)
            fds.append(fd)
        except OSError:
            pass
    return name


def _commit(pairs: list[tuple[str, str]]) -> None:
    """Rename each temporary file onto its target; if one rename fails, undo the others."""
    for tmp, target in pairs:
        os.chmod(tmp, _default_mode(target))  # temporary files are 0600; outputs are ordinary
    if len(pairs) == 1:
        os.replace(*pairs[0])
        return
    done: list[tuple[str, Optional[str], bool]] = []
    backups: list[Optional[str]] = []
    fds: list[int] = []
    try:
        for tmp, target in pairs:
            existed = os.path.lexists(target)
            backup = _backup(target, fds)
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
        for fd in fds:
            os.close(fd)


@contextmanager
def atomic_outputs(paths: Sequence[str], suffixes: Optional[Sequence[str]] = None):
    """Yield one temporary path beside each of `paths`; when the block succeeds, rename
    them all into place (together: both or neither). On any failure (or Ctrl-C) the
    temporary files are removed and existing outputs are left untouched. A path that is
    a symlink is replaced by the new file (the link's target is not touched). OS errors
    (a missing directory, a full disk, a read-only file system, ...), also when a writer
    wraps them in its own exception, are raised as OutputError naming the output and the
    OS's reason. Stale temporary files of killed builds in the folders are removed."""
    suffixes = list(suffixes) if suffixes is not None else [""] * len(paths)
    targets = [os.path.abspath(p) for p in paths]
    tmps: list[str] = []
    fds: list[int] = []
    label = ", ".join(str(p) for p in paths)
    try:
        for path, target, suffix in zip(paths, targets, suffixes):
            check_output(path)
            directory = os.path.dirname(target)
            remove_stale_temps(directory)
            try:
                tmp, fd = _locked_temp(directory, "tmp", suffix)
            except OSError as exc:
                raise OutputError(f"{path}: cannot write: {os_reason(exc)}") from None
            tmps.append(tmp)
            fds.append(fd)
        WRITING.extend(zip(tmps, paths))
        from .progress import poke

        poke()  # the progress line says "writing ..." from now on
        try:
            yield list(tmps)
        except OutputError:
            raise
        except Exception as exc:
            cause = _write_error(exc, [os.path.dirname(t) for t in targets])
            _truncate(tmps)  # the space back at once (a writer may still hold the file)
            if cause is None:
                raise
            raise OutputError(f"{label}: cannot write: {os_reason(cause)}") from exc
        try:
            with signals_deferred():
                _commit(list(zip(tmps, targets)))
        except OutputError:
            raise
        except OSError as exc:
            raise OutputError(f"{label}: cannot write: {os_reason(exc)}") from exc
        tmps = []  # renamed into place
    finally:
        WRITING.clear()
        with signals_deferred():
            _truncate(tmps)
            for tmp in tmps:
                _unlink(tmp)
            for fd in fds:
                os.close(fd)


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
