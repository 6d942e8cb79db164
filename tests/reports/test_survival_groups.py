"""Risk groups and log-rank p-values on fixed arrays with hand-computed answers."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from modaltune.errors import InputError
from modaltune.reports.figures_survival import logrank_p, risk_groups


def test_median_groups_are_cut_within_each_fold():
    # fold 1's risks are 100x fold 0's: a pooled median would put all of fold 1 high
    risk = np.array([1, 2, 3, 4, 100, 200, 300, 400], float)
    fold = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert risk_groups(risk, fold).tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert risk_groups(risk).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_tertiles_and_ties():
    assert risk_groups(np.arange(1.0, 7.0), scheme="tertiles").tolist() == [0, 0, 1, 1, 2, 2]
    # a risk equal to the cut goes to the lower group: all tied -> all low
    assert risk_groups(np.ones(4)).tolist() == [0, 0, 0, 0]
    with pytest.raises(InputError, match="quartiles"):
        risk_groups(np.ones(4), scheme="quartiles")


def test_logrank_p_matches_hand_computation():
    # A dies at 1, 2; B at 3, 4. Observed - expected deaths of A: 2 - (2/4 + 1/3) = 7/6;
    # variance (hypergeometric): 2*2*1*3/(16*3) + 1*2*1*2/(9*2) = 1/4 + 2/9 = 17/36; chi2 = 49/17
    time = np.array([1.0, 2.0, 3.0, 4.0])
    event = np.ones(4)
    p = logrank_p(time, event, np.array([0, 0, 1, 1]))
    assert p == pytest.approx(chi2.sf(49 / 17, 1), rel=1e-9)
    assert p == pytest.approx(0.0896, abs=5e-4)


def test_logrank_three_groups_matches_lifelines_and_one_group_is_nan():
    from lifelines.statistics import multivariate_logrank_test

    rng = np.random.default_rng(0)
    t = rng.exponential(10, 30)
    e = rng.integers(0, 2, 30)
    g = np.repeat([0, 1, 2], 10)
    assert logrank_p(t, e, g) == pytest.approx(multivariate_logrank_test(t, g, e).p_value, rel=1e-12)
    assert np.isnan(logrank_p(t, e, np.zeros(30)))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=4, max_size=30, unique=True), st.sampled_from([0.25, 2.0, 64.0]),
       st.integers(-100, 100), st.sampled_from(["median", "tertiles"]))
def test_groups_invariant_to_a_folds_monotone_rescaling(risks, scale, shift, scheme):
    """Each fold model's risk scale is arbitrary: rescaling one fold must not move any patient.
    (Integers, power-of-two scales and integer shifts keep the rescaling exact in float64.)"""
    r = np.array(risks)
    fold = np.arange(len(r)) % 2
    r2 = np.where(fold == 1, r * scale + shift, r)
    assert risk_groups(r, fold, scheme).tolist() == risk_groups(r2, fold, scheme).tolist()
