"""benchmarks/modaltune_sweep/run_fivefold.py, part 3 (preregistered_5fold_ablations3.yaml): equal clinical inputs.

Checked: the clinical variants are cell C / the 5-fold late fusion with exactly the inputs changed (params
identical, ``clinical`` added); built on a tiny simulated cohort, ModalTune then has a clinical modal token and
late fusion a clinical branch, and neither has one without it; a late-fusion variant refuses cell C overrides;
restoring the committed reference predictions writes exactly the committed rows, never overwrites a recomputed
unit, and is reported apart from recomputed units; the pre-registered pairs' bootstrap picks the better model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SWEEP = REPO / "benchmarks" / "modaltune_sweep"
PLAN3 = SWEEP / "preregistered_5fold_ablations3.yaml"


def test_clinical_variants_change_only_the_inputs(ff):
    plan = ff._plan()
    cell_c, lf = ff.rs._modaltune(ff._cell(plan), "c"), ff.rs._late_fusion("lf")
    assert cell_c["modalities"] == lf["modalities"] == ["slide", "rna"]  # the references: no clinical input
    mt = ff.variant_method(plan, "mt_clinical", PLAN3)
    assert (mt["name"], mt["label"], mt["modalities"]) == ("modaltune", "mt_clinical", ["slide", "rna", "clinical"])
    assert mt["params"] == cell_c["params"]
    lfc = ff.variant_method(plan, "lf_clinical", PLAN3)
    assert (lfc["name"], lfc["label"], lfc["modalities"]) == ("late_fusion", "lf_clinical", ["slide", "rna", "clinical"])
    assert lfc["params"] == lf["params"]
    cox = ff.variant_method(plan, "coxnet_rna_clinical", PLAN3)
    assert (cox["name"], cox["modalities"], cox["tasks"]) == ("coxnet", ["rna", "clinical"], ["survival"])


def test_late_fusion_variant_refuses_cell_c_overrides(ff, tmp_path):
    p = tmp_path / "plan.yaml"
    p.write_text(yaml.safe_dump({"variants": {"bad": {"base": "late_fusion", "overrides": {"kl": 0.5}, "seeds": [0]}}}))
    with pytest.raises(ValueError, match="late-fusion variant may only change modalities"):
        ff.variant_method(ff._plan(), "bad", p)


def test_clinical_input_reaches_the_models(ff, tmp_path):
    """Built as fit builds them (preprocessor restricted to the unit's modalities): a clinical token / branch
    exists exactly when ``clinical`` is among the inputs."""
    pytest.importorskip("sentence_transformers")
    from modaltune.data.dataset import CohortPreprocessor
    from modaltune.data.simulate import simulate_cohort
    from modaltune.methods import build_method

    c = simulate_cohort(tmp_path / "tiny", preset="tiny", seed=1, n_patients=12)
    plan = ff._plan()
    got = {}
    for name in ("mt_clinical", "lf_clinical"):
        v = ff.variant_method(plan, name, PLAN3)
        for mods in (["slide", "rna"], v["modalities"]):
            info = CohortPreprocessor(c, modalities=mods).fit(list(c.patient_ids)).info
            model = build_method(v["name"], info, **v["params"])
            text = repr(model)
            got[(name, len(mods))] = ("ClinicalTokenSet" in text) if v["name"] == "modaltune" else ("clinical" in text.lower())
    assert got == {("mt_clinical", 2): False, ("mt_clinical", 3): True, ("lf_clinical", 2): False, ("lf_clinical", 3): True}


def _committed(tmp_path: Path) -> tuple[Path, Path]:
    """A committed-style predictions file (2 seeds x 2 folds x 3 patients) and its analysis.json units."""
    rng = np.random.default_rng(0)
    rows, units = [], []
    for lab, epochs in (("modaltune", ("selected", "last")), ("late_fusion", ("last",))):
        for s in (0, 1):
            for k in (0, 1):
                for ep in epochs:
                    for i in range(3):
                        rows.append({"patient_id": f"P{k}{i}", "time": 10.0 + i, "event": 1, "risk": float(rng.normal()), "label": i % 2,
                                     "prob_B": 0.5, "fold": k, "method": lab, "seed": s, "epoch": ep})
                units.append({"label": lab, "seed": s, "fold": k, "c_index": 0.5})
    pred, ana = tmp_path / "pred.csv.gz", tmp_path / "analysis.json"
    pd.DataFrame(rows).to_csv(pred, index=False)
    ana.write_text(json.dumps({"units": units}))
    return pred, ana


def test_restore_writes_committed_rows_and_keeps_recomputed_units(ff, tmp_path, monkeypatch):
    pred, ana = _committed(tmp_path)
    monkeypatch.setattr(ff.rs, "REPO", tmp_path)  # the marker names the source relative to the repository
    runs = tmp_path / "runs"
    mine = runs / "fivefold" / "modaltune" / "seed0" / "fold1"  # a recomputed unit: perfectly ordered risk
    mine.mkdir(parents=True)
    pd.DataFrame({"patient_id": ["P10", "P11", "P12"], "time": [10.0, 11.0, 12.0], "event": [1, 1, 1], "risk": [3.0, 2.0, 1.0]}).to_csv(mine / "heldout.csv", index=False)
    (mine / "result.json").write_text("{}")
    done = ff.restore_references(runs, [0, 1], 2, committed=pred)
    assert len(done) == 7 and {"label": "modaltune", "seed": 0, "fold": 1} not in done
    assert pd.read_csv(mine / "heldout.csv")["risk"].tolist() == [3.0, 2.0, 1.0]  # not overwritten
    p = pd.read_csv(pred)
    want = p[(p["method"] == "modaltune") & (p["seed"] == 1) & (p["fold"] == 0) & (p["epoch"] == "last")]
    d = runs / "fivefold" / "modaltune" / "seed1" / "fold0"
    got = pd.read_csv(d / "heldout_last_epoch.csv")
    assert got["patient_id"].tolist() == want["patient_id"].tolist() and np.allclose(got["risk"], want["risk"], rtol=1e-12)
    assert not (runs / "fivefold" / "late_fusion" / "seed0" / "fold0" / "heldout_last_epoch.csv").exists()
    prov = ff.reference_provenance(runs, [0, 1], 2, committed=ana)
    assert prov["n_recomputed"] == 1 and len(prov["restored"]) == 7
    assert prov["recomputed"][0]["c_index"] == pytest.approx(1.0) and prov["max_abs_diff_recomputed"] == pytest.approx(0.5)
    assert prov["n_recomputed_equal_committed"] == 0


def test_pairs_pick_the_better_model(ff):
    n = 60
    t = np.arange(1.0, n + 1)
    good = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "time": t, "event": np.ones(n, int), "risk": -t})  # C = 1
    bad = good.assign(risk=t)  # C = 0
    held = {"a": {0: good, 1: good}, "b": {1: bad}, "c": {1: good}}
    out = ff.compare_pairs(held, [["a", "b"], ["b", "a"], ["a", "c"], ["a", "missing"]], 200)
    assert out[0]["seeds"] == [1] and out[0]["diff"]["diff"] == pytest.approx(1.0) and out[0]["decision"] == "a better"
    assert out[1]["decision"] == "a better"
    assert out[2]["diff"]["diff"] == pytest.approx(0.0) and out[2]["decision"] == "no difference established"
    assert out[3]["seeds"] == [] and "decision" not in out[3]
