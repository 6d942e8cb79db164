"""A small generic transformer slide encoder for CPU-scale work, tests and demos.

``[CLS; Linear(features) + pos(coords)]`` -> ``depth`` pre-LN transformer blocks (exact attention
with a key mask) -> LayerNorm -> CLS token (or mean of valid patch tokens). Same stage API
as the foundation models (:mod:`modaltune.encoders.slide.base`), so adapters work on it unchanged.

Positions come from the patch grid ``g = floor((coords - min(coords)) / patch_size_level0)``:

* ``"sincos"``: fixed 2-D sin-cos embedding of ``g`` (any slide size);
* ``"learned"``: learned row and column tables of ``max_grid`` entries each (a slide wider than
  ``max_grid`` patches raises InputError);
* ``"none"``: no positions (coords are then optional).
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from modaltune.errors import ConfigError, InputError
from modaltune.layers.attention import Attention
from modaltune.layers.mlp import DropPath, Mlp
from modaltune.layers.pos_embed import sincos_2d_rows

from ._contracts import check_coords, check_features, check_mask
from .base import SlideEncoder, TokenState

__all__ = ["SmallTransformerSlideEncoder"]


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=True, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SmallTransformerSlideEncoder(SlideEncoder):
    """Small ViT over patch features (defaults: 192-d, 4 layers, 4 heads: about 1.9 M parameters).

    Args:
        in_dim: patch-feature width.
        embed_dim, depth, num_heads, mlp_ratio: transformer size.
        pos: ``"sincos"`` (default), ``"learned"`` or ``"none"``; see the module docstring.
        patch_size_level0: level-0 pixels per grid cell for positions (default 256).
        max_grid: table size per axis for ``pos="learned"``.
        global_pool: False reads CLS, True averages the valid patch tokens.
        dropout, drop_path_rate: regularisation (train mode only).
    """

    def __init__(
        self,
        in_dim: int = 1536,
        embed_dim: int = 192,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        pos: Literal["sincos", "learned", "none"] = "sincos",
        patch_size_level0: int = 256,
        max_grid: int = 512,
        global_pool: bool = False,
        dropout: float = 0.1,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        if pos not in ("sincos", "learned", "none"):
            raise ConfigError(f"pos must be 'sincos', 'learned' or 'none', got {pos!r}", where="small_transformer.pos")
        if pos == "sincos" and embed_dim % 4:
            raise ConfigError(f"pos='sincos' needs embed_dim divisible by 4, got {embed_dim}", where="small_transformer.embed_dim")
        self.in_dim, self.embed_dim, self.num_layers = in_dim, embed_dim, depth
        self.pos, self.patch_size_level0, self.max_grid, self.global_pool = pos, patch_size_level0, max_grid, global_pool
        self.patch_embed = nn.Linear(in_dim, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if pos == "learned":
            self.pos_row = nn.Embedding(max_grid, embed_dim)
            self.pos_col = nn.Embedding(max_grid, embed_dim)
            nn.init.normal_(self.pos_row.weight, std=0.02)
            nn.init.normal_(self.pos_col.weight, std=0.02)
        self.pos_drop = nn.Dropout(dropout)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist() if depth else []
        self.blocks = nn.ModuleList([_Block(embed_dim, num_heads, mlp_ratio, dropout, dpr[i]) for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        nn.init.normal_(self.cls_token, std=0.02)

    def _positions(self, coords: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        c = coords.to(torch.float64)
        pad = None if mask is None else ~mask[..., None]
        if pad is not None:  # padded rows must not move the per-slide minimum
            c = c.masked_fill(pad, float("inf"))
        g = torch.floor((c - c.amin(dim=1, keepdim=True)) / self.patch_size_level0)
        if pad is not None:
            g = g.masked_fill(pad, 0)
        g = g.long()
        if self.pos == "sincos":
            return sincos_2d_rows(g[..., 0], g[..., 1], self.embed_dim, dtype=dtype)
        if int(g.max()) >= self.max_grid:
            raise InputError(
                f"small_transformer learned positions cover {self.max_grid} patches per axis but a slide spans {int(g.max()) + 1}",
                where="coords",
                fix="increase max_grid, use pos='sincos', or check patch_size_level0",
            )
        return self.pos_col(g[..., 0]) + self.pos_row(g[..., 1])

    def embed(self, features: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None, *,
              padding_mask: torch.Tensor | None = None, **kw: Any) -> TokenState:
        """``features (B, N, in_dim)`` (+ ``coords (B, N, 2)`` level-0 px unless pos='none'), ``mask (B, N)``
        True = valid -> TokenState, T = N + 1."""
        name = "small_transformer slide encoder"
        features = check_features(features, self.in_dim, name)
        mask = check_mask(mask, features, name, padding_mask=padding_mask)
        dtype = self.cls_token.dtype
        x = self.patch_embed(features.to(dtype))
        if self.pos != "none":
            x = x + self._positions(check_coords(coords, features, name), mask, dtype)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        token_mask = None
        if mask is not None and not mask.all():
            token_mask = torch.cat([mask.new_ones(x.shape[0], 1), mask], dim=1)  # CLS is always valid
        return TokenState(tokens=self.pos_drop(x), num_prefix=1, mask=token_mask)

    def _run_layer(self, index: int, state: TokenState) -> torch.Tensor:
        return self.blocks[index](state.tokens, state.mask)

    def pool(self, state: TokenState) -> torch.Tensor:
        """LayerNorm, then CLS (default) or the mean of valid patch tokens: ``(B, embed_dim)``."""
        x = self.norm(state.tokens)
        if not self.global_pool:
            return x[:, 0]
        pm = state.patch_mask
        if pm is None:
            return x[:, 1:].mean(1)
        valid = pm.to(x.dtype)[..., None]
        return (x[:, 1:] * valid).sum(1) / valid.sum(1)
