"""Registry of slide encoders: ``create_slide_encoder(name, checkpoint=..., random_init=..., **kwargs)``.

Names: ``gigapath``, ``titan`` (frozen foundation models: a local checkpoint is required unless
``random_init=True`` is passed explicitly), ``small_transformer``, ``abmil``, ``transmil``,
``pathway_transformer`` (an RNA backbone with the same stage API; bags of pathway rows)
(trained from scratch: random initialisation is their normal start; a checkpoint may be given).
The returned module records where its weights came from in ``weights_source`` (the checkpoint path
or ``"random_init"``); put it in run results.

Example::

    enc = create_slide_encoder("gigapath", checkpoint="~/weights/slide_encoder.pth", global_pool=True)
    enc = create_slide_encoder("titan", checkpoint="~/weights/TITAN/model.safetensors", patch_size_level0=512)
    enc = create_slide_encoder("small_transformer", in_dim=768, embed_dim=128)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modaltune.errors import ConfigError
from modaltune.registry import Registry

from .abmil import ABMILSlideEncoder
from .base import SlideEncoder
from .checkpoint import (
    default_checkpoint_filter_fn,
    gigapath_checkpoint_filter_fn,
    load_checkpoint,
    titan_checkpoint_filter_fn,
)
from .gigapath import GigaPathSlideEncoder
from .pathway_transformer import PathwayTransformerEncoder
from .precision import SlidePrecision, apply_precision, check_precision
from .small_transformer import SmallTransformerSlideEncoder
from .titan import TitanSlideEncoder
from .transmil import TransMILSlideEncoder

__all__ = ["create_slide_encoder", "list_slide_encoders", "register_slide_encoder", "SlideEncoderEntry"]


@dataclass(frozen=True)
class SlideEncoderEntry:
    """How to build one registered encoder."""

    builder: Callable[..., SlideEncoder]
    filter_fn: Callable[..., dict]
    requires_pretrained: bool
    description: str
    weights_hint: str = ""


_REGISTRY: Registry[SlideEncoderEntry] = Registry("slide encoder", where="slide_encoder")


def register_slide_encoder(name: str, builder: Callable[..., SlideEncoder], *, filter_fn: Callable[..., dict] = default_checkpoint_filter_fn,
                           requires_pretrained: bool = False, description: str = "", weights_hint: str = "", replace: bool = False) -> None:
    """Add an encoder under ``name``; a taken name is refused (ValueError) unless ``replace=True``."""
    if name in _REGISTRY and _REGISTRY[name].builder is builder and not replace:
        return
    _REGISTRY.register(name, SlideEncoderEntry(builder, filter_fn, requires_pretrained, description, weights_hint), replace=replace)


def list_slide_encoders() -> list[str]:
    """Registered encoder names, sorted."""
    return _REGISTRY.names()


def create_slide_encoder(name: str, checkpoint: str | Path | None = None, random_init: bool = False, strict: bool = True,
                         precision: SlidePrecision = "fp32", **kwargs: Any) -> SlideEncoder:
    """Build a registered slide encoder and load its weights.

    Args:
        name: one of :func:`list_slide_encoders`.
        checkpoint: local path of the official weights (GigaPath ``slide_encoder.pth``, TITAN
            ``model.safetensors``) or of a state dict saved from this module. Never downloaded.
        random_init: required (True) to build a foundation model without weights, e.g. for tests;
            it is recorded as ``weights_source = "random_init"``.
        strict: strict key matching when loading (default True; see :func:`load_checkpoint`).
        precision: ``"fp32"`` (default) or ``"bf16-weights"``: weights stored in bfloat16 after loading, a
            frozen inference fast path with its own error bound (see :mod:`.precision`).
        **kwargs: passed to the encoder's constructor (e.g. ``global_pool``, ``in_dim``).

    Raises:
        ConfigError: unknown name or precision, a foundation model with neither checkpoint nor random_init, or both.
        InputError: unreadable checkpoint, missing/unexpected keys, shape mismatches.
    """
    entry = _REGISTRY.get(name)
    check_precision(precision)  # an unknown precision fails before any weights load
    if checkpoint is not None and random_init:
        raise ConfigError(f"slide encoder {name!r} got both a checkpoint and random_init=True", where="slide_encoder", fix="pass only one")
    if entry.requires_pretrained and checkpoint is None and not random_init:
        raise ConfigError(
            f"slide encoder {name!r} is a frozen foundation model and no checkpoint was given; refusing to run with random weights",
            where="slide_encoder.checkpoint",
            fix=f"pass checkpoint=<local file>{' (' + entry.weights_hint + ')' if entry.weights_hint else ''}, or random_init=True for tests",
        )
    model = entry.builder(**kwargs)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, entry.filter_fn, strict=strict)
    else:
        model.weights_source = "random_init"
    return apply_precision(model, precision)


register_slide_encoder(
    "gigapath", GigaPathSlideEncoder, filter_fn=gigapath_checkpoint_filter_fn, requires_pretrained=True,
    description="Prov-GigaPath LongNet slide encoder (1536-d tile features -> 768-d)",
    weights_hint="slide_encoder.pth from the gated Hugging Face repo prov-gigapath/prov-gigapath",
)
register_slide_encoder(
    "titan", TitanSlideEncoder, filter_fn=titan_checkpoint_filter_fn, requires_pretrained=True,
    description="TITAN slide encoder (768-d CONCH v1.5 features -> 768-d)",
    weights_hint="model.safetensors from the gated Hugging Face repo MahmoodLab/TITAN",
)
register_slide_encoder("small_transformer", SmallTransformerSlideEncoder, description="small ViT over patch features (CPU-friendly)")
register_slide_encoder("abmil", ABMILSlideEncoder, description="gated-attention MIL pooling")
register_slide_encoder("transmil", TransMILSlideEncoder, description="TransMIL (exact attention + PPEG)")
register_slide_encoder("pathway_transformer", PathwayTransformerEncoder,
                       description="transformer over the pathway tokens of one RNA profile (a frozen non-slide backbone for the Modal Adapter)")
