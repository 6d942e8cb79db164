"""``pretrained_probe``: embed with the encoders of ``modaltune pretrain`` (Symile / CLIP / MIRROR)
and put one linear head per task on top.

With ``freeze: true`` (default) the pretrained encoders never change: the heads are linear probes
trained by the engine, and ``evaluation.probes`` in a benchmark adds the standard probes
(logistic / ridge Cox, :mod:`modaltune.evaluation.probes`) on the same frozen (B, M * E) embedding.
With ``freeze: false`` the encoders are the initialisation of fine-tuning.

The method's modalities must include every pretrained modality with the same input width (use the
same cohort, and the same split/fold as the pretraining, or held-out patients were seen by it).
A fitted model folder stores the whole state dict, but rebuilding it reads ``checkpoint`` again:
keep the pretraining folder next to the benchmark.
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from modaltune.errors import ConfigError, InputError
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.base import MultiTaskModel
from modaltune.methods.registry import register_method

__all__ = ["PretrainedEmbedder", "PretrainedProbeParams", "build_pretrained_probe"]


class PretrainedProbeParams(HeadParams):
    """Parameters of ``pretrained_probe`` (+ the head/loss parameters of :class:`HeadParams`)."""

    checkpoint: str | None = Field(None, description="output folder of `modaltune pretrain` (holds pretrain.json); required; "
                                    "in a benchmark `DIR/fold{fold}` reads the folders of `pretrain --folds all`")
    freeze: bool = Field(True, description="keep the pretrained encoders fixed (linear probing); false: fine-tune them")


class PretrainedEmbedder(nn.Module):
    """batch -> (B, M * E) concatenated normalised modality embeddings of a pretrained model.

    ``held_out``: the pretraining fold's held-out patients. One of them in a *training* batch
    means this model trains on another fold than the pretraining's, whose held-out patients the
    pretraining has then seen: refused (InputError) instead of a silently leaking benchmark.
    """

    def __init__(self, pretrained: nn.Module, freeze: bool, held_out: frozenset[str] = frozenset(), source: str = ""):
        super().__init__()
        self.pretrained = pretrained
        self.freeze = freeze
        self.out_dim = int(pretrained.out_dim)
        self.held_out = held_out
        self.source = source
        if freeze:
            pretrained.requires_grad_(False)

    def forward(self, batch: dict) -> torch.Tensor:
        if self.training and self.held_out:
            bad = [p for p in batch.get("patient_id", []) if p in self.held_out]
            if bad:
                raise InputError(f"patient '{bad[0]}' trains this model but was held out of the pretraining: the pretraining used another fold, "
                                 "so it has seen this fold's evaluated patients", where=self.source or "method.params.checkpoint",
                                 fix="pretrain on the same split and fold as this run (one `modaltune pretrain` folder per fold)")
        if self.freeze:
            with torch.no_grad():
                return self.pretrained.embed(batch)
        return self.pretrained.embed(batch)


def _check_inputs(info: Any, spec: dict, where: str) -> None:
    for m in spec["modalities"]:
        name, kind, d = m["name"], m["kind"], int(m["in_dim"])
        have = {"slide": info.slide_dim if info.slide_modality == name else None,
                "omics": info.omics_dims.get(name), "clinical": info.clinical_dim if info.clinical_modality == name else None}[kind]
        if have is None:
            raise ConfigError(f"the pretrained encoders read modality '{name}', which this method does not get", where=where,
                              fix=f"add '{name}' to the method's modalities (pretrained on {[x['name'] for x in spec['modalities']]})")
        if int(have) != d:
            raise ConfigError(f"modality '{name}' has {have} input features here but {d} in the pretraining", where=where,
                              fix="pretrain on the same cohort and modalities as the benchmark")


@register_method("pretrained_probe", kind="torch", modalities=("slide", "omics", "clinical"), params=PretrainedProbeParams,
                 description="frozen (or fine-tuned) encoders of `modaltune pretrain` + linear heads")
def build_pretrained_probe(info: Any, **params: Any) -> MultiTaskModel:
    """Params: :class:`PretrainedProbeParams` (validated, defaults filled)."""
    from modaltune.encoders.pretrained_multimodal import load_pretrained

    model_kw, enc_kw = split_params(params)
    if not enc_kw["checkpoint"]:
        raise ConfigError("method 'pretrained_probe' needs params.checkpoint", where="method.params.checkpoint",
                          fix="set it to the --out folder of `modaltune pretrain`")
    pretrained, meta = load_pretrained(enc_kw["checkpoint"])
    _check_inputs(info, meta["spec"], "method.params.checkpoint")
    held = frozenset(str(p) for p in meta.get("eval_ids", []))
    return wrap(info, PretrainedEmbedder(pretrained, enc_kw["freeze"], held, str(enc_kw["checkpoint"])), model_kw, "pretrained_probe")
