"""Benchmark runner: SIGTERM kills every worker and exits 143 (rerun resumes), failed units exit 1
after the tables, a full disk stops the run with one line, the split is copied, trainer config errors."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from modaltune.benchmark.interrupt import _alive, descendants
from modaltune.benchmark.runner import run_benchmark
from modaltune.config import load_config
from modaltune.errors import ConfigError
from modaltune.fileio import DiskError
from modaltune.training.experiment_config import BenchmarkConfig, TrainerConfig

TRAINER = {"max_epochs": 1, "accumulate_grad_batches": 4, "max_patches": 16, "logger": "none"}


def _cfg(cohort_dir, **kw) -> dict:
    base = {"name": "tiny", "data": {"cohorts": [str(cohort_dir)]}, "split": {"kfold": 2, "seed": 0},
            "methods": [{"name": "mean_pool", "params": {"hidden": 8}}], "trainer": TRAINER, "evaluation": {"bootstrap": 0}}
    base.update(kw)
    return base


def _cli(cfg: dict, tmp_path, out, *extra, **kw):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(BenchmarkConfig.model_validate(cfg).model_dump(mode="json")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return [sys.executable, "-m", "modaltune.cli", "benchmark", str(path), "--out", str(out), *extra], env


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("precision", "banana", "32-true"), ("accelerator", "tpu9", "cpu, gpu"), ("devices", -5, "a count >= 1"),
    ("gradient_clip_val", -1, "greater than or equal to 0"),
])
def test_trainer_values_are_one_line_config_errors(key, value, allowed):
    with pytest.raises(ConfigError) as ei:
        load_config(None, TrainerConfig, overrides=[f"{key}={value}"])
    assert f"{key}:" in str(ei.value) and allowed in str(ei.value) and "\n" not in str(ei.value)
    for ok in ("precision=bf16-mixed", "devices=0,1", "devices=auto", "accelerator=GPU", "gradient_clip_val=0.5"):
        load_config(None, TrainerConfig, overrides=[ok])


def test_split_copied_and_failed_units_exit_1_after_tables(tiny_cohort_dir, tmp_path):
    cfg = _cfg(tiny_cohort_dir, methods=[{"name": "logistic", "modalities": ["rna", "clinical"]}], tasks=["survival"])
    cmd, env = _cli(cfg, tmp_path, tmp_path / "run")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "failed units" in proc.stderr
    assert len(pd.read_csv(tmp_path / "run" / "failed_units.csv")) == 2 and (tmp_path / "run" / "summary.md").exists()
    split = pd.read_csv(tmp_path / "run" / "splits" / "sim_tiny_seed0.csv", dtype={"patient_id": str})
    assert sorted(split["fold"].unique()) == [0, 1] and split["patient_id"].nunique() == 30


def test_split_file_is_copied_byte_for_byte(cohort_copy, tmp_path):
    src = next((cohort_copy / "splits").glob("*.csv"))
    run_benchmark(BenchmarkConfig.model_validate(_cfg(cohort_copy, split={"file": src.stem}, tasks=["subtype"])),
                  tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "splits" / f"{yaml.safe_load((cohort_copy / 'cohort.yaml').read_text())['name']}.csv").read_bytes() == src.read_bytes()


def test_full_disk_stops_the_run_with_one_line_and_no_half_unit(tiny_cohort_dir, tmp_path, monkeypatch):
    from modaltune.benchmark import runner

    def full(path, df):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner, "atomic_write_parquet", full)
    out = tmp_path / "run"
    with pytest.raises(DiskError, match="no space left on device while writing"):
        run_benchmark(BenchmarkConfig.model_validate(_cfg(tiny_cohort_dir, tasks=["subtype"])), out, progress=False)
    units = out / "units"
    assert not list(units.glob("*/DONE")) and not list(units.glob("*/FAILED.json"))
    assert not [p for p in units.iterdir() if p.name.startswith(".")] if units.exists() else True


def test_second_benchmark_into_one_folder_is_refused(tiny_cohort_dir, tmp_path):
    from modaltune.fileio import OutputLock, OutputLocked

    hold = subprocess.Popen([sys.executable, "-c", "import sys,time; from modaltune.fileio import OutputLock; "
                             "OutputLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked, match=f"another modaltune run holds .*pid {hold.pid}"):
            run_benchmark(BenchmarkConfig.model_validate(_cfg(tiny_cohort_dir)), tmp_path / "run", progress=False)
        assert not (tmp_path / "run" / "units").exists()
    finally:
        hold.kill()
        hold.wait()
    with OutputLock(tmp_path / "run"):  # the lock freed itself when its holder was killed
        pass


def test_sigterm_kills_workers_exits_143_and_rerun_resumes(tiny_cohort_dir, tmp_path):
    cfg = _cfg(tiny_cohort_dir, tasks=["subtype"], seeds=[0, 1], trainer={**TRAINER, "max_epochs": 3})
    out = tmp_path / "run"
    cmd, env = _cli(cfg, tmp_path, out, "--workers", "2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline, kids = time.monotonic() + 240, []
    while time.monotonic() < deadline and proc.poll() is None:
        kids = descendants(proc.pid)
        # two pool workers (plus multiprocessing's resource tracker) have started and are working
        if len(kids) >= 3 and (out / "work").exists() and len(list((out / "work").iterdir())) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    kids = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    time.sleep(0.5)
    assert [p for p in kids if _alive(p)] == []
    units = out / "units"
    assert not [p for p in units.iterdir() if p.name.startswith(".")] if units.exists() else True
    done_before = {p.parent.name for p in out.glob("units/*/DONE")}
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"4 units ({len(done_before)} already done, 0 failed)" in again.stdout
