"""Pool the training seeds of the TCGA MCAT-5 slide + omics benchmark (issue 14; SIMULATED slide bags).

    python benchmarks/tcga/seeds_tcga.py --inputs benchmarks/tcga/coattn benchmarks/tcga/coattn_seeds/seed1 \
        benchmarks/tcga/coattn_seeds/seed2 --out benchmarks/tcga/coattn_seeds/pooled [--reference LABEL] [--n 1000] \
        [--cohorts gbmlgg luad]

Each input folder holds a benchmark run's ``results.csv`` (per-fold Harrell's C) and
``predictions.parquet`` (held-out risks), one or several training seeds; the simulated bags, folds and
patients are the same in every seed, only the training seed changes.

``--cohorts`` keeps only those cohorts (``porpoise_<name>``) before counting, so a seed that a method finished on
those cohorts only (cut short by time) counts there (a per-cohort reading, not the 5-cohort table).

A (method, seed) **counts** only when it finished every fold of every cohort the method ran on in any
input (25 units for the 5 MCAT cohorts; survpath's 20: UCEC is refused for lack of RNA). Per method x
cohort, over the counted seeds:

- ``fold_mean_c`` per seed (the mean over the 5 held-out folds, as the benchmark's tables), their mean
  and range (min, max) over seeds;
- ``pooled_c`` per seed: Harrell's C of the pooled out-of-fold predictions (each patient once);
- the **paired bootstrap against the reference** of the seed-mean pooled-C difference
  ``mean_s [C(m, s) - C(ref, s)]`` over the seeds both completed: a resample draws the cohort's
  patients once and the same draw serves every seed and both methods (the paired design, across
  seeds too). Draws: ``default_rng(boot_seed)``, ``integers(0, n, n)`` per resample over the patients
  sorted by id, as :func:`modaltune.evaluation.paired_bootstrap`, so with one seed the numbers equal
  the benchmark's own summary.md comparison. 95% percentile CI; two-sided bootstrap p.

The weighted-pair C of the resamples is :mod:`benchmarks/missing_grid/seeds.py`'s (one matrix product
for all resamples) and its resample draws (``resample_weights``) are reused here, not rewritten.

Writes to ``--out``: ``seeds_c.csv`` (method, cohort, seed, fold_mean_c, pooled_c, n_patients),
``pooled.csv`` (one row per method x cohort), ``analysis.json`` and ``summary.md``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd

from modaltune.errors import InputError

HERE = Path(__file__).resolve().parent
REFERENCE = "late_fusion (abmil slide + snn omics)"
_spec = importlib.util.spec_from_file_location("missing_grid_seeds", HERE.parent / "missing_grid" / "seeds.py")
_MG = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_MG)
pair_matrices, weighted_pairs, ratio, p_two_sided = _MG.pair_matrices, _MG.weighted_pairs, _MG._ratio, _MG._p_two_sided
resample_weights = _MG.resample_weights


def load_inputs(folders: list[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, predictions) of all input folders: survival c_index rows (method, cohort, fold, seed,
    value) and labelled held-out predictions (method, cohort, fold, seed, patient_id, time, event, risk).
    A unit present in several folders is kept once (the last folder wins)."""
    res, preds = [], []
    for folder in map(Path, folders):
        for name in ("results.csv", "predictions.parquet"):
            if not (folder / name).exists():
                raise InputError(f"no {name} in the input folder", where=folder, fix="pass folders holding a benchmark run's results.csv and predictions.parquet")
        r = pd.read_csv(folder / "results.csv")
        res.append(r[(r["metric"] == "c_index") & (r["task"] == "survival")][["method", "cohort", "fold", "seed", "value"]])
        p = pd.read_parquet(folder / "predictions.parquet")
        p = p[(p["task"] == "survival") & p["labelled"].astype(bool)].dropna(subset=["time", "event", "risk"])
        preds.append(p[["method", "cohort", "fold", "seed", "patient_id", "time", "event", "risk"]])
    res = pd.concat(res, ignore_index=True).drop_duplicates(["method", "cohort", "fold", "seed"], keep="last")
    preds = pd.concat(preds, ignore_index=True).drop_duplicates(["method", "cohort", "fold", "seed", "patient_id"], keep="last")
    res["seed"], preds["seed"] = res["seed"].astype(int), preds["seed"].astype(int)
    preds["patient_id"] = preds["patient_id"].astype(str)
    return res, preds


def keep_cohorts(res: pd.DataFrame, preds: pd.DataFrame, cohorts: list[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``res`` and ``preds`` restricted to ``cohorts`` (names with or without the ``porpoise_`` prefix; None: all)."""
    if not cohorts:
        return res, preds
    want = {c.removeprefix("porpoise_") for c in cohorts}
    missing = want - {c.removeprefix("porpoise_") for c in res["cohort"]}
    if missing:
        raise InputError(f"cohort(s) {sorted(missing)} not in the inputs", where="--cohorts", fix=f"pick from {sorted(set(res['cohort']))}")
    return (res[res["cohort"].str.removeprefix("porpoise_").isin(want)].reset_index(drop=True),
            preds[preds["cohort"].str.removeprefix("porpoise_").isin(want)].reset_index(drop=True))


def counted_seeds(res: pd.DataFrame) -> dict[str, list[int]]:
    """{method: seeds it finished on every fold of every cohort it ran on} (module docstring).

    The folds a cohort needs are the union over all methods and seeds of its folds, so a seed that
    misses one unit anywhere does not count for that method."""
    folds = res.groupby("cohort")["fold"].apply(lambda f: set(f.astype(int))).to_dict()
    have = res.groupby(["method", "seed", "cohort"])["fold"].apply(lambda f: set(f.astype(int))).to_dict()
    out = {}
    for m in dict.fromkeys(res["method"]):
        cohorts = set(res.loc[res["method"] == m, "cohort"])
        seeds = [int(s) for s in sorted(res.loc[res["method"] == m, "seed"].unique())
                 if all(have.get((m, s, c), set()) >= folds[c] for c in cohorts)]
        if seeds:
            out[m] = seeds
    return out


def pool(res: pd.DataFrame, preds: pd.DataFrame, reference: str = REFERENCE, n: int = 1000, boot_seed: int = 0) -> dict:
    """Per-seed and seed-pooled numbers (module docstring): {"seeds", "per_seed", "pooled"} (rows as dicts)."""
    seeds_of = counted_seeds(res)
    if reference not in seeds_of:
        raise InputError(f"reference method {reference!r} has no seed finished on every fold of every cohort", where="--reference",
                         fix=f"pick one of {sorted(seeds_of)}")
    per_seed, pooled = [], []
    for cohort in dict.fromkeys(res["cohort"]):
        pc = preds[preds["cohort"] == cohort]
        ids = np.array(sorted(pc["patient_id"].unique()))
        weights, full = resample_weights(len(ids), n, boot_seed), np.ones((1, len(ids)))
        point, boot, den_cache = {}, {}, {}
        for m, seeds in seeds_of.items():
            if not ((res["method"] == m) & (res["cohort"] == cohort)).any():
                continue  # a method refused on this cohort (survpath on UCEC)
            for s in seeds:
                g = pc[(pc["method"] == m) & (pc["seed"] == s)].set_index("patient_id")
                if len(g) != len(ids) or set(g.index) != set(ids):
                    raise InputError(f"{m} seed {s} predicted {len(g)} patients of {cohort}, the inputs hold {len(ids)}",
                                     where=f"{m} / {cohort} / seed {s}", fix="pool runs of the same cohorts and folds (only the training seed may differ)")
                g = g.loc[ids]
                t, e = g["time"].to_numpy(float), g["event"].to_numpy(float)
                num, den = pair_matrices(t, e, g["risk"].to_numpy(float))
                key = (t.tobytes(), e.tobytes())  # comparable pairs depend on (time, event) only: the same for every unit
                if key not in den_cache:
                    den_cache[key] = (weighted_pairs(den, full), weighted_pairs(den, weights))
                dfull, dboot = den_cache[key]
                point[m, s] = float(ratio(weighted_pairs(num, full), dfull)[0])
                boot[m, s] = ratio(weighted_pairs(num, weights), dboot)
                fm = res[(res["method"] == m) & (res["cohort"] == cohort) & (res["seed"] == s)]["value"]
                per_seed.append({"method": m, "cohort": cohort, "seed": s, "fold_mean_c": float(fm.mean()), "n_folds": int(fm.size),
                                 "pooled_c": point[m, s], "n_patients": len(ids)})
        for m, seeds in seeds_of.items():
            if (m, seeds[0]) not in point:
                continue
            fmc = [r["fold_mean_c"] for r in per_seed if r["method"] == m and r["cohort"] == cohort]
            row = {"method": m, "cohort": cohort, "seeds": " ".join(map(str, seeds)), "n_seeds": len(seeds),
                   "fold_mean_c_seed_mean": float(np.mean(fmc)), "fold_mean_c_min": float(np.min(fmc)), "fold_mean_c_max": float(np.max(fmc)),
                   "pooled_c_seed_mean": float(np.mean([point[m, s] for s in seeds])), "n_patients": len(ids)}
            both = [s for s in seeds if s in seeds_of[reference] and (reference, s) in point]
            if m != reference and both:
                d = np.mean([boot[m, s] - boot[reference, s] for s in both], axis=0)
                d = d[np.isfinite(d)]
                lo, hi = np.quantile(d, [0.025, 0.975])
                row |= {"paired_seeds": " ".join(map(str, both)), "delta": float(np.mean([point[m, s] - point[reference, s] for s in both])),
                        "lo": float(lo), "hi": float(hi), "p": p_two_sided(d), "n_valid": int(d.size),
                        "delta_per_seed": " ".join(f"{point[m, s] - point[reference, s]:+.4f}" for s in both)}
            pooled.append(row)
    return {"seeds": seeds_of, "per_seed": per_seed, "pooled": pooled}


def summary_md(out: dict, title: str, reference: str, n: int) -> str:
    """Two markdown tables (method rows, cohort columns): seed-mean fold-mean C [min, max], and the
    paired seed-mean difference against the reference [95% CI] (p)."""
    rows = pd.DataFrame(out["pooled"])
    cohorts = list(dict.fromkeys(rows["cohort"]))
    methods = list(dict.fromkeys(rows["method"]))
    cell = {(r["method"], r["cohort"]): r for r in out["pooled"]}
    head = "| method | seeds | " + " | ".join(c.removeprefix("porpoise_").upper() for c in cohorts) + " |"
    rule = "|---|---|" + "---|" * len(cohorts)
    lines = [f"# {title}", "", "C = Harrell's C. A method counts a training seed only when it finished every fold of every cohort it runs on.", "",
             "## Fold-mean C, mean over seeds [min, max over seeds]", "", head, rule]
    for m in methods:
        lines.append(f"| {m} | {' '.join(map(str, out['seeds'][m]))} | " + " | ".join(
            f"{cell[m, c]['fold_mean_c_seed_mean']:.3f} [{cell[m, c]['fold_mean_c_min']:.3f}, {cell[m, c]['fold_mean_c_max']:.3f}]" if (m, c) in cell else "n/a"
            for c in cohorts) + " |")
    lines += ["", f"## Paired bootstrap against {reference}: seed-mean difference of the pooled out-of-fold C [95% CI] (p)", "",
              f"{n} patient resamples per cohort, one draw shared by every seed and both methods; seeds = those both completed "
              "(column `seeds` above; the reference's seeds bound them).", "", head, rule]
    for m in methods:
        if m == reference:
            continue
        r0 = next((cell[m, c] for c in cohorts if (m, c) in cell and "delta" in cell[m, c]), None)
        lines.append(f"| {m} | {r0['paired_seeds'] if r0 else ''} | " + " | ".join(
            f"{cell[m, c]['delta']:+.3f} [{cell[m, c]['lo']:+.3f}, {cell[m, c]['hi']:+.3f}] (p {cell[m, c]['p']:.3g})"
            if (m, c) in cell and "delta" in cell[m, c] else "n/a" for c in cohorts) + " |")
    lines += ["", "## Per seed: pooled C minus the reference's pooled C", "", head, rule]
    for m in methods:
        if m == reference:
            continue
        lines.append(f"| {m} | {cell.get((m, cohorts[0]), {}).get('paired_seeds', '')} | "
                     + " | ".join(cell[m, c].get("delta_per_seed", "n/a") if (m, c) in cell else "n/a" for c in cohorts) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", nargs="+", required=True, help="folders with results.csv + predictions.parquet (e.g. one per training seed)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="TCGA MCAT-5, SIMULATED slide bags: training seeds pooled")
    ap.add_argument("--reference", default=REFERENCE)
    ap.add_argument("--n", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--boot-seed", type=int, default=0)
    ap.add_argument("--cohorts", nargs="+", default=None, help="keep only these cohorts (e.g. gbmlgg luad) before counting seeds")
    args = ap.parse_args(argv)
    res, preds = keep_cohorts(*load_inputs(args.inputs), args.cohorts)
    out = pool(res, preds, args.reference, args.n, args.boot_seed)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(out["per_seed"]).to_csv(folder / "seeds_c.csv", index=False)
    pd.DataFrame(out["pooled"]).to_csv(folder / "pooled.csv", index=False)
    text = summary_md(out, args.title, args.reference, args.n)
    (folder / "summary.md").write_text(text)
    with open(folder / "analysis.json", "w") as fh:
        json.dump({"title": args.title, "inputs": [str(x) for x in args.inputs], "reference": args.reference, "n_boot": args.n,
                   "boot_seed": args.boot_seed, "cohorts": args.cohorts, **out}, fh, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
