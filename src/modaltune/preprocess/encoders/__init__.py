"""Patch encoders for feature extraction: a registry of local-weight models (see :mod:`.registry`).

Plain-PyTorch models live in their own modules: :mod:`.efficientnet_lite` (default), :mod:`.conch_v15` and
CTransPath's stem (:mod:`.ctranspath`); :mod:`.pairing` checks a run's tile size / magnification against the
encoder's; :mod:`.custom` builds a user encoder from a config (``module:function`` + weights + transform).
"""
from .custom import custom_encoder_spec, read_encoder_config
from .pairing import EncoderPairingWarning, check_pairing, pairing_problem
from .registry import (
    ALIASES,
    ENTRY_POINT_GROUP,
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
    register_patch_encoder,
    strip_prefix_filter,
)

__all__ = [
    "ALIASES",
    "ENTRY_POINT_GROUP",
    "EncoderPairingWarning",
    "check_pairing",
    "custom_encoder_spec",
    "pairing_problem",
    "read_encoder_config",
    "register_patch_encoder",
    "strip_prefix_filter",
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
