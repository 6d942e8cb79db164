"""modaltune.reports: figures (matplotlib, Agg) and a self-contained HTML report of a benchmark run folder.

Public API: :func:`build_report` (``modaltune report RUN_DIR``); the figure functions live in
``figures_survival``, ``figures_classification``, ``figures_comparison`` and ``figures_training``.
"""
from modaltune.reports.report import build_report

__all__ = ["build_report"]
