"""Add the methods of a later benchmark run to a committed seed folder without touching its rows (issue 14).

    python benchmarks/tcga/merge_seed_runs.py --into benchmarks/tcga/coattn_seeds/seed1 \
        --run /work/runs/h25b/agg/seed1_complete --units /work/runs/h25b/tcga/coattn_mcat5_seed1_simbags \
        [--loadavg /work/runs/h25b/loadavg_seed1.txt] [--who h25b]

The committed folder (``--into``) holds an earlier session's aggregated run of some methods at one
training seed; the run folders it came from no longer exist, so the benchmark runner cannot aggregate
old and new units together. This script appends the run folder's aggregated files (same config, same
simulated bags and folds, other methods) to the committed ones:

- ``results.csv``, ``predictions.parquet``, ``failed_units.csv``: committed rows first, unchanged, then the
  run's rows. Refused when a (method, cohort, task, fold, seed) unit is in both (a method is added,
  never replaced).
- ``unit_seconds.csv``: committed rows, then :func:`unit_seconds.unit_rows` of the run folder (``--units``: the
  folder holding units/, when ``--run`` is a copy of its aggregated files), only the units of methods in
  the run's results.csv (the run folder may also hold units of methods merged elsewhere).
- ``loadavg.txt``: committed lines, then the lines of ``--loadavg``.
- ``summary.md``: the committed summary, then the run's own summary.md under a heading naming the run.
- ``config_<who>.yaml``: the run's config.yaml (the committed config.yaml stays).

After writing, every committed row is read back and checked equal value for value (:func:`check_kept`).
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path

import pandas as pd

from modaltune.benchmark.run_folder import atomic_write_csv, atomic_write_parquet
from modaltune.errors import InputError

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("tcga_unit_seconds", HERE / "unit_seconds.py")
_US = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_US)

#: columns naming one unit's rows in results.csv / predictions.parquet / failed_units.csv
UNIT_KEY = ["method", "cohort", "task", "fold", "seed"]


def _read(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def appended(old: pd.DataFrame, new: pd.DataFrame, what: str) -> pd.DataFrame:
    """``old`` rows then ``new`` rows (columns: old's, then any new ones); refuses a unit present in both."""
    key = [k for k in UNIT_KEY if k in old.columns and k in new.columns]
    if len(old) and len(new) and key:
        both = old[key].drop_duplicates().merge(new[key].drop_duplicates(), on=key)
        if len(both):
            raise InputError(f"{len(both)} unit(s) of the run are already in the committed {what}, e.g. {both.iloc[0].to_dict()}",
                             where=what, fix="merge only methods the committed folder does not hold")
    if new.empty:
        return old
    if old.empty:
        return new
    return pd.concat([old, new], ignore_index=True)


def check_kept(old: pd.DataFrame, merged: pd.DataFrame) -> None:
    """Raise unless the first ``len(old)`` rows of ``merged`` equal ``old`` value for value (NaN == NaN)."""
    head = merged.iloc[: len(old)][list(old.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(head, old.reset_index(drop=True), check_exact=True)


def merge(into: Path, run: Path, loadavg: Path | None = None, who: str = "added", units: Path | None = None) -> dict[str, int]:
    """Append ``run``'s aggregated files to the committed folder ``into`` (module docstring); ``units``:
    the run folder holding units/ (default ``run``). Returns {file name: rows added}."""
    methods = set(pd.read_csv(run / "results.csv")["method"])
    added = {}
    for name in ("results.csv", "predictions.parquet", "failed_units.csv"):
        old, new = _read(into / name), _read(run / name)
        out = appended(old, new, name)
        (atomic_write_parquet if name.endswith(".parquet") else atomic_write_csv)(into / name, out)
        check_kept(old, _read(into / name))
        added[name] = len(new)
    old = pd.read_csv(into / "unit_seconds.csv")
    new = _US.unit_rows(units or run)
    new = new[new["method"].isin(methods)].reset_index(drop=True)
    atomic_write_csv(into / "unit_seconds.csv", appended(old, new, "unit_seconds.csv"))
    check_kept(old, pd.read_csv(into / "unit_seconds.csv"))
    added["unit_seconds.csv"] = len(new)
    if loadavg is not None:
        lines = loadavg.read_text().splitlines()
        with open(into / "loadavg.txt", "a") as fh:
            fh.write("".join(f"{line} ({who})\n" for line in lines))
        added["loadavg.txt"] = len(lines)
    text = (into / "summary.md").read_text().rstrip("\n")
    run_text = (run / "summary.md").read_text().replace("\n#", "\n##")  # one heading level down, under ours
    (into / "summary.md").write_text(f"{text}\n\n# Methods added by {who} (run folder {(units or run).name}, its own summary below)\n\n#{run_text}")
    shutil.copyfile(run / "config.yaml", into / f"config_{who}.yaml")
    return added


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--into", type=Path, required=True, help="committed seed folder (results.csv, predictions.parquet, ...)")
    ap.add_argument("--run", type=Path, required=True, help="aggregated benchmark run folder of the methods to add")
    ap.add_argument("--units", type=Path, default=None, help="run folder holding units/ when --run is a copy of its aggregated files")
    ap.add_argument("--loadavg", type=Path, default=None, help="load-average lines of the run's calls, appended to loadavg.txt")
    ap.add_argument("--who", default="added", help="session name: labels the summary heading, the loadavg lines and config_<who>.yaml")
    args = ap.parse_args(argv)
    added = merge(args.into, args.run, args.loadavg, args.who, args.units)
    print(", ".join(f"{k}: +{v}" for k, v in added.items()) + f" -> {args.into} (committed rows checked unchanged)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
