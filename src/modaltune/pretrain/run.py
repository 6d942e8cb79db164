"""``pretrain(cfg, out)``: fit the preprocessor and the encoders on one fold's training patients,
save them (no pickle), and score retrieval on the fold's held-out patients.

The output folder::

    DIR/pretrain.json            spec (rebuilds the module), modalities, train / evaluated patient ids, format
    DIR/encoders.safetensors     state dict of :class:`~modaltune.encoders.pretrained_multimodal.MultimodalPretrainModel`
    DIR/preprocessor.json|.safetensors   the CohortPreprocessor fitted on the training patients
    DIR/config.yaml              the resolved config
    DIR/history.csv              loss (and its parts) per epoch
    DIR/metrics.json             retrieval top-1 / top-5 accuracy per target modality on held-out patients

Leakage: only ``fold.train`` patients reach the preprocessor's fit and the optimiser; held-out
patients are embedded (eval mode, no gradient) after training, for the retrieval metrics only.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from modaltune.encoders.pretrained_multimodal import (
    FORMAT,
    MultimodalPretrainModel,
    load_pretrained,
    modality_input,
)
from modaltune.errors import InputError
from modaltune.evaluation.retrieval import retrieval_scores, topk_accuracy
from modaltune.pretrain.config import PretrainConfig

__all__ = ["FORMAT", "PretrainResult", "fold_indices", "load_pretrained", "pretrain", "pretrain_folds", "retrieval_metrics"]

log = logging.getLogger("modaltune.pretrain")

_KINDS = ("slide", "omics", "clinical")


@dataclass
class PretrainResult:
    """The trained model (eval mode), its fitted preprocessor, patient ids and metrics."""

    model: MultimodalPretrainModel
    preprocessor: Any
    train_ids: list[str]
    eval_ids: list[str]
    history: pd.DataFrame
    metrics: dict


def _spec(cfg: PretrainConfig, cohort: Any, info: Any) -> dict:
    mods = []
    for name in cfg.modalities:
        kind = cohort.manifest.modality(name).kind
        if kind not in _KINDS:
            raise InputError(f"modality '{name}' is of kind '{kind}'; pretraining encodes slide, omics and clinical modalities",
                             where="modalities", fix=f"remove '{name}' from modalities")
        dim = {"slide": info.slide_dim, "omics": info.omics_dims.get(name), "clinical": info.clinical_dim}[kind]
        if not dim:
            raise InputError(f"modality '{name}' has no input features", where="modalities", fix="check the cohort's tables")
        mods.append({"name": name, "kind": kind, "in_dim": int(dim)})
    return {"objective": cfg.objective, "negative_sampling": cfg.negative_sampling, "embed_dim": cfg.encoder.embed_dim,
            "hidden": cfg.encoder.hidden, "slide": cfg.encoder.slide, "modalities": mods, "mirror": cfg.mirror.model_dump()}


def _fold(cfg: PretrainConfig, cohort: Any):
    from modaltune.training.sources import make_splits

    splits, _ = make_splits(cohort, cfg.split, [t.name for t in cohort.tasks])
    for f in splits.folds:
        if f.index == cfg.fold:
            return f
    raise InputError(f"fold {cfg.fold} is not in the split (folds {[f.index for f in splits.folds]})", where="fold", fix="use an existing fold index")


def _loader(cohort, ids, prep, cfg: PretrainConfig, training: bool):
    from torch.utils.data import DataLoader

    from modaltune.data.dataset import PatientDataset, collate_patients

    ds = PatientDataset(cohort, ids, prep, training=training, max_patches=cfg.encoder.max_patches, seed=cfg.trainer.seed)
    g = torch.Generator().manual_seed(cfg.trainer.seed)
    # drop_last in training: a final batch of one patient has no negatives
    return ds, DataLoader(ds, batch_size=cfg.trainer.batch_size, shuffle=training, generator=g, collate_fn=collate_patients,
                          drop_last=training and len(ds) > cfg.trainer.batch_size, num_workers=0)


@torch.no_grad()
def _embed_all(model: MultimodalPretrainModel, loader) -> tuple[list[str], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    ids, embs, pres = [], {}, {}
    for batch in loader:
        ids += batch["patient_id"]
        e = model.modality_embeddings(batch)
        for name, kind, _ in model.mods:
            embs.setdefault(name, []).append(e[name])
            pres.setdefault(name, []).append(modality_input(batch, name, kind)[1])
    return ids, {k: torch.cat(v) for k, v in embs.items()}, {k: torch.cat(v) for k, v in pres.items()}


def retrieval_metrics(model: MultimodalPretrainModel, loader, ks: tuple[int, ...] = (1, 5)) -> dict:
    """Top-k retrieval of each modality from the others, over the loader's patients that have every modality."""
    _, embs, pres = _embed_all(model, loader)
    names = list(embs)
    full = torch.stack([pres[n] for n in names]).all(dim=0)
    n = int(full.sum())
    how = "mip" if model.spec["objective"] == "symile" else "sum_dot"
    out: dict[str, Any] = {"n_patients": n, "score": how, "chance": {f"top{k}": min(k / n, 1.0) if n else None for k in ks}, "targets": {}}
    if n < 2:
        out["note"] = "fewer than 2 held-out patients have every modality: no retrieval metric"
        return out
    for target in names:
        query = [embs[q][full] for q in names if q != target]
        s = retrieval_scores(query, embs[target][full], how)
        out["targets"][target] = {f"top{k}": topk_accuracy(s, k) for k in ks}
    for k in ks:
        out[f"mean_top{k}"] = float(np.mean([v[f"top{k}"] for v in out["targets"].values()]))
    return out


def pretrain(cfg: PretrainConfig, out: str | Path | None = None, *, cohort: Any = None) -> PretrainResult:
    """Pretrain on ``cfg.fold``'s training patients; write ``out`` when given.

    Args:
        cfg: the validated :class:`PretrainConfig`.
        out: output folder (see the module docstring), or None to keep everything in memory.
        cohort: an already loaded cohort (tests); default ``Cohort.load(cfg.cohort)``.
    """
    from modaltune.data.cohort import Cohort
    from modaltune.data.dataset import CohortPreprocessor
    from modaltune.training.callbacks import seed_all

    cohort = cohort if cohort is not None else Cohort.load(cfg.cohort)
    for name in cfg.modalities:
        cohort.manifest.modality(name)  # one-line InputError naming the cohort's modalities
    fold = _fold(cfg, cohort)
    train_ids = list(fold.train)
    eval_ids = list(fold.test or fold.val)
    seed_all(cfg.trainer.seed)
    prep = CohortPreprocessor(cohort, modalities=list(cfg.modalities), tasks=[], omics_scaling=cfg.omics_scaling).fit(train_ids)
    spec = _spec(cfg, cohort, prep.info)
    model = MultimodalPretrainModel(spec)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.trainer.lr, weight_decay=cfg.trainer.weight_decay)
    ds, loader = _loader(cohort, train_ids, prep, cfg, training=True)
    gen = torch.Generator().manual_seed(cfg.trainer.seed + 1)  # negatives' permutations and MIRROR's masks
    rows = []
    for epoch in range(cfg.trainer.epochs):
        ds.set_epoch(epoch)
        model.train()
        t0, sums, nb = time.perf_counter(), {}, 0
        for batch in loader:
            loss, parts = model(batch, generator=gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            nb += 1
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
        rows.append({"epoch": epoch, **{k: v / max(nb, 1) for k, v in sums.items()}, "seconds": time.perf_counter() - t0})
    model.eval()
    history = pd.DataFrame(rows)
    metrics: dict[str, Any] = {"objective": cfg.objective, "fold": cfg.fold, "n_train": len(train_ids), "n_eval": len(eval_ids)}
    if eval_ids:
        _, ev_loader = _loader(cohort, eval_ids, prep, cfg, training=False)
        metrics["retrieval"] = retrieval_metrics(model, ev_loader)
    res = PretrainResult(model, prep, train_ids, eval_ids, history, metrics)
    if out is not None:
        _save(res, cfg, Path(out))
    return res


def _save(res: PretrainResult, cfg: PretrainConfig, out: Path) -> None:
    from safetensors.torch import save

    from modaltune.config import dump_config
    from modaltune.fileio import atomic_write_bytes, atomic_write_text
    from modaltune.training._prep import detach
    from modaltune.training._state import save_state

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in res.model.state_dict().items()}
    atomic_write_bytes(out / "encoders.safetensors", save(state, metadata={"format": "pt"}))
    save_state(out, "preprocessor", detach(res.preprocessor))
    dump_config(cfg, out / "config.yaml")
    atomic_write_text(out / "history.csv", res.history.to_csv(index=False))
    atomic_write_text(out / "metrics.json", json.dumps(res.metrics, indent=2))
    meta = {"format": FORMAT, "spec": res.model.spec, "modalities": [m["name"] for m in res.model.spec["modalities"]],
            "train_ids": res.train_ids, "eval_ids": res.eval_ids, "cohort": str(cfg.cohort), "fold": cfg.fold}
    atomic_write_text(out / "pretrain.json", json.dumps(meta, indent=2))  # last: its presence means the folder is complete


def fold_indices(cfg: PretrainConfig, folds: str, cohort: Any) -> list[int]:
    """``--folds``: ``all`` (every fold of ``cfg.split``) or a comma list such as ``0,2``."""
    from modaltune.training.sources import make_splits

    splits, _ = make_splits(cohort, cfg.split, [t.name for t in cohort.tasks])
    have = [f.index for f in splits.folds]
    if folds.strip() == "all":
        return have
    try:
        want = [int(x) for x in folds.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--folds '{folds}' is neither 'all' nor a comma list of fold indices", where="--folds", fix="e.g. --folds all or --folds 0,1") from None
    bad = [k for k in want if k not in have]
    if bad or not want:
        raise InputError(f"--folds '{folds}': fold {bad[0] if bad else '(none)'} is not in the split (folds {have})", where="--folds", fix=f"use indices among {have}")
    return want


def pretrain_folds(cfg: PretrainConfig, out: str | Path, folds: str = "all", *, cohort: Any = None) -> dict[int, PretrainResult | None]:
    """Pretrain each fold of ``folds`` into ``out/fold<k>/`` (``cfg`` otherwise unchanged).

    Resumable: a fold whose folder already holds ``pretrain.json`` (written last) is skipped
    (its value in the returned dict is None). Benchmarks read them with ``checkpoint: out/fold{fold}``.
    """
    from modaltune.data.cohort import Cohort

    cohort = cohort if cohort is not None else Cohort.load(cfg.cohort)
    results: dict[int, PretrainResult | None] = {}
    for k in fold_indices(cfg, folds, cohort):
        dest = Path(out) / f"fold{k}"
        if (dest / "pretrain.json").is_file():
            log.info("fold %d: %s is complete, skipped", k, dest)
            results[k] = None
            continue
        results[k] = pretrain(cfg.model_copy(update={"fold": k}), dest, cohort=cohort)
    return results
