"""The missing-modality protocol in a benchmark run (evaluation.missing): units per setting, the
same masks for every method and seed, tables per setting and the degradation table."""
from __future__ import annotations

import json

import pandas as pd

from modaltune.benchmark.runner import plan_units, run_benchmark
from modaltune.training.experiment_config import BenchmarkConfig

TRAINER = {"max_epochs": 1, "accumulate_grad_batches": 4, "max_patches": 16, "logger": "none"}


def _cfg(cohort_dir, **kw) -> BenchmarkConfig:
    base = {
        "name": "tiny_missing",
        "data": {"cohorts": [str(cohort_dir)]},
        "split": {"kfold": 2, "seed": 0},
        "methods": [{"name": "mean_pool", "params": {"hidden": 8}}, {"name": "logistic", "modalities": ["rna", "clinical"]}],
        "tasks": ["subtype"],
        "seeds": [0, 1],
        "trainer": TRAINER,
        "evaluation": {"bootstrap": 0, "missing": ["W0_O0", {"slide": 0.5, "omics": 0.5}]},
    }
    base.update(kw)
    return BenchmarkConfig.model_validate(base)


def test_plan_refuses_with_reason_and_setting_is_part_of_the_unit_id(tiny_cohort_dir):
    cfg = _cfg(tiny_cohort_dir, evaluation={"bootstrap": 0, "missing": ["W0_O0", "W100_O0"]})
    units = plan_units(cfg, [tiny_cohort_dir])
    # mean_pool reads slides only: refused in W100_O0; logistic reads no slide: runs in both
    assert sorted({(u.method, u.setting) for u in units}) == [("logistic", "W0_O0"), ("logistic", "W100_O0"), ("mean_pool", "W0_O0")]
    assert all(u.uid.endswith(f"__{u.setting}") for u in units)


def test_two_settings_two_methods_write_every_table(tiny_cohort_dir, tmp_path):
    cfg = _cfg(tiny_cohort_dir)
    out = tmp_path / "run"
    res = run_benchmark(cfg, out, progress=False)
    assert not res.failed, res.statuses
    assert len(res.statuses) == 2 * 2 * 2 * 2  # methods x settings x folds x seeds

    # the same patients are masked for every method and seed of a setting and fold
    masks: dict[tuple[str, int], set[str]] = {}
    for d in (out / "units").iterdir():
        rec = json.loads((d / "unit.json").read_text())
        key = (rec["missing"]["setting"], rec["unit"]["fold"])
        masks.setdefault(key, set()).add(rec["missing"]["mask_sha"])
        assert rec["config"]["missing"]["slide"] == rec["missing"]["slide_rate"]
    assert all(len(v) == 1 for v in masks.values()) and len(masks) == 4
    assert masks[("W50_O50", 0)] != masks[("W50_O50", 1)] != masks[("W0_O0", 1)]
    counts = pd.read_csv(out / "missing_counts.csv")
    half = counts[counts["setting"] == "W50_O50"]
    # 30 patients, 2 folds: each partition of 15 loses floor(7.5 + 0.5) = 8 slides and 8 omics: 1 patient loses both
    assert half["patients"].tolist() == [15, 15, 15, 15]
    assert half["slide_dropped"].tolist() == [8] * 4 and half["omics_dropped"].tolist() == [8] * 4
    assert (half["neither_slide_nor_omics"] >= 1).all()
    assert (counts.loc[counts["setting"] == "W0_O0", ["slide_dropped", "omics_dropped"]] == 0).all().all()

    # patients are never dropped from the tables: every patient predicted once per method, setting and seed
    preds = pd.read_parquet(out / "predictions.parquet")
    n = preds.groupby(["method", "seed"])["patient_id"].nunique()
    assert (n == 30).all() and len(n) == 2 * 2 * 2
    assert set(preds["method"]) == {"mean_pool @ W0_O0", "mean_pool @ W50_O50", "logistic @ W0_O0", "logistic @ W50_O50"}

    per = pd.read_csv(out / "missing_settings.csv")
    assert set(per["setting"]) == {"W0_O0", "W50_O50"} and set(per["method"]) == {"mean_pool", "logistic"}
    assert (per["n"] == 4).all()  # 2 folds x 2 seeds
    deg = pd.read_csv(out / "missing_degradation.csv")
    row = deg[(deg["method"] == "logistic") & (deg["metric"] == "balanced_accuracy")].iloc[0]
    assert abs(row["worst minus W0_O0"] - (min(row["W0_O0"], row["W50_O50"]) - row["W0_O0"])) < 1e-12
    text = (out / "summary.md").read_text()
    for heading in ("### W0_O0 (slide 0%, omics 0% missing)", "### W50_O50 (slide 50%, omics 50% missing)", "### Degradation", "### Masked patients"):
        assert heading in text
