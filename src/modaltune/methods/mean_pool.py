"""``mean_pool``: the simplest slide method, mean of patch features + linear task heads.

The bag of patch features (B, N, D) is averaged over real patches (padding masked), optionally
projected (``hidden`` > 0: Linear -> ReLU -> Dropout), and fed to one linear head per task. It is a
reference point for every MIL method and the engine's smoke-test model. Patients without a slide
get a learned "missing" embedding, so they are kept.
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from modaltune.errors import InputError
from modaltune.layers.missing import MissingModalityEmbedding, masked_mean
from modaltune.methods._torch_common import HeadParams, split_params
from modaltune.methods.base import MultiTaskModel
from modaltune.methods.registry import register_method

__all__ = ["MeanPoolEncoder", "MeanPoolParams", "build_mean_pool"]


class MeanPoolParams(HeadParams):
    """Parameters of ``mean_pool`` (+ the head/loss parameters of :class:`HeadParams`)."""

    hidden: int = Field(0, ge=0, description="0 keeps the mean (E = D); > 0 adds Linear(D, hidden) -> ReLU -> Dropout")
    dropout: float = Field(0.0, description="dropout after the projection")


class MeanPoolEncoder(nn.Module):
    """(B, N, D) patch features + (B, N) mask -> (B, E) patient embedding.

    Args:
        in_dim: patch feature dim D.
        slide_modality: key of the slide modality in ``batch['modality_mask']``.
        hidden: 0 keeps the mean (E = D); > 0 adds Linear(D, hidden) -> ReLU -> Dropout (E = hidden).
        dropout: dropout after the projection.
    """

    def __init__(self, in_dim: int, slide_modality: str, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.slide_modality = slide_modality
        self.proj = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout)) if hidden > 0 else nn.Identity()
        self.out_dim = hidden if hidden > 0 else in_dim
        self.missing = MissingModalityEmbedding(self.out_dim)

    def forward(self, batch: dict) -> torch.Tensor:
        slide = batch["slide"]
        feats = slide["features"].float()
        mask = slide["mask"]
        present = mask.any(dim=1)
        mm = batch.get("modality_mask", {}).get(self.slide_modality)
        if mm is not None:
            present = present & mm.to(present.device)
        emb = self.proj(masked_mean(feats, mask))
        return self.missing(emb, present)


@register_method("mean_pool", kind="torch", modalities=("slide",), requires=("slide",), params=MeanPoolParams, description="mean of patch features + linear heads (reference / smoke-test model)")
def build_mean_pool(info: Any, **params: Any) -> MultiTaskModel:
    """Params: :class:`MeanPoolParams` (validated, defaults filled)."""
    if not getattr(info, "slide_dim", None):
        raise InputError("method 'mean_pool' needs a slide modality", where="method.modalities", fix="add the cohort's slide modality")
    model_kw, enc_kw = split_params(params)
    enc = MeanPoolEncoder(int(info.slide_dim), info.slide_modality, hidden=enc_kw["hidden"], dropout=enc_kw["dropout"])
    return MultiTaskModel(info, enc, **model_kw)
