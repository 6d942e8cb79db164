"""Gated-attention MIL (ABMIL, Ilse et al. 2018) as a slide encoder.

``h = Dropout(ReLU(Linear(in_dim -> embed_dim)))``; attention logits
``a = w^T (tanh(V h) * sigmoid(U h))``; weights ``softmax(a)`` over the valid patches; slide
embedding ``sum_i softmax(a)_i h_i`` of shape ``(B, embed_dim)``. Positions are not used (coords
optional). It has no transformer blocks: ``num_layers = 0``, so ``embed`` -> ``pool`` is the model.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._contracts import check_features, check_mask
from .base import SlideEncoder, TokenState

__all__ = ["ABMILSlideEncoder"]


class ABMILSlideEncoder(SlideEncoder):
    """Gated-attention MIL pooling.

    Args:
        in_dim: patch-feature width.
        embed_dim: width of the projected patches and of the slide embedding (default 512).
        attn_dim: hidden width of the gated attention (default 256).
        dropout: dropout after the projection (train mode only).
    """

    num_layers = 0

    def __init__(self, in_dim: int = 1536, embed_dim: int = 512, attn_dim: int = 256, dropout: float = 0.25):
        super().__init__()
        self.in_dim, self.embed_dim = in_dim, embed_dim
        self.fc = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout))
        self.attention_v = nn.Linear(embed_dim, attn_dim)
        self.attention_u = nn.Linear(embed_dim, attn_dim)
        self.attention_w = nn.Linear(attn_dim, 1)

    def embed(self, features: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None, *,
              padding_mask: torch.Tensor | None = None, **kw: Any) -> TokenState:
        """``features (B, N, in_dim)``, ``mask (B, N)`` True = valid -> TokenState of N projected patch tokens (no CLS)."""
        features = check_features(features, self.in_dim, "abmil slide encoder")
        mask = check_mask(mask, features, "abmil slide encoder", padding_mask=padding_mask)
        h = self.fc(features.to(self.attention_w.weight.dtype))
        return TokenState(tokens=h, num_prefix=0, mask=mask if mask is not None and not mask.all() else None)

    def attention(self, state: TokenState) -> torch.Tensor:
        """Attention weights ``(B, N)`` over patch tokens (0 on padding, rows sum to 1)."""
        h = state.tokens
        logits = self.attention_w(torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))).squeeze(-1)
        if state.mask is not None:  # -inf logit on padding (the only place the mask is inverted)
            logits = logits.masked_fill(~state.mask, float("-inf"))
        return torch.softmax(logits, dim=1)

    def pool(self, state: TokenState) -> torch.Tensor:
        """Attention-weighted sum of the patch tokens: ``(B, embed_dim)``."""
        return torch.einsum("bn,bnd->bd", self.attention(state), state.tokens)
