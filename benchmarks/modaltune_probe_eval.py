"""The paper's evaluation protocol for ModalTune: train, freeze, linear-probe the task embeddings.

For each fold: fit the ``modaltune`` method on the fold's training patients, embed train + eval
patients with the frozen model, fit logistic (liblinear, C = 1) / ridge-Cox (penalizer 0.1) probes
on the training embeddings and score them on the evaluation patients, over all patients and per
site (pan-cancer). Optionally an out-of-distribution cohort (an unseen site with the same task
names and modality names) is embedded by each fold's model and probed on its own split.

Usage (synthetic example, the one recorded in benchmarks/RESULTS.md)::

    nice python benchmarks/modaltune_probe_eval.py --simulate demo --folds 0 1 2 --epochs 8 \
        --params '{"pathways": "builtin", "kl": 1.0, "supervised": 0.0}' --ood-simulate BLCA \
        --out benchmarks/modaltune_results/probe_eval_sim.csv

or ``--cohort DIR --split NAME`` for an imported cohort.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

SMALL = {"gene_mixer": {"token_dim": 32, "n_blocks": 2, "channel_hidden": 32}, "backbone_params": {"embed_dim": 64, "depth": 3, "num_heads": 4}, "out_dim": 64}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cohort")
    ap.add_argument("--split", default="kfold5")
    ap.add_argument("--simulate", help="simulate_cohort preset instead of --cohort")
    ap.add_argument("--folds", type=int, nargs="*", default=None)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--params", default="{}")
    ap.add_argument("--modalities", nargs="*", default=["slide", "rna"])
    ap.add_argument("--ood-simulate", help="site code of a simulated OOD cohort (same generator, unseen site)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import tempfile

    from modaltune.data.cohort import Cohort
    from modaltune.data.simulate import simulate_cohort
    from modaltune.modaltune.probes import ood_probe_scores, probe_scores
    from modaltune.training.trainer import fit

    work = Path(tempfile.mkdtemp(prefix="mt_probe_"))  # simulated cohorts live outside the repository
    if args.simulate:
        cohort = simulate_cohort(work / f"sim_{args.simulate}", preset=args.simulate, seed=0)
    else:
        cohort = Cohort.load(args.cohort)
    ood = simulate_cohort(work / "sim_ood", preset=args.simulate or "demo", seed=11, sites=(args.ood_simulate,), n_patients=150) if args.ood_simulate else None
    splits = cohort.split(args.split)
    params = {**SMALL, **json.loads(args.params)} if args.simulate else json.loads(args.params)
    trainer = {"max_epochs": args.epochs, "optimizer": "adamw", "lr": 5e-4, "weight_decay": 5e-4, "scheduler": "cosine", "warmup_epochs": 1,
               "batch_size": 4, "max_patches": 256, "logger": "none", "checkpoint": False}
    rows = []
    for fold in splits.folds:
        if args.folds is not None and fold.index not in args.folds:
            continue
        t0 = time.time()
        f = fit(cohort, fold, "modaltune", params=params, modalities=args.modalities, trainer=trainer, progress=False)
        ev = list(fold.test) or list(fold.val)
        s = probe_scores(f, cohort, fold.train, ev).assign(fold=fold.index, cohort=cohort.name, kind="in-distribution")
        rows.append(s)
        if ood is not None:
            of = ood.split("kfold5").folds[0]
            rows.append(ood_probe_scores(f, ood, of.train, list(of.test) or list(of.val)).assign(fold=fold.index, cohort=ood.name, kind="OOD"))
        print(f"fold {fold.index}: {time.time() - t0:.0f} s", flush=True)
    out = pd.concat(rows, ignore_index=True)
    out.to_csv(args.out, index=False)
    write_summary(out, Path(args.out).with_suffix(".md"), synthetic=bool(args.simulate))


def write_summary(out: pd.DataFrame, path: Path, synthetic: bool) -> None:
    """Mean +/- std over folds per (kind, cohort, task, site, metric) as a markdown table."""
    summ = out.groupby(["kind", "cohort", "task", "site", "metric"])["value"].agg(["mean", "std", "count"]).reset_index()
    lines = ["| kind | cohort | task | site | metric | mean +/- std over folds | folds |", "|---|---|---|---|---|---|---|"]
    for r in summ.itertuples(index=False):
        lines.append(f"| {r.kind} | {r.cohort} | {r.task} | {r.site} | {r.metric} | {r.mean:.3f} +/- {r.std:.3f} | {r.count} |")
    head = "SYNTHETIC data (simulate_cohort)\n\n" if synthetic else ""
    path.write_text(head + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
