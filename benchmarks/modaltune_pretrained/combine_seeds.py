"""Combine the seed-0 run and the seeds-1,2 extension of the pretrained-backbone comparison.

Reads two ``results.csv`` files of ``modaltune benchmark`` (long format: method, cohort, task,
metric, fold, seed, value) and writes one JSON with, for ModalTune and late fusion:

* per seed: the mean over the 5 folds of each metric (balanced accuracy, macro AUC, C-index);
* over seeds: mean and std (ddof 1) of those 3 per-seed means;
* paired over the fold x seed units (15 = 5 folds x 3 seeds): mean of ModalTune - late fusion and
  the number of units where ModalTune is better (strictly greater).

Usage (from the repository root):
    python benchmarks/modaltune_pretrained/combine_seeds.py \
        benchmarks/modaltune_pretrained/bench_seed0/results.csv \
        benchmarks/modaltune_pretrained/bench_seeds12/results.csv \
        --out benchmarks/modaltune_pretrained/bench_seeds12/three_seeds.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

MT = "modaltune (pretrained frozen backbone)"
LF = "late_fusion (abmil+snn)"
METRICS = ("balanced_accuracy", "macro_auc", "c_index")


def combine(frames: list[pd.DataFrame]) -> dict:
    """Per-seed means, seed mean ± std (ddof 1) and paired differences; see the module docstring."""
    df = pd.concat(frames, ignore_index=True)
    df = df[df["method"].isin([MT, LF]) & df["metric"].isin(METRICS)]
    # one value per (method, metric, fold, seed); a duplicate would mean the two files overlap
    keys = ["method", "metric", "fold", "seed"]
    if df.duplicated(keys).any():
        raise ValueError("the results files overlap: a (method, metric, fold, seed) occurs twice")
    out: dict = {"seeds": sorted(int(s) for s in df["seed"].unique()), "methods": {}, "paired_mt_minus_lf": {}}
    for method in (MT, LF):
        sub = df[df["method"] == method]
        per_seed = sub.groupby(["metric", "seed"])["value"].mean()
        out["methods"][method] = {
            m: {
                "per_seed": {int(s): float(per_seed[(m, s)]) for s in out["seeds"]},
                "mean_over_seeds": float(per_seed[m].mean()),
                "std_over_seeds_ddof1": float(per_seed[m].std(ddof=1)),
                "n_units": int((sub["metric"] == m).sum()),
            }
            for m in METRICS
        }
    wide = df.pivot_table(index=["metric", "fold", "seed"], columns="method", values="value")
    for m in METRICS:
        d = (wide.loc[m, MT] - wide.loc[m, LF]).dropna()
        out["paired_mt_minus_lf"][m] = {
            "mean": float(d.mean()),
            "n_better": int((d > 0).sum()),
            "n_units": int(d.size),
            "min": float(d.min()),
            "max": float(d.max()),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path, help="results.csv files to combine")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = ap.parse_args()
    res = combine([pd.read_csv(p) for p in args.results])
    res["inputs"] = [str(p) for p in args.results]
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
