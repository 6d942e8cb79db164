"""Whole-slide preprocessing: tissue detection, tiling and patch-feature extraction to TRIDENT h5.

Heavy optional dependencies (OpenSlide, OpenCV, Ray) are imported only when a function needs them,
so ``import modaltune.preprocess`` is cheap. Main entry point: :func:`extract_features`.
"""
from __future__ import annotations

import importlib

__all__ = [
    "extract_features",
    "process_slide",
    "ExtractConfig",
    "RunSummary",
    "SlideResult",
    "find_slides",
    "open_slide",
    "read_mpp_overrides",
    "WSI",
    "detect_tissue",
    "write_geojson",
    "plan_tiles",
    "BagWriter",
    "bag_is_complete",
    "load_patch_encoder",
    "list_patch_encoders",
]

_WHERE = {
    "extract_features": "pipeline", "process_slide": "pipeline", "ExtractConfig": "pipeline", "RunSummary": "pipeline",
    "SlideResult": "pipeline", "find_slides": "pipeline",
    "open_slide": "slide", "read_mpp_overrides": "slide", "WSI": "slide",
    "detect_tissue": "tissue", "write_geojson": "tissue",
    "plan_tiles": "tiling",
    "BagWriter": "h5writer", "bag_is_complete": "h5writer",
    "load_patch_encoder": "encoders", "list_patch_encoders": "encoders",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
