"""Classical baselines (coxnet, logistic): known answers against scikit-survival / scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from modaltune.errors import ConfigError, InputError
from modaltune.methods import build_method, get_method
from modaltune.methods._tabular import design_layout
from modaltune.testing.batches import CLIN_DIM, CNV_DIM, RNA_DIM, make_info


def _data(n=160, seed=0, censor=0.3):
    """X in the engine's layout (cnv, rna, clinical). Omics are driven by 3 latent factors (so a
    few principal components hold the signal); hazard and class follow factors 0, 1 + clinical[0]."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, 3))
    omics = f @ rng.normal(size=(3, CNV_DIM + RNA_DIM)) + 0.3 * rng.normal(size=(n, CNV_DIM + RNA_DIM))
    X = np.concatenate([omics, rng.normal(size=(n, CLIN_DIM))], 1)
    lin = 1.5 * f[:, 0] - 1.0 * f[:, 1] + 0.8 * X[:, CNV_DIM + RNA_DIM]
    time = rng.exponential(scale=np.exp(-lin)) * 10
    event = (rng.uniform(size=n) > censor).astype(float)
    label = (lin + 0.3 * rng.normal(size=n) > 0).astype(int)
    targets = {"os": {"time": time, "event": event, "bin": np.zeros(n, int), "mask": np.ones(n, bool)}, "subtype": {"label": label, "mask": np.ones(n, bool)}}
    return X, targets, lin


def _split(X, targets, idx):
    return X[idx], {t: {k: v[idx] for k, v in d.items()} for t, d in targets.items()}


def test_registry_kinds_and_layout():
    assert get_method("coxnet").kind == "tabular" and get_method("logistic").kind == "tabular"
    lay = design_layout(make_info())
    assert list(lay) == ["cnv", "rna", "clinical"]  # omics sorted by name, then clinical (engine's design_matrix)
    assert lay["rna"] == slice(CNV_DIM, CNV_DIM + RNA_DIM)


@pytest.mark.parametrize("use_pca", [False, True])
def test_coxnet_and_logistic_beat_chance_on_separable_data(use_pca):
    info = make_info()
    X, y, _ = _data()
    tr, te = np.arange(120), np.arange(120, 160)
    Xtr, ytr = _split(X, y, tr)
    Xte, yte = _split(X, y, te)
    cox = build_method("coxnet", info, use_pca=use_pca, n_components=4).fit(Xtr, ytr, info)
    risk = cox.predict(Xte)["os"]
    assert set(cox.predict(Xte)) == {"os"} and cox.skipped_tasks == ["subtype"]
    c = concordance_index_censored(yte["os"]["event"].astype(bool), yte["os"]["time"], risk)[0]
    assert c > 0.7, c
    assert cox.chosen_alpha["os"] in cox.cv_scores["os"]
    lr = build_method("logistic", info, use_pca=use_pca, n_components=4).fit(Xtr, ytr, info)
    p = lr.predict(Xte)["subtype"]
    assert p.shape == (40, 2)
    np.testing.assert_allclose(p.sum(1), 1.0)
    bacc = balanced_accuracy_score(yte["subtype"]["label"], p.argmax(1))
    assert bacc > 0.8, bacc


def test_coxnet_matches_scikit_survival_directly():
    info = make_info()
    X, y, _ = _data()
    m = build_method("coxnet", info, alpha=0.05, l1_ratio=0.7).fit(X, y, info)
    Z = StandardScaler().fit_transform(X)
    ref = CoxnetSurvivalAnalysis(alphas=[0.05], l1_ratio=0.7, max_iter=100000).fit(Z, Surv.from_arrays(y["os"]["event"].astype(bool), y["os"]["time"]))
    np.testing.assert_allclose(m.predict(X)["os"], ref.predict(Z), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(m.models["os"].coef_, ref.coef_, rtol=1e-6, atol=1e-10)
    # ridge Cox == CoxPHSurvivalAnalysis(alpha)
    r = build_method("coxnet", info, penalty="ridge", alpha=1.0).fit(X, y, info)
    ref = CoxPHSurvivalAnalysis(alpha=1.0, ties="breslow").fit(Z, Surv.from_arrays(y["os"]["event"].astype(bool), y["os"]["time"]))
    np.testing.assert_allclose(r.predict(X)["os"], ref.predict(Z), rtol=1e-6, atol=1e-8)


def test_coxnet_with_pca_matches_scikit_survival_directly():
    info = make_info()
    X, y, _ = _data()
    tr, te = np.arange(110), np.arange(110, 160)
    ytr = _split(X, y, tr)[1]
    m = build_method("coxnet", info, use_pca=True, n_components=3, alpha=0.02, l1_ratio=0.5).fit(X[tr], ytr, info)
    omics, clin = X[:, : CNV_DIM + RNA_DIM], X[:, CNV_DIM + RNA_DIM :]
    pca = PCA(n_components=3, random_state=0).fit(omics[tr])  # fitted on the training fold only
    Z = np.concatenate([pca.transform(omics), clin], 1)
    sc = StandardScaler().fit(Z[tr])
    ref = CoxnetSurvivalAnalysis(alphas=[0.02], l1_ratio=0.5, max_iter=100000).fit(sc.transform(Z[tr]), Surv.from_arrays(ytr["os"]["event"].astype(bool), ytr["os"]["time"]))
    np.testing.assert_allclose(m.predict(X[te])["os"], ref.predict(sc.transform(Z[te])), rtol=1e-6, atol=1e-8)


def test_coxnet_chooses_l1_ratio_by_inner_cv_on_the_training_fold():
    info = make_info()
    X, y, _ = _data()
    ratios = [0.1, 0.9]
    m = build_method("coxnet", info, l1_ratio=ratios, inner_folds=3).fit(X, y, info)
    by_l1 = m.cv_scores_by_l1["os"]
    assert set(by_l1) == set(ratios)
    # the chosen pair is the best inner-CV mean over both paths; ties: stronger penalty
    best = max((score, alpha, r) for r in ratios for alpha, score in by_l1[r].items())
    assert m.chosen_l1_ratio["os"] == best[2] and by_l1[best[2]][m.chosen_alpha["os"]] == pytest.approx(best[0])
    assert m.cv_scores["os"] == by_l1[m.chosen_l1_ratio["os"]]
    # the final model is the direct scikit-survival fit at the chosen pair, along the path down to it
    Z = StandardScaler().fit_transform(X)
    path = sorted((a for a in by_l1[m.chosen_l1_ratio["os"]] if a >= m.chosen_alpha["os"]), reverse=True)
    ref = CoxnetSurvivalAnalysis(alphas=path, l1_ratio=m.chosen_l1_ratio["os"], max_iter=100000)
    ref.fit(Z, Surv.from_arrays(y["os"]["event"].astype(bool), y["os"]["time"]))
    np.testing.assert_allclose(m.predict(X)["os"], ref.predict(Z, alpha=m.chosen_alpha["os"]), rtol=1e-6, atol=1e-8)
    # ... which is the single-penalty optimum (a convex problem), to the solver's tolerance
    single = CoxnetSurvivalAnalysis(alphas=[m.chosen_alpha["os"]], l1_ratio=m.chosen_l1_ratio["os"], max_iter=100000)
    single.fit(Z, Surv.from_arrays(y["os"]["event"].astype(bool), y["os"]["time"]))
    np.testing.assert_allclose(m.predict(X)["os"], single.predict(Z), rtol=1e-2, atol=1e-2)
    # a one-element list is the scalar setting
    a = build_method("coxnet", info, l1_ratio=[0.5]).fit(X, y, info)
    b = build_method("coxnet", info, l1_ratio=0.5).fit(X, y, info)
    assert a.chosen_alpha == b.chosen_alpha
    with pytest.raises(ConfigError, match="l1_ratio"):
        build_method("coxnet", info, l1_ratio=[0.5, 0.9], alpha=0.1)
    with pytest.raises(ConfigError, match="l1_ratio"):
        build_method("coxnet", info, l1_ratio=[])


def test_logistic_with_pca_matches_scikit_learn_directly():
    info = make_info()
    X, y, _ = _data()
    tr, te = np.arange(100), np.arange(100, 160)
    m = build_method("logistic", info, use_pca=True, n_components=3, class_weight="balanced").fit(X[tr], _split(X, y, tr)[1], info)
    omics, clin = X[:, : CNV_DIM + RNA_DIM], X[:, CNV_DIM + RNA_DIM :]
    pca = PCA(n_components=3, random_state=0).fit(omics[tr])  # fitted on the training fold only
    Z = np.concatenate([pca.transform(omics), clin], 1)
    sc = StandardScaler().fit(Z[tr])
    ref = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(sc.transform(Z[tr]), y["subtype"]["label"][tr])
    np.testing.assert_allclose(m.predict(X[te])["subtype"], ref.predict_proba(sc.transform(Z[te])), rtol=1e-6, atol=1e-8)
    assert m.embed(X[te]).shape == (60, 3 + CLIN_DIM)


def test_modality_selection_and_masks():
    info = make_info()
    X, y, _ = _data()
    m = build_method("logistic", info, modalities=["clinical"]).fit(X, y, info)
    assert m.embed(X).shape == (160, CLIN_DIM)
    m = build_method("logistic", info, modalities=["rna"]).fit(X, y, info)
    assert m.embed(X).shape == (160, RNA_DIM)
    assert build_method("logistic", info, modalities=["omics"]).fit(X, y, info).embed(X).shape == (160, CNV_DIM + RNA_DIM)
    with pytest.raises(ConfigError, match="'slide'"):
        build_method("logistic", info, modalities=["slide"])
    # masked labels (mask False or label -1) are not used: corrupting them changes nothing
    y2 = {t: {k: v.copy() for k, v in d.items()} for t, d in y.items()}
    y2["subtype"]["mask"][:20] = False
    y2["subtype"]["label"][20:30] = -1
    a = build_method("logistic", info).fit(X, y2, info).predict(X)["subtype"]
    y2["subtype"]["label"][:20] = 1 - y2["subtype"]["label"][:20]
    b = build_method("logistic", info).fit(X, y2, info).predict(X)["subtype"]
    np.testing.assert_allclose(a, b)
    c = build_method("logistic", info).fit(X, y, info).predict(X)["subtype"]
    assert not np.allclose(a, c)


def test_coxnet_path_shortened_where_weak_penalties_diverge():
    """p > events: the automatic path diverges at its weak end; the fit shortens it (noted) instead of failing."""
    from modaltune.methods.coxnet import CoxnetMethod

    info = make_info()
    X, y, _ = _data(n=40)
    calls = []
    real = CoxnetMethod._coxnet

    def flaky(self, alphas=None, l1_ratio=None):
        est = real(self, alphas, l1_ratio)
        if alphas is not None and min(alphas) < 0.05:  # stand-in for sksurv's divergence at weak penalties
            calls.append(min(alphas))
            est.fit = lambda *a, **k: (_ for _ in ()).throw(ArithmeticError("weights are too large"))
        return est

    m = build_method("coxnet", info, alpha=None)
    m._coxnet = flaky.__get__(m)
    m.fit(X, y, info)
    assert calls, "the stand-in divergence was exercised"
    assert m.chosen_alpha["os"] >= 0.05
    assert np.isfinite(m.predict(X)["os"]).all()


def test_clear_errors():
    info = make_info()
    X, y, _ = _data(n=30, censor=0.0)
    y["os"]["event"][:] = 0
    y["os"]["event"][:3] = 1
    with pytest.raises(InputError, match="3 events among 30"):
        build_method("coxnet", info).fit(X, y, info)
    with pytest.raises(InputError, match=r"expected \(N, "):
        build_method("logistic", info).fit(X[:, :-1], y, info)
    Xn = X.copy()
    Xn[4, 2] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        build_method("logistic", info).fit(Xn, y, info)
    y["subtype"]["label"][:] = 0
    with pytest.raises(InputError, match="only class A"):
        build_method("logistic", info).fit(X, y, info)
    with pytest.raises(ConfigError, match="survival tasks"):
        build_method("coxnet", make_info(tasks=("subtype",)))
    with pytest.raises(ConfigError):
        build_method("coxnet", info, penalty="lasso2")


def test_logistic_cv_and_absent_class():
    info = make_info()
    X, y, _ = _data()
    m = build_method("logistic", info, C="cv", Cs=5).fit(X, y, info)
    assert m.predict(X)["subtype"].shape == (160, 2)
    assert m.chosen_C["subtype"] in np.logspace(-4, 4, 5)
    # three-class task where class 2 never occurs in training: its probability is 0
    from modaltune.data.cohort import TaskSpec
    from modaltune.data.dataset import TaskInfo

    info.tasks = [TaskInfo(TaskSpec(name="subtype", kind="classification", label_column="s", classes=["A", "B", "C"]), 3, ["A", "B", "C"])]
    p = build_method("logistic", info).fit(X, y, info).predict(X)["subtype"]
    assert p.shape == (160, 3) and np.all(p[:, 2] == 0)
