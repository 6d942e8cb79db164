"""The issue-14 simulated-regime tables over all training seeds: every method against late fusion, per seed.

Reads the committed raw files of each regime (``benchmarks/coattention_sim/<regime>/{results.csv,
predictions.parquet}``: the benchmark's rows plus the CMTA rows appended after its follow-up runs) and
writes one row per method:

* ``C, mean ± std over folds``: per fold, the C averaged over seeds; mean and std (ddof 0) over the 5
  folds; then ``seeds ± std`` = std (ddof 0) over seeds of each seed's mean over folds (the benchmark's
  summary.md convention);
* per seed: the pooled out-of-fold Harrell's C with a 1000-resample percentile bootstrap CI, and the
  paired bootstrap difference against late fusion of the same seed (same patients, same resamples;
  bootstrap seed 0, as the benchmark's own comparison, so the 8 benchmark methods reproduce its
  summary.md rows and CMTA is computed the same way);
* ``Δ mean over seeds`` and how many seeds have a CI above / below 0.

    python benchmarks/coattention_sim/seeds_table.py --out benchmarks/coattention_sim/seeds_table.json

Writes the JSON and ``<out>.md`` (one markdown table per regime) and prints the markdown.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from modaltune.evaluation import bootstrap_ci, paired_bootstrap
from modaltune.evaluation.metrics import harrell_c

HERE = Path(__file__).resolve().parent
REFERENCE = "late_fusion (abmil+snn)"
ORDER = ["mcat", "motcat", "survpath", "porpoise", "pathomic_fusion", "cmta", REFERENCE, "abmil (slide)", "snn (rna)"]


class CIndex:
    """Harrell's C of a prediction table; ``bind`` lets the bootstrap score index arrays instead of building
    a table per resample (the speed-up of ``PooledMetric``; same rows, same values)."""

    def __call__(self, d: pd.DataFrame) -> float:
        return harrell_c(d["time"].to_numpy(), d["event"].to_numpy(), d["risk"].to_numpy())

    def bind(self, d: pd.DataFrame):
        t, e, r = (d[k].to_numpy(float) for k in ("time", "event", "risk"))
        return lambda rows: harrell_c(t, e, r) if rows is None else harrell_c(t[rows], e[rows], r[rows])


c_index = CIndex()


def method_row(res: pd.DataFrame, preds: pd.DataFrame, method: str, n: int) -> dict:
    """One method's fold statistics and per-seed pooled / paired numbers (``res``: c_index rows)."""
    r = res[res["method"] == method]
    per_fold = r.groupby("fold")["value"].mean()          # seeds averaged per fold
    per_seed = r.groupby("seed")["value"].mean()          # each seed's mean over folds
    row = {"method": method, "seeds": [int(s) for s in per_seed.index], "n_folds": int(per_fold.size),
           "c_fold_mean": float(per_fold.mean()), "c_fold_std_ddof0": float(per_fold.std(ddof=0)),
           "c_seed_std_ddof0": float(per_seed.std(ddof=0)), "per_seed": []}
    for seed in row["seeds"]:
        g = preds[(preds["method"] == method) & (preds["seed"] == seed)]
        ref = preds[(preds["method"] == REFERENCE) & (preds["seed"] == seed)]
        pooled = bootstrap_ci(g, c_index, n=n, seed=0)
        d = {"seed": seed, "n_patients": len(g), "pooled_c": pooled.estimate, "pooled_ci": [pooled.low, pooled.high]}
        if method != REFERENCE:
            p = paired_bootstrap(g, ref, c_index, n=n, seed=0)
            d.update(delta=p.delta, delta_ci=list(p.ci), p=p.p_value)
        row["per_seed"].append(d)
    if method != REFERENCE:
        deltas = [d["delta"] for d in row["per_seed"]]
        row["delta_mean_over_seeds"] = float(np.mean(deltas))
        row["seeds_ci_above_0"] = sum(d["delta_ci"][0] > 0 for d in row["per_seed"])
        row["seeds_ci_below_0"] = sum(d["delta_ci"][1] < 0 for d in row["per_seed"])
    return row


def regime_rows(regime: str, n: int, root: Path = HERE) -> list[dict]:
    res = pd.read_csv(root / regime / "results.csv")
    res = res[(res["metric"] == "c_index") & (res["task"] == "survival")]
    preds = pd.read_parquet(root / regime / "predictions.parquet")
    preds = preds[(preds["task"] == "survival") & (preds["partition"] == "test") & preds["labelled"].astype(bool)]
    methods = [m for m in ORDER if m in set(res["method"])] + sorted(set(res["method"]) - set(ORDER))
    return [dict(method_row(res, preds, m, n), regime=regime) for m in methods]


def markdown(regime: str, rows: list[dict]) -> str:
    seeds = max(len(r["seeds"]) for r in rows)
    lines = [f"### {regime} regime (SIMULATED; 5 folds x {seeds} training seeds)", "",
             "| method | C, mean ± std over folds · seeds ± std | pooled C [95% CI] per seed | Δ vs late fusion [95% CI], p per seed | Δ mean over seeds (CI > 0 / < 0) |",
             "|---|---|---|---|---|"]
    for r in rows:
        pooled = "; ".join(f"{d['pooled_c']:.3f} [{d['pooled_ci'][0]:.3f}, {d['pooled_ci'][1]:.3f}]" for d in r["per_seed"])
        if r["method"] == REFERENCE:
            delta, mean = "(reference)", ""
        else:
            delta = "; ".join(f"{d['delta']:+.3f} [{d['delta_ci'][0]:+.3f}, {d['delta_ci'][1]:+.3f}], p={d['p']:.3g}" for d in r["per_seed"])
            mean = f"{r['delta_mean_over_seeds']:+.3f} ({r['seeds_ci_above_0']} / {r['seeds_ci_below_0']})"
        lines.append(f"| {r['method']} | {r['c_fold_mean']:.3f} ± {r['c_fold_std_ddof0']:.3f} · seeds ± {r['c_seed_std_ddof0']:.3f} | {pooled} | {delta} | {mean} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--regimes", nargs="+", default=["interaction", "additive"])
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--root", type=Path, default=HERE, help="folder holding <regime>/{results.csv,predictions.parquet} (default: the committed files)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    rows = {reg: regime_rows(reg, a.bootstrap, a.root) for reg in a.regimes}
    a.out.write_text(json.dumps(rows, indent=2))
    md = "\n".join(markdown(reg, r) for reg, r in rows.items())
    a.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
