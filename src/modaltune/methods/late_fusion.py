"""``late_fusion``: concatenation ("cat") of any subset of modality encoders, then the standard heads.

The "concat" fusion baseline of MCAT/PORPOISE (Chen et al. 2021/2022) generalised to any modality
subset: each modality gets its own encoder (slide ``abmil|transmil|mean``, omics
``snn|mlp|gene_mixer``, clinical ``mlp``), the embeddings are concatenated, and an optional
``Linear -> ReLU -> Dropout`` fusion layer (256-d) feeds the task heads. Omics blocks listed
separately may each have their own encoder, e.g. ``omics_encoder: {rna: gene_mixer, cnv: snn}``
with ``omics_params: {rna: {token_dim: 64}}`` (blocks not named get ``snn`` and no parameters).

Missing modalities: a patient lacking a modality gets that branch's learned missing embedding;
the patient is kept and the absent encoder neither reads its inputs nor receives its gradient.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from modaltune.encoders.fusion import ConcatFusion, clinical_branch, omics_branch, resolve_modalities, slide_branch
from modaltune.errors import ConfigError
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.registry import register_method

__all__ = ["LateFusionParams", "build_late_fusion"]


class LateFusionParams(HeadParams):
    """Parameters of ``late_fusion`` (+ the head/loss parameters of :class:`HeadParams`)."""

    modalities: list[str] | None = Field(None, description="branches: modality names, 'omics' = all omics blocks in one branch (None: all the cohort has)")
    slide_encoder: str = Field("abmil", description="slide branch: abmil, transmil or mean")
    omics_encoder: str | dict[str, str] = Field("snn", description="omics branch encoder (snn, mlp, gene_mixer), or a mapping block -> encoder")
    clinical_encoder: str = Field("mlp", description="clinical branch encoder")
    slide_params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the slide encoder")
    omics_params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the omics encoder(s), or a mapping block -> arguments")
    clinical_params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the clinical encoder")
    fusion_dim: int | None = Field(256, description="width of the Linear -> ReLU -> Dropout fusion layer (None: plain concatenation)")
    dropout: float = Field(0.25, description="dropout of the fusion layer")


@register_method("late_fusion", kind="torch", modalities=("slide", "omics", "clinical"), params=LateFusionParams, branched=True,
                 description="concatenation late fusion of per-modality encoders")
def build_late_fusion(info: Any, **params: Any):
    """Params: :class:`LateFusionParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    branches = {}
    resolved = resolve_modalities(info, enc.get("modalities"))
    omics_names = [name for kind, name in resolved if kind == "omics"]
    omics_encoder = _per_block(enc.get("omics_encoder", "snn"), omics_names, "omics_encoder", is_value=lambda v: isinstance(v, str))
    omics_params = _per_block(enc.get("omics_params") or {}, omics_names, "omics_params", is_value=lambda v: not all(isinstance(x, dict) for x in v.values()) or not v)
    for kind, name in resolved:
        if kind == "slide":
            b = slide_branch(info, enc.get("slide_encoder", "abmil"), **dict(enc.get("slide_params") or {}))
        elif kind == "omics":
            omics = None if name == "omics" else name
            b = omics_branch(info, omics_encoder.get(name, "snn"), omics=omics, **dict(omics_params.get(name) or {}))
        else:
            b = clinical_branch(info, enc.get("clinical_encoder", "mlp"), **dict(enc.get("clinical_params") or {}))
        branches[b.name] = b
    fusion = ConcatFusion(branches, fusion_dim=enc.get("fusion_dim", 256), dropout=enc.get("dropout", 0.25))
    return wrap(info, fusion, model_params, "late_fusion")


def _per_block(value: Any, names: list[str], key: str, *, is_value) -> dict[str, Any]:
    """``value`` for every omics branch, or a ``{block: value}`` mapping naming some of ``names``."""
    if is_value(value):
        return dict.fromkeys(names, value)
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be one setting or a mapping of omics block to setting, got {value!r}", where=f"method.params.{key}")
    unknown = set(value) - set(names)
    if unknown:
        raise ConfigError(f"{key} names omics block(s) {sorted(unknown)} that are not branches of this model", where=f"method.params.{key}",
                          fix=f"use some of {names} (list the blocks separately in modalities, e.g. [rna, cnv])")
    return dict(value)
