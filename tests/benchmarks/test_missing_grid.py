"""benchmarks/missing_grid: the analysis gives known answers on hand-made predictions (a copy of the
reference scores 0 in every comparison; a reversed ranking scores 1 - 2C), and the driver runs a
tabular method on a tiny simulated cohort with the library's masks (dropped counts as the protocol
says, identical across seeds, no patient lost from the predictions)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _scripts import load_bench_script

from modaltune.evaluation.metrics import harrell_c


def _load(name: str):
    return load_bench_script(f"missing_grid/{name}.py")


def _fake_run(root: Path) -> dict:
    """Two settings x two folds of three methods: ``ref``, ``same`` (a copy of ref), ``rev`` (-ref risk)."""
    rng = np.random.default_rng(0)
    (root / "preds").mkdir(parents=True)
    rows, cs = [], {}
    for s in ("W0_O0", "W60_O0"):
        for fold in (0, 1):
            ids = [f"P{fold}_{i:02d}" for i in range(30)]
            time_, event = rng.uniform(1, 100, 30), rng.integers(0, 2, 30).astype(float)
            event[:3] = 1.0
            risk = rng.normal(size=30)  # continuous: no ties, so reversing the ranking gives 1 - C exactly
            for m, r in (("ref", risk), ("same", risk), ("rev", -risk)):
                p = pd.DataFrame({"patient_id": ids, "task": "survival", "time": time_, "event": event, "risk": r,
                                  "setting": s, "fold": fold, "seed": 0, "method": m})
                p.to_parquet(root / "preds" / f"{s}__f{fold}__s0__{m}.parquet")
                c = harrell_c(time_, event, r)
                cs[(m, s, fold)] = c
                rows.append({"setting": s, "fold": fold, "seed": 0, "method": m, "status": "done", "c_index": c, "n_eval": 30, "n_events": int(event.sum()),
                             "fit_s": 1.0, "peak_rss_mib": 1.0, "reason": ""})
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    return cs


def test_analysis_known_answers(tmp_path):
    cs = _fake_run(tmp_path / "run")
    _load("analyze").main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--title", "t", "--reference", "ref", "--n", "200"])
    deg = pd.read_csv(tmp_path / "out" / "degradation.csv", index_col=0)
    for m in ("ref", "rev"):
        base = np.mean([cs[(m, "W0_O0", f)] for f in (0, 1)])
        miss = np.mean([cs[(m, "W60_O0", f)] for f in (0, 1)])
        assert deg.loc[m, "W0_O0"] == pytest.approx(base, abs=1e-12)
        assert deg.loc[m, "mean of missing settings - W0_O0"] == pytest.approx(miss - base, abs=1e-12)
    paired = pd.read_csv(tmp_path / "out" / "paired.csv")
    same = paired[paired["method"] == "same"]
    assert len(same) == 3  # two settings, plus one degradation difference (W60_O0)
    assert (same[["delta", "lo", "hi"]].abs().to_numpy() < 1e-12).all()  # a copy of the reference differs by 0 in every resample
    rev = paired[(paired["method"] == "rev") & (paired["comparison"] == "C(m) - C(ref)")].set_index("setting")
    for s in ("W0_O0", "W60_O0"):
        pooled = pd.concat([pd.read_parquet(tmp_path / "run" / "preds" / f"{s}__f{f}__s0__ref.parquet") for f in (0, 1)])
        c = harrell_c(pooled["time"], pooled["event"], pooled["risk"])
        assert rev.loc[s, "delta"] == pytest.approx((1 - c) - c, abs=1e-9)
        assert rev.loc[s, "n_patients"] == 60
    assert "## Paired bootstrap of the degradation difference" in (tmp_path / "out" / "summary.md").read_text()


@pytest.fixture(scope="module")
def tiny_cohort_dir(tmp_path_factory) -> Path:
    """A 30-patient simulated cohort with slide + rna + survival, 3 folds (as tests/training)."""
    from modaltune.data.simulate import simulate_cohort

    out = tmp_path_factory.mktemp("cohorts") / "tiny"
    simulate_cohort(out, preset="tiny", seed=0, n_patients=30, patches=(16, 48), slides_per_patient=(1, 1), n_folds=3)
    return out


def test_driver_masks_and_keeps_every_patient(tiny_cohort_dir, tmp_path):
    from modaltune.data.splits import SplitSet

    cfg = {"task": "survival", "split_seed": 0, "settings": ["W0_O0", "W40_O20"], "seeds": [0, 1],
           "trainer": {"max_epochs": 1, "batch_size": 4},
           "methods": [{"label": "ef", "name": "embedding_fusion", "modalities": ["slide", "rna"], "params": {"fusion": "late"}}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    args = ["--config", str(tmp_path / "c.yaml"), "--cohort", str(tiny_cohort_dir), "--out", str(out), "--split", "kfold3.csv", "--folds", "0"]
    assert _load("run_grid").main(args) == 0
    res = pd.read_csv(out / "results.csv")
    assert (res["status"] == "done").all() and len(res) == 4  # 2 settings x 2 seeds
    fold = SplitSet.load(tiny_cohort_dir / "splits" / "kfold3.csv").folds[0]
    masks = pd.read_csv(out / "masks.csv").set_index(["setting", "partition"])
    for part in ("train", "test"):
        n = len(getattr(fold, part))
        assert masks.loc[("W40_O20", part), "slide_dropped"] == int(np.floor(0.4 * n + 0.5))
        assert masks.loc[("W40_O20", part), "omics_dropped"] == int(np.floor(0.2 * n + 0.5))
        assert masks.loc[("W0_O0", part), "slide_dropped"] == 0
    ids = sorted(fold.test) or sorted(fold.val)
    for s in ("W0_O0", "W40_O20"):
        p = pd.read_parquet(out / "preds" / f"{s}__f0__s0__ef.parquet")
        assert sorted(p["patient_id"]) == ids  # masked patients are predicted, not dropped
    # a rerun skips finished units (resumable)
    assert _load("run_grid").main(args) == 0
    assert len(pd.read_csv(out / "results.csv")) == 4


def test_spec_data_names_the_cohorts_pathways():
    rg = _load("run_grid")
    assert rg.spec_data({"name": "late_fusion"}, "/c") is None
    got = rg.spec_data({"data": {"pathways": {"rna": "{cohort}/pathways.csv"}, "omics_scaling": "none"}}, "/x/sim")
    assert got == {"pathways": {"rna": "/x/sim/pathways.csv"}, "omics_scaling": "none"}


def test_driver_passes_pathways_to_survpath(tiny_cohort_dir, tmp_path):
    """survpath needs pathway gene lists: without a spec ``data.pathways`` the unit is recorded as failed
    with the method's one-line reason; with the cohort's own pathways.csv it trains and predicts every
    held-out patient (also under a mask that drops slides and omics)."""
    from modaltune.data.splits import SplitSet

    sp = {"name": "survpath", "modalities": ["slide", "rna"], "params": {"wsi_projection_dim": 8}}
    cfg = {"task": "survival", "split_seed": 0, "settings": ["W0_O0", "W40_O20"], "seeds": [0],
           "trainer": {"max_epochs": 1, "batch_size": 4, "max_patches": 8},
           "methods": [{**sp, "label": "sp-none"}, {**sp, "label": "sp-pw", "data": {"pathways": {"rna": "{cohort}/pathways.csv"}}}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    args = ["--config", str(tmp_path / "c.yaml"), "--cohort", str(tiny_cohort_dir), "--out", str(out), "--split", "kfold3.csv", "--folds", "0"]
    assert _load("run_grid").main(args) == 0
    res = pd.read_csv(out / "results.csv").set_index(["setting", "method"])
    ids = sorted(SplitSet.load(tiny_cohort_dir / "splits" / "kfold3.csv").folds[0].test) or sorted(SplitSet.load(tiny_cohort_dir / "splits" / "kfold3.csv").folds[0].val)
    for s in ("W0_O0", "W40_O20"):
        assert res.loc[(s, "sp-none"), "status"] == "failed"
        assert "survpath needs pathway gene lists for omics block 'rna'" in res.loc[(s, "sp-none"), "reason"]
        assert res.loc[(s, "sp-pw"), "status"] == "done"
        p = pd.read_parquet(out / "preds" / f"{s}__f0__s0__sp-pw.parquet")
        assert sorted(p["patient_id"]) == ids and np.isfinite(p["risk"]).all()
