"""benchmarks/modaltune_sweep/run_fivefold.py: ablation plans chosen with --plan, and variants that name a
whole method (the clinical-only Cox and the frozen-backbone linear probe of preregistered_5fold_ablations2.yaml).

Checked: the default plan's variants are unchanged cell C overrides; the part-2 plan's method variants come
back as written (label = unit folder); its ModalTune variants are cell C with exactly one param changed; the
command line takes its variant choices from --plan and refuses a missing plan; the linear probe's frozen
backbone is bit-identical to the one ModalTune builds from the same seed (what the plan calls "the same
frozen backbone")."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SWEEP = REPO / "benchmarks" / "modaltune_sweep"
PLAN2 = SWEEP / "preregistered_5fold_ablations2.yaml"


def _diff(a: dict, b: dict, prefix: str = "") -> dict:
    """Flattened keys whose values differ between two nested param dicts."""
    out = {}
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out.update(_diff(x, y, f"{prefix}{k}."))
        elif x != y:
            out[f"{prefix}{k}"] = (x, y)
    return out


def test_default_plan_variants_are_cell_c_overrides(ff):
    plan = ff._plan()
    cell_c = ff.rs._modaltune(ff._cell(plan), "c")["params"]
    m = ff.variant_method(plan, "gates_zero")
    assert m["name"] == "modaltune" and m["label"] == "gates_zero"
    assert _diff(cell_c, m["params"]) == {"gate_init": ("constant", "zero"), "gate_init_value": (0.01, 0.0), "lr_mult.gates": (100.0, 0.0)}


def test_part2_method_variants_come_back_as_written(ff):
    plan = ff._plan()
    cox = ff.variant_method(plan, "clinical_cox", PLAN2)
    assert cox == {"name": "coxnet", "modalities": ["clinical"], "tasks": ["survival"], "params": {}, "label": "clinical_cox"}
    lp = ff.variant_method(plan, "linear_probe", PLAN2)
    assert (lp["name"], lp["modalities"], lp["label"]) == ("slide_fm", ["slide"], "linear_probe")
    assert lp["params"] == {"backbone_params": {"embed_dim": 64, "depth": 3, "num_heads": 4}, "tune": False}
    # ...and match ModalTune's backbone settings in this protocol (sim_comparison's modaltune entry)
    assert lp["params"]["backbone_params"] == ff.rs._modaltune(ff._cell(plan), "c")["params"]["backbone_params"]


@pytest.mark.parametrize(("name", "changed"), [("no_extractor", {"extractors": (None, False)}), ("onehot", {"targets": (None, "onehot")})])
def test_part2_modaltune_variants_change_one_param(ff, name, changed):
    plan = ff._plan()
    cell_c = ff.rs._modaltune(ff._cell(plan), "c")["params"]
    m = ff.variant_method(plan, name, PLAN2)
    assert m["name"] == "modaltune" and m["label"] == name
    assert _diff(cell_c, m["params"]) == changed


def test_command_line_takes_variants_from_the_plan(ff, tmp_path, capsys):
    with pytest.raises(SystemExit):  # a part-2 variant is not a choice of the default plan
        ff.main(["run", "--runs", str(tmp_path), "--variant", "onehot"])
    assert "invalid choice: 'onehot'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no such ablation plan"):
        ff.main(["--plan", str(tmp_path / "missing.yaml"), "run", "--runs", str(tmp_path), "--variant", "onehot"])
    with pytest.raises(SystemExit):  # and the other way round
        ff.main(["--plan", str(PLAN2), "analyse", "--runs", str(tmp_path), "--variants", "gates_zero"])
    assert "invalid choice: 'gates_zero'" in capsys.readouterr().err


def test_linear_probe_backbone_is_modaltunes_frozen_backbone(ff, tmp_path):
    """Same seed, same point of fit (the method is built right after seed_everything): the random frozen
    small_transformer of slide_fm equals ModalTune's, weight for weight (same constructor, same RNG draws)."""
    pytest.importorskip("sentence_transformers")
    import torch

    from modaltune.data.dataset import CohortPreprocessor
    from modaltune.data.simulate import simulate_cohort
    from modaltune.methods import build_method

    c = simulate_cohort(tmp_path / "tiny", preset="tiny", seed=1, n_patients=12)
    pp = CohortPreprocessor(c).fit(list(c.patient_ids))
    plan = ff._plan()
    mt, lp = ff.rs._modaltune(ff._cell(plan), "c"), ff.variant_method(plan, "linear_probe", PLAN2)
    for seed in (0, 3):
        torch.manual_seed(seed)
        a = build_method("modaltune", pp.info, **mt["params"]).backbone.state_dict()
        torch.manual_seed(seed)
        b = build_method("slide_fm", pp.info, **lp["params"]).encoder.backbone.state_dict()
        assert a.keys() == b.keys() and len(a) > 0
        assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(1)  # a different seed gives a different backbone (the check can fail)
    other = build_method("slide_fm", pp.info, **lp["params"]).encoder.backbone.state_dict()
    assert not all(torch.equal(a[k], other[k]) for k in a)
