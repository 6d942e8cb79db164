"""Lightning callbacks and logger construction used by the engine."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping

from modaltune.errors import require

__all__ = ["SetEpoch", "SeedEachEpoch", "LastCheckpoint", "seed_all", "build_callbacks", "build_logger", "LAST_CKPT"]

LAST_CKPT = "last.ckpt"


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    # torch.manual_seed also queues a lazy CUDA seeding that records a stack trace (~2 ms): seed the
    # CPU generator directly and CUDA only when it is in use
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


class SeedEachEpoch(Callback):
    """Re-seed the global RNGs before the first training batch of every epoch from (seed, epoch).

    Checkpoints do not carry RNG states, and Lightning consumes the global RNG at slightly
    different moments in a resumed run (e.g. when the dataloader iterator is created), so without
    this a run resumed after epoch k would draw different dropout / modality-dropout masks than the
    uninterrupted run. With it, a resumed run reproduces the uninterrupted one exactly on CPU.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0:  # after the first batch both runs consume the RNG identically
            seed_all((self.seed * 1_000_003 + trainer.current_epoch) % (2**63 - 1))


class SetEpoch(Callback):
    """Tell the training dataset the epoch number, so per-epoch patch sampling differs between
    epochs yet stays a function of (seed, epoch) and therefore reproducible and resumable."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        ds = getattr(dm, "train_dataset", None) if dm is not None else None
        if ds is not None and hasattr(ds, "set_epoch"):
            ds.set_epoch(trainer.current_epoch)


class LastCheckpoint(Checkpoint):
    """Write ``<dirpath>/last.ckpt`` at the end of every training epoch (atomically: a temporary
    file then ``os.replace``), for resuming an interrupted run. No model selection: the protocols
    report the last epoch, so there is only ever one checkpoint."""

    def __init__(self, dirpath: str | Path):
        self.dirpath = Path(dirpath)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        import os

        tmp = self.dirpath / f".{LAST_CKPT}.tmp"
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(str(tmp))  # collective call; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.dirpath / LAST_CKPT)
        trainer.strategy.barrier("last_checkpoint")


def build_callbacks(trainer_cfg: Any, ckpt_dir: str | Path | None, has_val: bool) -> list[Callback]:
    """SetEpoch, a ``last.ckpt`` checkpoint each epoch (for resume), optional early stopping."""
    cbs: list[Callback] = [SetEpoch()]
    if ckpt_dir is not None and trainer_cfg.checkpoint:
        cbs.append(LastCheckpoint(ckpt_dir))
    es = trainer_cfg.early_stopping
    if es is not None:
        if es.monitor.startswith("val/") and not has_val:
            from modaltune.errors import ConfigError

            raise ConfigError("early stopping monitors a validation metric but the fold has no validation patients", where="trainer.early_stopping", fix="set split.val_fraction > 0 or remove early_stopping")
        cbs.append(EarlyStopping(monitor=es.monitor, patience=es.patience, mode=es.mode))
    return cbs


def build_logger(kind: str, save_dir: str | Path | None, name: str = "train"):
    """Lightning logger: ``csv`` (default), ``tensorboard``, ``mlflow``, ``wandb`` or ``none``.

    Optional loggers are imported lazily; a missing package raises an error naming the extra.
    """
    if kind == "none" or save_dir is None:
        return False
    save_dir = str(save_dir)
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir, name=name, version="")
    if kind == "tensorboard":
        require("tensorboard", "loggers", "the TensorBoard logger")
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir, name=name, version="")
    if kind == "mlflow":
        require("mlflow", "loggers", "the MLflow logger")
        from lightning.pytorch.loggers import MLFlowLogger

        return MLFlowLogger(experiment_name=name, tracking_uri=f"file:{Path(save_dir).resolve() / 'mlruns'}")
    if kind == "wandb":
        require("wandb", "loggers", "the Weights & Biases logger")
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(save_dir=save_dir, name=name, offline=True)
    from modaltune.errors import ConfigError

    raise ConfigError(f"unknown logger '{kind}'", where="trainer.logger", fix="use csv, tensorboard, mlflow, wandb or none")
