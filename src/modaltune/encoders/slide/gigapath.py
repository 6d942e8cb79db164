"""Prov-GigaPath slide encoder (LongNet ViT, ``gigapath_slide_enc12l768d``) in plain PyTorch.

Reproduces the official model (prov-gigapath @ 09d8e87; see shared/reference/spec.md section 1) and
loads its ``slide_encoder.pth`` state dict unchanged: the parameter names here are the official ones.

Differences from the official code (outputs are the same):

* positions: only the sin-cos rows of the tiles present are computed, never the 1,000,001 x 768 table;
* attention: PyTorch's fused SDPA kernels that return the log-sum-exp (CPU flash; CUDA flash or
  memory-efficient, see :func:`modaltune.layers.attention.lse_backend`) or an exact chunked fallback, instead of flash-attn;
* grid indices outside ``[0, 1000)`` raise :class:`InputError` instead of wrapping/aliasing silently;
* branch merge: q/k/v are zero-padded once for all branches and each branch's weighted output is added in
  place into one accumulator (the official code pads per branch and scatters every branch into a dense
  zero-filled copy before summing); same values, 0.82-0.85x the forward time at 4k-8k patches (issue 19, benchmarks/RESULTS.md);
* optional right padding (``mask``, True = valid patch): each slide is attended over its own valid tokens only,
  which equals running the official model on every slide separately.

Architecture (eval mode; dropout / drop-path are identity):
``x = patch_embed(features) + pos(coords)``; ``[CLS; x]``; 12 pre-LN layers with sub-LN
(``x += out_proj(inner_ln(DilatedAttn(ln(x))))``; ``x += fc2(ffn_ln(gelu_fp32(fc1(ln(x)))))``);
``encoder.layer_norm``; then ``norm`` of CLS (``global_pool=False``) or of the patch-token mean.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modaltune.errors import InputError
from modaltune.layers.attention import attention_with_lse
from modaltune.layers.mlp import DropPath
from modaltune.layers.pos_embed import sincos_2d_rows

from ._contracts import check_coords, check_features, check_mask
from .base import SlideEncoder, TokenState

__all__ = ["GigaPathSlideEncoder", "dilated_attention", "GIGAPATH_SEGMENT_LENGTHS", "GIGAPATH_DILATED_RATIOS"]

#: Official values: ``2 ** linspace(10, 20, 5)`` cast to int (``get_optimal_segment_length(262144, 256)``).
GIGAPATH_SEGMENT_LENGTHS: tuple[int, ...] = (1024, 5792, 32768, 185363, 1048576)
GIGAPATH_DILATED_RATIOS: tuple[int, ...] = (1, 2, 4, 8, 16)
_NEG = -1e8  # lse of (token, head) pairs a branch does not cover (official constant)


def _sparsify(x: torch.Tensor, s: int, r: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Segment + dilate ``x (B, N, H, Dh)`` into ``(B*n, H, m, Dh)`` for one branch.

    Rows are zero-padded to ``n*s`` (``n = ceil(N/s)``) and each segment to ``s' = m*r``. Head group
    ``j`` (heads ``j*H/r .. (j+1)*H/r - 1``) takes segment positions ``j, j+r, j+2r, ...``.
    """
    B, N, H, Dh = x.shape
    n = -(-N // s)
    m = -(-s // r)
    if n * s != N:  # (padding copies are skipped when no padding is needed)
        x = F.pad(x, (0, 0, 0, 0, 0, n * s - N))
    x = x.reshape(B, n, s, H, Dh)
    if m * r != s:
        x = F.pad(x, (0, 0, 0, 0, 0, m * r - s))
    if r == 1:  # plain segments: a strided view, which the attention kernel accepts without a copy
        return x.reshape(B * n, m, H, Dh).transpose(1, 2), (B, n, m, N)
    # (B, n, m, offset, group, head-in-group, Dh): keep offset == group (the diagonal).
    x = x.view(B, n, m, r, r, H // r, Dh)
    x = torch.diagonal(x, dim1=3, dim2=4)  # (B, n, m, H/r, Dh, r[group])
    x = x.permute(0, 1, 5, 3, 2, 4).reshape(B * n, H, m, Dh)
    return x, (B, n, m, N)


def _densify(out: torch.Tensor, lse: torch.Tensor, s: int, r: int, dims: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter a branch's sparse ``out (B*n, H, m, Dh)``, ``lse (B*n, H, m)`` back to tokens.

    Returns ``out (B, N, H, Dh)`` (0 where not covered) and ``lse (B, N, H)`` (-1e8 where not covered).
    """
    B, n, m, N = dims
    _, H, _, Dh = out.shape
    if r == 1:
        dense = out.transpose(1, 2).reshape(B, n * m, H, Dh)[:, :N]
        dl = lse.transpose(1, 2).reshape(B, n * m, H)[:, :N]
        return dense, dl
    g = H // r
    dense = out.new_zeros(B, n, m, r, r, g, Dh)
    torch.diagonal(dense, dim1=3, dim2=4).copy_(out.view(B, n, r, g, m, Dh).permute(0, 1, 4, 3, 5, 2))
    dense = dense.view(B, n, m * r, H, Dh)[:, :, :s].reshape(B, n * s, H, Dh)[:, :N]
    dl = lse.new_full((B, n, m, r, r, g), _NEG)
    torch.diagonal(dl, dim1=3, dim2=4).copy_(lse.view(B, n, r, g, m).permute(0, 1, 4, 3, 2))
    dl = dl.view(B, n, m * r, H)[:, :, :s].reshape(B, n * s, H)[:, :N]
    return dense, dl


def _branch_rows(N: int, s: int, r: int) -> int | None:
    """Rows of the zero-padded sequence that branch ``(s, r)`` reads when its segments can be cut straight
    out of one shared zero-padded buffer (``n = 1``, or ``r`` divides ``s``); None when they cannot."""
    n, m = -(-N // s), -(-s // r)
    if n == 1:
        return m * r
    return n * s if s % r == 0 else None


def _sparse_view(x: torch.Tensor, s: int, r: int, rows: int) -> torch.Tensor:
    """Branch view of the padded ``x (B, L, H, Dh)``: ``(B, n, m, H/r, Dh, r)``, group j = offset j (no copy)."""
    B, _, H, Dh = x.shape
    m = -(-s // r)
    n = rows // (m * r)
    return torch.diagonal(x[:, :rows].view(B, n, m, r, r, H // r, Dh), dim1=3, dim2=4)


def _merged_dilated_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, branches: list[tuple[int, int]]) -> torch.Tensor:
    """Fast path of :func:`dilated_attention` (same values, fewer passes over ``N x D`` tensors).

    * q, k, v are zero-padded **once** to the longest row count any branch reads (the official code
      pads per branch and per segment);
    * every branch's segments are a view of that buffer; only the dilated gather is copied (``N D / r``);
    * the branch weights ``softmax_i(lse_i)`` are computed on the small ``(B, N, H)`` lse maps, then each
      branch's sparse output, times its weights, is added in place into one accumulator through the
      same diagonal view, instead of scattering every branch into a zero-filled dense copy and summing
      five dense tensors.
    """
    B, N, H, Dh = q.shape
    rows = [_branch_rows(N, s, r) for s, r in branches]
    L = max(rows)
    pad = (0, 0, 0, 0, 0, L - N)
    qp, kp, vp = (F.pad(t, pad) if L > N else t for t in (q, k, v))
    acc_dtype = torch.float32 if q.dtype != torch.float64 else q.dtype
    outs, lses = [], []
    for (s, r), R in zip(branches, rows):
        m = -(-s // r)
        n = R // (m * r)
        if r == 1:  # plain segments: strided views, which the kernel takes without a copy
            qs, ks, vs = (t[:, :R].reshape(B * n, m, H, Dh).transpose(1, 2) for t in (qp, kp, vp))
        else:  # (B, n, m, H/r, Dh, r) -> (B*n, H, m, Dh), head h = group-major as officially
            qs, ks, vs = (_sparse_view(t, s, r, R).permute(0, 1, 5, 3, 2, 4).reshape(B * n, H, m, Dh) for t in (qp, kp, vp))
        o, lse = attention_with_lse(qs, ks, vs)
        del qs, ks, vs
        lse = lse.to(acc_dtype)
        # dense lse (B, L, H): -1e8 where the branch does not cover a (token, head) pair
        dl = lse.new_full((B, L, H), _NEG)
        if r == 1:
            dl[:, :R] = lse.view(B, n, H, m).permute(0, 1, 3, 2).reshape(B, R, H)
        else:
            g = H // r
            torch.diagonal(dl[:, :R].view(B, n, m, r, r, g), dim1=3, dim2=4).copy_(lse.view(B, n, r, g, m).permute(0, 1, 4, 3, 2))
        dl = dl[:, :N]
        dl.masked_fill_(dl == 0, _NEG)  # official quirk: an lse of exactly 0.0 counts as "not covered"
        outs.append(o)
        lses.append(dl)
    with torch.no_grad():
        lse = torch.stack(lses, 0)
        w = torch.softmax(lse, 0).to(q.dtype)  # = exp(lse - max) / sum, the official merge weights
        w = F.pad(w, (0, 0, 0, L - N)) if L > N else w  # (n_branches, B, L, H)
    acc = q.new_zeros(B, L, H, Dh)
    for bi, ((s, r), R, o) in enumerate(zip(branches, rows, outs)):
        m = -(-s // r)
        n = R // (m * r)
        if r == 1:
            acc[:, :R].addcmul_(o.transpose(1, 2).reshape(B, R, H, Dh), w[bi, :, :R, :, None])
        else:
            g = H // r
            target = _sparse_view(acc, s, r, R)  # (B, n, m, g, Dh, r)
            wv = torch.diagonal(w[bi, :, :R].reshape(B, n, m, r, r, g), dim1=3, dim2=4)  # (B, n, m, g, r)
            target.addcmul_(o.view(B, n, r, g, m, Dh).permute(0, 1, 4, 3, 5, 2), wv[..., None, :])
    return acc[:, :N]


def dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_lengths: Sequence[int] = GIGAPATH_SEGMENT_LENGTHS,
    dilated_ratios: Sequence[int] = GIGAPATH_DILATED_RATIOS,
    return_branches: bool = False,
) -> Any:
    """LongNet dilated attention exactly as the official torchscale ``DilatedAttention`` (eval).

    Args:
        q, k, v: ``(B, N, H, Dh)`` projected queries/keys/values (no masking; equal lengths).
        segment_lengths, dilated_ratios: one branch per pair ``(s_i, r_i)``; ``r_i`` must divide H.
        return_branches: also return the per-branch sparse ``(out, lse)`` in the official layout
            (``out (B*n, m, H*Dh)``, ``lse (B*n, H, m)``) for testing.

    Returns:
        ``(B, N, H, Dh)``: per (token, head), the lse-weighted mix of the branches covering it,
        ``sum_i w_i out_i`` with ``w = softmax_i(lse_i)``. Zero-padded rows are valid keys (logit 0,
        value 0), as in the official code. The weights are constants for autograd (official: no_grad).

    Without ``return_branches`` and when every branch's segments can be cut from one padded buffer
    (always for the released GigaPath: ``r_i`` divides ``s_i`` wherever a sequence has several
    segments), the fused merge :func:`_merged_dilated_attention` runs; otherwise the per-branch
    scatter below (the official layout step by step).
    """
    _, N, H, Dh = q.shape
    for r in dilated_ratios:
        if H % r:
            raise ValueError(f"dilation ratio {r} must divide the number of heads {H}")
    pairs = [(min(int(s_len), N), int(r)) for s_len, r in zip(segment_lengths, dilated_ratios)]
    if not return_branches and all(_branch_rows(N, s, r) is not None for s, r in pairs):
        return _merged_dilated_attention(q, k, v, pairs)
    lses, outs, branches = [], [], []
    for s, r in pairs:
        qs, dims = _sparsify(q, s, r)
        ks, _ = _sparsify(k, s, r)
        vs, _ = _sparsify(v, s, r)
        o, lse = attention_with_lse(qs, ks, vs)
        del qs, ks, vs
        if return_branches:
            branches.append((o.transpose(1, 2).reshape(o.shape[0], o.shape[2], H * Dh), lse))
        od, ld = _densify(o, lse.to(torch.float32 if o.dtype != torch.float64 else o.dtype), s, r, dims)
        # Official quirk: an lse of exactly 0.0 is treated as "not covered".
        ld = ld.masked_fill(ld == 0, _NEG)
        outs.append(od)
        lses.append(ld)
    with torch.no_grad():
        lse = torch.stack(lses, 0)
        w = torch.exp(lse - lse.max(0, keepdim=True)[0])
        w = (w / w.sum(0, keepdim=True)).to(q.dtype)
    out = outs[0] * w[0][..., None]
    for i in range(1, len(outs)):
        out = out + outs[i] * w[i][..., None]
    return (out, branches) if return_branches else out


def _positive_number(x: Any) -> bool:
    """True for a finite positive real scalar (Python/NumPy number or 0-d tensor; not a bool or str)."""
    if isinstance(x, (bool, str, bytes)):
        return False
    try:
        v = float(x)
    except (TypeError, ValueError, RuntimeError):
        return False
    return 0.0 < v < float("inf")


class _PatchEmbed(nn.Module):
    """``Linear(in_dim -> embed_dim)`` named ``proj`` (official ``PatchEmbed``; its norm is Identity)."""

    def __init__(self, in_dim: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class _DilatedSelfAttention(nn.Module):
    """Official ``self_attn`` module layout: k/v/q/out projections + sub-LN ``inner_attn_ln``."""

    def __init__(self, dim: int, num_heads: int, eps: float, segment_lengths: Sequence[int], dilated_ratios: Sequence[int]):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.segment_lengths = tuple(segment_lengths)
        self.dilated_ratios = tuple(dilated_ratios)
        # Creation order k, v, q, out matches the official state-dict order.
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.inner_attn_ln = nn.LayerNorm(dim, eps=eps)

    def attend(self, h: torch.Tensor, lengths: list[int] | None = None) -> torch.Tensor:
        """Merged dilated attention of ``h (B, T, D)`` before ``inner_attn_ln``: ``(B, T, D)``."""
        B, T, D = h.shape
        q = self.q_proj(h).view(B, T, self.num_heads, self.head_dim)
        k = self.k_proj(h).view(B, T, self.num_heads, self.head_dim)
        v = self.v_proj(h).view(B, T, self.num_heads, self.head_dim)
        if lengths is None:
            a = dilated_attention(q, k, v, self.segment_lengths, self.dilated_ratios)
        else:  # right-padded batch: every slide attends over its own tokens only
            a = q.new_zeros(q.shape)
            for b, L in enumerate(lengths):
                a[b, :L] = dilated_attention(q[b : b + 1, :L], k[b : b + 1, :L], v[b : b + 1, :L], self.segment_lengths, self.dilated_ratios)[0]
        return a.reshape(B, T, D)

    def forward(self, h: torch.Tensor, lengths: list[int] | None = None) -> torch.Tensor:
        return self.out_proj(self.inner_attn_ln(self.attend(h, lengths)))


class _FFN(nn.Module):
    """Official sub-LN feed-forward: ``fc2(ffn_layernorm(gelu_fp32(fc1(x))))``."""

    def __init__(self, dim: int, hidden: int, eps: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.ffn_layernorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(0.25)  # official dropout=0.25 (train only)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = F.gelu(h.float()).type_as(h)  # official: GELU always evaluated in float32
        return self.fc2(self.ffn_layernorm(h))


class _EncoderLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, hidden: int, eps: float, drop_path: float, dropout: float,
                 segment_lengths: Sequence[int], dilated_ratios: Sequence[int]):
        super().__init__()
        self.self_attn = _DilatedSelfAttention(dim, num_heads, eps, segment_lengths, dilated_ratios)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.ffn = _FFN(dim, hidden, eps)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout_module = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, lengths: list[int] | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.dropout_module(self.self_attn(self.self_attn_layer_norm(x), lengths)))
        x = x + self.drop_path(self.dropout_module(self.ffn(self.final_layer_norm(x))))
        return x


class _Encoder(nn.Module):
    def __init__(self, layers: list[_EncoderLayer], dim: int, eps: float):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.layer_norm = nn.LayerNorm(dim, eps=eps)


class GigaPathSlideEncoder(SlideEncoder):
    """Prov-GigaPath slide encoder (defaults = released ``gigapath_slide_enc12l768d``).

    Args:
        in_dim: tile-feature width (1536 for the GigaPath tile encoder).
        embed_dim, depth, num_heads, ffn_dim: 768, 12, 16 (head_dim 48), 3072 as released.
        tile_size: level-0 pixels per grid cell for positions (256 = 256-px tiles at 20x; TRIDENT
            uses ``patch_size_level0``, e.g. 512 at 40x). Can be overridden per call in :meth:`embed`.
        global_pool: False (official default) reads the CLS token; True averages the patch tokens
            (TRIDENT's choice; the GigaPath demo notes CLS was not trained in pre-training).
        slide_ngrids: side of the position grid (1000); grid indices must lie in ``[0, slide_ngrids)``.
        dropout, drop_path_rate: training-time regularisation as in the official model.

    Stages: ``embed`` -> ``run_layers`` (``num_layers = depth``) -> ``pool``; see
    :mod:`modaltune.encoders.slide.base`. Token 0 is CLS; patch tokens keep the input order (order
    matters: segments and dilations act on sequence positions).
    """

    requires_pretrained = True

    def __init__(
        self,
        in_dim: int = 1536,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 16,
        ffn_dim: int | None = None,
        tile_size: int = 256,
        global_pool: bool = False,
        slide_ngrids: int = 1000,
        segment_lengths: Sequence[int] = GIGAPATH_SEGMENT_LENGTHS,
        dilated_ratios: Sequence[int] = GIGAPATH_DILATED_RATIOS,
        layernorm_eps: float = 1e-5,
        norm_eps: float = 1e-6,
        dropout: float = 0.25,
        drop_path_rate: float = 0.1,
    ):
        super().__init__()
        self.in_dim = in_dim
        self.embed_dim = embed_dim
        self.num_layers = depth
        self.num_heads = num_heads
        self.tile_size = tile_size
        self.global_pool = global_pool
        self.slide_ngrids = slide_ngrids
        ffn_dim = ffn_dim or 4 * embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.patch_embed = _PatchEmbed(in_dim, embed_dim)
        dpr = np.linspace(0, drop_path_rate, depth)
        self.encoder = _Encoder(
            [
                _EncoderLayer(embed_dim, num_heads, ffn_dim, layernorm_eps, float(dpr[i]), dropout, segment_lengths, dilated_ratios)
                for i in range(depth)
            ],
            embed_dim,
            layernorm_eps,
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.embed_dropout = nn.Dropout(dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    # -- positions ----------------------------------------------------------------------------
    def grid_index(self, coords: torch.Tensor, tile_size: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid cell ``(gx, gy)`` of each tile: ``floor(coords / tile_size)`` as int64 ``(B, N)`` each.

        Raises InputError when a cell lies outside ``[0, slide_ngrids)`` (the official model would
        index out of range, wrap negative indices or alias ``gy >= 1000`` onto the next column).
        """
        ts = self.tile_size if tile_size is None else tile_size
        if not _positive_number(ts):
            raise InputError(
                f"GigaPath slide encoder needs tile_size as a positive number of level-0 pixels per grid cell, got {ts!r}",
                where="tile_size",
                fix="pass the level-0 patch size (256 for 256-px tiles at 20x, 512 at 40x)",
            )
        g = torch.floor(coords / ts).long()
        gx, gy = g[..., 0], g[..., 1]
        bad = (g < 0) | (g >= self.slide_ngrids)
        if bad.any():
            *where, axis = bad.nonzero()[0].tolist()
            name = "gx" if axis == 0 else "gy"
            at = f"slide {where[0]}, patch {where[1]}" if len(where) == 2 else f"patch {where[-1]}"
            raise InputError(
                f"GigaPath position grid index {name}={int(g[(*where, axis)])} of {at} (coords "
                f"{coords[tuple(where)].tolist()}) is outside [0, {self.slide_ngrids}): the backbone's position table "
                f"covers a {self.slide_ngrids} x {self.slide_ngrids} grid of floor(coord / tile_size) cells with "
                f"tile_size={ts} ({int(bad.any(-1).sum())} patch(es) outside; the official model would wrap or alias them)",
                where="coords",
                fix="pass level-0 pixel coordinates and set tile_size to the level-0 patch size (e.g. 512 for 256-px tiles at 40x)",
            )
        return gx, gy

    def pos_index(self, coords: torch.Tensor, tile_size: float | None = None) -> torch.Tensor:
        """Official row index into the position table: ``gx * 1000 + gy + 1`` ``(B, N)``."""
        gx, gy = self.grid_index(coords, tile_size)
        return gx * self.slide_ngrids + gy + 1

    # -- stages -------------------------------------------------------------------------------
    def embed(self, features: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None,
              tile_size: float | None = None, *, padding_mask: torch.Tensor | None = None, **kw: Any) -> TokenState:
        """``features (B, N, in_dim)``, ``coords (B, N, 2)`` level-0 px, ``mask (B, N)`` True = valid
        -> ``TokenState`` with T = N + 1 (``padding_mask=`` is the deprecated inverse of ``mask``).

        ``state.context["lengths"]`` holds the valid token count per slide (CLS included) when the
        mask has padding.
        """
        features = check_features(features, self.in_dim, "GigaPath slide encoder")
        coords = check_coords(coords, features, "GigaPath slide encoder")
        mask = check_mask(mask, features, "GigaPath slide encoder", padding_mask=padding_mask)
        dtype = self.cls_token.dtype
        if mask is not None:  # padded rows may carry junk coords; give them cell (0, 0)
            coords = coords.masked_fill(~mask[..., None], 0)
        gx, gy = self.grid_index(coords, tile_size)
        pos = sincos_2d_rows(gx, gy, self.embed_dim, dtype=dtype)
        x = self.patch_embed(features.to(dtype)) + pos
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # + pos row 0, which is all zeros
        x = self.embed_dropout(torch.cat([cls, x], dim=1))
        context: dict[str, Any] = {}
        token_mask = None
        if mask is not None:
            token_mask = torch.cat([mask.new_ones(x.shape[0], 1), mask], dim=1)  # CLS is always valid
            if not token_mask.all():
                context["lengths"] = [int(n) for n in token_mask.sum(1)]
                x = x.masked_fill(~token_mask[..., None], 0.0)
        return TokenState(tokens=x, num_prefix=1, mask=token_mask, context=context)

    def _run_layer(self, index: int, state: TokenState) -> torch.Tensor:
        x = self.encoder.layers[index](state.tokens, state.context.get("lengths"))
        if state.mask is not None and "lengths" in state.context:
            x = x.masked_fill(~state.mask[..., None], 0.0)
        return x

    def _pool_tokens(self, x: torch.Tensor, state: TokenState, global_pool: bool) -> torch.Tensor:
        if not global_pool:
            return self.norm(x[:, 0])
        patches = x[:, 1:]
        pm = state.patch_mask
        if pm is None:
            mean = patches.mean(dim=1)
        else:
            valid = pm.to(x.dtype)[..., None]
            mean = (patches * valid).sum(1) / valid.sum(1)
        return self.norm(mean)

    def pool(self, state: TokenState, global_pool: bool | None = None) -> torch.Tensor:
        """``encoder.layer_norm`` then ``norm`` of CLS or of the patch mean: ``(B, embed_dim)``."""
        gp = self.global_pool if global_pool is None else global_pool
        return self._pool_tokens(self.encoder.layer_norm(state.tokens), state, gp)

    def pool_raw(self, state: TokenState, global_pool: bool | None = None) -> torch.Tensor:
        """Official ``all_layer_embed`` pooling of one raw state (no ``encoder.layer_norm``)."""
        gp = self.global_pool if global_pool is None else global_pool
        return self._pool_tokens(state.tokens, state, gp)

    def forward_all_layers(self, features: torch.Tensor, coords: torch.Tensor | None = None,
                           mask: torch.Tensor | None = None, global_pool: bool | None = None,
                           **kw: Any) -> torch.Tensor:
        """Official ``forward(all_layer_embed=True)`` stacked: ``(depth + 1, B, embed_dim)``.

        Entry 0 pools the embedding input, entry i the state after layer i; none of them pass through
        ``encoder.layer_norm`` (so entry ``depth`` differs from :meth:`forward`). TRIDENT's GigaPath
        output is entry 11 with ``global_pool=True``. ``mask (B, N)`` True = valid patch (the deprecated
        ``padding_mask=`` travels in ``kw`` to :meth:`embed`).
        """
        state = self.embed(features, coords, mask=mask, **kw)
        outs = [self.pool_raw(state, global_pool)]
        for i in range(self.num_layers):
            state = self.run_layers(state, i, i + 1)
            outs.append(self.pool_raw(state, global_pool))
        return torch.stack(outs)

    def forward(self, features: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                global_pool: bool | None = None, **kw: Any) -> torch.Tensor:
        """Slide embedding ``(B, embed_dim)`` (official ``forward(x, coords)[0]``); ``mask (B, N)`` True = valid
        patch (the deprecated ``padding_mask=`` travels in ``kw`` to :meth:`embed`)."""
        state = self.embed(features, coords, mask=mask, **kw)
        state = self.run_layers(state, 0, self.num_layers)
        return self.pool(state, global_pool)
