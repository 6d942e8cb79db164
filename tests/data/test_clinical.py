"""Clinical field encoding fitted on training patients."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modaltune.data.clinical import ClinicalEncoder
from modaltune.data.cohort import ClinicalField
from modaltune.errors import InputError

FIELDS = [
    ClinicalField(name="age", kind="numeric", min=0, max=120),
    ClinicalField(name="stage", kind="ordinal", categories=["I", "II", "III", "IV"]),
    ClinicalField(name="sex", kind="categorical", categories=["F", "M"]),
]


def _df(rows):
    return pd.DataFrame(rows, columns=["patient_id", "age", "stage", "sex"]).set_index("patient_id")


TRAIN = _df([("a", 40.0, "I", "F"), ("b", 60.0, "IV", "M"), ("c", np.nan, "II", np.nan)])


def test_feature_names_and_known_values():
    enc = ClinicalEncoder(FIELDS).fit(TRAIN)
    assert enc.feature_names == ["age", "age__missing", "stage", "stage__missing", "sex=F", "sex=M", "sex=missing"]
    assert enc.n_features == 7
    x = enc.transform(_df([("t1", 70.0, "III", "M"), ("t2", np.nan, np.nan, np.nan), ("t3", 50.0, "II", "F")]).astype(object))
    # age: train mean 50, population std 10 -> (70 - 50) / 10 = 2
    np.testing.assert_allclose(x[0], [2.0, 0, 2 / 3, 0, 0, 1, 0], rtol=1e-6)
    np.testing.assert_allclose(x[1], [0, 1, 0, 1, 0, 0, 1])
    assert x.dtype == np.float32 and np.isfinite(x).all()


def test_numeric_category_cells_are_canonicalised():
    f = [ClinicalField(name="grade", kind="ordinal", categories=["1", "2", "3"])]
    enc = ClinicalEncoder(f).fit(pd.DataFrame({"grade": [1.0, 3.0]}, index=["a", "b"]))
    np.testing.assert_allclose(enc.transform(pd.DataFrame({"grade": [2.0]}, index=["c"])), [[0.5, 0]])


def test_fitted_on_train_only():
    enc = ClinicalEncoder(FIELDS).fit(TRAIN)
    test = _df([("t", 100.0, "I", "F")])
    a = enc.transform(TRAIN)
    enc2 = ClinicalEncoder(FIELDS).fit(TRAIN)
    enc2.transform(_df([("t", 110.0, "IV", "M")]))
    np.testing.assert_array_equal(a, enc2.transform(TRAIN))
    assert enc.transform(test)[0, 0] == pytest.approx(5.0)


@pytest.mark.parametrize(
    "row, needle",
    [
        (("p9", 130.0, "I", "F"), "patient 'p9', field 'age': value 130 is above the schema maximum 120"),
        (("p9", -1.0, "I", "F"), "patient 'p9', field 'age': value -1 is below the schema minimum 0"),
        (("p9", "old", "I", "F"), "patient 'p9', field 'age': value 'old' is not a number"),
        (("p9", 50.0, "V", "F"), "patient 'p9', field 'stage': value 'V' is not one of the declared categories"),
        (("p9", 50.0, "I", "X"), "patient 'p9', field 'sex': value 'X' is not one of the declared categories"),
    ],
)
def test_out_of_schema_values_name_patient_and_field(row, needle):
    enc = ClinicalEncoder(FIELDS).fit(TRAIN)
    bad = _df([row]).astype(object)
    with pytest.raises(InputError) as ei:
        enc.transform(bad)
    assert needle in str(ei.value) and "fix:" in str(ei.value)
    with pytest.raises(InputError, match="patient 'p9'"):
        ClinicalEncoder(FIELDS).fit(pd.concat([TRAIN.astype(object), bad]))
    assert len(enc.check(bad)) == 1


def test_absent_column_means_missing_and_no_fields():
    enc = ClinicalEncoder(FIELDS).fit(TRAIN[["age"]])
    x = enc.transform(TRAIN[["age"]])
    assert (x[:, 3] == 1).all() and (x[:, 6] == 1).all()
    empty = ClinicalEncoder([]).fit(TRAIN)
    assert empty.n_features == 0 and empty.transform(TRAIN).shape == (3, 0)
