"""``cmta``: Cross-Modal Translation and Alignment (Zhou and Chen, ICCV 2023; FT-ZHOU-ZZZ/CMTA ``CMTA``).

Two parallel encoder-decoder branches, bridged by cross-modal attention (official ``small`` sizes):

- pathology: patches ``Linear(D, 256), ReLU, Dropout(.25), Linear(256, 256), ReLU, Dropout(.25)``
  (``pathomics_fc``); genomics: one SNN per signature group (``genomics_fc``, widths [1024, 256],
  S = 6 tokens; :mod:`modaltune.encoders.signatures`).
- encoders (``pathomics_encoder`` / ``genomics_encoder``): CLS token + two pre-LN Nystrom
  attention layers (8 heads of 32, 128 landmarks, :class:`~modaltune.layers.nystrom.NystromAttention`)
  + LayerNorm; the pathology encoder pads the bag to a square by repeating its first patches and
  runs PPEG (depth-wise 7/5/3 convolutions) between the two layers, as TransMIL. Sequences shorter
  than the 128 landmarks (the 7 genomic tokens, bags under ~120 patches) take the layer's exact
  reduced form instead of being padded to 128 rows (same outputs to fp32 rounding; the 128 x 128 pinv
  was ~70% of a 32-patch step, issue 14).
- bridge: one-head attention each way (``P_in_G_Att``, ``G_in_P_Att``), pathology tokens ``P`` (n, 256),
  genomic tokens ``G`` (S, 256)::

      P_in_G = softmax(P Wq (G Wk)^T / 16) G Wv Wo   (n, 256)     G_in_P = softmax(G Wq (P Wk)^T / 16) P Wv Wo   (S, 256)

- decoders (same form as the encoders) turn ``P_in_G`` / ``G_in_P`` into CLS tokens ``p^``, ``g^``:
  each modality's representation translated from the other.
- fusion: ``mm([(p + p^) / 2, (g + g^) / 2])`` (concat MLP, default, or gated bilinear); the
  discrete-time survival head is ``heads.<task>`` (official ``classifier``).

Loss (official ``nll_surv_l1``): ``NLL + align_weight * (L1(sg(p), p^) + L1(sg(g), g^))`` with
``sg`` = stop-gradient (the encoders are the targets of the translation) and L1 the mean absolute
difference over the 256 features; returned as the auxiliary loss ``align`` (see
:class:`~modaltune.methods.base.MultiTaskModel`), averaged over the patients that have both modalities.

Batches: each patient's bag runs through the pathology branch on its own valid patches (the
official batch size is 1), so padding never enters; the genomic branch runs batched.

Missing modalities (patients are kept, no parameters added): without both modalities there is
nothing to translate, so both decoders are skipped for that patient and it has no alignment loss;
a modality it has enters fusion as its encoder CLS alone (``p`` instead of ``(p + p^) / 2``), a
modality it lacks as zeros. Signature tokens of a patient without omics are not used.
"""
from __future__ import annotations

import math
from itertools import pairwise
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from modaltune.encoders.signatures import SignatureSNNs, concat_omics
from modaltune.encoders.slide.transmil import _PPEG
from modaltune.errors import ConfigError, InputError
from modaltune.layers.nystrom import NystromAttention
from modaltune.methods._coattn import build_signature_groups, fusion_head, slide_inputs
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.registry import register_method
from modaltune.methods.requirements import signature_overlap

__all__ = ["CMTAEncoder", "CMTAParams", "build_cmta"]

#: official ``size_dict``: pathology MLP widths (after the input width) and signature SNN widths
PATH_SIZES = {"small": [256, 256], "large": [512, 256]}
OMIC_SIZES = {"small": [1024, 256], "large": [1024, 1024, 1024, 256]}
DIM = 256


class CMTAParams(HeadParams):
    """Parameters of ``cmta`` (official defaults; + the head/loss parameters of ``HeadParams``)."""

    signatures: str | None = Field(None, description="CSV of signature groups, one column of gene symbols each (shared/data/tcga/porpoise/signatures.csv); relative to the working directory")
    omics: list[str] | None = Field(None, description="omics blocks the signatures are mapped onto (None: every omics block of the cohort)")
    fusion: Literal["concat", "bilinear"] = Field("concat", description="fusion of the two branch embeddings (official default concat)")
    model_size: Literal["small", "large"] = Field("small", description="small: pathology [256, 256], SNN [1024, 256]; large: [512, 256], [1024, 1024, 1024, 256]")
    align_weight: float = Field(0.5, ge=0.0, description="weight of the alignment loss (official --alpha; default 0.5, run.sh: 1.0 BLCA/GBMLGG/UCEC, 100 BRCA, 1e-4 LUAD)")
    align_loss: Literal["l1", "cosine", "mse"] = Field("l1", description="distance between encoder and translated CLS tokens (official run.sh: nll_surv_l1)")


class _TransLayer(nn.Module):
    """Pre-LN Nystrom attention block without FFN (official ``TransLayer``): ``x + attn(norm(x))``."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = NystromAttention(dim, dim_head=dim // 8, heads=8, num_landmarks=dim // 2, pinv_iterations=6, residual=True, dropout=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x))


class _Branch(nn.Module):
    """Official ``Transformer_P`` (``ppeg=True``) / ``Transformer_G``: ``x (B, n, dim) -> (cls (B, dim), tokens (B, n', dim))``.

    With PPEG the n tokens are first padded to ``n' = ceil(sqrt(n))^2`` by repeating the first ones.
    """

    def __init__(self, dim: int, ppeg: bool):
        super().__init__()
        if ppeg:
            self.pos_layer = _PPEG(dim)
        self.ppeg = ppeg
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 1e-6)  # official normal(std=1e-6)
        self.layer1 = _TransLayer(dim)
        self.layer2 = _TransLayer(dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        side = math.ceil(math.sqrt(x.shape[1]))
        if self.ppeg:
            x = torch.cat([x, x[:, : side * side - x.shape[1]]], dim=1)
        h = self.layer1(torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1))
        if self.ppeg:
            b, _, c = h.shape
            square = h[:, 1:].transpose(1, 2).reshape(b, c, side, side)
            h = torch.cat([h[:, :1], self.pos_layer(square).flatten(2).transpose(1, 2)], dim=1)
        h = self.norm(self.layer2(h))
        return h[:, 0], h[:, 1:]


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(0.25)]
    return nn.Sequential(*layers)


def _init(m: nn.Module) -> None:
    # official initialize_weights: xavier-normal Linear weights, zero biases (LayerNorm keeps 1 / 0)
    if isinstance(m, nn.Linear):
        nn.init.xavier_normal_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class CMTAEncoder(nn.Module):
    """CMTA without its classifier: ``forward(batch) -> (B, 256)``; ``forward_with_aux`` adds ``{"align": loss}``.

    Attribute names are the official ones, so ``state_dict`` keys match official checkpoints
    (:func:`~modaltune.methods._coattn.load_official_state_dict` maps ``classifier.*`` to the head).
    """

    def __init__(self, info: Any, groups, *, fusion: str = "concat", model_size: str = "small", align_weight: float = 0.5, align_loss: str = "l1"):
        super().__init__()
        if not info.slide_dim:
            raise ConfigError("cmta needs a slide modality", where="method.modalities", fix="add slide")
        self.info, self.groups, self.blocks, self.fusion = info, groups, list(groups.blocks), fusion
        self.align_weight, self.align_loss = float(align_weight), align_loss
        self.pathomics_fc = _mlp([int(info.slide_dim), *PATH_SIZES[model_size]])
        self.genomics_fc = SignatureSNNs(groups, OMIC_SIZES[model_size], dropout=0.25)
        self.pathomics_encoder = _Branch(DIM, ppeg=True)
        self.pathomics_decoder = _Branch(DIM, ppeg=True)
        self.P_in_G_Att = nn.MultiheadAttention(DIM, 1, batch_first=True)
        self.G_in_P_Att = nn.MultiheadAttention(DIM, 1, batch_first=True)
        self.genomics_encoder = _Branch(DIM, ppeg=False)
        self.genomics_decoder = _Branch(DIM, ppeg=False)
        self.mm = fusion_head(fusion, DIM)
        self.apply(_init)
        self.out_dim = DIM
        self.input_coverage = {"signature": groups.coverage}  # written to the run folder by the trainer

    def _distance(self, target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Per-patient distance ``(B,)`` between the (detached) encoder CLS and its translation."""
        target = target.detach()
        if self.align_loss == "l1":
            return (target - pred).abs().mean(1)
        if self.align_loss == "mse":
            return (target - pred).pow(2).mean(1)
        return 1.0 - F.cosine_similarity(target, pred, dim=1)

    def forward_with_aux(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, omic_present = concat_omics(batch, self.blocks)
        if x.shape[1] != sum(len(self.info.omics_feature_names[b]) for b in self.blocks):
            raise InputError(f"omics blocks {self.blocks} have {x.shape[1]} features in the batch, the model was built for a different width", where="batch.omics")
        g_cls, g_tok = self.genomics_encoder(self.genomics_fc(x))  # (B, 256), (B, S, 256)
        feats, mask, slide_present = slide_inputs(batch, self.info)
        both = slide_present & omic_present
        zero = g_cls.new_zeros(DIM)
        p_cls, p_hat, g_hat = [zero] * len(x), [zero] * len(x), [zero] * len(x)
        for b in range(len(x)):
            if not bool(slide_present[b]):
                continue
            patches = self.pathomics_fc(feats[b, mask[b]].to(g_cls.dtype)[None])  # (1, n, 256): valid patches only
            p_cls_b, p_tok = self.pathomics_encoder(patches)
            p_cls[b] = p_cls_b[0]
            if bool(both[b]):  # translation needs the other modality
                p_in_g, _ = self.P_in_G_Att(p_tok, g_tok[b:b + 1], g_tok[b:b + 1], need_weights=False)
                g_in_p, _ = self.G_in_P_Att(g_tok[b:b + 1], p_tok, p_tok, need_weights=False)
                p_hat[b] = self.pathomics_decoder(p_in_g)[0][0]
                g_hat[b] = self.genomics_decoder(g_in_p)[0][0]
        p_cls, p_hat, g_hat = torch.stack(p_cls), torch.stack(p_hat), torch.stack(g_hat)
        col = both[:, None]
        h_path = torch.where(col, (p_cls + p_hat) / 2, torch.where(slide_present[:, None], p_cls, zero))
        h_gen = torch.where(col, (g_cls + g_hat) / 2, torch.where(omic_present[:, None], g_cls, zero))
        emb = self.mm(h_path, h_gen) if self.fusion == "bilinear" else self.mm(torch.cat([h_path, h_gen], dim=1))
        dist = self._distance(p_cls, p_hat) + self._distance(g_cls, g_hat)
        # mean over the patients with both modalities; 0 (still in the graph) when there is none
        align = (dist * both).sum() / both.sum().clamp(min=1)
        return emb, {"align": self.align_weight * align}

    def forward(self, batch: dict) -> torch.Tensor:
        return self.forward_with_aux(batch)[0]


@register_method("cmta", kind="torch", modalities=("slide", "omics"), requires=("slide", "omics"), params=CMTAParams, check_data=signature_overlap,
                 description="CMTA: parallel pathology/genomics encoder-decoders, cross-modal translation and alignment loss (Zhou and Chen 2023)")
def build_cmta(info: Any, **params: Any):
    """Params: :class:`CMTAParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    groups = build_signature_groups(info, enc.pop("signatures"), enc.pop("omics"), "cmta")
    return wrap(info, CMTAEncoder(info, groups, **enc), model_params, "cmta")
