"""User time grids and tau (dropped points recorded), per-task probe metrics, fold+seed spreads,
and the evaluation config's restrictions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _eval_task_info import make_task_info
from pydantic import ValidationError

from modaltune.evaluation import compute_metrics, macro_ovr_auc, summary_table
from modaltune.evaluation.metrics import clip_time_points, uno_c, uno_tau
from modaltune.evaluation.probes import CoxProbe, LogisticProbe, probe_task_metrics

T = np.array([2.0, 3.0, 5.0, 7.0, 11.0, 13.0])
E = np.array([0, 1, 1, 0, 1, 0])
TRAIN_T = np.array([1.0, 4.0, 6.0, 9.0, 12.0])
TRAIN_E = np.array([1, 1, 0, 1, 0])


def test_clip_time_points_names_every_dropped_point():
    kept, dropped = clip_time_points([1.0, 3.0, 10.0, 12.0, 20.0], T, E, TRAIN_T)
    # first event at 3; training times end at 12 (< last test time 13)
    assert kept.tolist() == [3.0, 10.0]
    assert [(d["time"], d["reason"].split(" (")[0]) for d in dropped] == [
        (1.0, "before the first event time"),
        (12.0, "at or after the largest training time"),
        (20.0, "at or after the largest training time"),
    ]
    _, d2 = clip_time_points([20.0], T, E)  # without training times: the test follow-up bounds it
    assert d2[0]["reason"] == "at or after the last follow-up time (13) of the evaluated patients"
    _, d3 = clip_time_points([5.0], T, np.zeros(6))
    assert d3[0]["reason"].startswith("no event among the evaluated patients")


def test_compute_metrics_records_grid_and_tau_notes():
    info = make_task_info("survival")
    df = pd.DataFrame({"patient_id": [f"p{i}" for i in range(6)], "time": T, "event": E, "risk": -T})
    tr = pd.DataFrame({"time": TRAIN_T, "event": TRAIN_E})
    mv = compute_metrics(info, df, tr, ["cd_auc", "c_index_uno"], times=[1.0, 4.0, 8.0, 30.0], tau=100.0)
    assert mv.notes["time_grid"] == [4.0, 8.0]
    assert [d["time"] for d in mv.notes["time_grid_dropped"]] == [1.0, 30.0]
    assert mv.notes["tau"] == {"requested": 100.0, "used": 12.0, "reason": "tau=100 clipped to the largest training time 12"}
    assert mv["c_index_uno"] == pytest.approx(uno_c(TRAIN_T, TRAIN_E, T, E, -T, tau=12.0))
    # every requested point outside follow-up: NaN with the reasons, never a silent automatic grid
    mv2 = compute_metrics(info, df, tr, ["cd_auc"], times=[0.5, 50.0])
    assert np.isnan(mv2["cd_auc"]) and "none of the requested time points" in mv2.reasons["cd_auc"] and "50: at or after" in mv2.reasons["cd_auc"]
    assert uno_tau(TRAIN_T, T, 5.0) == (5.0, "")


def test_probe_task_metrics_equal_the_probes_themselves():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int)
    cls = make_task_info("classification", classes=["a", "b"])
    out = probe_task_metrics(cls, X[:40], pd.DataFrame({"label": y[:40]}), X[40:], pd.DataFrame({"label": y[40:]}))
    probe = LogisticProbe(C=1.0).fit(X[:40], y[:40])
    assert out["probe_balanced_accuracy"] == (pytest.approx(probe.score(X[40:], y[40:])), "")
    assert out["probe_macro_auc"][0] == pytest.approx(macro_ovr_auc(y[40:], probe.predict_proba(X[40:])))
    assert out["probe_macro_auc"][0] > 0.8  # the signal in feature 0 is found
    t = np.exp(-X[:, 1]) * rng.exponential(size=60) + 0.1
    e = (rng.random(60) < 0.7).astype(float)
    surv = make_task_info("survival")
    frame = pd.DataFrame({"time": t, "event": e})
    out = probe_task_metrics(surv, X[:40], frame.iloc[:40], X[40:], frame.iloc[40:])
    ref = CoxProbe(penalizer=0.1).fit(X[:40], frame.iloc[:40]).score(X[40:], frame.iloc[40:])
    assert out == {"probe_c_index": (pytest.approx(ref), "")}
    # one training class: NaN with the reason, for both metrics
    bad = probe_task_metrics(cls, X[:10], pd.DataFrame({"label": np.zeros(10, int)}), X[40:], pd.DataFrame({"label": y[40:]}))
    assert np.isnan(bad["probe_balanced_accuracy"][0]) and "single class" in bad["probe_macro_auc"][1]
    assert probe_task_metrics(make_task_info("regression"), X, None, X, None) == {}


def test_folds_and_seeds_spreads_hand_computed():
    vals = {(0, 0): 0.6, (1, 0): 0.8, (2, 0): 0.7, (0, 1): 0.7, (1, 1): 0.9, (2, 1): 0.8}
    df = pd.DataFrame([dict(method="m", cohort="C", task="t", metric="c", fold=f, seed=s, value=v) for (f, s), v in vals.items()])
    md = summary_table(df, ddof=0)
    # fold means 0.65, 0.85, 0.75 -> mean 0.75, std sqrt(0.02/3) = 0.0816; seed means 0.7, 0.8 -> std 0.05
    assert "| m | 0.750 ± 0.082 · seeds ± 0.050 |" in md
    assert "then 'seeds ± std' over seeds" in md
    units = summary_table(df, std_over="units")
    assert "| m | 0.750 ± 0.096 |" in units  # every fold x seed value: population std of the six


def test_evaluation_config_restricts_ddof_and_checks_compare(tmp_path):
    from modaltune.training.experiment_config import BenchmarkConfig, EvaluationConfig

    with pytest.raises(ValidationError, match="Input should be 0 or 1"):
        EvaluationConfig(ddof=2)
    with pytest.raises(ValidationError, match="times must be finite and > 0"):
        EvaluationConfig(times=[-1.0])
    base = {"data": {"cohorts": [str(tmp_path)]}, "methods": [{"name": "mean_pool"}, {"name": "logistic"}]}
    with pytest.raises(ValidationError, match=r"compare names method\(s\) \['abmil'\]"):
        BenchmarkConfig.model_validate({**base, "evaluation": {"compare": [["mean_pool", "abmil"]]}})
    with pytest.raises(ValidationError, match="bootstrap >= 1"):
        BenchmarkConfig.model_validate({**base, "evaluation": {"compare": "mean_pool", "bootstrap": 0}})
    cfg = BenchmarkConfig.model_validate({**base, "evaluation": {"compare": "mean_pool"}})
    assert cfg.comparison_pairs() == [("logistic", "mean_pool")]
