"""benchmarks/missing_grid/check_masks.py: on a real (tiny) grid run it finds no problem, and it names
the unit and the patient when a unit predicted a patient twice, missed one or predicted one from
another fold, when a unit's prediction file is gone, and when masks.csv disagrees with the masks the
library recomputes. Every corruption must turn the exit status to 1: a check_masks that stops
checking fails these tests."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _scripts import load_bench_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

METHODS = ("ef-late", "ef-early")  # labels are file-safe, so preds/<setting>__f<fold>__s0__<label>.parquet
SETTINGS = ("W0_O0", "W40_O20")
FOLDS = (0,)  # one fold keeps the fixture at 4 units; the per-fold logic is the same for every fold


def _load(name: str):
    return load_bench_script(f"missing_grid/{name}.py")


CHECK = _load("check_masks")


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> tuple[Path, Path]:
    """(cohort, run): a 30-patient simulated cohort (3 folds) and a finished grid run on it,
    2 methods x 2 settings x fold 0 x seed 0 = 4 units (embedding_fusion: a few seconds)."""
    from modaltune.data.simulate import simulate_cohort

    root = tmp_path_factory.mktemp("check_masks")
    cohort = root / "tiny"
    simulate_cohort(cohort, preset="tiny", seed=0, n_patients=30, patches=(16, 48), slides_per_patient=(1, 1), n_folds=3)
    cfg = {"task": "survival", "split_seed": 0, "settings": list(SETTINGS), "seeds": [0], "trainer": {"max_epochs": 1, "batch_size": 4},
           "methods": [{"label": m, "name": "embedding_fusion", "modalities": ["slide", "rna"], "params": {"fusion": m.split("-")[1]}}
                       for m in METHODS]}
    (root / "grid.yaml").write_text(yaml.safe_dump(cfg))
    run = root / "run"
    args = ["--config", str(root / "grid.yaml"), "--cohort", str(cohort), "--out", str(run), "--split", "kfold3.csv", "--folds", *map(str, FOLDS)]
    assert _load("run_grid").main(args) == 0
    assert (pd.read_csv(run / "results.csv")["status"] == "done").sum() == 4
    return cohort, run


def _check(cohort: Path, run: Path, out: Path) -> tuple[int, dict]:
    rc = CHECK.main(["--run", str(run), "--cohort", str(cohort), "--split", "kfold3.csv", "--out", str(out)])
    return rc, json.loads(out.read_text())


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("work"))
    return dest


def _pred(run: Path, setting: str, fold: int, method: str) -> Path:
    return run / "preds" / f"{setting}__f{fold}__s0__{method}.parquet"


def test_clean_run_has_no_problems(grid, tmp_path):
    cohort, run = grid
    rc, out = _check(cohort, run, tmp_path / "check.json")
    assert rc == 0 and out["problems"] == []
    assert out["units_checked"] == 4 and out["setting_folds"] == 2
    sha = out["mask_sha256_16"]
    assert sorted(sha) == sorted(f"{s}/f{f}" for s in SETTINGS for f in FOLDS)
    # two different masks (different drop rates), each hashed to 16 hex digits
    assert len(set(sha.values())) == 2 and all(len(h) == 16 and int(h, 16) >= 0 for h in sha.values())
    # the hashes depend on the masks only: a second check of the same run gives the same ones
    assert _check(cohort, run, tmp_path / "again.json")[1]["mask_sha256_16"] == sha


def _twice(p: pd.DataFrame, pid: str) -> pd.DataFrame:
    return pd.concat([p, p[p["patient_id"] == pid]], ignore_index=True)


def _missed(p: pd.DataFrame, pid: str) -> pd.DataFrame:
    return p[p["patient_id"] != pid].reset_index(drop=True)


@pytest.mark.parametrize(("corrupt", "phrase"), [(_twice, "predicted more than once"), (_missed, "not predicted")])
def test_names_unit_and_patient(grid, tmp_path, corrupt, phrase):
    cohort, run = grid
    bad = _copy(run, tmp_path / "run")
    f = _pred(bad, "W40_O20", 0, "ef-early")
    p = pd.read_parquet(f)
    pid = sorted(p["patient_id"])[3]
    corrupt(p, pid).to_parquet(f)
    rc, out = _check(cohort, bad, tmp_path / "check.json")
    assert rc == 1
    assert len(out["problems"]) == 1  # only the corrupted unit; its sibling method and the other units are fine
    line = out["problems"][0]
    assert line.startswith("ef-early W40_O20 fold 0 seed 0:")
    assert f"{phrase}: {pid}" in line


def test_names_patient_from_another_fold(grid, tmp_path):
    cohort, run = grid
    bad = _copy(run, tmp_path / "run")
    from modaltune.data.splits import SplitSet

    stranger = sorted(SplitSet.load(cohort / "splits" / "kfold3.csv").folds[1].test)[0]  # a fold-1 patient
    f = _pred(bad, "W0_O0", 0, "ef-late")
    p = pd.read_parquet(f)
    assert stranger not in set(p["patient_id"])
    pd.concat([p, p.iloc[[0]].assign(patient_id=stranger)], ignore_index=True).to_parquet(f)
    rc, out = _check(cohort, bad, tmp_path / "check.json")
    assert rc == 1 and len(out["problems"]) == 1
    assert out["problems"][0].startswith("ef-late W0_O0 fold 0 seed 0:") and f"not in the fold: {stranger}" in out["problems"][0]


def test_missing_prediction_file(grid, tmp_path):
    cohort, run = grid
    bad = _copy(run, tmp_path / "run")
    _pred(bad, "W0_O0", 0, "ef-late").unlink()
    rc, out = _check(cohort, bad, tmp_path / "check.json")
    assert rc == 1 and out["problems"] == ["ef-late W0_O0 fold 0 seed 0: no prediction file"]
    assert out["units_checked"] == 3


@pytest.mark.parametrize("column", ["slide_dropped", "omics_dropped", "patients"])
def test_mask_counts_that_differ(grid, tmp_path, column):
    cohort, run = grid
    bad = _copy(run, tmp_path / "run")
    masks = pd.read_csv(bad / "masks.csv")
    row = (masks["setting"] == "W40_O20") & (masks["fold"] == 0) & (masks["partition"] == "test")
    assert row.sum() == 1
    masks.loc[row, column] += 1
    masks.to_csv(bad / "masks.csv", index=False)
    rc, out = _check(cohort, bad, tmp_path / "check.json")
    assert rc == 1 and len(out["problems"]) == 1
    assert out["problems"][0].startswith("W40_O20 fold 0 test: recomputed mask counts") and "differ from masks.csv" in out["problems"][0]


def test_mask_row_absent(grid, tmp_path):
    cohort, run = grid
    bad = _copy(run, tmp_path / "run")
    masks = pd.read_csv(bad / "masks.csv")
    masks[~((masks["setting"] == "W0_O0") & (masks["fold"] == 0) & (masks["partition"] == "train"))].to_csv(bad / "masks.csv", index=False)
    rc, out = _check(cohort, bad, tmp_path / "check.json")
    assert rc == 1 and [p.split(":")[0] for p in out["problems"]] == ["W0_O0 fold 0 train"]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(unit=st.tuples(st.sampled_from(SETTINGS), st.sampled_from(FOLDS), st.sampled_from(METHODS)),
       k=st.integers(0, 9), twice=st.booleans())
def test_any_unit_any_patient(grid, unit, k, twice):
    """Whichever unit and patient is corrupted, exactly that unit is reported, naming that patient."""
    cohort, run = grid
    setting, fold, method = unit
    with tempfile.TemporaryDirectory() as d:
        bad = _copy(run, Path(d) / "run")
        f = _pred(bad, setting, fold, method)
        p = pd.read_parquet(f)
        pid = sorted(p["patient_id"])[k]
        (_twice if twice else _missed)(p, pid).to_parquet(f)
        rc, out = _check(cohort, bad, Path(d) / "check.json")
    assert rc == 1 and len(out["problems"]) == 1
    assert out["problems"][0].startswith(f"{method} {setting} fold {fold} seed 0:")
    assert f"{'predicted more than once' if twice else 'not predicted'}: {pid}" in out["problems"][0]
