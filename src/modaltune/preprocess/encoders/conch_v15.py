"""CONCH v1.5 patch encoder (Mahmood Lab; the tile encoder TITAN was trained on), in plain PyTorch.

The architecture is the one the official loaders build (TRIDENT's ``conch_v15`` encoder and TITAN's
``return_conch``), so their released state dicts load without renaming:

- ``trunk``: ViT-L/16 (width 1024, 24 blocks, 16 heads, MLP ratio 4, qkv bias, LayerScale,
  pre-norm, LayerNorm eps 1e-6, class token, learned absolute positions on a 14 x 14 grid, i.e.
  built at 224 px and run at 448 px with bicubic position interpolation);
- ``attn_pool_contrast``: attentional pooling of all trunk tokens by one learned 768-d query
  (8 heads, LayerNorm on queries and keys, bias-free projections);
- ``ln_contrast``: LayerNorm of the pooled 768-d vector, which is the patch feature.

``forward(x (B, 3, H, W) normalised) -> (B, 768)``; H and W are multiples of 16 (448 in use).
Plain PyTorch keeps it usable without timm (which needs torchvision); the weights file is
``conch_v1_5_pytorch_model.bin`` of the MahmoodLab/TITAN release (or ``pytorch_model_vision.bin`` of
MahmoodLab/conchv1_5), loaded strictly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConchV15", "CONCH_V15_ARCH", "conch_v15_checkpoint_filter"]

#: Hyper-parameters of the released model (see the module docstring).
CONCH_V15_ARCH = dict(img_size=224, patch_size=16, width=1024, depth=24, num_heads=16, mlp_ratio=4.0,
                      embed_dim=768, pooler_heads=8, n_queries=1)


class _LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(head_dim)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1 x))`` then ``x + ls2(mlp(norm2 x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _SelfAttention(dim, num_heads)
        self.ls1 = _LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = _LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, width: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, gh * gw, width), row-major


class _ViTTrunk(nn.Module):
    """ViT with a class token; ``forward_features`` returns all tokens ``(B, 1 + gh * gw, width)`` after the final norm."""

    def __init__(self, img_size: int, patch_size: int, width: int, depth: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch size {patch_size}")
        self.grid = img_size // patch_size
        self.patch_embed = _PatchEmbed(patch_size, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, width))
        self.blocks = nn.ModuleList([_Block(width, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(width, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def position_embedding(self, gh: int, gw: int) -> torch.Tensor:
        """Positions for a ``gh x gw`` patch grid: ``(1, 1 + gh * gw, width)``.

        Other grids than the stored one are reached by bicubic interpolation with the DINO/iBOT
        convention the official model uses (scale factor ``(g' + 0.1) / g``), so features agree
        with the released code at 448 px.
        """
        pos = self.pos_embed
        if gh == gw == self.grid:
            return pos
        g, d = self.grid, pos.shape[-1]
        patch = pos[:, 1:].reshape(1, g, g, d).permute(0, 3, 1, 2)
        patch = F.interpolate(patch.float(), scale_factor=((gh + 0.1) / g, (gw + 0.1) / g), mode="bicubic",
                              align_corners=False)
        if patch.shape[-2:] != (gh, gw):  # pragma: no cover - the +0.1 guards against float rounding
            raise RuntimeError(f"position interpolation gave {tuple(patch.shape[-2:])}, wanted {(gh, gw)}")
        patch = patch.to(pos.dtype).permute(0, 2, 3, 1).reshape(1, gh * gw, d)
        return torch.cat([pos[:, :1], patch], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_embed.patch_size
        if x.shape[-1] % p or x.shape[-2] % p:
            raise ValueError(f"input {tuple(x.shape[-2:])} px is not a multiple of the {p}-px patch size")
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        tokens = tokens + self.position_embedding(gh, gw).to(tokens.dtype)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)


class _AttentionalPooler(nn.Module):
    """``n_queries`` learned queries attend over the context tokens (multi-head, no biases).

    ``forward(x (B, T, context_dim)) -> (B, n_queries, d_model)``; queries and keys are layer-normed
    first, values come from the same normed context.
    """

    def __init__(self, d_model: int, context_dim: int, n_head: int, n_queries: int):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"pooler width {d_model} is not divisible by {n_head} heads")
        self.n_head = n_head
        self.query = nn.Parameter(torch.randn(n_queries, d_model))
        self.ln_k = nn.LayerNorm(context_dim)
        self.ln_q = nn.LayerNorm(d_model)
        self.to_q = nn.Linear(d_model, d_model, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * d_model, bias=False)
        self.to_out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        nq, d = self.query.shape
        h = self.n_head
        q = self.to_q(self.ln_q(self.query.to(x.dtype))).view(1, nq, h, d // h).transpose(1, 2).expand(b, -1, -1, -1)
        k, v = self.to_kv(self.ln_k(x)).chunk(2, dim=-1)
        k = k.reshape(b, t, h, d // h).transpose(1, 2)
        v = v.reshape(b, t, h, d // h).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, nq, d/h)
        return self.to_out(out.transpose(1, 2).reshape(b, nq, d))


class ConchV15(nn.Module):
    """CONCH v1.5 vision tower: ``forward(x (B, 3, H, W)) -> (B, embed_dim)`` (768 for the released model).

    Keyword arguments default to :data:`CONCH_V15_ARCH`; smaller values build test-sized models
    with the same structure.
    """

    def __init__(self, **arch):
        super().__init__()
        unknown = set(arch) - set(CONCH_V15_ARCH)
        if unknown:
            raise TypeError(f"unknown CONCH v1.5 arguments: {sorted(unknown)}")
        a = {**CONCH_V15_ARCH, **arch}
        self.embed_dim = int(a["embed_dim"])
        self.trunk = _ViTTrunk(a["img_size"], a["patch_size"], a["width"], a["depth"], a["num_heads"], a["mlp_ratio"])
        self.attn_pool_contrast = _AttentionalPooler(self.embed_dim, a["width"], a["pooler_heads"], a["n_queries"])
        self.ln_contrast = nn.LayerNorm(self.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.trunk.forward_features(x)
        return self.ln_contrast(self.attn_pool_contrast(tokens)[:, 0])


def conch_v15_checkpoint_filter(state_dict: dict, model: ConchV15) -> dict:
    """Adapt a released CONCH v1.5 state dict to ``model``: a position table stored on another square
    grid is resampled to the model's grid (bilinear, no antialias; what TRIDENT's loader does).
    Every other key passes unchanged, so the strict loader still reports anything else that differs."""
    key = "trunk.pos_embed"
    pos = state_dict.get(key)
    want = model.trunk.pos_embed
    if not isinstance(pos, torch.Tensor) or pos.ndim != 3 or pos.shape == want.shape or pos.shape[-1] != want.shape[-1]:
        return state_dict
    n = pos.shape[1] - 1
    g = math.isqrt(n)
    if g * g != n:
        return state_dict
    grid = model.trunk.grid
    patch = pos[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2).float()
    patch = F.interpolate(patch, size=(grid, grid), mode="bilinear", align_corners=False, antialias=False)
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)
    return {**state_dict, key: torch.cat([pos[:, :1], patch], dim=1)}
