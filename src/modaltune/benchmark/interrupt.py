"""Stopping a run cleanly: SIGINT/SIGTERM become :class:`RunInterrupted`, and worker processes
(with their own children: data-loader workers, ``modaltune fit`` subprocesses) are killed.

Without this, ``kill -TERM`` ended the benchmark's main process and left its pool workers
training (about 9.5 GB each), and ``kill -INT`` waited for the running units to finish.
Exit statuses follow the shell convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM).
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator

__all__ = ["RunInterrupted", "stop_signals", "ignore_sigint", "descendants", "kill_tree"]


class RunInterrupted(BaseException):
    """Raised in the main thread when SIGINT or SIGTERM arrives (a BaseException, like
    KeyboardInterrupt, so per-unit ``except Exception`` handlers do not swallow it)."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(f"stopped by {signal.Signals(self.signum).name}")


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`RunInterrupted` inside the block (main thread only;
    elsewhere, e.g. in a notebook's worker thread, the handlers stay as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise RunInterrupted(signum)

    old = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def ignore_sigint() -> None:
    """Pool-worker initialiser: a Ctrl-C reaches the whole process group; only the main process
    acts on it (and then terminates the workers), so a worker never dies half-way through its own
    KeyboardInterrupt handling."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def descendants(pid: int) -> list[int]:
    """Pids of every process below ``pid`` (children, grandchildren, ...), from ``/proc``; [] elsewhere."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for e in entries:
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        # the command name (field 2) may contain spaces and parentheses: ppid is after the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(e))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie counts as gone: it holds no memory and waits only to be reaped
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return True


def kill_tree(pids: Iterable[int], grace: float = 5.0) -> None:
    """SIGTERM ``pids`` and all their descendants, then SIGKILL whatever is still alive after ``grace`` s."""
    pids = [int(p) for p in pids]
    everyone = []
    for p in pids:  # descendants first: once a parent dies they are re-parented and lost to the scan
        everyone += descendants(p)
    everyone += pids
    for p in everyone:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in everyone):
        time.sleep(0.05)
    for p in everyone:
        if _alive(p):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
