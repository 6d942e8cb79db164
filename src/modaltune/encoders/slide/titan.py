"""TITAN (TITAN-preview) slide encoder in plain PyTorch: ``Titan.vision_encoder`` of MahmoodLab/TITAN.

Reproduces the official remote code (see shared/reference/spec.md section 2) and loads its weights
unchanged (the parameter names here are the official ones, without the ``vision_encoder.`` prefix).

Pipeline for one slide (official ``preprocess_features`` + ``forward``; eval mode):

1. Grid: ``g = (coords - min(coords)) // patch_size_level0`` (x -> axis 0, y -> axis 1); cell
   ``g0 * W + g1``. Features falling in the same cell are summed in the official code (``index_add_``);
   here that needs ``on_collision="sum"``, the default ``"error"`` raises :class:`InputError`.
2. Background: cells whose (summed) feature vector is all zeros are dropped, as officially.
3. Tokens: ``GELU(Linear(768 -> D))`` of every foreground cell in row-major cell order, CLS first.
4. 6 pre-LN ViT blocks with a 2-D ALiBi bias ``-slope_h * ||g_i - g_j||`` (CLS row/column 0),
   streamed over query tiles so memory is linear in N (official: dense N x N in float64).
5. ``norm`` (eps 1e-6), then the 1-query attentional pooler ``attn_pool_contrastive`` gives the slide
   embedding (``encode_slide_from_patch_features``); ``proj=True`` multiplies by ``proj``.

Differences from the official code (outputs are the same where both run):

* batches: slides are gridded separately and right-padded with a key mask, so every slide
  gets its batch-of-one output (the official B > 1 path is a different training-only code path);
* coordinates may be float if they hold whole numbers (converted to int64); fractional coordinates
  raise InputError (the official code raises a TypeError for any float coordinates);
* grid collisions are an error by default (official: silent sum).
"""
from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from modaltune.errors import ConfigError, InputError
from modaltune.layers.alibi import alibi_slopes
from modaltune.layers.attention import Attention, alibi_attention
from modaltune.layers.mlp import Mlp

from ._contracts import check_coords, check_features, check_mask
from .base import SlideEncoder, TokenState

__all__ = ["TitanSlideEncoder", "AttentionalPooler", "titan_grid"]

CollisionPolicy = Literal["error", "sum"]


def titan_grid(coords: torch.Tensor, patch_size_level0: int) -> tuple[torch.Tensor, int]:
    """Official TITAN grid of one slide.

    Args:
        coords: ``(N, 2)`` int64 level-0 (x, y) pixel coordinates.
        patch_size_level0: level-0 pixels per grid cell.

    Returns:
        ``cells (N,)`` int64 row-major cell index ``g0 * W + g1`` and the grid width ``W``, where
        ``g = (coords - coords.min(0)) // patch_size_level0``, ``H = max(g0) + 1``, ``W = max(g1) + 1``.
    """
    g = torch.div(coords - coords.min(0).values, patch_size_level0, rounding_mode="floor")
    W = int(g[:, 1].max()) + 1
    return g[:, 0] * W + g[:, 1], W


def _patch_size(ps: Any, error: type[InputError] | type[ConfigError]) -> int:
    """``patch_size_level0`` as a positive int; ``error`` (one line) for 0, negatives, fractions,
    NaN/inf, bools, strings and non-numbers. TITAN's grid is ``coords // patch_size_level0`` on integer
    coordinates, so only a whole number of level-0 pixels per patch is meaningful."""
    ok = not isinstance(ps, (bool, str, bytes))
    try:
        v = float(ps)
    except (TypeError, ValueError, RuntimeError):
        ok = False
    else:
        ok = ok and math.isfinite(v) and v > 0 and v == int(v)
    if not ok:
        raise error(
            f"TITAN slide encoder needs patch_size_level0 as a positive whole number of level-0 pixels per patch "
            f"(its grid cell size), got {ps!r}",
            where="patch_size_level0",
            fix="pass the feature file's patch_size_level0 (512 for CONCH v1.5 patches at 20x, 1024 at 40x)",
        )
    return int(v)


class AttentionalPooler(nn.Module):
    """CoCa attentional pooler: learned queries attend over ``ln_k(x)`` with ``nn.MultiheadAttention``.

    Parameters (official names): ``query (Q, D)``, ``attn`` (packed ``in_proj_weight (3D, D)``),
    ``ln_q``/``ln_k`` (LayerNorm eps 1e-5). ``forward(x (B, T, D), mask (B, T) bool True = valid | None)
    -> (B, Q, D)``.
    """

    def __init__(self, dim: int, n_queries: int, n_heads: int, eps: float = 1e-5):
        super().__init__()
        self.query = nn.Parameter(torch.randn(n_queries, dim) * 0.02)
        self.attn = nn.MultiheadAttention(dim, n_heads, kdim=dim, vdim=dim)
        self.ln_q = nn.LayerNorm(dim, eps=eps)
        self.ln_k = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        kv = self.ln_k(x).permute(1, 0, 2)  # (T, B, D): nn.MultiheadAttention is sequence-first
        q = self.ln_q(self.query).unsqueeze(1).expand(-1, x.shape[0], -1)
        kpm = None if mask is None else ~mask  # nn.MultiheadAttention wants True = padding
        out = self.attn(q, kv, kv, key_padding_mask=kpm, need_weights=False)[0]
        return out.permute(1, 0, 2)


class _Block(nn.Module):
    """timm ViT block (norm1, attn.qkv/proj, norm2, mlp.fc1/fc2) with ALiBi attention."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, grid: torch.Tensor, slopes: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self.attn.split_heads(self.norm1(x))
        o = alibi_attention(q, k, v, grid, slopes, num_prefix=1, mask=mask)
        x = x + self.attn.merge_heads(o)
        return x + self.mlp(self.norm2(x))


class _Blocks(nn.Module):
    """Container reproducing the official ``blocks.modules_list.{i}`` key names."""

    def __init__(self, blocks: list[_Block]):
        super().__init__()
        self.modules_list = nn.ModuleList(blocks)


class TitanSlideEncoder(SlideEncoder):
    """TITAN slide encoder (defaults = released TITAN-preview vision encoder, 48.5 M parameters).

    Args:
        in_dim: patch-feature width (768, CONCH v1.5).
        embed_dim, depth, num_heads, mlp_ratio: 768, 6, 12 (head_dim 64), 4 as released.
        attn_pooler_queries, attn_pooler_heads: 128 and 8 (``attn_pool``); the slide embedding comes
            from the 1-query ``attn_pool_contrastive``.
        patch_size_level0: default level-0 patch size for :meth:`embed` (512 for 20x, 1024 for 40x
            CONCH v1.5 patches); None means every call must pass it.
        on_collision: ``"error"`` (default) raises InputError when two patches fall into one grid
            cell; ``"sum"`` sums their features into one token, exactly as the official code does.

    Stages: ``embed`` -> ``run_layers`` (``num_layers = depth``) -> ``pool``. Token 0 is CLS; patch
    tokens are the foreground grid cells in row-major order (not the input order);
    ``state.context["grid"]`` is the ``(B, T, 2)`` cell of every token and
    ``state.context["token_patch_index"]`` maps tokens back to input patches.
    """

    requires_pretrained = True
    fp32_buffers = ("slopes",)  # kept float32 under precision="bf16-weights": the bias is built in float32

    def __init__(
        self,
        in_dim: int = 768,
        embed_dim: int = 768,
        depth: int = 6,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        attn_pooler_queries: int = 128,
        attn_pooler_heads: int = 8,
        patch_size_level0: int | None = None,
        on_collision: CollisionPolicy = "error",
        norm_eps: float = 1e-6,
        pooler_eps: float = 1e-5,
    ):
        super().__init__()
        if on_collision not in ("error", "sum"):
            raise ConfigError(f"on_collision must be 'error' or 'sum', got {on_collision!r}", where="titan.on_collision")
        self.in_dim = in_dim
        self.embed_dim = embed_dim
        self.num_layers = depth
        self.num_heads = num_heads
        self.patch_size_level0 = None if patch_size_level0 is None else _patch_size(patch_size_level0, ConfigError)
        self.on_collision = on_collision
        # Parameter creation order follows the official state dict.
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 1e-6)
        self.proj = nn.Parameter(torch.randn(embed_dim, embed_dim) * embed_dim**-0.5)
        self.patch_embed = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.GELU())
        self.blocks = _Blocks([_Block(embed_dim, num_heads, mlp_ratio, norm_eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.attn_pool = AttentionalPooler(embed_dim, attn_pooler_queries, attn_pooler_heads, pooler_eps)
        self.attn_pool_contrastive = AttentionalPooler(embed_dim, 1, attn_pooler_heads, pooler_eps)
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    # -- preprocessing ------------------------------------------------------------------------
    @staticmethod
    def _integer_coords(coords: torch.Tensor) -> torch.Tensor:
        if torch.is_floating_point(coords):
            if not torch.equal(coords, torch.round(coords)):
                raise InputError(
                    "TITAN needs integer level-0 patch coordinates but got fractional float values",
                    where="coords",
                    fix="pass the integer 'coords' from the TRIDENT/CLAM h5 file (int64)",
                )
            return coords.to(torch.int64)
        return coords.to(torch.int64)

    def _slide_tokens(self, feats: torch.Tensor, coords: torch.Tensor, ps: int, on_collision: str, slide: int):
        """Grid, collision handling and background removal for one slide ``(N, D_in)``, ``(N, 2)``."""
        cells, W = titan_grid(coords, ps)
        uniq, inverse, counts = torch.unique(cells, sorted=True, return_inverse=True, return_counts=True)
        if len(uniq) < len(cells) and on_collision != "sum":
            dup = int(uniq[counts > 1][0])
            who = (cells == dup).nonzero().flatten()[:2].tolist()
            raise InputError(
                f"TITAN patch grid collision in slide {slide}: {int((counts - 1).sum())} patch(es) share a grid cell "
                f"with another (e.g. patches {who[0]} and {who[1]} at coords {coords[who[0]].tolist()} and "
                f"{coords[who[1]].tolist()} with patch_size_level0={ps})",
                where="coords",
                fix="check patch_size_level0 matches the patch pitch, or pass on_collision='sum' to sum them as the official TITAN does",
            )
        agg = feats.new_zeros(len(uniq), feats.shape[1]).index_add_(0, inverse, feats)
        fg = agg.ne(0).any(dim=1)  # official: all-zero cells are background and dropped
        first = torch.full((len(uniq),), len(cells), dtype=torch.long, device=cells.device)
        first = first.scatter_reduce(0, inverse, torch.arange(len(cells), device=cells.device), reduce="amin")
        grid = torch.stack([uniq // W, uniq % W], dim=1)
        H = int(cells.max()) // W + 1
        return agg[fg], grid[fg], first[fg], int((~fg).sum()), (H, W)

    def embed(self, features: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None,
              patch_size_level0: int | None = None, on_collision: CollisionPolicy | None = None, *,
              padding_mask: torch.Tensor | None = None, **kw: Any) -> TokenState:
        """``features (B, N, in_dim)``, integer ``coords (B, N, 2)`` level-0 px, ``mask (B, N)`` True = valid
        -> ``TokenState`` (``padding_mask=`` is the deprecated inverse of ``mask``).

        ``patch_size_level0`` (alias ``patch_size_lv0``) is required here or at construction.
        Context: ``grid (B, T, 2)`` int64 token cells (row 0 = CLS, unused), ``token_patch_index
        (B, T-1)`` first input patch of each token (-1 for padding), ``n_background`` per slide and
        ``grid_shape`` per slide: the official ``(H, W)`` of its patch grid (cell ``g0 * W + g1``).
        """
        model = "TITAN slide encoder"
        ps = patch_size_level0 if patch_size_level0 is not None else kw.pop("patch_size_lv0", None)
        ps = self.patch_size_level0 if ps is None else ps
        if ps is None:
            raise InputError(
                f"{model} needs patch_size_level0 (level-0 pixels per patch) to build its position grid",
                where="patch_size_level0",
                fix="pass patch_size_level0 from the feature file (TRIDENT h5 attribute; 512 for CONCH v1.5 at 20x, 1024 at 40x)",
            )
        ps = _patch_size(ps, InputError)
        policy = self.on_collision if on_collision is None else on_collision
        features = check_features(features, self.in_dim, model)
        coords = self._integer_coords(check_coords(coords, features, model))
        mask = check_mask(mask, features, model, padding_mask=padding_mask)
        dtype = self.cls_token.dtype
        B, N = features.shape[:2]
        lengths = [N] * B if mask is None else mask.sum(1).tolist()
        per = [self._slide_tokens(features[b, : lengths[b]].to(dtype), coords[b, : lengths[b]], ps, policy, b) for b in range(B)]
        T = 1 + max(len(p[0]) for p in per)
        if T == 1:
            raise InputError(f"{model}: every patch feature vector is all zeros (background), nothing to encode", where="features")
        x = features.new_zeros(B, T, self.in_dim, dtype=dtype)
        grid = torch.zeros(B, T, 2, dtype=torch.long, device=features.device)
        index = torch.full((B, T - 1), -1, dtype=torch.long, device=features.device)
        valid = torch.zeros(B, T, dtype=torch.bool, device=features.device)
        for b, (f, g, first, _, _) in enumerate(per):
            n = len(f)
            x[b, 1 : 1 + n], grid[b, 1 : 1 + n], index[b, :n], valid[b, : 1 + n] = f, g, first, True
        tokens = self.patch_embed(x[:, 1:])
        tokens = torch.cat([self.cls_token.expand(B, -1, -1), tokens], dim=1)
        context = {"grid": grid, "token_patch_index": index, "n_background": [p[3] for p in per],
                   "grid_shape": [p[4] for p in per]}
        return TokenState(tokens=tokens, num_prefix=1, mask=None if valid.all() else valid, context=context)

    def _run_layer(self, index: int, state: TokenState) -> torch.Tensor:
        return self.blocks.modules_list[index](state.tokens, state.context["grid"], self.slopes, state.mask)

    def pool(self, state: TokenState, proj: bool = False) -> torch.Tensor:
        """``norm`` -> ``attn_pool_contrastive`` -> ``(B, embed_dim)`` (``@ proj`` if ``proj``)."""
        x = self.norm(state.tokens)
        out = self.attn_pool_contrastive(x, state.mask).squeeze(1)
        return out @ self.proj if proj else out

    def pool_tokens(self, state: TokenState) -> torch.Tensor:
        """The 128-query ``attn_pool`` output ``(B, 128, embed_dim)`` (computed but unused officially)."""
        return self.attn_pool(self.norm(state.tokens), state.mask)

    def forward(self, features: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                proj: bool = False, **kw: Any) -> torch.Tensor:
        """Slide embedding ``(B, embed_dim)`` = official ``encode_slide_from_patch_features`` (``proj=False``).

        ``mask (B, N)`` True = valid patch; the deprecated ``padding_mask=`` travels in ``kw`` to :meth:`embed`.
        """
        state = self.embed(features, coords, mask=mask, **kw)
        state = self.run_layers(state, 0, self.num_layers)
        return self.pool(state, proj=proj)
