"""Zero-shot retrieval (Symile's protocol): find a patient's held-out modality from the other ones.

For target modality m, every held-out patient i is a query built from its other modalities and
every held-out patient j's m-embedding a candidate; the score is the MIP (Symile) or the summed
dot products (CLIP, MIRROR) of the query's embeddings with the candidate. Top-k accuracy is the
fraction of queries whose own candidate ranks within the first k (ties count against it).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["retrieval_scores", "topk_accuracy"]


def retrieval_scores(query: Sequence[torch.Tensor], candidates: torch.Tensor, how: str) -> torch.Tensor:
    """``(N, N)`` scores, entry (i, j) = query patient i against candidate j.

    Args:
        query: the other modalities' (N, d) embeddings of the N query patients.
        candidates: (N, d) embeddings of the target modality (row j = patient j).
        how: ``"mip"`` (:math:`\\sum_k c_{jk} \\prod_q r^q_{ik}`) or ``"sum_dot"`` (:math:`\\sum_q r^q_i \\cdot c_j`).
    """
    if how == "mip":
        prod = query[0]
        for r in query[1:]:
            prod = prod * r
        return prod @ candidates.T
    if how == "sum_dot":
        return sum(r @ candidates.T for r in query)
    raise ValueError(f"unknown retrieval score {how!r}; use 'mip' or 'sum_dot'")


def topk_accuracy(scores: torch.Tensor, k: int) -> float:
    """Fraction of rows i whose true candidate i is among the k best of row i.

    The rank of the true candidate is the number of *other* candidates scoring at least as high
    (ties are counted against it, so a constant score never looks good).

    >>> topk_accuracy(torch.tensor([[3., 1.], [2., 0.]]), 1)
    0.5
    """
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be square (N, N), got {tuple(scores.shape)}")
    n = scores.shape[0]
    true = scores.diagonal().unsqueeze(1)
    better = (scores >= true).sum(dim=1) - 1  # minus the true candidate itself
    return float((better < k).float().mean()) if n else float("nan")
