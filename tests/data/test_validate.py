"""validate_cohort lists every problem at once, errors and warnings separated."""
from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from modaltune.data.bags import write_bag_h5
from modaltune.data.validate import validate_cohort
from modaltune.testing.cohort import D, make_cohort


def _msgs(problems) -> list[str]:
    return [str(p) for p in problems]


def _find(problems, *needles) -> str:
    hits = [m for m in _msgs(problems) if all(n in m for n in needles)]
    assert hits, f"no problem mentions {needles}; got:\n" + "\n".join(_msgs(problems))
    return hits[0]


def test_good_cohort_has_only_the_missing_file_warning(tmp_path):
    root = tmp_path / "toy"
    make_cohort(root)
    rep = validate_cohort(root)
    assert rep.ok, str(rep)
    w = _find(rep.warnings, "expected feature file missing", "1 slide(s) of 1 patient(s)")
    assert "missing.h5" in w
    # the in-memory path gives the same verdict
    from modaltune.data.cohort import Cohort

    assert validate_cohort(Cohort.load(root)).ok


def test_every_problem_is_listed_at_once(tmp_path):
    root = tmp_path / "bad"
    make_cohort(root)
    p = pd.read_csv(root / "patients.csv", dtype={"patient_id": str})
    p.loc[1, "subtype"] = "z"  # unknown class label, P01
    p.loc[2, "time"] = -3.0  # negative time, P02
    p.loc[3, "time"] = np.nan  # NaN time with event, P03
    p.loc[4, "event"] = 2  # event not in {0,1}, P04
    p = pd.concat([p, p.iloc[[5]]])  # duplicate id P05
    p.to_csv(root / "patients.csv", index=False)
    cl = pd.read_csv(root / "clinical.csv", dtype={"patient_id": str})
    cl.loc[cl.patient_id == "P06", "age"] = 130  # outside schema
    cl.loc[cl.patient_id == "P07", "sex"] = "X"  # unknown category
    cl.to_csv(root / "clinical.csv", index=False)
    rna = pd.read_parquet(root / "omics/rna.parquet")
    rna.loc["P08", "MYC"] = np.nan
    rna.to_parquet(root / "omics/rna.parquet")
    # bags: truncated, wrong dim, NaN, empty, coords wrong shape
    good = (root / "bags/P09_0.h5").read_bytes()
    (root / "bags/P09_0.h5").write_bytes(good[: len(good) // 2])
    write_bag_h5(root / "bags/P10_0.h5", np.zeros((4, D + 4), np.float16), np.zeros((4, 2), np.int64), patch_size_level0=256, encoder="toyenc")
    nan = np.zeros((3, D), np.float16)
    nan[1, 1] = np.nan
    with h5py.File(root / "bags/P11_0.h5", "w") as h:
        h["features"], h["coords"] = nan, np.zeros((3, 2), np.int64)
    with h5py.File(root / "bags/P00_0.h5", "w") as h:
        h["features"], h["coords"] = np.zeros((0, D), np.float16), np.zeros((0, 2), np.int64)
    with h5py.File(root / "bags/P03_0.h5", "w") as h:
        h["features"], h["coords"] = np.zeros((5, D), np.float16), np.zeros((5, 3), np.int64)
    write_bag_h5(root / "bags/P04_0.h5", np.zeros((4, D), np.float16), np.zeros((4, 2), np.int64), patch_size_level0=256, encoder="other")
    (root / "splits").mkdir()
    pd.DataFrame(
        {"fold": [0, 0, 0, 0], "partition": ["train", "test", "train", "val"], "patient_id": ["P00", "P00", "P01", "GHOST"]}
    ).to_csv(root / "splits/kfold.csv", index=False)

    rep = validate_cohort(root)
    assert not rep.ok
    errs = rep.errors
    _find(errs, "patients.csv", "duplicate patient id", "'P05'")
    _find(errs, "unknown class label 'z'", "'P01'")
    _find(errs, "negative survival time", "'P02'")
    _find(errs, "NaN/missing survival time", "'P03'")
    _find(errs, "event values ['2']", "'P04'")
    _find(errs, "clinical.csv:age", "patient 'P06', field 'age'", "above the schema maximum 120")
    _find(errs, "clinical.csv:sex", "patient 'P07', field 'sex'", "'X'")
    _find(errs, "rna.parquet", "NaN/inf", "'P08'", "'MYC'")
    _find(errs, "P09_0.h5", "patient 'P09'", "truncated")
    _find(errs, "P10_0.h5", "feature dim 12 does not match the manifest's feature_dim 8")
    _find(errs, "P11_0.h5", "NaN/inf")
    _find(errs, "P00_0.h5", "empty bag")
    _find(errs, "P03_0.h5", "coords must have shape")
    _find(errs, "P04_0.h5", "encoder 'other' does not match the manifest's encoder 'toyenc'")
    _find(errs, "kfold.csv", "fold 0", "'P00' in ['test', 'train']")
    _find(errs, "kfold.csv", "not in the cohort", "'GHOST'")
    assert len(errs) >= 16
    _find(rep.warnings, "expected feature file missing")
    assert all(p.severity == "warning" for p in rep.warnings) and all(p.severity == "error" for p in errs)
    assert all("\n" not in str(p) for p in rep.problems)


def test_manifest_schema_error_is_reported(tmp_path):
    root = tmp_path / "m"
    make_cohort(root)
    text = (root / "cohort.yaml").read_text().replace("kind: survival", "kind: survivall")
    (root / "cohort.yaml").write_text(text)
    rep = validate_cohort(root)
    msg = _find(rep.errors, "cohort.yaml")
    assert "survivall" in msg or "kind" in msg


def test_missing_directory_and_tables(tmp_path):
    rep = validate_cohort(tmp_path / "nowhere")
    _find(rep.errors, "cohort directory not found")
    root = tmp_path / "t"
    make_cohort(root)
    (root / "omics/rna.parquet").unlink()
    (root / "patients.csv").unlink()
    rep = validate_cohort(root)
    _find(rep.errors, "patients.csv", "file not found")
    _find(rep.errors, "rna.parquet", "not found")


def test_mixed_dims_without_manifest_dim(tmp_path):
    root = tmp_path / "mix"
    make_cohort(root)
    y = (root / "cohort.yaml").read_text().replace("feature_dim: 8", "feature_dim: null")
    (root / "cohort.yaml").write_text(y)
    write_bag_h5(root / "bags/P10_0.h5", np.zeros((4, 16), np.float16), np.zeros((4, 2), np.int64), patch_size_level0=256, encoder="toyenc")
    rep = validate_cohort(root)
    msg = _find(rep.errors, "mixed feature dims across the cohort")
    assert "P10_0.h5" in msg and "dim 16: 1 file(s)" in msg


def test_max_bags_limits_reading(tmp_path):
    root = tmp_path / "mb"
    make_cohort(root)
    with h5py.File(root / "bags/P11_0.h5", "w") as h:  # last listed bag is broken
        h["coords"] = np.zeros((2, 2), np.int64)
    assert not validate_cohort(root).ok
    rep = validate_cohort(root, max_bags=3)
    assert rep.ok and _find(rep.warnings, "checked 3 of")
    assert validate_cohort(root, check_bags=False).ok


def test_simulated_cohort_validates(tmp_path):
    sim = pytest.importorskip("modaltune.data.simulate")
    cohort = sim.simulate_cohort(tmp_path / "sim", preset="tiny", n_patients=20, seed=1)
    rep = validate_cohort(cohort.root)
    assert rep.ok, str(rep)
