"""TransMIL (Shao et al. 2021) as a slide encoder, compact version.

``h = ReLU(Linear(in_dim -> embed_dim))``; the bag is padded to a square ``s x s`` by repeating its
first patches (as the original), a CLS token is prepended; layer 0 = pre-LN attention block + PPEG
(depth-wise 7/5/3 convolutions over the ``s x s`` patch square, plus identity); layer 1 = another
attention block; LayerNorm; CLS is the slide embedding ``(B, embed_dim)``.

Deviation from the original: exact softmax attention (PyTorch SDPA, memory-efficient kernels)
instead of the Nystrom approximation, and right-padded batches are supported through a
key mask (each slide gets its own square). Positions come only from PPEG over the input
order, as in the original (coords unused).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from modaltune.layers.attention import Attention

from ._contracts import check_features, check_mask
from .base import SlideEncoder, TokenState

__all__ = ["TransMILSlideEncoder"]


class _PPEG(nn.Module):
    """Pyramid position encoding generator: ``x + conv7(x) + conv5(x) + conv3(x)`` (depth-wise)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 7, 1, 7 // 2, groups=dim)
        self.proj1 = nn.Conv2d(dim, dim, 5, 1, 5 // 2, groups=dim)
        self.proj2 = nn.Conv2d(dim, dim, 3, 1, 3 // 2, groups=dim)

    def forward(self, square: torch.Tensor) -> torch.Tensor:
        """``square (1, D, s, s) -> (1, D, s, s)``."""
        return square + self.proj(square) + self.proj1(square) + self.proj2(square)


class _TransLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return x + self.attn(self.norm(x), mask)


class TransMILSlideEncoder(SlideEncoder):
    """Compact TransMIL (2 attention layers + PPEG), ``num_layers = 2``.

    Args:
        in_dim: patch-feature width.
        embed_dim: token width and slide-embedding width (default 512).
        num_heads: attention heads (default 8).
    """

    num_layers = 2

    def __init__(self, in_dim: int = 1536, embed_dim: int = 512, num_heads: int = 8, dropout: float = 0.0):
        super().__init__()
        self.in_dim, self.embed_dim = in_dim, embed_dim
        self.fc = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout))
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02)
        self.layer1 = _TransLayer(embed_dim, num_heads)
        self.pos_layer = _PPEG(embed_dim)
        self.layer2 = _TransLayer(embed_dim, num_heads)
        self.norm = nn.LayerNorm(embed_dim)

    def embed(self, features: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None, *,
              padding_mask: torch.Tensor | None = None, **kw: Any) -> TokenState:
        """Project, square-pad each slide by repeating its first patches, prepend CLS.

        ``state.context["side"]`` is the square side per slide; tokens ``1 .. side**2`` are the square.
        """
        features = check_features(features, self.in_dim, "transmil slide encoder")
        mask = check_mask(mask, features, "transmil slide encoder", padding_mask=padding_mask)
        B, N = features.shape[:2]
        lengths = [N] * B if mask is None else mask.sum(1).tolist()
        h = self.fc(features.to(self.cls_token.dtype))
        sides = [math.ceil(math.sqrt(n)) for n in lengths]
        T = 1 + max(s * s for s in sides)
        x = h.new_zeros(B, T, self.embed_dim)
        valid = torch.zeros(B, T, dtype=torch.bool, device=h.device)
        for b, (n, s) in enumerate(zip(lengths, sides)):
            extra = s * s - n
            # original TransMIL fills the square with the first patches again (wrapping for tiny bags)
            fill = h[b, torch.arange(extra, device=h.device) % n]
            x[b, 1 : 1 + s * s] = torch.cat([h[b, :n], fill])
            valid[b, : 1 + s * s] = True
        x[:, 0] = self.cls_token[0, 0]
        return TokenState(tokens=x, num_prefix=1, mask=None if valid.all() else valid, context={"side": sides})

    def _run_layer(self, index: int, state: TokenState) -> torch.Tensor:
        if index == 1:
            return self.layer2(state.tokens, state.mask)
        x = self.layer1(state.tokens, state.mask)
        out = x.clone()
        for b, s in enumerate(state.context["side"]):
            square = x[b, 1 : 1 + s * s].transpose(0, 1).reshape(1, self.embed_dim, s, s)
            out[b, 1 : 1 + s * s] = self.pos_layer(square).flatten(2)[0].transpose(0, 1)
        return out

    def pool(self, state: TokenState) -> torch.Tensor:
        """LayerNorm of the CLS token: ``(B, embed_dim)``."""
        return self.norm(state.tokens[:, 0])
