"""MM-Lego building blocks (Hemker, Simidjievski & Jamnik, "Multimodal Lego", ICLR 2025;
official code konst-int-i/mm-lego, ``mm_lego/models/lego.py``).

* :class:`LatentUpdate`: one latent update psi of a LegoBlock, ``L <- L + CrossAttn(LN(L), LN(X))``
  then ``L <- L + FF(LN(L))`` (Perceiver-style, gated-SELU feed-forward as the official ``snn=True``).
* :func:`frequency_step`: one update done in the frequency domain over the latent-channel axis
  (normalise, FFT, update the real part, inverse FFT with the imaginary part kept), with patients
  that lack the modality skipping the update.
* :func:`harmonic_merge`: LegoMerge of K complex block latents: weighted harmonic mean of the
  magnitudes, mean of the phases.
* :func:`slerp` / :func:`merge_tensors`: spherical (or linear) interpolation of trained weights,
  how the official code merges the blocks' heads.

Shapes: latents ``(B, C, D)`` (C latent channels, D latent width), context ``(B, T, E)``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modaltune.errors import ConfigError

__all__ = ["GatedFeedForward", "LatentUpdate", "frequency_step", "harmonic_merge", "slerp", "merge_tensors", "readout"]

# smallest magnitude a latent entry takes in the harmonic mean (1/|z| of an exact zero would be inf)
_TINY = 1e-30


class GatedFeedForward(nn.Module):
    """``Linear(D -> 2 m D) -> a * selu(g) -> Linear(m D -> D) -> Dropout``: the official FeedForward
    with ``snn=True`` (a gated SELU). Shapes ``(..., D) -> (..., D)``."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * mult * 2)
        self.fc2 = nn.Linear(dim * mult, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.fc1(x).chunk(2, dim=-1)
        return self.drop(self.fc2(a * F.selu(g)))


class LatentUpdate(nn.Module):
    """One latent update psi: cross-attention from the latent (queries) to the modality tokens, then
    a feed-forward, each pre-normed with a residual.

    Args:
        latent_dim: D, width of the latent (must be divisible by ``heads``).
        context_dim: E, width of the modality tokens.
        heads: attention heads (``torch.nn.MultiheadAttention`` splits D across them).

    Shapes: ``lat (B, C, D)``, ``x (B, T, E)`` -> ``(B, C, D)``.
    """

    def __init__(self, latent_dim: int, context_dim: int, heads: int = 8, ff_mult: int = 4, attn_dropout: float = 0.0, ff_dropout: float = 0.0):
        super().__init__()
        if latent_dim % heads:
            raise ConfigError(f"latent_dim {latent_dim} is not divisible by heads {heads}", where="method.params.heads", fix="pick heads dividing latent_dim")
        self.norm_latent = nn.LayerNorm(latent_dim)
        self.norm_context = nn.LayerNorm(context_dim)
        self.attn = nn.MultiheadAttention(latent_dim, heads, dropout=attn_dropout, kdim=context_dim, vdim=context_dim, batch_first=True)
        self.norm_ff = nn.LayerNorm(latent_dim)
        self.ff = GatedFeedForward(latent_dim, ff_mult, ff_dropout)

    def forward(self, lat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q, c = self.norm_latent(lat), self.norm_context(x)
        lat = self.attn(q, c, c, need_weights=False)[0] + lat
        return self.ff(self.norm_ff(lat)) + lat


def frequency_step(update: nn.Module, lat: torch.Tensor, x: torch.Tensor, present: torch.Tensor | None = None, *, last: bool,
                   frequency_domain: bool = True, normalise: bool = True, track_imaginary: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One LegoBlock layer as in the official ``LegoBlock.forward``.

    With ``frequency_domain``: ``lat`` is L2-normalised over the latent channels (dim 1), ``Z = FFT(lat)``
    over dim 1, the update reads ``Re Z`` against ``Re FFT(x)`` (dim 1 too), and unless this is the
    last layer the result goes back with ``IFFT(Re' + i Im Z)`` (``track_imaginary``) or ``IFFT(Re')``.
    Rows where ``present`` is False skip ``update`` (their real part passes through unchanged).

    Args:
        lat: ``(B, C, D)`` latent, real or complex (complex after an inverse FFT).
        x: ``(B, T, E)`` modality tokens.
        present: ``(B,)`` bool or None (everyone).
        last: the last layer keeps the latent in the frequency domain (the head reads it there).

    Returns:
        ``(l_next, imag)``: ``l_next`` real ``(B, C, D)`` when ``last`` (frequency domain), else the
        complex time-domain latent; ``imag`` the imaginary part of ``FFT(lat)`` (zeros without FFT).
    """
    if frequency_domain:
        if normalise:
            lat = lat / lat.norm(dim=1, keepdim=True).clamp_min(_TINY)
        z = torch.fft.fft(lat, dim=1)
        re, im = z.real, z.imag
        xr = torch.fft.fft(x, dim=1).real
    else:
        re, im, xr = lat.real if lat.is_complex() else lat, torch.zeros_like(lat.real if lat.is_complex() else lat), x
    out = update(re, xr)
    if present is not None:
        # a patient without the modality keeps its latent: no update from zero-filled inputs
        out = torch.where(present.view(-1, 1, 1), out, re)
    if last or not frequency_domain:
        return out, im
    return torch.fft.ifft(torch.complex(out, im) if track_imaginary else out, dim=1), im


def readout(norm: nn.LayerNorm, latent_real: torch.Tensor) -> torch.Tensor:
    """The official head's front: mean over the latent channels, then LayerNorm. ``(B, C, D) -> (B, D)``."""
    return norm(latent_real.mean(dim=1))


def harmonic_merge(latents: Sequence[torch.Tensor], weights: torch.Tensor, present: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """LegoMerge of K complex latents (official ``merge_method="harmonic"``, generalised to K blocks).

    ``|z| = 1 / sum_k w_k / |z_k|`` (weighted harmonic mean of the magnitudes, ``w`` normalised to 1)
    and ``arg z = mean_k arg z_k`` (plain mean of the phases, as the official ``(phi_1 + phi_2) / 2``).
    Per patient, blocks whose modality is absent are left out; a patient with none of them gets
    every block (each block's latent is then its learned prior latent).

    Args:
        latents: K complex ``(B, C, D)``.
        weights: ``(K,)`` non-negative block weights.
        present: K ``(B,)`` bool, or None (everyone has everything).

    Returns:
        complex ``(B, C, D)``; with K = 1 it equals the one latent up to float rounding.
    """
    z = torch.stack(list(latents))  # (K, B, C, D)
    K, B = z.shape[:2]
    p = torch.ones(K, B, dtype=torch.bool, device=z.device) if present is None else torch.stack([q.bool() for q in present])
    p = torch.where(p.any(0, keepdim=True), p, torch.ones_like(p))
    w = weights.to(z.real.dtype).view(K, 1) * p.to(z.real.dtype)
    w = (w / w.sum(0, keepdim=True))[..., None, None]  # (K, B, 1, 1)
    mag = 1.0 / (w / z.abs().clamp_min(_TINY)).sum(0)
    pf = p.to(z.real.dtype)[..., None, None]
    phase = (torch.angle(z) * pf).sum(0) / pf.sum(0)
    return torch.polar(mag, phase)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation from ``a`` (t = 0) to ``b`` (t = 1) of two same-shape tensors
    (flattened). Falls back to linear interpolation when they are (anti)parallel, where slerp is
    undefined (the official formula returns NaN for identical heads)."""
    fa, fb = a.reshape(-1).double(), b.reshape(-1).double()
    na, nb = fa.norm(), fb.norm()
    if float(na) == 0.0 or float(nb) == 0.0:
        return ((1 - t) * a.double() + t * b.double()).to(a.dtype)
    omega = torch.arccos(torch.clamp(fa @ fb / (na * nb), -1.0, 1.0))
    s = torch.sin(omega)
    if float(s) < 1e-6:
        return ((1 - t) * a.double() + t * b.double()).to(a.dtype)
    out = (torch.sin((1 - t) * omega) * fa + torch.sin(t * omega) * fb) / s
    return out.reshape(a.shape).to(a.dtype)


def merge_tensors(tensors: Sequence[torch.Tensor], weights: Sequence[float], method: str = "slerp") -> torch.Tensor:
    """Merge K same-shape weights: ``linear`` = weighted mean; ``slerp`` = running slerp
    (``h <- slerp(h, t_k, w_k / (w_1 + ... + w_k))``, which is the official two-head slerp for K = 2
    and an equal-weight walk for more). One tensor comes back unchanged."""
    if len(tensors) != len(weights) or not tensors:
        raise ValueError("merge_tensors needs one weight per tensor")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ConfigError(f"cannot merge weights of different shapes {sorted(shapes)}", where="method.params.blocks",
                          fix="merge blocks built with the same latent and head settings")
    if method == "linear":
        total = float(sum(weights))
        return sum(float(w) / total * t.double() for w, t in zip(weights, tensors)).to(tensors[0].dtype)
    h, acc = tensors[0].clone(), float(weights[0])
    for t, w in zip(tensors[1:], weights[1:]):
        acc += float(w)
        h = slerp(h, t, float(w) / acc)
    return h
