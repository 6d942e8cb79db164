"""Wrong task labels and duplicate patients fail at ``Cohort.load`` / ``Cohort.targets`` (one line
naming file, column, patient and fix); missing labels are masked and counted, not errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modaltune.data.cohort import Cohort, CohortManifest, TaskSpec
from modaltune.data.labels import label_problems
from modaltune.errors import InputError
from modaltune.testing.cohort import make_cohort


def _edit_patients(root: Path, fn) -> None:
    p = pd.read_csv(root / "patients.csv", dtype={"patient_id": str})
    p = fn(p)
    p.to_csv(root / "patients.csv", index=False)


def _set(pid: str, col: str, value):
    def fn(p):
        p[col] = p[col].astype(object)
        p.loc[p.patient_id == pid, col] = value
        return p

    return fn


@pytest.fixture
def toy(tmp_path):
    root = tmp_path / "toy"
    make_cohort(root)
    return root


@pytest.mark.parametrize(
    "edit,needles",
    [
        (lambda p: pd.concat([p, p.iloc[[5]]]), ["patients.csv", "1 duplicate patient id(s): 'P05'", "keep one row per patient"]),
        (_set("P02", "time", -3.0), ["patients.csv:time", "negative survival time", "'P02'", "times must be >= 0"]),
        (_set("P03", "time", np.nan), ["patients.csv:time", "NaN/missing survival time but an event recorded", "'P03'", "leave both time and event empty"]),
        (_set("P03", "time", "soon"), ["patients.csv:time", "non-numeric survival time", "'P03'"]),
        (_set("P03", "time", "inf"), ["patients.csv:time", "infinite survival time", "'P03'"]),
        (_set("P04", "event", 2), ["patients.csv:event", "event values ['2'] not in {0, 1}", "'P04'", "1 = event observed"]),
        (_set("P04", "event", np.nan), ["patients.csv:event", "survival time without an event value", "'P04'"]),
        (_set("P01", "subtype", "z"), ["patients.csv:subtype", "unknown class label 'z'", "'P01'", "exclude_values"]),
        (_set("P01", "score", "high"), ["patients.csv:score", "non-numeric or infinite value", "'P01'"]),
    ],
)
def test_load_fails_on_wrong_labels(toy, edit, needles):
    _edit_patients(toy, edit)
    with pytest.raises(InputError) as exc:
        Cohort.load(toy)
    msg = str(exc.value)
    assert "\n" not in msg and str(toy) in msg and "(fix: " in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_several_wrong_labels_point_to_validate(toy):
    _edit_patients(toy, lambda p: _set("P04", "event", 2)(_set("P02", "time", -1.0)(p)))
    with pytest.raises(InputError, match=r"negative survival time .*'P02'.*\+1 more problems; run `modaltune data validate`"):
        Cohort.load(toy)


def test_duplicate_ids_in_modality_tables(toy):
    cl = pd.read_csv(toy / "clinical.csv", dtype={"patient_id": str})
    pd.concat([cl, cl.iloc[[0]]]).to_csv(toy / "clinical.csv", index=False)
    with pytest.raises(InputError, match=r"clinical.csv: 1 duplicate patient id\(s\): 'P00'"):
        Cohort.load(toy)


def test_missing_labels_are_masked_and_counted(toy):
    # blank classification cell, and both survival cells empty: masked, counted, no error
    _edit_patients(toy, lambda p: _set("P09", "time", np.nan)(_set("P09", "event", np.nan)(_set("P08", "subtype", np.nan)(p))))
    c = Cohort.load(toy)
    sub = c.targets("subtype")
    assert sub.reasons == {"excluded value '-1'": 1, "missing": 1}
    assert not sub.mask[c.patient_ids.index("P08")] and sub.label[c.patient_ids.index("P08")] == -1
    os_ = c.targets("os")
    assert os_.reasons == {"missing": 2}  # P07 (toy) and P09
    assert os_.mask.sum() == 10 and np.isnan(os_.time[~os_.mask]).all()


def test_in_memory_cohort_fails_at_targets_and_on_duplicates():
    m = CohortManifest(name="m", tasks=[TaskSpec(name="os", kind="survival", time_column="t", event_column="e")])
    c = Cohort(m, pd.DataFrame({"patient_id": ["a", "b"], "t": [1.0, -2.0], "e": [1, 0]}))
    with pytest.raises(InputError, match=r"patients:t: task 'os': negative survival time for 1 patient\(s\): 'b'"):
        c.targets("os")
    assert c.targets("os", ["a"]).mask.tolist() == [True]  # the subset asked for is valid
    with pytest.raises(InputError, match=r"not in cohort 'm'"):
        c.targets("os", ["zz"])
    with pytest.raises(InputError, match=r"patients: 1 duplicate patient id\(s\): 'a'"):
        Cohort(m, pd.DataFrame({"patient_id": ["a", "a"], "t": [1.0, 2.0], "e": [1, 0]}))


def test_training_entry_point_fails_before_training(toy, tmp_path):
    """``modaltune fit`` loads the cohort with ``Cohort.load``: a wrong label stops it at once."""
    import time

    from modaltune.config import load_config
    from modaltune.training.experiment_config import ExperimentConfig
    from modaltune.training.trainer import fit

    _edit_patients(toy, _set("P04", "event", 2))
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"data: {{cohorts: [{toy}]}}\nmethod: {{name: mean_pool}}\nsplit: {{kfold: 2}}\ntrainer: {{max_epochs: 1}}\n")
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"patients.csv:event: task 'os': event values \['2'\]"):
        fit(load_config(cfg, ExperimentConfig), out_dir=tmp_path / "run")
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "run" / "checkpoints").exists()


_cell = st.one_of(st.none(), st.floats(min_value=0, max_value=1e4, allow_nan=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(_cell, st.sampled_from([None, 0, 1])), min_size=1, max_size=30), bad=st.integers(0, 29))
def test_survival_rule_property(rows, bad):
    """Valid tables: usable == both cells present; one negative time makes it an error naming that patient."""
    spec = TaskSpec(name="os", kind="survival", time_column="t", event_column="e")
    ids = [f"p{i}" for i in range(len(rows))]
    t = [r[0] for r in rows]
    e = [r[1] for r in rows]
    pats = pd.DataFrame({"t": pd.array(t, dtype="Float64"), "e": pd.array(e, dtype="Int64")}, index=pd.Index(ids, name="patient_id"))
    problems, usable = label_problems(spec, pats)
    half = [(ti is None) != (ei is None) for ti, ei in zip(t, e)]
    assert bool(problems) == any(half)
    assert usable.tolist() == [ti is not None and ei is not None for ti, ei in zip(t, e)]
    k = bad % len(rows)
    pats.iloc[k, 0], pats.iloc[k, 1] = -1.0, 1
    problems, usable = label_problems(spec, pats)
    neg = [p for p in problems if "negative survival time" in p.message]
    assert len(neg) == 1 and neg[0].patient_ids == (ids[k],) and not usable[k]
