"""Slide encoders: Prov-GigaPath, TITAN, a small transformer, ABMIL and TransMIL.

All share the stage API of :class:`SlideEncoder` (``embed`` -> ``run_layers`` -> ``pool``, see
:mod:`modaltune.encoders.slide.base`) and are built with :func:`create_slide_encoder`.
"""
from .abmil import ABMILSlideEncoder
from .base import SlideEncoder, TokenState
from .checkpoint import (
    gigapath_checkpoint_filter_fn,
    load_checkpoint,
    read_state_dict,
    titan_checkpoint_filter_fn,
)
from .gigapath import GigaPathSlideEncoder
from .pathway_transformer import PathwayTransformerEncoder, pathway_rows
from .registry import create_slide_encoder, list_slide_encoders, register_slide_encoder
from .small_transformer import SmallTransformerSlideEncoder
from .titan import TitanSlideEncoder
from .transmil import TransMILSlideEncoder

__all__ = [
    "ABMILSlideEncoder",
    "GigaPathSlideEncoder",
    "PathwayTransformerEncoder",
    "SlideEncoder",
    "SmallTransformerSlideEncoder",
    "TitanSlideEncoder",
    "TokenState",
    "TransMILSlideEncoder",
    "create_slide_encoder",
    "gigapath_checkpoint_filter_fn",
    "list_slide_encoders",
    "pathway_rows",
    "load_checkpoint",
    "read_state_dict",
    "register_slide_encoder",
    "titan_checkpoint_filter_fn",
]
