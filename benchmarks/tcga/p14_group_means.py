"""PORPOISE-14 cohort-group means of every method (SIMULATED slide bags) from the committed raw files.

    python benchmarks/tcga/p14_group_means.py \
        --new9 benchmarks/tcga/coattn_porpoise14/results.csv benchmarks/tcga/coattn_porpoise14_survpath_cmta/results.csv \
               benchmarks/tcga/coattn_porpoise14_modaltune/results.csv \
        --out benchmarks/tcga/coattn_porpoise14_survpath_cmta/cohort_group_means

The MCAT-5 cohorts (BLCA, BRCA, GBMLGG, LUAD, UCEC) come from ``benchmarks/tcga/coattn`` via
``mcat5_table.load`` (its five-cohort file plus the per-cohort cmta / modaltune files); the 9 other
PORPOISE-14 cohorts from the ``--new9`` results.csv files. A method x cohort present in several
``--new9`` files (the late-fusion reference each run resumed or recomputed) must have the same fold
values in all of them (else the script stops), and is counted once.

Writes ``<out>.csv``: one row per method with ``mean_14, n_14, mean_mcat5, n_mcat5, mean_new9, n_new9``
(C-index: mean over folds per cohort, then the unweighted mean over the cohorts run; ``n_*`` = cohorts
run; a method refused on a cohort, e.g. without RNA, is averaged over the rest), and
``<out>_per_cohort.csv`` (method, cohort, n_folds, mean, std with ddof=0 over folds).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
MCAT5 = ["porpoise_blca", "porpoise_brca", "porpoise_gbmlgg", "porpoise_luad", "porpoise_ucec"]
NEW9 = ["porpoise_coadread", "porpoise_hnsc", "porpoise_kirc", "porpoise_kirp", "porpoise_lihc",
        "porpoise_lusc", "porpoise_paad", "porpoise_skcm", "porpoise_stad"]


def _mcat5_table():
    """The sibling script ``mcat5_table.py`` as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("tcga_mcat5_table", HERE / "mcat5_table.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["tcga_mcat5_table"] = mod
    spec.loader.exec_module(mod)
    return mod


def load_new9(files: list[Path]) -> pd.DataFrame:
    """c_index rows (method, cohort, fold, seed, value) of the 9 non-MCAT-5 cohorts, each method x cohort once.

    Raises SystemExit when two files hold the same method x cohort with different fold values."""
    keep: dict[tuple[str, str], pd.DataFrame] = {}
    for f in files:
        df = pd.read_csv(f)
        df = df[(df.metric == "c_index") & df.cohort.isin(NEW9)]
        for key, rows in df.groupby(["method", "cohort"], sort=False):
            rows = rows.sort_values(["fold", "seed"]).reset_index(drop=True)
            if key in keep:
                old = keep[key]
                same = old[["fold", "seed"]].equals(rows[["fold", "seed"]]) and np.allclose(old.value, rows.value, rtol=0, atol=1e-12)
                if not same:
                    raise SystemExit(f"{f}: {key[0]} / {key[1]} differs from an earlier --new9 file")
                continue
            keep[key] = rows
    return pd.concat(keep.values(), ignore_index=True)


def group_means(per_cohort: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per method: unweighted mean of the cohort means over all 14 / the MCAT-5 / the 9 other cohorts."""
    rows = []
    for m in methods:
        t = per_cohort[per_cohort.method == m].set_index("cohort")["mean"]
        row = {"method": m}
        for tag, cohorts in (("14", MCAT5 + NEW9), ("mcat5", MCAT5), ("new9", NEW9)):
            v = t[t.index.isin(cohorts)]
            row[f"mean_{tag}"], row[f"n_{tag}"] = (round(float(v.mean()), 4) if len(v) else np.nan), len(v)
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mcat5-root", type=Path, default=HERE / "coattn", help="folder of the MCAT-5 coattn raw files")
    ap.add_argument("--new9", type=Path, nargs="+", required=True, help="results.csv files with the 9 other cohorts")
    ap.add_argument("--out", type=Path, required=True, help="output stem: <out>.csv and <out>_per_cohort.csv")
    args = ap.parse_args(argv)
    mod = _mcat5_table()
    df = pd.concat([mod.load(args.mcat5_root), load_new9(args.new9)], ignore_index=True)
    per_cohort = mod.table(df)
    methods = sorted(df.method.unique())
    means = group_means(per_cohort, methods)
    means.to_csv(args.out.with_suffix(".csv"), index=False)
    per_cohort.to_csv(args.out.parent / f"{args.out.name}_per_cohort.csv", index=False, float_format="%.6f")
    print(means.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
