"""Attention helpers shared by the slide encoders.

* :func:`attention_with_lse`: softmax attention that also returns the log-sum-exp of the logits
  (needed to merge LongNet's dilated branches). Uses the fused SDPA kernel that returns the lse
  (CPU flash; CUDA flash for half types, memory-efficient otherwise; see :func:`lse_backend`) and
  falls back to an exact query-chunked implementation where none runs.
* :func:`alibi_attention`: full attention with a 2-D ALiBi bias that is built tile by tile over the
  queries, so memory grows linearly in the number of tokens.
* :class:`Attention`: timm-style multi-head self-attention (``qkv`` and ``proj`` Linear layers) with
  an optional key mask.

Masks follow the internal convention: ``(B, T)`` bool, True = valid token (None = all valid). SDPA's
boolean ``attn_mask`` uses the same convention (True = may attend), so only the additive ALiBi bias
inverts it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .alibi import AlibiBiasTiles, alibi_bias_tile, distance_table

__all__ = ["attention_with_lse", "attention_with_lse_reference", "lse_backend", "alibi_attention", "Attention"]

# Upper bound on the number of logits materialised at once by the chunked code paths
# (2**25 float32 values = 128 MiB).
_MAX_TILE_ELEMS = 2**25


def attention_with_lse_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None, max_tile_elems: int = _MAX_TILE_ELEMS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact softmax attention and log-sum-exp, chunked over queries (plain PyTorch, any device).

    Args:
        q, k, v: ``(B, H, L, Dh)`` (keys/values may have another length ``S``).
        scale: logit scale, default ``1/sqrt(Dh)``.

    Returns:
        ``out (B, H, L, Dh)`` = softmax(q k^T * scale) v and ``lse (B, H, L)`` float32 (float64 for
        float64 inputs) = logsumexp over keys of the scaled logits.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    b, h, L, _ = q.shape
    S = k.shape[-2]
    step = max(1, int(max_tile_elems // max(1, b * h * S)))
    acc_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    outs, lses = [], []
    for i in range(0, L, step):
        s = torch.matmul(q[:, :, i : i + step].to(acc_dtype), k.to(acc_dtype).transpose(-1, -2)) * scale
        lse = torch.logsumexp(s, dim=-1)
        p = torch.exp(s - lse[..., None])
        outs.append(torch.matmul(p, v.to(acc_dtype)).to(q.dtype))
        lses.append(lse)
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)


_HALF = (torch.float16, torch.bfloat16)


def lse_backend(device_type: str, dtype: torch.dtype, head_dim: int) -> str:
    """The kernel :func:`attention_with_lse` tries first for inputs of this device, dtype and head size.

    * ``"cpu_flash"``: CPU float32/float64/bfloat16/float16, PyTorch's fused CPU flash kernel
      (``aten._scaled_dot_product_flash_attention_for_cpu``; the one SDPA uses on CPU);
    * ``"cuda_flash"``: CUDA float16/bfloat16 with ``head_dim % 8 == 0`` and ``<= 256``, the
      FlashAttention-2 kernel behind SDPA (``aten._scaled_dot_product_flash_attention``; needs
      sm80+, otherwise it raises and ``"cuda_efficient"`` is tried next);
    * ``"cuda_efficient"``: other CUDA float32/float16/bfloat16 inputs, SDPA's memory-efficient
      kernel with ``compute_log_sumexp=True``;
    * ``"reference"``: everything else (e.g. CUDA float64, MPS), the exact chunked
      :func:`attention_with_lse_reference`.

    All kernels return the lse in float32 (float64 for float64 inputs) and never materialise the
    ``L x S`` logits. Only the CPU kernels and the fallback are exercised in this repository's test
    suite (no GPU); the CUDA choices follow the SDPA backends' documented dtype/head-size limits.
    """
    if device_type == "cpu" and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu") and dtype in (torch.float32, torch.float64) + _HALF:
        return "cpu_flash"
    if device_type == "cuda":
        if dtype in _HALF and head_dim % 8 == 0 and head_dim <= 256 and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention"):
            return "cuda_flash"
        if dtype in (torch.float32,) + _HALF and hasattr(torch.ops.aten, "_scaled_dot_product_efficient_attention"):
            return "cuda_efficient"
    return "reference"


def _fused_lse(backend: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    L = q.shape[-2]
    if backend == "cpu_flash":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, scale=scale)
    elif backend == "cuda_flash":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scale)[:2]
    elif backend == "cuda_efficient":
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, False, scale=scale)[:2]
    else:
        raise ValueError(f"unknown attention backend {backend!r}")
    # the memory-efficient kernel pads the lse rows to a multiple of 32
    return out, lse[..., :L]


def attention_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention (no mask) returning ``(out, lse)``; see :func:`attention_with_lse_reference`.

    Args:
        q, k, v: ``(B, H, L, Dh)`` (keys/values may have another length ``S``), any strides with a
            unit last-dim stride.

    Returns:
        ``out (B, H, L, Dh)`` in the dtype of ``q`` and ``lse (B, H, L)`` in float32 (float64 for
        float64 inputs).

    The fused kernel of :func:`lse_backend` is used when it runs; a kernel that refuses the input
    (unsupported GPU, layout or build) falls back to the exact chunked reference. The lse is meant
    for branch-merging weights that are treated as constants (the official LongNet computes them
    under ``no_grad``), so it carries no gradient.
    """
    first = lse_backend(q.device.type, q.dtype, q.shape[-1])
    # flash needs sm80+; an older GPU still gets the fused memory-efficient kernel
    candidates = {"reference": [], "cuda_flash": ["cuda_flash", "cuda_efficient"]}.get(first, [first])
    for backend in candidates:
        try:
            out, lse = _fused_lse(backend, q, k, v, scale)
            return out, lse.detach()
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, NotImplementedError, TypeError):  # kernel unavailable for this input/build
            continue
    out, lse = attention_with_lse_reference(q, k, v, scale)
    return out, lse.detach()


def alibi_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: torch.Tensor,
    slopes: torch.Tensor,
    num_prefix: int = 1,
    mask: torch.Tensor | None = None,
    max_tile_elems: int | None = None,
) -> torch.Tensor:
    """Self-attention with a 2-D ALiBi bias, streamed over query tiles.

    Args:
        q, k, v: ``(B, H, T, Dh)``.
        grid: ``(B, T, 2)`` integer grid cell of every token (rows ``< num_prefix`` are ignored).
        slopes: ``(H,)`` float32 ALiBi slopes.
        num_prefix: number of leading tokens (CLS) whose bias row/column is zero.
        mask: optional ``(B, T)`` bool, True = valid token (False keys are excluded).

    Returns:
        ``(B, H, T, Dh)``. Peak extra memory is about ``max_tile_elems`` bias values (default
        ``2**25``, 128 MiB in float32) instead of ``H * T * T``.
    """
    B, H, T, _ = q.shape
    max_tile_elems = _MAX_TILE_ELEMS if max_tile_elems is None else max_tile_elems
    step = max(1, int(max_tile_elems // max(1, B * H * T)))
    is_cls = torch.arange(T, device=q.device) < num_prefix
    # per-slide index tables when they are small next to one bias tile (compact slides), else the plain tile builder
    fast = [AlibiBiasTiles(grid[b], slopes, num_prefix, step) if AlibiBiasTiles.table_elems(grid[b]) <= max_tile_elems else None
            for b in range(B)]
    tables = [distance_table(grid[b]) if fast[b] is None else None for b in range(B)]
    pad = None if mask is None else ~mask[:, None, None, :]  # -inf bias on padded keys
    buf = torch.empty(B * H * min(step, T) * T, dtype=q.dtype, device=q.device)  # reused by every tile
    f32 = None if q.dtype == torch.float32 else torch.empty(H * min(step, T) * T, dtype=torch.float32, device=q.device)
    out = torch.empty_like(q)
    for i in range(0, T, step):
        j = min(T, i + step)
        bias = buf[: B * H * (j - i) * T].view(B, H, j - i, T)  # contiguous, so a tile can be written with out=
        for b in range(B):
            if fast[b] is not None:
                res = fast[b].write(i, j, bias[b] if f32 is None else f32[: H * (j - i) * T].view(H, j - i, T))
            else:
                res = alibi_bias_tile(grid[b, i:j], grid[b], slopes, is_cls[i:j], is_cls, dtype=q.dtype, dist_table=tables[b],
                                      out=bias[b] if q.dtype == torch.float32 else None)
            if res.data_ptr() != bias[b].data_ptr():
                bias[b].copy_(res)
        if pad is not None:
            bias.masked_fill_(pad, float("-inf"))
        out[:, :, i:j] = F.scaled_dot_product_attention(q[:, :, i:j], k, v, attn_mask=bias)
    return out


class Attention(nn.Module):
    """timm-style multi-head self-attention: ``proj(SDPA(split(qkv(x))))``.

    Args:
        dim: token width D; ``num_heads`` must divide it.
        qkv_bias: bias on the packed ``qkv`` Linear (rows: q | k | v, head-major).

    ``forward(x (B, T, D), mask (B, T) bool True = valid token | None) -> (B, T, D)``.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, T, D) -> q, k, v`` each ``(B, H, T, Dh)``."""
        B, T, _ = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def merge_heads(self, o: torch.Tensor) -> torch.Tensor:
        """``(B, H, T, Dh) -> proj(concat heads) (B, T, D)``."""
        B, H, T, Dh = o.shape
        return self.proj_drop(self.proj(o.transpose(1, 2).reshape(B, T, H * Dh)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.split_heads(x)
        attn_mask = None if mask is None else mask[:, None, None, :]  # SDPA bool mask: True = may attend
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0)
        return self.merge_heads(o)
