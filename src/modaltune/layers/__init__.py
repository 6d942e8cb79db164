"""Shared neural-network building blocks (attention helpers, Mlp, DropPath, sin-cos positions, ALiBi,
gated attention pooling, gated bilinear fusion, optimal-transport co-attention, Nystrom attention)."""
from .alibi import alibi_bias_tile, alibi_slopes
from .attention import Attention, alibi_attention, attention_with_lse, attention_with_lse_reference, lse_backend
from .bilinear_fusion import BilinearFusion
from .gated_attention import GatedAttention
from .missing import MissingModalityEmbedding, ModalityDropout, masked_mean, modality_key_mask
from .mlp import DropPath, Mlp, drop_path
from .nystrom import NystromAttention
from .optimal_transport import OTCoAttention, unbalanced_plan
from .pos_embed import sincos_1d, sincos_2d_rows

__all__ = [
    "Attention",
    "BilinearFusion",
    "DropPath",
    "GatedAttention",
    "MissingModalityEmbedding",
    "Mlp",
    "ModalityDropout",
    "NystromAttention",
    "OTCoAttention",
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
    "unbalanced_plan",
]
