"""Pretrain a slide encoder on a cohort, to serve as the *frozen* backbone of ModalTune elsewhere.

ModalTune's premise is a pretrained slide foundation model. Where none exists (simulated patch
features, a new patch encoder), :func:`pretrain_slide_encoder` trains any registered slide encoder
with the layer-group API (``small_transformer``, ``gigapath``, ``titan``) on a cohort that must be
**disjoint** from the one it will be evaluated on, and :meth:`PretrainResult.save` writes a state
dict that ``create_slide_encoder(name, checkpoint=path, **encoder_params)`` (and therefore the
``modaltune`` / ``slide_fm`` methods' ``checkpoint`` parameter) loads.

Objectives:

- ``regression``: predict per-patient numeric slide-derived targets (a DataFrame indexed by
  patient id, e.g. a simulated cohort's ground-truth slide factors ``z_slide_1, z_slide_2,
  z_shared``) from the pooled slide embedding through a linear head; targets standardised on the
  training patients; mean squared error.
- ``contrastive``: self-supervised; two random patch subsets of the same patient's bag are two
  views; InfoNCE over the batch (temperature ``tau``) on a 2-layer projection of the embedding.

Validation: a seeded ``val_fraction`` of patients is held out; the history records the loss on
them per epoch and, for ``regression``, the R^2 of each target (the probe quality of the
pretrained embedding).

Example (the recorded simulated experiment, ``benchmarks/modaltune_pretrained_sim.py``)::

    pre = simulate_cohort(dir, preset="demo", seed=100, world_seed=0, n_patients=600)
    res = pretrain_slide_encoder(pre, targets=pre.ground_truth[["z_slide_1", "z_slide_2", "z_shared"]],
                                 encoder_params={"embed_dim": 64, "depth": 3, "num_heads": 4})
    res.save("runs/x/slide_encoder.pt")
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from modaltune.errors import ConfigError, InputError

__all__ = ["PretrainResult", "pretrain_slide_encoder"]


@dataclass
class PretrainResult:
    """A pretrained encoder and how it was made.

    Attributes:
        encoder: the trained slide encoder (eval mode, CPU).
        history: one row per epoch: ``epoch, train_loss, val_loss`` (+ ``val_r2_<target>``).
        config: every setting of the run (encoder name/params, objective, data sizes, seed, ...).
    """

    encoder: nn.Module
    history: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the encoder's state dict to ``path`` and ``<path>.json`` (config + history)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.encoder.state_dict(), path)
        meta = {"config": self.config, "history": self.history.to_dict("records")}
        Path(str(path) + ".json").write_text(json.dumps(meta, indent=2, default=str))
        return path


def _bags(cohort: Any, ids: list[str], max_patches: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every patient's merged bag (all slides), capped at ``4 * max_patches`` rows, as float32."""
    from modaltune.data.bags import load_patient_bag

    out = {}
    for pid in ids:
        paths = [cohort.resolve_path(p) for p in cohort.slides.loc[cohort.slides["patient_id"] == pid, "path"]]
        paths = [p for p in paths if p.exists()]
        if not paths:
            continue
        bag = load_patient_bag(paths, max_patches=4 * max_patches, training=False, seed=0)
        coords = bag.coords if bag.coords is not None else np.zeros((bag.n_patches, 2), np.int64)
        out[pid] = (torch.from_numpy(np.asarray(bag.features, np.float32)), torch.from_numpy(np.asarray(coords, np.int64)))
    return out


def _collate(views: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = max(v[0].shape[0] for v in views)
    d = views[0][0].shape[1]
    x = torch.zeros(len(views), n, d)
    c = torch.zeros(len(views), n, 2, dtype=torch.long)
    valid = torch.zeros(len(views), n, dtype=torch.bool)
    for i, (f, co) in enumerate(views):
        x[i, : len(f)], c[i, : len(f)], valid[i, : len(f)] = f, co, True
    return x, c, valid


def _view(bag: tuple[torch.Tensor, torch.Tensor], k: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    f, c = bag
    if len(f) > k:
        idx = torch.randperm(len(f), generator=g)[:k]
        return f[idx], c[idx]
    return f, c


def pretrain_slide_encoder(
    cohort: Any,
    patient_ids: Sequence[str] | None = None,
    *,
    objective: str = "regression",
    targets: pd.DataFrame | None = None,
    encoder: str = "small_transformer",
    encoder_params: dict[str, Any] | None = None,
    epochs: int = 20,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 16,
    max_patches: int = 256,
    val_fraction: float = 0.1,
    tau: float = 0.1,
    seed: int = 0,
    progress: bool = False,
) -> PretrainResult:
    """Pretrain ``encoder`` on ``cohort``'s slide bags (see the module docstring).

    Args:
        cohort: a cohort with a slide modality (use one disjoint from any evaluated cohort).
        patient_ids: patients to use (default: every patient with a slide; and, for
            ``regression``, a finite value of every target).
        objective: ``regression`` or ``contrastive``.
        targets: ``regression`` only: (patients x K) numeric DataFrame indexed by patient id.
        encoder, encoder_params: registry name and constructor kwargs (``in_dim`` defaults to the
            cohort's patch-feature width). Foundation models start from ``random_init``.
        epochs, lr, weight_decay, batch_size: AdamW with a cosine schedule, per-step batches.
        max_patches: patches per view (a random subset each time: bags of N patches, N > cap).
        val_fraction: seeded fraction of patients held out for the history.
        tau: InfoNCE temperature (``contrastive``).
        seed: seeds the split, the initialisation and the patch sampling.

    Returns:
        :class:`PretrainResult`; ``result.save(path)`` writes the checkpoint.

    Raises:
        ConfigError: unknown objective / targets missing for ``regression``.
        InputError: fewer than 4 usable patients, or non-numeric targets.
    """
    from modaltune.encoders.slide import create_slide_encoder

    if objective not in ("regression", "contrastive"):
        raise ConfigError(f"unknown pretraining objective '{objective}'", where="pretrain_slide_encoder(objective=...)", fix="use 'regression' or 'contrastive'")
    if objective == "regression" and targets is None:
        raise ConfigError("the regression objective needs targets (patients x K numeric DataFrame)", where="pretrain_slide_encoder(targets=...)",
                          fix="pass e.g. cohort.ground_truth[['z_slide_1', 'z_slide_2', 'z_shared']] or use objective='contrastive'")
    ids = [str(p) for p in (patient_ids if patient_ids is not None else cohort.patients.index)]
    if targets is not None:
        try:
            targets = targets.astype(float)
        except (TypeError, ValueError) as exc:
            raise InputError(f"pretraining targets must be numeric ({exc})", where="pretrain_slide_encoder(targets=...)", fix="pass numeric columns") from exc
        finite = targets.index[np.isfinite(targets.to_numpy()).all(1)].astype(str)
        ids = [p for p in ids if p in set(finite)]
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    bags = _bags(cohort, ids, max_patches)
    ids = [p for p in ids if p in bags]
    if len(ids) < 4:
        raise InputError(f"only {len(ids)} patient(s) with a slide bag{' and finite targets' if targets is not None else ''}", where=getattr(cohort, "root", None) or "cohort",
                         fix="pretrain on a cohort with slides for at least 4 patients")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ids))
    n_val = max(1, int(round(val_fraction * len(ids)))) if val_fraction > 0 else 0
    val_ids = [ids[i] for i in perm[:n_val]]
    train_ids = [ids[i] for i in perm[n_val:]]
    in_dim = int(next(iter(bags.values()))[0].shape[1])
    eparams = {"in_dim": in_dim, **dict(encoder_params or {})}
    random_init = encoder in ("gigapath", "titan")
    enc = create_slide_encoder(encoder, random_init=random_init, **eparams) if random_init else create_slide_encoder(encoder, **eparams)
    d = int(enc.embed_dim)
    if objective == "regression":
        Y = torch.tensor(targets.loc[ids].to_numpy(float), dtype=torch.float32)
        ytr = torch.tensor(targets.loc[train_ids].to_numpy(float), dtype=torch.float32)
        mu, sd = ytr.mean(0), ytr.std(0).clamp_min(1e-6)
        ystd = {p: (Y[i] - mu) / sd for i, p in enumerate(ids)}
        head: nn.Module = nn.Linear(d, Y.shape[1])
    else:
        head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(train_ids) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))))

    def loss_of(batch_ids: list[str], gen: torch.Generator) -> torch.Tensor:
        if objective == "regression":
            x, c, valid = _collate([_view(bags[p], max_patches, gen) for p in batch_ids])
            pred = head(enc(x, c, mask=None if bool(valid.all()) else valid))
            return F.mse_loss(pred, torch.stack([ystd[p] for p in batch_ids]))
        views = [_view(bags[p], max_patches, gen) for p in batch_ids] + [_view(bags[p], max_patches, gen) for p in batch_ids]
        x, c, valid = _collate(views)
        z = F.normalize(head(enc(x, c, mask=None if bool(valid.all()) else valid)), dim=1)
        n = len(batch_ids)
        sim = z @ z.T / tau
        sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
        return F.cross_entropy(sim, target)

    rows = []
    for epoch in range(epochs):
        enc.train()
        head.train()
        order = torch.randperm(len(train_ids), generator=g).tolist()
        tot, nb = 0.0, 0
        for i in range(0, len(order), batch_size):
            b = [train_ids[j] for j in order[i : i + batch_size]]
            if objective == "contrastive" and len(b) < 2:
                continue
            loss = loss_of(b, g)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(b)
            nb += len(b)
        row: dict[str, Any] = {"epoch": epoch, "train_loss": tot / max(nb, 1)}
        if val_ids:
            enc.eval()
            head.eval()
            gv = torch.Generator().manual_seed(seed + 1)  # the same validation views every epoch
            with torch.no_grad():
                if objective == "regression":
                    x, c, valid = _collate([_view(bags[p], max_patches, gv) for p in val_ids])
                    pred = head(enc(x, c, mask=None if bool(valid.all()) else valid))
                    yv = torch.stack([ystd[p] for p in val_ids])
                    row["val_loss"] = float(F.mse_loss(pred, yv))
                    ss = ((yv - yv.mean(0)) ** 2).sum(0).clamp_min(1e-12)
                    r2 = 1 - ((pred - yv) ** 2).sum(0) / ss
                    for k, name in enumerate(targets.columns):
                        row[f"val_r2_{name}"] = float(r2[k])
                elif len(val_ids) >= 2:
                    row["val_loss"] = float(loss_of(val_ids, gv))
        rows.append(row)
        if progress:
            print(f"pretrain epoch {epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch"), flush=True)
    enc.eval()
    cfg = {
        "encoder": encoder, "encoder_params": eparams, "objective": objective, "targets": list(targets.columns) if targets is not None else None,
        "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size, "max_patches": max_patches, "tau": tau, "seed": seed,
        "n_train": len(train_ids), "n_val": len(val_ids), "cohort": getattr(cohort, "name", None), "seconds": round(time.time() - t0, 1),
    }
    return PretrainResult(enc.cpu(), pd.DataFrame(rows), cfg)
