"""Shared plumbing of the torch baseline recipes: split params into head/loss vs encoder params."""
from __future__ import annotations

from typing import Any

from torch import nn

from modaltune.methods.base import MultiTaskModel

__all__ = ["MODEL_KEYS", "split_params", "wrap"]

# Keyword arguments of MultiTaskModel (heads, losses, task weighting); everything else is the encoder's.
MODEL_KEYS = ("survival_head", "alpha", "task_weights", "class_weights", "head_hidden", "head_dropout")


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``params -> (MultiTaskModel kwargs, encoder kwargs)``."""
    model = {k: v for k, v in params.items() if k in MODEL_KEYS}
    enc = {k: v for k, v in params.items() if k not in MODEL_KEYS}
    return model, enc


def wrap(info: Any, encoder: nn.Module, model_params: dict[str, Any], method: str) -> MultiTaskModel:
    """Wrap ``encoder`` (``forward(batch) -> (B, E)``, ``out_dim``) with one head per task."""
    model = MultiTaskModel(info, encoder, **model_params)
    model.method_name = method
    return model
