"""Shared parts of MCAT and MOTCat (same backbone, different co-attention): parameters, the
backbone after the co-attention, missing-modality handling and loading official checkpoints.

Backbone (official ``MCAT_Surv`` / ``MOTCAT_Surv``, ``small`` sizes): patches ``Linear(D -> 256),
ReLU, Dropout(0.25)`` (``wsi_net``); one SNN per signature group (``sig_networks``, S = 6 tokens);
the co-attention turns the patch bag into S genomics-guided tokens; per modality a 2-layer
post-norm transformer (d 256, 8 heads, FFN 512, ReLU, dropout), gated attention pooling over the S
tokens and ``rho = Linear(256, 256), ReLU, Dropout``; fusion ``concat`` (``mm = Linear(512, 256),
ReLU, Linear(256, 256), ReLU``) or ``bilinear`` (gated Kronecker, 256 // 8 = 32 per modality);
``classifier`` = the discrete-time survival head (``heads.<task>`` here).

Missing modalities (no extra parameters, so official checkpoints load strictly): a patient without
a slide gets a zero pathology embedding ``h_path = 0`` before fusion (its co-attention is not
used); a patient without any of the omics blocks gets signature tokens from all-zero inputs (the
training-fold mean after z-scoring; they still act as the co-attention queries / OT targets) and a
zero genomics embedding ``h_omic = 0`` before fusion. A missing block among several (e.g. CNV but
not RNA) is zero-filled the same way.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from modaltune.encoders.signatures import SignatureGroups, SignatureSNNs, concat_omics, signature_groups
from modaltune.errors import ConfigError, InputError
from modaltune.layers.bilinear_fusion import BilinearFusion
from modaltune.layers.gated_attention import GatedAttention
from modaltune.methods._torch_common import HeadParams

__all__ = ["CoAttnParams", "CoAttnBackbone", "build_signature_groups", "load_official_state_dict", "slide_inputs"]

#: hidden widths of the signature SNNs (official ``size_dict_omic``)
OMIC_SIZES = {"small": [256, 256], "big": [1024, 1024, 1024, 256]}
DIM = 256  # token width of every official stage after the input layers


class CoAttnParams(HeadParams):
    """Parameters shared by MCAT and MOTCat (+ the head/loss parameters of :class:`HeadParams`)."""

    signatures: str | None = Field(None, description="CSV of signature groups, one column of gene symbols each (MCAT: shared/data/tcga/porpoise/signatures.csv); relative to the working directory")
    omics: list[str] | None = Field(None, description="omics blocks the signatures are mapped onto (None: every omics block of the cohort)")
    fusion: Literal["concat", "bilinear"] = Field("concat", description="late fusion of the two embeddings (official default concat)")
    model_size_omic: Literal["small", "big"] = Field("small", description="signature SNN widths: small [256, 256], big [1024, 1024, 1024, 256]")
    dropout: float = Field(0.25, ge=0.0, lt=1.0, description="dropout of the transformers, attention pooling and rho layers")


def build_signature_groups(info: Any, signatures: str | None, omics: list[str] | None, method: str) -> SignatureGroups:
    """Map the signature file onto the cohort's omics blocks (coverage logged and kept on the groups)."""
    if not signatures:
        raise ConfigError(f"{method} needs the genomic signature groups", where="method.params.signatures",
                          fix="set signatures: <path to MCAT's signatures.csv> (shared/data/tcga/porpoise/signatures.csv)")
    names = dict(getattr(info, "omics_feature_names", None) or {})
    blocks = list(omics) if omics else list(info.omics_dims)
    unknown = [b for b in blocks if b not in names]
    if unknown:
        raise ConfigError(f"omics block(s) {unknown} are not among the method's omics modalities {sorted(names)}", where="method.params.omics",
                          fix=f"use some of {sorted(names)}")
    return signature_groups(signatures, {b: names[b] for b in blocks})


def slide_inputs(batch: dict, info: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(features (B, N, D) float, mask (B, N) True = valid, present (B,))``; ``present`` = the
    patient has a slide and at least one valid patch."""
    s = batch["slide"]
    feats, mask = s["features"].float(), s["mask"].bool()
    present = mask.any(1)
    mm = batch.get("modality_mask", {}).get(info.slide_modality)
    if mm is not None:
        present = present & mm.bool()
    return feats, mask, present


def fusion_head(fusion: str, dim: int) -> nn.Module:
    """The official fusion of the MCAT family (``self.mm``): ``concat`` = Linear(2d, d), ReLU,
    Linear(d, d), ReLU on the two pooled embeddings; ``bilinear`` = gated Kronecker
    :class:`BilinearFusion` (scale 8/8). Both map ``(B, d), (B, d) -> (B, d)``."""
    if fusion == "concat":
        return nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())
    if fusion == "bilinear":
        return BilinearFusion(dim1=dim, dim2=dim, scale_dim1=8, scale_dim2=8, mmhid=dim)
    raise ConfigError(f"unknown fusion '{fusion}'", where="method.params.fusion", fix="use concat or bilinear")


def _transformer(dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d_model=DIM, nhead=8, dim_feedforward=512, dropout=dropout, activation="relu", batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


class CoAttnBackbone(nn.Module):
    """Everything of MCAT/MOTCat but the co-attention (``self.coattn``, set by the subclass).

    Attribute names are the official ones, so ``state_dict`` keys match official checkpoints.
    Subclasses implement :meth:`coattend` ``(tokens (B, S, 256), patches (B, N, 256), mask, present)
    -> (B, S, 256)``. ``forward(batch) -> (B, 256)``.
    """

    def __init__(self, info: Any, groups: SignatureGroups, *, fusion: str = "concat", model_size_omic: str = "small", dropout: float = 0.25):
        super().__init__()
        if not info.slide_dim:
            raise ConfigError("co-attention methods need a slide modality", where="method.modalities", fix="add slide")
        self.info, self.groups, self.blocks, self.fusion = info, groups, list(groups.blocks), fusion
        self.wsi_net = nn.Sequential(nn.Linear(int(info.slide_dim), DIM), nn.ReLU(), nn.Dropout(0.25))
        self.sig_networks = SignatureSNNs(groups, OMIC_SIZES[model_size_omic], dropout=0.25)
        self.path_transformer = _transformer(dropout)
        self.path_attention_head = GatedAttention(DIM, DIM, dropout=dropout)
        self.path_rho = nn.Sequential(nn.Linear(DIM, DIM), nn.ReLU(), nn.Dropout(dropout))
        self.omic_transformer = _transformer(dropout)
        self.omic_attention_head = GatedAttention(DIM, DIM, dropout=dropout)
        self.omic_rho = nn.Sequential(nn.Linear(DIM, DIM), nn.ReLU(), nn.Dropout(dropout))
        self.mm = fusion_head(fusion, DIM)
        self.out_dim = DIM
        self.input_coverage = {"signature": groups.coverage}  # written to the run folder by the trainer

    def coattend(self, tokens: torch.Tensor, patches: torch.Tensor, mask: torch.Tensor, present: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def signature_tokens(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (B, S, 256), present (B,))`` from the concatenated omics blocks."""
        x, present = concat_omics(batch, self.blocks)
        if x.shape[1] != sum(len(v) for v in (self.info.omics_feature_names[b] for b in self.blocks)):
            raise InputError(f"omics blocks {self.blocks} have {x.shape[1]} features in the batch, the model was built for a different width", where="batch.omics")
        return self.sig_networks(x), present

    def embed_tokens(self, coattn: torch.Tensor, slide_present: torch.Tensor, tokens: torch.Tensor, omic_present: torch.Tensor) -> torch.Tensor:
        """Transformers, pooling, rho, missing-modality zeroing and fusion: ``-> (B, 256)``."""
        h_path, _ = self.path_attention_head(self.path_transformer(coattn))
        h_path = self.path_rho(h_path)
        h_omic, _ = self.omic_attention_head(self.omic_transformer(tokens))
        h_omic = self.omic_rho(h_omic)
        zero = torch.zeros((), dtype=h_path.dtype, device=h_path.device)
        h_path = torch.where(slide_present[:, None], h_path, zero)
        h_omic = torch.where(omic_present[:, None], h_omic, zero)
        if self.fusion == "bilinear":
            return self.mm(h_path, h_omic)
        return self.mm(torch.cat([h_path, h_omic], dim=1))

    def forward(self, batch: dict) -> torch.Tensor:
        tokens, omic_present = self.signature_tokens(batch)
        feats, mask, slide_present = slide_inputs(batch, self.info)
        patches = self.wsi_net(feats.to(self.wsi_net[0].weight.dtype))
        return self.embed_tokens(self.coattend(tokens, patches, mask, slide_present), slide_present, tokens, omic_present)


def load_official_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], task: str | None = None, strict: bool = True):
    """Load an official MCAT/MOTCat checkpoint into a modaltune model (``MultiTaskModel``).

    ``classifier.*`` goes to the survival head ``heads.<task>.net.0.*`` (``task``: the only
    survival task by default); every other key to ``encoder.<key>``. ``module.`` prefixes left by
    ``nn.DataParallel`` are removed.
    """
    heads = getattr(model, "heads", {})
    if task is None:
        surv = [n for n, t in model.task_infos.items() if t.spec.kind == "survival"]
        if len(surv) != 1:
            raise ConfigError(f"cannot tell which head takes the official classifier (survival tasks: {surv})", where="load_official_state_dict", fix="pass task=<name>")
        task = surv[0]
    if task not in heads:
        raise ConfigError(f"no head for task '{task}'", where="load_official_state_dict", fix=f"use one of {sorted(heads)}")
    mapped = {}
    for k, v in state_dict.items():
        k = k.replace("module.", "")
        mapped[f"heads.{task}.net.0.{k[len('classifier.'):]}" if k.startswith("classifier.") else f"encoder.{k}"] = v
    return model.load_state_dict(mapped, strict=strict)
