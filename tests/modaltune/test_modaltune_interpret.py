"""Interpretability of ModalTune: attention maps per patch, integrated gradients over pathways."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")

from modaltune.data.dataset import CohortPreprocessor, PatientDataset, collate_patients
from modaltune.data.simulate import simulate_cohort
from modaltune.methods import build_method

SMALL = {"pathways": "builtin", "gene_mixer": {"token_dim": 8, "n_blocks": 1, "channel_hidden": 8}, "backbone_params": {"embed_dim": 32, "depth": 2, "num_heads": 2},
         "attn_dim": 16, "heads": 2, "ffn_dim": 16, "out_dim": 16, "drop_path": 0.0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    c = simulate_cohort(tmp_path_factory.mktemp("mti") / "tiny", preset="tiny", seed=4, n_patients=16, patches=(8, 16))
    ids = list(c.patient_ids)
    pp = CohortPreprocessor(c).fit(ids)
    ds = PatientDataset(c, ids, pp, training=False)
    torch.manual_seed(0)
    m = build_method("modaltune", pp.info, **SMALL).eval()
    with torch.no_grad():  # open the gates so that the maps are not trivially unused
        for inj in m.adapter.injectors:
            inj.gamma.fill_(0.5)
    rna = set(c.omics["rna"].index)
    both = [i for i, p in enumerate(ids) if p in rna and p in pp.slide_paths]
    return m, ds, both


def test_attention_maps_are_distributions_over_present_tokens(setup):
    from modaltune.interpret.attention import attention_maps

    m, ds, both = setup
    b = collate_patients([ds[both[0]]])
    maps = attention_maps(m, b, "survival")
    n = int(b["slide"]["mask"].sum())
    assert len(maps["injector"]) == len(m.adapter.groups) and len(maps["extra_extractor"]) == 2
    inj, ext = maps["injector"][0], maps["extractor"][-1]
    assert inj.shape == (1, n, 1 + m.tokenizer.n_tokens) and ext.shape == (1, 1 + m.tokenizer.n_tokens, n)
    torch.testing.assert_close(inj.sum(-1), torch.ones(1, n))
    torch.testing.assert_close(ext.sum(-1), torch.ones(1, 1 + m.tokenizer.n_tokens))
    assert maps["token_names"][0] == "task" and maps["coords"].shape == (1, n, 2)
    # recording does not change the output
    with torch.no_grad():
        ref = m.task_forward(b, "survival")
    from modaltune.interpret.attention import recording
    with torch.no_grad(), recording(m.adapter):
        rec = m.task_forward(b, "survival")
    torch.testing.assert_close(ref, rec, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target", ["pathways", "genes"])
def test_integrated_gradients_complete(setup, target):
    pytest.importorskip("captum")
    from modaltune.interpret.integrated_gradients import pathway_attributions

    m, ds, both = setup
    b = collate_patients([ds[both[1]]])
    df = pathway_attributions(m, b, "survival", target=target, n_steps=256 if target == "pathways" else 8)
    names = m.tokenizer.sets[0].mixer.pathway_names
    assert list(df["pathway"]) == names
    if target == "pathways":  # completeness: attributions sum to risk(x) - risk(baseline)
        total = df["attribution"].sum()
        diff = df["risk"].iloc[0] - df["baseline_risk"].iloc[0]
        assert total - diff == pytest.approx(df["delta"].iloc[0], abs=1e-5)  # captum's convergence delta
        assert total == pytest.approx(diff, rel=0.25, abs=1e-4)  # Riemann error of a non-smooth (ELU/LN) path
    assert np.isfinite(df["attribution"]).all()
