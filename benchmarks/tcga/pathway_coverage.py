"""RNA pathway coverage per cohort and training fold, as the trainer computes it for a unit (SurvPath's tokens).

    python benchmarks/tcga/pathway_coverage.py RUN/cohorts_simbags/tcga_paad ... \
        --pathways ../shared/data/pathways/combine_comps.csv --split porpoise_5fold --out pathway_coverage.csv

The benchmark runner logs one "pathway coverage of 'rna'" line per unit without naming the unit; this
script recomputes those numbers per (cohort, fold) with the same call the trainer makes
(:func:`modaltune.training.datamodule.fit_preprocessor` on the fold's training patients with
``data.pathways``), so each cohort's coverage can be cited. One row per (cohort, fold):
``cohort, fold, n_train, pathways_kept, pathways_total, pathways_dropped, genes_used,
memberships_found, memberships_expected, fraction_found`` (counts of pathways, genes and
gene-pathway memberships; ``fraction_found`` = found / expected memberships, 0-1).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def fold_coverage(cohort, train_ids: list[str], pathways: str) -> dict:
    """Coverage counts of the ``rna`` pathway tokens fitted on ``train_ids`` (the trainer's call)."""
    from modaltune.training.datamodule import fit_preprocessor

    # no task: the tokens depend on the RNA table's genes only, and survival bins would need events
    pp = fit_preprocessor(cohort, train_ids, modalities=["rna"], tasks=[], pathways={"rna": pathways})
    tok = pp.info.pathways["rna"]
    cov = tok.coverage
    found, expected = int(cov["n_found"].sum()), int(cov["n_expected"].sum())
    return {
        "n_train": len(train_ids),
        "pathways_kept": len(tok.names),
        "pathways_total": len(cov),
        "pathways_dropped": len(tok.dropped),
        "genes_used": int(np.unique(np.concatenate(tok.gene_index)).size) if tok.gene_index else 0,
        "memberships_found": found,
        "memberships_expected": expected,
        "fraction_found": found / max(expected, 1),
    }


def coverage_table(cohort_dirs: list[Path], pathways: str, split: str) -> pd.DataFrame:
    """One row per (cohort, fold of ``split``); cohorts without an RNA table get one row with NaN counts."""
    from modaltune.training import sources

    rows = []
    for d in cohort_dirs:
        c = sources.load_cohort(d)
        if "rna" not in c.omics:
            rows.append({"cohort": c.name, "fold": np.nan})
            continue
        for f in c.split(split).folds:
            rows.append({"cohort": c.name, "fold": f.index, **fold_coverage(c, list(f.train), pathways)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cohorts", nargs="+", type=Path, help="cohort folders")
    ap.add_argument("--pathways", required=True, help="pathway membership file (the config's data.pathways.rna)")
    ap.add_argument("--split", default="porpoise_5fold")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    table = coverage_table(args.cohorts, args.pathways, args.split)
    table.to_csv(args.out, index=False, float_format="%.4f")
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
