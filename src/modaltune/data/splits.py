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
from modaltune.errors import ConfigError, InputError

__all__ = [
    "Fold",
    "SplitSet",
    "kfold_split",
    "train_val_test_split",
    "survival_bin_edges",
    "assign_survival_bins",
    "labelled_subset",
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
    def load(cls, path: str | Path, name: str | None = None, protocol: str = "") -> SplitSet:
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


def _merge_adjacent(bins: np.ndarray, n_min: int) -> tuple[np.ndarray, int]:
    """Merge ordered bins (ints 0..B-1) until every non-empty bin has ``>= n_min`` members.

    The smallest bin is merged into its smaller neighbour (time order is kept, so a merged stratum
    is still a time interval). Returns ``(group index per member, number of groups)``; a single
    group may still hold fewer than ``n_min`` members.
    """
    groups = [[b] for b in sorted(set(bins.tolist()))]

    def count(g: list[int]) -> int:
        return int(np.isin(bins, g).sum())

    while len(groups) > 1 and min(count(g) for g in groups) < n_min:
        i = int(np.argmin([count(g) for g in groups]))
        if i == 0:
            j = 1
        elif i == len(groups) - 1:
            j = i - 1
        else:
            j = i - 1 if count(groups[i - 1]) <= count(groups[i + 1]) else i + 1
        lo, hi = min(i, j), max(i, j)
        groups[lo:hi + 1] = [groups[lo] + groups[hi]]
    out = np.empty(len(bins), dtype=np.int64)
    for k, g in enumerate(groups):
        out[np.isin(bins, g)] = k
    return out, len(groups)


def _survival_strata(time: np.ndarray, event: np.ndarray, n_folds: int, n_time_bins: int = 4) -> tuple[np.ndarray | None, str]:
    """Event x time-quantile strata with rare strata merged, and a text saying what was done.

    Patients with NaN time (unlabelled) form their own stratum. Steps, each recorded in the text:
    (1) within each event group, adjacent time bins are merged until every stratum has
    ``>= n_folds`` members; (2) if the events or the censored patients are fewer than ``n_folds``,
    the event split is dropped (time bins only); (3) if fewer than two strata remain, no
    stratification (``None``). Strata codes keep the censored group below the events so that
    StratifiedKFold, which deals sorted strata round-robin, gives every fold the same number of
    events within one.
    """
    lab = ~np.isnan(time)
    t, e = time[lab], event[lab].astype(int)
    edges = np.quantile(t, np.linspace(0, 1, n_time_bins + 1)[1:-1]) if len(t) else []
    tbin = np.searchsorted(edges, t, side="right")
    codes = np.full(len(time), -1, dtype=np.int64)
    sub = np.empty(len(t), dtype=np.int64)
    n_ev, n_cens = int((e == 1).sum()), int((e == 0).sum())
    if min(n_ev, n_cens) >= n_folds:
        merged = []
        for ev in (0, 1):
            m = e == ev
            g, ng = _merge_adjacent(tbin[m], n_folds)
            sub[m] = ev * 1000 + g
            if ng < len(set(tbin[m].tolist())):
                merged.append(f"{'events' if ev else 'censored'} {len(set(tbin[m].tolist()))} -> {ng} time bins")
        text = "event x time quartile" + (f"; rare strata merged: {', '.join(merged)}" if merged else "")
    else:
        few = f"only {n_ev} events and {n_cens} censored patients for {n_folds} folds"
        g, ng = _merge_adjacent(tbin, n_folds)
        sub[:] = g
        text = f"time quartile only; FALLBACK: {few}, event status not stratified"
        if ng < 2:
            return None, f"UNSTRATIFIED (FALLBACK: {few})"
    codes[lab] = sub
    n_unl = int((~lab).sum())
    if 0 < n_unl < n_folds and lab.any():
        # a tiny unlabelled stratum joins the largest censored stratum (never an event stratum,
        # which would unbalance the events per fold)
        vals, cnt = np.unique(codes[lab], return_counts=True)
        cens = vals < 1000
        target = vals[cens][np.argmax(cnt[cens])] if cens.any() else vals[np.argmax(cnt)]
        codes[~lab] = target
    if len(np.unique(codes)) < 2:
        return None, "UNSTRATIFIED (FALLBACK: fewer than two strata)"
    return codes, text


def _class_strata(labels: np.ndarray, n_folds: int) -> tuple[np.ndarray | None, str]:
    """Class strata with rare classes (``< n_folds`` members) merged, and a text saying what was done.

    All rare classes form one stratum; if that stratum is still below ``n_folds`` it joins the
    smallest common class. Fewer than two strata: no stratification (``None``).
    """
    vals, inv, counts = np.unique(np.asarray(labels).astype(str), return_inverse=True, return_counts=True)
    codes = inv.astype(np.int64)
    rare = counts < n_folds
    text = "class"
    if rare.any():
        names = [str(v) for v in vals[rare]]
        codes[rare[inv]] = len(vals)  # one stratum for all rare classes
        n_rare = int(counts[rare].sum())
        if n_rare < n_folds and (~rare).any():
            common = np.flatnonzero(~rare)
            host = common[np.argmin(counts[common])]
            codes[codes == len(vals)] = host
            text = f"class; rare classes {names} merged into class '{vals[host]}'"
        else:
            text = f"class; rare classes {names} merged into one stratum"
    if len(np.unique(codes)) < 2:
        return None, f"UNSTRATIFIED (FALLBACK: the classes {[str(v) for v in vals]} cannot fill {n_folds} folds in two strata)"
    return codes, text


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
    stratify_name: str | None = None,
) -> SplitSet:
    """Patient-level k-fold CV.

    Stratified by class when ``labels`` is given (rare classes merged, see :func:`_class_strata`),
    by event x time-quartile when ``time``/``event`` are given (NaN time = unlabelled; rare strata
    merged in steps, see :func:`_survival_strata`), plain shuffled k-fold otherwise. Any merge or
    fallback is written into ``protocol`` (``stratify_name``, e.g. ``task 'os'``, names what was
    asked for). Each fold's held-out part is ``test``; when ``val_fraction_of_train`` > 0 a
    validation part is carved (stratified, seeded) out of train, else ``val`` is empty.
    Deterministic for a given ``seed``.
    """
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    ids = np.asarray([str(p) for p in patient_ids])
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise InputError(f"patient '{dup}' appears twice in the id list", fix="de-duplicate patients before splitting")
    if n_folds < 2 or n_folds > len(ids):
        raise InputError(f"cannot make {n_folds} folds from {len(ids)} patients", fix="use 2 <= n_folds <= number of patients")
    strata, basis = None, ""
    if labels is not None:
        strata, basis = _class_strata(np.asarray(labels), n_folds)
    elif time is not None and event is not None:
        strata, basis = _survival_strata(np.asarray(time, float), np.nan_to_num(np.asarray(event, float)).astype(int), n_folds)
    splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed) if strata is not None else KFold(n_folds, shuffle=True, random_state=seed)
    # StratifiedKFold numbers strata by first appearance and deals them round-robin in that order;
    # presenting patients sorted by stratum code keeps the event strata adjacent, so every fold gets
    # the same number of events within one (class strata need no reordering: each class is balanced)
    survival = labels is None and strata is not None
    order = np.argsort(strata, kind="stable") if survival else np.arange(len(ids))
    folds = []
    for k, (tr, te) in enumerate(splitter.split(ids[order], strata[order] if strata is not None else None)):
        tr, te = order[tr], order[te]
        train, val = ids[tr], np.array([], dtype=ids.dtype)
        if val_fraction_of_train > 0:
            st = strata[tr] if strata is not None else None
            try:
                train, val = train_test_split(train, test_size=val_fraction_of_train, random_state=seed + k, stratify=st)
            except ValueError:
                train, val = train_test_split(train, test_size=val_fraction_of_train, random_state=seed + k)
        folds.append(Fold(k, sorted(train.tolist()), sorted(val.tolist()), sorted(ids[te].tolist())))
    on = f"{stratify_name} " if stratify_name else ""
    if not basis:
        kind = "unstratified"
    elif strata is None:
        kind = basis.replace("(FALLBACK: ", f"(FALLBACK for {stratify_name}: ") if stratify_name else basis
    else:
        kind = f"stratified by {on}{'(' + basis + ')' if on else basis}"
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


def labelled_subset(patient_ids: list[str], fraction: float, *, seed: int = 0, labels: np.ndarray | None = None) -> list[str]:
    """The patients of ``patient_ids`` that keep their labels when only ``fraction`` of them are labelled.

    Scarce-label protocols (pretrain on every training patient, fit the supervised part on a few):
    ``round(fraction * N)`` patients (at least 1), drawn with ``seed``, stratified by ``labels``
    ((N,) class per patient) when every class can give one patient, else a plain seeded draw.
    ``fraction = 1`` returns every patient. Returned sorted; deterministic for a given ``seed``;
    a larger ``fraction`` with the same seed need not contain a smaller one's subset.

    >>> labelled_subset([f"p{i}" for i in range(10)], 0.3, seed=0)
    ['p0', 'p3', 'p5']
    """
    from sklearn.model_selection import train_test_split

    ids = [str(p) for p in patient_ids]
    if not 0.0 < float(fraction) <= 1.0:
        raise ConfigError(f"labelled fraction {fraction} is outside (0, 1]", where="labelled_fraction", fix="e.g. 0.1 for 10% labelled patients")
    if not ids:
        raise InputError("no patients to draw labelled ones from", where="labelled_fraction", fix="check the fold's training patients")
    if labels is not None and len(labels) != len(ids):
        raise InputError(f"{len(labels)} labels for {len(ids)} patients", where="labelled_fraction", fix="give one label per patient")
    k = max(1, int(round(float(fraction) * len(ids))))
    if k >= len(ids):
        return sorted(ids)
    strat = np.asarray(labels).astype(str) if labels is not None else None
    if strat is not None:
        _, counts = np.unique(strat, return_counts=True)
        # every class must be able to give a patient to both sides, or sklearn refuses
        if len(counts) < 2 or counts.min() < 2 or k < len(counts) or len(ids) - k < len(counts):
            strat = None
    keep, _ = train_test_split(np.asarray(ids), train_size=k, random_state=seed, stratify=strat)
    return sorted(keep.tolist())


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
