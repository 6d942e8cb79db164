"""Linear probes on frozen embeddings."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modaltune.errors import ConfigError, InputError
from modaltune.evaluation.probes import CoxProbe, LogisticProbe, fit_probe


def test_logistic_probe_separable_multiclass():
    rng = np.random.default_rng(0)
    centers = np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])
    y = np.repeat([0, 1, 2], 40)
    X = centers[y] + rng.normal(size=(120, 3)) + np.array([100.0, -50, 3])  # offsets: standardisation matters
    tr = rng.random(120) < 0.6
    res = fit_probe("logistic", X[tr], y[tr], X[~tr], y[~tr])
    assert res.metric == "balanced_accuracy" and res.value > 0.95
    assert res.predictions.shape == (int((~tr).sum()), 3)
    assert np.allclose(res.predictions.sum(1), 1)


def test_logistic_probe_binary_string_labels_and_errors():
    rng = np.random.default_rng(1)
    y = np.array(["luad", "lusc"] * 30)
    X = (y == "lusc")[:, None] * 3.0 + rng.normal(size=(60, 2))
    p = LogisticProbe().fit(X[:40], y[:40])
    assert p.score(X[40:], y[40:]) > 0.9 and set(p.predict(X[40:])) <= {"luad", "lusc"}
    with pytest.raises(InputError, match="single class"):
        LogisticProbe().fit(X[:5], np.array(["luad"] * 5))
    with pytest.raises(InputError, match="features"):
        p.predict_proba(np.zeros((3, 5)))
    with pytest.raises(ConfigError):
        fit_probe("svm", X, y, X, y)


def _cox_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * np.array([1.0, 3.0, 0.5, 2.0])
    lin = X @ np.array([0.8, -0.3, 0.0, 0.2])
    t = np.round(rng.exponential(np.exp(-lin)) * 10) + 1
    e = (rng.random(n) < 0.75).astype(int)
    return X, t, e


def test_cox_probe_ranks_well():
    X, t, e = _cox_data()
    res = fit_probe("cox", X[:140], (t[:140], e[:140]), X[140:], pd.DataFrame({"time": t[140:], "event": e[140:]}))
    assert res.metric == "c_index" and res.value > 0.7
    assert res.predictions.shape == (60,)


def test_cox_probe_penalizer_matches_lifelines():
    lifelines = pytest.importorskip("lifelines")
    X, t, e = _cox_data(150, seed=1)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)]).assign(t=t, e=e)
    ref = lifelines.CoxPHFitter(penalizer=0.1).fit(df, "t", "e").params_.to_numpy()
    ours = CoxProbe(penalizer=0.1).fit(X, (t, e)).coef_
    assert np.abs(ours - ref).max() < 1e-4
    # the penalty really acts: without it the coefficients are larger
    free = CoxProbe(penalizer=0.0).fit(X, (t, e)).coef_
    assert np.abs(free).sum() > np.abs(ours).sum()


def test_cox_probe_input_errors():
    X, t, e = _cox_data(30)
    with pytest.raises(InputError, match="no events"):
        CoxProbe().fit(X, (t, np.zeros(30)))
    with pytest.raises(InputError, match="NaN"):
        CoxProbe().fit(np.where(np.arange(30)[:, None] == 3, np.nan, X), (t, e))
    # constant feature does not break standardisation
    Xc = np.c_[X, np.ones(30)]
    assert np.isfinite(CoxProbe().fit(Xc, (t, e)).predict_risk(Xc)).all()
