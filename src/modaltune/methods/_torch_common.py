"""Shared plumbing of the torch baseline recipes: the head/loss parameter model, and splitting
validated params into head/loss vs encoder params."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import nn

from modaltune.methods.base import MethodParams, MultiTaskModel

__all__ = ["MODEL_KEYS", "HeadParams", "MethodParams", "split_params", "wrap"]


class HeadParams(MethodParams):
    """Keyword arguments of :class:`MultiTaskModel` (heads, losses, task weighting), shared by the
    torch methods that wrap an encoder with one head per task."""

    survival_head: Literal["discrete", "cox"] = Field("discrete", description="survival head: discrete-time hazard NLL or Cox partial likelihood")
    alpha: float = Field(0.0, description="weight of uncensored patients in the discrete-time NLL (MCAT: 0 or 0.5)")
    task_weights: dict[str, float] | Literal["uncertainty"] | None = Field(None, description="loss weight per task, 'uncertainty' (learned), or None (equal)")
    class_weights: dict[str, list[float]] | None = Field(None, description="per-task class weights of the cross-entropy")
    head_hidden: int | None = Field(None, description="hidden width of each task head (None: linear heads)")
    head_dropout: float = Field(0.0, description="dropout in each task head")


# Keyword arguments of MultiTaskModel (heads, losses, task weighting); everything else is the encoder's.
MODEL_KEYS = tuple(HeadParams.model_fields)


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
