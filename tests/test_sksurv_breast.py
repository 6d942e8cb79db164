"""The GSE7390 importer (scikit-survival's bundled breast cancer cohort) against the bundled arrays."""
from __future__ import annotations

import numpy as np
import pytest

from modaltune.data.sources import import_cohort, importer_cohorts
from modaltune.data.sources.sksurv_breast import GRADES, import_sksurv_breast
from modaltune.errors import InputError


@pytest.fixture(scope="module")
def bundled():
    from sksurv.datasets import load_breast_cancer

    return load_breast_cancer()


@pytest.fixture(scope="module")
def cohort():
    return import_sksurv_breast()


def test_patients_modalities_and_tasks_match_the_bundled_table(cohort, bundled):
    X, y = bundled
    assert len(cohort) == len(X) == 198
    assert [t.name for t in cohort.tasks] == ["er_status", "dmfs"]
    probes = [c for c in X.columns if c not in ("age", "size", "grade", "er")]
    rna = cohort.omics["rna"]
    assert list(rna.columns) == probes and rna.shape == (198, 76)
    np.testing.assert_allclose(rna.to_numpy(float), X[probes].to_numpy(float), rtol=1e-6)
    # ER status is a label, never an input
    assert "er" not in cohort.clinical.columns and "er" not in rna.columns
    assert [f.name for f in cohort.manifest.clinical_fields] == ["age", "size", "grade"]
    er = cohort.targets("er_status")
    assert (er.label == (X["er"].astype(str).to_numpy() == "positive").astype(int)).all()
    surv = cohort.targets("dmfs")
    np.testing.assert_array_equal(surv.time, y["t.tdm"])
    np.testing.assert_array_equal(surv.event.astype(bool), y["e.tdm"])
    assert int(surv.event.sum()) == 51


def test_unknown_grade_is_a_missing_cell_and_the_patient_is_kept(cohort, bundled):
    X, _ = bundled
    unknown = X["grade"].astype(str) == "unkown"
    assert unknown.sum() == 2
    ids = [cohort.patient_ids[i] for i in np.flatnonzero(unknown.to_numpy())]
    assert cohort.clinical.loc[ids, "grade"].isna().all()
    assert set(cohort.clinical["grade"].dropna()) <= set(GRADES)
    assert sorted(cohort.manifest.extra["grade_unknown_patients"]) == sorted(ids)


def test_stratified_split_covers_every_patient_once_with_both_classes_and_events(cohort):
    split = cohort.splits["kfold5"]
    tests = [set(f.test) for f in split.folds]
    assert len(tests) == 5
    assert set().union(*tests) == set(cohort.patient_ids)
    assert sum(len(t) for t in tests) == len(cohort)
    er, surv = cohort.targets("er_status"), cohort.targets("dmfs")
    pos = dict(zip(cohort.patient_ids, er.label))
    ev = dict(zip(cohort.patient_ids, surv.event))
    for f in split.folds:
        assert not set(f.train) & set(f.test)
        assert {pos[p] for p in f.test} == {0, 1}
        assert sum(ev[p] for p in f.test) >= 8  # 51 events over 5 folds, stratified


def test_registry_writes_a_valid_cohort_directory(tmp_path):
    from modaltune.data.cohort import Cohort
    from modaltune.data.validate import validate_cohort

    assert importer_cohorts("sksurv-breast") == ["gse7390"]
    c = import_cohort("sksurv-breast", "gse7390", out_dir=tmp_path / "c")
    assert (tmp_path / "c" / "splits" / "kfold5.csv").exists()
    back = Cohort.load(tmp_path / "c")
    assert back.manifest.synthetic is False and len(back) == 198
    assert not validate_cohort(back).errors
    assert c.splits["kfold5"].folds[0].test == back.splits["kfold5"].folds[0].test


def test_unknown_cohort_name_is_an_input_error():
    with pytest.raises(InputError, match="gse7390"):
        import_sksurv_breast("metabric")


def test_cli_import_writes_the_cohort(tmp_path):
    from modaltune.cli import main

    assert main(["data", "import", "sksurv-breast", "--out", str(tmp_path / "c"), "--folds", "4"]) == 0
    assert (tmp_path / "c" / "splits" / "kfold4.csv").exists()
    assert main(["data", "import", "sksurv-breast", "--out", str(tmp_path / "c")]) == 2  # exists, no --overwrite
