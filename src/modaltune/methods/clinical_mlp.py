"""``clinical_mlp``: an MLP on the encoded declared clinical fields (age, stage, T/N/M, ...).

Numeric fields are standardised on the training fold and categorical/ordinal fields one-hot
encoded with a 'missing' level by the data layer, so a missing field is information, not NaN.
Patients flagged as having no clinical record get the learned missing embedding.
"""
from __future__ import annotations

from typing import Any

from modaltune.encoders.fusion import clinical_branch
from modaltune.methods._torch_common import split_params, wrap
from modaltune.methods.registry import register_method

__all__ = ["build_clinical_mlp"]


@register_method("clinical_mlp", kind="torch", modalities=("clinical",), description="MLP on declared clinical fields")
def build_clinical_mlp(info: Any, **params: Any):
    """Params: ``hidden`` ([64, 64]), ``dropout`` (0.1), ``layer_norm`` (False) + head/loss params."""
    model_params, enc = split_params(params)
    return wrap(info, clinical_branch(info, "mlp", **enc), model_params, "clinical_mlp")
