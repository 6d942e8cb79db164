"""Slide-encoder pretraining on a disjoint simulated cohort: it learns, it saves a checkpoint that the
registry and the modaltune / slide_fm methods load as a frozen backbone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modaltune.data.simulate import simulate_cohort
from modaltune.errors import ConfigError
from modaltune.modaltune.pretrain import pretrain_slide_encoder

ENC = {"embed_dim": 16, "depth": 2, "num_heads": 2}
FACTORS = ["z_slide_1", "z_slide_2", "z_shared"]


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    ev = simulate_cohort(root / "eval", preset="tiny", seed=0, n_patients=20)
    pre = simulate_cohort(root / "pre", preset="tiny", seed=7, world_seed=0, n_patients=60)
    return ev, pre, root


def test_world_seed_gives_disjoint_patients_in_the_same_feature_space(cohorts):
    ev, pre, root = cohorts
    za, zb = ev.ground_truth["z_slide_1"].to_numpy(), pre.ground_truth["z_slide_1"].to_numpy()
    assert np.intersect1d(np.round(za, 9), np.round(zb, 9)).size == 0
    # same world: the site feature offsets and tissue prototypes are shared, so per-site mean patch
    # features agree far better than with a cohort from another world
    other = simulate_cohort(root / "other", preset="tiny", seed=7, n_patients=60)
    from modaltune.data.bags import read_bag

    def site_means(c):
        out = {}
        for site, grp in c.slides.merge(c.patients["site"].reset_index(), on="patient_id").groupby("site"):
            out[site] = np.concatenate([read_bag(c.resolve_path(p)).features.astype(np.float32) for p in grp["path"]]).mean(0)
        return out

    a, b, o = site_means(ev), site_means(pre), site_means(other)
    same = np.mean([np.linalg.norm(a[s] - b[s]) for s in a])
    diff = np.mean([np.linalg.norm(a[s] - o[s]) for s in a])
    assert same < 0.7 * diff  # measured 1.93 vs 3.69


def test_regression_pretraining_learns_and_saves_a_loadable_backbone(cohorts, tmp_path):
    from modaltune.data.dataset import CohortPreprocessor, PatientDataset, collate_patients
    from modaltune.encoders.slide import create_slide_encoder
    from modaltune.methods import build_method

    ev, pre, _ = cohorts
    res = pretrain_slide_encoder(pre, targets=pre.ground_truth[FACTORS], encoder_params=ENC, epochs=6, batch_size=8, max_patches=32, lr=3e-3, seed=0)
    h = res.history
    # the regression targets are learnable factors: measured 1.06 -> 0.71 over 6 epochs; 10 % is far above float noise
    assert len(h) == 6 and h["train_loss"].iloc[-1] < 0.9 * h["train_loss"].iloc[0], h["train_loss"].tolist()
    assert res.config["n_train"] + res.config["n_val"] == 60 - int(pre.ground_truth["missing_slide"].sum())
    path = res.save(tmp_path / "enc.pt")
    assert (tmp_path / "enc.pt.json").exists()
    enc = create_slide_encoder("small_transformer", checkpoint=path, in_dim=16, **ENC)
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), res.encoder.state_dict().values()))
    assert enc.weights_source == str(path)
    # the methods load it as their frozen backbone
    pp = CohortPreprocessor(ev).fit(list(ev.patient_ids)[:15])
    m = build_method("modaltune", pp.info, checkpoint=str(path), backbone_params=ENC, pathways="builtin", attn_dim=8, heads=2, ffn_dim=8, out_dim=16,
                     gene_mixer={"token_dim": 8, "n_blocks": 1, "channel_hidden": 8})
    assert all(torch.equal(a, b) for a, b in zip(m.backbone.state_dict().values(), res.encoder.state_dict().values()))
    assert all(not p.requires_grad for p in m.backbone.parameters())
    probe = build_method("slide_fm", pp.info, checkpoint=str(path), backbone_params=ENC, tune=False)
    ds = PatientDataset(ev, list(ev.patient_ids)[:3], pp, training=False, max_patches=32)
    b = collate_patients([ds[i] for i in range(3)])
    with torch.no_grad():
        assert torch.isfinite(m.eval()(b)["embedding"]).all() and torch.isfinite(probe.eval()(b)["embedding"]).all()


def test_contrastive_pretraining_and_bad_arguments(cohorts):
    _, pre, _ = cohorts
    res = pretrain_slide_encoder(pre, objective="contrastive", encoder_params=ENC, epochs=3, batch_size=8, max_patches=16, seed=1)
    # measured 2.41 -> 2.24 over 3 epochs: a 2 % fall (0.05) is far above float noise
    loss = res.history["train_loss"]
    assert np.isfinite(loss).all() and loss.iloc[-1] < 0.98 * loss.iloc[0], loss.tolist()
    with pytest.raises(ConfigError, match="objective"):
        pretrain_slide_encoder(pre, objective="mae", encoder_params=ENC)
    with pytest.raises(ConfigError, match="targets"):
        pretrain_slide_encoder(pre, objective="regression", encoder_params=ENC)
