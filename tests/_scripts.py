"""Load a Python file that is not in an importable package as a module, for the tests.

The scripts under ``benchmarks/`` (no ``__init__.py``), a reference recipe in ``shared/`` and one test
module read by another are loaded through here, one way: executed afresh at each call (a test may
patch the module's globals without touching the next test's copy) and registered in ``sys.modules``
under ``name`` before they run, because dataclasses and pickling look a class's module up there.
``tests/conftest.py``'s folder is on ``sys.path`` while pytest runs, so ``from _scripts import ...``
works from every test folder.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["BENCHMARKS", "load_bench_script", "load_script"]

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(path: str | Path, name: str) -> ModuleType:
    """Execute the file ``path`` as a new module ``name`` (registered in ``sys.modules``) and return it."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_bench_script(relpath: str, name: str | None = None) -> ModuleType:
    """The script ``benchmarks/<relpath>`` (e.g. ``"tcga/mcat5_table.py"``) as a new module; ``name``
    defaults to ``bench_`` + the path with ``/`` as ``_`` and no ``.py`` (``bench_tcga_mcat5_table``)."""
    return load_script(BENCHMARKS / relpath, name or "bench_" + relpath.removesuffix(".py").replace("/", "_"))
