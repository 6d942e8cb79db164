"""A transformer over the pathway tokens of one RNA profile, behind the slide-encoder stage API.

It lets the Modal Adapter (and ``slide_fm``-style probes) be tested on a real frozen model of
another modality when no slide features exist: the "bag" of one patient is one row per pathway,

``features (B, P, G_max)``: row ``p`` holds the values of pathway ``p``'s genes in the order of
``gene_index[p]``, zero-padded to ``G_max`` (:func:`pathway_rows` builds it from ``(B, G)`` RNA).

Stages (same contract as :mod:`modaltune.encoders.slide.base`)::

    embed:  t_p = (sum_j x[b, p, j] * E[gene_index[p][j]]) / sqrt(|p|) + pos_p   (B, P, d)
            tokens = [CLS; t_1 .. t_P]                                          (B, 1 + P, d)
    run_layers: pre-LN transformer blocks (those of ``small_transformer``)
    pool:   LayerNorm, then CLS (default) or the mean of the pathway tokens     (B, d)

``E`` is a learned gene table (one d-vector per gene, shared by every pathway the gene belongs
to): a gene in three pathways has one embedding, not three. ``pos_p`` is a learned pathway
identity, so the token order is fixed (``coords`` are ignored and may be None). Every pathway row
is a valid token: a ``mask`` with False entries is refused (a missing RNA profile is a missing
modality, handled by the caller, not a shorter bag).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from modaltune.errors import ConfigError, InputError

from ._contracts import check_features, check_mask
from .base import SlideEncoder, TokenState
from .small_transformer import _Block

__all__ = ["PathwayTransformerEncoder", "pathway_rows", "padded_gene_index"]


def padded_gene_index(gene_index: Sequence[Sequence[int]], n_genes: int) -> np.ndarray:
    """``(P, G_max)`` int64 table of each pathway's gene columns, padded with ``n_genes`` (a zero row).

    Raises ConfigError on an empty pathway or a gene index outside ``[0, n_genes)``.
    """
    rows = [np.asarray(list(g), dtype=np.int64) for g in gene_index]
    if not rows:
        raise ConfigError("pathway_transformer needs at least one pathway", where="pathway_transformer.gene_index")
    for p, r in enumerate(rows):
        if r.size == 0:
            raise ConfigError(f"pathway {p} has no gene", where="pathway_transformer.gene_index", fix="drop empty pathways (tokenize_pathways does)")
        if r.min() < 0 or r.max() >= n_genes:
            raise ConfigError(f"pathway {p} names gene column {int(r.max() if r.max() >= n_genes else r.min())}, outside [0, {n_genes})",
                              where="pathway_transformer.gene_index")
    g_max = max(r.size for r in rows)
    out = np.full((len(rows), g_max), n_genes, dtype=np.int64)
    for p, r in enumerate(rows):
        out[p, : r.size] = r
    return out


def pathway_rows(x: np.ndarray | torch.Tensor, index: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``x (B, G)`` RNA values -> ``(B, P, G_max)`` pathway rows (zeros where a pathway has fewer genes).

    ``index`` is :func:`padded_gene_index`'s table (padding value ``G``).
    """
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not torch.is_tensor(x) else x.float()
    idx = torch.as_tensor(index, dtype=torch.long, device=x.device)
    xp = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1)  # column G is the padding zero
    return xp[:, idx]


class PathwayTransformerEncoder(SlideEncoder):
    """Pathway-token RNA transformer (defaults: width 64, 3 layers, 4 heads).

    Args:
        gene_index: per pathway, the RNA column indices of its genes (``PathwayTokens.gene_index``).
        n_genes: number of RNA columns ``G`` the indices refer to.
        embed_dim, depth, num_heads, mlp_ratio, dropout: transformer size and regularisation.
        global_pool: False reads CLS, True averages the pathway tokens.
    """

    def __init__(self, gene_index: Sequence[Sequence[int]], n_genes: int, embed_dim: int = 64, depth: int = 3, num_heads: int = 4,
                 mlp_ratio: float = 2.0, dropout: float = 0.1, global_pool: bool = False, in_dim: int | None = None):
        super().__init__()
        idx = padded_gene_index(gene_index, int(n_genes))
        if in_dim is not None and int(in_dim) != idx.shape[1]:
            raise ConfigError(f"in_dim {in_dim} differs from the largest pathway ({idx.shape[1]} genes)", where="pathway_transformer.in_dim",
                              fix="leave in_dim out: it follows from gene_index")
        self.n_genes, self.num_pathways = int(n_genes), idx.shape[0]
        self.in_dim, self.embed_dim, self.num_layers, self.global_pool = idx.shape[1], int(embed_dim), int(depth), bool(global_pool)
        self.register_buffer("gene_index", torch.from_numpy(idx))
        sizes = (idx < n_genes).sum(1)
        self.register_buffer("inv_sqrt_size", torch.from_numpy(1.0 / np.sqrt(sizes)).float())
        self.gene_embed = nn.Embedding(self.n_genes + 1, embed_dim, padding_idx=self.n_genes)  # row G: padding, stays zero
        self.pathway_pos = nn.Parameter(torch.randn(1, self.num_pathways, embed_dim) * 0.02)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02)
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([_Block(embed_dim, num_heads, mlp_ratio, dropout, 0.0) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        nn.init.normal_(self.gene_embed.weight, std=1.0 / math.sqrt(embed_dim))
        with torch.no_grad():
            self.gene_embed.weight[self.n_genes].zero_()

    def rows(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``(B, G)`` RNA -> ``(B, P, G_max)`` input of :meth:`embed` (see :func:`pathway_rows`)."""
        return pathway_rows(x, self.gene_index.cpu())

    def pathway_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, P, G_max)`` pathway rows -> ``(B, P, d)`` tokens before the pathway identity is added."""
        w = self.gene_embed(self.gene_index)  # (P, G_max, d); padding rows are zero
        return torch.einsum("bpj,pjd->bpd", features, w) * self.inv_sqrt_size[None, :, None]

    def embed(self, features: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None, *,
              padding_mask: torch.Tensor | None = None, **kw: Any) -> TokenState:
        """``features (B, P, G_max)`` -> TokenState with ``T = 1 + P`` (CLS first); coords are ignored."""
        name = "pathway_transformer"
        features = check_features(features, self.in_dim, name)
        mask = check_mask(mask, features, name, padding_mask=padding_mask)
        if features.shape[1] != self.num_pathways:
            raise InputError(f"{name} expects one row per pathway ({self.num_pathways}), got {features.shape[1]}", where="features",
                             fix="build the bag with PathwayTransformerEncoder.rows(rna) / pathway_rows")
        if mask is not None and not bool(mask.all()):
            raise InputError(f"{name} got a mask with invalid pathway rows; every pathway row is a token", where="mask",
                             fix="pass mask=None; treat a patient without RNA as a missing modality")
        x = self.pathway_tokens(features.to(self.cls_token.dtype)) + self.pathway_pos
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return TokenState(tokens=self.pos_drop(x), num_prefix=1, mask=None)

    def _run_layer(self, index: int, state: TokenState) -> torch.Tensor:
        return self.blocks[index](state.tokens, state.mask)

    def pool(self, state: TokenState) -> torch.Tensor:
        """LayerNorm, then CLS (default) or the mean of the pathway tokens: ``(B, embed_dim)``."""
        x = self.norm(state.tokens)
        return x[:, 1:].mean(1) if self.global_pool else x[:, 0]
