"""Compatibility re-export: the benchmark runner lives in :mod:`modaltune.benchmark.runner`.

``modaltune.training.runner.run_benchmark`` is kept because the README and older scripts name it.
The import happens inside the function, not at module level, so the engine package
(``modaltune.training``) never imports the benchmark layer above it; tests/test_import_graph.py
allows exactly this one function-level import.
"""
from __future__ import annotations

from typing import Any

__all__ = ["run_benchmark"]


def run_benchmark(*args: Any, **kwargs: Any) -> Any:
    """:func:`modaltune.benchmark.run_benchmark` (same arguments, same result)."""
    from modaltune.benchmark import run_benchmark as _run_benchmark

    return _run_benchmark(*args, **kwargs)
