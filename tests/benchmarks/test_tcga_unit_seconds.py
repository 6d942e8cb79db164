"""benchmarks/tcga/unit_seconds.py: the per-unit timing table of a (resumed) run folder."""
from __future__ import annotations

import json

import pandas as pd
from _scripts import load_bench_script


def _mod():
    return load_bench_script("tcga/unit_seconds.py")


def _unit(uid: str, cohort: str, fold: int, root: str) -> dict:
    return {"method": "snn (omics)", "cohort": cohort, "cohort_path": f"{root}/cohorts_simbags/tcga_x", "fold": fold}


def test_rows_name_status_seconds_and_the_session_that_made_each_unit(tmp_path):
    units = tmp_path / "run" / "units"
    done, failed, running = units / "snn__a__fold0", units / "survpath__b__fold1", units / "mcat__a__fold2"
    for d in (done, failed, running):
        d.mkdir(parents=True)
    (done / "unit.json").write_text(json.dumps({"uid": "snn__a__fold0", "status": "done", "seconds": 12.5,
                                                "unit": _unit("snn__a__fold0", "porpoise_a", 0, "/runs/old/tcga")}))
    (failed / "FAILED.json").write_text(json.dumps({"uid": "survpath__b__fold1", "status": "failed", "reason": "no rna",
                                                    "unit": _unit("survpath__b__fold1", "porpoise_b", 1, "/runs/new/tcga")}))
    out = tmp_path / "unit_seconds.csv"
    assert _mod().main([str(tmp_path / "run"), "--out", str(out)]) == 0
    df = pd.read_csv(out)
    # the unit still running (no record) is not listed; rows are sorted by folder name
    assert df["unit"].tolist() == ["snn__a__fold0", "survpath__b__fold1"]
    assert df["status"].tolist() == ["done", "failed"]
    assert df["seconds"].iloc[0] == 12.5 and pd.isna(df["seconds"].iloc[1])
    assert df["made_in"].tolist() == ["/runs/old/tcga", "/runs/new/tcga"]
    assert df["fold"].tolist() == [0, 1]
