"""Stratified k-fold splits: rare strata are merged, and every merge or fallback is written into
the split's protocol (cohort.yaml / CLI / benchmark protocol line)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.data.splits import Fold, SplitSet, kfold_split
from modaltune.testing.cohort import make_cohort


def _events_per_fold(s, ids, event):
    idx = {p: i for i, p in enumerate(ids)}
    return [int(sum(event[idx[p]] for p in f.test)) for f in s.folds]


def test_issue_cohort_late_event_strata_are_merged_not_dropped():
    # 115 patients, 38 events, all events early: the "event x last time quartile" stratum has
    # 2 patients. The old code pooled rare strata into one stratum of 2 (< 5 folds) and fell back to
    # plain KFold while the protocol still said "stratified"; now the events' late bins are merged.
    ids = [f"p{i:03d}" for i in range(115)]
    event = np.zeros(115, int)
    event[:38] = 1
    time = np.concatenate([np.linspace(1, 20, 36), [200.0, 210.0], np.linspace(5, 300, 77)])
    s = kfold_split(ids, 5, time=time, event=event, stratify_name="task 'os'")
    assert "stratified by task 'os' (event x time quartile; rare strata merged: " in s.protocol
    assert "events 3 -> 2 time bins" in s.protocol  # the events fill 3 time quartiles; the late one (2) joins its neighbour
    assert "FALLBACK" not in s.protocol
    per = _events_per_fold(s, ids, event)
    assert sum(per) == 38 and max(per) - min(per) <= 1  # 38 = 8 + 8 + 8 + 7 + 7


@settings(max_examples=40, deadline=None)
@given(n=st.integers(10, 120), frac=st.floats(0.0, 1.0), k=st.integers(2, 5), seed=st.integers(0, 10_000), n_unl=st.integers(0, 6))
def test_property_survival_strata_balance_events_or_say_fallback(n, frac, k, seed, n_unl):
    rng = np.random.default_rng(seed)
    ids = [f"p{i}" for i in range(n)]
    event = (rng.random(n) < frac).astype(int)
    time = rng.exponential(10, n) * np.where(event == 1, 0.3, 1.0)  # events early: skewed strata
    time[:min(n_unl, n)] = np.nan
    s = kfold_split(ids, k, time=time, event=event, seed=seed)
    lab = ~np.isnan(time)
    n_ev, n_cens = int(event[lab].sum()), int((1 - event[lab]).sum())
    assert sorted(p for f in s.folds for p in f.test) == sorted(ids)
    if min(n_ev, n_cens) >= k:
        assert "FALLBACK" not in s.protocol and "event x time quartile" in s.protocol
        per = _events_per_fold(s, ids, np.where(lab, event, 0))
        assert max(per) - min(per) <= 1, per
    else:
        assert "FALLBACK: only" in s.protocol


def test_rare_classes_merged_and_folds_stratified():
    ids = [f"p{i}" for i in range(115)]
    labels = np.array(["a"] * 100 + ["b"] * 12 + ["c"] * 3)
    s = kfold_split(ids, 5, labels=labels, stratify_name="task 'x'")
    assert "task 'x' (class; rare classes ['c'] merged into class 'b')" in s.protocol
    idx = {p: i for i, p in enumerate(ids)}
    assert [sum(labels[idx[p]] != "a" for p in f.test) for f in s.folds] == [3, 3, 3, 3, 3]


def test_one_class_falls_back_and_says_so():
    s = kfold_split([f"p{i}" for i in range(10)], 5, labels=np.array(["a"] * 9 + ["b"]), stratify_name="task 'x'")
    assert "UNSTRATIFIED (FALLBACK for task 'x': the classes ['a', 'b']" in s.protocol


def test_too_few_events_falls_back_to_time_only_then_unstratified():
    ids = [f"p{i}" for i in range(20)]
    ev = np.array([1, 1] + [0] * 18)
    s = kfold_split(ids, 5, time=np.arange(20.0), event=ev)
    assert "time quartile only; FALLBACK: only 2 events and 18 censored patients for 5 folds" in s.protocol
    s = kfold_split(ids[:6], 5, time=np.arange(6.0), event=ev[:6])
    assert "UNSTRATIFIED (FALLBACK: only 2 events and 4 censored patients for 5 folds)" in s.protocol


def test_split_cohort_writes_fallback(tmp_path):
    from modaltune.data.workflows import split_cohort

    make_cohort(tmp_path / "c")
    s = split_cohort(tmp_path / "c", 5, task="os")  # 11 labelled patients, 6 events, 5 censored
    assert "stratified by task 'os' (event x time quartile; rare strata merged" in s.protocol
    s = split_cohort(tmp_path / "c", 6, task="os", name="six")  # 5 censored < 6 folds
    assert "FALLBACK" in s.protocol and "task 'os'" in s.protocol
    from modaltune.data.cohort import Cohort

    recorded = Cohort.load(tmp_path / "c").manifest.extra["splits"]
    assert recorded["six"] == s.protocol and "os_5fold_seed0" in recorded


def test_class_only_in_test_fold_is_noted(tmp_path):
    from modaltune.benchmark.split_notes import (
        split_protocol_text,
        test_only_class_notes,
    )

    c = make_cohort(tmp_path / "c")
    ys = [f"P{i:02d}" for i in (1, 3, 5, 7, 9, 11)]  # the class 'y' patients
    rest = [p for p in c.patient_ids if p not in ys]
    ss = SplitSet("s", [Fold(0, rest, [], ys), Fold(1, ys[:1] + rest[:6], [], ys[1:] + rest[6:])])
    cfg = SimpleNamespace(task_sets=lambda names: [["subtype"]], split=SimpleNamespace(eval_partition="auto", file=None))
    notes = test_only_class_notes(cfg, c, ss)
    assert len(notes) == 1 and notes[0].startswith("toy / subtype / fold 0: class(es) ['y'] occur only in the evaluated 'test' patients (6 patient(s)), never in its training patients, and are scored there")
    odd = SplitSet("k", [], protocol="patient-level 5-fold CV, UNSTRATIFIED (FALLBACK: x), seed 0")
    assert split_protocol_text(cfg, {"toy": odd}) == "; split made: toy: patient-level 5-fold CV, UNSTRATIFIED (FALLBACK: x), seed 0"
    assert split_protocol_text(cfg, {"toy": SplitSet("k", [], protocol="stratified by class")}) == ""


def test_validate_warns_about_a_patient_absent_from_a_fold(tmp_path):
    from modaltune.data.validate import validate_cohort

    c = make_cohort(tmp_path / "c")
    ids = c.patient_ids
    full = kfold_split(ids, 3, seed=0)
    full.save(tmp_path / "c" / "splits" / "full.csv")
    df = full.to_frame()
    df = df[~((df["fold"] == 1) & (df["patient_id"].isin(["P03", "P10"])))]  # two rows lost by hand
    df.to_csv(tmp_path / "c" / "splits" / "holey.csv", index=False)
    rep = validate_cohort(tmp_path / "c", check_bags=False)
    msgs = [(Path(str(p.where)).name, p.message) for p in rep.warnings if "absent from some folds" in p.message]
    assert msgs == [("holey.csv", "2 patient(s) absent from some folds (in no partition there): 'P03' (fold 1), 'P10' (fold 1)")]
