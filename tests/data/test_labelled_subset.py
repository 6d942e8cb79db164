"""labelled_subset: the scarce-label draw (size, stratification, determinism, errors)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.data.splits import labelled_subset
from modaltune.errors import ConfigError, InputError


def test_size_stratified_and_deterministic():
    ids = [f"p{i:03d}" for i in range(200)]
    labels = np.array([0] * 150 + [1] * 50)
    a = labelled_subset(ids, 0.1, seed=1, labels=labels)
    assert len(a) == 20
    # stratified: 10% of each class (15 of 150, 5 of 50)
    assert sum(int(p[1:]) >= 150 for p in a) == 5
    assert a == labelled_subset(ids, 0.1, seed=1, labels=labels)
    assert a != labelled_subset(ids, 0.1, seed=2, labels=labels)
    assert a == sorted(a)


def test_full_fraction_and_minimum_one():
    ids = ["c", "a", "b"]
    assert labelled_subset(ids, 1.0) == ["a", "b", "c"]
    assert len(labelled_subset(ids, 0.01)) == 1


def test_unstratifiable_labels_fall_back_to_plain_draw():
    # one patient of class 1 cannot be stratified: a plain seeded draw of the right size instead
    out = labelled_subset([f"p{i}" for i in range(10)], 0.5, seed=0, labels=np.array([0] * 9 + [1]))
    assert len(out) == 5


@pytest.mark.parametrize("frac", [0.0, -0.1, 1.5])
def test_bad_fraction(frac):
    with pytest.raises(ConfigError, match="outside"):
        labelled_subset(["a", "b"], frac)


def test_label_length_mismatch_and_empty():
    with pytest.raises(InputError, match="2 labels for 3 patients"):
        labelled_subset(["a", "b", "c"], 0.5, labels=np.array([0, 1]))
    with pytest.raises(InputError, match="no patients"):
        labelled_subset([], 0.5)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), frac=st.floats(0.001, 1.0), seed=st.integers(0, 10))
def test_subset_of_input_with_rounded_size(n, frac, seed):
    ids = [f"p{i}" for i in range(n)]
    out = labelled_subset(ids, frac, seed=seed)
    assert set(out) <= set(ids) and len(set(out)) == len(out)
    assert len(out) == min(n, max(1, int(round(frac * n))))
