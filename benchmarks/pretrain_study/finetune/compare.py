"""Paired bootstrap of the fine-tuning-initialisation benchmark (issue 16): fine-tuned from MIRROR vs fine-tuned
from the untrained encoders (from scratch) and vs the frozen MIRROR encoders, on the pooled out-of-fold
predictions of ``modaltune benchmark benchmarks/pretrain_study/finetune/benchmark_gbmlgg.yaml``.

Balanced accuracy (subtype, argmax) over the pooled held-out patients with a subtype label; Harrell's C
(survival, the engine's risk) with pairs formed within a fold. ``evaluation.bootstrap.paired_bootstrap``,
resampling patients jointly for both methods.

    python benchmarks/pretrain_study/finetune/compare.py --run /work/runs/h21a/finetune/bench --out benchmarks/pretrain_study/finetune
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from run_study import _harrell  # (C-index with pairs within a fold, checked there against scikit-survival)

FT, SCRATCH, FROZEN = "mirror fine-tuned (freeze false)", "untrained init fine-tuned (from scratch)", "mirror frozen (linear heads)"


def _bacc(df: pd.DataFrame) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(df["label"].astype(int), df["pred"].astype(int)))


def main() -> None:
    from modaltune.evaluation.bootstrap import paired_bootstrap

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-boot", type=int, default=1000)
    a = ap.parse_args()
    p = pd.read_parquet(a.run / "predictions.parquet")
    rows = []
    for task, fn in (("subtype", _bacc), ("survival", _harrell)):
        d = p[(p["task"] == task) & p["labelled"].astype(bool)]
        for base in (SCRATCH, FROZEN):
            x = d[d["method"] == FT].sort_values(["fold", "patient_id"]).reset_index(drop=True)
            y = d[d["method"] == base].sort_values(["fold", "patient_id"]).reset_index(drop=True)
            assert x["patient_id"].tolist() == y["patient_id"].tolist()
            r = paired_bootstrap(x, y, fn, n=a.n_boot, seed=0)
            rows.append({"method": FT, "baseline": base, "task": task, "metric": "balanced_accuracy" if task == "subtype" else "c_index",
                         "n_patients": len(x), "value": fn(x), "baseline_value": fn(y), "delta": r.delta, "ci_low": r.ci[0], "ci_high": r.ci[1],
                         "p": r.p_value, "n_boot": a.n_boot})
    out = pd.DataFrame(rows)
    out.to_csv(a.out / "paired_bootstrap.csv", index=False)
    print(out.to_string())


if __name__ == "__main__":
    main()
