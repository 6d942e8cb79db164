"""Markdown result tables (mean ± std per method x cohort for each task and metric) with a header
stating the protocol, endpoint, folds, seeds, the std's ddof and the feature sources."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from modaltune.errors import InputError

__all__ = ["summary_table", "RESULT_COLUMNS"]

RESULT_COLUMNS = ("method", "cohort", "task", "metric", "fold", "seed", "value")


def _cell(values: np.ndarray, ddof: int, n_expected: int) -> str:
    ok = values[np.isfinite(values)]
    if not len(ok):
        return "n/a"
    std = ok.std(ddof=ddof) if len(ok) > ddof else float("nan")
    s = f"{ok.mean():.3f} ± {std:.3f}" if np.isfinite(std) else f"{ok.mean():.3f}"
    if len(ok) < n_expected:
        s += f" ({len(ok)}/{n_expected})"
    return s


def _folds_and_seeds_cell(gc: pd.DataFrame, ddof: int, n_folds: int) -> str:
    """``mean ± std over folds (seed-averaged per fold) · seeds ± std over seeds (fold means)``."""
    from .bootstrap import summarize_folds, summarize_seeds

    per_fold = gc.groupby("fold")["value"].mean().to_numpy(float)
    f = summarize_folds(per_fold, ddof)
    if f.n == 0:
        return "n/a"
    by_seed = {int(s): g.sort_values("fold")["value"].to_numpy(float).tolist() for s, g in gc.groupby("seed")}
    sd = summarize_seeds(by_seed, ddof)["seeds"]
    txt = f"{f.mean:.3f} ± {f.std:.3f}" if np.isfinite(f.std) else f"{f.mean:.3f}"
    if np.isfinite(sd.std):
        txt += f" · seeds ± {sd.std:.3f}"
    if f.n < n_folds:
        txt += f" ({f.n}/{n_folds} folds)"
    return txt


def _std_units(df: pd.DataFrame, over: str) -> pd.DataFrame:
    """Reduce one (method, cohort, task, metric) group to the values the std is taken over."""
    if over == "folds":
        return df.groupby("fold", as_index=False)["value"].mean()  # averages seeds if several
    if over == "seeds":
        return df.groupby("seed", as_index=False)["value"].mean()  # seed = mean of its folds
    return df


def summary_table(
    results_long_df: pd.DataFrame,
    *,
    protocol: str = "",
    endpoint: str = "",
    feature_sources: str | Sequence[str] = "",
    ddof: int = 0,
    std_over: str = "auto",
    failures: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
    title: str = "Results",
) -> str:
    """Markdown summary of a long results table.

    Args:
        results_long_df: columns ``method, cohort, task, metric, fold, seed, value`` (NaN values =
            undefined metric; shown as "(k/n)" counts).
        protocol, endpoint, feature_sources: stated in the header (required reporting, PROTOCOLS.md E).
        ddof: std ddof (0 = population std over folds, as MCAT/PORPOISE).
        std_over: ``"folds"`` (seed-averaged per fold), ``"seeds"`` (fold-averaged per seed),
            ``"units"`` (every fold x seed value), ``"folds+seeds"`` (both spreads in each cell:
            ``mean ± std over folds · seeds ± std over seeds``) or ``"auto"``: folds with one seed,
            seeds with one fold, folds+seeds otherwise.
        failures: optional table of failed units (method, cohort, task, fold, seed, reason), listed.
        notes: extra lines (e.g. collapse warnings) listed under the tables.

    Returns:
        markdown text: a header paragraph, then one table per (task, metric) with methods as rows
        and cohorts as columns (plus a "Mean" column of cohort means when there are several).
    """
    if not isinstance(results_long_df, pd.DataFrame):
        raise InputError("results must be a pandas DataFrame")
    missing = [c for c in RESULT_COLUMNS if c not in results_long_df.columns]
    if missing:
        raise InputError(f"results table lacks columns {missing}", fix=f"columns must be {list(RESULT_COLUMNS)}")
    if ddof not in (0, 1):
        raise InputError(f"ddof must be 0 or 1, got {ddof}")
    df = results_long_df.copy()
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    folds = sorted(df["fold"].dropna().unique().tolist())
    seeds = sorted(df["seed"].dropna().unique().tolist())
    if std_over == "auto":
        std_over = "folds" if len(seeds) <= 1 else ("seeds" if len(folds) <= 1 else "folds+seeds")
    if std_over not in ("folds", "seeds", "units", "folds+seeds"):
        raise InputError(f"std_over must be 'folds', 'seeds', 'units', 'folds+seeds' or 'auto', got '{std_over}'")
    feats = ", ".join(feature_sources) if not isinstance(feature_sources, str) else feature_sources
    over_txt = {"folds": "over folds (seeds averaged per fold)", "seeds": "over seeds (folds averaged per seed)",
                "units": "over all fold x seed units",
                "folds+seeds": "over folds (seeds averaged per fold), then 'seeds ± std' over seeds (each seed's mean over folds)"}[std_over]
    lines = [f"# {title}", ""]
    header = [
        f"**Protocol:** {protocol or 'not stated'}",
        f"**Endpoint:** {endpoint or 'not stated'}",
        f"**Folds:** {len(folds)} ({', '.join(str(f) for f in folds)})",
        f"**Seeds:** {len(seeds)} ({', '.join(str(s) for s in seeds)})",
        f"**Values:** mean ± std {over_txt}, std ddof={ddof}",
        f"**Features:** {feats or 'not stated'}",
    ]
    lines.append(" · ".join(header))
    lines.append("")
    methods = list(dict.fromkeys(df["method"]))
    cohorts = list(dict.fromkeys(df["cohort"]))
    for (task, metric), g in df.groupby(["task", "metric"], sort=False):
        lines.append(f"## {task} · {metric}")
        lines.append("")
        cols = cohorts + (["Mean"] if len(cohorts) > 1 else [])
        lines.append("| method | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for m in methods:
            gm = g[g["method"] == m]
            if gm.empty:
                continue
            cells, cohort_means = [], []
            for c in cohorts:
                gc = gm[gm["cohort"] == c]
                if gc.empty:
                    cells.append("")
                    continue
                if std_over == "folds+seeds":
                    cells.append(_folds_and_seeds_cell(gc, ddof, len(folds)))
                    fm = gc.groupby("fold")["value"].mean().to_numpy(float)
                    fm = fm[np.isfinite(fm)]
                    cohort_means.append(fm.mean() if len(fm) else np.nan)
                    continue
                n_expected = {"folds": len(folds), "seeds": len(seeds), "units": len(folds) * len(seeds)}[std_over]
                units = _std_units(gc, std_over)["value"].to_numpy(float)
                cells.append(_cell(units, ddof, max(n_expected, len(units))))
                ok = units[np.isfinite(units)]
                cohort_means.append(ok.mean() if len(ok) else np.nan)
            if len(cohorts) > 1:
                cm = np.asarray(cohort_means, float)
                cells.append(f"{np.nanmean(cm):.3f}" + (f" ({int(np.isfinite(cm).sum())}/{len(cohorts)} cohorts)" if not np.isfinite(cm).all() else "")
                             if np.isfinite(cm).any() else "n/a")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    if failures is not None and len(failures):
        lines.append("## Failed units")
        lines.append("")
        keys = [c for c in ("method", "cohort", "task", "fold", "seed", "reason") if c in failures.columns]
        lines.append("| " + " | ".join(keys) + " |")
        lines.append("|" + "---|" * len(keys))
        for _, r in failures.iterrows():
            lines.append("| " + " | ".join(str(r[k]).replace("|", "/").replace("\n", " ") for k in keys) + " |")
        lines.append("")
    if notes:
        lines.append("## Notes")
        lines.append("")
        lines.extend(f"- {n}" for n in notes)
        lines.append("")
    return "\n".join(lines)
