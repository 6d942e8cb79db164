"""Fixtures of the training-engine tests: one tiny simulated cohort per session (copied when a test edits it)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_cohort_dir(tmp_path_factory) -> Path:
    """A 30-patient simulated cohort (16-d patch features, 16-48 patches, tasks subtype + survival)."""
    from modaltune.data.simulate import simulate_cohort

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cohorts") / "tiny"
    simulate_cohort(out, preset="tiny", seed=0, n_patients=30, patches=(16, 48), slides_per_patient=(1, 1), n_folds=3)
    return out


@pytest.fixture
def cohort_copy(tiny_cohort_dir, tmp_path) -> Path:
    """A private copy of the tiny cohort that a test may edit."""
    dst = tmp_path / "cohort"
    shutil.copytree(tiny_cohort_dir, dst)
    return dst
