r"""Self-supervised multimodal objectives as pure functions: Symile, pairwise CLIP, MIRROR's parts.

Every function takes per-modality embeddings ``(B, d)`` of the same B patients (row i of every
tensor is patient i) and returns a scalar loss (mean over the batch). Embeddings are used as given:
the caller L2-normalises them (as Symile's and CLIP's reference code do) and passes the
*exponentiated* logit scale ``scale = exp(s)`` (learned, :class:`LogitScale`).

Symile (Saporta et al., NeurIPS 2024; reference code rajesh-lab/symile)
    Multilinear inner product of M >= 2 vectors:
    :math:`\mathrm{MIP}(a, b, c) = \sum_{k=1}^{d} a_k b_k c_k`.
    For each anchor modality :math:`m`, the positive of row i is the MIP of the i-th embedding of
    every modality, negatives replace the non-anchor embeddings by those of other patients; the
    loss is the cross-entropy of the positive among the candidates, averaged over the M anchors:

    .. math:: \mathcal L = \frac1M \sum_m \frac1B \sum_i -\log
        \frac{\exp(\tau\, \mathrm{MIP}(r^m_i, \{r^{m'}_i\}))}{\sum_{c \in C_i} \exp(\tau\, \mathrm{MIP}(r^m_i, c))}

    Negative sampling (:func:`symile_logits`): ``"n"`` (O(B)): the non-anchor modalities are each
    shuffled by a random permutation and multiplied elementwise; row i's candidates are the B
    shuffled products, the diagonal replaced by the positive (B - 1 negatives per positive).
    ``"n_squared"`` (O(B^2), three modalities): every pairing :math:`(r^b_j, r^c_k)`, j, k in 1..B,
    is a candidate (B^2 - 1 negatives); ordered as the reference code orders them (column
    ``s * B + j`` is :math:`r^b_j \odot r^c_{(j - s) \bmod B}`), so the positive of row i is column i.

Pairwise CLIP (Radford et al. 2021, summed over modality pairs as Symile's baseline)
    .. math:: \mathcal L = \sum_{m < m'} \tfrac12\left[\mathrm{CE}(\tau R^m R^{m'\top}, I)
        + \mathrm{CE}(\tau R^{m'} R^{m\top}, I)\right]

MIRROR (Wang et al. 2025, arXiv 2503.00374): alignment = the symmetric InfoNCE of one pair
(:func:`clip_pair_loss`); retention = masked reconstruction (:func:`masked_reconstruction_loss`);
style clustering = swapped prediction of Sinkhorn cluster assignments over learned prototypes
(:func:`sinkhorn`, :func:`swapped_prediction_loss`). Departures are listed in docs/methods.md.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "NEGATIVE_SAMPLING",
    "LogitScale",
    "clip_pair_loss",
    "masked_reconstruction_loss",
    "mip",
    "pairwise_clip_loss",
    "sinkhorn",
    "swapped_prediction_loss",
    "symile_logits",
    "symile_loss",
]

#: negative-sampling strategies of :func:`symile_logits`
NEGATIVE_SAMPLING = ("n", "n_squared")


class LogitScale(nn.Module):
    """Learnable temperature: stores :math:`s` and returns :math:`\\exp(s)` clamped to ``max_scale``
    (CLIP initialises :math:`s = \\log(1/0.07)` and clamps at 100; Symile uses the same)."""

    def __init__(self, init: float = math.log(1 / 0.07), max_scale: float = 100.0):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(init)))
        self.max_scale = float(max_scale)

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)


def _check(reps: Sequence[torch.Tensor], least: int) -> None:
    if len(reps) < least:
        raise ValueError(f"need at least {least} modality embeddings, got {len(reps)}")
    shape = reps[0].shape
    if len(shape) != 2 or any(r.shape != shape for r in reps):
        raise ValueError(f"every embedding must be (B, d) with the same shape, got {[tuple(r.shape) for r in reps]}")


def mip(*reps: torch.Tensor) -> torch.Tensor:
    """Multilinear inner product of row-aligned embeddings: ``(B, d) x M -> (B,)``, :math:`\\sum_k \\prod_m r^m_{ik}`.

    >>> mip(torch.tensor([[1., 2.]]), torch.tensor([[3., 4.]]), torch.tensor([[5., 6.]]))
    tensor([63.])
    """
    _check(reps, 2)
    prod = reps[0]
    for r in reps[1:]:
        prod = prod * r
    return prod.sum(dim=-1)


def symile_logits(anchor: torch.Tensor, others: Sequence[torch.Tensor], *, negative_sampling: str = "n",
                  perms: Sequence[torch.Tensor] | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Unscaled Symile logits of one anchor modality; the positive of row i is column i.

    Args:
        anchor: (B, d) embeddings of the anchor modality.
        others: the other modalities' (B, d) embeddings (``n_squared``: exactly two).
        negative_sampling: ``"n"`` -> (B, B) logits; ``"n_squared"`` -> (B, B^2) logits.
        perms: ``"n"`` only: one permutation (B,) per other modality (default: drawn with ``generator``).
    """
    _check([anchor, *others], 2)
    B = anchor.shape[0]
    pos = mip(anchor, *others)
    if negative_sampling == "n":
        if perms is None:
            perms = [torch.randperm(B, generator=generator, device=anchor.device) for _ in others]
        prod = torch.ones_like(anchor)
        for r, p in zip(others, perms):
            prod = prod * r[p]
        logits = anchor @ prod.T
        eye = torch.eye(B, dtype=torch.bool, device=anchor.device)
        return torch.where(eye, pos.unsqueeze(1).expand(B, B), logits)
    if negative_sampling == "n_squared":
        if len(others) != 2:
            raise ValueError(f"'n_squared' negative sampling is defined for three modalities, got {len(others) + 1}")
        y, z = others
        # column s*B + j pairs y_j with z_{(j - s) mod B}: torch.roll(z, s) as the reference code does
        cands = torch.cat([y * torch.roll(z, shifts=s, dims=0) for s in range(B)], dim=0)  # (B^2, d)
        return anchor @ cands.T
    raise ValueError(f"unknown negative_sampling {negative_sampling!r}; use one of {NEGATIVE_SAMPLING}")


def symile_loss(reps: Sequence[torch.Tensor], scale: torch.Tensor | float, *, negative_sampling: str = "n",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Symile loss of M >= 2 row-aligned (B, d) embeddings, averaged over the M anchor modalities.

    ``scale``: the exponentiated logit scale (a learned scalar tensor or a float).
    """
    _check(reps, 2)
    B = reps[0].shape[0]
    labels = torch.arange(B, device=reps[0].device)
    losses = []
    for m, anchor in enumerate(reps):
        others = [r for k, r in enumerate(reps) if k != m]
        logits = symile_logits(anchor, others, negative_sampling=negative_sampling, generator=generator)
        losses.append(F.cross_entropy(scale * logits, labels))
    return torch.stack(losses).mean()


def clip_pair_loss(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE of one pair: ``(CE(scale a b^T, I) + CE(scale b a^T, I)) / 2`` (positives on the diagonal)."""
    _check([a, b], 2)
    logits = scale * (a @ b.T)
    labels = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def pairwise_clip_loss(reps: Sequence[torch.Tensor], scale: torch.Tensor | float) -> torch.Tensor:
    """:func:`clip_pair_loss` summed over the M (M - 1) / 2 modality pairs."""
    _check(reps, 2)
    return torch.stack([clip_pair_loss(a, b, scale) for a, b in combinations(reps, 2)]).sum()


def masked_reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked (hidden) entries only: ``recon, target (B, F)``, ``mask (B, F)`` bool
    (True = hidden from the encoder, to be reconstructed). Zero when nothing is masked."""
    if recon.shape != target.shape or mask.shape != target.shape:
        raise ValueError(f"recon {tuple(recon.shape)}, target {tuple(target.shape)} and mask {tuple(mask.shape)} must have one shape")
    m = mask.to(recon.dtype)
    return ((recon - target) ** 2 * m).sum() / m.sum().clamp(min=1.0)


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, eps: float = 0.05, n_iters: int = 3) -> torch.Tensor:
    """Balanced soft cluster assignments (SwAV's Sinkhorn-Knopp): ``scores (B, K) -> Q (B, K)``, rows sum to 1.

    :math:`Q \\propto \\exp(S / \\varepsilon)`, alternately normalised so that every cluster gets
    B/K of the mass and every patient 1. No gradient (the assignments are targets).
    """
    q = torch.exp((scores - scores.max()) / eps).T  # (K, B)
    q = q / q.sum()
    K, B = q.shape
    for _ in range(n_iters):
        q = q / q.sum(dim=1, keepdim=True) / K
        q = q / q.sum(dim=0, keepdim=True) / B
    return (q * B).T


def swapped_prediction_loss(scores_a: torch.Tensor, scores_b: torch.Tensor, temperature: float = 0.1,
                            eps: float = 0.05, n_iters: int = 3) -> torch.Tensor:
    """Style clustering: each modality predicts the other's Sinkhorn cluster assignment.

    ``scores_*``: (B, K) similarities of each modality's embedding to K shared prototypes.

    .. math:: \\mathcal L = -\\frac1{2B} \\sum_i \\sum_k \\left[q^b_{ik} \\log p^a_{ik} + q^a_{ik} \\log p^b_{ik}\\right],
        \\quad p^x = \\mathrm{softmax}(S^x / T), \\; q^x = \\mathrm{sinkhorn}(S^x)
    """
    qa, qb = sinkhorn(scores_a, eps, n_iters), sinkhorn(scores_b, eps, n_iters)
    la, lb = F.log_softmax(scores_a / temperature, dim=1), F.log_softmax(scores_b / temperature, dim=1)
    return -((qb * la).sum(dim=1).mean() + (qa * lb).sum(dim=1).mean()) / 2
