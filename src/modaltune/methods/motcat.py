"""``motcat``: Multimodal Optimal-Transport Co-Attention Transformer (Xu and Chen, ICCV 2023; Innse/MOTCat ``MOTCAT_Surv``).

MCAT's backbone (:mod:`modaltune.methods._coattn`) with the softmax co-attention replaced by an
entropic unbalanced optimal-transport plan between patch tokens ``H (N, 256)`` and signature tokens
``G (S, 256)`` (:class:`~modaltune.layers.optimal_transport.OTCoAttention`, solved by POT)::

    P = UOT(M, a = 1/N, b = 1/S; reg, tau),  M_ij = ||h_i - g_j||^2 / max M,    H_coattn = P^T H  (S, 256)

The plan is a constant for autograd (official: computed from the detached cost), so gradients reach
the patch projection through ``P^T H`` only.

Micro-batches (official ``bs_micro``): during training a patient's patches are shuffled and cut into
``N // bs_micro + 1`` near-equal chunks; each chunk goes through co-attention, transformers, pooling
and fusion; the patient's embedding is the mean of the chunk embeddings (the official trainer
averages the chunk *losses* and risks instead; see docs/methods.md). In evaluation the chunks keep
the patch order (the official code shuffles there too), so predictions are deterministic. With
fewer than ``bs_micro`` patches there is one chunk and this is exactly the official forward pass.

Missing modalities (patients are kept): no slide -> no OT, pathology embedding zero before fusion;
no omics -> signature tokens of all-zero (training-mean) omics (still the OT targets), genomics
embedding zero before fusion. No parameters are added, so official checkpoints load strictly.
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from modaltune.layers.optimal_transport import OTCoAttention, _pot
from modaltune.methods._coattn import CoAttnBackbone, CoAttnParams, build_signature_groups, slide_inputs
from modaltune.methods._torch_common import split_params, wrap
from modaltune.methods.registry import register_method
from modaltune.methods.requirements import signature_overlap

__all__ = ["MOTCatParams", "MOTCatEncoder", "build_motcat"]


class MOTCatParams(CoAttnParams):
    """Parameters of ``motcat`` (official defaults; + the head/loss parameters of ``HeadParams``)."""

    ot_reg: float = Field(0.1, gt=0.0, description="entropic regularisation of the OT plan")
    ot_tau: float = Field(0.5, gt=0.0, description="KL relaxation of the plan's marginals (unbalanced OT)")
    bs_micro: int = Field(16384, ge=1, description="patches per micro-batch (official README 16384 with the GPU solver; the paper runs used 256)")


class MOTCatEncoder(CoAttnBackbone):
    """MOTCat without its classifier: ``forward(batch) -> (B, 256)``; ``coattn`` has no parameters."""

    def __init__(self, info: Any, groups, *, ot_reg: float = 0.1, ot_tau: float = 0.5, bs_micro: int = 16384, **kw: Any):
        super().__init__(info, groups, **kw)
        self.coattn = OTCoAttention(ot_reg, ot_tau)
        self.bs_micro = int(bs_micro)

    def chunks(self, valid: torch.Tensor) -> list[torch.Tensor]:
        """Patch indices of each micro-batch of one patient (official ``split_chunk_list``)."""
        if self.training:
            valid = valid[torch.randperm(valid.numel(), device=valid.device)]
        return [c for c in torch.tensor_split(valid, valid.numel() // self.bs_micro + 1) if c.numel()]

    def forward(self, batch: dict) -> torch.Tensor:
        tokens, omic_present = self.signature_tokens(batch)
        feats, mask, slide_present = slide_inputs(batch, self.info)
        patches = self.wsi_net(feats.to(self.wsi_net[0].weight.dtype))
        owners, coattn = [], []
        for b in range(tokens.shape[0]):
            if not bool(slide_present[b]):
                owners.append(b)
                coattn.append(torch.zeros_like(tokens[b]))  # not used: h_path is zeroed for this patient
                continue
            for idx in self.chunks(mask[b].nonzero(as_tuple=True)[0]):
                owners.append(b)
                coattn.append(self.coattn(patches[b, idx], tokens[b])[0])
        own = torch.as_tensor(owners, device=tokens.device)
        emb = self.embed_tokens(torch.stack(coattn), slide_present[own], tokens[own], omic_present[own])
        total = emb.new_zeros(tokens.shape[0], emb.shape[1]).index_add(0, own, emb)
        counts = torch.bincount(own, minlength=tokens.shape[0]).to(emb.dtype)
        return total / counts[:, None]


@register_method("motcat", kind="torch", modalities=("slide", "omics"), requires=("slide", "omics"), params=MOTCatParams, check_data=signature_overlap,
                 description="MOTCat: unbalanced optimal-transport co-attention between patches and genomic signatures (Xu and Chen 2023)")
def build_motcat(info: Any, **params: Any):
    """Params: :class:`MOTCatParams` (validated, defaults filled)."""
    _pot()  # a missing POT is a one-line error at build time, not at the first batch
    model_params, enc = split_params(params)
    groups = build_signature_groups(info, enc.pop("signatures"), enc.pop("omics"), "motcat")
    return wrap(info, MOTCatEncoder(info, groups, **enc), model_params, "motcat")
