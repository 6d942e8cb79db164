"""Patch encoders for feature extraction: a registry of local-weight models (see :mod:`.registry`)."""
from .registry import (
    PATCH_ENCODERS,
    PatchEncoder,
    PatchEncoderSpec,
    default_weights_dir,
    get_patch_encoder_spec,
    list_patch_encoders,
    load_patch_encoder,
    load_state_dict_strict,
)

__all__ = [
    "PATCH_ENCODERS",
    "PatchEncoder",
    "PatchEncoderSpec",
    "default_weights_dir",
    "get_patch_encoder_spec",
    "list_patch_encoders",
    "load_patch_encoder",
    "load_state_dict_strict",
]
