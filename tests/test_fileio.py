"""modaltune.fileio: atomic writes, one-line disk errors (injected and on a real 1 MiB tmpfs), output-folder lock."""
from __future__ import annotations

import errno
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from modaltune import fileio
from modaltune.fileio import DiskError, OutputLock, OutputLocked, atomic_dir, atomic_write_json, atomic_write_text, disk_errors


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_atomic_write_keeps_old_file_and_leaves_no_temp_on_enospc(tmp_path, monkeypatch):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": 1})
    monkeypatch.setattr(fileio.os, "replace", _enospc)
    with pytest.raises(DiskError) as ei:
        atomic_write_json(p, {"x": 2})
    assert str(ei.value) == f"no space left on device while writing {p} (fix: free space or choose another --out)"
    assert ei.value.errno == errno.ENOSPC
    assert p.read_text() == '{\n  "x": 1\n}' and os.listdir(tmp_path) == ["a.json"]


def test_temp_names_are_process_unique(tmp_path):
    a, b = fileio.temp_path(tmp_path / "s.h5"), fileio.temp_path(tmp_path / "s.h5")
    assert a != b and a.name.startswith(f".s.h5.{os.getpid()}.") and a.name.endswith(".tmp")


@pytest.mark.parametrize(("exc", "code", "what"), [
    (OSError(errno.EROFS, "Read-only file system"), errno.EROFS, "read-only file system"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), errno.EDQUOT, "disk quota exceeded"),
    # h5py names the errno only in its text, sometimes as a RuntimeError
    (RuntimeError("Can't flush cache (file write failed: ..., errno = 28, error message = 'No space left on device')"), errno.ENOSPC, "no space left on device"),
])
def test_disk_errors_translate_to_one_line(tmp_path, exc, code, what):
    with pytest.raises(DiskError) as ei, disk_errors(tmp_path / "f"):
        raise exc
    assert ei.value.errno == code and str(ei.value).startswith(f"{what} while writing {tmp_path / 'f'}") and "\n" not in str(ei.value)
    again = pickle.loads(pickle.dumps(ei.value))  # crosses worker-process boundaries
    assert str(again) == str(ei.value) and again.errno == code


def test_other_errors_pass_through(tmp_path):
    with pytest.raises(FileNotFoundError), disk_errors(tmp_path):
        raise FileNotFoundError(errno.ENOENT, "gone")


def test_atomic_dir_is_all_or_nothing(tmp_path):
    d = tmp_path / "unit"
    with pytest.raises(RuntimeError), atomic_dir(d) as t:
        (t / "a").write_text("1")
        raise RuntimeError("half-way")
    assert os.listdir(tmp_path) == []
    with atomic_dir(d) as t:
        (t / "DONE").write_text("")
    assert os.listdir(d) == ["DONE"] and os.listdir(tmp_path) == ["unit"]


_HOLD = "import sys, time; from modaltune.fileio import OutputLock; l = OutputLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"


def test_second_run_gets_lock_error_and_crashed_holder_frees_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked) as ei:
            OutputLock(tmp_path).acquire()
        msg = str(ei.value)
        assert msg.startswith(f"another modaltune run holds {tmp_path} (pid {holder.pid}, started ") and "choose another --out" in msg
    finally:
        holder.kill()  # a crash: no release, the kernel drops the flock
        holder.wait()
    with OutputLock(tmp_path):
        with OutputLock(tmp_path):  # re-entrant in one process
            pass
        assert f"pid={os.getpid()}" in (tmp_path / fileio.LOCK_NAME).read_text()


@pytest.fixture
def tiny_fs(tmp_path):
    """A real 1 MiB tmpfs (we may be root in CI containers); skipped where mounting is not allowed."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); the injected-error tests cover the logic")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_full_disk_every_writer_one_line_no_partial_file(tiny_fs):
    from modaltune.data.bags import write_bag_h5
    from modaltune.preprocess.h5writer import BagWriteError, BagWriter

    big = "x" * (2 << 20)
    with pytest.raises(DiskError, match="no space left on device while writing"):
        atomic_write_text(tiny_fs / "summary.json", big)
    with pytest.raises(DiskError, match="no space left on device"):
        write_bag_h5(tiny_fs / "b.h5", np.ones((2000, 256), np.float32), np.zeros((2000, 2), np.int64), patch_size_level0=256, encoder="e")
    with pytest.raises(BagWriteError) as ei, BagWriter(tiny_fs / "s.h5", embedding_dim=256, coords_attrs={}, encoder="e", mpp=0.5, n_rows=1100) as w:
        for _ in range(22):
            w.append(np.ones((50, 256), np.float32), np.zeros((50, 2), np.int64))
        w.commit()
    assert ei.value.errno == errno.ENOSPC
    assert os.listdir(tiny_fs) == []


_FULL_H5 = """
import numpy as np, sys
from modaltune.preprocess.h5writer import BagWriter, BagWriteError
try:
    with BagWriter(sys.argv[1] + "/s.h5", embedding_dim=256, coords_attrs={}, encoder="e", mpp=0.5, chunk_rows=64) as w:
        for _ in range(20):
            w.append(np.ones((50, 256), np.float32), np.zeros((50, 2), np.int64))
        w.commit()
except BagWriteError as e:
    print("caught", e.step, e.errno)
"""


def test_full_disk_during_h5_flush_does_not_crash_the_process(tiny_fs):
    """Was rc 139 (HDF5 retried the failed close at exit); the failure must show at flush, and the process exit cleanly."""
    r = subprocess.run([sys.executable, "-c", _FULL_H5, str(tiny_fs)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "caught flushing 28" and os.listdir(tiny_fs) == []


def test_read_only_disk_is_one_line(tiny_fs):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    with pytest.raises(DiskError, match=r"read-only file system while writing .*choose a writable --out"):
        atomic_write_text(tiny_fs / "a.txt", "x")
    with pytest.raises(DiskError, match="read-only file system"):
        OutputLock(tiny_fs).acquire()
