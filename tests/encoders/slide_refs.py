"""Helpers for the slide-encoder tests: reference files and recipe weights from ../shared/reference."""
from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import pytest
import torch

REF_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


def _need_refs() -> None:
    if not (REF_DIR / "recipe.py").exists():
        pytest.skip(f"reference pack not found at {REF_DIR} (needs ../shared/reference)")


@functools.lru_cache(maxsize=None)
def _recipe_module():
    spec = importlib.util.spec_from_file_location("_modaltune_ref_recipe", REF_DIR / "recipe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@functools.lru_cache(maxsize=None)
def load_ref(name: str) -> dict:
    _need_refs()
    return torch.load(REF_DIR / name, weights_only=True)


def recipe_state_dict(keys_json: str, base_seed: int) -> dict[str, torch.Tensor]:
    """Rebuild a full-size synthetic state dict from the official key list (see recipe.py)."""
    _need_refs()
    rec = _recipe_module()
    keys = json.loads((REF_DIR / keys_json).read_text())["state_dict"]
    return {e["name"]: rec.recipe_tensor(e["name"], e["shape"], base_seed + i) for i, e in enumerate(keys)}


def global_sha256(sd: dict[str, torch.Tensor]) -> str:
    return _recipe_module().sd_checksums(sd)["global_sha256"]


