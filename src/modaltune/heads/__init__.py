"""Task heads and converters from head outputs to risks, survival curves and probabilities."""
from .heads import (
    SURVIVAL_HEADS,
    TaskHead,
    build_head,
    head_output_dim,
    probs_from_output,
    risk_from_output,
    survival_curve,
)
from .text import TextSimilarityHead

__all__ = [
    "SURVIVAL_HEADS",
    "TaskHead",
    "TextSimilarityHead",
    "build_head",
    "head_output_dim",
    "probs_from_output",
    "risk_from_output",
    "survival_curve",
]
