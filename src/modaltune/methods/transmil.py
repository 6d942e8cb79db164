"""``transmil``: TransMIL on slide patch features (slide only).

Shao et al., "TransMIL: Transformer based Correlated Multiple Instance Learning for Whole Slide
Image Classification", NeurIPS 2021. Compact version from
:class:`modaltune.encoders.slide.transmil.TransMILSlideEncoder`: Linear(D -> 512) + ReLU, bag
squared by repeating its first patches, CLS token, attention layer, PPEG (depth-wise 7/5/3 convs),
attention layer, LayerNorm, CLS output. Deviation: exact softmax multi-head attention instead of
the Nystrom approximation (exact is affordable at the bag sizes we run on CPU and removes an
approximation), documented in docs/methods.md.

Patients without a slide get the learned missing embedding (kept, not dropped).
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from modaltune.encoders.fusion import slide_branch
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.registry import register_method

__all__ = ["TransMILParams", "build_transmil"]


class TransMILParams(HeadParams):
    """Parameters of ``transmil`` (+ the head/loss parameters of :class:`HeadParams`)."""

    embed_dim: int = Field(512, description="token width after the Linear(D -> embed_dim) projection")
    num_heads: int = Field(8, description="attention heads per layer")
    dropout: float = Field(0.0, description="dropout after the patch projection")


@register_method("transmil", kind="torch", modalities=("slide",), requires=("slide",), params=TransMILParams,
                 description="TransMIL: PPEG + 2 attention layers + CLS (Shao et al. 2021)")
def build_transmil(info: Any, **params: Any):
    """Params: :class:`TransMILParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    return wrap(info, slide_branch(info, "transmil", **enc), model_params, "transmil")
