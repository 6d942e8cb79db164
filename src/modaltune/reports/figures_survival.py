"""Survival figures: Kaplan-Meier curves of predicted-risk groups and time-dependent AUC.

Risk groups are formed per fold and then pooled: each fold model's risks are on their own scale,
so a patient is put in a group by comparing its risk with the cut points (median, or tertiles) of
the risks that *its* fold model gave. The run folder stores held-out predictions only, so the cut
points come from the fold's held-out risks, not its training patients' (stated on the figure).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from modaltune.errors import InputError
from modaltune.reports.run_files import RunFiles
from modaltune.reports.style import new_figure, save_figure

__all__ = ["risk_groups", "logrank_p", "km_figure", "td_auc_figure", "GROUP_NAMES"]

GROUP_NAMES = {"median": ("low risk", "high risk"), "tertiles": ("low risk", "middle risk", "high risk")}


def risk_groups(risk, fold=None, scheme: str = "median") -> np.ndarray:
    """Group index per patient (0 = lowest risk), cut within each fold.

    Args:
        risk: (n,) predicted risks (higher = earlier event).
        fold: (n,) fold of each patient (None: one fold).
        scheme: ``median`` (2 groups; a risk equal to the median goes low) or ``tertiles``
            (3 groups at the 1/3 and 2/3 quantiles).

    Returns:
        (n,) int array in ``0 .. n_groups-1``.
    """
    if scheme not in GROUP_NAMES:
        raise InputError(f"unknown risk-group scheme '{scheme}'", fix="use median or tertiles")
    risk = np.asarray(risk, dtype=float)
    fold = np.zeros(len(risk), dtype=int) if fold is None else np.asarray(fold)
    qs = [0.5] if scheme == "median" else [1 / 3, 2 / 3]
    out = np.zeros(len(risk), dtype=int)
    for f in np.unique(fold):
        m = fold == f
        cuts = np.quantile(risk[m], qs)
        out[m] = np.searchsorted(cuts, risk[m], side="left")  # risk == cut goes to the lower group
    return out


def logrank_p(time, event, groups) -> float:
    """Log-rank p-value of equal survival across ``groups`` (lifelines; multivariate for > 2 groups)."""
    from lifelines.statistics import logrank_test, multivariate_logrank_test

    time, event, groups = np.asarray(time, float), np.asarray(event, float).astype(bool), np.asarray(groups)
    present = np.unique(groups)
    if len(present) < 2:
        return float("nan")
    if len(present) == 2:
        a, b = groups == present[0], groups == present[1]
        return float(logrank_test(time[a], time[b], event[a], event[b]).p_value)
    return float(multivariate_logrank_test(time, groups, event).p_value)


def _survival_rows(run: RunFiles, cohort: str, task: str, method: str | None = None) -> pd.DataFrame:
    p = run.predictions
    p = p[(p["cohort"] == cohort) & (p["task"] == task) & p["risk"].notna() & p["time"].notna() & p["event"].notna()]
    if method is not None:
        p = p[p["method"] == method]
    # one seed (the first) so each patient appears once
    return p[p["seed"] == p["seed"].min()] if len(p) else p


def km_figure(run: RunFiles, cohort: str, task: str, method: str, path: str | Path, *, scheme: str = "median") -> Path:
    """Kaplan-Meier curves of the risk groups of one method's pooled out-of-fold predictions,
    with the log-rank p-value and numbers at risk under the axis. Writes a PNG and returns its path."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    d = _survival_rows(run, cohort, task, method)
    if d.empty:
        raise InputError(f"no survival predictions of {method} for {cohort}/{task}", where=str(run.run_dir / "predictions.parquet"))
    g = risk_groups(d["risk"].to_numpy(), d["fold"].to_numpy(), scheme)
    p = logrank_p(d["time"], d["event"], g)
    fig, ax = new_figure(height=5.0)
    fitters = []
    for k, name in enumerate(GROUP_NAMES[scheme]):
        m = g == k
        if not m.any():
            continue
        kmf = KaplanMeierFitter(label=f"{name} (n={m.sum()})").fit(d["time"][m], d["event"][m])
        kmf.plot_survival_function(ax=ax, ci_show=True, show_censors=True, censor_styles={"ms": 4})
        fitters.append(kmf)
    add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"])
    ax.set_xlabel(f"time (seed {int(d['seed'].iloc[0])}; groups cut per fold on its held-out risks)")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{method} · {cohort} · {task}: {scheme} risk groups, log-rank p = {p:.3g}", fontsize=10)
    return save_figure(fig, path, protocol=run.protocol, label=run.label)


def td_auc_figure(run: RunFiles, cohort: str, task: str, path: str | Path, *, n_times: int = 12) -> Path:
    """Cumulative/dynamic AUC(t) of every method (scikit-survival ``cumulative_dynamic_auc``) on the
    pooled out-of-fold risks, on a grid between the 10th and 80th percentile of event times.

    The censoring distribution for IPCW is estimated from the pooled patients themselves (the run
    folder holds no training-fold labels per unit); risks of different fold models are pooled as
    they are, as in the summary's bootstrap table.
    """
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.util import Surv

    d_all = _survival_rows(run, cohort, task)
    fig, ax = new_figure()
    drawn = 0
    for method, d in d_all.groupby("method", sort=False):
        t, e = d["time"].to_numpy(float), d["event"].to_numpy(float).astype(bool)
        if e.sum() < 2:
            continue
        lo, hi = np.percentile(t[e], [10, 80])
        hi = min(hi, t.max() - 1e-9)  # sksurv needs grid points inside the follow-up
        times = np.unique(np.linspace(lo, hi, n_times))
        times = times[(times >= t.min()) & (times < t.max())]
        if len(times) == 0:
            continue
        y = Surv.from_arrays(e, t)
        try:
            auc, mean_auc = cumulative_dynamic_auc(y, y, d["risk"].to_numpy(float), times)
        except ValueError:  # e.g. no case/control at a time point: skip the method, keep the figure
            continue
        ax.plot(times, auc, marker="o", ms=3, label=f"{method} (mean {mean_auc:.3f})")
        drawn += 1
    ax.axhline(0.5, color="0.6", ls="--", lw=1)
    ax.set_xlabel("time")
    ax.set_ylabel("cumulative/dynamic AUC(t)")
    ax.set_ylim(0, 1)
    ax.set_title(f"{cohort} · {task}: time-dependent AUC, pooled out-of-fold" + ("" if drawn else " (no method had enough events)"), fontsize=10)
    if drawn:
        ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path, protocol=run.protocol, label=run.label)
