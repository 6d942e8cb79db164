"""Each figure function on the shared tiny run folder: PNG written, non-empty, sane pixel size."""
from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from modaltune.errors import InputError
from modaltune.reports import figures_classification as fc
from modaltune.reports import figures_comparison as fcmp
from modaltune.reports import figures_survival as fs
from modaltune.reports import figures_training as ft
from modaltune.reports.run_files import SIMULATED_LABEL, load_run, markdown_table


@pytest.fixture(scope="module")
def run(tiny_run):
    return load_run(tiny_run)


def _check_png(path, min_px=300, max_px=2500):
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert min_px <= w <= max_px and 200 <= h <= max_px, (w, h)
    ink = (img[..., :3].mean(-1) < 0.9).mean()  # fraction of non-white pixels: something is drawn
    assert 0.01 < ink < 0.6, ink


def test_run_files_read_protocol_label_and_ci(run):
    assert run.protocol.startswith("Protocol: simulated cohort, patient-level 3-fold CV, 1 seed")
    assert run.simulated and run.label == SIMULATED_LABEL
    assert set(run.ci["method"]) == {"mean_pool", "logistic", "coxnet"}
    assert ((run.ci["lo"] <= run.ci["estimate"]) & (run.ci["estimate"] <= run.ci["hi"])).all()
    assert run.tasks("survival") == [("sim_tiny_seed0", "survival")]
    assert run.tasks("classification") == [("sim_tiny_seed0", "subtype")]
    assert len(run.train_logs) == 6  # mean_pool: 2 tasks x 3 folds; tabular methods log no epochs


def test_markdown_table_parses_after_heading():
    text = "# t\n\n## CIs\n\nintro\n\n| a | b |\n|---|---|\n| 1 | x |\n| 2 | y |\n\n## next\n| c |\n|---|\n| 3 |\n"
    t = markdown_table(text, "## CIs")
    assert t.to_dict("list") == {"a": ["1", "2"], "b": ["x", "y"]}
    assert markdown_table(text, "## absent").empty


def test_load_run_rejects_a_folder_without_results(tmp_path):
    with pytest.raises(InputError, match="not a benchmark run folder") as e:
        load_run(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_every_figure_function_writes_a_sane_png(run, tmp_path):
    paths = [
        fs.km_figure(run, "sim_tiny_seed0", "survival", "mean_pool", tmp_path / "km.png"),
        fs.km_figure(run, "sim_tiny_seed0", "survival", "coxnet", tmp_path / "km3.png", scheme="tertiles"),
        fs.td_auc_figure(run, "sim_tiny_seed0", "survival", tmp_path / "tdauc.png"),
        fc.roc_pr_figure(run, "sim_tiny_seed0", "subtype", "logistic", tmp_path / "rocpr.png"),
        fc.confusion_figure(run, "sim_tiny_seed0", "subtype", "mean_pool", tmp_path / "cm.png"),
        fc.calibration_figure(run, "sim_tiny_seed0", "subtype", tmp_path / "cal.png"),
        fcmp.forest_figure(run, tmp_path / "forest.png"),
        ft.training_curves_figure(run, "mean_pool", "sim_tiny_seed0", "survival", tmp_path / "train.png"),
    ]
    for p in paths:
        assert p.exists() and p.stat().st_size > 5_000, p
        _check_png(p)


def test_figure_of_a_method_without_predictions_is_a_one_line_error(run, tmp_path):
    with pytest.raises(InputError, match="no survival predictions of logistic"):
        fs.km_figure(run, "sim_tiny_seed0", "survival", "logistic", tmp_path / "x.png")


def test_confusion_counts_match_the_predictions(run):
    y, probs, names = fc.class_arrays(run, "sim_tiny_seed0", "subtype", "logistic")
    assert names == ["A", "B"] and probs.shape == (len(y), 2)
    p = run.predictions.query("method == 'logistic' and task == 'subtype'")
    assert len(y) == int((p["label"] >= 0).sum())


def test_paired_difference_table_hand_case():
    r = pd.DataFrame({"method": ["a", "a", "b", "b"] * 2, "cohort": "c", "task": "t",
                      "metric": ["c_index"] * 4 + ["ibs"] * 4, "fold": [0, 1, 0, 1] * 2, "seed": 0,
                      "value": [0.7, 0.8, 0.6, 0.75, 0.20, 0.10, 0.25, 0.30]})
    t = fcmp.paired_difference_table(r).set_index("metric")
    # c_index: a is best (0.75 vs 0.675); b - a per fold = -0.1, -0.05
    assert t.loc["c_index", "reference"] == "a" and t.loc["c_index", "method"] == "b"
    assert t.loc["c_index", "mean_diff"] == pytest.approx(-0.075) and t.loc["c_index", "std_diff"] == pytest.approx(0.025)
    assert t.loc["c_index", "better"] == "0/2"
    # ibs: lower is better, so a (0.15) is the reference again; b - a = 0.05, 0.2
    assert t.loc["ibs", "reference"] == "a" and t.loc["ibs", "mean_diff"] == pytest.approx(0.125)


def test_missing_table_counts_patients(run):
    t = fcmp.missing_table(run.exclusions)
    raw = run.exclusions
    for _, row in t.iterrows():
        m = (raw["name"] == row["name"]) & (raw["reason"] == row["reason"])
        assert row["patients"] == raw.loc[m, "patient_id"].nunique()
    assert np.all(t["patients"] > 0)
