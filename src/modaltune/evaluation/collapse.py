"""Detector of degenerate ("collapsed") predictions.

A survival model whose risk scores all equal one another scores a C-index of exactly 0.5 and
looks like a weak but honest model in a table. :func:`detect_collapse` flags it, and the same
for classifiers that predict one class for everybody.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from modaltune.errors import InputError

__all__ = ["CollapseReport", "detect_collapse"]


@dataclass
class CollapseReport:
    """``collapsed`` is True when at least one reason was found; ``stats`` holds the numbers."""

    collapsed: bool
    reasons: list[str] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:  # `if detect_collapse(r):` reads naturally
        return self.collapsed

    def __str__(self) -> str:
        return "collapsed: " + "; ".join(self.reasons) if self.collapsed else "not collapsed"


def _tied_pair_fraction(time: np.ndarray, event: np.ndarray, risk: np.ndarray, tol: float) -> tuple[int, float]:
    """Number of comparable pairs (Harrell) and the fraction whose risks are tied."""
    order = np.argsort(time, kind="stable")
    t, e, r = time[order], event[order], risk[order]
    n_comp = 0
    n_tied = 0
    for i in np.flatnonzero(e):
        later = t > t[i]
        n = int(later.sum())
        if n:
            n_comp += n
            n_tied += int((np.abs(r[later] - r[i]) <= tol).sum())
    return n_comp, (n_tied / n_comp if n_comp else float("nan"))


def detect_collapse(
    risk,
    event=None,
    *,
    time=None,
    rel_std_tol: float = 1e-6,
    tied_tol: float = 1e-8,
) -> CollapseReport:
    """Flag degenerate predictions.

    Args:
        risk: (N,) survival risk scores / regression predictions, or (N, C) class probabilities.
        event: optional (N,) 0/1 events (with ``time``: checks C-index ties).
        time: optional (N,) follow-up times.
        rel_std_tol: spread is "near zero" when ``std < rel_std_tol * max(|risk|)`` (or exactly 0).
        tied_tol: two risks closer than this count as tied (scikit-survival's default).

    Reasons (1-D): non-finite values; one distinct value; near-zero relative spread; every
    comparable pair tied (so Harrell's C is exactly 0.5). (2-D): the same predicted class for
    every patient; near-constant probability rows.

    Example:
        >>> detect_collapse(np.full(5, 0.3)).collapsed
        True
        >>> detect_collapse(np.array([0.1, 0.5, 0.9])).collapsed
        False
    """
    r = np.asarray(risk, dtype=float)
    if r.ndim not in (1, 2) or len(r) == 0:
        raise InputError(f"predictions must be a non-empty (N,) or (N, C) array, got shape {r.shape}")
    reasons: list[str] = []
    stats: dict[str, float] = {"n": float(len(r))}
    finite = np.isfinite(r).all(axis=-1) if r.ndim == 2 else np.isfinite(r)
    if not finite.all():
        reasons.append(f"{int((~finite).sum())} of {len(r)} predictions are NaN/inf")
        r = r[finite]
        if not len(r):
            return CollapseReport(True, reasons, stats)

    if r.ndim == 2:
        pred = r.argmax(1)
        classes, counts = np.unique(pred, return_counts=True)
        stats["n_predicted_classes"] = float(len(classes))
        stats["largest_predicted_class_fraction"] = float(counts.max() / len(pred))
        if len(r) > 1 and len(classes) == 1:
            reasons.append(f"every patient is predicted as class {int(classes[0])}")
        spread = float(r.std(axis=0).max())
        stats["max_prob_std"] = spread
        if len(r) > 1 and spread < rel_std_tol * max(float(np.abs(r).max()), 1e-300):
            reasons.append(f"class probabilities are (nearly) identical for every patient (max std {spread:.2e})")
        return CollapseReport(bool(reasons), reasons, stats)

    n_unique = len(np.unique(r))
    std = float(r.std())
    scale = float(np.abs(r).max())
    stats.update(n_unique=float(n_unique), std=std, rel_std=std / scale if scale > 0 else 0.0)
    if len(r) > 1 and n_unique == 1:
        reasons.append(f"all {len(r)} risk scores are identical ({r[0]:.6g})")
    elif len(r) > 1 and std < rel_std_tol * scale:
        reasons.append(f"risk scores have near-zero spread (std {std:.2e} relative {std / scale:.2e} < {rel_std_tol:g})")
    if time is not None and event is not None:
        t = np.asarray(time, dtype=float)[finite]
        e = np.asarray(event).astype(bool)[finite]
        if len(t) != len(r):
            raise InputError(f"time/event length {len(t)} != risk length {len(r)}")
        n_comp, frac = _tied_pair_fraction(t, e, r, tied_tol)
        stats.update(n_comparable_pairs=float(n_comp), tied_pair_fraction=frac)
        if n_comp and frac == 1.0 and not reasons:
            reasons.append(f"all {n_comp} comparable pairs have tied risk scores, so the C-index is exactly 0.5")
    elif event is not None:
        e = np.asarray(event).astype(bool)[finite]
        stats["n_events"] = float(e.sum())
    return CollapseReport(bool(reasons), reasons, stats)
