"""Benchmark runner: tables, resume after a kill, failed units, bad input, CLI, Ray, DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from modaltune.benchmark import runner
from modaltune.benchmark.runner import run_benchmark
from modaltune.data.splits import SplitSet
from modaltune.errors import InputError
from modaltune.training.experiment_config import BenchmarkConfig

TRAINER = {"max_epochs": 1, "accumulate_grad_batches": 4, "max_patches": 16, "logger": "none"}


def _cfg(cohort_dir, **kw) -> BenchmarkConfig:
    base = {
        "name": "tiny",
        "data": {"cohorts": [str(cohort_dir)]},
        "split": {"kfold": 2, "seed": 0},
        "methods": [{"name": "mean_pool", "params": {"hidden": 8}}],
        "trainer": TRAINER,
        "evaluation": {"bootstrap": 20, "protocol": "test protocol"},
    }
    base.update(kw)
    return BenchmarkConfig.model_validate(base)


def test_end_to_end_tables_and_resume_after_kill(tiny_cohort_dir, tmp_path, monkeypatch):
    cfg = _cfg(tiny_cohort_dir, methods=[{"name": "mean_pool", "params": {"hidden": 8}}, {"name": "logistic", "modalities": ["rna", "clinical"]}], tasks=["subtype", "survival"])
    out = tmp_path / "run"
    real = runner.run_unit
    calls: list[str] = []

    def killed_after_two(unit, *a, **k):
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill")
        calls.append(unit.uid)
        return real(unit, *a, **k)

    monkeypatch.setattr(runner, "run_unit", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(cfg, out, progress=False)
    done_before = sorted(p.parent.name for p in (out / "units").glob("*/DONE"))
    assert len(done_before) == 2 and not (out / "results.csv").exists()
    mtimes = {u: (out / "units" / u / "metrics.csv").stat().st_mtime_ns for u in done_before}

    calls.clear()
    monkeypatch.setattr(runner, "run_unit", lambda unit, *a, **k: (calls.append(unit.uid), real(unit, *a, **k))[1])
    res = run_benchmark(cfg, out, progress=False)
    # 2 methods x (subtype, survival) task sets x 2 folds x 1 seed = 8 units; the 2 finished ones are not recomputed.
    # logistic regression cannot fit a survival task: those 2 units fail with the reason, the others finish
    assert len(res.statuses) == 8 and sorted(res.failed) == [f"logistic__sim_tiny_seed0__survival__fold{k}__seed0" for k in (0, 1)]
    failed = pd.read_csv(out / "failed_units.csv")
    assert failed["reason"].str.contains("classification tasks").all()
    assert len(calls) == 6 and not set(calls) & set(done_before)
    assert all((out / "units" / u / "metrics.csv").stat().st_mtime_ns == t for u, t in mtimes.items())
    assert not (out / "work").exists() or not any((out / "work").iterdir())

    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == ["method", "cohort", "task", "metric", "fold", "seed", "value"]
    assert set(results["method"]) == {"mean_pool", "logistic"} and set(results["fold"]) == {0, 1}
    assert {"c_index", "balanced_accuracy", "macro_auc"} <= set(results["metric"])
    assert results.loc[results.metric == "c_index", "value"].between(0, 1).all()
    # per-patient out-of-fold predictions: every patient once per method x task (folds partition the cohort)
    preds = pd.read_parquet(out / "predictions.parquet")
    n = len(pd.read_csv(tiny_cohort_dir / "patients.csv"))
    counts = preds.groupby(["method", "task"])["patient_id"].nunique()
    assert (counts == n).all() and len(counts) == 3 and len(preds) == 3 * n
    summary = (out / "summary.md").read_text()
    for text in ("test protocol", "ddof=0", "**Folds:** 2", "**Seeds:** 1", "Bootstrap 95% CIs", "overall survival", "subtype · balanced_accuracy"):
        assert text in summary, text
    for f in ("config.yaml", "versions.json", "git.json", "data_hashes.json", "run.log", "exclusions.csv"):
        assert (out / f).exists(), f
    hashes = json.loads((out / "data_hashes.json").read_text())
    assert len(next(iter(hashes.values()))["patients.csv"]) == 64
    # the rerun with everything done recomputes nothing and rewrites identical tables
    calls.clear()
    res2 = run_benchmark(cfg, out, progress=False)
    assert sorted(calls) == sorted(res.failed)  # only the failed units are retried
    assert sum(v == "skipped" for v in res2.statuses.values()) == 6
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), results)


def test_one_class_fold_fails_with_reason_and_others_finish(cohort_copy, tmp_path):
    pt = pd.read_csv(cohort_copy / "patients.csv", dtype={"patient_id": str})
    a = pt.loc[pt.subtype == "A", "patient_id"].tolist()
    b = pt.loc[pt.subtype == "B", "patient_id"].tolist()
    # fold 0 evaluates only class-A patients; fold 1 is a normal mixed fold
    f0_test = a[:5]
    f1_test = a[5:9] + b[:4]
    rows = [(0, "train", p) for p in pt.patient_id if p not in f0_test] + [(0, "test", p) for p in f0_test]
    rows += [(1, "train", p) for p in pt.patient_id if p not in f1_test] + [(1, "test", p) for p in f1_test]
    pd.DataFrame(rows, columns=["fold", "partition", "patient_id"]).to_csv(cohort_copy / "splits" / "bad.csv", index=False)
    cfg = _cfg(cohort_copy, split={"file": "bad"}, tasks=["subtype"])
    res = run_benchmark(cfg, tmp_path / "run", progress=False)
    assert len(res.failed) == 1 and "fold0" in res.failed[0]
    failed = pd.read_csv(tmp_path / "run" / "failed_units.csv")
    assert "only class(es) ['A']" in failed["reason"].iloc[0]
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    assert set(results["fold"]) == {1} and results["value"].notna().all()
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "## Failed units" in summary and "only class(es)" in summary
    # a failed unit is retried on the next run (and fails again for the same reason)
    res2 = run_benchmark(cfg, tmp_path / "run", progress=False)
    assert res2.statuses[res.failed[0]] == "failed"


def test_method_on_a_modality_the_cohort_lacks_is_refused_and_the_others_are_aggregated(tiny_cohort_dir, tmp_path):
    # as ModalTune's [slide, rna] on TCGA-UCEC (no RNA): each unit of a method asking for a modality the cohort
    # lacks (here 'methylation') is refused with the one-line reason, and aggregation (exclusions, feature
    # notes) still writes the other method's tables
    cfg = _cfg(tiny_cohort_dir, tasks=["survival"],
               methods=[{"name": "mean_pool", "params": {"hidden": 8}},
                        {"name": "mean_pool", "params": {"hidden": 8}, "modalities": ["slide", "methylation"], "label": "needs methylation"}])
    res = run_benchmark(cfg, tmp_path / "run", progress=False)
    assert len(res.failed) == 2, res.failed  # kfold 2: both folds of that method
    failed = pd.read_csv(tmp_path / "run" / "failed_units.csv")
    assert len(failed) == 2 and (failed["method"] == "needs methylation").all()
    assert failed["reason"].str.contains("unknown modality 'methylation'").all()
    assert (~failed["reason"].str.contains("\n")).all()
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    assert set(results["method"]) == {"mean_pool"}
    assert set(results["fold"]) == {0, 1} and results["value"].notna().all()
    assert (tmp_path / "run" / "exclusions.csv").exists() and "## Failed units" in (tmp_path / "run" / "summary.md").read_text()


def test_bad_names_raise_one_line_input_errors(cohort_copy, tmp_path):
    with pytest.raises(InputError, match="unknown method 'abmill'"):
        run_benchmark(_cfg(cohort_copy, methods=[{"name": "abmill"}]), tmp_path / "a", progress=False)
    with pytest.raises(InputError, match="unknown metric 'c_indx'"):
        run_benchmark(_cfg(cohort_copy, evaluation={"metrics": ["c_indx"]}), tmp_path / "b", progress=False)
    man = yaml.safe_load((cohort_copy / "cohort.yaml").read_text())
    man["tasks"].append({"name": "grade", "kind": "classification", "label_column": "grade_col", "classes": ["low", "high"]})
    (cohort_copy / "cohort.yaml").write_text(yaml.safe_dump(man))
    with pytest.raises(InputError, match=r"task 'grade' reads column\(s\) \['grade_col'\]") as ei:
        run_benchmark(_cfg(cohort_copy, tasks=["grade"]), tmp_path / "c", progress=False)
    assert "\n" not in str(ei.value)
    # through the CLI: one line on stderr, exit status 2
    cfg_path = tmp_path / "bench.yaml"
    cfg_path.write_text(yaml.safe_dump(_cfg(cohort_copy, methods=[{"name": "abmill"}]).model_dump(mode="json")))
    proc = subprocess.run([sys.executable, "-m", "modaltune.cli", "benchmark", str(cfg_path), "--out", str(tmp_path / "d")], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error:") and "abmill" in err[0]


def test_fit_and_predict_commands(tiny_cohort_dir, tmp_path):
    cfg = {
        "name": "fit1",
        "data": {"cohorts": [str(tiny_cohort_dir)]},
        "split": {"file": "kfold3"},
        "fold": 1,
        "method": {"name": "mean_pool"},
        "trainer": {**TRAINER, "max_epochs": 2},
    }
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    from modaltune.cli import main

    assert main(["fit", str(path), "--out", str(tmp_path / "m"), "--set", "trainer.lr=0.001", "--set", "trainer.progress_bar=false"]) == 0
    saved = yaml.safe_load((tmp_path / "m" / "config.yaml").read_text())
    assert saved["trainer"]["lr"] == 0.001 and (tmp_path / "m" / "model" / "model.safetensors").exists()
    meta = json.loads((tmp_path / "m" / "model" / "fitted.json").read_text())
    fold1 = SplitSet.load(tiny_cohort_dir / "splits" / "kfold3.csv").folds[1]
    assert sorted(meta["train_ids"]) == sorted(fold1.train)
    assert main(["predict", str(tmp_path / "m" / "model"), str(tiny_cohort_dir), "--out", str(tmp_path / "p.parquet"), "--split", "kfold3", "--fold", "1"]) == 0
    p = pd.read_parquet(tmp_path / "p.parquet")
    assert sorted(p["patient_id"].unique()) == sorted(fold1.test)
    assert np.allclose(p.loc[p.task == "subtype", ["prob_A", "prob_B"]].sum(axis=1), 1.0)


@pytest.mark.slow
def test_local_process_pool_and_ray_give_the_same_results(tiny_cohort_dir, tmp_path):
    pytest.importorskip("ray")
    cfg = _cfg(tiny_cohort_dir, tasks=["survival"])
    serial = run_benchmark(cfg, tmp_path / "serial", progress=False).results
    pooled = run_benchmark(cfg, tmp_path / "pool", workers=2, progress=False).results
    viaray = run_benchmark(cfg, tmp_path / "ray", workers=2, ray_address="local", progress=False)
    assert set(viaray.statuses.values()) == {"done"}
    key = ["method", "task", "metric", "fold", "seed"]
    for other in (pooled, viaray.results):
        a = serial.sort_values(key).reset_index(drop=True)
        b = other.sort_values(key).reset_index(drop=True)
        assert np.allclose(a["value"], b["value"], equal_nan=True)


@pytest.mark.slow
def test_two_process_cpu_ddp_fit(tiny_cohort_dir, tmp_path):
    """strategy=ddp with 2 CPU processes (gloo) through the CLI; rank 0 saves the model."""
    cfg = {
        "name": "ddp",
        "data": {"cohorts": [str(tiny_cohort_dir)]},
        "split": {"file": "kfold3"},
        "method": {"name": "mean_pool", "params": {"hidden": 4}},
        "trainer": {**TRAINER, "max_epochs": 2, "accumulate_grad_batches": 2, "strategy": "ddp", "devices": 2, "progress_bar": False, "logger": "csv"},
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(29500 + os.getpid() % 1000)}
    proc = subprocess.run([sys.executable, "-m", "modaltune.cli", "fit", str(path), "--out", str(tmp_path / "m")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "m" / "model" / "model.safetensors").exists() and (tmp_path / "m" / "checkpoints" / "last.ckpt").exists()
    log = pd.read_csv(tmp_path / "m" / "train" / "metrics.csv")
    assert log["epoch"].max() == 1
    # 20 training patients over 2 ranks -> 10 batches per rank per epoch, 5 optimiser steps (accumulate 2)
    assert log["step"].max() == 10 - 1 or log["step"].max() == 10


def test_method_task_restriction_plans_only_matching_units(tiny_cohort_dir):
    from modaltune.benchmark.runner import plan_units

    cfg = _cfg(tiny_cohort_dir, tasks=["subtype", "survival"], methods=[{"name": "mean_pool"}, {"name": "coxnet", "tasks": ["survival"]}])
    units = plan_units(cfg, [tiny_cohort_dir])
    # mean_pool: 2 task sets x 2 folds; coxnet: survival only x 2 folds
    assert sorted((u.method, u.tasks) for u in units) == sorted([("mean_pool", ("subtype",))] * 2 + [("mean_pool", ("survival",))] * 2 + [("coxnet", ("survival",))] * 2)
