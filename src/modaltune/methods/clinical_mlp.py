"""``clinical_mlp``: an MLP on the encoded declared clinical fields (age, stage, T/N/M, ...).

Numeric fields are standardised on the training fold and categorical/ordinal fields one-hot
encoded with a 'missing' level by the data layer, so a missing field is information, not NaN.
Patients flagged as having no clinical record get the learned missing embedding.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from modaltune.encoders.fusion import clinical_branch
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.registry import register_method

__all__ = ["ClinicalMLPParams", "build_clinical_mlp"]


class ClinicalMLPParams(HeadParams):
    """Parameters of ``clinical_mlp`` (+ the head/loss parameters of :class:`HeadParams`)."""

    hidden: tuple[int, ...] = Field((64, 64), description="widths of the Linear -> ReLU -> Dropout blocks")
    dropout: float = Field(0.1, description="dropout after each block")
    layer_norm: bool = Field(False, description="LayerNorm before each activation")


@register_method("clinical_mlp", kind="torch", modalities=("clinical",), requires=("clinical",), params=ClinicalMLPParams,
                 description="MLP on declared clinical fields")
def build_clinical_mlp(info: Any, **params: Any):
    """Params: :class:`ClinicalMLPParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    return wrap(info, clinical_branch(info, "mlp", **enc), model_params, "clinical_mlp")
