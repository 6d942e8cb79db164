"""``omics_mlp``: a plain MLP (Linear -> ReLU -> Dropout blocks) on one or more omics blocks.

Several omics blocks are concatenated; a missing block is zeroed and flagged by an indicator
column; a patient with no omics at all gets the learned missing embedding (kept, not dropped).
"""
from __future__ import annotations

from typing import Any

from modaltune.encoders.fusion import omics_branch
from modaltune.methods._torch_common import split_params, wrap
from modaltune.methods.registry import register_method

__all__ = ["build_omics_mlp"]


@register_method("omics_mlp", kind="torch", modalities=("omics",), description="MLP on omics blocks")
def build_omics_mlp(info: Any, **params: Any):
    """Params: ``omics`` (block name(s); default all), ``hidden`` ([256, 256]), ``dropout`` (0.25),
    ``activation`` (relu), ``layer_norm`` (False) + head/loss params."""
    model_params, enc = split_params(params)
    omics = enc.pop("omics", None)
    enc = {"hidden": (256, 256), "dropout": 0.25, **enc}
    return wrap(info, omics_branch(info, "mlp", omics=omics, **enc), model_params, "omics_mlp")
