"""``mcat``: Multimodal Co-Attention Transformer (Chen et al., ICCV 2021; mahmoodlab/MCAT ``MCAT_Surv``).

Genomic-guided co-attention: the S = 6 signature tokens ``G (S, 256)`` query the patch tokens
``H (N, 256)`` with one-head attention (``nn.MultiheadAttention(256, 1)``, as the official code)::

    H_coattn = softmax((G W_q)(H W_k)^T / sqrt(256)) (H W_v) W_o        # (S, 256)

so the slide enters the rest of the model as S genomics-guided tokens. Then (shared with MOTCat,
:mod:`modaltune.methods._coattn`) a 2-layer transformer + gated attention pooling + rho per
modality, concat (default) or gated bilinear fusion, and the discrete-time survival head.

Batches: patients are padded to the longest bag; padding keys are masked out of the attention
(``key_padding_mask``), so a patient's output does not depend on the padding.

Missing modalities (patients are kept): no slide -> the pathology embedding is zero before fusion;
no omics -> signature tokens of all-zero (training-mean) omics, genomics embedding zero before
fusion. No parameters are added, so official checkpoints load strictly
(:func:`~modaltune.methods._coattn.load_official_state_dict`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from modaltune.methods._coattn import DIM, CoAttnBackbone, CoAttnParams, build_signature_groups
from modaltune.methods._torch_common import split_params, wrap
from modaltune.methods.registry import register_method
from modaltune.methods.requirements import signature_overlap

__all__ = ["MCATParams", "MCATEncoder", "build_mcat"]


class MCATParams(CoAttnParams):
    """Parameters of ``mcat`` (official defaults; + the head/loss parameters of ``HeadParams``)."""


class MCATEncoder(CoAttnBackbone):
    """MCAT without its classifier: ``forward(batch) -> (B, 256)``; ``coattn`` = ``nn.MultiheadAttention(256, 1)``."""

    def __init__(self, info: Any, groups, **kw: Any):
        super().__init__(info, groups, **kw)
        self.coattn = nn.MultiheadAttention(embed_dim=DIM, num_heads=1, batch_first=True)
        self.last_coattn: torch.Tensor | None = None  # (B, S, N) weights of the last forward, for interpretation

    def coattend(self, tokens: torch.Tensor, patches: torch.Tensor, mask: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        # a patient without patches gets one dummy key so its row stays finite; its output is zeroed later
        keys_ok = mask.clone()
        keys_ok[~present, 0] = True
        out, weights = self.coattn(tokens, patches, patches, key_padding_mask=~keys_ok, need_weights=True)
        self.last_coattn = weights.detach()
        return out


@register_method("mcat", kind="torch", modalities=("slide", "omics"), requires=("slide", "omics"), params=MCATParams, check_data=signature_overlap,
                 description="MCAT: genomic-signature tokens co-attend over patches, per-modality transformers, concat/bilinear fusion (Chen et al. 2021)")
def build_mcat(info: Any, **params: Any):
    """Params: :class:`MCATParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    groups = build_signature_groups(info, enc.pop("signatures"), enc.pop("omics"), "mcat")
    return wrap(info, MCATEncoder(info, groups, **enc), model_params, "mcat")
