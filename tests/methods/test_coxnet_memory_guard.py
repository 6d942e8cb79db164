"""Penalised Cox memory guard (issue 12, item 7): estimate before fitting, refuse or switch to PCA."""
from __future__ import annotations

import os
import sys
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from _scripts import load_bench_script
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

import modaltune.data.bags as bags
from modaltune.errors import ConfigError
from modaltune.methods import build_method
from modaltune.methods.coxnet import PARALLEL_UNITS_ENV, cox_fit_bytes, cox_memory_budget
from modaltune.testing.batches import make_info, make_wide_tabular


def _calibration():
    """The calibration script of ``ridge_cox_fit_bytes`` (benchmarks/coxnet_guard), whose per-point measurement the test re-runs."""
    return load_bench_script("coxnet_guard/calibrate_ridge_svd.py")


def _no_fit(monkeypatch):
    """Make any solver or feature fit an error, to show the guard decides before fitting."""
    def boom(*a, **k):
        raise AssertionError("a fit ran although the memory guard should have refused first")

    monkeypatch.setattr(CoxPHSurvivalAnalysis, "fit", boom)
    monkeypatch.setattr("modaltune.methods._tabular.TabularFeatures.fit", boom)


def test_ridge_on_20000_genes_is_refused_quickly_without_fitting(monkeypatch):
    info, X, y = make_wide_tabular(200, 20_000)
    _no_fit(monkeypatch)
    m = build_method("coxnet", info, penalty="ridge", max_memory_gb=0.1)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as exc:
        m.fit(X, y, info)
    assert time.perf_counter() - t0 < 2.0
    msg = str(exc.value)
    # p = 20,000 genes + 5 clinical columns > n: the thin-SVD route, 8 * (4 * 200 * 20005 + 16 * 200^2) bytes = 0.124 GiB
    # (this test asked for 23.9 GiB under a 4 GiB cap while the guard sized the direct p x p fit that never runs here)
    assert "ridge on 20005 features x 200 patients needs about 0.124 GiB per fit (thin-SVD route, p > n)" in msg
    assert "budget of 0.1 GiB (method.params.max_memory_gb)" in msg
    # elastic net's own estimate (0.0939 GiB) fits this budget, so the fix offers it
    assert "use_pca: true" in msg and "penalty: elasticnet" in msg and "max_memory_gb" in msg and "\n" not in msg
    assert m.memory_notes.endswith(": refused")


def test_wide_ridge_the_old_guard_refused_is_sized_by_its_svd_route_and_fits_elastic_net_still_refused(caplog):
    """n = 20 patients, p = 3005 columns: ridge fits on the thin SVD (20 x 20), 8 (4 n p + 16 n^2) = 1.97 MB;
    elastic net keeps copies of X and a 30-alpha path, 8 (3 n p + 30 p) = 2.16 MB; the old guard sized the
    direct p x p fit, 8 (8 p^2 + 2 n p) = 578 MB, and refused this ridge fit under any cap below that."""
    n, genes = 20, 3000
    p = genes + 5
    info, X, y = make_wide_tabular(n, genes)
    cap_gb = 2.07e6 / 2**30
    assert cox_fit_bytes(n, p, "ridge") == 8 * (4 * n * p + 16 * n * n) < cap_gb * 2**30 < cox_fit_bytes(n, p, "elasticnet")
    assert 8 * (8 * p * p + 2 * n * p) > 250 * cap_gb * 2**30  # what the old guard asked for
    with caplog.at_level("INFO", logger="modaltune.training"):
        m = build_method("coxnet", info, penalty="ridge", alpha=100.0, max_memory_gb=cap_gb).fit(X, y, info)
    assert m.memory_notes.endswith("fitted as configured") and "(thin-SVD route, p > n)" in m.memory_notes and not m.features.use_pca
    risk = m.predict(X)["os"]
    assert risk.shape == (n,) and np.isfinite(risk).all() and np.ptp(risk) > 0
    with pytest.raises(ConfigError) as exc:
        build_method("coxnet", info, penalty="elasticnet", max_memory_gb=cap_gb).fit(X, y, info)
    msg = str(exc.value)
    assert "\n" not in msg and f"elasticnet on {p} features x {n} patients needs about 0.00202 GiB per fit, over the budget of 0.00193 GiB" in msg


def test_ridge_inner_cv_below_p_rows_is_sized_by_its_svd_route(monkeypatch):
    """p <= n, alpha chosen by inner CV: the inner fits train on at most n - floor(n / 3) + 1 = 21 of the 30 rows,
    fewer than p = 25 columns, so they take the SVD route, 8 (4 * 21 * 25 + 16 * 21^2) = 73,248 bytes, above the
    final direct fit's 8 (8 * 25^2 + 2 * 30 * 25) = 52,000 bytes. A cap between the two refuses the inner-CV run
    and accepts the fixed-alpha one (no inner CV)."""
    info, X, y = make_wide_tabular(30, 20)
    assert cox_fit_bytes(30, 25, "ridge") == 52_000
    cap_gb = 60_000 / 2**30
    _no_fit(monkeypatch)
    with pytest.raises(ConfigError, match=r"ridge on 25 features x 30 patients needs about 6\.82e-05 GiB per fit \(direct fit, p x p Hessian\)"):
        build_method("coxnet", info, penalty="ridge", max_memory_gb=cap_gb).fit(X, y, info)
    m = build_method("coxnet", info, penalty="ridge", alpha=1.0, max_memory_gb=cap_gb)
    m._memory_guard(30)
    assert m.memory_notes.startswith("coxnet ridge on 25 features x 30 patients needs about 4.84e-05 GiB") and m.memory_notes.endswith("fitted as configured")


def test_budget_is_half_the_available_ram_shared_by_parallel_units(monkeypatch):
    monkeypatch.setattr(bags, "_available_ram_bytes", lambda: 16 << 30)
    monkeypatch.setenv(PARALLEL_UNITS_ENV, "2")
    assert cox_memory_budget(None) == (4 << 30, "half the available RAM (16 GiB) / 2 parallel units")
    assert cox_memory_budget(1.5) == (1.5 * (1 << 30), "method.params.max_memory_gb")  # the smaller limit wins
    monkeypatch.setenv(PARALLEL_UNITS_ENV, "junk")
    assert cox_memory_budget(None)[0] == 8 << 30
    info, X, y = make_wide_tabular(200, 20_000)
    _no_fit(monkeypatch)
    monkeypatch.setenv(PARALLEL_UNITS_ENV, "3")
    # the ridge fit needs 0.124 GiB (thin-SVD route); with 0.6 GiB available the share is 0.6 / 2 / 3 = 0.1 GiB
    # (this test used 16 GiB available while the guard sized the direct p x p fit, 23.9 GiB)
    monkeypatch.setattr(bags, "_available_ram_bytes", lambda: 0.6 * (1 << 30))
    with pytest.raises(ConfigError, match=r"over the budget of 0.1 GiB \(half the available RAM \(0.6 GiB\) / 3 parallel units\)"):
        build_method("coxnet", info, penalty="ridge").fit(X, y, info)


def test_elastic_net_on_20000_genes_is_sized_without_a_p_squared_term(monkeypatch):
    # Coxnet keeps no p x p matrix: 8 * (3 * 200 * 20005 + 20005 * 30) bytes = 96.1 MiB
    assert cox_fit_bytes(200, 20_005, "elasticnet") == 8 * (3 * 200 * 20_005 + 20_005 * 30)
    info, X, y = make_wide_tabular(200, 20_000)
    _no_fit(monkeypatch)
    with pytest.raises(ConfigError, match=r"elasticnet on 20005 features x 200 patients needs about 0.0939 GiB per fit") as exc:
        build_method("coxnet", info, max_memory_gb=0.05).fit(X, y, info)
    assert "penalty: elasticnet" not in str(exc.value)  # the fix offers only what would change something


def test_on_memory_pca_fits_the_same_model_as_use_pca(caplog):
    info, X, y = make_wide_tabular(60, 3000)
    with caplog.at_level("WARNING", logger="modaltune.training"):
        # 60 x 3005 ridge takes the thin-SVD route, 8 (4 * 60 * 3005 + 16 * 60^2) bytes = 5.8 MiB, over 0.005 GiB
        # (this test used a 0.1 GiB cap, which the old estimate of the direct p x p fit, 0.54 GiB, exceeded)
        m = build_method("coxnet", info, penalty="ridge", alpha=1.0, max_memory_gb=0.005, on_memory="pca", n_components=4).fit(X, y, info)
    assert "switched to PCA (9 features, method.params.n_components)" in m.memory_notes
    assert m.memory_notes in caplog.text  # the decision is in the run's log
    ref = build_method("coxnet", info, penalty="ridge", alpha=1.0, use_pca=True, n_components=4).fit(X, y, info)
    np.testing.assert_array_equal(m.predict(X)["os"], ref.predict(X)["os"])  # same pipeline, same inputs
    # and that is PCA (fitted on these training rows) + clinical, standardised, then CoxPH
    Z = np.concatenate([PCA(n_components=4, random_state=0).fit_transform(X[:, :3000]), X[:, 3000:]], 1)
    Z = StandardScaler().fit_transform(Z)
    cox = CoxPHSurvivalAnalysis(alpha=1.0, ties="breslow").fit(Z, Surv.from_arrays(y["os"]["event"].astype(bool), y["os"]["time"]))
    np.testing.assert_allclose(m.predict(X)["os"], cox.predict(Z), rtol=1e-6, atol=1e-8)


def test_small_fits_run_as_configured_and_say_so():
    info, X, y = make_wide_tabular(80, 30)
    m = build_method("coxnet", info, penalty="ridge", alpha=1.0, max_memory_gb=1).fit(X, y, info)
    assert m.memory_notes.startswith("coxnet ridge on 35 features x 80 patients needs about") and m.memory_notes.endswith("fitted as configured")
    assert not m.features.use_pca


def test_bad_memory_settings_are_config_errors():
    info = make_info()
    with pytest.raises(ConfigError, match="on_memory"):
        build_method("coxnet", info, on_memory="swap")
    with pytest.raises(ConfigError, match="max_memory_gb.*greater than 0"):
        build_method("coxnet", info, max_memory_gb=0)


def test_ridge_estimate_bounds_the_measured_numpy_peak():
    """The calibration in ridge_cox_fit_bytes' docstring, re-measured small: tracemalloc sees numpy's
    allocations (7.0 p^2 float64 at this size); the estimate of the direct route (8 p^2 + 2 n p) must cover it,
    not by 2x. (n = 400 >= p, the direct route; this test had n = 40 < p, which now takes the SVD route.)"""
    n, p = 400, 400
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, p))
    y = Surv.from_arrays(event=rng.uniform(size=n) < 0.6, time=rng.exponential(size=n) + rng.uniform(size=n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one Newton step: "did not converge" is expected
        tracemalloc.start()
        try:
            CoxPHSurvivalAnalysis(alpha=1.0, ties="breslow", n_iter=1).fit(X, y)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    est = cox_fit_bytes(n, p, "ridge")
    assert 0.5 * est < peak <= est, (peak, est)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 40), k=st.integers(1, 50), use_pca=st.booleans(), genes=st.integers(1, 60))
def test_output_width_predicts_the_fitted_feature_count(n, k, use_pca, genes):
    info, X, _ = make_wide_tabular(n, genes)
    m = build_method("coxnet", info, use_pca=use_pca, n_components=k)
    want = m.features.output_width(n)
    assert m.features.fit(X).transform(X).shape[1] == want


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmHWM from /proc/self/status")
def test_svd_route_estimate_bounds_the_measured_peak_rss():
    """The SVD-route calibration (benchmarks/coxnet_guard/calibration.json), one point re-measured in a fresh process:
    the peak RSS growth of fit_ridge_cox at n = 100, p = 10,000 (measured 3.1 n p float64, numpy's SVD buffers and
    LAPACK's workspace included, which tracemalloc does not see) is covered by the estimate, not by 2x."""
    n, p = 100, 10_000
    growth = _calibration().measure_in_child(n, p, env={**os.environ, "OMP_NUM_THREADS": "1"})["growth_bytes"]
    est = cox_fit_bytes(n, p, "ridge")
    assert est == 8 * (4 * n * p + 16 * n * n)
    assert 0.5 * est < growth <= est, (growth, est)
