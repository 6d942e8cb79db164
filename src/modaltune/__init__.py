"""modaltune: fine-tune frozen slide-level pathology foundation models with extra modalities.

The public API is small; see ``docs/`` and the README. Submodules are imported lazily so that
``import modaltune`` stays fast and optional extras stay optional.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
