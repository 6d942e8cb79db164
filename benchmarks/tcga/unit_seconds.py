"""Per-unit wall seconds of a benchmark run folder, as a CSV (the timing evidence of the TCGA tables).

    python benchmarks/tcga/unit_seconds.py RUN_FOLDER --out benchmarks/tcga/coattn/unit_seconds.csv

One row per unit folder: ``unit, method, cohort, fold, status, seconds, made_in``. ``seconds`` is the
runner's own wall time of the unit (``unit.json``; empty for failed units, whose ``FAILED.json`` keeps
no time). ``made_in`` is the run root the unit's cohort was read from (``unit.cohort_path`` minus
``cohorts_simbags/...``), so a run folder that resumed units copied from an earlier run tells which
session computed each unit (the seconds of different sessions ran under different machine loads).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def unit_rows(run: Path) -> pd.DataFrame:
    """One row per ``run/units/<uid>/`` with a ``unit.json`` (finished) or ``FAILED.json`` (refused/failed)."""
    rows = []
    for d in sorted((run / "units").iterdir()):
        rec_path = d / "unit.json" if (d / "unit.json").exists() else d / "FAILED.json"
        if not rec_path.exists():
            continue  # a unit still running (no record yet)
        rec = json.loads(rec_path.read_text())
        u = rec.get("unit", {})
        # the cohort path is <run root>/cohorts_simbags/tcga_<name>: its grandparent is the run root
        made_in = str(Path(u.get("cohort_path", "")).parent.parent) if u.get("cohort_path") else ""
        rows.append({"unit": rec.get("uid", d.name), "method": u.get("method"), "cohort": u.get("cohort"), "fold": u.get("fold"),
                     "status": rec.get("status"), "seconds": rec.get("seconds"), "made_in": made_in})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="benchmark run folder (holds units/)")
    ap.add_argument("--out", type=Path, required=True, help="CSV to write")
    args = ap.parse_args(argv)
    df = unit_rows(args.run)
    df.to_csv(args.out, index=False)
    print(df.groupby(["made_in", "status"], dropna=False)["seconds"].agg(["count", "sum"]).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
