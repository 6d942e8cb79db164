"""Fixtures for the slide-encoder tests (helpers live in slide_refs.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from slide_refs import GIGAPATH_FULL, TITAN_FULL, _need_refs, global_sha256, load_ref, recipe_state_dict
from slide_refs import ref_dir as _ref_dir


@pytest.fixture(scope="session")
def ref_dir() -> Path:
    _need_refs()
    return _ref_dir()


@pytest.fixture(scope="session")
def gigapath_full_sd() -> dict[str, torch.Tensor]:
    ref = load_ref(GIGAPATH_FULL)
    sd = recipe_state_dict("gigapath_slide_encoder_keys.json", ref["state_dict_recipe"]["base_seed"])
    assert global_sha256(sd) == ref["state_dict_recipe"]["checksums"]["global_sha256"]
    return sd


@pytest.fixture(scope="session")
def titan_full_sd() -> dict[str, torch.Tensor]:
    ref = load_ref(TITAN_FULL)
    sd = recipe_state_dict("titan_vision_encoder_keys.json", ref["state_dict_recipe"]["base_seed"])
    assert global_sha256(sd) == ref["state_dict_recipe"]["checksums"]["global_sha256"]
    return sd
