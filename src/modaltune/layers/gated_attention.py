"""Gated-attention MIL pooling in the parameter layout of the Mahmood-lab code (CLAM / MCAT / PORPOISE).

The official ``Attn_Net_Gated`` is ``a = tanh(W_a h) [-> Dropout]``, ``b = sigmoid(W_b h) [-> Dropout]``,
logits ``W_c (a * b)``; the bag embedding is ``sum_i softmax(logits)_i h_i`` (Ilse et al. 2018). The
names (``attention_a.0``, ``attention_b.0``, ``attention_c``) match the official state dicts, so
published checkpoints load. :class:`modaltune.encoders.slide.abmil.ABMILSlideEncoder` is the same
function with other parameter names and no dropout inside the attention, which is why it is not
reused here.

Masks are True = valid patch throughout.
"""
from __future__ import annotations

import torch
from torch import nn

from modaltune.errors import InputError

__all__ = ["GatedAttentionNet", "attention_mil_net", "attention_pool"]


class GatedAttentionNet(nn.Module):
    """Attention logits of gated attention: ``(..., L) -> (..., n_out)``.

    Args:
        in_dim: patch-embedding width L.
        attn_dim: hidden width D of the two gates.
        dropout: dropout after each gate (0 disables it; the official code uses 0.25).
        n_out: number of attention branches (1 for MIL pooling).
    """

    def __init__(self, in_dim: int = 512, attn_dim: int = 256, dropout: float = 0.25, n_out: int = 1):
        super().__init__()
        def drop() -> list[nn.Module]:
            return [nn.Dropout(dropout)] if dropout else []

        self.attention_a = nn.Sequential(nn.Linear(in_dim, attn_dim), nn.Tanh(), *drop())
        self.attention_b = nn.Sequential(nn.Linear(in_dim, attn_dim), nn.Sigmoid(), *drop())
        self.attention_c = nn.Linear(attn_dim, n_out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.attention_c(self.attention_a(h) * self.attention_b(h))


def attention_mil_net(in_dim: int, hidden: int = 512, attn_dim: int = 256, dropout: float = 0.25, dropinput: float = 0.0) -> nn.Sequential:
    """The official ``attention_net``: ``[Dropout(dropinput)], Linear(in_dim, hidden), ReLU, Dropout, GatedAttentionNet``.

    The input dropout shifts the indices (``attention_net.1`` vs ``attention_net.0``) exactly as in
    PORPOISE, so state-dict keys follow the official ones for either setting.
    """
    layers: list[nn.Module] = [nn.Dropout(dropinput)] if dropinput else []
    layers += [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), GatedAttentionNet(hidden, attn_dim, dropout, 1)]
    return nn.Sequential(*layers)


def attention_pool(net: nn.Sequential, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run an :func:`attention_mil_net` on a padded batch of bags and pool.

    Args:
        net: the Sequential whose last module is a :class:`GatedAttentionNet`.
        features: ``(B, N, D)`` patch features.
        mask: ``(B, N)`` bool, True = valid patch; every row needs at least one valid patch.

    Returns:
        ``(pooled (B, hidden), weights (B, N))``; weights are 0 on padding and sum to 1 per bag,
        so padding never changes the output.
    """
    if features.ndim != 3 or mask.shape != features.shape[:2]:
        raise InputError(f"attention pooling expects features (B, N, D) and mask (B, N), got {tuple(features.shape)} and {tuple(mask.shape)}")
    if not bool(mask.any(1).all()):
        raise InputError("attention pooling got a bag without any valid patch", where="batch.slide.mask")
    h = net[:-1](features)
    logits = net[-1](h).squeeze(-1).masked_fill(~mask, float("-inf"))
    weights = torch.softmax(logits, dim=1)
    return torch.einsum("bn,bnd->bd", weights, h), weights
