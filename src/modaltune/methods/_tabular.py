"""Shared pieces of the classical (scikit-learn / scikit-survival) baselines.

The engine (:func:`modaltune.training.trainer.design_matrix`) gives tabular methods ``X (N, F)``:
the fold-scaled omics modalities **sorted by name**, then the encoded clinical fields, and
``targets = {task: {"label" | "time", "event", "bin" | "value": (N,), "mask": (N,) bool}}``.
:func:`design_layout` reproduces that column layout from the ``CohortInfo`` so a method can pick
modalities and run PCA on the omics columns only.

:class:`TabularFeatures` is the per-fold feature pipeline: select modalities -> PCA of the omics
columns (fitted on the training fold only) -> standardisation (fitted on the training fold).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from modaltune.errors import ConfigError, InputError
from modaltune.methods.base import MethodParams, TabularMethod

__all__ = ["design_layout", "TabularFeatures", "TabularParams", "TaskTabularMethod", "task_arrays"]


class TabularParams(MethodParams):
    """Feature parameters shared by the tabular methods (:class:`TabularFeatures`)."""

    modalities: str | list[str] | None = Field(None, description="omics block names, 'omics' (all) and/or 'clinical' (None: every column)")
    use_pca: bool = Field(False, description="replace the selected omics columns by their first principal components")
    n_components: int = Field(16, description="principal components (capped at min(n_train - 1, omics columns))")
    standardize: bool = Field(True, description="z-score every column with training-fold statistics")
    seed: int = Field(0, description="PCA random state")


def design_layout(info: Any) -> dict[str, slice]:
    """``{block: column slice}`` of the engine's design matrix: omics blocks sorted by name, then ``clinical``."""
    layout: dict[str, slice] = {}
    start = 0
    for name in sorted(getattr(info, "omics_dims", None) or {}):
        d = int(info.omics_dims[name])
        layout[name] = slice(start, start + d)
        start += d
    c = int(getattr(info, "clinical_dim", 0) or 0)
    if c:
        layout["clinical"] = slice(start, start + c)
    return layout


def _resolve_blocks(info: Any, modalities: str | Sequence[str] | None) -> list[str]:
    layout = design_layout(info)
    if modalities is None:
        return list(layout)
    if isinstance(modalities, str):
        modalities = [modalities]
    omics = [n for n in layout if n != "clinical"]
    out: list[str] = []
    for m in modalities:
        picked = omics if m == "omics" else ["clinical"] if m in ("clinical", getattr(info, "clinical_modality", None) or "clinical") and "clinical" in layout else [m] if m in omics else None
        if not picked:
            raise ConfigError(f"tabular methods read omics and clinical columns; '{m}' is not one of them here", where="method.params.modalities", fix=f"use some of {sorted(set(layout) | ({'omics'} if omics else set()))}")
        out += [p for p in picked if p not in out]
    return out


class TabularFeatures:
    """Modality selection -> optional PCA of the omics columns -> optional standardisation.

    Everything is fitted in :meth:`fit` on the training fold only.

    Args:
        info: the fold's ``CohortInfo`` (column layout).
        modalities: omics block names, ``"omics"`` (all) and/or ``"clinical"``; None = all columns.
        use_pca: replace the selected omics columns by their first principal components.
        n_components: number of components (capped at ``min(n_train - 1, n_omics_columns)``).
        standardize: z-score every output column with training-fold statistics.
        seed: PCA random state (only used by randomized solvers).
    """

    def __init__(self, info: Any, modalities: str | Sequence[str] | None = None, *, use_pca: bool = False, n_components: int = 16, standardize: bool = True, seed: int = 0):
        self.layout = design_layout(info)
        self.width = sum(s.stop - s.start for s in self.layout.values())
        self.blocks = _resolve_blocks(info, modalities)
        if not self.blocks:
            raise ConfigError("a tabular method needs omics or clinical columns and the cohort gives none", where="method.params.modalities")
        self.use_pca = bool(use_pca)
        if int(n_components) < 1:
            raise ConfigError(f"n_components must be >= 1, got {n_components}", where="method.params.n_components")
        self.n_components = int(n_components)
        self.standardize = bool(standardize)
        self.seed = seed
        self.pca = None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.feature_names: list[str] = []

    def output_width(self, n_rows: int, use_pca: bool | None = None) -> int:
        """Columns :meth:`fit` on ``n_rows`` training rows would produce (``use_pca`` None = as configured);
        lets a method size its solver before fitting anything."""
        use_pca = self.use_pca if use_pca is None else bool(use_pca)
        omics = sum(self.layout[b].stop - self.layout[b].start for b in self.blocks if b != "clinical")
        clin = sum(self.layout[b].stop - self.layout[b].start for b in self.blocks if b == "clinical")
        if use_pca and omics > 0:
            omics = min(self.n_components, omics, max(1, int(n_rows) - 1))
        return omics + clin

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.width:
            raise InputError(
                f"design matrix has shape {X.shape}, expected (N, {self.width}) = omics {sorted(k for k in self.layout if k != 'clinical')} then clinical",
                where="tabular X",
                fix="build X with modaltune.training.trainer.design_matrix from the same preprocessor as the CohortInfo",
            )
        if not np.isfinite(X).all():
            rows = np.flatnonzero(~np.isfinite(X).all(1))[:5].tolist()
            raise InputError(f"design matrix has non-finite values in rows {rows}", where="tabular X", fix="impute or encode missing values before fitting")
        return X

    def _parts(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        omics = [X[:, self.layout[b]] for b in self.blocks if b != "clinical"]
        clin = [X[:, self.layout[b]] for b in self.blocks if b == "clinical"]
        o = np.concatenate(omics, 1) if omics else np.zeros((X.shape[0], 0))
        c = np.concatenate(clin, 1) if clin else np.zeros((X.shape[0], 0))
        return o, c

    def fit(self, X: np.ndarray) -> TabularFeatures:
        X = self._check(X)
        o, c = self._parts(X)
        names: list[str] = []
        if self.use_pca and o.shape[1] > 0:
            from sklearn.decomposition import PCA

            k = min(self.n_components, o.shape[1], max(1, X.shape[0] - 1))
            self.pca = PCA(n_components=k, random_state=self.seed).fit(o)
            o = self.pca.transform(o)
            names += [f"omics_pc{i + 1}" for i in range(k)]
        else:
            names += [f"{b}:{j}" for b in self.blocks if b != "clinical" for j in range(self.layout[b].stop - self.layout[b].start)]
        names += [f"clinical:{j}" for j in range(c.shape[1])]
        Z = np.concatenate([o, c], 1)
        if self.standardize:
            self.mean_ = Z.mean(0)
            sd = Z.std(0)
            self.scale_ = np.where(sd > 1e-12, sd, 1.0)  # constant columns stay constant (0), never NaN
        self.feature_names = names
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = self._check(X)
        o, c = self._parts(X)
        if self.pca is not None:
            o = self.pca.transform(o)
        Z = np.concatenate([o, c], 1)
        if self.standardize:
            Z = (Z - self.mean_) / self.scale_
        return Z


def task_arrays(targets: dict[str, Any], task: str) -> dict[str, np.ndarray]:
    """The task's target arrays with the label mask applied (``mask`` missing = all usable)."""
    if task not in targets:
        raise InputError(f"targets have no task '{task}'", where="tabular targets", fix=f"available: {sorted(targets)}")
    t = {k: np.asarray(v) for k, v in targets[task].items()}
    n = len(next(iter(t.values())))
    mask = t.pop("mask", np.ones(n, dtype=bool)).astype(bool)
    if "label" in t:
        mask &= t["label"] >= 0
    return {k: v[mask] for k, v in t.items()} | {"mask": mask}


class TaskTabularMethod(TabularMethod):
    """A tabular method fitting one estimator per task of the supported kinds.

    Subclasses set ``kinds`` and implement ``_fit_task(Z, y, task_info)`` and ``_predict_task``.
    Tasks of other kinds are skipped (listed in ``skipped_tasks``; the engine only reports the
    tasks present in :meth:`predict`'s output).
    """

    kinds: tuple[str, ...] = ()

    def __init__(self, info: Any, *, modalities=None, use_pca: bool = False, n_components: int = 16, standardize: bool = True, seed: int = 0):
        self.info = info
        self.tasks = [t for t in info.tasks if t.spec.kind in self.kinds]
        self.skipped_tasks = [t.spec.name for t in info.tasks if t.spec.kind not in self.kinds]
        if not self.tasks:
            raise ConfigError(
                f"method '{self.name}' fits {'/'.join(self.kinds)} tasks and the run has none ({[t.spec.name for t in info.tasks]})",
                where="tasks",
                fix=f"add a {self.kinds[0]} task or use another method",
            )
        self.features = TabularFeatures(info, modalities, use_pca=use_pca, n_components=n_components, standardize=standardize, seed=seed)
        self.seed = seed
        self.models: dict[str, Any] = {}

    def fit(self, X: np.ndarray, targets: dict[str, Any], info: Any = None) -> TaskTabularMethod:
        Z = self.features.fit(X).transform(X)
        for t in self.tasks:
            y = task_arrays(targets, t.spec.name)
            self.models[t.spec.name] = self._fit_task(Z[y["mask"]], y, t)
        return self

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        if not self.models:
            raise RuntimeError(f"{self.name}.predict called before fit")
        Z = self.features.transform(X)
        return {t.spec.name: self._predict_task(self.models[t.spec.name], Z, t) for t in self.tasks}

    def embed(self, X: np.ndarray) -> np.ndarray:
        """The transformed features (selected modalities, PCA, standardised)."""
        return self.features.transform(X)

    def _fit_task(self, Z: np.ndarray, y: dict[str, np.ndarray], task_info: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def _predict_task(self, model: Any, Z: np.ndarray, task_info: Any) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError
