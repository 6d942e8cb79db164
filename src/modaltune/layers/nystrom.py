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

Short sequences (``n < m``, e.g. CMTA's 7 genomic tokens or a 48-patch bag against 128 landmarks)
are computed in an exactly equivalent reduced form (:func:`_short_sequence`): there ``l = 1``, so
``q~ = q``, ``k~ = k`` and all three softmaxes are one ``m x m`` matrix ``A`` whose ``p = m - n``
zero-padding rows (and columns) are identical. With ``E`` the ``m x (n+1)`` indicator of the
distinct rows and ``D = E^T E = diag(p, 1, ..., 1)``, ``A = E K E^T``; every iterate of ``A z`` in
the pinv is a polynomial in ``A A^T`` without constant term, so the iteration runs unchanged on the
``(n+1) x (n+1)`` matrix ``C C^T`` with ``C = D^1/2 K D^1/2``, and the kept rows are
``S_6[1:] C[:, 1:] v``. Same function (outputs agree to fp32 rounding, tested against
:func:`nystrom_reference`), ``(m / (n+1))^3`` fewer pinv flops (the profiled fixed cost of CMTA:
~70% of a 32-patch step was the 128 x 128 pinv matmuls).

Keys (official names): ``to_qkv.weight`` (no bias), ``to_out.0.weight``, ``to_out.0.bias``,
``res_conv.weight`` (depth-wise over heads, kernel (33, 1), no bias).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NystromAttention", "moore_penrose_pinv", "nystrom_reference"]


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
        if n >= self.num_landmarks:
            return nystrom_reference(self, x)
        q, k, v = self._qkv(x)  # (B, h, n, d)
        out = _short_sequence(q, k, v, self.num_landmarks, self.pinv_iterations)
        if self.res_conv is not None:
            # the padding rows of v are zeros, so the conv over the padded sequence equals a zero-padded conv here
            out = out + self.res_conv(v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head))

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x (B, n', dim) -> q, k, v (B, h, n', d)``, ``q`` scaled."""
        b = x.shape[0]
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, -1, self.heads, self.dim_head).transpose(1, 2) for t in (q, k, v))
        return q * self.scale, k, v


def _short_sequence(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int, iters: int) -> torch.Tensor:
    """Nystrom attention of ``n < m`` tokens against ``m`` landmarks, reduced to ``n + 1`` distinct
    rows (module docstring): ``q, k, v (B, h, n, d) -> (B, h, n, d)`` (before the conv residual)."""
    b, _, n, _ = q.shape
    p = m - n  # zero rows in front: q = k = v = 0 there (to_qkv has no bias)
    # distinct rows u = [zero row, tokens]; logit of any query against a zero key is 0
    logits = F.pad(q @ k.transpose(-1, -2), (1, 0, 1, 0))  # (B, h, n+1, n+1)
    d = torch.ones(n + 1, dtype=q.dtype, device=q.device)
    d[0] = p
    # softmax over the m keys: the p zero keys share one column, so weight it by p, then undo
    kd = (logits + d.log()).softmax(-1)  # K D
    sq = d.sqrt()
    c = kd * (sq[:, None] / sq[None, :])  # C = D^1/2 K D^1/2 = D^1/2 (K D) D^-1/2
    # moore_penrose_pinv's start, on A: max row sum = max over rows of (K D) 1, max column sum of 1^T D K
    row = kd.sum(-1).flatten(1).amax(1)
    col = (d[:, None] * kd / d[None, :]).sum(-2).flatten(1).amax(1)
    s = (c @ c.transpose(-1, -2)) / (row * col).reshape(b, 1, 1, 1)  # S_0 = D^1/2 (A z_0 reduced) D^1/2
    eye = torch.eye(n + 1, dtype=q.dtype, device=q.device)
    for _ in range(iters):  # Y <- Y (13 - Y (15 - Y (7 - Y))) / 4 (A z_{k+1} as a polynomial of A z_k)
        s = 0.25 * s @ (13 * eye - s @ (15 * eye - s @ (7 * eye - s)))
    return s[..., 1:, :] @ (c[..., :, 1:] @ v)


def nystrom_reference(attn: NystromAttention, x: torch.Tensor) -> torch.Tensor:
    """The upstream computation, padded to a multiple of ``m`` landmarks (any ``n``; used for ``n >= m``
    and as the reference of the reduced short-sequence form in the tests)."""
    b, n, _ = x.shape
    m = attn.num_landmarks
    if n % m:
        x = F.pad(x, (0, 0, m - n % m, 0))  # zero rows in front, as upstream
    q, k, v = attn._qkv(x)  # (B, h, n', d)
    seg = math.ceil(n / m)
    q_l = q.reshape(b, attn.heads, -1, seg, attn.dim_head).sum(3) / seg  # (B, h, m, d): mean over seg rows
    k_l = k.reshape(b, attn.heads, -1, seg, attn.dim_head).sum(3) / seg
    attn1 = (q @ k_l.transpose(-1, -2)).softmax(-1)
    attn2 = (q_l @ k_l.transpose(-1, -2)).softmax(-1)
    attn3 = (q_l @ k.transpose(-1, -2)).softmax(-1)
    out = (attn1 @ moore_penrose_pinv(attn2, attn.pinv_iterations)) @ (attn3 @ v)
    if attn.res_conv is not None:
        out = out + attn.res_conv(v)
    out = out.transpose(1, 2).reshape(b, -1, attn.heads * attn.dim_head)
    return attn.to_out(out)[:, -n:]
