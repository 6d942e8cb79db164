"""modaltune.benchmark: the benchmark runner, one layer above the training engine.

    from modaltune.benchmark import run_benchmark

A benchmark crosses methods x cohorts x task sets x folds x seeds; each combination is a *unit*
trained and predicted through :mod:`modaltune.training` (the engine: fit / predict / embed).
Modules: ``runner`` (plan, run, resume and aggregate units), ``launch`` (devices, Ray options,
multi-process training in a subprocess), ``unit_config`` (the config hash that guards resumes),
``run_folder`` (metadata and log file of a run folder), ``summary_parts`` and ``split_notes``
(summary.md text), ``probes`` (linear probes after training), ``interrupt`` (SIGINT/SIGTERM).

Nothing below this package imports it: only :mod:`modaltune.cli`, :mod:`modaltune.demo` and
:mod:`modaltune.reports` sit above it (tests/test_import_graph.py checks this).
:func:`modaltune.training.runner.run_benchmark` stays importable as a lazy re-export.
"""
from __future__ import annotations

from modaltune.benchmark.runner import BenchmarkResult, Unit, aggregate, plan_units, run_benchmark, run_unit

__all__ = ["BenchmarkResult", "Unit", "aggregate", "plan_units", "run_benchmark", "run_unit"]
