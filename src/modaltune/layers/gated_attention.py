"""Gated-attention MIL pooling (Ilse et al. 2018) in the parameter layout of the Mahmood-lab code
(CLAM / MCAT / PORPOISE / SurvPath).

``score_i = W_c (tanh(W_a x_i) [-> Dropout] * sigmoid(W_b x_i) [-> Dropout])`` and
``pool(x) = sum_i softmax(score)_i x_i`` over the valid tokens. The parameter names
(``attention_a.0``, ``attention_b.0``, ``attention_c``) are those of the official ``Attn_Net_Gated``,
so published checkpoints load. :class:`modaltune.encoders.slide.abmil.ABMILSlideEncoder` is the same
function with other parameter names and no dropout inside the attention, which is why it is not
reused here.

Masks are True = valid token throughout.
"""
from __future__ import annotations

import torch
from torch import nn

from modaltune.errors import InputError

__all__ = ["GatedAttention", "attention_mil_net", "attention_pool"]


class GatedAttention(nn.Module):
    """Gated attention scores and pooling.

    Args:
        in_dim: token width L.
        hidden: hidden width D of the two gates.
        dropout: dropout after each gate (0 disables it; the official code uses 0.25 whenever dropout is on).
        n_out: number of attention branches (scores per token).

    Shapes: :meth:`scores` ``(..., N, L) -> (..., N, n_out)``; :meth:`forward` pools with the first
    branch: ``(B, N, L), mask (B, N) True = valid -> ((B, L), weights (B, N))``.
    """

    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.0, n_out: int = 1):
        super().__init__()

        def drop() -> list[nn.Module]:
            return [nn.Dropout(dropout)] if dropout > 0 else []

        self.attention_a = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), *drop())
        self.attention_b = nn.Sequential(nn.Linear(in_dim, hidden), nn.Sigmoid(), *drop())
        self.attention_c = nn.Linear(hidden, n_out)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised attention logits ``(..., N, n_out)``."""
        return self.attention_c(self.attention_a(x) * self.attention_b(x))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.scores(x)[..., 0]
        if mask is not None:
            # a row without any valid token would give NaN weights; its caller must not use it
            logits = logits.masked_fill(~mask, float("-inf"))
        w = torch.softmax(logits, dim=-1)
        return torch.einsum("bn,bnd->bd", w, x), w


def attention_mil_net(in_dim: int, hidden: int = 512, attn_dim: int = 256, dropout: float = 0.25, dropinput: float = 0.0) -> nn.Sequential:
    """The official ``attention_net``: ``[Dropout(dropinput)], Linear(in_dim, hidden), ReLU, Dropout, GatedAttention``.

    The input dropout shifts the indices (``attention_net.1`` vs ``attention_net.0``) exactly as in
    PORPOISE, so state-dict keys follow the official ones for either setting.
    """
    layers: list[nn.Module] = [nn.Dropout(dropinput)] if dropinput else []
    layers += [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), GatedAttention(hidden, attn_dim, dropout, 1)]
    return nn.Sequential(*layers)


def attention_pool(net: nn.Sequential, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run an :func:`attention_mil_net` on a padded batch of bags and pool.

    Args:
        net: the Sequential whose last module is a :class:`GatedAttention`.
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
    return net[-1](net[:-1](features), mask)
