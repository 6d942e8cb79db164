"""Pretrain a pathway-token RNA transformer on real TCGA cohorts, to serve as a *frozen* backbone.

No real slide features exist in this project, so the Modal Adapter is tested on a real frozen model
of another modality (issue 17 item 6): :class:`~modaltune.encoders.slide.pathway_transformer.PathwayTransformerEncoder`
is pretrained on the RNA of PORPOISE cohorts that are **not** evaluated (:data:`PRETRAIN_COHORTS`),
then frozen, and clinical and CNV/mutation tokens are injected through the unchanged
:class:`~modaltune.adapters.modal_adapter.ModalAdapter` on the evaluated cohorts (:data:`EVAL_COHORTS`).

Objective (self-supervised + site, on pretraining cohorts only)::

    hide a random ``mask_ratio`` of pathway tokens (replaced by a learned mask token + identity)
    recon[b, p, j] = <h[b, p], D[gene_index[p, j]]>       # decoder gene table D
    loss = MSE over the hidden pathways' genes + site_weight * CE(site | CLS)

RNA values are the tables' per-cohort z-scores; pooling cohorts is approximate (the tables were
standardised per cohort), so the site term cannot use mean shifts, only co-expression structure.

:func:`pretraining_set` refuses any patient of an evaluated cohort (InputError naming the patient).
:func:`save_backbone` writes ``backbone.pt`` (state dict) + ``backbone.json`` (constructor
arguments, cohorts, gene list, history); :func:`load_backbone` rebuilds it through
``create_slide_encoder("pathway_transformer", checkpoint=...)``.
"""
from __future__ import annotations

import json
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modaltune.errors import ConfigError, InputError

__all__ = ["PRETRAIN_COHORTS", "EVAL_COHORTS", "PretrainSet", "pretraining_set", "shared_genes", "pretrain_rna_backbone",
           "save_backbone", "load_backbone", "freeze"]

#: PORPOISE cohorts whose RNA pretrains the backbone (none of them is evaluated)
PRETRAIN_COHORTS = ("blca", "coadread", "hnsc", "lihc", "paad", "skcm", "stad")
#: the cohorts the adapter is evaluated on (``nsclc`` = luad + lusc, ``rcc`` = kirc + kirp)
EVAL_COHORTS = ("brca", "gbmlgg", "nsclc", "rcc")


@dataclass
class PretrainSet:
    """RNA of the pretraining patients: ``x (N, G)`` float32 z-scores, ``site (N,)`` int cohort
    index into ``cohorts``, ``patient_ids`` (N,), ``genes`` (G,) column names."""

    x: np.ndarray
    site: np.ndarray
    patient_ids: list[str]
    genes: list[str]
    cohorts: list[str]


def _import(cohort: str, shared_dir: str | Path | None, cache: MutableMapping | None):
    from modaltune.data.sources.porpoise import import_porpoise

    return import_porpoise(cohort, shared_dir, table_cache=cache)


def shared_genes(cohorts: Sequence[Any]) -> list[str]:
    """RNA genes present in every cohort (sorted): the backbone's fixed input columns."""
    genes = None
    for c in cohorts:
        g = set(c.omics["rna"].columns)
        genes = g if genes is None else genes & g
    return sorted(genes or [])


def pretraining_set(pretrain: Sequence[Any], evaluated: Sequence[Any], genes: Sequence[str] | None = None) -> PretrainSet:
    """Stack the RNA of the ``pretrain`` cohorts (imported :class:`~modaltune.data.cohort.Cohort` s).

    ``evaluated`` cohorts contribute only their patient ids (to prove disjointness) and gene names.
    Raises InputError if a patient of an evaluated cohort is among the pretraining patients, or if a
    cohort is on both lists.
    """
    names = [c.name for c in pretrain]
    both = sorted(set(names) & {c.name for c in evaluated})
    if both:
        raise ConfigError(f"cohort(s) {both} are both pretrained on and evaluated", where="pretrain cohorts", fix="pretrain on cohorts you do not evaluate")
    genes = list(genes) if genes is not None else shared_genes([*pretrain, *evaluated])
    held = {str(p) for c in evaluated for p in c.patients.index}
    xs, sites, ids = [], [], []
    for k, c in enumerate(pretrain):
        rna = c.omics["rna"]
        miss = [g for g in genes if g not in rna.columns]
        if miss:
            raise InputError(f"cohort {c.name} lacks {len(miss)} backbone gene(s), e.g. {miss[:3]}", where=c.name, fix="pass genes=shared_genes(...)")
        leak = sorted(held & {str(p) for p in rna.index})
        if leak:
            raise InputError(f"patient {leak[0]} of an evaluated cohort is in pretraining cohort {c.name} ({len(leak)} such patients)",
                             where=c.name, fix="pretraining and evaluated cohorts must share no patient")
        xs.append(rna[genes].to_numpy(np.float32))
        sites.append(np.full(len(rna), k))
        ids += [str(p) for p in rna.index]
    return PretrainSet(np.concatenate(xs), np.concatenate(sites), ids, genes, names)


def freeze(module: nn.Module) -> nn.Module:
    """No gradients, eval mode (no dropout); returns the module."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


@dataclass
class _History:
    epochs: list[dict] = field(default_factory=list)


class _Pretrainer(nn.Module):
    """Backbone + mask token + decoder gene table + site head (only the backbone is kept)."""

    def __init__(self, enc: nn.Module, n_sites: int):
        super().__init__()
        self.enc = enc
        d = enc.embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.decoder = nn.Embedding(enc.n_genes + 1, d, padding_idx=enc.n_genes)
        self.site = nn.Linear(d, n_sites)
        # small decoder: recon starts near 0 (the z-score mean), not at variance d
        nn.init.normal_(self.decoder.weight, std=0.02)
        with torch.no_grad():
            self.decoder.weight[enc.n_genes].zero_()

    def forward(self, rows: torch.Tensor, hide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``rows (B, P, G_max)``, ``hide (B, P)`` bool -> recon ``(B, P, G_max)``, site logits ``(B, S)``."""
        enc = self.enc
        state = enc.embed(rows)
        tok = state.tokens[:, 1:]
        masked = (self.mask_token + enc.pathway_pos).expand_as(tok)
        state = state.with_patch_tokens(torch.where(hide[..., None], masked, tok))
        state = enc.run_layers(state)
        h = enc.norm(state.tokens)
        recon = torch.einsum("bpd,pjd->bpj", h[:, 1:], self.decoder(enc.gene_index))
        return recon, self.site(h[:, 0])


def pretrain_rna_backbone(data: PretrainSet, gene_index: Sequence[Sequence[int]], *, encoder_params: dict | None = None, epochs: int = 20,
                          batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 1e-4, mask_ratio: float = 0.3, site_weight: float = 0.5,
                          val_fraction: float = 0.1, seed: int = 0) -> tuple[nn.Module, list[dict]]:
    """Train a ``pathway_transformer`` on ``data``; returns (frozen encoder, per-epoch history).

    History rows: ``epoch, train_loss, val_recon_mse, val_recon_mse_predict_mean, val_site_acc,
    site_chance`` on a seeded ``val_fraction`` of the pretraining patients (``val_recon_mse_predict_mean``
    is the MSE of predicting 0, the z-score mean, on the same hidden entries: the bar to beat;
    ``site_chance`` the majority-site share).
    """
    from modaltune.encoders.slide import create_slide_encoder

    if not 0 < mask_ratio < 1:
        raise ConfigError(f"mask_ratio must be in (0, 1), got {mask_ratio}", where="mask_ratio")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    enc = create_slide_encoder("pathway_transformer", gene_index=[list(map(int, g)) for g in gene_index], n_genes=data.x.shape[1],
                               **dict(encoder_params or {}))
    model = _Pretrainer(enc, len(data.cohorts))
    rows = enc.rows(data.x)  # (N, P, G_max)
    valid = (enc.gene_index < enc.n_genes)[None]  # (1, P, G_max) real gene slots
    site = torch.as_tensor(data.site, dtype=torch.long)
    perm = rng.permutation(len(site))
    n_val = max(1, int(round(val_fraction * len(site))))
    va, tr = perm[:n_val], perm[n_val:]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    P = enc.num_pathways

    def step_loss(idx: np.ndarray, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = rows[idx]
        hide = torch.rand(len(idx), P, generator=g) < mask_ratio
        recon, logits = model(r, hide)
        m = hide[..., None] & valid
        mse = ((recon - r) ** 2 * m).sum() / m.sum().clamp(min=1)
        zero = (r ** 2 * m).sum() / m.sum().clamp(min=1)  # MSE of predicting the mean (0): the bar to beat
        return mse + site_weight * F.cross_entropy(logits, site[idx]), (mse, zero), logits

    hist = []
    for ep in range(epochs):
        model.train()
        order = rng.permutation(tr)
        tot, nb = 0.0, 0
        for b in range(0, len(order), batch_size):
            loss, _, _ = step_loss(order[b : b + batch_size], gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot, nb = tot + float(loss.detach()), nb + 1
        model.eval()
        with torch.no_grad():
            _, (mse, zero), logits = step_loss(va, torch.Generator().manual_seed(seed + 1))  # same hidden pathways every epoch
            acc = float((logits.argmax(1) == site[va]).float().mean())
        hist.append({"epoch": ep, "train_loss": tot / max(nb, 1), "val_recon_mse": float(mse), "val_recon_mse_predict_mean": float(zero),
                     "val_site_acc": acc, "site_chance": float(np.bincount(data.site[va]).max() / len(va))})
    return freeze(enc), hist


def save_backbone(enc: nn.Module, folder: str | Path, *, genes: Sequence[str], pathway_names: Sequence[str], info: dict) -> Path:
    """Write ``backbone.pt`` (state dict, no pickle of objects) and ``backbone.json`` (constructor
    arguments + ``genes`` + ``pathway_names`` + ``info``); returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    idx = enc.gene_index.numpy()
    gene_index = [[int(v) for v in row if v < enc.n_genes] for row in idx]
    cfg = {"gene_index": gene_index, "n_genes": int(enc.n_genes), "embed_dim": int(enc.embed_dim), "depth": int(enc.num_layers),
           "num_heads": int(enc.blocks[0].attn.num_heads) if enc.num_layers else 4, "global_pool": bool(enc.global_pool)}
    torch.save(enc.state_dict(), out / "backbone.pt")
    (out / "backbone.json").write_text(json.dumps({"encoder": cfg, "genes": list(genes), "pathway_names": list(pathway_names), **info}, indent=1))
    return out


def load_backbone(folder: str | Path) -> tuple[nn.Module, dict]:
    """``(frozen encoder, backbone.json content)`` from :func:`save_backbone`'s folder."""
    from modaltune.encoders.slide import create_slide_encoder

    folder = Path(folder)
    meta_path = folder / "backbone.json"
    if not meta_path.is_file():
        raise InputError("no backbone.json in the backbone folder", where=folder, fix="pretrain first (benchmarks/modaltune_real_rna/run.py pretrain)")
    meta = json.loads(meta_path.read_text())
    enc = create_slide_encoder("pathway_transformer", checkpoint=folder / "backbone.pt", **meta["encoder"])
    return freeze(enc), meta
