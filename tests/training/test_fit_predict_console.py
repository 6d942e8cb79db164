"""`modaltune fit` prints held-out metrics per fold and `modaltune predict` scores labelled patients:
the numbers printed and written to metrics.csv are recomputed here from the written predictions
with scikit-survival / scikit-learn (independent code paths, so compared with a float64 tolerance)."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sksurv.metrics import concordance_index_censored

from modaltune.cli import main
from modaltune.data.splits import SplitSet

FAST = {"max_epochs": 1, "progress_bar": False, "accumulate_grad_batches": 4, "logger": "none"}
TOL = 1e-9  # float64 metrics from two implementations (counts / sums of a few hundred pairs)


def _fit_cfg(cohort_dir, tmp_path, **kw) -> str:
    cfg = {"name": "console", "data": {"cohorts": [str(cohort_dir)]}, "split": {"file": "kfold3"}, "fold": [0, 1],
           "method": {"name": "mean_pool", "params": {"hidden": 4}}, "tasks": ["subtype", "survival"], "trainer": FAST, **kw}
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _by_hand(preds: pd.DataFrame) -> dict[str, float]:
    """{metric: value} of one fold's / one file's predictions, by scikit-survival / scikit-learn."""
    sub = preds[(preds["task"] == "subtype") & (preds["label"] >= 0)]
    y = sub["label"].astype(int).to_numpy()
    prob = sub[["prob_A", "prob_B"]].to_numpy(float)
    sv = preds[(preds["task"] == "survival") & preds["time"].notna()]
    c = concordance_index_censored(sv["event"].astype(bool).to_numpy(), sv["time"].to_numpy(float), sv["risk"].to_numpy(float))[0]
    return {"balanced_accuracy": balanced_accuracy_score(y, prob.argmax(1)), "macro_auc": roc_auc_score(y, prob[:, 1]), "c_index": c}


@pytest.fixture(scope="module")
def fitted_run(tiny_cohort_dir, tmp_path_factory):
    """A two-fold `modaltune fit` run: (out dir, stdout)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("fit")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["fit", _fit_cfg(tiny_cohort_dir, tmp), "--out", str(tmp / "m")]) == 0
    return tmp / "m", buf.getvalue()


def test_fit_prints_heldout_metrics_per_fold(fitted_run, tiny_cohort_dir):
    out, text = fitted_run
    metrics = pd.read_csv(out / "metrics.csv")
    preds = pd.read_csv(out / "heldout_predictions.csv")
    folds = {f.index: f for f in SplitSet.load(tiny_cohort_dir / "splits" / "kfold3.csv").folds}
    assert sorted(metrics["fold"].unique()) == [0, 1] and set(metrics["partition"]) == {"test"}
    flat = " ".join(text.split())  # the protocol caption wraps at the console width
    assert "held-out metrics per fold" in text and "metrics on each fold's 'test' patients (never trained on)" in flat
    assert (metrics["protocol"].str.contains("metrics on each fold's 'test' patients")).all()
    assert "SIMULATED" in text and metrics["protocol"].str.contains("SIMULATED").all()
    for k in (0, 1):
        p = preds[preds["fold"] == k]
        # scored on the fold's test patients only: none of them trained on
        assert sorted(p["patient_id"].unique()) == sorted(folds[k].test)
        assert not set(p["patient_id"]) & set(folds[k].train)
        hand = _by_hand(p)
        m = metrics[metrics["fold"] == k].set_index("metric")["value"]
        assert sorted(m.index) == sorted(hand)
        for name, v in hand.items():
            assert m[name] == pytest.approx(v, abs=TOL), (k, name)
            # the printed row of fold k shows the same value with 3 decimals
        row = next(line for line in text.splitlines() if re.match(rf"\W*{k}\W+subtype\W", line))
        assert f"{hand['balanced_accuracy']:.3f}" in row and f"{hand['macro_auc']:.3f}" in row
        row = next(line for line in text.splitlines() if re.match(rf"\W*{k}\W+survival\W", line))
        assert f"{hand['c_index']:.3f}" in row
    mean_c = np.mean([_by_hand(preds[preds["fold"] == k])["c_index"] for k in (0, 1)])
    assert any("mean ± std" in line and f"{mean_c:.3f} ±" in line for line in text.splitlines())


def test_fit_without_heldout_patients_says_so(tiny_cohort_dir, tmp_path, capsys):
    ids = pd.read_csv(tiny_cohort_dir / "patients.csv")["patient_id"]
    split = tmp_path / "all_train.csv"
    pd.DataFrame({"fold": 0, "partition": "train", "patient_id": ids}).to_csv(split, index=False)
    cfg = _fit_cfg(tiny_cohort_dir, tmp_path, split={"file": str(split)}, fold=0, tasks=["subtype"])
    assert main(["fit", cfg, "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "no held-out metrics: the fitted fold(s) keep no labelled patient out of training" in out
    assert not (tmp_path / "m" / "metrics.csv").exists()


def test_predict_with_labels_writes_metrics_equal_to_recomputation(fitted_run, tiny_cohort_dir, tmp_path, capsys):
    out, _ = fitted_run
    dest = tmp_path / "p" / "preds.csv"
    assert main(["predict", str(out / "fold1" / "model"), str(tiny_cohort_dir), "--out", str(dest), "--split", "kfold3", "--fold", "1"]) == 0
    text = capsys.readouterr().out
    preds = pd.read_csv(dest)
    metrics = pd.read_csv(dest.parent / "metrics.csv").set_index("metric")
    hand = _by_hand(preds)
    for name, v in hand.items():
        assert metrics.loc[name, "value"] == pytest.approx(v, abs=TOL), name
        assert f"{v:.3f}" in text
    assert (metrics["n_used"] == 10).all() and "none of them a training patient" in " ".join(text.split())
    assert f"metrics: {dest.parent / 'metrics.csv'}" in text
    # the same fold's held-out metrics as `fit` printed: the saved model predicts as the fitted one
    fit_m = pd.read_csv(out / "metrics.csv").query("fold == 1").set_index("metric")["value"]
    for name in hand:
        assert metrics.loc[name, "value"] == pytest.approx(fit_m[name], abs=1e-6)


def test_predict_features_scores_labels_table_and_flags_training_patients(fitted_run, tiny_cohort_dir, tmp_path, capsys):
    out, _ = fitted_run
    labels = pd.read_csv(tiny_cohort_dir / "patients.csv")  # patient ids: rows match slide files by prefix
    labels.loc[labels.index[:3], "subtype"] = np.nan  # three unlabelled files: left out of the subtype metrics
    labels.to_csv(tmp_path / "labels.csv", index=False)
    dest = tmp_path / "f" / "preds.csv"
    assert main(["predict", str(out / "fold0" / "model"), "--features", str(tiny_cohort_dir / "slides"), "--labels", str(tmp_path / "labels.csv"), "--out", str(dest)]) == 0
    text = capsys.readouterr().out
    preds = pd.read_csv(dest)
    metrics = pd.read_csv(dest.parent / "metrics.csv").set_index("metric")
    for name, v in _by_hand(preds).items():
        assert metrics.loc[name, "value"] == pytest.approx(v, abs=TOL), name
    n_files = preds["patient_id"].nunique()
    with_label = preds[(preds["task"] == "subtype") & (preds["label"] >= 0)]["patient_id"].nunique()
    assert with_label < n_files and metrics.loc["balanced_accuracy", "n_used"] == with_label
    assert metrics.loc["balanced_accuracy", "n_masked"] == n_files - with_label
    # the slides of fold 0's training patients are among the files: said, not hidden
    assert "WARNING" in text and "not held-out" in " ".join(text.split())


def test_predict_without_labels_is_unscored_and_still_writes(fitted_run, tiny_cohort_dir, tmp_path, capsys):
    out, _ = fitted_run
    dest = tmp_path / "u" / "preds.parquet"
    assert main(["predict", str(out / "fold0" / "model"), "--features", str(tiny_cohort_dir / "slides"), "--out", str(dest)]) == 0
    text = capsys.readouterr().out
    preds = pd.read_parquet(dest)
    n = len(list((tiny_cohort_dir / "slides").glob("*.h5")))
    assert len(preds) == 2 * n and set(preds["task"]) == {"subtype", "survival"}
    assert f"to {dest}" in text
    assert "predictions are unscored" in text and "subtype" in text
    assert not (dest.parent / "metrics.csv").exists()


def test_labels_table_without_label_columns_is_one_line_error(fitted_run, tiny_cohort_dir, tmp_path, capsys):
    out, _ = fitted_run
    pd.DataFrame({"patient_id": ["x"], "age": [3]}).to_csv(tmp_path / "bad.csv", index=False)
    rc = main(["predict", str(out / "fold0" / "model"), "--features", str(tiny_cohort_dir / "slides"), "--labels", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "the labels table has none of the model's label columns" in err and "--labels" in err


def test_evaluate_api_matches_cli(fitted_run, tiny_cohort_dir):
    from modaltune.data.cohort import Cohort
    from modaltune.training import FittedModel, evaluate

    out, _ = fitted_run
    fold = {f.index: f for f in SplitSet.load(tiny_cohort_dir / "splits" / "kfold3.csv").folds}[0]
    m = evaluate(FittedModel.load(out / "fold0" / "model"), Cohort.load(tiny_cohort_dir), fold.test)
    assert list(m.columns) == ["task", "metric", "value", "n_used", "n_masked", "reason"]
    fit_m = pd.read_csv(out / "metrics.csv").query("fold == 0").set_index("metric")["value"]
    for r in m.itertuples():
        assert r.value == pytest.approx(fit_m[r.metric], abs=1e-6)
