"""Engine options: Cox batch guard, warm-up start lr, early stopping, uncertainty weighting,
bf16-mixed on CPU, TensorBoard logging, multi-fold `modaltune fit`, device counting."""
from __future__ import annotations

import math
from types import SimpleNamespace as N

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from modaltune.data.cohort import Cohort
from modaltune.data.splits import SplitSet, kfold_split
from modaltune.errors import ConfigError
from modaltune.training.module import _warmup_cosine
from modaltune.training.trainer import fit, predict

FAST = {"max_epochs": 2, "progress_bar": False, "accumulate_grad_batches": 4, "logger": "none"}


def _fold(cohort_dir):
    return SplitSet.load(cohort_dir / "splits" / "kfold3.csv").folds[0]


class _Record(Callback):
    """Records the epochs run and the learning rate of every optimiser step."""

    def __init__(self):
        self.epochs: list[int] = []
        self.lrs: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs.append(trainer.current_epoch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_cox_head_with_one_patient_per_step_is_refused_and_trains_with_a_batch(tiny_cohort_dir, tmp_path):
    import pandas as pd

    from modaltune.losses import cox_partial_likelihood

    # why: one patient's partial likelihood is log(e^r / e^r) = 0 for any risk r
    assert cox_partial_likelihood(torch.tensor([2.5]), torch.tensor([3.0]), torch.tensor([1.0])).item() == 0.0
    cohort = Cohort.load(tiny_cohort_dir)
    fold = _fold(tiny_cohort_dir)
    with pytest.raises(ConfigError, match=r"trainer\.batch_size.*Cox partial likelihood of one patient.*batch_size >= 2") as ei:
        fit(cohort, fold, "mean_pool", params={"survival_head": "cox"}, tasks=["survival"], trainer=FAST)
    assert "\n" not in str(ei.value)
    # with 4 patients per step the Cox loss is a real risk-set likelihood (> 0) and the risks differ
    fm = fit(cohort, fold, "mean_pool", params={"survival_head": "cox"}, tasks=["survival"], out_dir=tmp_path / "cox",
             trainer={**FAST, "batch_size": 4, "accumulate_grad_batches": 1, "logger": "csv"})
    log = pd.read_csv(tmp_path / "cox" / "train" / "metrics.csv")
    assert (log["train/loss_survival"].dropna() > 0).all()
    risk = predict(fm, cohort, fold.test)["risk"].to_numpy()
    assert np.isfinite(risk).all() and np.ptp(risk) > 0


def test_warmup_from_start_lr_multipliers_and_trainer_lrs(tiny_cohort_dir):
    f = _warmup_cosine(warmup=4, total=8, start=0.05)
    # linear from 0.05 at step 0 to 1 at step 4, then cosine 0.5 * (1 + cos(pi * (s - 4) / 4))
    assert [f(s) for s in range(9)] == pytest.approx([0.05, 0.2875, 0.525, 0.7625, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5,
                                                      0.5 * (1 + math.cos(3 * math.pi / 4)), 0.0])
    cohort = Cohort.load(tiny_cohort_dir)
    fold = _fold(tiny_cohort_dir)
    rec = _Record()
    tr = {**FAST, "accumulate_grad_batches": 1, "max_epochs": 2, "lr": 1e-4, "scheduler": "cosine", "warmup_epochs": 1, "warmup_start_lr": 5e-6}
    fit(cohort, fold, "mean_pool", tasks=["subtype"], trainer=tr, callbacks=[rec])
    n = len(fold.train)  # steps per epoch (batch 1, no accumulation)
    assert rec.lrs[0] == pytest.approx(5e-6)
    assert rec.lrs[n] == pytest.approx(1e-4)  # warm-up over: lr reached at the first step of epoch 1
    assert rec.lrs[n // 2] == pytest.approx(5e-6 + (1e-4 - 5e-6) * (n // 2) / n)
    from modaltune.training.experiment_config import TrainerConfig

    with pytest.raises(ValueError, match="warmup_start_lr needs scheduler: cosine"):
        TrainerConfig(warmup_start_lr=5e-6)
    with pytest.raises(ValueError, match="above lr"):
        TrainerConfig(scheduler="cosine", warmup_epochs=1, warmup_start_lr=1e-2, lr=1e-4)


def test_early_stopping_stops_on_a_plateau(tiny_cohort_dir):
    cohort = Cohort.load(tiny_cohort_dir)
    tgt = cohort.targets("subtype")
    fold = kfold_split(cohort.patient_ids, 3, seed=0, labels=tgt.label, val_fraction_of_train=0.3).folds[0]
    assert fold.val and fold.test
    rec = _Record()
    # lr 1e-30 leaves the float32 weights unchanged, so val/loss is exactly flat: patience 1 stops after epoch 1
    tr = {**FAST, "max_epochs": 6, "lr": 1e-30, "early_stopping": {"monitor": "val/loss", "patience": 1}}
    fit(cohort, fold, "mean_pool", tasks=["subtype"], trainer=tr, callbacks=[rec])
    assert rec.epochs == [0, 1]
    rec2 = _Record()
    fit(cohort, fold, "mean_pool", tasks=["subtype"], trainer={**tr, "early_stopping": None}, callbacks=[rec2])
    assert rec2.epochs == list(range(6))  # off by default: every epoch runs


def test_uncertainty_task_weights_learn_through_a_real_model(tiny_cohort_dir):
    cohort = Cohort.load(tiny_cohort_dir)
    fold = _fold(tiny_cohort_dir)
    fm = fit(cohort, fold, "mean_pool", params={"task_weights": "uncertainty", "hidden": 8}, tasks=["subtype", "survival"],
             trainer={**FAST, "lr": 1e-2, "accumulate_grad_batches": 1})
    log_vars = fm.model.task_weighting.log_vars.detach()
    assert log_vars.shape == (2,) and (log_vars.abs() > 1e-3).all()
    # the learned weights are saved and reloaded with the model
    assert "task_weighting.log_vars" in fm.model.state_dict()


def test_bf16_mixed_precision_trains_and_predicts_on_cpu(tiny_cohort_dir, tmp_path):
    cohort = Cohort.load(tiny_cohort_dir)
    fold = _fold(tiny_cohort_dir)
    fm = fit(cohort, fold, "mean_pool", params={"hidden": 8}, tasks=["subtype", "survival"], trainer={**FAST, "precision": "bf16-mixed"}, out_dir=tmp_path / "m")
    p = predict(fm, cohort, fold.test)
    sub = p[p.task == "subtype"]
    assert np.isfinite(p["risk"].dropna()).all() and len(p["risk"].dropna()) == len(fold.test)
    assert np.allclose(sub["prob_A"] + sub["prob_B"], 1.0, atol=1e-2)
    assert all(v.dtype == torch.float32 for v in fm.model.state_dict().values() if v.is_floating_point())  # weights stay fp32


def test_tensorboard_logger_writes_event_files(tiny_cohort_dir, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (extra modaltune[loggers])")
    cohort = Cohort.load(tiny_cohort_dir)
    fit(cohort, _fold(tiny_cohort_dir), "mean_pool", tasks=["subtype"], trainer={**FAST, "logger": "tensorboard"}, out_dir=tmp_path / "tb")
    assert list((tmp_path / "tb" / "train").glob("events.out.tfevents.*"))


def test_fit_command_over_all_folds_and_resume(tiny_cohort_dir, tmp_path):
    import yaml

    from modaltune.cli import main

    cfg = {"name": "folds", "data": {"cohorts": [str(tiny_cohort_dir)]}, "split": {"file": "kfold3"}, "fold": "all",
           "method": {"name": "mean_pool", "params": {"hidden": 4}}, "tasks": ["subtype"], "trainer": {**FAST, "max_epochs": 1}}
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "m"
    assert main(["fit", str(path), "--out", str(out)]) == 0
    folds = SplitSet.load(tiny_cohort_dir / "splits" / "kfold3.csv").folds
    import json

    for f in folds:
        meta = json.loads((out / f"fold{f.index}" / "model" / "fitted.json").read_text())
        assert sorted(meta["train_ids"]) == sorted(f.train)
    mtime = (out / "fold1" / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(["fit", str(path), "--out", str(out), "--set", "fold=[1]"]) == 0  # done folds are loaded, not retrained
    assert (out / "fold1" / "model" / "model.safetensors").stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match="fit_folds"):
        from modaltune.config import load_config
        from modaltune.training.experiment_config import ExperimentConfig

        fit(load_config(path, ExperimentConfig))


@pytest.mark.parametrize(
    "trainer, n, ray",
    [
        ({"accelerator": "cpu", "devices": 1}, 1, {"num_cpus": 1, "num_gpus": 0}),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp"}, 2, {"num_cpus": 2, "num_gpus": 0}),
        ({"accelerator": "gpu", "devices": 2, "strategy": "ddp"}, 2, {"num_cpus": 1, "num_gpus": 2}),
        ({"accelerator": "cuda", "devices": [0, 1, 2]}, 3, {"num_cpus": 1, "num_gpus": 3}),
        ({"accelerator": "gpu", "devices": "0,1", "num_workers": 2}, 2, {"num_cpus": 3, "num_gpus": 2}),
        ({"accelerator": "gpu", "devices": 2, "strategy": "dp"}, 1, {"num_cpus": 1, "num_gpus": 2}),
        ({"accelerator": "auto", "devices": 1}, 1, {"num_cpus": 1, "num_gpus": 0}),
    ],
)
def test_process_counts_and_ray_resource_requests(trainer, n, ray):
    from modaltune.benchmark.launch import num_processes, ray_task_options
    from modaltune.training.experiment_config import TrainerConfig

    t = TrainerConfig(**trainer)
    assert num_processes(t) == n
    assert ray_task_options(t) == ray


def test_gpu_auto_devices_request_one_ray_gpu():
    from modaltune.benchmark.launch import ray_task_options

    assert ray_task_options(N(accelerator="gpu", devices="auto", strategy="auto", num_workers=0)) == {"num_cpus": 1, "num_gpus": 1}
    assert ray_task_options(N(accelerator="gpu", devices=-1, strategy="auto", num_workers=0)) == {"num_cpus": 1, "num_gpus": 1}


@pytest.mark.parametrize(("given", "passed"), [("ddp", "ddp_find_unused_parameters_true"), ("DDP_spawn", "DDP_spawn_find_unused_parameters_true"),
                                               ("auto", "auto"), ("dp", "dp"), ("ddp_find_unused_parameters_false", "ddp_find_unused_parameters_false")])
def test_ddp_tolerates_parameters_a_batch_leaves_unused(given, passed):
    """ModalTune under plain DDP stopped at step 2 on a GPU (unused parameters); DDP launchers now look for them."""
    from modaltune.training.trainer import lightning_strategy

    assert lightning_strategy(given) == passed


def test_lightning_trainer_gets_the_unused_parameter_ddp_strategy(tmp_path):
    from lightning.pytorch.strategies import DDPStrategy

    from modaltune.training.experiment_config import TrainerConfig
    from modaltune.training.trainer import _lightning_trainer

    tr = _lightning_trainer(TrainerConfig(accelerator="cpu", devices=1, strategy="ddp", logger="none", checkpoint=False), out_dir=None,
                            callbacks=[], has_val=False, progress=False)
    assert isinstance(tr.strategy, DDPStrategy)
    assert tr.strategy._ddp_kwargs.get("find_unused_parameters") is True
