"""Check that re-running an analysis left the rows of the methods that did not run unchanged (issue 15).

A seed continuation resumes the seed folders with a few more methods and rewrites the analysis tables
(``analyze.py`` / ``seeds.py`` output). The other methods' rows must come out the same, since their
predictions and the bootstrap draws did not change; this compares each table with its committed version::

    python benchmarks/missing_grid/sim_seeds/compare_rows.py --ref HEAD --exclude cmta dispro \
        --out unchanged.json benchmarks/missing_grid/sim_seeds/degradation.csv ...

Per file: rows whose ``method`` is not in ``--exclude`` are matched on their non-float columns (method,
setting, seeds, counts, ...); a row present on one side only is reported, and the float columns of matched
rows give the max absolute difference (NaN on both sides counts as equal, NaN on one side as inf).
Exit status 1 when any file differs, so a shell script can stop on it.
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def compare_frames(old: pd.DataFrame, new: pd.DataFrame, exclude: list[str]) -> dict:
    """Compare ``old`` and ``new`` (same columns) on the rows whose ``method`` is not in ``exclude``.

    Returns ``{"rows": matched row count, "only_old": n, "only_new": n, "max_abs_diff": float}``;
    ``max_abs_diff`` is over the float columns of the matched rows (0.0 when there are none)."""
    if list(old.columns) != list(new.columns):
        raise ValueError(f"columns differ: {list(old.columns)} vs {list(new.columns)}")
    old, new = old[~old["method"].isin(exclude)], new[~new["method"].isin(exclude)]
    floats = [c for c in old.columns if pd.api.types.is_float_dtype(old[c]) or pd.api.types.is_float_dtype(new[c])]
    keys = [c for c in old.columns if c not in floats]
    # keys as strings: a key column read as int on one side and object on the other still matches
    ko = old[keys].astype(str).agg("|".join, axis=1)
    kn = new[keys].astype(str).agg("|".join, axis=1)
    if ko.duplicated().any() or kn.duplicated().any():
        raise ValueError("rows are not unique on their non-float columns: " + ", ".join(keys))
    o, n = old.set_index(ko)[floats], new.set_index(kn)[floats]
    both = o.index.intersection(n.index)
    a, b = o.loc[both].to_numpy(float), n.loc[both].reindex(columns=floats).to_numpy(float)
    diff = np.abs(a - b)
    diff[np.isnan(a) & np.isnan(b)] = 0.0
    diff[np.isnan(a) ^ np.isnan(b)] = np.inf
    return {"rows": int(len(both)), "only_old": int(len(o.index.difference(n.index))),
            "only_new": int(len(n.index.difference(o.index))), "max_abs_diff": float(diff.max()) if diff.size else 0.0}


def _git_show(ref: str, path: Path) -> str:
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True,
                          cwd=path.parent).stdout.strip()
    rel = path.resolve().relative_to(Path(root).resolve())
    return subprocess.run(["git", "show", f"{ref}:{rel.as_posix()}"], capture_output=True, text=True, check=True,
                          cwd=root).stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="CSV tables with a 'method' column, compared with their --ref version")
    ap.add_argument("--ref", default="HEAD", help="git revision holding the previous tables")
    ap.add_argument("--exclude", nargs="*", default=[], help="method labels that ran (their rows may change)")
    ap.add_argument("--out", required=True, help="JSON report")
    args = ap.parse_args(argv)
    report = {"ref": args.ref, "excluded": args.exclude, "files": {}}
    for f in args.files:
        path = Path(f)
        old = pd.read_csv(io.StringIO(_git_show(args.ref, path)))
        report["files"][f] = compare_frames(old, pd.read_csv(path), args.exclude)
    bad = {f: r for f, r in report["files"].items() if r["max_abs_diff"] != 0.0 or r["only_old"] or r["only_new"]}
    report["unchanged"] = not bad
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
