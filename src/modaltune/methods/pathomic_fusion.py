"""``pathomic_fusion``: Pathomic Fusion, gated attention + Kronecker fusion of histology and genomics.

Chen et al., "Pathomic Fusion: An Integrated Framework for Fusing Histopathology and Genomic
Features for Cancer Diagnosis and Prognosis", IEEE TMI 2020; official code mahmoodlab/PathomicFusion
(``networks.py`` ``PathomicNet`` + ``MaxNet``, ``fusion.py`` ``BilinearFusion``). Defaults are the
published survival command (CNN+SNN, ``surv_15_rnaseq``): ``--fusion_type pofusion --mmhid 64
--use_bilinear 1 --omic_gate 0`` with ``options.py`` defaults ``path_dim = omic_dim = 32``,
``path_gate 1``, ``skip 0``, scales 1, ``dropout_rate 0.25``:

* genomics ``omic_net`` (``MaxNet``): SNN blocks 64 -> 48 -> 32 -> 32 (Linear -> ELU -> AlphaDropout);
* fusion (:class:`modaltune.layers.kronecker_fusion.GatedKroneckerFusion`, Pathomic variant):
  the histology branch gated by ``sigmoid(v_path^T W v_omic)`` (``nn.Bilinear``), the omics branch
  ungated (``o = linear_o(v)``), ``f = [o_path; 1] (x) [o_omic; 1]`` (33 x 33), encoder1 1089 -> 64,
  encoder2 64 -> 64, dropout after each, ``init_max_weights`` on its Linear layers;
* the official ``classifier`` Linear(64, 1) is the task head (``survival_head: cox`` gives the
  official one-output Cox head; the default here is the framework's discrete-time hazard head).

Histology branch (departure): the official model takes a 32-d embedding from a separately trained
VGG19 on 512 x 512 ROIs (``x_path``); here it takes the patch-feature bag and pools it ABMIL-style
(``path_net.attention_net``: Linear(D, 512) -> ReLU -> Dropout -> gated attention 256, softmax over
the valid patches), then ``path_net.rho`` Linear(512, 32) -> ReLU -> Dropout(0.05) (the last layer
of the official VGG head). The cell-graph (GCN) branch of Pathomic Fusion is out of scope.

Kept only so official checkpoints load strictly (no effect on the output): ``omic_net.classifier``
and the frozen ``output_range``/``output_shift`` parameters of ``MaxNet`` and ``PathomicNet``.

Missing modalities: a patient without a slide is never run through ``path_net``; one without omics
has a zero omics vector; in the fusion the absent branch's input and gated embedding are zeroed, so
``[0; 1] (x) [o; 1]`` keeps only the present modality's terms (dropped from the fusion, no extra
parameters). The official code assumes both.
"""
from __future__ import annotations

from itertools import pairwise
from typing import Any

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

__all__ = ["PathomicFusionEncoder", "PathomicFusionParams", "build_pathomic_fusion", "official_state_dict"]


class PathomicFusionParams(HeadParams):
    """Parameters of ``pathomic_fusion`` (+ the head/loss parameters of :class:`HeadParams`)."""

    omics: str | list[str] | None = Field(None, description="omics block name(s) forming the genomic vector (None: every block, concatenated)")
    path_dim: int = Field(32, ge=1, description="width of the histology embedding entering the fusion")
    omic_dim: int = Field(32, ge=1, description="width of the genomic embedding entering the fusion")
    omic_hidden: tuple[int, ...] = Field((64, 48, 32), description="MaxNet hidden widths before the omic_dim layer")
    mmhid: int = Field(64, ge=1, description="width of the fusion encoders (the embedding)")
    dropout: float = Field(0.25, ge=0.0, lt=1.0, description="dropout_rate of the SNN and the fusion")
    path_gate: bool = Field(True, description="gate the histology branch")
    omic_gate: bool = Field(False, description="gate the omics branch (published survival command: off)")
    use_bilinear: bool = Field(True, description="gate logits by nn.Bilinear(v_path, v_omic)")
    skip: bool = Field(False, description="concatenate [o_path; 1], [o_omic; 1] before encoder2")
    path_scale: int = Field(1, ge=1, description="gated histology width = path_dim // path_scale")
    omic_scale: int = Field(1, ge=1, description="gated omics width = omic_dim // omic_scale")
    path_hidden: int = Field(512, ge=1, description="ABMIL patch projection width (modaltune's histology branch)")
    attn_dim: int = Field(256, ge=1, description="ABMIL gated-attention width (modaltune's histology branch)")
    path_dropout: float = Field(0.25, ge=0.0, lt=1.0, description="dropout of the ABMIL projection and gates")


class MaxNet(nn.Module):
    """The official genomic SNN: ``encoder`` = SNN blocks, plus the unused ``classifier`` and output scaling."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], omic_dim: int, dropout: float, label_dim: int = 1):
        super().__init__()
        widths = [in_dim, *[int(h) for h in hidden], omic_dim]
        self.encoder = nn.Sequential(*[snn_block(a, b, dropout) for a, b in pairwise(widths)])
        self.classifier = nn.Sequential(nn.Linear(omic_dim, label_dim))  # unused: checkpoint compatibility
        self.output_range = nn.Parameter(torch.tensor([6.0]), requires_grad=False)
        self.output_shift = nn.Parameter(torch.tensor([-3.0]), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class PathomicFusionEncoder(nn.Module):
    """``batch -> (B, mmhid)`` fused embedding (see the module docstring)."""

    def __init__(self, info: Any, *, omics: str | list[str] | None = None, path_dim: int = 32, omic_dim: int = 32, omic_hidden: tuple[int, ...] = (64, 48, 32),
                 mmhid: int = 64, dropout: float = 0.25, path_gate: bool = True, omic_gate: bool = False, use_bilinear: bool = True, skip: bool = False,
                 path_scale: int = 1, omic_scale: int = 1, path_hidden: int = 512, attn_dim: int = 256, path_dropout: float = 0.25):
        super().__init__()
        in_dim = getattr(info, "slide_dim", None)
        if not in_dim:
            raise ConfigError("pathomic_fusion needs the slide modality but the cohort has none", where="method.params.modalities")
        names = _omics_names(info, omics)
        dims = dict(info.omics_dims)
        g = sum(int(dims[n]) for n in names) + (len(names) if len(names) > 1 else 0)
        self.read_slide = _slide_reader(slide_modality_name(info))
        self.read_omics = _omics_reader(names)
        self.path_net = nn.Module()
        self.path_net.attention_net = attention_mil_net(int(in_dim), path_hidden, attn_dim, path_dropout, 0.0)
        self.path_net.rho = nn.Sequential(nn.Linear(path_hidden, path_dim), nn.ReLU(), nn.Dropout(0.05))
        self.omic_net = MaxNet(g, tuple(omic_hidden), omic_dim, dropout)
        self.fusion = GatedKroneckerFusion(path_dim, omic_dim, scale_dim1=path_scale, scale_dim2=omic_scale, mmhid=mmhid, gate1=path_gate, gate2=omic_gate,
                                           use_bilinear=use_bilinear, skip="gated" if skip else None, dropout=dropout, encoder_dropout=True,
                                           ungated="direct", init_max=True)
        self.output_range = nn.Parameter(torch.tensor([6.0]), requires_grad=False)  # unused: checkpoint compatibility
        self.output_shift = nn.Parameter(torch.tensor([-3.0]), requires_grad=False)
        self.path_dim, self.out_dim = int(path_dim), int(mmhid)
        self.slide_name, self.omics_name = slide_modality_name(info), "+".join(names)

    def modality_branches(self) -> dict[str, nn.Module]:
        """``{modality: module}`` whose output is that modality's embedding before fusion:
        ``path_net.rho`` (patients with a slide) and ``omic_net``."""
        return {self.slide_name: self.path_net.rho, self.omics_name: self.omic_net}

    def forward(self, batch: dict) -> torch.Tensor:
        slide, has_slide = self.read_slide(batch)
        x_omic, has_omic = self.read_omics(batch)
        ref = self.path_net.rho[0].weight
        h_path = ref.new_zeros(has_slide.shape[0], self.path_dim)
        if bool(has_slide.any()):
            rows = has_slide.nonzero(as_tuple=True)[0]
            pooled, _ = attention_pool(self.path_net.attention_net, slide["features"][rows].to(ref.dtype), slide["mask"][rows])
            h_path = h_path.index_put((rows,), self.path_net.rho(pooled))
        h_omic = self.omic_net(torch.where(has_omic[:, None], x_omic.to(ref.dtype), ref.new_zeros(())))
        return self.fusion(h_path, h_omic, has_slide, has_omic)


def official_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], task: str) -> dict[str, torch.Tensor]:
    """Rename an official ``PathomicNet`` state dict to this model's keys (``classifier.0.*`` ->
    ``heads.<task>.net.0.*``, everything else ``encoder.*``). The histology branch ``path_net`` has no
    official counterpart: its entries are taken from ``model`` as they are."""
    out = {k: v for k, v in model.state_dict().items() if k.startswith("encoder.path_net.")}
    for k, v in state_dict.items():
        out[f"heads.{task}.net.0.{k[len('classifier.0.'):]}" if k.startswith("classifier.0.") else f"encoder.{k}"] = v
    return out


@register_method("pathomic_fusion", kind="torch", modalities=("slide", "omics"), requires=("slide", "omics"), params=PathomicFusionParams, branched=True,
                 description="Pathomic Fusion: gated Kronecker fusion of ABMIL histology + SNN genomics (Chen et al. 2020)")
def build_pathomic_fusion(info: Any, **params: Any):
    """Params: :class:`PathomicFusionParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    return wrap(info, PathomicFusionEncoder(info, **enc), model_params, "pathomic_fusion")
