"""LightningDataModule over one cohort and one fold.

The preprocessor (omics scaling, clinical encoding, survival bins) is fitted on the fold's
*training* patients only, then applied to every partition, so no statistic of an evaluation
patient leaks into training.
"""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

__all__ = ["CohortDataModule", "EpochShuffleSampler", "fit_preprocessor"]


class EpochShuffleSampler(torch.utils.data.Sampler):
    """Shuffled order that is a function of (seed, epoch) only.

    Lightning calls ``set_epoch`` before each epoch, so a run resumed from a checkpoint sees the
    same patient order in its remaining epochs as the uninterrupted run.
    """

    def __init__(self, n: int, seed: int = 0):
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def fit_preprocessor(cohort: Any, train_ids: list[str], *, modalities: list[str] | None, tasks: list[str] | None, omics_scaling: str = "zscore", bin_mode: str = "strict", pathways: dict[str, Any] | None = None):
    """A ``CohortPreprocessor`` fitted on ``train_ids`` (its ``.info`` is the ``CohortInfo``)."""
    from modaltune.data.dataset import CohortPreprocessor

    if pathways:
        # only omics modalities the method uses get pathway tokens
        used = set(modalities) if modalities is not None else {m.name for m in cohort.modalities}
        pathways = {k: v for k, v in pathways.items() if k in used}
    return CohortPreprocessor(cohort, modalities=modalities, tasks=tasks, omics_scaling=omics_scaling, bin_mode=bin_mode, pathways=pathways or None).fit(list(train_ids))


class CohortDataModule(L.LightningDataModule):
    """Train / validation / predict loaders of one fold.

    Args:
        cohort: a ``Cohort``.
        train_ids: training patients (the preprocessor is fitted on them).
        val_ids: patients of the validation loop (loss only; may be empty -> no validation loop).
        preprocessor: a fitted preprocessor (default: fitted here on ``train_ids``).
        batch_size: patients per batch (padded bags when > 1).
        max_patches: patch cap per bag (random subset in training, deterministic otherwise).
        seed: seeds the training shuffle and patch sampling.
        cache_bags: True / False / "auto": keep training and validation bags in memory after
            their first read (:class:`~modaltune.data.dataset.PatientDataset`); "auto" = when
            ``num_workers`` is 0 and the bag files fit :func:`~modaltune.data.dataset.bag_cache_fits`.
            Prediction loaders (one pass) never cache.
    """

    def __init__(
        self,
        cohort: Any,
        train_ids: list[str],
        val_ids: list[str] | None = None,
        *,
        preprocessor: Any = None,
        modalities: list[str] | None = None,
        tasks: list[str] | None = None,
        omics_scaling: str = "zscore",
        bin_mode: str = "strict",
        batch_size: int = 1,
        max_patches: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        cache_bags: bool | str = "auto",
    ):
        super().__init__()
        self.cohort = cohort
        self.train_ids = list(train_ids)
        self.val_ids = list(val_ids or [])
        self.modalities = modalities
        self.tasks = tasks
        self.batch_size = batch_size
        self.max_patches = max_patches
        self.num_workers = num_workers
        self.seed = seed
        self.cache_bags = cache_bags
        self.preprocessor = preprocessor if preprocessor is not None else fit_preprocessor(
            cohort, self.train_ids, modalities=modalities, tasks=tasks, omics_scaling=omics_scaling, bin_mode=bin_mode
        )
        self.train_dataset = None

    @property
    def info(self):
        return self.preprocessor.info

    def _cache(self, ids: list[str]) -> bool:
        if self.cache_bags != "auto":
            return bool(self.cache_bags)
        from modaltune.data.dataset import bag_cache_fits

        return self.num_workers == 0 and bag_cache_fits(self.preprocessor, ids)

    def dataset(self, ids: list[str], training: bool, *, cache: bool | None = None):
        """A :class:`~modaltune.data.dataset.PatientDataset` of ``ids``; ``cache`` None = the
        module's ``cache_bags`` setting."""
        from modaltune.data.dataset import PatientDataset

        cache = self._cache(list(ids)) if cache is None else cache
        return PatientDataset(self.cohort, list(ids), self.preprocessor, training=training, max_patches=self.max_patches, seed=self.seed, cache_bags=cache)

    def _loader(self, ds, shuffle: bool) -> DataLoader:
        from modaltune.data.dataset import collate_patients

        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(len(ds), self.seed) if shuffle else None,
            collate_fn=collate_patients,
            num_workers=self.num_workers,
            persistent_workers=False,  # workers are re-created each epoch so set_epoch reaches them
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            self.train_dataset = self.dataset(self.train_ids, training=True)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self):
        if not self.val_ids:
            return []
        return self._loader(self.dataset(self.val_ids, training=False), shuffle=False)

    def predict_loader(self, ids: list[str], batch_size: int | None = None) -> DataLoader:
        ds = self.dataset(ids, training=False, cache=False)
        from modaltune.data.dataset import collate_patients

        return DataLoader(ds, batch_size=batch_size or self.batch_size, shuffle=False, collate_fn=collate_patients, num_workers=self.num_workers)
