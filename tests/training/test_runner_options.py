"""Benchmark runner options: config hashes on resume, evaluation.times/tau notes, probes, embeddings,
paired comparisons, fold and seed spreads, feature/weights/protocol lines, failed folds, collapse,
Ray resource requests, epoch progress bars and multi-process (DDP) units."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from modaltune.benchmark.runner import run_benchmark
from modaltune.errors import ConfigError
from modaltune.training.experiment_config import BenchmarkConfig

TRAINER = {"max_epochs": 1, "accumulate_grad_batches": 4, "max_patches": 16, "logger": "none"}


def _cfg(cohort_dir, **kw) -> BenchmarkConfig:
    base = {
        "name": "opts",
        "data": {"cohorts": [str(cohort_dir)]},
        "split": {"kfold": 2, "seed": 0},
        "methods": [{"name": "mean_pool", "params": {"hidden": 8}}],
        "trainer": TRAINER,
        "evaluation": {"bootstrap": 20},
    }
    base.update(kw)
    return BenchmarkConfig.model_validate(base)


def _summary(out: Path) -> str:
    return (out / "summary.md").read_text()


def _header(md: str) -> str:
    return next(ln for ln in md.splitlines() if ln.startswith("**Protocol:**"))


# ------------------------------------------------------------------------------ the rich benchmark
@pytest.fixture(scope="module")
def rich_run(tiny_cohort_dir, tmp_path_factory):
    """mean_pool on survival and subtype + logistic on subtype; 2 folds x 2 seeds; every option on."""
    out = tmp_path_factory.mktemp("rich") / "run"
    cfg = _cfg(
        tiny_cohort_dir,
        seeds=[0, 1],
        tasks=["survival", "subtype"],
        methods=[{"name": "mean_pool", "params": {"hidden": 8}}, {"name": "logistic", "modalities": ["rna", "clinical"], "tasks": ["subtype"]}],
        evaluation={"bootstrap": 10, "times": [0.5, 10.0, 30.0, 1000.0], "tau": 500.0, "compare": [["mean_pool", "logistic"]],
                    "probes": True, "save_embeddings": True, "ddof": 1},
    )
    res = run_benchmark(cfg, out, progress=False)
    assert not res.failed, res.statuses
    return cfg, out


def test_seed_and_fold_spreads_are_both_in_the_tables(rich_run):
    from modaltune.evaluation import summarize_folds, summarize_seeds

    _, out = rich_run
    md = _summary(out)
    assert "mean ± std over folds (seeds averaged per fold), then 'seeds ± std' over seeds" in _header(md) and "ddof=1" in _header(md)
    r = pd.read_csv(out / "results.csv")
    g = r[(r.method == "mean_pool") & (r.task == "survival") & (r.metric == "c_index")]
    f = summarize_folds(g.groupby("fold")["value"].mean().to_numpy(), ddof=1)
    s = summarize_seeds({k: v.sort_values("fold")["value"].tolist() for k, v in g.groupby("seed")}, ddof=1)["seeds"]
    row = next(ln for ln in md.split("## survival · c_index")[1].splitlines() if ln.startswith("| mean_pool |"))
    assert row == f"| mean_pool | {f.mean:.3f} ± {f.std:.3f} · seeds ± {s.std:.3f} |"


def test_time_points_outside_follow_up_and_tau_clipping_are_recorded(rich_run):
    _, out = rich_run
    md = _summary(out)
    for fold in (0, 1):
        line = next(ln for ln in md.splitlines() if ln.startswith(f"- evaluation.times on sim_tiny_seed0 / survival / fold {fold}:"))
        assert "dropped 0.5 (before the first event time" in line and "1000 (at or after" in line and "used 10, 30" in line
        assert f"- evaluation.tau on sim_tiny_seed0 / survival / fold {fold}: tau=500 clipped to the largest training time" in md
    info = json.loads((out / "units" / "mean_pool__sim_tiny_seed0__survival__fold0__seed0" / "unit.json").read_text())
    notes = info["tasks"]["survival"]["notes"]
    assert notes["time_grid"] == [10.0, 30.0] and [d["time"] for d in notes["time_grid_dropped"]] == [0.5, 1000.0]


def test_probe_metrics_and_embeddings_are_saved(rich_run):
    _, out = rich_run
    r = pd.read_csv(out / "results.csv")
    mp = set(r.loc[r.method == "mean_pool", "metric"])
    assert {"probe_c_index", "probe_balanced_accuracy", "probe_macro_auc"} <= mp
    assert not any(m.startswith("probe_") for m in r.loc[r.method == "logistic", "metric"])
    info = json.loads((out / "units" / "logistic__sim_tiny_seed0__subtype__fold0__seed0" / "unit.json").read_text())
    assert info["probes"].startswith("not probed")
    assert "## subtype · probe_balanced_accuracy" in _summary(out)
    uid = "mean_pool__sim_tiny_seed0__subtype__fold0__seed0"
    emb = pd.read_parquet(out / "units" / uid / "embeddings.parquet")
    preds = pd.read_parquet(out / "units" / uid / "predictions.parquet")
    assert sorted(emb["patient_id"]) == sorted(preds["patient_id"].unique())
    assert [c for c in emb.columns if c.startswith("emb_")] == [f"emb_{j}" for j in range(8)]
    assert set(emb["partition"]) == {"test"} and np.isfinite(emb.filter(like="emb_").to_numpy()).all()


def test_paired_comparison_table_matches_a_direct_computation(rich_run, tiny_cohort_dir):
    from modaltune.evaluation import balanced_accuracy, paired_bootstrap

    _, out = rich_run
    md = _summary(out)
    assert "## Paired comparisons (95% CI, paired bootstrap over patients)" in md
    preds = pd.read_parquet(out / "predictions.parquet")
    sel = preds[(preds.task == "subtype") & (preds.seed == 0)]
    a, b = sel[sel.method == "mean_pool"], sel[sel.method == "logistic"]

    def ba(d):
        return balanced_accuracy(d["label"].to_numpy(int), d[["prob_A", "prob_B"]].to_numpy())

    r = paired_bootstrap(a, b, ba, n=10, seed=0)
    row = next(ln for ln in md.splitlines() if ln.startswith("| mean_pool | logistic | sim_tiny_seed0 | subtype | 0 | balanced_accuracy |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[6:] == [f"{ba(a):.3f}", f"{ba(b):.3f}", f"{r.delta:+.3f}", f"[{r.ci[0]:.3f}, {r.ci[1]:.3f}]", f"{r.p_value:.3g}"]


def test_header_states_simulated_features_and_only_the_endpoints_run(rich_run):
    _, out = rich_run
    h = _header(_summary(out))
    assert "**Features:** SIMULATED slide features (slide: 'simulated' bags" in h
    assert "deep methods: 1 epoch, last epoch reported, no early stopping; tabular methods: fitted once (no epochs)" in h
    assert "survival: overall survival (months)" in h and "subtype: 2-class (A, B)" in h


def test_tabular_only_protocol_and_endpoint_of_the_run_tasks(cohort_copy, tmp_path):
    cfg = _cfg(cohort_copy, methods=[{"name": "logistic", "modalities": ["rna", "clinical"]}], tasks=["subtype"], split={"kfold": 2, "folds": [0]})
    run_benchmark(cfg, tmp_path / "run", progress=False)
    h = _header(_summary(tmp_path / "run"))
    assert "tabular methods fitted once (no epochs)" in h and "epoch" not in h.replace("no epochs", "")
    assert "**Endpoint:** subtype: 2-class (A, B) ·" in h and "overall survival" not in h


# ------------------------------------------------------------------------------ resume and hashes
def test_changed_config_is_never_silently_reused(cohort_copy, tmp_path):
    out = tmp_path / "run"
    base = dict(methods=[{"name": "logistic", "modalities": ["rna", "clinical"]}], tasks=["subtype"], split={"kfold": 2, "folds": [0]})
    res = run_benchmark(_cfg(cohort_copy, **base), out, progress=False)
    uid = next(iter(res.statuses))
    info = json.loads((out / "units" / uid / "unit.json").read_text())
    h0 = info["config_hash"]
    assert info["config"]["method"] == {"name": "logistic", "modalities": ["rna", "clinical"]}
    # same config: skipped; display-only trainer settings and table-level settings do not matter
    same = _cfg(cohort_copy, **base, trainer={**TRAINER, "progress_bar": False}, evaluation={"bootstrap": 5, "protocol": "x"})
    assert run_benchmark(same, out, progress=False).statuses[uid] == "skipped"
    # a changed method parameter: one-line error naming the key, nothing recomputed
    changed = _cfg(cohort_copy, **{**base, "methods": [{"name": "logistic", "modalities": ["rna", "clinical"], "params": {"C": 0.1}}]})
    with pytest.raises(ConfigError, match=r"1 finished unit\(s\).*different config.*method\.params\.C: \"<default>\" -> 0\.1.*--force") as ei:
        run_benchmark(changed, out, progress=False)
    assert "\n" not in str(ei.value)
    assert json.loads((out / "units" / uid / "unit.json").read_text())["config_hash"] == h0
    # changed trainer / bins / split patients are caught too
    for kw in ({"trainer": {**TRAINER, "lr": 1e-3}}, {"data": {"cohorts": [str(cohort_copy)], "bin_mode": "paper"}}, {"split": {"kfold": 2, "seed": 1, "folds": [0]}}):
        with pytest.raises(ConfigError, match="different config") as ei:
            run_benchmark(_cfg(cohort_copy, **{**base, **kw}), out, progress=False)
        assert ("fold_patients" in str(ei.value)) == ("split" in kw)
    # running more folds is not a change: fold 0 is reused, fold 1 computed
    more = run_benchmark(_cfg(cohort_copy, **{**base, "split": {"kfold": 2, "folds": [0, 1]}}), out, progress=False)
    assert more.statuses[uid] == "skipped" and sorted(more.statuses.values()) == ["done", "skipped"]
    # changed data: the cohort's tables are hashed
    pt = pd.read_csv(cohort_copy / "patients.csv")
    pt.loc[0, "subtype"] = "B" if pt.loc[0, "subtype"] == "A" else "A"
    pt.to_csv(cohort_copy / "patients.csv", index=False)
    from modaltune.training import sources

    sources._CACHE.clear()
    with pytest.raises(ConfigError, match=r"cohort_data\.patients\.csv"):
        run_benchmark(_cfg(cohort_copy, **base), out, progress=False)
    # --force recomputes the changed unit
    res = run_benchmark(changed, out, progress=False, force=True)
    assert res.statuses[uid] == "done"
    assert json.loads((out / "units" / uid / "unit.json").read_text())["config_hash"] != h0
    # a unit from before config hashes: reused, and the summary says so
    p = out / "units" / uid / "unit.json"
    d = json.loads(p.read_text())
    del d["config_hash"]
    p.write_text(json.dumps(d))
    assert run_benchmark(changed, out, progress=False).statuses[uid] == "skipped"
    assert "reused unverified" in _summary(out)


def test_cox_with_batch_size_one_fails_before_any_unit(cohort_copy, tmp_path):
    cfg = _cfg(cohort_copy, methods=[{"name": "mean_pool", "params": {"survival_head": "cox"}}], tasks=["survival"])
    with pytest.raises(ConfigError, match=r"method 'mean_pool' uses survival_head: cox but trainer\.batch_size=1"):
        run_benchmark(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "units").exists()


# ------------------------------------------------------------------------------ faults and flags
def test_fold_without_events_fails_with_reason(cohort_copy, tmp_path):
    pt = pd.read_csv(cohort_copy / "patients.csv", dtype={"patient_id": str})
    censored = pt.loc[pt.event == 0, "patient_id"].tolist()
    f0_test = censored[:6]
    f1_test = [p for p in pt.patient_id if p not in f0_test][:10]
    rows = [(0, "train", p) for p in pt.patient_id if p not in f0_test] + [(0, "test", p) for p in f0_test]
    rows += [(1, "train", p) for p in pt.patient_id if p not in f1_test] + [(1, "test", p) for p in f1_test]
    pd.DataFrame(rows, columns=["fold", "partition", "patient_id"]).to_csv(cohort_copy / "splits" / "noev.csv", index=False)
    res = run_benchmark(_cfg(cohort_copy, split={"file": "noev"}, tasks=["survival"]), tmp_path / "run", progress=False)
    assert res.failed == ["mean_pool__sim_tiny_seed0__survival__fold0__seed0"]
    reason = pd.read_csv(tmp_path / "run" / "failed_units.csv")["reason"].iloc[0]
    assert "no events (6 labelled, all censored)" in reason
    assert set(pd.read_csv(tmp_path / "run" / "results.csv")["fold"]) == {1}
    assert "## Failed units" in _summary(tmp_path / "run")


class _Zero(nn.Module):
    """An encoder that ignores its inputs: every patient gets the same embedding."""

    out_dim = 4

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        return torch.zeros(len(batch["patient_id"]), self.out_dim) + 0.0 * self.unused


@pytest.fixture
def constant_method():
    """Registers the test-only ``constant_test`` method for one test and removes it afterwards (the
    method registry is global: a leftover entry would leak into tests that list every method)."""
    from modaltune.methods._torch_common import wrap
    from modaltune.methods.registry import METHODS, register_method

    @register_method("constant_test", kind="torch", modalities=("slide",), description="test: constant predictions")
    def _build(info, **params):
        return wrap(info, _Zero(), params, "constant_test")

    yield "constant_test"
    del METHODS["constant_test"]


def test_collapse_flag_appears_in_the_summary(tiny_cohort_dir, tmp_path, constant_method):
    cfg = _cfg(tiny_cohort_dir, methods=[{"name": "constant_test"}], tasks=["survival"], split={"kfold": 2, "folds": [0]})
    run_benchmark(cfg, tmp_path / "run", progress=False)
    md = _summary(tmp_path / "run")
    assert "- COLLAPSE constant_test / sim_tiny_seed0 / survival / fold 0 / seed 0:" in md
    c = pd.read_csv(tmp_path / "run" / "results.csv")
    assert c.loc[c.metric == "c_index", "value"].iloc[0] == pytest.approx(0.5)


def test_weights_source_is_recorded(tiny_cohort_dir, tmp_path):
    cfg = _cfg(tiny_cohort_dir, methods=[{"name": "slide_fm", "params": {"backbone": "small_transformer", "tune": True}}], tasks=["subtype"],
               split={"kfold": 2, "folds": [0]})
    res = run_benchmark(cfg, tmp_path / "run", progress=False)
    uid = next(iter(res.statuses))
    assert json.loads((tmp_path / "run" / "units" / uid / "unit.json").read_text())["weights_source"] == "random_init"
    assert "- slide backbone weights of slide_fm: random_init (untrained backbone" in _summary(tmp_path / "run")


def test_simulated_noise_bags_are_named_whatever_the_manifest_says(cohort_copy):
    import shutil

    import yaml

    from modaltune.benchmark.summary_parts import slide_feature_source
    from modaltune.data.bags import write_bag_h5
    from modaltune.data.cohort import Cohort
    from modaltune.modaltune.realsim import attach_simulated_bags

    man = yaml.safe_load((cohort_copy / "cohort.yaml").read_text())
    for m in man["modalities"]:
        if m["kind"] == "slide":
            m["encoder"] = "Prov-GigaPath"
    (cohort_copy / "cohort.yaml").write_text(yaml.safe_dump(man))
    shutil.rmtree(cohort_copy / "slides")
    attach_simulated_bags(cohort_copy, feature_dim=16, patches=(4, 8))
    c = Cohort.load(cohort_copy)
    text, sim = slide_feature_source(c, c.manifest.modalities[0] if c.manifest.modalities[0].kind == "slide" else next(m for m in c.modalities if m.kind == "slide"))
    assert sim and text.startswith("SIMULATED slide features (slide: 'SIMULATED-noise' bags, i.i.d. noise, no label signal")
    assert "the manifest names Prov-GigaPath" in text
    # real-looking bags (another encoder name) are reported by their encoder
    for p in c.slides["path"]:
        write_bag_h5(c.resolve_path(p), np.zeros((3, 16), np.float16), np.zeros((3, 2), np.int64), patch_size_level0=256, encoder="uni")
    text, sim = slide_feature_source(c, next(m for m in c.modalities if m.kind == "slide"))
    assert not sim and text == "slide (Prov-GigaPath)"


def test_ray_tasks_request_the_trainer_gpus(tiny_cohort_dir, tmp_path, monkeypatch):
    """The options given to Ray, checked with a stand-in ray module (no GPU, no cluster needed)."""
    import modaltune.errors as errors
    from modaltune.benchmark import runner

    seen: list[dict] = []

    class _Ref:
        def __init__(self, value):
            self.value = value

    class _Remote:
        def __init__(self, fn):
            self.fn = fn

        def options(self, **kw):
            seen.append(kw)
            return self

        def remote(self, *args):
            return _Ref(self.fn(*args))

    class _FakeRay:
        @staticmethod
        def is_initialized():
            return True

        @staticmethod
        def remote(fn):
            return _Remote(fn)

        @staticmethod
        def wait(refs, num_returns=1):
            return refs[:num_returns], refs[num_returns:]

        @staticmethod
        def get(ref):
            return ref.value

    real_require = errors.require
    monkeypatch.setattr(runner, "require", lambda m, *a, **k: _FakeRay if m == "ray" else real_require(m, *a, **k))
    calls = []
    monkeypatch.setattr(runner, "_unit_entry", lambda unit, cfg, out, threads: (calls.append(threads), {"uid": "x", "status": "failed", "reason": "stub"})[1])
    cfg = _cfg(tiny_cohort_dir, tasks=["subtype"], split={"kfold": 2, "folds": [0]},
               trainer={**TRAINER, "accelerator": "gpu", "devices": 2, "strategy": "ddp", "num_workers": 1})
    units = runner.plan_units(cfg, [tiny_cohort_dir])
    runner._execute(units, cfg, tmp_path, workers=1, ray_address="auto", progress=False)
    assert seen == [{"num_cpus": 2, "num_gpus": 2}] and calls == [2]


def test_epoch_progress_bars_only_when_asked(tiny_cohort_dir, tmp_path, capfd):
    cfg = _cfg(tiny_cohort_dir, tasks=["subtype"], split={"kfold": 2, "folds": [0]}, evaluation={"bootstrap": 0})
    run_benchmark(cfg, tmp_path / "quiet", progress=False)
    cap = capfd.readouterr()
    assert "Epoch 0" not in cap.out + cap.err
    run_benchmark(cfg, tmp_path / "bars", progress=False, epoch_progress=True)
    cap = capfd.readouterr()
    assert "Epoch 0" in cap.out + cap.err  # Lightning's bar (rich or tqdm)


@pytest.mark.slow
def test_ddp_units_train_in_a_fit_subprocess(tiny_cohort_dir, tmp_path, monkeypatch):
    """strategy=ddp, devices=2 on CPU (gloo): the unit trains through `modaltune fit` with 2 ranks."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MASTER_PORT", str(30500 + os.getpid() % 1000))
    cfg = _cfg(tiny_cohort_dir, tasks=["subtype"], split={"kfold": 2, "folds": [0]},
               trainer={**TRAINER, "max_epochs": 2, "accumulate_grad_batches": 2, "strategy": "ddp", "devices": 2, "logger": "csv"})
    res = run_benchmark(cfg, tmp_path / "run", progress=False)
    uid = "mean_pool__sim_tiny_seed0__subtype__fold0__seed0"
    assert res.statuses == {uid: "done"}
    udir = tmp_path / "run" / "units" / uid
    assert json.loads((udir / "unit.json").read_text())["processes"] == 2
    assert "Starting with 2 processes" in (udir / "fit.log").read_text()
    # 15 training patients over 2 ranks (padded to 8 each), accumulate 2 -> 4 optimiser steps per epoch
    log = pd.read_csv(udir / "train_log.csv")
    assert log["epoch"].tolist() == [0, 1] and log["step"].tolist() == [3, 7]
    preds = pd.read_parquet(udir / "predictions.parquet")
    assert preds["patient_id"].nunique() == 15 and np.isfinite(preds["prob_A"]).all()


def test_split_fallback_and_test_only_class_reach_the_summary(cohort_copy, tmp_path):
    # two 'B' patients for 3 folds: the classes cannot fill two strata, so the split is unstratified
    # and says so on the protocol line
    p = pd.read_csv(cohort_copy / "patients.csv")
    p["subtype"] = ["B" if i < 2 else "A" for i in range(len(p))]
    p.to_csv(cohort_copy / "patients.csv", index=False)
    cfg = _cfg(cohort_copy, methods=[{"name": "logistic", "modalities": ["rna", "clinical"]}], tasks=["subtype"], split={"kfold": 3, "seed": 0})
    run_benchmark(cfg, tmp_path / "run", progress=False)
    md = _summary(tmp_path / "run")
    assert "; split made: sim_tiny_seed0: patient-level 3-fold CV, UNSTRATIFIED (FALLBACK for task 'subtype': the classes ['A', 'B'] cannot fill 3 folds in two strata), seed 0" in _header(md)
    # a user split whose fold 0 evaluates both 'B' patients and trains on 'A' only: noted
    ids = p["patient_id"].tolist()
    rows = [(0, "test" if i < 2 or i >= 20 else "train", pid) for i, pid in enumerate(ids)]
    pd.DataFrame(rows, columns=["fold", "partition", "patient_id"]).to_csv(tmp_path / "split.csv", index=False)
    cfg = _cfg(cohort_copy, methods=[{"name": "logistic", "modalities": ["rna", "clinical"]}], tasks=["subtype"], split={"file": str(tmp_path / "split.csv")})
    run_benchmark(cfg, tmp_path / "run2", progress=False)
    assert "sim_tiny_seed0 / subtype / fold 0: class(es) ['B'] occur only in the evaluated 'test' patients (2 patient(s))" in _summary(tmp_path / "run2")
