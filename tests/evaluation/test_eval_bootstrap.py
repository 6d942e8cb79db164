"""Bootstrap CIs, paired comparison and fold/seed summaries."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modaltune.errors import InputError
from modaltune.evaluation.bootstrap import bootstrap_ci, paired_bootstrap, summarize_folds, summarize_seeds
from modaltune.evaluation.metrics import harrell_c


def _cidx(d: pd.DataFrame) -> float:
    return harrell_c(d["time"], d["event"], d["risk"])


def _pred(n=150, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(np.exp(-x)) * 10
    e = (rng.random(n) < 0.7).astype(int)
    base = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "time": t, "event": e})
    return base, x, rng


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    base, x, rng = _pred()
    df = base.assign(risk=x + rng.normal(scale=0.5, size=len(x)))
    a = bootstrap_ci(df, _cidx, n=200, seed=3)
    b = bootstrap_ci(df, _cidx, n=200, seed=3)
    assert a == b  # same seed, same interval
    assert a.low < a.estimate < a.high and a.estimate == pytest.approx(_cidx(df))
    assert 0.02 < a.high - a.low < 0.3 and a.n_failed == 0
    c = bootstrap_ci(df, _cidx, n=200, seed=4)
    assert (c.low, c.high) != (a.low, a.high)


def test_bootstrap_mean_matches_normal_theory():
    # metric = mean of a column; the 95% CI half-width should be ~1.96 * sd / sqrt(n)
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"patient_id": range(400), "v": rng.normal(size=400)})
    res = bootstrap_ci(df, lambda d: d["v"].mean(), n=1000, seed=0)
    half = (res.high - res.low) / 2
    assert half == pytest.approx(1.96 * df["v"].std() / 20, rel=0.15)


def test_bootstrap_skips_undefined_resamples():
    # 20 patients, one event: many resamples draw no event -> skipped and counted
    df = pd.DataFrame({"patient_id": range(20), "time": np.arange(1.0, 21), "event": [1] + [0] * 19, "risk": -np.arange(20.0)})
    res = bootstrap_ci(df, _cidx, n=200, seed=0)
    assert res.n_failed > 0 and res.estimate == 1.0


def test_paired_bootstrap_detects_better_method():
    base, x, rng = _pred(120)
    good = base.assign(risk=x + rng.normal(scale=0.3, size=len(x)))
    bad = base.assign(risk=rng.normal(size=len(x)))
    delta, ci, p = paired_bootstrap(good, bad.sample(frac=1, random_state=1), _cidx, n=200, seed=0)
    assert delta > 0.15 and ci[0] > 0 and p < 0.01
    # a method against itself: delta 0, p = 1
    d0, ci0, p0 = paired_bootstrap(good, good, _cidx, n=100, seed=0)
    assert d0 == 0.0 and ci0 == (0.0, 0.0) and p0 == 1.0
    # two equally noisy methods: not significant
    other = base.assign(risk=x + rng.normal(scale=0.3, size=len(x)))
    _, ci1, p1 = paired_bootstrap(good, other, _cidx, n=200, seed=0)
    assert ci1[0] < 0 < ci1[1] and p1 > 0.05


def test_paired_bootstrap_requires_same_patients():
    base, x, _ = _pred(30)
    a = base.assign(risk=x)
    with pytest.raises(InputError, match="different patients"):
        paired_bootstrap(a, a.iloc[1:], _cidx, n=10)


def test_summaries_state_ddof():
    s0 = summarize_folds([0.6, 0.7, 0.8])
    s1 = summarize_folds([0.6, 0.7, 0.8], ddof=1)
    assert s0.std == pytest.approx(np.sqrt(2 / 3) * 0.1) and s1.std == pytest.approx(0.1)
    assert "ddof=0" in str(s0) and "ddof=1" in str(s1) and s0.as_dict()["ddof"] == 0
    nan = summarize_folds([0.6, np.nan, 0.8])
    assert nan.n == 2 and nan.n_nan == 1 and nan.mean == pytest.approx(0.7)
    seeds = summarize_seeds({0: [0.6, 0.8], 1: [0.7, 0.9]})
    # seed means 0.7 and 0.8 -> mean 0.75, population std 0.05
    assert seeds["seeds"].mean == pytest.approx(0.75) and seeds["seeds"].std == pytest.approx(0.05)
    assert seeds["units"].n == 4 and seeds["folds_of_seed_1"].mean == pytest.approx(0.8)
    with pytest.raises(InputError):
        summarize_folds([0.5], ddof=2)


# ------------------------------------------------------------------ PooledMetric: the fast resampling path
def _pooled_tables(n=120, seed=0):
    """Survival, 3-class (labels as names, some masked) and regression tables with missing labels."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    x = rng.normal(size=n)
    t = rng.exponential(np.exp(-x)) * 10
    t[:7] = np.nan  # patients without a survival label
    surv = pd.DataFrame({"patient_id": ids, "time": t, "event": np.where(np.isnan(t), np.nan, (rng.random(n) < 0.6).astype(float)),
                         "risk": x + rng.normal(scale=0.7, size=n)})
    probs = rng.dirichlet([1, 1, 1], size=n)
    lab = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, n)]
    lab[:5] = None
    cls = pd.DataFrame({"patient_id": ids, "label": lab, "prob_a": probs[:, 0], "prob_b": probs[:, 1], "prob_c": probs[:, 2]})
    v = x * 2.0
    v[:4] = np.nan
    reg = pd.DataFrame({"patient_id": ids, "value": v, "prediction": x + rng.normal(size=n)})
    return surv, cls, reg


@pytest.mark.parametrize(("kind", "names"), [("survival", ["c_index"]), ("classification", ["balanced_accuracy", "macro_f1", "macro_auc", "accuracy"]),
                                             ("regression", ["mse", "mae", "r2"])])
def test_pooled_metric_bootstrap_equals_table_resampling(kind, names):
    """The index path must give exactly the CI of resampling tables through compute_metrics."""
    from _eval_task_info import make_task_info

    from modaltune.evaluation.metrics import PooledMetric, compute_metrics

    surv, cls, reg = _pooled_tables()
    info = make_task_info(kind, classes=["a", "b", "c"] if kind == "classification" else None)
    df = {"survival": surv, "classification": cls, "regression": reg}[kind]
    for name in names:
        slow = bootstrap_ci(df, lambda d, _n=name: compute_metrics(info, d, None, [_n])[_n], n=60, seed=2)
        fast = bootstrap_ci(df, PooledMetric(info, name), n=60, seed=2)
        assert fast == slow, name
        other = df.assign(**({"risk": -df["risk"]} if kind == "survival" else {"prob_a": df["prob_c"], "prob_c": df["prob_a"]} if kind == "classification"
                             else {"prediction": -df["prediction"]}))
        ps = paired_bootstrap(df, other, lambda d, _n=name: compute_metrics(info, d, None, [_n])[_n], n=40, seed=1)
        pf = paired_bootstrap(df, other, PooledMetric(info, name), n=40, seed=1)
        assert pf == ps, name
    bound = PooledMetric(info, names[0]).bind(df)
    rows = np.array([3, 3, 10, 50, 51, 52, 80, 90, 100, 110, 111, 119])
    assert bound(None) == pytest.approx(compute_metrics(info, df, None, [names[0]])[names[0]])
    sub = df.iloc[rows].assign(patient_id=[f"x{i}" for i in range(len(rows))])
    ref = compute_metrics(info, sub, None, [names[0]])[names[0]]
    assert (np.isnan(ref) and np.isnan(bound(rows))) or bound(rows) == pytest.approx(ref)


def test_pooled_metric_undefined_resample_is_nan_and_fold_metrics_are_refused():
    from _eval_task_info import make_task_info

    from modaltune.evaluation.metrics import PooledMetric

    surv, _, _ = _pooled_tables()
    info = make_task_info("survival")
    f = PooledMetric(info, "c_index").bind(surv.assign(event=np.where(surv["time"].isna(), np.nan, 0.0)).iloc[:20])
    assert np.isnan(f(np.arange(20)))  # no event: undefined, not an error
    with pytest.raises(InputError, match="cannot be pooled"):
        PooledMetric(info, "c_index_uno")
