"""The method tests run tiny models: one thread avoids oversubscribing the shared CPU cores."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (``one_torch_thread`` in tests/conftest.py)."""
    yield
