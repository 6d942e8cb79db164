"""embedding_fusion: mean-shift alignment fitted on training patients only, early / late shapes,
missing modalities."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.data.cohort import Cohort
from modaltune.data.splits import SplitSet
from modaltune.errors import ConfigError
from modaltune.evaluation.missing import mask_cohort, parse_setting, setting_mask
from modaltune.methods.embedding_fusion import fusion_layout
from modaltune.training.trainer import design_matrix, fit, predict

FAST = {"max_epochs": 1, "progress_bar": False, "logger": "none", "checkpoint": False}


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    from modaltune.data.simulate import simulate_cohort

    out = tmp_path_factory.mktemp("cohorts") / "tiny"
    simulate_cohort(out, preset="tiny", seed=0, n_patients=30, patches=(4, 8), slides_per_patient=(1, 1), n_folds=3)
    return out


def _fold(d):
    return SplitSet.load(d / "splits" / "kfold3.csv").folds[0]


def test_alignment_is_the_training_patient_mean_and_ignores_test_patients(cohort_dir):
    cohort, fold = Cohort.load(cohort_dir), _fold(cohort_dir)
    a = fit(cohort, fold, "embedding_fusion", tasks=["subtype"], trainer=FAST, progress=False)
    est = a.model
    X, _, _ = design_matrix(a.preprocessor, cohort, fold.train, slide_mean=True)
    lay = fusion_layout(a.preprocessor.info)
    assert set(est.blocks) == {*a.preprocessor.info.omics_dims, "clinical", "slide"}
    has_slide = X[:, lay["slide_present"]].ravel() == 1
    assert 0 < (~has_slide).sum() < len(has_slide)  # the simulated cohort has training patients without a slide
    # the mean over the training patients that have a slide (absent ones are not zeros to average in)
    np.testing.assert_allclose(est.shift["slide"], X[has_slide][:, lay["slide"]].mean(0), rtol=1e-12, atol=1e-12)
    has_rna = cohort.availability(check_files=False).loc[fold.train, "rna"].to_numpy()
    np.testing.assert_allclose(est.shift["rna"], X[has_rna][:, lay["rna"]].mean(0), rtol=1e-12, atol=1e-12)
    # changing every test patient's omics values does not move the fitted shift
    changed = Cohort.load(cohort_dir)
    rna = changed.omics["rna"]
    test = rna.index.isin(fold.test)
    rna.loc[test] = rna.loc[test] * 10 + 3
    b = fit(changed, fold, "embedding_fusion", tasks=["subtype"], trainer=FAST, progress=False)
    for k in est.shift:
        np.testing.assert_array_equal(b.model.shift[k], est.shift[k])
    # without alignment the shift is zero
    c = fit(cohort, fold, "embedding_fusion", params={"align": False}, tasks=["subtype"], trainer=FAST, progress=False)
    assert all(not v.any() for v in c.model.shift.values())


def test_early_and_late_fusion_shapes(cohort_dir):
    cohort, fold = Cohort.load(cohort_dir), _fold(cohort_dir)
    early = fit(cohort, fold, "embedding_fusion", params={"fusion": "early"}, tasks=["subtype", "survival"], trainer=FAST, progress=False)
    late = fit(cohort, fold, "embedding_fusion", params={"fusion": "late"}, tasks=["subtype", "survival"], trainer=FAST, progress=False)
    info = early.preprocessor.info
    width = info.slide_dim + sum(info.omics_dims.values()) + info.clinical_dim
    X, _, _ = design_matrix(early.preprocessor, cohort, fold.test, slide_mean=True)
    assert X.shape == (len(fold.test), width + 1)  # + the slide-presence column
    assert early.model.embed(X).shape == (len(fold.test), width)
    assert set(early.model.heads["subtype"]) == {"early"}
    assert early.model.heads["subtype"]["early"]["W"][0].shape[0] == width
    assert set(late.model.heads["survival"]) == {*info.omics_dims, "clinical", "slide"}
    assert late.model.heads["survival"]["slide"]["W"][0].shape == (info.slide_dim, 1)
    n_classes = len(cohort.manifest.task("subtype").classes)
    for f in (early, late):
        out = f.model.predict(X)
        assert out["subtype"].shape == (len(fold.test), n_classes) and out["survival"].shape == (len(fold.test),)
        np.testing.assert_allclose(out["subtype"].sum(1), 1.0, rtol=1e-12)


def test_fits_and_predicts_with_missing_modalities(cohort_dir):
    cohort, fold = Cohort.load(cohort_dir), _fold(cohort_dir)
    mask = setting_mask(parse_setting("W60_O60"), fold, 0)  # some patients lose both slide and omics
    masked = mask_cohort(cohort, mask)
    for fusion in ("early", "late"):
        f = fit(masked, fold, "embedding_fusion", params={"fusion": fusion}, tasks=["subtype", "survival"], trainer=FAST, progress=False)
        p = predict(f, masked, fold.test)
        assert set(p["patient_id"]) == set(fold.test)  # nobody dropped
        assert np.isfinite(p[p["task"] == "survival"]["risk"]).all()
    # late fusion: a patient without slide and omics is predicted from clinical alone
    both = [pid for pid in fold.test if mask.loc[pid, "drop_slide"] and mask.loc[pid, "drop_omics"]]
    assert both
    X, _, _ = design_matrix(f.preprocessor, masked, both, slide_mean=True)
    est = f.model
    h = est.heads["survival"]["clinical"]
    Zc = (est._aligned(X)["clinical"] - est.mean_["clinical"]) / est.scale_["clinical"]
    np.testing.assert_allclose(est.predict(X)["survival"], est._head_output(h, Zc, est.tasks[1]), rtol=1e-10, atol=1e-12)


def test_mlp_head_refuses_survival(cohort_dir):
    cohort, fold = Cohort.load(cohort_dir), _fold(cohort_dir)
    with pytest.raises(ConfigError, match="no MLP survival head"):
        fit(cohort, fold, "embedding_fusion", params={"head": "mlp"}, tasks=["survival"], trainer=FAST, progress=False)
    f = fit(cohort, fold, "embedding_fusion", params={"head": "mlp", "hidden": 8}, tasks=["subtype"], trainer=FAST, progress=False)
    assert len(f.model.heads["subtype"]["early"]["W"]) == 2  # one hidden layer


def _cox_problem(n, p, seed):
    """A fixed survival problem: Z (n, p) standard normal, risk driven by the first 3 columns."""
    from sksurv.util import Surv

    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, p))
    time = rng.exponential(size=n) * np.exp(-Z[:, :3].sum(1) / 2)
    event = rng.random(n) < 0.7
    return Z, Surv.from_arrays(event=event, time=time)


@pytest.mark.parametrize("alpha", [0.5, 5.0])
def test_reduced_ridge_cox_equals_the_direct_fit_when_p_exceeds_n(alpha):
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from modaltune.methods.embedding_fusion import ridge_cox_coef

    Z, s = _cox_problem(40, 120, seed=1)
    direct = CoxPHSurvivalAnalysis(alpha=alpha).fit(Z, s).coef_
    reduced = ridge_cox_coef(Z, s, alpha)
    # same optimum: sksurv's Newton stops at tol 1e-9 on the relative loss change, so the
    # linear predictors agree far inside rtol 1e-4 (the scale of lp is O(1) here)
    assert np.abs(Z @ direct).max() > 0.1  # a non-trivial fit, not two zero vectors
    np.testing.assert_allclose(Z @ reduced, Z @ direct, rtol=1e-4, atol=1e-6 * np.abs(Z @ direct).max())
    # the reduced beta lies in the row space; so does the direct ridge optimum: the coefficients agree too
    np.testing.assert_allclose(reduced, direct, rtol=1e-4, atol=1e-6 * np.abs(direct).max())
    # new rows: the map back beta = V gamma predicts like the direct fit
    Znew = np.random.default_rng(2).normal(size=(15, 120))
    np.testing.assert_allclose(Znew @ reduced, Znew @ direct, rtol=1e-4, atol=1e-6 * np.abs(Znew @ direct).max())


def test_reduced_ridge_cox_handles_rank_deficient_z():
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from modaltune.methods.embedding_fusion import ridge_cox_coef

    Z, s = _cox_problem(40, 6, seed=3)
    rng = np.random.default_rng(5)
    # p = 120 columns of rank 6 (< n = 40) and 20 all-zero columns: the SVD keeps 6 directions
    Z = np.concatenate([Z @ rng.normal(size=(6, 100)) / 10, np.zeros((40, 20))], 1)
    assert np.linalg.matrix_rank(Z) == 6
    direct = CoxPHSurvivalAnalysis(alpha=1.0).fit(Z, s).coef_
    reduced = ridge_cox_coef(Z, s, 1.0)
    assert np.abs(Z @ direct).max() > 0.1
    np.testing.assert_allclose(Z @ reduced, Z @ direct, rtol=1e-4, atol=1e-6 * np.abs(Z @ direct).max())
    np.testing.assert_allclose(reduced, direct, rtol=1e-4, atol=1e-6 * np.abs(direct).max())
    np.testing.assert_array_equal(reduced[-20:], 0.0)  # an all-zero column gets no weight


def test_ridge_cox_is_called_unchanged_when_p_is_at_most_n(monkeypatch):
    import sksurv.linear_model

    from modaltune.methods.embedding_fusion import ridge_cox_coef

    Z, s = _cox_problem(60, 20, seed=4)
    seen = []
    real = sksurv.linear_model.CoxPHSurvivalAnalysis

    class Spy(real):
        def fit(self, X, y):
            seen.append(X)
            return super().fit(X, y)

    monkeypatch.setattr(sksurv.linear_model, "CoxPHSurvivalAnalysis", Spy)
    coef = ridge_cox_coef(Z, s, 1.0)
    assert len(seen) == 1 and seen[0] is Z  # no SVD, no copy: the solver sees Z itself
    np.testing.assert_array_equal(coef, real(alpha=1.0).fit(Z, s).coef_)  # same solver, same input: same result


@settings(max_examples=10, deadline=None)
@given(n=st.integers(12, 30), extra=st.integers(1, 40), alpha=st.floats(1.0, 20.0), seed=st.integers(0, 1000))
def test_reduced_ridge_cox_matches_the_direct_fit_for_any_wide_problem(n, extra, alpha, seed):
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from modaltune.methods.embedding_fusion import ridge_cox_coef

    Z, s = _cox_problem(n, n + extra, seed=seed)
    direct = Z @ CoxPHSurvivalAnalysis(alpha=alpha).fit(Z, s).coef_
    np.testing.assert_allclose(Z @ ridge_cox_coef(Z, s, alpha), direct, rtol=1e-4, atol=1e-6 * max(np.abs(direct).max(), 1e-3))
