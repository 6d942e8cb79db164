"""SurvPath through the engine: the tiny simulated cohort (10% of patients without a slide, 20%
without RNA), pathways from the data config, coverage written to the run folder and logged."""
from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import torch

from modaltune.data.cohort import Cohort
from modaltune.data.splits import SplitSet
from modaltune.training.trainer import fit, predict

FAST = {"max_epochs": 2, "progress_bar": False, "logger": "none", "checkpoint": False, "batch_size": 4}


def test_survpath_trains_and_predicts_on_the_tiny_cohort_with_missing_modalities(tiny_cohort_dir, tmp_path, caplog):
    torch.set_num_threads(1)
    cohort = Cohort.load(tiny_cohort_dir)
    gt = pd.read_csv(tiny_cohort_dir / "ground_truth.csv")
    fold = SplitSet.load(tiny_cohort_dir / "splits" / "kfold3.csv").folds[0]
    pw = str(resources.files("modaltune") / "resources" / "sim_pathways.csv")
    data = {"cohorts": [str(tiny_cohort_dir)], "pathways": {"rna": pw}}
    with caplog.at_level("INFO", logger="modaltune.training"):
        fitted = fit(cohort, fold, "survpath", params={"wsi_projection_dim": 16}, tasks=["survival"], data=data,
                     trainer=FAST, out_dir=tmp_path / "run", progress=False)
    cov = pd.read_csv(tmp_path / "run" / "pathway_coverage_rna.csv")
    assert len(cov) > 0 and (cov["n_found"] <= cov["n_expected"]).all()
    assert any("pathway coverage of 'rna'" in r.getMessage() for r in caplog.records)
    preds = predict(fitted, cohort, fold.test)
    assert list(preds["patient_id"]) == list(fold.test)
    # the cohort really has patients without a slide and without RNA, and they get predictions
    test = gt.set_index("patient_id").loc[list(fold.test)]
    assert test["missing_slide"].sum() > 0 or test["missing_rna"].sum() > 0
    train = gt.set_index("patient_id").loc[list(fold.train)]
    assert train["missing_slide"].sum() > 0 and train["missing_rna"].sum() > 0
    risk = preds[next(c for c in preds.columns if c.startswith("risk"))].to_numpy(float)
    assert np.isfinite(risk).all() and np.ptp(risk) > 0
