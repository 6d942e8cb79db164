"""Integrated gradients over omics genes and clinical fields: completeness, targets, pathway sums."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("captum")

from modaltune.interpret import input_attributions, pathway_totals, patient_batch


def _with_rna(cohort, fm, n=2):
    ids = [p for p in cohort.splits["kfold3"].folds[0].test if p in set(cohort.omics["rna"].index)]
    return ids[:n]


@pytest.fixture(scope="module")
def sharp(fitted_models):
    """The late-fusion model with its weights scaled up so the output moves visibly along the IG path."""
    import copy

    fm = copy.deepcopy(fitted_models["late_fusion"])
    torch.manual_seed(3)
    with torch.no_grad():
        for p in fm.model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return fm


@pytest.mark.parametrize("task", ["survival", "subtype"])
def test_ig_completeness(tiny_cohort, sharp, task):
    fm = sharp
    ids = _with_rna(tiny_cohort, fm)
    # 512 steps: the ReLU kinks of the fusion MLP make the Riemann error converge slowly (measured
    # |sum - diff| / |diff|: 35% at 32 steps, 14% at 128, 0.8% at 512, 0.3% at 1024 on this model)
    df = input_attributions(fm.model, patient_batch(fm, tiny_cohort, ids), task, n_steps=512)
    assert list(df["patient_id"].unique()) == ids and set(df["block"]) == {"rna", "clinical"}
    assert (df.groupby("patient_id")["block"].value_counts().unstack()[["rna", "clinical"]].to_numpy()
            == [len(fm.info.omics_feature_names["rna"]), len(fm.info.clinical_feature_names)]).all()
    for _pid, g in df.groupby("patient_id"):
        total = g["attribution"].sum()
        diff = g["output"].iloc[0] - g["baseline_output"].iloc[0]
        assert abs(diff) > 1e-3  # the output does move between baseline and input
        assert total - diff == pytest.approx(g["delta"].iloc[0], abs=1e-5)  # captum's convergence delta
        assert total == pytest.approx(diff, rel=0.02, abs=1e-4)  # completeness up to the Riemann error
    # the attributed scalar is what the model outputs for the patient
    with torch.no_grad():
        out = fm.model(patient_batch(fm, tiny_cohort, ids[:1]))["outputs"][task]
    y = df.loc[df.patient_id == ids[0], "output"].iloc[0]
    if task == "subtype":
        assert df["target"].iloc[0].startswith("logit[") and y == pytest.approx(float(out.max()), rel=1e-5)
    else:
        from modaltune.heads import risk_from_output

        assert df["target"].iloc[0] == "risk" and y == pytest.approx(float(risk_from_output(fm.info.task("survival"), out)[0]), rel=1e-5)


def test_zero_inputs_get_zero_attribution(tiny_cohort, sharp):
    """IG attributes (x_i - baseline_i) * mean gradient: a feature equal to its baseline gets exactly 0."""
    fm = sharp
    df = input_attributions(fm.model, patient_batch(fm, tiny_cohort, _with_rna(tiny_cohort, fm, 1)), "survival", n_steps=16)
    zero = df["value"] == 0
    assert zero.any() and (df.loc[zero, "attribution"] == 0).all()


def test_slide_only_model_has_nothing_to_attribute(tiny_cohort, fitted_models):
    fm = fitted_models["abmil"]
    assert input_attributions(fm.model, patient_batch(fm, tiny_cohort, _with_rna(tiny_cohort, fm, 1)), "survival").empty


def test_pathway_totals_sum_gene_attributions():
    from types import SimpleNamespace

    df = pd.DataFrame({"patient_id": "P", "task": "t", "block": "rna", "feature": ["g0", "g1", "g2", "g3"], "attribution": [1.0, -2.0, 0.5, 4.0]})
    info = SimpleNamespace(pathways={"rna": SimpleNamespace(names=["A", "B"], gene_index=[np.array([0, 2]), np.array([1, 2, 3])])})
    pw = pathway_totals(df, info)
    assert pw[["pathway", "attribution", "n_genes"]].values.tolist() == [["A", 1.5, 2], ["B", 2.5, 3]]
