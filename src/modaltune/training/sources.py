"""Cohorts and splits named by a config: load or simulate cohorts, build or read the split."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modaltune.errors import InputError

__all__ = ["resolve_cohort_paths", "load_cohort", "make_splits", "eval_ids", "val_loop_ids", "resolve_modalities", "check_tasks"]

_CACHE: dict[str, Any] = {}


def resolve_cohort_paths(data_cfg: Any, work_dir: str | Path) -> list[Path]:
    """Cohort directories of a ``DataConfig``; simulated presets are written (once) under
    ``<work_dir>/cohorts/<name>``."""
    paths = [Path(c) for c in data_cfg.cohorts]
    for spec in data_cfg.simulate:
        name = spec.name or f"sim_{spec.preset}_seed{spec.seed}"
        out = Path(work_dir) / "cohorts" / name
        if not (out / "cohort.yaml").exists():
            from modaltune.data.simulate import simulate_cohort

            simulate_cohort(out, preset=spec.preset, seed=spec.seed, name=spec.name, **spec.options)
        paths.append(out)
    return paths


def load_cohort(path: str | Path):
    """``Cohort.load`` with a per-process cache (benchmark workers run many units per cohort)."""
    from modaltune.data.cohort import Cohort

    key = str(Path(path).resolve())
    if key not in _CACHE:
        _CACHE[key] = Cohort.load(path)
    return _CACHE[key]


def check_tasks(cohort: Any, tasks: list[str] | None) -> list[str]:
    """Task names to use (None = all); unknown names or tasks reading missing columns raise InputError."""
    names = [t.name for t in cohort.tasks] if tasks is None else list(tasks)
    if not names:
        raise InputError(f"cohort '{cohort.name}' declares no tasks", where="cohort.yaml", fix="add tasks to the manifest")
    for n in names:
        spec = cohort.manifest.task(n)  # InputError for an unknown task
        cohort.targets(spec, cohort.patient_ids[:1])  # InputError for a missing column
    return names


def resolve_modalities(cohort: Any, requested: list[str] | tuple[str, ...] | None) -> list[str] | None:
    """Cohort modality names from names or kinds (``slide``/``omics``/``clinical``/``text``).

    A method declaring ``("slide", "omics")`` gets every cohort modality of those kinds. Returns
    None (= all modalities) when nothing is requested.
    """
    if not requested:
        return None
    names = {m.name: m for m in cohort.modalities}
    out: list[str] = []
    for r in requested:
        if r in names:
            picked = [r]
        else:
            picked = [m.name for m in cohort.modalities if m.kind == r]
            if not picked and r not in ("slide", "omics", "clinical", "text"):
                raise InputError(f"unknown modality '{r}'", where=f"cohort '{cohort.name}'", fix=f"use one of {sorted(names)} or a kind (slide, omics, clinical, text)")
        out += [p for p in picked if p not in out]
    if not out:
        raise InputError(
            f"cohort '{cohort.name}' has none of the modalities {list(requested)}",
            where="cohort.yaml",
            fix=f"the cohort has {sorted(names)}; pick a method that uses them or set the method's 'modalities'",
        )
    return out


def _split_path(cohort: Any, file: str) -> Path:
    p = Path(file)
    if p.is_absolute() or p.exists():
        return p
    if cohort.root is not None:
        cand = Path(cohort.root) / "splits" / (file if file.endswith(".csv") else f"{file}.csv")
        if cand.exists():
            return cand
    raise InputError(f"split '{file}' not found", where="split.file", fix="give a path to a split CSV or the name of a file in <cohort>/splits/")


def make_splits(cohort: Any, split_cfg: Any, tasks: list[str]):
    """(SplitSet, split file path or None). Split files are checked against the cohort's patients."""
    from modaltune.data.splits import SplitSet, kfold_split

    if split_cfg.file:
        path = _split_path(cohort, split_cfg.file)
        ss = SplitSet.load(path)
        unknown = ss.check_against(cohort.patient_ids)
        if unknown:
            raise InputError(f"{len(unknown)} patient(s) of the split are not in cohort '{cohort.name}', e.g. {unknown[:3]}", where=path, fix="use the split made for this cohort")
    else:
        path = None
        strat = split_cfg.stratify
        if strat == "auto":
            strat = tasks[0] if tasks else None
        kw: dict[str, Any] = {}
        if strat and strat != "none":
            tt = cohort.targets(strat)
            if tt.task.kind == "classification":
                # class names (not indices), so a merge or fallback in the protocol names the classes
                kw["labels"] = np.array([tt.task.classes[i] if i >= 0 else "(unlabelled)" for i in tt.label], dtype=object)
            elif tt.task.kind == "survival":
                # NaN time = unlabelled: its own stratum, merged by the splitter when small
                kw["time"], kw["event"] = np.where(tt.mask, tt.time, np.nan), np.where(tt.mask, tt.event, 0)
            if kw:
                kw["stratify_name"] = f"task '{strat}'"
        ss = kfold_split(cohort.patient_ids, split_cfg.kfold, seed=split_cfg.seed, val_fraction_of_train=split_cfg.val_fraction, **kw)
    if split_cfg.folds is not None:
        have = {f.index for f in ss.folds}
        bad = [k for k in split_cfg.folds if k not in have]
        if bad:
            raise InputError(f"fold(s) {bad} not in split '{ss.name}' (folds {sorted(have)})", where="split.folds", fix="use existing fold indices")
        ss.folds = [f for f in ss.folds if f.index in set(split_cfg.folds)]
    return ss, path


def eval_ids(fold: Any, partition: str = "auto") -> tuple[str, list[str]]:
    """(partition name, patient ids) that metrics are computed on."""
    part = fold.eval_partition if partition == "auto" else partition
    ids = list(getattr(fold, part))
    if not ids:
        raise InputError(f"fold {fold.index} has no '{part}' patients to evaluate", where="split", fix="check the split file or split.eval_partition")
    return part, ids


def val_loop_ids(fold: Any, partition: str = "auto") -> list[str]:
    """Patients of the validation loop: ``val`` only when it is not the evaluated partition
    (monitoring the evaluated patients would leak into early stopping)."""
    part = fold.eval_partition if partition == "auto" else partition
    return list(fold.val) if part != "val" else []
