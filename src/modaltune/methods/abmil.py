"""``abmil``: gated-attention multiple-instance learning on slide patch features (slide only).

Ilse, Tomczak & Welling, "Attention-based Deep Multiple Instance Learning", ICML 2018; the gated
variant with Linear(D -> 512), ReLU, dropout and a 256-d gated attention as in CLAM/MCAT. The
encoder is :class:`modaltune.encoders.slide.abmil.ABMILSlideEncoder`; softmax runs over the real
patches only (padding masked), so appending padded patches never changes the output.

Patients without a slide (``modality_mask`` False, or no real patch) get the learned missing
embedding: they are kept and predicted from it (i.e. from the training prior of the heads).
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from modaltune.encoders.fusion import slide_branch
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.registry import register_method

__all__ = ["ABMILParams", "build_abmil"]


class ABMILParams(HeadParams):
    """Parameters of ``abmil`` (+ the head/loss parameters of :class:`HeadParams`)."""

    embed_dim: int = Field(512, description="width of the Linear(D -> embed_dim) patch projection")
    attn_dim: int = Field(256, description="hidden width of the gated attention")
    dropout: float = Field(0.25, description="dropout after the patch projection")


@register_method("abmil", kind="torch", modalities=("slide",), requires=("slide",), params=ABMILParams,
                 description="gated-attention MIL on patch features (Ilse et al. 2018)")
def build_abmil(info: Any, **params: Any):
    """Params: :class:`ABMILParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    return wrap(info, slide_branch(info, "abmil", **enc), model_params, "abmil")
