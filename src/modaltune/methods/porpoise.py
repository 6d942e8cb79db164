"""``porpoise``: PORPOISE multimodal fusion (MMF): ABMIL on patches + SNN on omics, gated Kronecker fusion.

Chen et al., "Pan-cancer integrative histology-genomic analysis via multimodal deep learning",
Cancer Cell 2022; official code mahmoodlab/PORPOISE ``models/model_porpoise.py`` ``PorpoiseMMF``.
Defaults are that class's defaults (``size_arg='small'``, ``fusion='bilinear'``, ``scale_dim1 =
scale_dim2 = 8``, both gates on, ``skip=True``, ``dropinput=0.10``, ``dropout=0.25``):

* histology: ``attention_net`` = Dropout(0.10) -> Linear(D, 512) -> ReLU -> Dropout(0.25) -> gated
  attention (512 -> 256, dropout 0.25 after each gate) -> softmax over the valid patches -> pooled
  512-d -> ``rho`` Linear(512, 256) -> ReLU -> Dropout(0.25);
* omics: ``fc_omic`` = two SNN blocks (Linear -> ELU -> AlphaDropout(0.25)) of width 256 on the
  omics vector (every omics block concatenated, as PORPOISE's single genomic vector);
* fusion ``mm``: :class:`modaltune.layers.kronecker_fusion.GatedKroneckerFusion` with dim 256 -> 32
  per modality, ``f = [o_path; 1] (x) [o_omic; 1]`` (33 x 33 = 1089), encoder1 1089 -> 256, skip of the
  two 256-d inputs, encoder2 768 -> 256 (``fusion: concat`` gives the official concat variant);
* the official ``classifier_mm`` Linear(256, 4) is the survival head (discrete-time hazards, NLL).

Parameter and state-dict names follow the official ones (``attention_net.1.weight``, ``mm.encoder1.0``,
...; see :func:`official_state_dict`), so a published checkpoint loads strictly.

Missing modalities: a patient is kept whatever it lacks. A patient without a slide (modality_mask
False or no valid patch) is never run through ``attention_net``; its 256-d histology vector is zeros
and its gated embedding is zeroed, so ``[0; 1] (x) [o_omic; 1]`` keeps only the omics terms (the
branch is dropped from the fusion, no extra parameters). Likewise for a patient without omics. The
gate of the present modality then reads zeros for the absent one. With ``fusion: concat`` the absent
256-d vector is zeros. The official code assumes both modalities.
"""
from __future__ import annotations

from itertools import pairwise
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from modaltune.encoders.fusion import (
    _omics_names,
    _omics_reader,
    _slide_reader,
    slide_modality_name,
)
from modaltune.errors import ConfigError
from modaltune.layers.gated_attention import attention_mil_net, attention_pool
from modaltune.layers.kronecker_fusion import GatedKroneckerFusion, snn_block
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.registry import register_method

__all__ = ["PorpoiseEncoder", "PorpoiseParams", "build_porpoise", "official_state_dict"]


class PorpoiseParams(HeadParams):
    """Parameters of ``porpoise`` (+ the head/loss parameters of :class:`HeadParams`); defaults = ``PorpoiseMMF``'s."""

    omics: str | list[str] | None = Field(None, description="omics block name(s) forming the omics vector (None: every block, concatenated)")
    fusion: Literal["bilinear", "concat"] = Field("bilinear", description="bilinear: gated Kronecker fusion; concat: Linear-ReLU-Linear-ReLU on [h_path; h_omic]")
    path_hidden: int = Field(512, ge=1, description="width of the patch projection (size 'small': 512)")
    attn_dim: int = Field(256, ge=1, description="gated-attention width and width of rho / the omics SNN / fusion output (size 'small': 256)")
    omic_hidden: tuple[int, ...] = Field((256, 256), description="SNN widths; the last must equal attn_dim (official: [256, 256])")
    dropout: float = Field(0.25, ge=0.0, lt=1.0, description="dropout of the patch projection, attention gates, rho and fusion")
    dropinput: float = Field(0.10, ge=0.0, lt=1.0, description="dropout on the input patch features")
    scale_dim1: int = Field(8, ge=1, description="histology gated embedding width = 256 // scale_dim1")
    scale_dim2: int = Field(8, ge=1, description="omics gated embedding width = 256 // scale_dim2")
    gate_path: bool = Field(True, description="gate the histology branch")
    gate_omic: bool = Field(True, description="gate the omics branch")
    skip: bool = Field(True, description="concatenate the two 256-d inputs before the last fusion layer")
    use_mlp: bool = Field(False, description="omics blocks Linear-ReLU-Dropout instead of SNN blocks")


class PorpoiseEncoder(nn.Module):
    """``batch -> (B, attn_dim)`` fused embedding (see the module docstring). ``out_dim = attn_dim``."""

    def __init__(self, info: Any, *, omics: str | list[str] | None = None, fusion: str = "bilinear", path_hidden: int = 512, attn_dim: int = 256,
                 omic_hidden: tuple[int, ...] = (256, 256), dropout: float = 0.25, dropinput: float = 0.10, scale_dim1: int = 8, scale_dim2: int = 8,
                 gate_path: bool = True, gate_omic: bool = True, skip: bool = True, use_mlp: bool = False):
        super().__init__()
        in_dim = getattr(info, "slide_dim", None)
        if not in_dim:
            raise ConfigError("porpoise needs the slide modality but the cohort has none", where="method.params.modalities")
        if not omic_hidden or int(omic_hidden[-1]) != attn_dim:
            raise ConfigError(f"porpoise omic_hidden must end with attn_dim={attn_dim}, got {list(omic_hidden)}", where="method.params.omic_hidden")
        names = _omics_names(info, omics)
        dims = dict(info.omics_dims)
        g = sum(int(dims[n]) for n in names) + (len(names) if len(names) > 1 else 0)  # + one missing-block indicator per block
        self.read_slide = _slide_reader(slide_modality_name(info))
        self.read_omics = _omics_reader(names)
        self.fusion = fusion
        self.attention_net = attention_mil_net(int(in_dim), path_hidden, attn_dim, dropout, dropinput)
        self.rho = nn.Sequential(nn.Linear(path_hidden, attn_dim), nn.ReLU(), nn.Dropout(dropout))
        block = (lambda i, o: nn.Sequential(nn.Linear(i, o), nn.ReLU(), nn.Dropout(0.25))) if use_mlp else (lambda i, o: snn_block(i, o, 0.25))
        widths = [g] + [int(h) for h in omic_hidden]
        self.fc_omic = nn.Sequential(*[block(a, b) for a, b in pairwise(widths)])
        if fusion == "bilinear":
            self.mm: nn.Module = GatedKroneckerFusion(attn_dim, attn_dim, scale_dim1=scale_dim1, scale_dim2=scale_dim2, mmhid=attn_dim, hidden1=256,
                                                      gate1=gate_path, gate2=gate_omic, skip="inputs" if skip else None, dropout=dropout,
                                                      encoder_dropout=False, ungated="h")
        elif fusion == "concat":
            self.mm = nn.Sequential(nn.Linear(2 * attn_dim, attn_dim), nn.ReLU(), nn.Linear(attn_dim, attn_dim), nn.ReLU())
        else:
            raise ConfigError(f"unknown porpoise fusion '{fusion}'", where="method.params.fusion", fix="use bilinear or concat")
        self.out_dim = int(attn_dim)
        self.slide_name, self.omics_name = slide_modality_name(info), "+".join(names)

    def modality_branches(self) -> dict[str, nn.Module]:
        """``{modality: module}`` whose output is that modality's embedding before fusion: ``rho``
        (the pooled histology vector of the patients with a slide) and ``fc_omic``."""
        return {self.slide_name: self.rho, self.omics_name: self.fc_omic}

    def forward(self, batch: dict) -> torch.Tensor:
        slide, has_slide = self.read_slide(batch)
        x_omic, has_omic = self.read_omics(batch)
        B = has_slide.shape[0]
        ref = self.rho[0].weight
        h_path = ref.new_zeros(B, self.out_dim)
        if bool(has_slide.any()):
            rows = has_slide.nonzero(as_tuple=True)[0]
            pooled, _ = attention_pool(self.attention_net, slide["features"][rows].to(ref.dtype), slide["mask"][rows])
            h_path = h_path.index_put((rows,), self.rho(pooled))
        h_omic = self.fc_omic(torch.where(has_omic[:, None], x_omic.to(ref.dtype), ref.new_zeros(())))
        if self.fusion == "bilinear":
            return self.mm(h_path, h_omic, has_slide, has_omic)
        zero = ref.new_zeros(())
        return self.mm(torch.cat([h_path, torch.where(has_omic[:, None], h_omic, zero)], dim=1))


def official_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], task: str) -> dict[str, torch.Tensor]:
    """Rename an official ``PorpoiseMMF`` state dict to this model's keys.

    Every official key ``k`` becomes ``encoder.k`` except ``classifier_mm.*``, which is the head of
    survival task ``task`` (``heads.<task>.net.0.*``). ``.module`` (DataParallel) is dropped as the
    official evaluation code does. Load the result with ``model.load_state_dict(..., strict=True)``.
    """
    out = {}
    for k, v in state_dict.items():
        k = k.replace(".module", "")
        out[f"heads.{task}.net.0.{k[len('classifier_mm.'):]}" if k.startswith("classifier_mm.") else f"encoder.{k}"] = v
    return out


@register_method("porpoise", kind="torch", modalities=("slide", "omics"), requires=("slide", "omics"), params=PorpoiseParams, branched=True,
                 description="PORPOISE MMF: ABMIL + SNN, gated Kronecker fusion (Chen et al. 2022)")
def build_porpoise(info: Any, **params: Any):
    """Params: :class:`PorpoiseParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    return wrap(info, PorpoiseEncoder(info, **enc), model_params, "porpoise")
