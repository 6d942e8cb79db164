"""Method comparison: forest plot (bootstrap CI + per-fold points), paired differences, missing data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from modaltune.reports.run_files import RunFiles
from modaltune.reports.style import new_figure, save_figure

__all__ = ["forest_figure", "paired_difference_table", "missing_table"]


def _higher_is_better(metric: str) -> bool:
    from modaltune.evaluation.metrics import METRICS

    return METRICS[metric].higher_is_better if metric in METRICS else True


def forest_figure(run: RunFiles, path: str | Path) -> Path:
    """One panel per (cohort, task, metric) of the summary's bootstrap table: each method's pooled
    estimate with its 95% CI (black) and its per-fold values from results.csv (grey dots)."""
    ci = run.ci
    first_seed = ci["seed"].min() if len(ci) else 0
    ci = ci[ci["seed"] == first_seed]
    panels = list(dict.fromkeys(zip(ci["cohort"], ci["task"], ci["metric"])))
    if not panels:  # no bootstrap table (bootstrap: 0): per-fold values alone
        r = run.results
        panels = list(dict.fromkeys(zip(r["cohort"], r["task"], r["metric"])))
    ncols = min(3, max(1, len(panels)))
    nrows = int(np.ceil(len(panels) / ncols))
    n_methods = run.results["method"].nunique()
    fig, axes = new_figure(ncols, nrows, width=4.2 * ncols, height=(0.4 * n_methods + 1.4) * nrows + 0.8, squeeze=False)
    for ax, (cohort, task, metric) in zip(axes.ravel(), panels):
        r = run.results
        r = r[(r["cohort"] == cohort) & (r["task"] == task) & (r["metric"] == metric)]
        c = ci[(ci["cohort"] == cohort) & (ci["task"] == task) & (ci["metric"] == metric)]
        methods = list(dict.fromkeys([*r["method"], *c["method"]]))  # only methods run on this task
        ys = np.arange(len(methods))[::-1]
        for y, m in zip(ys, methods):
            v = r.loc[r["method"] == m, "value"].to_numpy(float)
            ax.scatter(v, np.full(len(v), y) + np.linspace(-0.15, 0.15, len(v)) if len(v) else v, s=10, color="0.6", zorder=2)
            row = c[c["method"] == m]
            if len(row):
                est, lo, hi = row[["estimate", "lo", "hi"]].iloc[0].to_numpy(float)
                ax.errorbar(est, y, xerr=[[est - lo], [hi - est]], fmt="s", color="black", ms=5, capsize=3, zorder=3)
        ax.set_yticks(ys, methods, fontsize=8)
        ax.set_ylim(-0.6, len(methods) - 0.4)
        arrow = "↑" if _higher_is_better(metric) else "↓"
        ax.set_title(f"{cohort} · {task} · {metric} {arrow}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{run.name}: pooled estimate with bootstrap 95% CI (black, seed {first_seed}); per-fold values (grey)", fontsize=10)
    return save_figure(fig, path, protocol=run.protocol, label=run.label)


def paired_difference_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (cohort, task, metric): each method against the best method by mean, paired on
    (fold, seed) so fold difficulty cancels. ``diff = method - reference`` (per pair), reported as
    mean and std (ddof=0) over pairs, with the count of pairs where the method did better.

    Returns:
        columns cohort, task, metric, method, reference, n_pairs, mean_diff, std_diff, better.
    """
    rows = []
    for (cohort, task, metric), g in results.groupby(["cohort", "task", "metric"], sort=False):
        wide = g.pivot_table(index=["fold", "seed"], columns="method", values="value", aggfunc="mean")
        if wide.shape[1] < 2:
            continue
        hib = _higher_is_better(metric)
        means = wide.mean()
        ref = means.idxmax() if hib else means.idxmin()
        for m in [c for c in dict.fromkeys(g["method"]) if c != ref and c in wide]:
            d = (wide[m] - wide[ref]).dropna().to_numpy(float)
            if not len(d):
                continue
            better = int((d > 0).sum() if hib else (d < 0).sum())
            rows.append(dict(cohort=cohort, task=task, metric=metric, method=m, reference=ref, n_pairs=len(d),
                             mean_diff=round(float(d.mean()), 4), std_diff=round(float(d.std()), 4), better=f"{better}/{len(d)}"))
    return pd.DataFrame(rows, columns=["cohort", "task", "metric", "method", "reference", "n_pairs", "mean_diff", "std_diff", "better"])


def missing_table(exclusions: pd.DataFrame) -> pd.DataFrame:
    """Patients missing a modality or label, counted per (cohort, what, name, reason)."""
    cols = ["cohort", "what", "name", "reason"]
    if exclusions.empty or not set(cols) <= set(exclusions.columns):
        return pd.DataFrame(columns=[*cols, "patients"])
    return exclusions.groupby(cols, sort=True)["patient_id"].nunique().rename("patients").reset_index()
