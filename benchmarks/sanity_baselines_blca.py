"""Sanity check of the baseline recipes on real data: TCGA-BLCA overall survival, PORPOISE 5 folds.

Not the issue-4 TCGA benchmark (that one follows the MCAT protocol through benchmark configs);
this only shows the recipes run end to end on real omics + clinical tables and land in a sensible
range. Training: 20 epochs, batch 32, Adam lr 5e-4, wd 1e-4 (not MCAT's batch-1 protocol).
C-index on each validation fold (scikit-survival Harrell C), mean +/- std (ddof=0).

    .venv/bin/python benchmarks/sanity_baselines_blca.py      # needs ../shared (about 1-2 min on 1 CPU thread)
"""
from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


def main() -> None:
    from sksurv.metrics import concordance_index_censored

    from modaltune.data.sources.porpoise import import_porpoise
    from modaltune.training.trainer import fit, predict

    torch.set_num_threads(1)
    c = import_porpoise("blca")
    ss = c.splits["porpoise_5fold"]
    omics = [m.name for m in c.modalities if m.kind == "omics"]
    clin = [m.name for m in c.modalities if m.kind == "clinical"]
    trainer = {"max_epochs": 20, "progress_bar": False, "logger": "none", "checkpoint": False, "batch_size": 32, "lr": 5e-4, "weight_decay": 1e-4}
    runs = [
        ("coxnet", {"use_pca": True, "n_components": 8}, omics + clin),
        ("coxnet", {"penalty": "ridge", "use_pca": True, "n_components": 8}, omics + clin),
        ("snn", {}, omics),
        ("late_fusion", {}, omics + clin),
        ("clinical_mlp", {}, clin),
    ]
    print("| method | params | modalities | C per fold | mean +/- std | time |")
    print("|---|---|---|---|---|---|")
    for name, params, mods in runs:
        cs, t0 = [], time.time()
        for fold in ss.folds:
            f = fit(c, fold, name, params=params, modalities=mods, tasks=["survival"], trainer=trainer, progress=False)
            p = predict(f, c, list(fold.val))
            p = p[p.task == "survival"].dropna(subset=["time"])
            cs.append(concordance_index_censored(p.event.astype(bool).to_numpy(), p.time.to_numpy(), p.risk.to_numpy())[0])
        print(f"| {name} | {params} | {'+'.join(mods)} | {np.round(cs, 3).tolist()} | {np.mean(cs):.3f} +/- {np.std(cs):.3f} | {time.time() - t0:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
