"""Read a benchmark run folder through its public files (no runner internals).

A run folder (``modaltune benchmark ... --out RUN``) holds ``results.csv`` (method, cohort, task,
metric, fold, seed, value), ``predictions.parquet`` (one row per patient x unit of out-of-fold
predictions), ``summary.md`` (protocol line, bootstrap 95% CI table), ``exclusions.csv``,
``config.yaml`` and ``units/<uid>/`` (``unit.json``, ``train_log.csv`` for Lightning methods).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from modaltune.data.simulate import SIMULATED_LABEL  # re-exported: the simulator owns the label
from modaltune.errors import InputError

__all__ = ["RunFiles", "load_run", "markdown_table"]


def markdown_table(text: str, heading: str) -> pd.DataFrame:
    """The first pipe table after the line starting with ``heading`` (all cells as strings)."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith(heading)), None)
    if start is None:
        return pd.DataFrame()
    rows = []
    for ln in lines[start + 1:]:
        if ln.startswith("#"):
            break
        if ln.startswith("|"):
            rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
        elif rows:
            break
    if len(rows) < 2:
        return pd.DataFrame()
    return pd.DataFrame(rows[2:], columns=rows[0])  # rows[1] is the |---| rule


@dataclass
class RunFiles:
    """What a report needs from one run folder.

    ``predictions`` has one row per patient x (method, cohort, task, fold, seed); ``ci`` holds the
    summary's bootstrap table (method, cohort, task, seed, metric, estimate, lo, hi as floats);
    ``train_logs`` maps a unit id to ``(unit dict, its train_log.csv)``.
    """

    run_dir: Path
    name: str
    protocol: str
    simulated: bool
    results: pd.DataFrame
    predictions: pd.DataFrame
    ci: pd.DataFrame
    exclusions: pd.DataFrame
    train_logs: dict[str, tuple[dict, pd.DataFrame]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``SIMULATED (...)`` for a simulated cohort, else empty."""
        return SIMULATED_LABEL if self.simulated else ""

    def tasks(self, kind: str) -> list[tuple[str, str]]:
        """``(cohort, task)`` pairs whose predictions are of ``kind`` (survival: a ``risk`` column;
        classification: ``prob_*`` columns), in file order."""
        p = self.predictions
        if p.empty:
            return []
        out = []
        for (cohort, task), g in p.groupby(["cohort", "task"], sort=False):
            if (kind == "survival" and "risk" in g and g["risk"].notna().any()) or (kind == "classification" and prob_columns(g)):
                out.append((cohort, task))
        return out


def prob_columns(df: pd.DataFrame) -> list[str]:
    """``prob_<class>`` columns that hold values in ``df`` (class order as stored)."""
    return [c for c in df.columns if c.startswith("prob_") and df[c].notna().any()]


def _ci_table(summary: str) -> pd.DataFrame:
    t = markdown_table(summary, "## Bootstrap 95% CIs")
    if t.empty or "CI" not in t:
        return pd.DataFrame(columns=["method", "cohort", "task", "seed", "metric", "estimate", "lo", "hi"])
    bounds = t["CI"].str.extract(r"\[\s*([-\d.eE+na]+)\s*,\s*([-\d.eE+na]+)\s*\]")
    t = t.assign(estimate=pd.to_numeric(t["estimate"], errors="coerce"), lo=pd.to_numeric(bounds[0], errors="coerce"),
                 hi=pd.to_numeric(bounds[1], errors="coerce"), seed=pd.to_numeric(t["seed"], errors="coerce"))
    return t.drop(columns=["CI"])


def _is_simulated(run_dir: Path, protocol: str, units: list[dict]) -> bool:
    """SIMULATED when the summary says so or a cohort manifest the units read says ``synthetic: true``."""
    if "SIMULATED" in protocol:
        return True
    import yaml

    for path in {u.get("cohort_path") for u in units if u.get("cohort_path")}:
        manifest = Path(path) / "cohort.yaml"
        if manifest.exists() and (yaml.safe_load(manifest.read_text()) or {}).get("synthetic"):
            return True
    return False


def load_run(run_dir: str | Path) -> RunFiles:
    """Read a benchmark run folder.

    Raises:
        InputError: the folder holds no ``results.csv`` (not a finished benchmark run folder).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "results.csv").exists():
        raise InputError("not a benchmark run folder (no results.csv)", where=str(run_dir),
                         fix="pass the --out folder of a finished `modaltune benchmark` (or demo part: RUN/simulated, RUN/real)")
    summary = (run_dir / "summary.md").read_text() if (run_dir / "summary.md").exists() else ""
    name = next((ln[2:].strip() for ln in summary.splitlines() if ln.startswith("# ")), run_dir.name)
    proto = next((ln for ln in summary.splitlines() if ln.startswith("**Protocol:**")), "")
    protocol = re.sub(r"\*\*", "", proto.split(" · ")[0]).strip()
    units, logs = [], {}
    for d in sorted((run_dir / "units").glob("*")) if (run_dir / "units").is_dir() else []:
        if not (d / "unit.json").exists():
            continue
        unit = json.loads((d / "unit.json").read_text()).get("unit", {})
        units.append(unit)
        if (d / "train_log.csv").exists():
            logs[d.name] = (unit, pd.read_csv(d / "train_log.csv"))
    preds = pd.read_parquet(run_dir / "predictions.parquet") if (run_dir / "predictions.parquet").exists() else pd.DataFrame()
    excl = pd.read_csv(run_dir / "exclusions.csv") if (run_dir / "exclusions.csv").exists() else pd.DataFrame()
    return RunFiles(run_dir, name, protocol, _is_simulated(run_dir, protocol, units), pd.read_csv(run_dir / "results.csv"),
                    preds, _ci_table(summary), excl, logs)
