"""Classification figures (scikit-learn): ROC and precision-recall per class, confusion matrix,
reliability curve, all on pooled out-of-fold predictions of the first seed."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from modaltune.errors import InputError
from modaltune.reports.run_files import RunFiles, prob_columns
from modaltune.reports.style import new_figure, save_figure

__all__ = ["class_arrays", "roc_pr_figure", "confusion_figure", "calibration_figure"]


def class_arrays(run: RunFiles, cohort: str, task: str, method: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(label (n,) int, probs (n, C), class names)`` of labelled patients, first seed."""
    p = run.predictions
    d = p[(p["cohort"] == cohort) & (p["task"] == task) & (p["method"] == method)]
    d = d[d["seed"] == d["seed"].min()] if len(d) else d
    cols = prob_columns(d)
    d = d[d["label"].notna() & (d["label"] >= 0)] if len(d) else d
    if d.empty or not cols:
        raise InputError(f"no labelled classification predictions of {method} for {cohort}/{task}", where=str(run.run_dir / "predictions.parquet"))
    return d["label"].to_numpy().astype(int), d[cols].to_numpy(float), [c[len("prob_"):] for c in cols]


def roc_pr_figure(run: RunFiles, cohort: str, task: str, method: str, path: str | Path) -> Path:
    """One-vs-rest ROC (left) and precision-recall (right) curve per class with AUC / average precision."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    y, probs, names = class_arrays(run, cohort, task, method)
    fig, (ax_roc, ax_pr) = new_figure(2, width=10.0)
    # a binary task has one informative curve (the positive class); more classes: one per class
    classes = [1] if len(names) == 2 else range(len(names))
    for k in classes:
        pos = (y == k).astype(int)
        if pos.min() == pos.max():
            continue  # a class absent (or alone) in the held-out labels has no curve
        fpr, tpr, _ = roc_curve(pos, probs[:, k])
        ax_roc.plot(fpr, tpr, label=f"{names[k]} (AUC {auc(fpr, tpr):.3f})")
        prec, rec, _ = precision_recall_curve(pos, probs[:, k])
        ax_pr.plot(rec, prec, label=f"{names[k]} (AP {average_precision_score(pos, probs[:, k]):.3f}; prevalence {pos.mean():.2f})")
    ax_roc.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (one vs rest)", xlim=(0, 1), ylim=(0, 1.01))
    ax_pr.set(xlabel="recall", ylabel="precision", title="precision-recall", xlim=(0, 1), ylim=(0, 1.01))
    for ax in (ax_roc, ax_pr):
        ax.legend(fontsize=7, loc="lower right" if ax is ax_roc else "lower left")
    fig.suptitle(f"{method} · {cohort} · {task} (pooled out-of-fold, n={len(y)})", fontsize=10)
    return save_figure(fig, path, protocol=run.protocol, label=run.label)


def confusion_figure(run: RunFiles, cohort: str, task: str, method: str, path: str | Path) -> Path:
    """Confusion matrix of argmax predictions (counts, rows = true class)."""
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    y, probs, names = class_arrays(run, cohort, task, method)
    cm = confusion_matrix(y, probs.argmax(1), labels=range(len(names)))
    fig, ax = new_figure(width=5.5, height=4.8)
    ConfusionMatrixDisplay(cm, display_labels=names).plot(ax=ax, cmap="Blues", colorbar=False)
    ax.set_title(f"{method} · {cohort} · {task}: confusion (n={len(y)})", fontsize=10)
    return save_figure(fig, path, protocol=run.protocol, label=run.label)


def calibration_figure(run: RunFiles, cohort: str, task: str, path: str | Path, *, n_bins: int = 5) -> Path:
    """Reliability curve of every method: binary tasks use P(second class); multi-class tasks the
    top-label confidence against whether the argmax was right. Quantile bins (equal counts)."""
    from sklearn.calibration import calibration_curve

    methods = list(dict.fromkeys(run.predictions.query("cohort == @cohort and task == @task")["method"]))
    fig, ax = new_figure(width=5.5, height=5.0)
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect")
    for method in methods:
        y, probs, names = class_arrays(run, cohort, task, method)
        if len(names) == 2:
            target, score, what = (y == 1).astype(int), probs[:, 1], f"P({names[1]})"
        else:
            target, score, what = (probs.argmax(1) == y).astype(int), probs.max(1), "top-label confidence"
        frac, mean = calibration_curve(target, score, n_bins=min(n_bins, max(2, len(y) // 5)), strategy="quantile")
        ax.plot(mean, frac, marker="o", ms=4, label=method)
    ax.set(xlabel=f"predicted {what}", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"{cohort} · {task}: reliability (pooled out-of-fold)", fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path, protocol=run.protocol, label=run.label)


