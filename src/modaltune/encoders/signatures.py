"""Genomic-signature tokens (MCAT, Chen et al. ICCV 2021): gene groups -> one SNN per group -> tokens.

MCAT's six groups (tumour suppressors, oncogenes, protein kinases, cell differentiation markers,
transcription factors, cytokines and growth factors) come as a ragged CSV, one column per group
(``shared/data/tcga/porpoise/signatures.csv``). As in the official dataset code, a group's input
is every omics feature of its genes, across all omics blocks (PORPOISE: ``<GENE>_rnaseq``,
``<GENE>_cnv``, ``<GENE>_mut``), ordered by the full column name (``sorted``), so the first Linear
of each group SNN sees the columns in the official order.

modaltune keeps omics blocks apart (``batch["omics"][block]`` of shape (B, G_block), gene symbols
without suffix, see :mod:`modaltune.data.omics`). :func:`signature_groups` therefore maps each
group onto indices of the concatenation of the blocks (in ``info.omics_dims`` order), once at
build time; :class:`SignatureSNNs` gathers those columns in the forward pass.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from modaltune.data.omics import PORPOISE_SUFFIXES
from modaltune.errors import InputError

__all__ = ["SignatureGroups", "SignatureSNNs", "read_signatures", "signature_groups", "concat_omics"]

log = logging.getLogger(__name__)

#: omics block name -> column suffix of the official tables (``rna`` -> ``_rnaseq``)
_BLOCK_SUFFIX = {v: k for k, v in PORPOISE_SUFFIXES.items()}


def read_signatures(path: str | Path) -> dict[str, list[str]]:
    """``{group: [gene symbols]}`` from a ragged CSV (one column per group, blanks ignored, source order)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("signature file not found", where=path, fix="pass MCAT's groups, e.g. ../shared/data/tcga/porpoise/signatures.csv")
    try:
        df = pd.read_csv(path, dtype=str)
    except Exception as exc:
        raise InputError(f"cannot read signature file ({type(exc).__name__})", where=path, fix="expected a CSV with one column of gene symbols per group") from exc
    groups = {}
    for col in df.columns:
        genes = [g.strip() for g in df[col].dropna() if g.strip()]
        if genes:
            groups[str(col).strip()] = list(dict.fromkeys(genes))
    if not groups:
        raise InputError("signature file holds no gene", where=path, fix="expected a CSV with one column of gene symbols per group")
    return groups


@dataclass
class SignatureGroups:
    """Signature groups mapped onto the cohort's omics features.

    Attributes:
        names: group names (file column order).
        index: per group, int64 indices into :func:`concat_omics` of ``blocks`` (official column order).
        labels: per group, the official column names (``<GENE><suffix>``) of those indices.
        blocks: omics blocks, in concatenation order.
        coverage: DataFrame indexed by ``group``: ``n_expected`` (genes in the group), ``n_found``
            (genes with at least one feature in the cohort), ``fraction``, ``n_features`` (input
            size of the group's SNN) and ``n_<block>`` (features per block).
        source: the file read.
    """

    names: list[str]
    index: list[np.ndarray]
    labels: list[list[str]]
    blocks: list[str]
    coverage: pd.DataFrame
    source: str = ""

    @property
    def sizes(self) -> list[int]:
        return [len(ix) for ix in self.index]

    def summary(self) -> str:
        cov = self.coverage
        parts = [f"{n} {int(cov.at[n, 'n_found'])}/{int(cov.at[n, 'n_expected'])} genes ({int(cov.at[n, 'n_features'])} features)" for n in cov.index]
        return f"signature coverage ({self.source}): " + "; ".join(parts)


def signature_groups(source: str | Path | Mapping[str, Sequence[str]], omics_feature_names: Mapping[str, Sequence[str]]) -> SignatureGroups:
    """Map signature groups onto the omics blocks ``{block: gene names}`` (the order of the dict is
    the concatenation order). Raises a one-line :class:`InputError` naming the file if no gene of
    any group, or no gene of one group, is among the cohort's features."""
    where = str(source) if not isinstance(source, Mapping) else "signatures"
    groups = read_signatures(source) if not isinstance(source, Mapping) else {k: list(v) for k, v in source.items()}
    blocks = list(omics_feature_names)
    if not blocks:
        raise InputError("signature tokens need at least one omics block", where=where, fix="add an omics modality (rna / cnv / mut) to the method")
    lookup: dict[str, list[tuple[str, int, str]]] = {}  # gene -> [(label, concat index, block)]
    offset = 0
    for b in blocks:
        suffix = _BLOCK_SUFFIX.get(b, f"_{b}")
        names = list(omics_feature_names[b])
        for i, g in enumerate(names):
            lookup.setdefault(str(g).strip(), []).append((f"{str(g).strip()}{suffix}", offset + i, b))
        offset += len(names)
    all_genes = {g for gs in groups.values() for g in gs}
    n_overlap = len(all_genes & set(lookup))
    if n_overlap == 0:
        raise InputError(
            f"no signature gene is among the cohort's omics features (overlap 0/{len(all_genes)} genes; blocks {blocks})",
            where=where, fix="check that gene symbols match (HGNC symbols, no suffix) or use another signature file",
        )
    names_out, index, labels, rows = [], [], [], []
    for name, genes in groups.items():
        feats = sorted({f for g in genes for f in lookup.get(g, [])})  # official: sorted column names
        if not feats:
            raise InputError(f"signature group '{name}' has no gene among the cohort's omics features (0/{len(genes)})", where=where,
                             fix="drop the group from the file or add the omics block holding its genes")
        n_found = sum(g in lookup for g in genes)
        per_block = {f"n_{b}": sum(f[2] == b for f in feats) for b in blocks}
        rows.append({"group": name, "n_expected": len(genes), "n_found": n_found, "fraction": n_found / len(genes), "n_features": len(feats), **per_block})
        names_out.append(name)
        index.append(np.asarray([f[1] for f in feats], dtype=np.int64))
        labels.append([f[0] for f in feats])
    coverage = pd.DataFrame(rows).set_index("group")
    out = SignatureGroups(names_out, index, labels, blocks, coverage, where)
    log.info("%s", out.summary())
    return out


def concat_omics(batch: dict, blocks: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x (B, sum G), present (B,) bool)``: the omics blocks side by side; a block a patient lacks
    is zeros (the training mean after z-scoring); ``present`` = the patient has any of the blocks."""
    xs, present = [], None
    for b in blocks:
        x = batch["omics"][b].float()
        m = batch.get("modality_mask", {}).get(b)
        if m is None:
            m = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        xs.append(torch.where(m[:, None], x, torch.zeros((), dtype=x.dtype, device=x.device)))
        present = m if present is None else present | m
    return torch.cat(xs, dim=1), present


def _snn_block(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    # MCAT's SNN_Block: Linear -> ELU -> AlphaDropout (a Sequential, so keys read "<i>.0.weight")
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ELU(), nn.AlphaDropout(dropout))


class SignatureSNNs(nn.ModuleList):
    """One SNN per signature group (MCAT ``sig_networks``): ``x (B, sum G) -> tokens (B, S, hidden[-1])``.

    Args:
        groups: the mapped groups (:func:`signature_groups`).
        hidden: widths of the SNN blocks (MCAT ``small``: ``[256, 256]``).
        dropout: AlphaDropout rate (official 0.25).

    The gather indices are non-persistent buffers: the state dict holds only the official keys
    ``<g>.<block>.0.weight`` / ``.bias``.
    """

    def __init__(self, groups: SignatureGroups, hidden: Sequence[int] = (256, 256), dropout: float = 0.25):
        nets = []
        for n in groups.sizes:
            dims = [n, *hidden]
            nets.append(nn.Sequential(*[_snn_block(dims[i], dims[i + 1], dropout) for i in range(len(hidden))]))
        super().__init__(nets)
        for i, ix in enumerate(groups.index):
            self.register_buffer(f"_index{i}", torch.from_numpy(ix), persistent=False)
        self.out_dim = int(hidden[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(x.index_select(1, getattr(self, f"_index{i}"))) for i, net in enumerate(self)], dim=1)
