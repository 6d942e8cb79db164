"""The shared exact ridge Cox (issue 15): one helper, the same model as a direct scikit-survival fit,
used unchanged-in-result by embedding_fusion, coxnet (penalty: ridge) and the Cox probe."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from modaltune.errors import ConfigError
from modaltune.evaluation.probes import CoxProbe, Standardizer
from modaltune.evaluation.ridge_cox import fit_ridge_cox, ridge_cox_coef
from modaltune.methods import build_method
from modaltune.testing.batches import make_wide_tabular


def _problem(n: int, p: int, seed: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, p))
    time = rng.exponential(size=n) * np.exp(-Z[:, :3].sum(1) / 2)
    if ties:  # coarse times: many tied event times, where Efron and Breslow differ
        time = np.ceil(time * 4) / 4
    event = rng.random(n) < 0.7
    return Z, Surv.from_arrays(event=event, time=time)


def _close(a: np.ndarray, b: np.ndarray) -> None:
    # float64 Newton stopped at tol 1e-9 on the relative loss change: linear predictors of order 1
    # agree far inside rtol 1e-4; atol scaled to the predictor's size for values near 0
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * max(np.abs(b).max(), 1e-3))


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_helper_equals_the_direct_fit_when_p_exceeds_n(ties):
    Z, s = _problem(30, 90, seed=7, ties=True)
    direct = CoxPHSurvivalAnalysis(alpha=2.0, ties=ties).fit(Z, s)
    m = fit_ridge_cox(Z, s, 2.0, ties=ties)
    assert np.abs(direct.predict(Z)).max() > 0.1  # a non-trivial fit
    assert m.coef_.shape == (90,) and m.n_features_in_ == 90
    _close(m.predict(Z), direct.predict(Z))
    Znew = np.random.default_rng(8).normal(size=(10, 90))
    _close(m.predict(Znew), direct.predict(Znew))
    # the Breslow baseline is fitted on Z beta in both paths: the survival curves agree too
    fs, fd = m.predict_survival_function(Znew[:2]), direct.predict_survival_function(Znew[:2])
    np.testing.assert_allclose([f.y for f in fs], [f.y for f in fd], rtol=1e-4, atol=1e-6)


def test_efron_and_breslow_differ_here():
    """The ties argument reaches the solver (otherwise the parametrised test above proves less)."""
    Z, s = _problem(30, 90, seed=7, ties=True)
    a, b = ridge_cox_coef(Z, s, 2.0, ties="breslow"), ridge_cox_coef(Z, s, 2.0, ties="efron")
    assert np.abs(Z @ a - Z @ b).max() > 1e-3


def test_helper_refuses_a_non_scalar_or_non_positive_alpha():
    Z, s = _problem(20, 40, seed=1)
    for bad in (0.0, -1.0, np.ones(40)):
        with pytest.raises(ConfigError, match="alpha must be one number > 0") as exc:
            fit_ridge_cox(Z, s, bad)
        assert "\n" not in str(exc.value)


@settings(max_examples=8, deadline=None)
@given(n=st.integers(12, 30), extra=st.integers(1, 40), alpha=st.floats(0.5, 20.0), seed=st.integers(0, 1000),
       ties=st.sampled_from(["breslow", "efron"]))
def test_helper_matches_the_direct_fit_for_any_wide_problem(n, extra, alpha, seed, ties):
    Z, s = _problem(n, n + extra, seed=seed, ties=True)
    direct = Z @ CoxPHSurvivalAnalysis(alpha=alpha, ties=ties).fit(Z, s).coef_
    _close(Z @ ridge_cox_coef(Z, s, alpha, ties=ties), direct)


def test_coxnet_ridge_predicts_as_the_direct_sksurv_fit_on_a_wide_fold():
    """coxnet penalty: ridge on p = 125 > n = 40: its risks equal a direct CoxPH(alpha, breslow) on
    the same fold-standardised features (the result before the shared helper)."""
    info, X, y = make_wide_tabular(40, 120, seed=3)
    m = build_method("coxnet", info, penalty="ridge", alpha=3.0, max_memory_gb=1).fit(X, y, info)
    Z = m.embed(X)
    assert Z.shape[1] > Z.shape[0]  # the row-space path is the one under test
    direct = CoxPHSurvivalAnalysis(alpha=3.0, ties="breslow").fit(Z, Surv.from_arrays(event=y["os"]["event"].astype(bool), time=y["os"]["time"]))
    Xnew = np.random.default_rng(4).standard_normal((12, X.shape[1]))
    _close(m.predict(Xnew)["os"], direct.predict(m.embed(Xnew)))


def test_coxnet_ridge_inner_cv_chooses_the_same_alpha_as_direct_fits(monkeypatch):
    """The inner CV goes through the helper; the chosen alpha and CV scores equal those of direct fits."""
    info, X, y = make_wide_tabular(45, 80, seed=5)
    m = build_method("coxnet", info, penalty="ridge", max_memory_gb=1).fit(X, y, info)

    import modaltune.methods.coxnet as coxnet

    def direct(alpha, Z, time, event):
        return CoxPHSurvivalAnalysis(alpha=float(alpha), ties="breslow").fit(Z, coxnet._surv(time, event))

    monkeypatch.setattr(coxnet.CoxnetMethod, "_ridge", staticmethod(direct))
    ref = build_method("coxnet", info, penalty="ridge", max_memory_gb=1).fit(X, y, info)
    assert m.chosen_alpha == ref.chosen_alpha
    np.testing.assert_allclose(list(m.cv_scores["os"].values()), list(ref.cv_scores["os"].values()), atol=1e-9)


def test_cox_probe_on_wide_embeddings_equals_the_direct_fit():
    """CoxProbe (lifelines penalizer convention) with dim 64 > 25 patients: same risks as a direct sksurv fit."""
    Z, s = _problem(25, 64, seed=11, ties=True)
    X = Z * 3.0 + 1.0  # not standardised: the probe standardises (ddof 1) first
    y = {"time": s["time"], "event": s["event"].astype(int)}
    import pandas as pd

    probe = CoxProbe(penalizer=0.1).fit(X, pd.DataFrame(y))
    Zs = Standardizer(ddof=1).fit(X).transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = CoxPHSurvivalAnalysis(alpha=0.1 * 25, ties="efron").fit(Zs, s)
    Xnew = np.random.default_rng(12).normal(size=(9, 64)) * 3.0 + 1.0
    _close(probe.predict_risk(Xnew), direct.predict(Standardizer(ddof=1).fit(X).transform(Xnew)))
