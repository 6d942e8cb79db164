"""benchmarks/missing_grid/sim_seeds/compare_rows.py: the 'other methods' rows unchanged' check of a seed
continuation. Hand-built tables with known differences; the git route on a throwaway repository."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
from _scripts import load_bench_script

CR = load_bench_script("missing_grid/sim_seeds/compare_rows.py")


def _table() -> pd.DataFrame:
    return pd.DataFrame({"method": ["late_fusion", "late_fusion", "cmta", "mcat"],
                         "seeds": ["0 1 2", "0 1 2", "0", "0 1 2"],
                         "setting": ["W0_O60", "W60_O0", "W0_O60", "W0_O60"],
                         "delta": [0.125, -0.5, 0.25, np.nan],
                         "n_patients": [300, 300, 300, 300]})


def test_identical_tables_differ_by_zero():
    r = CR.compare_frames(_table(), _table(), exclude=["cmta"])
    assert r == {"rows": 3, "only_old": 0, "only_new": 0, "max_abs_diff": 0.0}  # NaN on both sides is equal


def test_excluded_method_may_change_and_gain_rows():
    new = _table()
    new.loc[new.method == "cmta", ["seeds", "delta"]] = ["0 1 2", 0.75]  # cmta ran: new seeds, new value
    assert CR.compare_frames(_table(), new, exclude=["cmta"])["max_abs_diff"] == 0.0
    r = CR.compare_frames(_table(), new, exclude=[])  # not excluded: its row no longer matches on 'seeds'
    assert (r["rows"], r["only_old"], r["only_new"]) == (3, 1, 1)


def test_changed_value_is_measured():
    new = _table()
    new.loc[1, "delta"] = -0.25  # |-0.25 - (-0.5)| = 0.25 exactly in binary floating point
    assert CR.compare_frames(_table(), new, exclude=["cmta"])["max_abs_diff"] == 0.25


def test_nan_on_one_side_is_infinite():
    new = _table()
    new.loc[3, "delta"] = 0.0
    assert CR.compare_frames(_table(), new, exclude=[])["max_abs_diff"] == np.inf


def test_duplicate_keys_refused():
    t = pd.concat([_table(), _table().iloc[[0]]])
    with pytest.raises(ValueError, match="not unique"):
        CR.compare_frames(t, t, exclude=[])


def test_main_against_git_revision(tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    csv = tmp_path / "paired.csv"
    _table().to_csv(csv, index=False)
    subprocess.run(git + ["add", "paired.csv"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "t"], check=True)
    new = _table()
    new.loc[2, "delta"] = 0.5  # only the excluded method changed
    new.to_csv(csv, index=False)
    out = tmp_path / "r.json"
    assert CR.main([str(csv), "--exclude", "cmta", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["unchanged"] is True
    assert CR.main([str(csv), "--out", str(out)]) == 1  # cmta not excluded: its 0.25 change is caught
    rep = json.loads(out.read_text())
    assert rep["unchanged"] is False and rep["files"][str(csv)]["max_abs_diff"] == 0.25
