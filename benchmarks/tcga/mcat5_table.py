"""The full MCAT-5 table (11 methods x 5 cohorts) from the committed raw files of the coattn runs.

    python benchmarks/tcga/mcat5_table.py --out benchmarks/tcga/coattn/brca_cmta_modaltune/mcat5_table

Reads ``benchmarks/tcga/coattn/results.csv`` (9 methods x 5 cohorts) and the per-cohort CMTA + ModalTune
files ``benchmarks/tcga/coattn/<cohort>_cmta_modaltune/results.csv``; writes ``<out>.csv`` (one row per
method x cohort: n_folds, mean, std with ddof=0 over folds) and ``<out>.md`` (the markdown table, fold
mean ± std). A cell without a result says why, from the same folders' ``failed_units.csv`` (reason
column): "refused (no RNA)" where every failed unit of the cell names a modality the cohort lacks,
"failed" for any other reason, "not run" where there is neither a result nor a failed unit. Before merging it checks that the late-fusion
rows of every per-cohort file equal those of the five-cohort file (the per-cohort runs resumed the same
late-fusion units), so the two sources describe the same reference; a mismatch stops the script.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd

COHORTS = ["porpoise_blca", "porpoise_brca", "porpoise_gbmlgg", "porpoise_luad", "porpoise_ucec"]
REFERENCE = "late_fusion (abmil slide + snn omics)"


#: failure reasons that name a modality the cohort lacks (the cohort loader's and the config-load checks' wording)
_MISSING_MODALITY = (re.compile(r"unknown modality '([^']+)'"),
                     re.compile(r"(?:modality|omics block) '([^']+)'(?: \([^)]*\))? (?:but|and) (?:the )?cohort(?: \S+)? has none"))


def _folders(root: Path) -> list[Path]:
    """The five-cohort run folder, then the per-cohort cmta/modaltune folders that exist."""
    return [root] + [d for c in COHORTS if (d := root / f"{c.split('_', 1)[1]}_cmta_modaltune").is_dir()]


def missing_modality(reason: str) -> str | None:
    """The modality a failure reason says the cohort lacks (``unknown modality 'rna'``, ``omics block 'rna'
    but the cohort has none``), or None when the reason is something else."""
    for pattern in _MISSING_MODALITY:
        if m := pattern.search(str(reason)):
            return m.group(1)
    return None


def failure_labels(root: Path) -> dict[tuple[str, str], str]:
    """(method, cohort) -> the cell label of its failed units in every ``failed_units.csv`` under ``root``:
    ``refused (no X)`` when all its reasons name the same missing modality X, else ``failed``."""
    parts = [pd.read_csv(f) for d in _folders(root) if (f := d / "failed_units.csv").exists()]
    failed = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["method", "cohort", "reason"])
    labels = {}
    for (method, cohort), reasons in failed.groupby(["method", "cohort"], sort=False).reason:
        lacking = {missing_modality(r) for r in reasons}
        labels[(method, cohort)] = f"refused (no {lacking.pop().upper()})" if len(lacking) == 1 and None not in lacking else "failed"
    return labels


def load(root: Path) -> pd.DataFrame:
    """All c_index rows (method, cohort, fold, value) of the five-cohort file plus the per-cohort cmta/modaltune files."""
    main = pd.read_csv(root / "results.csv")
    parts = [main]
    for c in COHORTS:
        f = root / f"{c.split('_', 1)[1]}_cmta_modaltune" / "results.csv"
        if not f.exists():
            continue
        sub = pd.read_csv(f)
        # the per-cohort runs resumed the five-cohort run's late-fusion units: their rows must agree
        a = sub[sub.method == REFERENCE].sort_values("fold").value.to_numpy()
        b = main[(main.method == REFERENCE) & (main.cohort == c)].sort_values("fold").value.to_numpy()
        if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-12):
            raise SystemExit(f"{f}: late-fusion rows differ from {root / 'results.csv'} for {c}")
        parts.append(sub[sub.method != REFERENCE])
    df = pd.concat(parts, ignore_index=True)
    return df[df.metric == "c_index"]


def table(df: pd.DataFrame) -> pd.DataFrame:
    """Fold mean and std (ddof=0) per method x cohort; seeds (one here) averaged per fold first."""
    per_fold = df.groupby(["method", "cohort", "fold"]).value.mean().reset_index()
    g = per_fold.groupby(["method", "cohort"]).value
    return pd.DataFrame({"n_folds": g.size(), "mean": g.mean(), "std": g.std(ddof=0)}).reset_index()


def markdown(t: pd.DataFrame, methods: list[str], failures: dict[tuple[str, str], str] | None = None) -> str:
    """The table, fold mean ± std per cell; a cell without a result shows ``failures[(method, cohort)]``
    (:func:`failure_labels`) or "not run"."""
    head = "| method | " + " | ".join(c.split("_", 1)[1].upper() for c in COHORTS) + " | mean (cohorts run) |"
    lines = [head, "|" + "---|" * (len(COHORTS) + 2)]
    for m in methods:
        cells, means = [], []
        for c in COHORTS:
            r = t[(t.method == m) & (t.cohort == c)]
            if r.empty:
                cells.append((failures or {}).get((m, c), "not run"))
            else:
                cells.append(f"{r['mean'].iloc[0]:.3f} ± {r['std'].iloc[0]:.3f}")
                means.append(r["mean"].iloc[0])
        tail = f"{np.mean(means):.3f}" + ("" if len(means) == len(COHORTS) else f" ({len(means)}/{len(COHORTS)})")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {tail} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(__file__).parent / "coattn", help="folder of the coattn raw files")
    ap.add_argument("--out", type=Path, required=True, help="output stem: writes <out>.csv and <out>.md")
    args = ap.parse_args(argv)
    df = load(args.root)
    t = table(df)
    # row order: the five-cohort file's order, then the methods the per-cohort files add
    methods = list(dict.fromkeys(df.method))
    t.to_csv(args.out.with_suffix(".csv"), index=False, float_format="%.6f")
    args.out.with_suffix(".md").write_text(markdown(t, methods, failure_labels(args.root)))
    print(args.out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
