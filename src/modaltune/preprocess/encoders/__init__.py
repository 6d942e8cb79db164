"""Patch encoders for feature extraction: a registry of local-weight models (see :mod:`.registry`).

Plain-PyTorch models live in their own modules: :mod:`.efficientnet_lite` (default) and :mod:`.conch_v15`.
"""
from .registry import (
    PATCH_ENCODERS,
    PatchEncoder,
    PatchEncoderSpec,
    check_patch_encoder,
    default_weights_dir,
    get_patch_encoder_spec,
    hub_offline,
    list_patch_encoders,
    load_patch_encoder,
    load_state_dict_strict,
)

__all__ = [
    "PATCH_ENCODERS",
    "PatchEncoder",
    "PatchEncoderSpec",
    "check_patch_encoder",
    "default_weights_dir",
    "get_patch_encoder_spec",
    "hub_offline",
    "list_patch_encoders",
    "load_patch_encoder",
    "load_state_dict_strict",
]
