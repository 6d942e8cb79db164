"""Collapse detector."""
from __future__ import annotations

import numpy as np

from modaltune.evaluation.collapse import detect_collapse
from modaltune.evaluation.metrics import harrell_c


def test_constant_risk_flagged():
    t = np.arange(1.0, 11)
    e = np.array([1, 0] * 5)
    r = np.full(10, -2.5)
    rep = detect_collapse(r, e, time=t)
    assert rep.collapsed and "identical" in rep.reasons[0]
    assert harrell_c(t, e, r) == 0.5  # what the table would have shown without the flag


def test_near_zero_spread_flagged_but_small_real_spread_not():
    rng = np.random.default_rng(0)
    r = -3.9 + rng.normal(scale=1e-9, size=50)
    rep = detect_collapse(r)
    assert rep.collapsed and "near-zero spread" in rep.reasons[0]
    assert not detect_collapse(1e-9 * rng.normal(size=50)).collapsed  # tiny scale, real relative spread
    assert not detect_collapse(rng.normal(size=50), np.ones(50), time=np.arange(50.0))


def test_all_comparable_pairs_tied_flagged():
    # comparable pairs (event i, later j): (1,2) (1,3) (2,3), all with risk 1.0 -> all tied, C = 0.5;
    # patient 0 (censored before any event) differs, so the scores are not constant
    t = np.array([0.5, 1, 2, 3])
    e = np.array([0, 1, 1, 0])
    r = np.array([5.0, 1.0, 1.0, 1.0])
    rep = detect_collapse(r, e, time=t)
    assert rep.collapsed and "comparable pairs" in rep.reasons[0]
    assert harrell_c(t, e, r) == 0.5
    assert rep.stats["n_comparable_pairs"] == 3


def test_nan_and_classification_collapse():
    assert detect_collapse(np.array([0.1, np.nan, 0.3])).collapsed
    probs = np.array([[0.6, 0.4], [0.7, 0.3], [0.55, 0.45]])
    rep = detect_collapse(probs)
    assert rep.collapsed and "class 0" in rep.reasons[0]
    assert not detect_collapse(np.array([[0.6, 0.4], [0.3, 0.7]])).collapsed
