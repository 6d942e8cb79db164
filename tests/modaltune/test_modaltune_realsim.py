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
