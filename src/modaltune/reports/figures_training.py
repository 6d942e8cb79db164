"""Training curves per fold from each unit's ``train_log.csv`` (Lightning CSV logger, copied by the runner)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from modaltune.reports.run_files import RunFiles
from modaltune.reports.style import new_figure, save_figure

__all__ = ["training_curves_figure", "curve_groups"]


def curve_groups(run: RunFiles) -> dict[tuple[str, str, str], list[tuple[int, int, object]]]:
    """``{(method, cohort, task set): [(fold, seed, log DataFrame), ...]}`` of units with a training log."""
    out: dict = {}
    for unit, log in run.train_logs.values():
        key = (unit.get("method", "?"), unit.get("cohort", "?"), "+".join(unit.get("tasks", [])))
        out.setdefault(key, []).append((int(unit.get("fold", 0)), int(unit.get("seed", 0)), log))
    return out


def training_curves_figure(run: RunFiles, method: str, cohort: str, tasks: str, path: str | Path) -> Path:
    """Every logged loss / metric column against epoch (mean of the steps in the epoch), one line per
    fold (first seed), one panel per column."""
    logs = [(f, s, log) for f, s, log in curve_groups(run)[(method, cohort, tasks)]]
    seed0 = min(s for _, s, _ in logs)
    logs = sorted((f, log) for f, s, log in logs if s == seed0)
    cols = sorted({c for _, log in logs for c in log.columns if c not in ("epoch", "step") and log[c].notna().any()})
    ncols = min(3, max(1, len(cols)))
    nrows = int(np.ceil(max(1, len(cols)) / ncols))
    fig, axes = new_figure(ncols, nrows, width=4.0 * ncols, height=3.0 * nrows + 0.8, squeeze=False)
    for ax, col in zip(axes.ravel(), cols):
        for fold, log in logs:
            if col not in log:
                continue
            per_epoch = log[["epoch", col]].dropna().groupby("epoch")[col].mean()
            ax.plot(per_epoch.index, per_epoch.to_numpy(), marker="o", ms=3, label=f"fold {fold}")
        ax.set(xlabel="epoch", title=col)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(cols):]:
        ax.axis("off")
    fig.suptitle(f"{method} · {cohort} · {tasks}: training log per fold (seed {seed0})", fontsize=10)
    return save_figure(fig, path, protocol=run.protocol, label=run.label)
