"""benchmarks/coattention_sim (issue 14): the interaction and additive regimes are one design that
differs only in how the survival log-hazard uses the slide and RNA factors."""
from __future__ import annotations

from pathlib import Path

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
