"""Atomic TRIDENT h5 writing and the 'finished bag' check used by resume."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from modaltune.preprocess.h5writer import BagWriter, bag_is_complete

ATTRS = {"patch_size": 256, "patch_size_level0": 512, "level0_magnification": 40, "target_magnification": 20,
         "overlap": 0, "name": "s1", "level0_width": 1000, "level0_height": 900}


def _writer(path, **kw):
    return BagWriter(path, embedding_dim=4, coords_attrs=ATTRS, encoder="enc", mpp=0.25, **kw)


@pytest.mark.parametrize("n_rows", [None, 5])
def test_written_bag_has_trident_layout(tmp_path, n_rows):
    path = tmp_path / "s1.h5"
    feats = np.arange(20, dtype=np.float32).reshape(5, 4)
    coords = np.arange(10, dtype=np.int64).reshape(5, 2)
    with _writer(path, n_rows=n_rows) as w:
        w.append(feats[:3], coords[:3])
        assert not path.exists() and w.tmp.exists()  # nothing at the final name until commit
        w.append(feats[3:], coords[3:])
        w.commit()
    assert not w.tmp.exists()
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["features"][:], feats)
        np.testing.assert_array_equal(f["coords"][:], coords)
        assert f["coords"].dtype == np.int64
        assert {k: f["coords"].attrs[k] for k in ATTRS} == ATTRS
        assert f["coords"].attrs["savetodir"] == str(tmp_path)
        assert f["features"].attrs["encoder"] == "enc" and f["features"].attrs["name"] == "s1"
        assert f.attrs["status"] == "complete" and f.attrs["mpp"] == 0.25 and f.attrs["num_patches"] == 5
        assert "modaltune_version" in f.attrs
    assert bag_is_complete(path) and bag_is_complete(path, "enc") and not bag_is_complete(path, "other")


def test_exception_leaves_no_file(tmp_path):
    path = tmp_path / "s1.h5"
    with pytest.raises(RuntimeError), _writer(path, n_rows=4) as w:
        w.append(np.zeros((2, 4), np.float32), np.zeros((2, 2), np.int64))
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_partial_bag_cannot_be_marked_complete(tmp_path):
    with _writer(tmp_path / "s.h5", n_rows=4) as w:
        w.append(np.zeros((2, 4), np.float32), np.zeros((2, 2), np.int64))
        with pytest.raises(ValueError, match="only 2 of 4 rows"):
            w.commit()
    assert list(tmp_path.iterdir()) == []


def test_unfinished_or_corrupt_files_are_not_complete(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 50)  # truncated
    assert not bag_is_complete(junk)
    assert not bag_is_complete(tmp_path / "absent.h5")
    inc = tmp_path / "inc.h5"
    with h5py.File(inc, "w") as f:
        f.create_dataset("features", data=np.zeros((3, 4), np.float32))
        f.create_dataset("coords", data=np.zeros((2, 2), np.int64))
        f.attrs["status"] = "complete"
    assert not bag_is_complete(inc)  # row counts disagree
    with h5py.File(inc, "a") as f:
        del f["coords"]
        f.create_dataset("coords", data=np.zeros((3, 2), np.int64))
        f.attrs["status"] = "incomplete"
    assert not bag_is_complete(inc)


def _h5py_write_error(*args, **kwargs):
    # what h5py raises when write(2) fails: an OSError without errno, the code only in its text
    raise OSError("Can't write data (file write failed: time = Mon Jan  1 00:00:00 2024, filename = 's1.h5.tmp', "
                  "file descriptor = 5, errno = 28, error message = 'No space left on device', buf = 0x1, total write size = 4096)")


@pytest.mark.parametrize("step", ["flush", "close", "replace"])
def test_failure_inside_commit_leaves_no_file(tmp_path, monkeypatch, step):
    import os

    from modaltune.preprocess import h5writer
    from modaltune.preprocess.h5writer import BagWriteError

    path = tmp_path / "s1.h5"
    if step == "flush":
        monkeypatch.setattr(h5py.File, "flush", _h5py_write_error)
    elif step == "close":
        real_close = h5py.File.close

        def failing_close(self):
            real_close(self)  # the handle goes, but the data did not reach the disk
            raise OSError("Can't close file")  # no errno, no code in the text

        monkeypatch.setattr(h5py.File, "close", failing_close)
    else:
        real_replace = os.replace

        def failing_replace(src, dst, *a, **k):
            if str(src).endswith(".tmp"):  # process-unique temporary name
                raise OSError(28, "No space left on device")
            return real_replace(src, dst, *a, **k)

        monkeypatch.setattr(h5writer.os, "replace", failing_replace)
    with pytest.raises(BagWriteError) as e, _writer(path, n_rows=2) as w:
        w.append(np.ones((2, 4), np.float32), np.zeros((2, 2), np.int64))
        w.commit()
    monkeypatch.undo()
    err = e.value
    assert isinstance(err, OSError) and err.step == {"flush": "flushing", "close": "closing", "replace": "renaming"}[step]
    assert err.errno == (None if step == "close" else 28)
    assert list(tmp_path.iterdir()) == []  # neither a truncated s1.h5 nor the .tmp


def test_failed_rewrite_keeps_the_previous_bag(tmp_path, monkeypatch):
    from modaltune.preprocess.h5writer import BagWriteError

    path = tmp_path / "s1.h5"
    with _writer(path, n_rows=1) as w:
        w.append(np.full((1, 4), 7, np.float32), np.zeros((1, 2), np.int64))
        w.commit()
    monkeypatch.setattr(h5py.File, "flush", _h5py_write_error)
    with pytest.raises(BagWriteError), _writer(path, n_rows=1) as w:
        w.append(np.zeros((1, 4), np.float32), np.zeros((1, 2), np.int64))
        w.commit()
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1.h5"] and bag_is_complete(path)
    with h5py.File(path) as f:
        assert f["features"][0, 0] == 7  # the finished bag is untouched


def test_os_error_code_finds_the_errno_where_h5py_hides_it():
    import errno

    from modaltune.preprocess.h5writer import os_error_code

    try:
        _h5py_write_error()
    except OSError as exc:
        assert exc.errno is None and os_error_code(exc) == errno.ENOSPC
    assert os_error_code(OSError(errno.EACCES, "Permission denied")) == errno.EACCES
    assert os_error_code(OSError("Disk quota exceeded")) == errno.EDQUOT
    assert os_error_code(OSError("something odd")) is None
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = OSError(errno.EIO, "Input/output error")
    assert os_error_code(wrapped) == errno.EIO
