"""``omics_mlp``: a plain MLP (Linear -> ReLU -> Dropout blocks) on one or more omics blocks.

Several omics blocks are concatenated; a missing block is zeroed and flagged by an indicator
column; a patient with no omics at all gets the learned missing embedding (kept, not dropped).
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from modaltune.encoders.fusion import omics_branch
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.registry import register_method

__all__ = ["OmicsMLPParams", "build_omics_mlp"]


class OmicsMLPParams(HeadParams):
    """Parameters of ``omics_mlp`` (+ the head/loss parameters of :class:`HeadParams`)."""

    omics: str | list[str] | None = Field(None, description="omics block name(s) to read (None: every block, concatenated)")
    hidden: tuple[int, ...] = Field((256, 256), description="widths of the Linear -> activation -> Dropout blocks")
    dropout: float = Field(0.25, description="dropout after each block")
    activation: str = Field("relu", description="relu, gelu, elu or selu")
    layer_norm: bool = Field(False, description="LayerNorm before each activation")


@register_method("omics_mlp", kind="torch", modalities=("omics",), requires=("omics",), params=OmicsMLPParams,
                 description="MLP on omics blocks")
def build_omics_mlp(info: Any, **params: Any):
    """Params: :class:`OmicsMLPParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    omics = enc.pop("omics", None)
    return wrap(info, omics_branch(info, "mlp", omics=omics, **enc), model_params, "omics_mlp")
