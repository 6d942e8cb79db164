"""benchmarks/coattention_sim (issue 14): the interaction and additive regimes are one design that
differs only in how the survival log-hazard uses the slide and RNA factors."""
from __future__ import annotations

from pathlib import Path

import pytest
from _scripts import load_bench_script

from modaltune.config import load_config, load_yaml
from modaltune.data.simulate import SignalSpec
from modaltune.training.experiment_config import BenchmarkConfig

HERE = Path(__file__).resolve().parents[2] / "benchmarks" / "coattention_sim"


def _slide_rna_variance(signal: dict) -> float:
    # Var(b_s z + b_o z' + b_so z'' z''') for independent standard normals: b_s^2 + b_o^2 + b_so^2
    s = SignalSpec.from_any(signal)
    return s.surv_slide**2 + s.surv_omics**2 + s.surv_interaction**2


def test_both_regimes_load_and_differ_only_in_the_survival_signal():
    cfgs = {r: load_config(HERE / f"{r}.yaml", BenchmarkConfig) for r in ("interaction", "additive")}
    a, b = (c.model_dump() for c in cfgs.values())
    sig = {r: c.data.simulate[0].options["signal"] for r, c in cfgs.items()}
    for d in (a, b):
        d["name"] = d["data"]["simulate"][0]["name"] = d["evaluation"]["protocol"] = None
        d["data"]["simulate"][0]["options"].pop("signal")
        d["data"]["pathways"] = None
    assert a == b
    assert sig["additive"]["surv_interaction"] == 0.0
    assert sig["interaction"]["surv_interaction"] > 2 * max(sig["interaction"]["surv_slide"], sig["interaction"]["surv_omics"])
    # same total slide + RNA signal (variance of that part of the log-hazard), to 1 %
    v_int, v_add = _slide_rna_variance(sig["interaction"]), _slide_rna_variance(sig["additive"])
    assert abs(v_int - v_add) / v_int < 0.01


def test_comparator_and_protocol_are_stated():
    for r in ("interaction", "additive"):
        raw = load_yaml(HERE / f"{r}.yaml")
        cfg = load_config(HERE / f"{r}.yaml", BenchmarkConfig)
        labels = [m.label for m in cfg.methods]
        assert cfg.evaluation.compare == "late_fusion (abmil+snn)" and cfg.evaluation.compare in labels
        assert cfg.evaluation.bootstrap >= 1000 and cfg.seeds == [0, 1, 2] and cfg.split.kfold == 5
        assert "SIMULATED" in cfg.evaluation.protocol and "SIMULATED" in raw["features"]


def test_cmta_configs_are_the_committed_design_with_cmta_alone():
    # the CMTA follow-up runs must see the same cohort, folds, trainer and evaluation as the committed runs
    for r in ("interaction", "additive"):
        base, cm = (load_config(HERE / f"{name}.yaml", BenchmarkConfig).model_dump() for name in (r, f"{r}_cmta"))
        assert [m["name"] for m in cm["methods"]] == ["cmta"]
        assert cm["methods"][0]["params"]["signatures"] == base["methods"][0]["params"]["signatures"]  # mcat's file
        assert cm["evaluation"]["compare"] is None and base["evaluation"]["compare"] == "late_fusion (abmil+snn)"
        for d in (base, cm):
            d["name"] = d["methods"] = d["evaluation"]["compare"] = None
        assert base == cm


def _seeds_table():
    return load_bench_script("coattention_sim/seeds_table.py")


def test_seeds_table_fold_and_seed_statistics_and_pairing(tmp_path):
    import numpy as np
    import pandas as pd

    st = _seeds_table()
    ref = st.REFERENCE
    # results: 2 folds x 2 seeds; method "m": fold 0 seeds (0.6, 0.8), fold 1 seeds (0.5, 0.5)
    # -> per fold 0.7, 0.5: mean 0.6, std 0.1; per seed (0.55, 0.65): seed std 0.05
    res = pd.DataFrame([{"method": m, "cohort": "c", "task": "survival", "metric": "c_index", "fold": f, "seed": s, "value": v}
                        for m, vals in (("m", {(0, 0): 0.6, (0, 1): 0.8, (1, 0): 0.5, (1, 1): 0.5}), (ref, {(0, 0): 0.5, (0, 1): 0.5, (1, 0): 0.5, (1, 1): 0.5}))
                        for (f, s), v in vals.items()])
    rng = np.random.default_rng(0)
    n = 40
    time, event = rng.uniform(1, 10, n), (rng.uniform(size=n) < 0.7).astype(int)
    risk = -time + rng.normal(0, 1, n)
    preds = pd.concat([pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "time": time, "event": event, "risk": risk,
                                     "task": "survival", "partition": "test", "labelled": True, "method": m, "seed": s, "fold": np.arange(n) % 2})
                       for m in ("m", ref) for s in (0, 1)], ignore_index=True)
    (tmp_path / "r").mkdir()
    res.to_csv(tmp_path / "r" / "results.csv", index=False)
    preds.to_parquet(tmp_path / "r" / "predictions.parquet", index=False)
    rows = {r["method"]: r for r in st.regime_rows("r", 200, tmp_path)}
    m = rows["m"]
    assert m["c_fold_mean"] == pytest.approx(0.6) and m["c_fold_std_ddof0"] == pytest.approx(0.1) and m["c_seed_std_ddof0"] == pytest.approx(0.05)
    # identical risks to the reference: every paired difference is exactly 0, on both seeds
    assert [d["delta"] for d in m["per_seed"]] == [0.0, 0.0] and m["seeds_ci_above_0"] == m["seeds_ci_below_0"] == 0
    harrell = st.c_index(preds[(preds.method == "m") & (preds.seed == 0)])
    assert m["per_seed"][0]["pooled_c"] == pytest.approx(harrell) and harrell > 0.7   # risk = -time + noise
    assert "delta" not in rows[ref]["per_seed"][0] and "(reference)" in st.markdown("r", list(rows.values()))


def test_analyse_needs_one_predictions_file_per_run(tmp_path):
    mod = load_bench_script("coattention_sim/analyse.py")
    with pytest.raises(SystemExit):
        mod.main([str(tmp_path / "a"), str(tmp_path / "b"), "--predictions", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "o.json")])
