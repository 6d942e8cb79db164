"""Cohort model, splits and the survival binning function, config loading."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.config import StrictModel, apply_overrides, load_config, parse_override
from modaltune.data.cohort import Cohort, CohortManifest, ModalitySpec, TaskSpec, load_manifest
from modaltune.data.splits import (
    Fold,
    SplitSet,
    assign_survival_bins,
    kfold_split,
    survival_bin_edges,
    train_val_test_split,
)
from modaltune.errors import ConfigError, InputError


# ------------------------------------------------------------------ splits
@settings(max_examples=30, deadline=None)
@given(n=st.integers(10, 80), k=st.integers(2, 5), seed=st.integers(0, 1000), n_classes=st.integers(2, 3), val=st.sampled_from([0.0, 0.25]))
def test_property_kfold_partitions(n, k, seed, n_classes, val):
    ids = [f"p{i}" for i in range(n)]
    labels = np.arange(n) % n_classes
    ss = kfold_split(ids, k, seed=seed, labels=labels, val_fraction_of_train=val)
    assert len(ss) == k
    held = []
    for f in ss:
        parts = [set(f.train), set(f.val), set(f.test)]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert parts[0] | parts[1] | parts[2] == set(ids)
        held += f.test
    assert sorted(held) == sorted(ids)  # each patient held out exactly once
    # stratification, per the documented rule (_class_strata): classes with < k members are
    # "rare"; when the rare ones together are still < k they join the smallest common class.
    # Each resulting stratum is spread evenly (test-fold counts differ by at most one), so
    # every class that took part in no merge is balanced on its own.
    sizes = np.bincount(labels, minlength=n_classes)
    stratum = labels.copy()
    rare = sizes < k
    if rare.any():
        stratum[rare[labels]] = n_classes
        common = np.flatnonzero(~rare)
        if sizes[rare].sum() < k and common.size:
            stratum[stratum == n_classes] = common[np.argmin(sizes[common])]
            assert "merged into class" in ss.protocol
    strat = dict(zip(ids, stratum))
    for s in np.unique(stratum):
        counts = [sum(strat[p] == s for p in f.test) for f in ss]
        if (stratum == s).sum() >= k and len(np.unique(stratum)) > 1:
            assert max(counts) - min(counts) <= 1
    again = kfold_split(ids, k, seed=seed, labels=labels, val_fraction_of_train=val)
    assert [f.test for f in again] == [f.test for f in ss]  # deterministic


def test_kfold_rare_class_merged_into_smallest_common_class():
    # 14 patients, 5 folds, classes of 5 / 5 / 4: class 2 is rare (< 5) and too small to be its
    # own stratum, so it joins class 0 (the first of the smallest common classes). The merged
    # stratum (9 patients) and class 1 are each spread evenly; class 0 alone need not be.
    ids = [f"p{i}" for i in range(14)]
    labels = np.arange(14) % 3
    ss = kfold_split(ids, 5, seed=1, labels=labels)
    assert "rare classes ['2'] merged into class '0'" in ss.protocol
    lab = dict(zip(ids, labels))
    merged = [sum(lab[p] in (0, 2) for p in f.test) for f in ss]
    ones = [sum(lab[p] == 1 for p in f.test) for f in ss]
    assert sorted(merged) == [1, 2, 2, 2, 2] and ones == [1] * 5


def test_kfold_survival_stratification_and_errors():
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(60)]
    time, event = rng.uniform(1, 100, 60), rng.integers(0, 2, 60)
    ss = kfold_split(ids, 3, time=time, event=event)
    # strata = event x time quartile (the documented rule): each is spread evenly over the folds
    quart = np.searchsorted(np.quantile(time, [0.25, 0.5, 0.75]), time, side="right")
    stratum = dict(zip(ids, event * 4 + quart))
    for s in set(stratum.values()):
        counts = [sum(stratum[p] == s for p in f.test) for f in ss]
        assert max(counts) - min(counts) <= 1
    assert "event x time" in ss.protocol
    with pytest.raises(InputError, match="appears twice"):
        kfold_split(["a", "a", "b"], 2)
    with pytest.raises(InputError, match="cannot make 5 folds from 3"):
        kfold_split(["a", "b", "c"], 5)


def test_train_val_test_split_disjoint():
    ids = [f"p{i}" for i in range(40)]
    f = train_val_test_split(ids, val=0.2, test=0.2, seed=1, labels=np.arange(40) % 2).folds[0]
    assert len(f.test) == 8 and len(f.val) == 8 and set(f.train) | set(f.val) | set(f.test) == set(ids)
    assert not set(f.train) & set(f.test)


def test_fold_check_and_split_file_errors(tmp_path):
    with pytest.raises(InputError, match="patient 'b' is in both 'train' and 'test'"):
        Fold(0, ["a", "b"], [], ["b"]).check()
    ss = SplitSet("s", [Fold(0, ["a"], ["b"], ["c"]), Fold(1, ["b"], [], ["a", "c"])])
    loaded = SplitSet.load(ss.save(tmp_path / "s.csv"))
    assert [(f.train, f.val, f.test) for f in loaded] == [(f.train, f.val, f.test) for f in ss]
    assert loaded.check_against(["a", "b"]) == ["c"]
    pd.DataFrame({"fold": [0, 0], "partition": ["train", "val"], "patient_id": ["x", "x"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match=r"bad.csv fold 0.*'x' is in both 'train' and 'val'"):
        SplitSet.load(tmp_path / "bad.csv")


# ------------------------------------------------------------------ survival bins
def test_survival_bins_known_answer():
    edges = survival_bin_edges(np.arange(1.0, 9.0), np.ones(8), 4, mode="paper")
    np.testing.assert_allclose(edges, [0.0, 2.75, 4.5, 6.25, 8.0 + 1e-6])
    np.testing.assert_array_equal(assign_survival_bins([0.0, 2.75, 8.0, 100.0], edges), [0, 1, 3, 3])
    with pytest.raises(InputError, match="train_mask"):
        survival_bin_edges(np.ones(4), np.ones(4), 2)
    with pytest.raises(InputError, match="only 1 uncensored"):
        survival_bin_edges(np.ones(4), np.array([1, 0, 0, 0]), 2, mode="paper")


@settings(max_examples=40, deadline=None)
@given(n=st.integers(8, 60), n_bins=st.integers(2, 5), seed=st.integers(0, 10**6), ties=st.booleans())
def test_property_bins_increasing_and_strict_ignores_test(n, n_bins, seed, ties):
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 5, n).astype(float) if ties else rng.uniform(0, 120, n)
    event = np.ones(n, int)
    event[rng.random(n) < 0.3] = 0
    train = np.zeros(n, bool)
    train[: n // 2 + n_bins + 1] = True
    event[: n_bins + 1] = 1  # enough events among training patients
    edges = survival_bin_edges(time, event, n_bins, mode="strict", train_mask=train)
    assert len(edges) == n_bins + 1 and np.all(np.diff(edges) > 0) and edges[0] == 0
    assert edges[-1] > time[train].max()
    time2, event2 = time.copy(), event.copy()
    time2[~train] = rng.uniform(0, 1000, (~train).sum())
    event2[~train] = 1 - event2[~train]
    np.testing.assert_array_equal(edges, survival_bin_edges(time2, event2, n_bins, mode="strict", train_mask=train))
    b = assign_survival_bins(time2, edges)
    assert b.min() >= 0 and b.max() <= n_bins - 1


# ------------------------------------------------------------------ cohort model
def _cohort() -> Cohort:
    m = CohortManifest(
        name="c",
        tasks=[
            TaskSpec(name="sub", kind="classification", label_column="sub", classes=["A", "B"], exclude_values=["-1"]),
            TaskSpec(name="os", kind="survival", time_column="t", event_column="e"),
        ],
        modalities=[ModalitySpec(name="rna", kind="omics")],
    )
    pats = pd.DataFrame({"patient_id": ["p1", "p2", "p3", "p4"], "sub": ["A", "B", "-1", None], "t": [1.0, 2.0, np.nan, 4.0], "e": [1, 0, np.nan, 1]})
    rna = pd.DataFrame({"G": [1.0, 2.0]}, index=pd.Index(["p1", "p3"], name="patient_id"))
    return Cohort(m, pats, omics={"rna": rna})


def test_targets_masks_and_reasons():
    c = _cohort()
    tt = c.targets("sub")
    assert tt.label.tolist() == [0, 1, -1, -1] and tt.mask.tolist() == [True, True, False, False]
    assert tt.reasons == {"excluded value '-1'": 1, "missing": 1}
    s = c.targets("os")
    assert s.mask.tolist() == [True, True, False, True] and s.reasons == {"missing": 1}
    c.patients.loc["p4", "sub"] = "C"
    with pytest.raises(InputError, match=r"patients:sub: task 'sub': unknown class label 'C' .* 'p4' \(fix: add the class"):
        c.targets("sub")


def test_save_load_roundtrip_and_subset(tmp_path):
    c = _cohort()
    c.save(tmp_path / "c")
    d = Cohort.load(tmp_path / "c")
    assert d.patient_ids == c.patient_ids and d.availability()["rna"].tolist() == [True, False, True, False]
    pd.testing.assert_frame_equal(d.omics["rna"], c.omics["rna"], check_dtype=False)
    sub = d.subset(["p3", "p1"])
    assert sub.patient_ids == ["p3", "p1"] and len(sub.omics["rna"]) == 2
    with pytest.raises(InputError, match="not in cohort"):
        d.subset(["zz"])


def test_manifest_errors(tmp_path):
    with pytest.raises(ValueError, match="needs at least 2 'classes'"):
        TaskSpec(name="x", kind="classification", label_column="y", classes=["a"])
    with pytest.raises(ValueError, match="duplicate task names"):
        CohortManifest(name="m", tasks=[TaskSpec(name="r", kind="regression", label_column="v")] * 2)
    (tmp_path / "cohort.yaml").write_text("name: m\nbogus: 1\n")
    with pytest.raises(InputError, match=r"cohort.yaml.*bogus: unknown key"):
        load_manifest(tmp_path)
    with pytest.raises(InputError, match="unknown task 'nope'"):
        _cohort().manifest.task("nope")


# ------------------------------------------------------------------ config
class _Trainer(StrictModel):
    max_epochs: int = 1
    lr: float = 1e-3


class _Exp(StrictModel):
    name: str
    trainer: _Trainer = _Trainer()


def test_overrides_and_config_errors(tmp_path):
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert apply_overrides({"a": {"b": 1}}, ["a.b=2", "a.c=[1, 2]"]) == {"a": {"b": 2, "c": [1, 2]}}
    with pytest.raises(ConfigError, match="has no '='"):
        parse_override("a.b")
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ntrainer:\n  max_epochs: 2\n")
    cfg = load_config(p, _Exp, overrides=["trainer.lr=0.5"])
    assert cfg.trainer.max_epochs == 2 and cfg.trainer.lr == 0.5
    with pytest.raises(ConfigError, match=r"trainer.max_epochs: .*got 'ten'"):
        load_config(p, _Exp, overrides=["trainer.max_epochs=ten"])
    with pytest.raises(ConfigError, match="trainer.epochs: unknown key"):
        load_config(p, _Exp, overrides=["trainer.epochs=3"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml", _Exp)
    (tmp_path / "bad.yaml").write_text("name: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "bad.yaml", _Exp)
