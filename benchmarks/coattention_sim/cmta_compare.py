"""CMTA rows for the issue-14 simulated regimes: per-fold C, pooled C and the paired bootstrap against late fusion.

CMTA ran after the committed runs (same cohort, folds, trainer and training seeds; ``<regime>_cmta.yaml``),
so its predictions are paired here, seed by seed, with late fusion's committed out-of-fold predictions
(``benchmarks/coattention_sim/<regime>/predictions.parquet``): same patients, same resampling as the
benchmark's own comparison (1000 resamples, bootstrap seed 0, Harrell's C).

    python benchmarks/coattention_sim/cmta_compare.py interaction=benchmarks/coattention_sim/cmta/interaction \\
        additive=benchmarks/coattention_sim/cmta/additive --out benchmarks/coattention_sim/cmta/cmta_compare.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from modaltune.evaluation import bootstrap_ci, paired_bootstrap
from modaltune.evaluation.metrics import harrell_c

HERE = Path(__file__).resolve().parent
REFERENCE = "late_fusion (abmil+snn)"


def c_index(d: pd.DataFrame) -> float:
    return harrell_c(d["time"].to_numpy(), d["event"].to_numpy(), d["risk"].to_numpy())


def regime_rows(regime: str, run: Path, n: int) -> list[dict]:
    res = pd.read_csv(run / "results.csv")
    res = res[(res["method"] == "cmta") & (res["metric"] == "c_index")]
    cm = pd.read_parquet(run / "predictions.parquet")
    ref = pd.read_parquet(HERE / regime / "predictions.parquet")
    rows = []
    for seed, g in cm[(cm["method"] == "cmta") & (cm["partition"] == "test")].groupby("seed"):
        lf = ref[(ref["method"] == REFERENCE) & (ref["seed"] == seed) & (ref["partition"] == "test")]
        folds = res[res["seed"] == seed]["value"]
        pooled = bootstrap_ci(g, c_index, n=n, seed=0)
        paired = paired_bootstrap(g, lf, c_index, n=n, seed=0)
        rows.append({"regime": regime, "method": "cmta", "seed": int(seed), "n_patients": len(g),
                     "c_fold_mean": float(folds.mean()), "c_fold_std_ddof0": float(folds.std(ddof=0)), "n_folds": len(folds),
                     "pooled_c": pooled.estimate, "pooled_ci": [pooled.low, pooled.high],
                     "reference": REFERENCE, "reference_pooled_c": c_index(lf),
                     "delta_vs_reference": paired.delta, "delta_ci": list(paired.ci), "p": paired.p_value})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="regime=RUN_FOLDER")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    rows = [r for spec in a.runs for r in regime_rows(spec.split("=", 1)[0], Path(spec.split("=", 1)[1]), a.bootstrap)]
    a.out.write_text(json.dumps({"rows": rows}, indent=2))
    for r in rows:
        print(f"| {r['regime']} | cmta | {r['c_fold_mean']:.3f} ± {r['c_fold_std_ddof0']:.3f} | {r['pooled_c']:.3f} "
              f"[{r['pooled_ci'][0]:.3f}, {r['pooled_ci'][1]:.3f}] | {r['delta_vs_reference']:+.3f} [{r['delta_ci'][0]:.3f}, {r['delta_ci'][1]:.3f}], p={r['p']:.3g} |")


if __name__ == "__main__":
    main()
