"""``late_fusion``: concatenation ("cat") of any subset of modality encoders, then the standard heads.

The "concat" fusion baseline of MCAT/PORPOISE (Chen et al. 2021/2022) generalised to any modality
subset: each modality gets its own encoder (slide ``abmil|transmil|mean``, omics
``snn|mlp|gene_mixer``, clinical ``mlp``), the embeddings are concatenated, and an optional
``Linear -> ReLU -> Dropout`` fusion layer (256-d) feeds the task heads.

Missing modalities: a patient lacking a modality gets that branch's learned missing embedding;
the patient is kept and the absent encoder neither reads its inputs nor receives its gradient.
"""
from __future__ import annotations

from typing import Any

from modaltune.encoders.fusion import ConcatFusion, clinical_branch, omics_branch, resolve_modalities, slide_branch
from modaltune.errors import ConfigError
from modaltune.methods._torch_common import split_params, wrap
from modaltune.methods.registry import register_method

__all__ = ["build_late_fusion"]

_KEYS = {"modalities", "slide_encoder", "omics_encoder", "clinical_encoder", "slide_params", "omics_params", "clinical_params", "fusion_dim", "dropout"}


@register_method("late_fusion", kind="torch", modalities=("slide", "omics", "clinical"), description="concatenation late fusion of per-modality encoders")
def build_late_fusion(info: Any, **params: Any):
    """Params: ``modalities`` (list; default all the cohort has; ``omics`` = all omics blocks in one
    branch), ``slide_encoder`` (abmil), ``omics_encoder`` (snn), ``clinical_encoder`` (mlp),
    ``slide_params``/``omics_params``/``clinical_params`` (dicts passed to the encoders),
    ``fusion_dim`` (256; null = plain concatenation), ``dropout`` (0.25) + head/loss params."""
    model_params, enc = split_params(params)
    unknown = set(enc) - _KEYS
    if unknown:
        raise ConfigError(f"unknown late_fusion parameter(s) {sorted(unknown)}", where="method.params", fix=f"use some of {sorted(_KEYS)}")
    branches = {}
    for kind, name in resolve_modalities(info, enc.get("modalities")):
        if kind == "slide":
            b = slide_branch(info, enc.get("slide_encoder", "abmil"), **dict(enc.get("slide_params") or {}))
        elif kind == "omics":
            omics = None if name == "omics" else name
            b = omics_branch(info, enc.get("omics_encoder", "snn"), omics=omics, **dict(enc.get("omics_params") or {}))
        else:
            b = clinical_branch(info, enc.get("clinical_encoder", "mlp"), **dict(enc.get("clinical_params") or {}))
        branches[b.name] = b
    fusion = ConcatFusion(branches, fusion_dim=enc.get("fusion_dim", 256), dropout=enc.get("dropout", 0.25))
    return wrap(info, fusion, model_params, "late_fusion")
