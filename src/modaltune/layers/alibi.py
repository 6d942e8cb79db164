"""2-D ALiBi attention bias (TITAN), computed per query tile so memory stays linear in N.

The official TITAN code builds the full ``(H, N+1, N+1)`` bias: ``bias[h, 1+i, 1+j] = -slope_h *
float32(dist_ij)`` with ``dist_ij`` the Euclidean distance between the grid cells of tokens i and j
computed in float64, and zeros in the CLS row and column. :func:`alibi_bias_tile` reproduces those
values bit-exactly for a block of query rows.
"""
from __future__ import annotations

import math

import torch

__all__ = ["alibi_slopes", "alibi_bias_tile", "distance_table", "AlibiBiasTiles"]


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


def distance_table(grid_a: torch.Tensor, grid_b: torch.Tensor | None = None) -> torch.Tensor:
    """Float32 Euclidean length of every integer offset ``(dx, dy)`` spanned by two point sets.

    Returns ``table (DX+1, DY+1)`` with ``table[dx, dy] = float32(sqrt_f64(dx^2 + dy^2))``, where DX/DY
    are the largest absolute offsets between ``grid_a (Q, 2)`` and ``grid_b (K, 2)`` (default
    ``grid_a``). The square root is taken in float64 and rounded once, as in the official code;
    PyTorch's vectorised float32 ``sqrt`` is not correctly rounded on every CPU, so it is avoided.
    Size is O(grid extent^2), tiny compared with the O(N^2) dense bias.
    """
    grid_b = grid_a if grid_b is None else grid_b
    both = torch.cat([grid_a, grid_b]).to(torch.int64)
    span = (both.max(0).values - both.min(0).values).tolist() if len(both) else [0, 0]
    dx = torch.arange(span[0] + 1, dtype=torch.float64, device=both.device)
    dy = torch.arange(span[1] + 1, dtype=torch.float64, device=both.device)
    return torch.sqrt(dx[:, None] ** 2 + dy[None, :] ** 2).to(torch.float32)


def alibi_bias_tile(
    grid_q: torch.Tensor,
    grid_k: torch.Tensor,
    slopes: torch.Tensor,
    q_is_cls: torch.Tensor | None = None,
    k_is_cls: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    dist_table: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """ALiBi bias for a tile of queries against all keys.

    Args:
        grid_q: ``(Q, 2)`` integer grid cells of the query tokens.
        grid_k: ``(K, 2)`` integer grid cells of the key tokens.
        slopes: ``(H,)`` float32 slopes from :func:`alibi_slopes`.
        q_is_cls, k_is_cls: optional ``(Q,)`` / ``(K,)`` bool, True for CLS tokens (bias 0 on
            their row/column).
        dtype: output dtype; values are float32-rounded first (as in the official model).
        dist_table: optional :func:`distance_table` covering every offset in the tile (pass it
            when calling repeatedly to avoid rebuilding it).
        out: optional float32 ``(H, Q, K)`` buffer to write into (avoids a fresh allocation per
            tile; fresh pages cost more than the arithmetic here).

    Returns:
        ``(H, Q, K)`` bias ``-slope_h * float32(sqrt(dx^2 + dy^2))``.
    """
    table = distance_table(grid_q, grid_k) if dist_table is None else dist_table
    # int32 offsets and one flat gather: this tile pass is memory-bound, keep it lean
    q0, q1 = (grid_q[:, a].to(torch.int32).contiguous() for a in (0, 1))
    k0, k1 = (grid_k[:, a].to(torch.int32).contiguous() for a in (0, 1))
    idx = torch.sub(q0[:, None], k0[None, :]).abs_().mul_(table.shape[1])
    idx.add_(torch.sub(q1[:, None], k1[None, :]).abs_())
    dist = table.reshape(-1).index_select(0, idx.reshape(-1)).view(idx.shape)
    if q_is_cls is not None:
        dist.masked_fill_(q_is_cls[:, None], 0.0)
    if k_is_cls is not None:
        dist.masked_fill_(k_is_cls[None, :], 0.0)
    # float32 product as in the official code (dist * slope * -1), even when the model runs in
    # float64; multiplying by the negated slope is the same float32 value (negation is exact).
    neg = -slopes.to(device=dist.device, dtype=torch.float32)
    if out is not None and dtype == torch.float32:
        return torch.mul(dist[None, :, :], neg[:, None, None], out=out)
    bias = dist[None, :, :] * neg[:, None, None]
    return bias.to(dtype)


class AlibiBiasTiles:
    """Writes the ALiBi bias of query rows ``i:j`` of one slide against all its keys, tile after tile.

    Same values as :func:`alibi_bias_tile` (bit-identical: the same float32 distances times the same
    negated float32 slopes), built with fewer passes over the ``(Q, K)`` tile, because a TITAN
    forward rebuilds every tile in each of its 6 layers and the bias pass costs about half as much
    as the attention kernel reading it:

    * the table index ``|dx| * W + |dy|`` is the sum of two row gathers from small per-slide tables
      ``AX[x] = |x - x_k| * W`` and ``AY[y] = |y - y_k|`` (one row per distinct query coordinate,
      ``(X + Y) x K`` int32, about ``2 sqrt(N) x N`` for a compact slide), instead of two
      subtract / abs passes and a multiply-add over the tile;
    * index and distance buffers are allocated once and reused (fresh pages cost more than the arithmetic);
    * CLS rows/columns (the first ``num_prefix`` tokens) are zeroed by slicing, not by a masked pass.

    Args:
        grid: ``(T, 2)`` integer grid cells of the tokens (rows ``< num_prefix`` ignored).
        slopes: ``(H,)`` float32 ALiBi slopes.
        num_prefix: leading CLS tokens (zero bias row and column).
        max_rows: largest tile height that will be requested.
    """

    def __init__(self, grid: torch.Tensor, slopes: torch.Tensor, num_prefix: int, max_rows: int):
        g = grid.to(torch.int32)
        g = g - g.min(0).values  # non-negative offsets index the per-coordinate tables
        self.num_prefix = num_prefix
        table = distance_table(grid)
        width = table.shape[1]
        self.table = table.reshape(-1)
        T = g.shape[0]
        x, y = g[:, 0].contiguous(), g[:, 1].contiguous()
        X, Y = int(x.max()) + 1, int(y.max()) + 1
        self.x, self.y = x, y
        self.ax = (torch.arange(X, dtype=torch.int32, device=g.device)[:, None] - x[None, :]).abs_().mul_(width)
        self.ay = (torch.arange(Y, dtype=torch.int32, device=g.device)[:, None] - y[None, :]).abs_()
        rows = min(max_rows, T)
        self._idx = torch.empty(rows * T, dtype=torch.int32, device=g.device)
        self._idy = torch.empty(rows * T, dtype=torch.int32, device=g.device)
        self._dist = torch.empty(rows * T, dtype=torch.float32, device=g.device)
        self.neg = -slopes.to(device=g.device, dtype=torch.float32)
        self.T = T

    @staticmethod
    def table_elems(grid: torch.Tensor) -> int:
        """Size of the per-slide index tables (``(X + Y) x T``), to decide whether they are worth it."""
        span = (grid.max(0).values - grid.min(0).values + 1).tolist() if len(grid) else [0, 0]
        return int((span[0] + span[1]) * len(grid))

    def write(self, i: int, j: int, out: torch.Tensor) -> torch.Tensor:
        """Bias of query rows ``i:j`` into ``out`` (float32 ``(H, j - i, T)``, contiguous); returns ``out``."""
        Q, T = j - i, self.T
        idx = self._idx[: Q * T].view(Q, T)
        idy = self._idy[: Q * T].view(Q, T)
        torch.index_select(self.ax, 0, self.x[i:j], out=idx)
        torch.index_select(self.ay, 0, self.y[i:j], out=idy)
        idx.add_(idy)
        dist = self._dist[: Q * T]
        torch.index_select(self.table, 0, idx.view(-1), out=dist)
        dist = dist.view(Q, T)
        p = self.num_prefix
        if p:
            dist[:, :p] = 0.0
            if i < p:
                dist[: p - i] = 0.0
        return torch.mul(dist[None, :, :], self.neg[:, None, None], out=out)
