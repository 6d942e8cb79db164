"""Shared neural-network building blocks (attention helpers, Mlp, DropPath, sin-cos positions, ALiBi)."""
from .alibi import alibi_bias_tile, alibi_slopes
from .attention import Attention, alibi_attention, attention_with_lse, attention_with_lse_reference, lse_backend
from .missing import MissingModalityEmbedding, ModalityDropout, masked_mean, modality_key_mask
from .mlp import DropPath, Mlp, drop_path
from .pos_embed import sincos_1d, sincos_2d_rows

__all__ = [
    "Attention",
    "DropPath",
    "MissingModalityEmbedding",
    "Mlp",
    "ModalityDropout",
    "alibi_attention",
    "alibi_bias_tile",
    "alibi_slopes",
    "attention_with_lse",
    "attention_with_lse_reference",
    "drop_path",
    "lse_backend",
    "masked_mean",
    "modality_key_mask",
    "sincos_1d",
    "sincos_2d_rows",
]
