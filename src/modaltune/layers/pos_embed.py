"""Fixed sin-cos position embeddings, computed only for the rows that are needed.

The MAE-style 2-D table used by Prov-GigaPath (``get_2d_sincos_pos_embed(D, G, cls_token=True)``)
has ``1 + G*G`` rows; row ``1 + a*G + b`` (grid column ``a`` = x index, grid row ``b`` = y index)
is ``concat(E(b), E(a))`` with ``E(p) = [sin(p*w_0..w_{D/4-1}), cos(p*w_0..w_{D/4-1})]`` and
``w_k = 10000 ** (-k / (D/4))``. The official code builds the whole table (1,000,001 x 768 for
GigaPath) in float64 and rounds it to float32; :func:`sincos_2d_rows` returns the same float32
values for just the requested ``(a, b)`` pairs, so memory is O(N*D) instead of O(G^2*D).
"""
from __future__ import annotations

import torch

__all__ = ["sincos_1d", "sincos_2d_rows"]


def sincos_1d(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """1-D sin-cos embedding ``[sin(p*w), cos(p*w)]`` in float64.

    Args:
        pos: ``(N,)`` positions (any real dtype; converted to float64).
        dim: output width (even); ``w_k = 10000 ** (-k / (dim/2))`` for ``k < dim/2``.

    Returns:
        ``(N, dim)`` float64.
    """
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    half = dim // 2
    omega = torch.arange(half, dtype=torch.float64, device=pos.device) / (dim / 2.0)
    omega = 1.0 / (10000.0**omega)
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d_rows(gx: torch.Tensor, gy: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rows of the MAE 2-D sin-cos table for integer grid positions, computed in float64 then cast.

    Args:
        gx: ``(...)`` integer x grid index (column, ``a`` above).
        gy: ``(...)`` integer y grid index (row, ``b`` above); same shape as ``gx``.
        dim: embedding width D (multiple of 4).
        dtype: output dtype. The official table is float32; rounding goes f64 -> float32 -> dtype,
            so float64 output still carries the float32-rounded values, as in the official model.

    Returns:
        ``(..., D)``: channels ``[0:D/4]`` sin(gy w), ``[D/4:D/2]`` cos(gy w), ``[D/2:3D/4]`` sin(gx w),
        ``[3D/4:D]`` cos(gx w).
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding width must be a multiple of 4, got {dim}")
    shape = gx.shape
    emb = torch.cat([sincos_1d(gy.reshape(-1), dim // 2), sincos_1d(gx.reshape(-1), dim // 2)], dim=1)
    return emb.to(torch.float32).to(dtype).reshape(*shape, dim)
