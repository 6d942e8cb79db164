"""2-D ALiBi attention bias (TITAN), computed per query tile so memory stays linear in N.

The official TITAN code builds the full ``(H, N+1, N+1)`` bias: ``bias[h, 1+i, 1+j] = -slope_h *
float32(dist_ij)`` with ``dist_ij`` the Euclidean distance between the grid cells of tokens i and j
computed in float64, and zeros in the CLS row and column. :func:`alibi_bias_tile` reproduces those
values bit-exactly for a block of query rows.
"""
from __future__ import annotations

import math

import torch

__all__ = ["alibi_slopes", "alibi_bias_tile"]


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi head slopes (Press et al.), as float32 ``(num_heads,)``.

    For a power of two n the slopes are ``p**1, ..., p**n`` with ``p = 2**(-8/n)``; otherwise the
    slopes of the nearest lower power of two ``c`` followed by every other slope of ``2c``.
    For 12 heads: 0.5, 0.25, ..., 0.00390625, 0.7071, 0.3536, 0.1768, 0.0884.
    """

    def _pow2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        slopes = _pow2(num_heads)
    else:
        c = 2 ** math.floor(math.log2(num_heads))
        slopes = _pow2(c) + _pow2(2 * c)[0::2][: num_heads - c]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias_tile(
    grid_q: torch.Tensor,
    grid_k: torch.Tensor,
    slopes: torch.Tensor,
    q_is_cls: torch.Tensor | None = None,
    k_is_cls: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """ALiBi bias for a tile of queries against all keys.

    Args:
        grid_q: ``(Q, 2)`` integer grid cells of the query tokens.
        grid_k: ``(K, 2)`` integer grid cells of the key tokens.
        slopes: ``(H,)`` float32 slopes from :func:`alibi_slopes`.
        q_is_cls, k_is_cls: optional ``(Q,)`` / ``(K,)`` bool, True for CLS tokens (bias 0 on
            their row/column).
        dtype: output dtype; values are float32-rounded first (as in the official model).

    Returns:
        ``(H, Q, K)`` bias ``-slope_h * float32(sqrt(dx^2 + dy^2))``.
    """
    d = (grid_q[:, None, :] - grid_k[None, :, :]).to(torch.int64)
    d2 = (d * d).sum(-1)
    # sqrt of an integer exactly representable in float32 rounds to the same float32 as the
    # official float64 sqrt then cast (double rounding is innocuous for sqrt: 53 >= 2*24 + 2),
    # so take the cheaper float32 path whenever every squared distance is below 2**24.
    if d2.numel() == 0 or int(d2.max()) < 2**24:
        dist = torch.sqrt(d2.to(torch.float32))
    else:
        dist = torch.sqrt(d2.to(torch.float64)).to(torch.float32)
    if q_is_cls is not None:
        dist = dist.masked_fill(q_is_cls[:, None], 0.0)
    if k_is_cls is not None:
        dist = dist.masked_fill(k_is_cls[None, :], 0.0)
    bias = dist[None, :, :] * slopes.to(dist.device)[:, None, None] * -1.0
    return bias.to(dtype)
