"""Fixtures for the slide-encoder tests (helpers live in slide_refs.py)."""
from __future__ import annotations

import pytest
import torch
from pathlib import Path

from slide_refs import REF_DIR, _need_refs, global_sha256, load_ref, recipe_state_dict


@pytest.fixture(scope="session")
def ref_dir() -> Path:
    _need_refs()
    return REF_DIR


@pytest.fixture(scope="session")
def gigapath_full_sd() -> dict[str, torch.Tensor]:
    ref = load_ref("ref_gigapath_p300_full_20x.pt")
    sd = recipe_state_dict("gigapath_slide_encoder_keys.json", ref["state_dict_recipe"]["base_seed"])
    assert global_sha256(sd) == ref["state_dict_recipe"]["checksums"]["global_sha256"]
    return sd


@pytest.fixture(scope="session")
def titan_full_sd() -> dict[str, torch.Tensor]:
    ref = load_ref("ref_titan_p300_full_20x.pt")
    sd = recipe_state_dict("titan_vision_encoder_keys.json", ref["state_dict_recipe"]["base_seed"])
    assert global_sha256(sd) == ref["state_dict_recipe"]["checksums"]["global_sha256"]
    return sd
