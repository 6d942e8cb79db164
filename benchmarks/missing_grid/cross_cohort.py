"""Cross-cohort summary of the TCGA missing-modality grid (issue 15): degradation per method per cohort.

    python benchmarks/missing_grid/cross_cohort.py --root benchmarks/missing_grid/tcga \
        --out benchmarks/missing_grid/tcga/cross_cohort [--cohorts blca ucec luad gbmlgg]

Reads each cohort's committed ``<root>/<cohort>/results.csv`` (one row per unit, written by
``analyze.py``) and recomputes the per-cohort means with ``analyze.degradation_table`` (so the numbers
are those of the cohort's ``degradation.csv``). A (method, cohort) counts as **complete** when it
finished every fold of every setting (``--expect`` units, default the largest grid among the cohorts: 5 folds x 6 settings = 30);
a partial one (fewer units than ``--expect``) is listed with its unit count but left out of the means over cohorts, so each method's
mean is over complete cohorts only (the ``cohorts`` column names them).

Writes ``<out>.csv`` (long: one row per cohort x method, plus ``cohort = mean over cohorts`` rows):
columns cohort, method, complete, units, W0_O0 (mean C), ``d_<setting>`` = C(setting) - C(W0_O0) per
missing setting, ``mean_missing`` (mean of the ``d_`` columns), ``worst`` (their minimum) and ``rank``
(1 = lost least among the methods complete in that cohort; on the mean rows, the mean rank); and
``<out>.md`` (the tables).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("missing_grid_analyze", HERE / "analyze.py")
_analyze = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_analyze)
BASE = _analyze.BASE
MEAN = "mean over cohorts"


def grid_units(results: pd.DataFrame) -> int:
    """Number of (setting, fold, seed) units a grid attempted (any method)."""
    return len(results[["setting", "fold", "seed"]].drop_duplicates())


def cohort_rows(results: pd.DataFrame, cohort: str, expect: int | None = None) -> pd.DataFrame:
    """Per-method degradation of one cohort's grid.

    Args:
        results: a run's ``results.csv`` rows (setting, fold, seed, method, status, c_index).
        cohort: label written in the ``cohort`` column.
        expect: units a complete method has (default: every (setting, fold, seed) this grid attempted;
            pass the full grid's count so that a grid stopped early for every method is not complete).

    Returns:
        One row per method: cohort, method, complete (finished every (setting, fold, seed) the grid
        ran), units, W0_O0, ``d_<setting>``, mean_missing, worst, rank (C-index differences, unitless).
    """
    res = results.drop_duplicates(["setting", "fold", "seed", "method"], keep="last")
    ok = res[res["status"] == "done"]
    deg, cnt, order = _analyze.degradation_table(ok)
    missing = [s for s in order if s != BASE]
    out = pd.DataFrame({"cohort": cohort, "method": deg.index, "units": cnt.sum(axis=1).astype(int).to_numpy()})
    out["complete"] = out["units"] == (grid_units(res) if expect is None else expect)
    out["W0_O0"] = deg[BASE].to_numpy()
    for s in missing:
        out[f"d_{s}"] = (deg[s] - deg[BASE]).to_numpy()
    out["mean_missing"] = deg["mean of missing settings - W0_O0"].to_numpy()
    out["worst"] = deg["worst - W0_O0"].to_numpy()
    # rank among complete methods only: a partial method's mean is over other folds, not comparable
    out["rank"] = out["mean_missing"].where(out["complete"]).rank(ascending=False)
    return out


def mean_over_cohorts(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over the complete cohorts of each method (columns as :func:`cohort_rows`; ``units`` summed,
    ``cohorts`` = the cohorts averaged, space-separated)."""
    done = rows[rows["complete"]]
    num = [c for c in rows.columns if c == "W0_O0" or c.startswith("d_") or c in ("mean_missing", "worst", "rank")]
    g = done.groupby("method", sort=False)
    out = g[num].mean()
    out["units"] = g["units"].sum()
    out["cohorts"] = g["cohort"].agg(" ".join)
    out = out.reset_index()
    out.insert(0, "cohort", MEAN)
    out["complete"] = True
    return out


def _fmt(x: float, signed: bool = True) -> str:
    return "n/a" if not np.isfinite(x) else (f"{x:+.3f}" if signed else f"{x:.3f}")


def markdown(rows: pd.DataFrame, means: pd.DataFrame, cohorts: list[str]) -> str:
    """The three tables of ``<out>.md``: mean degradation per method x cohort, W0_O0 per method x cohort,
    and C(W) - C(W0_O0) per setting averaged over the complete cohorts."""
    methods = list(dict.fromkeys(means["method"].tolist() + rows["method"].tolist()))
    mean_of = means.set_index("method")
    cell = rows.set_index(["method", "cohort"])
    head = "| method | " + " | ".join(c.upper() for c in cohorts)
    lines = ["# TCGA missing-modality grid across cohorts (REAL omics, SIMULATED slide bags)", "",
             "Slide bags are SIMULATED noise (no real TCGA slide features here): only the omics carry signal. "
             "Degradation = mean over the 5 missing settings of C(setting) - C(W0_O0), C-index mean over folds. "
             "Partial (method, cohort) runs are marked with * and their unit count, and are left out of the means.", "",
             "## Mean degradation per cohort (rank among the methods complete in that cohort, 1 = lost least)", "",
             head + " | mean over cohorts | mean rank | cohorts |", "|---|" + "---|" * (len(cohorts) + 3)]

    def deg_cell(m: str, c: str) -> str:
        if (m, c) not in cell.index:
            return "not run"
        r = cell.loc[(m, c)]
        if not r["complete"]:
            return f"{_fmt(r['mean_missing'])}* ({int(r['units'])} units)"
        return f"{_fmt(r['mean_missing'])} ({int(r['rank'])})"

    for m in methods:
        mm = mean_of.loc[m] if m in mean_of.index else None
        tail = [_fmt(mm["mean_missing"]), f"{mm['rank']:.2f}", mm["cohorts"]] if mm is not None else ["n/a", "n/a", ""]
        lines.append(f"| {m} | " + " | ".join(deg_cell(m, c) for c in cohorts) + " | " + " | ".join(tail) + " |")
    lines += ["", "## C-index at W0_O0 (nothing missing), mean over folds", "", head + " | mean over cohorts |", "|---|" + "---|" * (len(cohorts) + 1)]
    for m in methods:
        cells = [_fmt(cell.loc[(m, c), "W0_O0"], signed=False) + ("" if cell.loc[(m, c), "complete"] else "*") if (m, c) in cell.index else "not run" for c in cohorts]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {_fmt(mean_of.loc[m, 'W0_O0'], signed=False) if m in mean_of.index else 'n/a'} |")
    dcols = [c for c in means.columns if c.startswith("d_")]
    lines += ["", "## C(setting) - C(W0_O0), mean over the complete cohorts", "",
              "| method | cohorts | " + " | ".join(c[2:] for c in dcols) + " | mean | mean of per-cohort worst |", "|---|---|" + "---|" * (len(dcols) + 2)]
    for r in means.itertuples(index=False):
        d = r._asdict()
        lines.append(f"| {r.method} | {r.cohorts} | " + " | ".join(_fmt(d[c]) for c in dcols) + f" | {_fmt(r.mean_missing)} | {_fmt(r.worst)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="folder with one <cohort>/results.csv per cohort")
    ap.add_argument("--out", required=True, help="output path without suffix (writes .csv and .md)")
    ap.add_argument("--cohorts", nargs="*", default=None, help="cohort folders under --root (default: every one with a results.csv)")
    ap.add_argument("--expect", type=int, default=None, help="units of a complete (method, cohort) (default: the largest grid among the cohorts)")
    args = ap.parse_args(argv)
    root = Path(args.root)
    cohorts = args.cohorts or sorted(p.parent.name for p in root.glob("*/results.csv"))
    if not cohorts:
        print(f"cross_cohort: no <cohort>/results.csv under {root}", file=sys.stderr)
        return 1
    results = {c: pd.read_csv(root / c / "results.csv") for c in cohorts}
    expect = args.expect or max(grid_units(r) for r in results.values())
    rows = pd.concat([cohort_rows(r, c, expect) for c, r in results.items()], ignore_index=True)
    means = mean_over_cohorts(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.concat([rows, means], ignore_index=True).to_csv(out.with_suffix(".csv"), index=False)
    text = markdown(rows, means, cohorts)
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
