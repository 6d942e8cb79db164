"""ModalTune through the engine: k-fold fit/predict, probes per site (pan-cancer), OOD probes on an unseen site."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers")

from modaltune.data.simulate import simulate_cohort
from modaltune.modaltune.probes import ood_probe_scores, probe_scores, task_embeddings
from modaltune.training.trainer import fit, predict

PARAMS = {"pathways": "builtin", "gene_mixer": {"token_dim": 16, "n_blocks": 1, "channel_hidden": 8},
          "backbone_params": {"embed_dim": 32, "depth": 2, "num_heads": 2}, "attn_dim": 16, "heads": 2, "ffn_dim": 16, "out_dim": 32}
TRAINER = {"max_epochs": 1, "max_patches": 32, "logger": "none", "checkpoint": False, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 5e-4}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mte")
    c = simulate_cohort(root / "pan", preset="tiny", seed=2, n_patients=36, sites=("BRCA", "LUAD", "KIRC"))
    fold = c.split("kfold5").folds[0]
    f = fit(c, fold, "modaltune", params=PARAMS, trainer=TRAINER, progress=False)
    return c, fold, f, root


def test_pan_cancer_fit_predict_and_per_site_probes(fitted):
    c, fold, f, _ = fitted
    ev = list(fold.val) or list(fold.test)
    p = predict(f, c, ev)
    assert set(p["task"]) == {"subtype", "survival"} and len(p) == 2 * len(ev)
    assert np.isfinite(p.loc[p["task"] == "survival", "risk"]).all()
    embs = task_embeddings(f, c, ev)
    assert set(embs) == {"subtype", "survival"} and all(e.shape == (len(ev), 32) for e in embs.values())
    # the two task embeddings differ (the task token flows through the image stream)
    assert not np.allclose(embs["subtype"].to_numpy(), embs["survival"].to_numpy())
    s = probe_scores(f, c, fold.train, ev)
    assert set(s["site"]) == {"all", "BRCA", "LUAD", "KIRC"}
    allrow = s[(s["site"] == "all") & (s["task"] == "subtype")].iloc[0]
    assert allrow["metric"] == "balanced_accuracy" and 0.0 <= allrow["value"] <= 1.0
    assert allrow["n_train"] == sum(1 for p_ in fold.train if c.targets("subtype", [p_]).mask[0])


def test_ood_site_is_embedded_and_probed(fitted):
    _, _, f, root = fitted
    o = simulate_cohort(root / "ood", preset="tiny", seed=5, n_patients=30, sites=("BLCA",))
    of = o.split("kfold5").folds[0]
    ev = list(of.val) or list(of.test)
    s = ood_probe_scores(f, o, of.train, ev)
    assert set(s["site"]) == {"all"} and set(s["task"]) == {"subtype", "survival"}
    assert s["ood_cohort"].eq(o.name).all()
    assert s["value"].notna().any()
