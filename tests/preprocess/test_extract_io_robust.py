"""extract on a full disk (injected and a real 1 MiB tmpfs) and two extract runs into one --out."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import h5py
import pytest

from modaltune.fileio import LOCK_NAME, DiskError, OutputLocked
from modaltune.preprocess.pipeline import RunSummary, extract_features

FAST = dict(batch_size=16, progress=False)


def test_disk_full_stops_the_run_later_slides_not_processed(synth, tmp_path, monkeypatch):
    a = synth("a.tif", 768, 512)
    synth("b.tif", 768, 512, seed=1)
    synth("c.tif", 768, 512, seed=2)

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.File, "flush", full)
    s = extract_features(a.parent, tmp_path / "out", patch_size=128, save_qc=False, **FAST)
    assert [r.status for r in s.slides] == ["failed", "not_processed", "not_processed"]
    assert s.slides[0].errno == errno.ENOSPC and "no partial h5" in s.slides[0].error
    assert "no space left on device" in s.slides[1].error
    assert sorted(os.listdir(tmp_path / "out")) == sorted([LOCK_NAME, "summary.json", "summary.md"])
    assert s.totals()["not_processed"] == 2


def test_summary_write_on_full_disk_is_one_line_and_leaves_no_temp(tmp_path, monkeypatch):
    from modaltune import fileio

    monkeypatch.setattr(fileio.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(DiskError, match=f"no space left on device while writing {tmp_path / 'summary.json'}"):
        RunSummary(str(tmp_path), "e", 4, False, {}).write(tmp_path)
    assert os.listdir(tmp_path) == []


def test_second_extract_into_one_out_is_refused_and_first_completes(synth, tmp_path):
    a = synth("a.tif", 2048, 1536)
    synth("b.tif", 2048, 1536, seed=1)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "modaltune.cli", "extract", "--slides", str(a.parent), "--out", str(out),
           "--patch-size", "64", "--batch-size", "8", "--no-progress", "--no-qc"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        lock = out / LOCK_NAME
        if lock.exists() and f"pid={first.pid}" in lock.read_text():
            break
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()[1][-2000:]
    with pytest.raises(OutputLocked, match=f"another modaltune run holds {out} \\(pid {first.pid}, started"):
        extract_features(a.parent, out, patch_size=64, **FAST)
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert sorted(p.name for p in out.glob("*.h5")) == ["a.h5", "b.h5"] and not list(out.glob("*.tmp"))


def test_extract_onto_a_real_full_disk_exits_nonzero_without_crash(synth, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
    try:
        a = synth("a.tif", 3072, 2048)
        synth("b.tif", 3072, 2048, seed=1)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-m", "modaltune.cli", "extract", "--slides", str(a.parent), "--out", str(mnt),
                               "--patch-size", "32", "--mag", "20", "--min-tissue", "0", "--no-progress", "--no-qc"],
                              capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode in (1, 3), proc.stderr[-2000:]  # 1: slides failed/not processed; 3: summary did not fit
        assert "Traceback" not in proc.stderr and "Segmentation" not in proc.stderr
        left = [n for n in os.listdir(mnt) if n not in (LOCK_NAME, "summary.json", "summary.md")]
        assert left == [] or all(n.endswith(".h5") for n in left)  # finished bags only, never a temporary file
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
