"""Noise bags for imported cohorts: written where the cohort expects them, marked simulated, never over real files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modaltune.data.bags import read_bag, write_bag_h5
from modaltune.errors import InputError
from modaltune.modaltune.realsim import SIMULATED_ENCODER, attach_simulated_bags


def test_attach_simulated_bags(tmp_path):
    pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "path": ["features/a_featvec.pt", "features/b.h5", "features/c.h5"]}).to_csv(tmp_path / "slides.csv", index=False)
    write_bag_h5(tmp_path / "features/c.h5", np.ones((3, 8), np.float32), np.zeros((3, 2), np.int64), patch_size_level0=256, encoder="real_encoder")
    assert attach_simulated_bags(tmp_path, feature_dim=8, patches=(5, 9), seed=1) == 2  # the real file is left alone
    a, b = read_bag(tmp_path / "features/a_featvec.pt"), read_bag(tmp_path / "features/b.h5")
    assert a.features.shape[1] == 8 and 5 <= a.features.shape[0] <= 9 and a.attrs["encoder"] == SIMULATED_ENCODER
    assert b.attrs["encoder"] == SIMULATED_ENCODER and len(np.unique(b.coords, axis=0)) == len(b.coords)
    again = read_bag(tmp_path / "features/a_featvec.pt").features.copy()
    assert attach_simulated_bags(tmp_path, feature_dim=8, patches=(5, 9), seed=1, overwrite=False) == 0
    with pytest.raises(InputError):
        attach_simulated_bags(tmp_path, feature_dim=8, patches=(5, 9), seed=1, overwrite=True)  # c.h5 is real
    np.testing.assert_array_equal(read_bag(tmp_path / "features/a_featvec.pt").features, again)


def test_bags_follow_the_backbone_grid_and_titan_reads_them(tmp_path):
    import torch

    from modaltune.encoders.slide.titan import TitanSlideEncoder
    from modaltune.errors import ConfigError

    pd.DataFrame({"patient_id": ["P1", "P2"], "path": ["features/a.h5", "features/b.h5"]}).to_csv(tmp_path / "slides.csv", index=False)
    assert attach_simulated_bags(tmp_path, backbone="titan", patches=(20, 30), seed=2) == 2
    bag = read_bag(tmp_path / "features/a.h5")
    assert bag.features.shape[1] == 768 and bag.attrs["patch_size_level0"] == 512
    assert set(np.unique(bag.coords % 512)) == {0} and len(np.unique(bag.coords // 512, axis=0)) == len(bag.coords)
    enc = TitanSlideEncoder(in_dim=768, embed_dim=32, depth=1, num_heads=4, attn_pooler_queries=2, attn_pooler_heads=2, patch_size_level0=512)
    with torch.no_grad():  # no "TITAN patch grid collision": one grid cell per patch
        out = enc(torch.from_numpy(bag.features.astype(np.float32))[None], torch.from_numpy(bag.coords)[None])
    assert out.shape == (1, 32)
    g = read_bag(tmp_path / "features/b.h5")
    with pytest.raises(InputError, match="collision"):  # the same bag read on a 1024 grid collides: the pitch matters
        TitanSlideEncoder(in_dim=768, embed_dim=32, depth=1, num_heads=4, attn_pooler_queries=2, attn_pooler_heads=2, patch_size_level0=1024)(
            torch.from_numpy(g.features.astype(np.float32))[None], torch.from_numpy(g.coords)[None])
    with pytest.raises(ConfigError):
        attach_simulated_bags(tmp_path, backbone="uni")


def test_small_cohort_keeps_events_and_classes(tmp_path):
    from modaltune.data.cohort import Cohort
    from modaltune.data.simulate import simulate_cohort
    from modaltune.modaltune.realsim import small_cohort

    src = simulate_cohort(tmp_path / "src", preset="tiny", seed=4, n_patients=40)
    sp = src.split("kfold5").folds[0]
    rows = [(0, "train", p) for p in sp.train] + [(0, "test", p) for p in sp.test]
    pd.DataFrame(rows, columns=["fold", "partition", "patient_id"]).to_csv(tmp_path / "src" / "splits" / "fixed.csv", index=False)
    out = small_cohort(tmp_path / "src", tmp_path / "small", split="fixed", n={"train": 6, "val": 0, "test": 4}, seed=0)
    c = Cohort.load(out)
    kept = pd.read_csv(out / "splits" / "fixed.csv")
    per_site = kept.merge(c.patients["site"].reset_index(), on="patient_id").groupby(["partition", "site"]).size()
    assert (per_site.xs("train") <= 6).all() and (per_site.xs("test") <= 4).all() and set(kept["patient_id"]) == set(c.patients.index)
    tr = c.patients.loc[kept.loc[kept.partition == "train", "patient_id"]]
    assert tr["event"].nunique() == 2 and tr["subtype"].nunique() == 2  # round-robin over event x class strata
    with pytest.raises(InputError):
        small_cohort(tmp_path / "src", tmp_path / "small", split="fixed")  # exists
