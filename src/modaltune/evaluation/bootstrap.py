"""Uncertainty of results: percentile bootstrap CIs over patients, a paired bootstrap comparison of
two methods on the same patients, and mean/std summaries over folds and seeds with an explicit ddof.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from modaltune.errors import InputError

__all__ = [
    "BootstrapResult",
    "PairedResult",
    "Summary",
    "bootstrap_ci",
    "paired_bootstrap",
    "summarize_folds",
    "summarize_seeds",
]

MetricFn = Callable[[pd.DataFrame], float]


@dataclass(frozen=True)
class BootstrapResult:
    """Point estimate on all patients and the percentile CI from ``n_boot`` resamples.

    ``n_failed`` resamples had no defined metric value (e.g. no event drawn) and were skipped."""

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int
    n_failed: int
    seed: int

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}] ({self.level:.0%} percentile bootstrap, {self.n_boot} resamples)"


class PairedResult(NamedTuple):
    """``delta = metric(a) - metric(b)`` on all patients, its percentile CI, two-sided p-value."""

    delta: float
    ci: tuple[float, float]
    p_value: float


def _safe(metric_fn: MetricFn, df: pd.DataFrame) -> float:
    from .metrics import MetricUndefined

    try:
        v = float(metric_fn(df))
    except MetricUndefined:
        return float("nan")
    return v


def _resample(df: pd.DataFrame, idx: np.ndarray, id_col: str | None) -> pd.DataFrame:
    out = df.iloc[idx].reset_index(drop=True)
    if id_col is not None and id_col in out:
        # a patient drawn twice becomes two distinct rows, so per-patient uniqueness checks still hold
        out[id_col] = out[id_col].astype(str) + "#" + pd.Series(np.arange(len(out)), dtype=str)
    return out


def _row_metric(metric_fn: MetricFn, df: pd.DataFrame, id_col: str | None) -> Callable[[np.ndarray], float]:
    """``f(rows)`` = the metric of ``df``'s resampled rows: ``metric_fn.bind(df)`` when the metric
    offers it (:class:`~modaltune.evaluation.metrics.PooledMetric`: no table per resample), else
    ``metric_fn`` on the resampled table."""
    bind = getattr(metric_fn, "bind", None)
    if bind is not None:
        return bind(df)
    return lambda rows: _safe(metric_fn, _resample(df, rows, id_col))


def _check_inputs(df: pd.DataFrame, n: int, level: float, what: str = "predictions") -> None:
    if not isinstance(df, pd.DataFrame) or len(df) == 0:
        raise InputError(f"{what} must be a non-empty DataFrame")
    if n < 1:
        raise InputError(f"number of bootstrap resamples must be >= 1, got {n}")
    if not 0 < level < 1:
        raise InputError(f"confidence level must be in (0, 1), got {level}")


def _percentile_ci(values: np.ndarray, level: float, n: int) -> tuple[float, float]:
    ok = values[np.isfinite(values)]
    # fewer than half the resamples defined: the interval would describe a different population
    if len(ok) < max(2, n // 2):
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(ok, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_ci(
    pred_df: pd.DataFrame,
    metric_fn: MetricFn,
    n: int = 1000,
    seed: int = 0,
    *,
    level: float = 0.95,
    id_col: str | None = "patient_id",
) -> BootstrapResult:
    """Percentile bootstrap CI of a metric, resampling patients (rows) with replacement.

    Use it on pooled out-of-fold predictions (each patient predicted once, by the fold that held
    it out). Deterministic for a given ``seed``.

    Args:
        pred_df: one row per patient (e.g. columns time/event/risk).
        metric_fn: ``df -> float``, e.g. ``lambda d: harrell_c(d.time, d.event, d.risk)``; may raise
            :class:`~modaltune.evaluation.metrics.MetricUndefined` or return NaN on a resample, which
            is then skipped and counted in ``n_failed``. A
            :class:`~modaltune.evaluation.metrics.PooledMetric` gives the same values much faster
            (it scores index arrays instead of resampled tables).
        n: number of resamples.
        level: confidence level (0.95 -> 2.5th and 97.5th percentiles).
        id_col: patient id column, made unique within a resample (``P1#0``, ``P1#7``).
    """
    _check_inputs(pred_df, n, level)
    estimate = float(metric_fn(pred_df))
    at = _row_metric(metric_fn, pred_df, id_col)
    rng = np.random.default_rng(seed)
    m = len(pred_df)
    vals = np.array([at(rng.integers(0, m, m)) for _ in range(n)])
    lo, hi = _percentile_ci(vals, level, n)
    return BootstrapResult(estimate, lo, hi, level, n, int((~np.isfinite(vals)).sum()), seed)


def paired_bootstrap(
    pred_a: pd.DataFrame,
    pred_b: pd.DataFrame,
    metric_fn: MetricFn,
    n: int = 1000,
    seed: int = 0,
    *,
    level: float = 0.95,
    id_col: str = "patient_id",
) -> PairedResult:
    """Paired bootstrap comparison of two methods evaluated on the same patients.

    Both tables are aligned on ``id_col``; each resample draws the same patients for both methods,
    so patient difficulty cancels out. ``delta = metric(a) - metric(b)``; the CI is the percentile
    interval of the resampled deltas, and the two-sided p-value is
    ``min(1, 2 * min(#(d <= 0) + 1, #(d >= 0) + 1) / (n_valid + 1))``, i.e. how often the
    resampled difference lands on the other side of zero.

    Raises:
        InputError: the two tables do not hold exactly the same patients (one row each).
    """
    _check_inputs(pred_a, n, level, "predictions of method a")
    _check_inputs(pred_b, n, level, "predictions of method b")
    for name, df in (("a", pred_a), ("b", pred_b)):
        if id_col not in df:
            raise InputError(f"predictions of method {name} lack the '{id_col}' column")
        if df[id_col].duplicated().any():
            raise InputError(f"predictions of method {name} have several rows for patient '{df.loc[df[id_col].duplicated(), id_col].iloc[0]}'",
                             fix="compare one seed at a time (one row per patient)")
    ids_a, ids_b = set(pred_a[id_col].astype(str)), set(pred_b[id_col].astype(str))
    if ids_a != ids_b:
        only_a, only_b = sorted(ids_a - ids_b), sorted(ids_b - ids_a)
        raise InputError(
            f"methods were evaluated on different patients ({len(only_a)} only in a, e.g. {only_a[:3]}; {len(only_b)} only in b, e.g. {only_b[:3]})",
            fix="a paired comparison needs the same patients; use the same folds and cohort for both",
        )
    a = pred_a.assign(**{id_col: pred_a[id_col].astype(str)}).sort_values(id_col).reset_index(drop=True)
    b = pred_b.assign(**{id_col: pred_b[id_col].astype(str)}).sort_values(id_col).reset_index(drop=True)
    delta = float(metric_fn(a)) - float(metric_fn(b))
    at_a, at_b = _row_metric(metric_fn, a, id_col), _row_metric(metric_fn, b, id_col)
    rng = np.random.default_rng(seed)
    m = len(a)
    d = np.empty(n)
    for k in range(n):
        idx = rng.integers(0, m, m)
        d[k] = at_a(idx) - at_b(idx)
    ok = d[np.isfinite(d)]
    lo, hi = _percentile_ci(d, level, n)
    if len(ok) < max(2, n // 2):
        p = float("nan")
    else:
        p = min(1.0, 2 * min(int((ok <= 0).sum()) + 1, int((ok >= 0).sum()) + 1) / (len(ok) + 1))
    return PairedResult(delta, (lo, hi), p)


@dataclass(frozen=True)
class Summary:
    """Mean and std of per-unit values; ``ddof`` is the std's delta degrees of freedom (0 =
    population std, as MCAT/PORPOISE report; 1 = sample std). NaN values are left out and counted."""

    mean: float
    std: float
    n: int
    ddof: int
    n_nan: int = 0
    over: str = "folds"

    def __str__(self) -> str:
        nan = f", {self.n_nan} NaN left out" if self.n_nan else ""
        return f"{self.mean:.3f} ± {self.std:.3f} (n={self.n} {self.over}, ddof={self.ddof}{nan})"

    def as_dict(self) -> dict[str, float | int | str]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "ddof": self.ddof, "n_nan": self.n_nan, "over": self.over}


def _summary(values: Sequence[float], ddof: int, over: str) -> Summary:
    if ddof not in (0, 1):
        raise InputError(f"ddof must be 0 or 1, got {ddof}")
    v = np.asarray(list(values), dtype=float)
    ok = v[np.isfinite(v)]
    n_nan = int(len(v) - len(ok))
    if not len(ok):
        return Summary(float("nan"), float("nan"), 0, ddof, n_nan, over)
    std = float(ok.std(ddof=ddof)) if len(ok) > ddof else float("nan")
    return Summary(float(ok.mean()), std, int(len(ok)), ddof, n_nan, over)


def summarize_folds(values: Sequence[float], ddof: int = 0) -> Summary:
    """Mean and std over folds (``ddof`` stated in the result; std is NaN with one fold and ddof=1).

    Example:
        >>> str(summarize_folds([0.6, 0.7, 0.8]))
        '0.700 ± 0.082 (n=3 folds, ddof=0)'
    """
    return _summary(values, ddof, "folds")


def summarize_seeds(values_by_seed: Mapping[int, Sequence[float]], ddof: int = 0) -> dict[str, Summary]:
    """Summaries over seeds of per-seed fold means.

    Args:
        values_by_seed: ``{seed: [value of fold 0, fold 1, ...]}``.

    Returns:
        ``{"seeds": mean/std over seeds of each seed's fold mean, "units": mean/std over every
        (fold, seed) value, "folds_of_seed_<s>": the fold summary of each seed}``.
    """
    if not values_by_seed:
        raise InputError("no seeds to summarise")
    out: dict[str, Summary] = {}
    per_seed = []
    allv: list[float] = []
    for s, vals in values_by_seed.items():
        fs = summarize_folds(vals, ddof)
        out[f"folds_of_seed_{s}"] = fs
        per_seed.append(fs.mean)
        allv.extend(float(x) for x in vals)
    out["seeds"] = _summary(per_seed, ddof, "seeds")
    out["units"] = _summary(allv, ddof, "fold x seed units")
    return out


