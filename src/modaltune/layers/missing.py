"""Missing-modality building blocks: a learned "missing" embedding, masked pooling, an attention
key mask over modality tokens, and modality dropout.

Every batch carries ``modality_mask: {name: BoolTensor (B,)}`` (True = patient has it). Models use
these blocks so that no patient has to be dropped because one modality is absent, and so that
the (zero-filled) input of a missing modality never influences the output.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from modaltune.errors import ConfigError, InputError

__all__ = ["MissingModalityEmbedding", "masked_mean", "modality_key_mask", "ModalityDropout"]


class MissingModalityEmbedding(nn.Module):
    """Replace the embedding of patients whose modality is missing by one learned vector.

    Args:
        dim: embedding size E.
        init_std: std of the normal initialisation of the "missing" vector.

    Shapes: ``emb`` (B, E) float, ``present`` (B,) bool -> (B, E). Rows with ``present`` keep
    ``emb`` (gradients flow to it); other rows get ``self.missing`` (gradients flow to it
    instead). ``torch.where`` is used so NaN/garbage in missing rows never leaks.
    """

    def __init__(self, dim: int, init_std: float = 0.02):
        super().__init__()
        if dim < 1:
            raise ConfigError(f"MissingModalityEmbedding dim must be >= 1, got {dim}")
        self.dim = dim
        self.missing = nn.Parameter(torch.randn(dim) * init_std)

    def forward(self, emb: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise InputError(f"MissingModalityEmbedding expects (B, {self.dim}) embeddings, got {tuple(emb.shape)}")
        present = torch.as_tensor(present, dtype=torch.bool, device=emb.device)
        if present.shape != (emb.shape[0],):
            raise InputError(f"modality mask shape {tuple(present.shape)} != batch size ({emb.shape[0]},)")
        return torch.where(present[:, None], emb, self.missing.to(emb.dtype).expand_as(emb))


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid tokens.

    Args:
        tokens: (B, T, E) float.
        mask: (B, T) bool, True = valid token.

    Returns:
        (B, E); rows without any valid token are 0 (not NaN). Invalid tokens (even NaN) are ignored.

    Example:
        >>> t = torch.tensor([[[1.0], [3.0], [100.0]]]); m = torch.tensor([[True, True, False]])
        >>> masked_mean(t, m).tolist()
        [[2.0]]
    """
    if tokens.ndim != 3:
        raise InputError(f"masked_mean expects (B, T, E) tokens, got {tuple(tokens.shape)}")
    mask = torch.as_tensor(mask, dtype=torch.bool, device=tokens.device)
    if mask.shape != tokens.shape[:2]:
        raise InputError(f"mask shape {tuple(mask.shape)} != tokens (B, T) {tuple(tokens.shape[:2])}")
    m = mask.unsqueeze(-1)
    total = torch.where(m, tokens, torch.zeros((), dtype=tokens.dtype, device=tokens.device)).sum(dim=1)
    count = m.sum(dim=1).clamp(min=1).to(tokens.dtype)
    return total / count


def modality_key_mask(modality_mask: Mapping[str, torch.Tensor], order: Sequence[str]) -> torch.Tensor:
    """Stack per-modality masks into an attention key mask over modality tokens.

    Args:
        modality_mask: ``{name: (B,) bool}`` from the batch.
        order: modality names in token order.

    Returns:
        (B, M) bool, True = attend to this token. A patient with none of the modalities would make
        softmax attention NaN, so that is an error naming the batch rows.
    """
    missing = [n for n in order if n not in modality_mask]
    if missing:
        raise InputError(f"batch has no modality mask for {missing}", fix=f"available: {sorted(modality_mask)}")
    key = torch.stack([torch.as_tensor(modality_mask[n], dtype=torch.bool) for n in order], dim=1)
    empty = (~key.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise InputError(f"batch rows {empty[:10]} have none of the modalities {list(order)}",
                         fix="give such patients a learned missing embedding, or exclude them at the cohort level")
    return key


class ModalityDropout(nn.Module):
    """Randomly switch present modalities off during training (robustness to missing inputs).

    Each present modality of each patient is dropped with probability ``p``; afterwards every
    patient keeps at least ``min(min_keep, n_present)`` of its *present* modalities (dropped ones
    are restored at random). Missing modalities are never switched on. Identity in ``eval()``.
    Uses the global torch RNG, so Lightning's seeding makes it reproducible.

    Args:
        p: drop probability in [0, 1).
        min_keep: minimum number of present modalities kept per patient (>= 1).

    Call: ``dropout(modality_mask) -> new modality_mask`` (dict of (B,) bool; input not modified).
    """

    def __init__(self, p: float = 0.25, min_keep: int = 1):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"modality dropout p must be in [0, 1), got {p}")
        if min_keep < 1:
            raise ConfigError(f"min_keep must be >= 1, got {min_keep}")
        self.p = p
        self.min_keep = min_keep

    def forward(self, modality_mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = list(modality_mask)
        if not self.training or self.p == 0.0 or not names:
            return dict(modality_mask)
        present = torch.stack([torch.as_tensor(modality_mask[n], dtype=torch.bool) for n in names], dim=1)  # (B, M)
        keep = present & (torch.rand(present.shape, device=present.device) >= self.p)
        need = torch.clamp(present.sum(1), max=self.min_keep)  # (B,)
        short = keep.sum(1) < need
        if bool(short.any()):
            # restore dropped-but-present modalities in a random order until min_keep is met
            score = torch.rand(present.shape, device=present.device)
            score = torch.where(present & ~keep, score, torch.full_like(score, -1.0))
            rank = score.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = first to restore
            deficit = (need - keep.sum(1)).clamp(min=0)
            restore = (rank < deficit[:, None]) & present & ~keep & short[:, None]
            keep = keep | restore
        return {n: keep[:, i] for i, n in enumerate(names)}
