"""Gated attention pooling over a token set (Ilse et al. 2018), in the MCAT/PORPOISE module layout.

``score_i = w^T (tanh(V x_i) * sigmoid(U x_i)) + c`` and ``pool(x) = sum_i softmax(score)_i x_i``
over the valid tokens. Parameter names (``attention_a.0``, ``attention_b.0``, ``attention_c``) are
those of ``Attn_Net_Gated`` in mahmoodlab/MCAT, PORPOISE and SurvPath, so their checkpoints load.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["GatedAttention"]


class GatedAttention(nn.Module):
    """Gated attention scores and pooling.

    Args:
        in_dim: token width L.
        hidden: hidden width D of the two gates.
        dropout: dropout after each gate (the official code uses 0.25 whenever dropout is on).
        n_out: number of attention branches (scores per token).

    Shapes: :meth:`scores` ``(B, N, L) -> (B, N, n_out)``; :meth:`forward` pools with the first
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
