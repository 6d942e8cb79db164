"""Slides that extraction flagged 'no_tissue' count as missing (reported), not as errors."""
import h5py
import numpy as np

from modaltune.data.bags import is_no_tissue_bag, write_bag_h5
from modaltune.data.cohort import Cohort
from modaltune.data.dataset import CohortPreprocessor, summarize_exclusions
from modaltune.data.simulate import simulate_cohort
from modaltune.data.validate import validate_cohort


def _flag_empty(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=np.zeros((0, 16), np.float32))
        f.create_dataset("coords", data=np.zeros((0, 2), np.int64))
        f.attrs["status"] = "no_tissue"


def test_no_tissue_bag_is_missing_and_reported(tmp_path):
    cohort = simulate_cohort(tmp_path / "sim", preset="tiny", seed=3)
    pid = cohort.slides["patient_id"].iloc[0]
    paths = cohort.slide_paths(pid)
    for p in paths:
        _flag_empty(p)
    assert all(is_no_tissue_bag(p) for p in paths)
    cohort = Cohort.load(tmp_path / "sim")
    report = validate_cohort(tmp_path / "sim")
    assert report.ok, str(report)
    assert any("no_tissue" in w.message for w in report.warnings)
    prep = CohortPreprocessor(cohort).fit(cohort.patient_ids)
    assert pid not in prep.slide_paths
    excl = summarize_exclusions(cohort)
    rows = excl.patients[(excl.patients["patient_id"] == pid) & (excl.patients["name"] == "slide")]
    assert rows["reason"].str.contains("no tissue").any(), rows


def test_unflagged_empty_bag_is_still_an_error(tmp_path):
    p = tmp_path / "x.h5"
    write_bag_h5(p, np.ones((3, 4), np.float32), np.zeros((3, 2), np.int64) + np.arange(3)[:, None], patch_size_level0=256, encoder="e")
    assert not is_no_tissue_bag(p)
