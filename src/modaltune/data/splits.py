"""Patient-level splits and the one survival time-binning function.

A :class:`SplitSet` is a list of :class:`Fold` objects, each with ``train``/``val``/``test``
patient id lists. On disk it is a long CSV ``fold,partition,patient_id`` under
``<cohort>/splits/<name>.csv``. Every constructor and reader checks that no patient appears in two
partitions of one fold.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from modaltune.data._files import ensure_readable
from modaltune.errors import InputError

__all__ = [
    "Fold",
    "SplitSet",
    "kfold_split",
    "train_val_test_split",
    "survival_bin_edges",
    "assign_survival_bins",
    "PARTITIONS",
]

PARTITIONS = ("train", "val", "test")


@dataclass
class Fold:
    """One fold: disjoint patient id lists. ``val`` is the held-out fold in k-fold CV protocols
    without a test set (MCAT/PORPOISE); ``test`` may be empty."""

    index: int
    train: list[str]
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)

    def check(self, source: str = "split") -> None:
        """Raise :class:`InputError` if a patient is in two partitions or twice in one."""
        seen: dict[str, str] = {}
        for part in PARTITIONS:
            ids = getattr(self, part)
            for pid in ids:
                if pid in seen:
                    where = f"{source} fold {self.index}"
                    if seen[pid] == part:
                        raise InputError(f"patient '{pid}' is listed twice in '{part}'", where=where, fix="remove the duplicate row")
                    raise InputError(
                        f"patient '{pid}' is in both '{seen[pid]}' and '{part}'",
                        where=where,
                        fix="a patient must be in exactly one partition of a fold (leakage otherwise)",
                    )
                seen[pid] = part

    @property
    def eval_partition(self) -> str:
        """The partition metrics are reported on: ``test`` if present, else ``val``."""
        return "test" if self.test else "val"


@dataclass
class SplitSet:
    """Named list of folds, e.g. ``porpoise_5fold`` or ``modaltune_paper``."""

    name: str
    folds: list[Fold]
    protocol: str = ""

    def __post_init__(self) -> None:
        for f in self.folds:
            f.check(self.name)

    def __len__(self) -> int:
        return len(self.folds)

    def __iter__(self):
        return iter(self.folds)

    def patients(self) -> set[str]:
        return {p for f in self.folds for part in PARTITIONS for p in getattr(f, part)}

    def to_frame(self) -> pd.DataFrame:
        rows = [(f.index, part, pid) for f in self.folds for part in PARTITIONS for pid in getattr(f, part)]
        return pd.DataFrame(rows, columns=["fold", "partition", "patient_id"])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(path, index=False)
        return path

    @classmethod
    def load(cls, path: str | Path, name: str | None = None, protocol: str = "") -> "SplitSet":
        path = Path(path)
        if not path.exists():
            raise InputError("split file not found", where=path, fix="create splits with `modaltune data split` or an importer")
        ensure_readable(path)
        df = pd.read_csv(path, dtype={"patient_id": str})
        missing = {"fold", "partition", "patient_id"} - set(df.columns)
        if missing:
            raise InputError(f"split file lacks columns {sorted(missing)}", where=path, fix="columns must be fold,partition,patient_id")
        bad = sorted(set(df["partition"]) - set(PARTITIONS))
        if bad:
            raise InputError(f"unknown partition name(s) {bad}", where=path, fix=f"use {list(PARTITIONS)}")
        folds = []
        for k, g in df.groupby("fold", sort=True):
            parts = {p: g.loc[g["partition"] == p, "patient_id"].tolist() for p in PARTITIONS}
            folds.append(Fold(int(k), **parts))
        for f in folds:
            f.check(str(path))
        return cls(name or path.stem, folds, protocol)

    def check_against(self, patient_ids: list[str] | set[str], source: str | None = None) -> list[str]:
        """Patients named by the split but absent from the cohort (returned, not silently dropped)."""
        known = set(patient_ids)
        return sorted(p for p in self.patients() if p not in known)


def _strata_for_survival(time: np.ndarray, event: np.ndarray, n_time_bins: int = 4) -> np.ndarray:
    edges = np.quantile(time, np.linspace(0, 1, n_time_bins + 1)[1:-1]) if len(time) else []
    tbin = np.searchsorted(edges, time, side="right")
    return event.astype(int) * n_time_bins + tbin


def kfold_split(
    patient_ids: list[str],
    n_folds: int = 5,
    *,
    seed: int = 0,
    labels: np.ndarray | None = None,
    time: np.ndarray | None = None,
    event: np.ndarray | None = None,
    val_fraction_of_train: float = 0.0,
    name: str | None = None,
) -> SplitSet:
    """Patient-level k-fold CV.

    Stratified by class when ``labels`` is given, by event x time-quartile when ``time``/``event``
    are given, plain shuffled k-fold otherwise. Each fold's held-out part is ``test``; when
    ``val_fraction_of_train`` > 0 a validation part is carved (stratified, seeded) out of train,
    else ``val`` is empty. Deterministic for a given ``seed``.
    """
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    ids = np.asarray([str(p) for p in patient_ids])
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise InputError(f"patient '{dup}' appears twice in the id list", fix="de-duplicate patients before splitting")
    if n_folds < 2 or n_folds > len(ids):
        raise InputError(f"cannot make {n_folds} folds from {len(ids)} patients", fix="use 2 <= n_folds <= number of patients")
    strata = None
    if labels is not None:
        strata = np.asarray(labels)
    elif time is not None and event is not None:
        strata = _strata_for_survival(np.asarray(time, float), np.asarray(event, int))
    if strata is not None:
        # rare strata (fewer members than folds) are merged so StratifiedKFold does not fail
        vals, counts = np.unique(strata, return_counts=True)
        rare = set(vals[counts < n_folds])
        strata = np.array([-999 if s in rare else s for s in strata])
        if len(np.unique(strata)) < 2 or np.unique(strata, return_counts=True)[1].min() < n_folds:
            strata = None
    splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed) if strata is not None else KFold(n_folds, shuffle=True, random_state=seed)
    folds = []
    for k, (tr, te) in enumerate(splitter.split(ids, strata if strata is not None else None)):
        train, val = ids[tr], np.array([], dtype=ids.dtype)
        if val_fraction_of_train > 0:
            st = strata[tr] if strata is not None else None
            try:
                train, val = train_test_split(train, test_size=val_fraction_of_train, random_state=seed + k, stratify=st)
            except ValueError:
                train, val = train_test_split(train, test_size=val_fraction_of_train, random_state=seed + k)
        folds.append(Fold(k, sorted(train.tolist()), sorted(val.tolist()), sorted(ids[te].tolist())))
    kind = "stratified by class" if labels is not None else ("stratified by event x time" if time is not None else "unstratified")
    return SplitSet(name or f"kfold{n_folds}_seed{seed}", folds, protocol=f"patient-level {n_folds}-fold CV, {kind}, seed {seed}")


def train_val_test_split(
    patient_ids: list[str],
    *,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    labels: np.ndarray | None = None,
    name: str | None = None,
) -> SplitSet:
    """One seeded train/val/test split (optionally stratified by ``labels``)."""
    from sklearn.model_selection import train_test_split

    ids = np.asarray([str(p) for p in patient_ids])
    strat = np.asarray(labels) if labels is not None else None
    rest, te, st_rest, _ = train_test_split(ids, strat if strat is not None else ids, test_size=test, random_state=seed, stratify=strat)
    rel = val / (1 - test)
    tr, va = train_test_split(rest, test_size=rel, random_state=seed + 1, stratify=st_rest if strat is not None else None)
    return SplitSet(name or f"tvt_seed{seed}", [Fold(0, sorted(tr.tolist()), sorted(va.tolist()), sorted(te.tolist()))], protocol=f"train/val/test {1-val-test:.2f}/{val:.2f}/{test:.2f}, seed {seed}")


def survival_bin_edges(
    time: np.ndarray,
    event: np.ndarray,
    n_bins: int = 4,
    *,
    mode: Literal["strict", "paper"] = "strict",
    train_mask: np.ndarray | None = None,
    eps: float = 1e-6,
) -> np.ndarray:
    """Edges of the discrete-time survival bins: THE one binning function of modaltune.

    Bins are quantiles of the survival times of *uncensored* patients; the outer edges are
    stretched to cover every fitted patient (``0`` and ``max(time) + eps``), as in MCAT/PORPOISE.
    In ``strict`` mode both use the training patients only, so an evaluation patient's time never
    changes the edges; times beyond the last edge go to the last bin (:func:`assign_survival_bins`).

    Args:
        time: (N,) float, follow-up time (any unit, >= 0).
        event: (N,) int, 1 = event observed, 0 = censored.
        n_bins: number of bins (4 in the standard protocols).
        mode: ``"strict"`` (default) fits the quantiles on ``train_mask`` patients only, so no
            information from evaluation patients leaks; ``"paper"`` uses the whole cohort, as the
            published MCAT/PORPOISE/ModalTune code did.
        train_mask: (N,) bool, training patients (required for ``strict``).

    Returns:
        (n_bins + 1,) float64 increasing edges; bin b holds ``edges[b] <= t < edges[b+1]``.

    Example:
        >>> survival_bin_edges(np.array([1., 2, 3, 4, 5, 6, 7, 8]), np.ones(8), 4, mode="paper").round(3).tolist()
        [0.0, 2.75, 4.5, 6.25, 8.0]
    """
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event).astype(int)
    if mode not in ("strict", "paper"):
        raise InputError(f"unknown binning mode '{mode}'", fix="use 'strict' or 'paper'")
    if mode == "strict":
        if train_mask is None:
            raise InputError("strict survival binning needs the training patients (train_mask)", fix="pass train_mask or use mode='paper'")
        fit = np.asarray(train_mask, bool)
    else:
        fit = np.ones(len(time), bool)
    ok = fit & ~np.isnan(time)
    unc = time[ok & (event == 1)]
    if len(unc) < n_bins:
        raise InputError(
            f"only {len(unc)} uncensored patients to fit {n_bins} survival bins",
            fix="use fewer bins, or a split whose training part has more events",
        )
    q = np.quantile(unc, np.linspace(0, 1, n_bins + 1))
    q[0] = 0.0
    q[-1] = max(np.nanmax(time[ok]), q[-1]) + eps  # fitted patients only (strict: no test leakage)
    # ties in quantiles would create empty bins; keep edges strictly increasing
    for i in range(1, len(q)):
        if q[i] <= q[i - 1]:
            q[i] = q[i - 1] + eps
    return q


def assign_survival_bins(time: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index (int64, 0..len(edges)-2) of each time; times beyond the edges go to the end bins."""
    b = np.searchsorted(edges, np.asarray(time, dtype=np.float64), side="right") - 1
    return np.clip(b, 0, len(edges) - 2).astype(np.int64)
