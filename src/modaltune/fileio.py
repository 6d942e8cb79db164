"""Safe file output: atomic writes, one-line disk errors and a lock per output folder.

Every file modaltune writes goes through here, so three guarantees hold everywhere:

- **atomic**: content is written to ``.<name>.<pid>.<random>.tmp`` in the target's own folder
  (same filesystem, so the rename is atomic), fsynced, then ``os.replace``-d onto the target. A
  crash, a kill or a full disk leaves the previous file (or none), never half a file; the temporary
  file is removed on any failure. The name carries the pid and a random part so two processes
  writing into one folder never delete each other's temporary files.
- **one line**: :func:`disk_errors` turns ENOSPC / EDQUOT / EROFS / EACCES (also when h5py only
  names the errno in its message) into a :class:`DiskError` that the CLI prints as one line.
- **one run per folder**: :class:`OutputLock` holds ``fcntl.flock`` on ``<folder>/.modaltune.lock``;
  a second run gets "another modaltune run holds OUT (pid N, started T)". The kernel drops the lock
  when the holder dies, so a crashed run never blocks the next one.

Only :mod:`modaltune.errors` is imported from the package (this module sits below everything).
"""
from __future__ import annotations

import contextlib
import errno as _errno
import functools
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from modaltune.errors import ModaltuneError

__all__ = [
    "DiskError",
    "OutputLocked",
    "OutputLock",
    "temp_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_dir",
    "atomic_file",
    "staging_dir",
    "publish_dir",
    "remove_stale_staging",
    "removes_staging_on_error",
    "disk_errors",
    "disk_error_from",
    "os_error_code",
    "DISK_ERRNOS",
    "STOP_ERRNOS",
]

# errno -> (what it means, what to do); the user-facing half of :class:`DiskError`
_DISK = {
    _errno.ENOSPC: ("no space left on device", "free space or choose another --out"),
    _errno.EDQUOT: ("disk quota exceeded", "free space in your quota or choose another --out"),
    _errno.EROFS: ("read-only file system", "choose a writable --out folder"),
    _errno.EACCES: ("permission denied", "make the folder writable or choose another --out"),
}
DISK_ERRNOS = frozenset(_DISK)
#: conditions that stop a whole run (every later write would fail the same way); EACCES is left
#: out because it also comes from reading one unreadable input file
STOP_ERRNOS = frozenset({_errno.ENOSPC, _errno.EDQUOT, _errno.EROFS})


class DiskError(ModaltuneError):
    """Writing a file failed for a reason of the disk (full, quota, read-only, permissions).

    ``errno`` is the OS error code. The CLI exits with :data:`EXIT_DISK` for these.
    """

    def __init__(self, code: int, path: str | Path):
        what, fix = _DISK.get(code, (os.strerror(code).lower() if code else "I/O error", "check the output folder"))
        self.errno = code
        self.path = Path(path)
        super().__init__(f"{what} while writing {self.path}", fix=fix)

    def __reduce__(self):  # crosses process boundaries (benchmark workers) intact
        return (DiskError, (self.errno, str(self.path)))


class OutputLocked(ModaltuneError):
    """Another modaltune run holds the output folder."""


# h5py reports a failed write(2) as an OSError without errno, naming it only in the text:
# "Can't write data (file write failed: ..., errno = 28, error message = 'No space left on device', ...)".
_ERRNO_IN_TEXT = re.compile(r"errno\s*=\s*(\d+)")
_STRERROR = {os.strerror(c).lower(): c for c in (_errno.ENOSPC, _errno.EDQUOT, _errno.EIO, _errno.EACCES, _errno.EROFS)}


def os_error_code(exc: BaseException | None) -> int | None:
    """The errno behind ``exc``: its own, one named in its message (h5py), or its cause's; None if unknown."""
    seen = 0
    while exc is not None and seen < 8:
        code = getattr(exc, "errno", None)
        if isinstance(code, int) and code > 0:
            return code
        text = str(exc)
        m = _ERRNO_IN_TEXT.search(text)
        if m:
            return int(m.group(1))
        low = text.lower()
        for msg, c in _STRERROR.items():
            if msg in low:
                return c
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def disk_error_from(exc: BaseException, where: str | Path, codes: frozenset = DISK_ERRNOS) -> DiskError | None:
    """A :class:`DiskError` for ``exc`` when its errno is one of ``codes`` (disk conditions), else None."""
    code = os_error_code(exc)
    if code not in codes:
        return None
    return exc if isinstance(exc, DiskError) else DiskError(code, where)


@contextlib.contextmanager
def disk_errors(where: str | Path) -> Iterator[None]:
    """Re-raise an OSError (or h5py error naming an errno) of a disk condition as a one-line :class:`DiskError`."""
    try:
        yield
    except DiskError:
        raise
    except (OSError, RuntimeError) as exc:
        err = disk_error_from(exc, where)
        if err is None:
            raise
        raise err from exc


def temp_path(path: str | Path, suffix: str = ".tmp") -> Path:
    """Process-unique temporary name next to ``path``: ``.<name>.<pid>.<random><suffix>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # a read-only disk also refuses the unlink; nothing was written there anyway
        pass


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], Any], *, suffix: str = ".tmp", fsync: bool = True) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then rename it onto ``path``.

    ``suffix`` lets writers that pick the format from the extension (PNG, parquet) keep it.
    Disk conditions raise :class:`DiskError`; the temporary file is gone after any failure.
    """
    path = Path(path)
    tmp = temp_path(path, suffix)
    try:
        with disk_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            write(tmp)
            if fsync:
                _fsync(tmp)
            os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2, **kw) -> Path:
    """``json.dumps(obj)`` to ``path`` atomically; serialised before any file is touched."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, **kw))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name and rename it to ``path`` when the block succeeds.

    A previous ``path`` is replaced (removed just before the rename). On any exception the
    temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temp_path(path, ".tmpdir")
    try:
        with disk_errors(path):
            tmp.mkdir(parents=True)
        yield tmp
        with disk_errors(path):
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """``with atomic_file(p) as tmp: write(tmp)``: the context-manager form of :func:`atomic_write`
    for writers that take a path (pandas, h5py). ``p`` is replaced only if the block finishes."""
    path = Path(path)
    tmp = temp_path(path, suffix)
    try:
        with disk_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with disk_errors(path):
            os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


# ------------------------------------------------------------------ staged folders (cohorts)
# A folder built in a process-unique sibling ``.<name>.partial-<pid>-<random>`` and renamed into
# place when complete. Unlike :func:`atomic_dir` (one block), building may span functions
# (``simulate_cohort`` writes bags, then the cohort), and a ``kill -9`` runs no cleanup, so the next
# writer removes staging folders whose process is gone.
_PARTIAL = ".partial-"
#: staging folders this process created and has not published yet (newest last)
_ACTIVE: list[Path] = []


def _staging_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{_PARTIAL}{os.getpid()}-{secrets.token_hex(4)}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_staging(target: str | Path) -> list[Path]:
    """Delete ``.<name>.partial-<pid>-*`` siblings of ``target`` whose process is gone; returns them."""
    target = Path(target)
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    prefix = f".{target.name}{_PARTIAL}"
    for p in target.parent.glob(f"{prefix}*"):
        try:
            pid = int(p.name[len(prefix):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def staging_dir(target: str | Path) -> Path:
    """A new empty process-unique sibling folder of ``target`` to build it in (stale ones removed)."""
    target = Path(target)
    with disk_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(target)
        tmp = _staging_name(target)
        tmp.mkdir()
    _ACTIVE.append(tmp)
    return tmp


def removes_staging_on_error(fn: Callable) -> Callable:
    """Decorator: staging folders that ``fn`` created and did not publish are deleted if it raises."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        n = len(_ACTIVE)
        try:
            return fn(*args, **kwargs)
        except BaseException:
            while len(_ACTIVE) > n:
                shutil.rmtree(_ACTIVE.pop(), ignore_errors=True)
            raise

    return wrapper


def publish_dir(staging: str | Path, target: str | Path) -> Path:
    """Rename the complete ``staging`` folder to ``target``; an existing ``target`` is moved aside
    first and deleted after (a crash in between leaves no ``target``, never a mixed one)."""
    staging, target = Path(staging), Path(target)
    if staging in _ACTIVE:
        _ACTIVE.remove(staging)
    old = None
    with disk_errors(target):
        if target.exists():
            old = _staging_name(target)
            os.replace(target, old)
        os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


LOCK_NAME = ".modaltune.lock"


class OutputLock:
    """Exclusive lock of an output folder for the lifetime of one run.

    >>> with OutputLock(out):      # raises OutputLocked when another run holds ``out``
    ...     run()

    ``fcntl.flock`` on ``<folder>/.modaltune.lock``: the kernel releases it when the holding process
    exits or crashes, so a stale lock file never blocks. The file records pid, host and start time
    for the message of the run that is refused. Re-entrant within one process (nested ``with``
    blocks of the same folder, e.g. ``extract_features`` called from a locked CLI run).
    """

    _held: ClassVar[dict[str, int]] = {}  # resolved folder -> nesting depth in this process

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._key = ""

    def acquire(self) -> OutputLock:
        import fcntl

        with disk_errors(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
        self._key = str(self.folder.resolve())
        if self._held.get(self._key):
            self._held[self._key] += 1
            return self
        with disk_errors(self.path):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (_errno.EWOULDBLOCK, _errno.EAGAIN, _errno.EACCES):
                raise
            raise OutputLocked(f"another modaltune run holds {self.folder} ({self.holder()})",
                               fix="wait for it or choose another --out") from None
        info = f"pid={os.getpid()} host={socket.gethostname()} started={time.strftime('%Y-%m-%dT%H:%M:%S')}\n"
        try:
            os.ftruncate(fd, 0)
            os.write(fd, info.encode())
        except OSError:  # a full disk must not stop the lock itself; the message just lacks details
            pass
        self._fd = fd
        self._held[self._key] = 1
        return self

    def holder(self) -> str:
        """``pid N, started T`` (or ``host H``) of the run holding the lock, as far as the file says."""
        try:
            text = self.path.read_text()
        except OSError:
            return "pid unknown"
        f = dict(kv.split("=", 1) for kv in text.split() if "=" in kv)
        parts = [f"pid {f.get('pid', '?')}"]
        if f.get("host") and f.get("host") != socket.gethostname():
            parts.append(f"host {f['host']}")
        if f.get("started"):
            parts.append(f"started {f['started']}")
        return ", ".join(parts)

    def release(self) -> None:
        import fcntl

        if not self._key or not self._held.get(self._key):
            return
        self._held[self._key] -= 1
        if self._held[self._key]:
            return
        del self._held[self._key]
        if self._fd is not None:
            # the lock file stays: unlinking it would let a third run lock a new inode while a second
            # still waits on the old one
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
