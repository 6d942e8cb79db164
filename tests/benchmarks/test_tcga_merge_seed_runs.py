"""benchmarks/tcga/merge_seed_runs.py: adding a later run's methods to a committed seed folder.

A hand-built committed folder (method a) and run folder (method b): the merged files hold a's rows first,
unchanged, then b's (unit seconds of b only); a unit present in both is refused; a changed committed row is caught by check_kept."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _scripts import load_bench_script

from modaltune.errors import InputError

MERGE = load_bench_script("tcga/merge_seed_runs.py", "tcga_merge_seed_runs")


def _results(method: str, values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"method": method, "cohort": "c", "task": "survival", "metric": "c_index", "fold": range(len(values)), "seed": 1, "value": values})


def _preds(method: str, risks: list[float], surv: bool) -> pd.DataFrame:
    df = pd.DataFrame({"patient_id": [f"p{i}" for i in range(len(risks))], "task": "survival", "time": [1.0, np.nan][: len(risks)],
                       "risk": risks, "method": method, "cohort": "c", "fold": 0, "seed": 1})
    if surv:  # a column only the committed rows have: the run's rows get NaN there
        df["surv_0"] = np.float32(0.5)
    return df


def _folder(root: Path, method: str, values: list[float], risks: list[float], surv: bool, *, run: bool) -> Path:
    root.mkdir()
    _results(method, values).to_csv(root / "results.csv", index=False)
    _preds(method, risks, surv).to_parquet(root / "predictions.parquet", index=False)
    pd.DataFrame(columns=["unit", "method", "cohort", "task", "fold", "seed", "reason"]).to_csv(root / "failed_units.csv", index=False)
    (root / "summary.md").write_text(f"# Benchmark {method}\n\n## survival\n")
    (root / "config.yaml").write_text(f"name: {method}\n")
    if run:  # units of the run's method and of one not in its results.csv (merged elsewhere): left out
        for m, sec in ((method, 3.5), ("other", 9.0)):
            u = root / "units" / f"{m}__c__fold0"
            u.mkdir(parents=True)
            (u / "unit.json").write_text(json.dumps({"uid": u.name, "status": "done", "seconds": sec,
                                                     "unit": {"method": m, "cohort": "c", "fold": 0, "cohort_path": "/r/new/cohorts_simbags/tcga_c"}}))
    else:
        pd.DataFrame({"unit": ["a__c__fold0"], "method": ["a"], "cohort": ["c"], "fold": [0], "status": ["done"], "seconds": [2.0],
                      "made_in": ["/r/old"]}).to_csv(root / "unit_seconds.csv", index=False)
        (root / "loadavg.txt").write_text("08:00:00 start seed1 a 1.0\n")
    return root


def test_merge_appends_the_run_after_the_committed_rows_unchanged(tmp_path):
    into = _folder(tmp_path / "seed1", "a", [0.5, 0.625], [0.1, 0.2], True, run=False)
    run = _folder(tmp_path / "run", "b", [0.75], [0.3], False, run=True)
    (tmp_path / "load.txt").write_text("17:00:00 start seed1 b 5.0\n")
    assert MERGE.main(["--into", str(into), "--run", str(run), "--loadavg", str(tmp_path / "load.txt"), "--who", "hx"]) == 0
    res = pd.read_csv(into / "results.csv")
    assert res["method"].tolist() == ["a", "a", "b"] and res["value"].tolist() == [0.5, 0.625, 0.75]
    p = pd.read_parquet(into / "predictions.parquet")
    assert p["method"].tolist() == ["a", "a", "b"] and p["risk"].tolist() == [0.1, 0.2, 0.3]
    assert p["surv_0"].iloc[:2].tolist() == [0.5, 0.5] and np.isnan(p["surv_0"].iloc[2])
    assert np.isnan(p["time"].iloc[1])  # a committed NaN stays NaN
    us = pd.read_csv(into / "unit_seconds.csv")
    assert us["method"].tolist() == ["a", "b"] and us["seconds"].tolist() == [2.0, 3.5] and us["made_in"].tolist() == ["/r/old", "/r/new"]
    assert (into / "loadavg.txt").read_text() == "08:00:00 start seed1 a 1.0\n17:00:00 start seed1 b 5.0 (hx)\n"
    text = (into / "summary.md").read_text()
    assert text.startswith("# Benchmark a\n\n## survival\n\n# Methods added by hx (run folder run")
    assert text.endswith("## Benchmark b\n\n### survival\n")
    assert (into / "config_hx.yaml").read_text() == "name: b\n" and (into / "config.yaml").read_text() == "name: a\n"


def test_a_unit_already_committed_is_refused(tmp_path):
    into = _folder(tmp_path / "seed1", "a", [0.5], [0.1], True, run=False)
    run = _folder(tmp_path / "run", "a", [0.9], [0.3], False, run=True)
    with pytest.raises(InputError, match="already in the committed results.csv"):
        MERGE.merge(into, run)
    assert pd.read_csv(into / "results.csv")["value"].tolist() == [0.5]  # nothing written


def test_check_kept_catches_a_changed_committed_value():
    old = _results("a", [0.5, 0.625])
    changed = pd.concat([old, _results("b", [0.75])], ignore_index=True)
    MERGE.check_kept(old, changed)
    changed.loc[1, "value"] = 0.625 + 1e-12
    with pytest.raises(AssertionError):
        MERGE.check_kept(old, changed)
