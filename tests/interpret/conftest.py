"""Fixtures of the interpretation / new-data tests: one tiny simulated cohort and tiny fitted models per session."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

TINY_TRAINER = {"max_epochs": 1, "progress_bar": False, "logger": "none", "batch_size": 1}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """The 30-patient simulated cohort of tests/training (16-d patch features on a 256-px grid, rna, clinical)."""
    from modaltune.data.cohort import Cohort
    from modaltune.data.simulate import simulate_cohort

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cohorts") / "tiny"
    simulate_cohort(out, preset="tiny", seed=0, n_patients=30, patches=(16, 48), slides_per_patient=(1, 1), n_folds=3)
    return Cohort.load(out)


@pytest.fixture(scope="session")
def fitted_models(tiny_cohort, tmp_path_factory):
    """``{name: FittedModel}`` saved and re-loaded: abmil, transmil (slide) and late_fusion (ABMIL slide + rna + clinical)."""
    from modaltune.training import FittedModel, fit

    torch.set_num_threads(1)
    fold = tiny_cohort.splits["kfold3"].folds[0]
    root = tmp_path_factory.mktemp("models")
    specs = {"abmil": ({"embed_dim": 16, "attn_dim": 8}, None), "transmil": ({"embed_dim": 16, "num_heads": 2}, None),
             "late_fusion": ({}, ["slide", "rna", "clinical"])}
    out = {}
    for name, (params, mods) in specs.items():
        fit(tiny_cohort, fold, name, params=params, modalities=mods, tasks=["subtype", "survival"], trainer=TINY_TRAINER, out_dir=root / name, progress=False)
        out[name] = FittedModel.load(Path(root / name / "model"))
    return out
