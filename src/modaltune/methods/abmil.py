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

from modaltune.encoders.fusion import slide_branch
from modaltune.methods._torch_common import split_params, wrap
from modaltune.methods.registry import register_method

__all__ = ["build_abmil"]


@register_method("abmil", kind="torch", modalities=("slide",), description="gated-attention MIL on patch features (Ilse et al. 2018)")
def build_abmil(info: Any, **params: Any):
    """Params: ``embed_dim`` (512), ``attn_dim`` (256), ``dropout`` (0.25) + head/loss params."""
    model_params, enc = split_params(params)
    enc = {"embed_dim": 512, "attn_dim": 256, "dropout": 0.25, **enc}
    return wrap(info, slide_branch(info, "abmil", **enc), model_params, "abmil")
