"""``build_report(run_dir)``: every figure and table of a benchmark run folder as PNGs plus one
self-contained HTML file (``modaltune report RUN_DIR``; also run at the end of ``benchmark``/``demo``)."""
from __future__ import annotations

import re
from pathlib import Path

from modaltune.reports import figures_classification as fc
from modaltune.reports import figures_comparison as fcmp
from modaltune.reports import figures_survival as fs
from modaltune.reports import figures_training as ft
from modaltune.reports.html import Section, render_html
from modaltune.reports.run_files import load_run

__all__ = ["build_report"]


def _slug(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "__".join(parts))


def build_report(run_dir: str | Path, out: str | Path | None = None, *, km_scheme: str = "median") -> Path:
    """Write the report of a benchmark run folder and return the HTML path.

    Args:
        run_dir: a finished benchmark run folder (holds results.csv, summary.md, predictions.parquet).
        out: HTML file to write (default ``RUN_DIR/report/report.html``); the PNGs go to a
            ``figures/`` folder beside it.
        km_scheme: Kaplan-Meier risk groups, ``median`` or ``tertiles`` (cut per fold).

    Raises:
        InputError: ``run_dir`` is not a benchmark run folder.
    """
    run = load_run(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / "report" / "report.html"
    figdir = out.parent / "figures"
    sections = []

    s = Section("Method comparison")
    s.figures.append((fcmp.forest_figure(run, figdir / "forest.png"), "forest plot: pooled estimate, bootstrap 95% CI, per-fold values"))
    s.tables.append(("Paired differences against the best method (per fold x seed)", fcmp.paired_difference_table(run.results)))
    s.tables.append(("Patients missing modalities or labels (kept; masked per modality / task)", fcmp.missing_table(run.exclusions)))
    sections.append(s)

    for cohort, task in run.tasks("survival"):
        s = Section(f"Survival · {cohort} · {task}")
        s.figures.append((fs.td_auc_figure(run, cohort, task, figdir / f"tdauc__{_slug(cohort, task)}.png"), "time-dependent AUC"))
        for method in dict.fromkeys(run.predictions.query("cohort == @cohort and task == @task and risk.notna()")["method"]):
            p = fs.km_figure(run, cohort, task, method, figdir / f"km__{_slug(method, cohort, task)}.png", scheme=km_scheme)
            s.figures.append((p, f"Kaplan-Meier by predicted risk: {method}"))
        sections.append(s)

    for cohort, task in run.tasks("classification"):
        s = Section(f"Classification · {cohort} · {task}")
        s.figures.append((fc.calibration_figure(run, cohort, task, figdir / f"calibration__{_slug(cohort, task)}.png"), "reliability curves"))
        preds = run.predictions.query("cohort == @cohort and task == @task")
        for method in dict.fromkeys(preds["method"]):
            s.figures.append((fc.roc_pr_figure(run, cohort, task, method, figdir / f"rocpr__{_slug(method, cohort, task)}.png"), f"ROC and PR: {method}"))
            s.figures.append((fc.confusion_figure(run, cohort, task, method, figdir / f"confusion__{_slug(method, cohort, task)}.png"), f"confusion matrix: {method}"))
        sections.append(s)

    groups = ft.curve_groups(run)
    if groups:
        s = Section("Training curves")
        for method, cohort, tasks in groups:
            p = ft.training_curves_figure(run, method, cohort, tasks, figdir / f"training__{_slug(method, cohort, tasks)}.png")
            s.figures.append((p, f"training log: {method} · {cohort} · {tasks}"))
        sections.append(s)
    else:
        sections.append(Section("Training curves", notes=["No unit wrote a training log (tabular methods only, or logger: none)."]))

    out.parent.mkdir(parents=True, exist_ok=True)
    page = render_html(f"modaltune report: {run.name}", sections, protocol=run.protocol, label=run.label)
    from modaltune.fileio import atomic_write_text

    atomic_write_text(out, page)
    return out
