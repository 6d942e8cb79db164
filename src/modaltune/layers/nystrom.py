"""Nystrom self-attention (Xiong et al., AAAI 2021) in the form TransMIL and CMTA use
(lucidrains' ``nystrom_attention.NystromAttention``, copied into FT-ZHOU-ZZZ/CMTA ``models/cmta/util.py``).

For one sequence ``x (B, n, dim)``, per head (``q`` already scaled by ``dim_head ** -0.5``)::

    x        <- zeros(m - n mod m) ++ x            (front padding to a multiple of m landmarks; the
                                                    zero rows take part in the attention, as upstream)
    q~, k~   = means of q, k over l = ceil(n / m) consecutive rows        (m landmarks)
    out      = softmax(q k~^T) pinv(softmax(q~ k~^T)) softmax(q~ k^T) v + conv_33x1(v)
    out      = Linear(heads * dim_head -> dim)(out)[-n:]

``pinv`` is the 6-step Moore-Penrose iteration of the paper. No mask: callers run one patient at a
time (every row is valid), which is how the official code runs (batch size 1).

Keys (official names): ``to_qkv.weight`` (no bias), ``to_out.0.weight``, ``to_out.0.bias``,
``res_conv.weight`` (depth-wise over heads, kernel (33, 1), no bias).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NystromAttention", "moore_penrose_pinv"]


def moore_penrose_pinv(x: torch.Tensor, iters: int = 6) -> torch.Tensor:
    """Iterative pseudo-inverse of ``x (B, ..., m, m)`` (Razavi et al. 2014), as the Nystromformer
    code, started at ``z = x^T / (max row sum * max column sum)``. Upstream takes those maxima over
    the whole tensor (the whole batch); here they are taken per batch element (over its heads), so a
    patient's output does not depend on the others in its batch; at batch size 1 (the official runs)
    the two are the same."""
    abs_x = x.abs()
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    z = x.transpose(-1, -2) / (abs_x.sum(-1).flatten(1).amax(1) * abs_x.sum(-2).flatten(1).amax(1)).reshape(shape)
    eye = torch.eye(x.shape[-1], device=x.device, dtype=x.dtype)
    for _ in range(iters):
        xz = x @ z
        z = 0.25 * z @ (13 * eye - xz @ (15 * eye - xz @ (7 * eye - xz)))
    return z


class NystromAttention(nn.Module):
    """``x (B, n, dim) -> (B, n, dim)``.

    Args:
        dim: token width.
        dim_head, heads: per-head width and number of heads (inner width ``heads * dim_head``).
        num_landmarks: ``m``, the number of landmarks.
        pinv_iterations: Moore-Penrose iterations.
        residual: add the depth-wise convolution of the values (kernel ``residual_conv_kernel x 1``).
        dropout: dropout after the output projection.
    """

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8, num_landmarks: int = 256, pinv_iterations: int = 6,
                 residual: bool = True, residual_conv_kernel: int = 33, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.num_landmarks, self.pinv_iterations = num_landmarks, pinv_iterations
        self.scale = dim_head ** -0.5
        inner = heads * dim_head
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))
        self.res_conv = None
        if residual:
            k = residual_conv_kernel
            self.res_conv = nn.Conv2d(heads, heads, (k, 1), padding=(k // 2, 0), groups=heads, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        m = self.num_landmarks
        if n % m:
            x = F.pad(x, (0, 0, m - n % m, 0))  # zero rows in front, as upstream
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, -1, self.heads, self.dim_head).transpose(1, 2) for t in (q, k, v))  # (B, h, n', d)
        q = q * self.scale
        seg = math.ceil(n / m)
        q_l = q.reshape(b, self.heads, -1, seg, self.dim_head).sum(3) / seg  # (B, h, m, d): mean over seg rows
        k_l = k.reshape(b, self.heads, -1, seg, self.dim_head).sum(3) / seg
        attn1 = (q @ k_l.transpose(-1, -2)).softmax(-1)
        attn2 = (q_l @ k_l.transpose(-1, -2)).softmax(-1)
        attn3 = (q_l @ k.transpose(-1, -2)).softmax(-1)
        out = (attn1 @ moore_penrose_pinv(attn2, self.pinv_iterations)) @ (attn3 @ v)
        if self.res_conv is not None:
            out = out + self.res_conv(v)
        out = out.transpose(1, 2).reshape(b, -1, self.heads * self.dim_head)
        return self.to_out(out)[:, -n:]
