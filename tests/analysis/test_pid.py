"""PID estimator: synthetic cases with known answers, identities and invariances (values in bits)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.analysis.interactions import bootstrap_pid
from modaltune.analysis.pid import (
    joint_counts,
    mutual_information,
    pid_from_counts,
    pid_from_labels,
)
from modaltune.errors import InputError

TOL = 1e-6  # the barrier solver's suboptimality is ~1e-11 nats; 1e-6 bits leaves room for rounding


def _gate(fn) -> np.ndarray:
    """Exact count table of Y = fn(X1, X2) with X1, X2 independent fair bits."""
    c = np.zeros((2, 2, 2))
    for a in (0, 1):
        for b in (0, 1):
            c[a, b, fn(a, b)] += 1
    return c


def test_xor_is_pure_synergy():
    r = pid_from_counts(_gate(lambda a, b: a ^ b))
    assert r.synergy == pytest.approx(1.0, abs=TOL)
    assert r.redundancy == pytest.approx(0.0, abs=TOL)
    assert r.unique_1 == pytest.approx(0.0, abs=TOL) and r.unique_2 == pytest.approx(0.0, abs=TOL)


def test_and_gate_matches_broja_values():
    # AND of fair bits: I(Xi;Y) = 0.8113 - 0.5 = 0.3113 bits, R = 0.3113, U = 0, S = 0.5 (Bertschinger et al. 2014)
    h = -(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25))
    r = pid_from_counts(_gate(lambda a, b: a & b))
    assert r.total == pytest.approx(h, abs=TOL)
    assert r.redundancy == pytest.approx(h - 0.5, abs=1e-5)
    assert r.synergy == pytest.approx(0.5, abs=1e-5)
    assert max(r.unique_1, r.unique_2) < 1e-5


def test_copied_modality_is_redundant():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, 400)
    y = (x >= 2).astype(int)
    r = pid_from_labels(x, x.copy(), y)
    assert r.redundancy == pytest.approx(mutual_information(x, y), abs=TOL)
    assert r.redundancy == pytest.approx(1.0, abs=0.01)  # y is a fair-ish bit fixed by x
    assert r.unique_1 < TOL and r.unique_2 < TOL and r.synergy < TOL


def test_ignored_modality_has_zero_uniqueness():
    rng = np.random.default_rng(1)
    x1, x2 = rng.integers(0, 3, 600), rng.integers(0, 3, 600)
    y = (x1 == 0).astype(int)  # y reads x1 only
    r = pid_from_labels(x1, x2, y)
    assert r.unique_2 < TOL
    # with finite samples x2 carries a little plug-in information; all of it is redundant or synergistic
    assert r.unique_1 == pytest.approx(r.mi_1 - r.redundancy, abs=TOL)
    assert r.unique_1 > 0.8 * r.mi_1


def test_parts_in_bits_for_a_two_class_label():
    r = pid_from_counts(_gate(lambda a, b: a))  # y = x1
    assert r.unique_1 == pytest.approx(1.0, abs=TOL)  # one fair bit
    assert r.total == pytest.approx(1.0, abs=TOL)


tables = st.tuples(st.integers(2, 4), st.integers(2, 4), st.integers(2, 3), st.integers(0, 10_000)).map(
    lambda t: np.random.default_rng(t[3]).integers(0, 6, size=t[:3]).astype(float) + (np.arange(np.prod(t[:3])).reshape(t[:3]) == 0)
)


@settings(max_examples=25, deadline=None)
@given(tables)
def test_parts_are_nonnegative_and_sum_to_total(c):
    r = pid_from_counts(c)
    for v in (r.redundancy, r.unique_1, r.unique_2, r.synergy):
        assert v >= -TOL
    assert r.redundancy + r.unique_1 + r.unique_2 + r.synergy == pytest.approx(r.total, abs=TOL)
    assert r.redundancy + r.unique_1 == pytest.approx(r.mi_1, abs=TOL)
    assert r.redundancy + r.unique_2 == pytest.approx(r.mi_2, abs=TOL)
    assert r.solver_gap < 1e-9


@settings(max_examples=20, deadline=None)
@given(tables)
def test_swapping_modalities_swaps_uniqueness(c):
    r, s = pid_from_counts(c), pid_from_counts(c.transpose(1, 0, 2))
    assert s.unique_1 == pytest.approx(r.unique_2, abs=1e-5)
    assert s.unique_2 == pytest.approx(r.unique_1, abs=1e-5)
    assert s.redundancy == pytest.approx(r.redundancy, abs=1e-5)
    assert s.synergy == pytest.approx(r.synergy, abs=1e-5)


@settings(max_examples=15, deadline=None)
@given(tables, st.integers(0, 100))
def test_relabelling_clusters_and_scaling_counts_change_nothing(c, seed):
    rng = np.random.default_rng(seed)
    perm = c[rng.permutation(c.shape[0])][:, rng.permutation(c.shape[1])][:, :, rng.permutation(c.shape[2])]
    r, s = pid_from_counts(c), pid_from_counts(3.0 * perm)
    for p in ("redundancy", "unique_1", "unique_2", "synergy"):
        assert getattr(s, p) == pytest.approx(getattr(r, p), abs=1e-5)


def test_joint_counts_and_errors():
    c = joint_counts(["a", "b", "b"], [5, 5, 7], [1, 0, 1])
    assert c.shape == (2, 2, 2) and c.sum() == 3 and c[1, 1, 1] == 1
    with pytest.raises(InputError, match="differ in length"):
        joint_counts([0, 1], [0], [0, 1])
    with pytest.raises(InputError, match="non-negative"):
        pid_from_counts(-np.ones((2, 2, 2)))


def test_bootstrap_interval_and_permutation_null():
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    est, ci, null = bootstrap_pid(a, b, a ^ b, n_boot=30, n_permutations=5, seed=0)
    assert est.synergy == pytest.approx(est.total, abs=0.02)
    lo, hi = ci["synergy"]
    assert 0 <= lo <= hi and lo > 0.8
    # shuffled labels carry (almost) no information: the null is the plug-in bias, far below 1 bit
    assert null["total"] < 0.05
    assert est.synergy - null["synergy"] > 0.9
