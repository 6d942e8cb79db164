"""Fixtures shared by the tests of the scripts under ``benchmarks/``."""
from __future__ import annotations

import sys

import pytest
from _scripts import BENCHMARKS, load_bench_script


@pytest.fixture(scope="module")
def ff():
    """``benchmarks/modaltune_sweep/run_fivefold.py`` as a fresh module; its folder is on ``sys.path`` while the
    test module runs, because the script imports ``run_sweep`` from beside it (also lazily, inside functions)."""
    sweep = str(BENCHMARKS / "modaltune_sweep")
    sys.path.insert(0, sweep)
    yield load_bench_script("modaltune_sweep/run_fivefold.py")
    sys.path.remove(sweep)
