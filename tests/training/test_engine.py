"""The Lightning engine: reproducibility, resume, masking, schedules, saved models."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from modaltune.data.cohort import Cohort
from modaltune.data.splits import SplitSet
from modaltune.errors import ConfigError, InputError, MissingExtraError
from modaltune.training.module import MultiTaskLightningModule, _warmup_cosine, outputs_to_columns
from modaltune.training.trainer import FittedModel, embed, fit, predict

FAST = {"max_epochs": 2, "progress_bar": False, "accumulate_grad_batches": 4, "logger": "none"}


def _fold(cohort_dir):
    return SplitSet.load(cohort_dir / "splits" / "kfold3.csv").folds[0]


def test_warmup_cosine_multipliers_match_hand_values():
    f = _warmup_cosine(warmup=2, total=6)
    # linear warm-up (step+1)/2, then 0.5 * (1 + cos(pi * (step-2)/4))
    expected = [0.5, 1.0, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)), 0.0]
    assert [f(s) for s in range(7)] == pytest.approx(expected)


def test_output_columns_hand_computed():
    from types import SimpleNamespace as N

    surv = N(spec=N(kind="survival", name="os", classes=[]), class_names=[])
    cols = outputs_to_columns(surv, torch.zeros(1, 3))  # hazards 0.5 -> S = 0.5, 0.25, 0.125
    assert [cols[f"surv_{k}"][0] for k in range(3)] == pytest.approx([0.5, 0.25, 0.125])
    assert cols["risk"][0] == pytest.approx(-0.875)
    cox = outputs_to_columns(surv, torch.tensor([0.3, -1.0]))
    assert cox["risk"].tolist() == pytest.approx([0.3, -1.0]) and "surv_0" not in cox
    cls = N(spec=N(kind="classification", name="sub", classes=["A", "B"]), class_names=["A", "B"])
    c = outputs_to_columns(cls, torch.tensor([[0.0, math.log(3.0)]]))
    assert c["prob_A"][0] == pytest.approx(0.25) and c["prob_B"][0] == pytest.approx(0.75) and c["pred"][0] == 1


def test_same_seed_gives_identical_predictions_and_saved_model_reloads(tiny_cohort_dir, tmp_path):
    cohort = Cohort.load(tiny_cohort_dir)
    fold = _fold(tiny_cohort_dir)
    a = fit(cohort, fold, "mean_pool", params={"hidden": 8, "dropout": 0.2}, trainer=FAST, out_dir=tmp_path / "a")
    b = fit(cohort, fold, "mean_pool", params={"hidden": 8, "dropout": 0.2}, trainer=FAST, out_dir=tmp_path / "b")
    pa, pb = predict(a, cohort, fold.test), predict(b, cohort, fold.test)
    cols = ["prob_A", "prob_B", "risk", "surv_0", "surv_3"]
    assert np.array_equal(pa[cols].to_numpy(), pb[cols].to_numpy(), equal_nan=True)
    # a different seed trains a different model
    c = fit(cohort, fold, "mean_pool", params={"hidden": 8, "dropout": 0.2}, trainer={**FAST, "seed": 1})
    assert not np.allclose(predict(c, cohort, fold.test)["risk"].fillna(0), pa["risk"].fillna(0))
    # every evaluated patient is predicted once per task, none dropped
    assert sorted(pa["patient_id"].unique()) == sorted(fold.test)
    assert pa.groupby("task").size().to_dict() == {"subtype": len(fold.test), "survival": len(fold.test)}
    # the saved model (checkpoint + preprocessor without the cohort) predicts the same on a freshly loaded cohort
    loaded = FittedModel.load(tmp_path / "a" / "model")
    pl = predict(loaded, Cohort.load(tiny_cohort_dir), fold.test)
    assert np.allclose(pl[cols].to_numpy(float), pa[cols].to_numpy(float), equal_nan=True)
    emb = embed(loaded, cohort, fold.test)
    assert emb.shape == (len(fold.test), 8) and list(emb.index) == list(fold.test)


class _Interrupt(Callback):
    """Simulates a kill: raises at the start of epoch ``at`` (after epoch at-1 was checkpointed)."""

    def __init__(self, at: int):
        self.at = at

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at:
            raise RuntimeError("simulated kill")


def test_resume_after_interruption_equals_uninterrupted_run(tiny_cohort_dir, tmp_path):
    cohort = Cohort.load(tiny_cohort_dir)
    fold = _fold(tiny_cohort_dir)
    tr = {**FAST, "max_epochs": 3, "max_patches": 12, "modality_dropout": 0.0}
    params = {"hidden": 8, "dropout": 0.3}
    full = fit(cohort, fold, "mean_pool", params=params, trainer=tr, out_dir=tmp_path / "full")
    with pytest.raises(RuntimeError, match="simulated kill"):
        fit(cohort, fold, "mean_pool", params=params, trainer=tr, out_dir=tmp_path / "killed", callbacks=[_Interrupt(1)])
    assert (tmp_path / "killed" / "checkpoints" / "last.ckpt").exists()
    assert not (tmp_path / "killed" / "model").exists()
    ck = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["epoch"] == 0
    resumed = fit(cohort, fold, "mean_pool", params=params, trainer=tr, out_dir=tmp_path / "killed")
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_missing_labels_are_masked_out_of_the_loss(tiny_cohort_dir):
    """A patient without a subtype label trains the survival head and gives the subtype head no gradient."""
    from modaltune.data.dataset import PatientDataset, collate_patients
    from modaltune.methods.registry import build_method
    from modaltune.training.datamodule import fit_preprocessor

    cohort = Cohort.load(tiny_cohort_dir)
    pid = cohort.patient_ids[0]
    cohort.patients.loc[pid, "subtype"] = np.nan
    pp = fit_preprocessor(cohort, cohort.patient_ids, modalities=["slide"], tasks=["subtype", "survival"])
    batch = collate_patients([PatientDataset(cohort, [pid], pp, training=True)[0]])
    assert batch["target_mask"]["subtype"].tolist() == [False]
    model = build_method("mean_pool", pp.info)
    module = MultiTaskLightningModule(model, {t.spec.name: t for t in pp.info.tasks})
    assert module.task_infos.keys() == {"subtype", "survival"}
    out = model(batch)
    total, per_task = model.loss(batch, out)
    total = total + 0.0 * sum(o.sum() for o in out["outputs"].values())
    total.backward()
    assert per_task["subtype"].item() == 0.0
    assert all(float(p.grad.abs().sum()) == 0.0 for p in model.heads["subtype"].parameters())
    assert any(float(p.grad.abs().sum()) > 0.0 for p in model.heads["survival"].parameters())


def test_missing_labels_end_to_end_are_kept_and_counted(cohort_copy):
    pt = pd.read_csv(cohort_copy / "patients.csv", dtype={"patient_id": str})
    fold = _fold(cohort_copy)
    masked_test = fold.test[:3]
    pt.loc[pt["patient_id"].isin(masked_test), "subtype"] = np.nan
    # a missing survival label = empty time and empty event (a NaN time with an event is refused at load)
    pt.loc[pt["patient_id"].isin(fold.train[:4]), ["survival_months", "event"]] = np.nan
    pt.to_csv(cohort_copy / "patients.csv", index=False)
    cohort = Cohort.load(cohort_copy)
    fm = fit(cohort, fold, "mean_pool", tasks=["subtype", "survival"], trainer=FAST)
    p = predict(fm, cohort, fold.test)
    sub = p[p["task"] == "subtype"]
    assert set(sub.loc[~sub["labelled"], "patient_id"]) == set(masked_test)
    assert (sub.loc[~sub["labelled"], "label"] == -1).all()
    from modaltune.evaluation import compute_metrics

    mv = compute_metrics(fm.info.task("subtype"), sub)
    assert mv.n_masked == 3 and mv.n_used == len(fold.test) - 3


def test_tabular_method_runs_through_the_same_api(tiny_cohort_dir):
    cohort = Cohort.load(tiny_cohort_dir)
    fold = _fold(tiny_cohort_dir)
    fm = fit(cohort, fold, "logistic", modalities=["rna", "clinical"], tasks=["subtype"])
    p = predict(fm, cohort, fold.test)
    assert fm.kind == "tabular" and np.allclose(p["prob_A"] + p["prob_B"], 1.0)


def test_bad_inputs_raise_one_line_errors(tiny_cohort_dir):
    cohort = Cohort.load(tiny_cohort_dir)
    fold = _fold(tiny_cohort_dir)
    with pytest.raises(InputError, match="unknown method 'mean_pol'.*did you mean 'mean_pool'"):
        fit(cohort, fold, "mean_pol")
    with pytest.raises(InputError, match="unknown task 'nope'"):
        fit(cohort, fold, "mean_pool", tasks=["nope"])
    with pytest.raises(ConfigError, match=r"method\.params\.hiden: unknown key \(did you mean 'hidden'\?"):
        fit(cohort, fold, "mean_pool", params={"hiden": 3}, trainer=FAST)


def test_optional_logger_names_its_extra(tmp_path):
    from modaltune.training.callbacks import build_logger

    assert build_logger("csv", tmp_path).__class__.__name__ == "CSVLogger"
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtraError, match=r"modaltune\[loggers\]"):
            build_logger("wandb", tmp_path)
