"""Crash-safe writes: a file or a folder appears complete or not at all.

- :func:`atomic_file`: yields a process-unique temporary path next to the target; on success it is
  ``os.replace``-d onto the target (atomic on POSIX within one file system), on error removed.
- :func:`staging_dir` / :func:`publish_dir`: build a folder under a process-unique sibling name
  (``.<name>.partial-<pid>-<random>``) and rename it into place when complete.
  :func:`remove_stale_staging` deletes the staging folders left by processes that no longer run
  (a ``kill -9`` runs no cleanup, so the next writer clears them).

A small local helper (the lead merges atomic-write helpers across the package).
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_file", "atomic_write_text", "staging_dir", "publish_dir", "remove_stale_staging", "removes_staging_on_error"]

_PARTIAL = ".partial-"
#: staging folders this process created and has not published yet (newest last)
_ACTIVE: list[Path] = []


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{_PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """``with atomic_file(p) as tmp: write(tmp)``: ``p`` is replaced by ``tmp`` only if the block
    finishes; a crash leaves either the old ``p`` or none, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_file`."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return path


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
    removed = []
    if not target.parent.is_dir():
        return removed
    for p in target.parent.glob(f".{target.name}{_PARTIAL}*"):
        try:
            pid = int(p.name[len(f".{target.name}{_PARTIAL}") :].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def staging_dir(target: str | Path) -> Path:
    """A new empty process-unique sibling folder of ``target`` to build it in (stale ones removed)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    tmp = _tmp_name(target)
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
    if target.exists():
        old = _tmp_name(target)
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target
