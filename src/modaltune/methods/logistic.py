"""``logistic``: (multinomial) logistic regression on tabular features (clinical + omics).

scikit-learn ``LogisticRegression`` (L2 penalty, lbfgs) on the fold-scaled omics (optionally
reduced to principal components fitted on the training fold) and encoded clinical fields,
standardised on the training fold; ``class_weight: balanced`` reweights classes inversely to
their training frequency. ``C: cv`` chooses the inverse penalty by inner stratified K-fold CV on
the training fold (grid of ``Cs`` values log-spaced in [1e-4, 1e4], balanced-accuracy scoring).

``predict`` returns ``(N, n_classes)`` probabilities in the task's class order; a class absent
from the training fold gets probability 0 (it cannot be predicted), and a training fold with a
single class raises :class:`InputError`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from modaltune.errors import ConfigError, InputError
from modaltune.methods._tabular import TabularParams, TaskTabularMethod
from modaltune.methods.registry import register_method

__all__ = ["LogisticMethod", "LogisticParams", "build_logistic"]


class LogisticParams(TabularParams):
    """Parameters of ``logistic`` (+ the feature parameters of :class:`TabularParams`)."""

    C: float | str = Field(1.0, description="inverse L2 strength, or 'cv' for inner cross-validation over Cs")
    class_weight: str | None = Field(None, description="None or 'balanced'")
    max_iter: int = Field(2000, description="lbfgs iterations")
    inner_folds: int = Field(3, description="folds of the inner cross-validation (C: cv)")
    Cs: int = Field(10, description="grid size of the inner cross-validation (C: cv)")


class LogisticMethod(TaskTabularMethod):
    """One logistic regression per classification task.

    Args (besides those of :class:`~modaltune.methods._tabular.TaskTabularMethod`):
        C: inverse L2 strength (1.0), or ``"cv"`` for inner cross-validation over ``Cs``.
        class_weight: None or ``"balanced"``.
        max_iter: lbfgs iterations.
        inner_folds, Cs: inner CV settings when ``C == "cv"``.
    """

    name = "logistic"
    kinds = ("classification",)

    def __init__(self, info: Any, *, C: float | str = 1.0, class_weight: str | None = None, max_iter: int = 2000, inner_folds: int = 3, Cs: int = 10, **features: Any):
        super().__init__(info, **features)
        if not (C == "cv" or (isinstance(C, (int, float)) and C > 0)):
            raise ConfigError(f"C must be a positive number or 'cv', got {C!r}", where="method.params.C")
        if class_weight not in (None, "balanced"):
            raise ConfigError(f"class_weight must be null or 'balanced', got {class_weight!r}", where="method.params.class_weight")
        self.C, self.class_weight, self.max_iter, self.inner_folds, self.Cs = C, class_weight, int(max_iter), int(inner_folds), int(Cs)
        self.chosen_C: dict[str, float] = {}

    def _fit_task(self, Z: np.ndarray, y: dict[str, np.ndarray], task_info: Any) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV, StratifiedKFold

        task = task_info.spec.name
        label = y["label"].astype(int)
        classes, counts = np.unique(label, return_counts=True)
        if len(classes) < 2:
            raise InputError(
                f"task '{task}': the training fold has only class {task_info.class_names[classes[0]] if len(classes) else '(none)'}",
                where=f"task '{task}'",
                fix="use stratified folds or a cohort with both classes",
            )
        if self.C == "cv":
            k = max(2, min(self.inner_folds, int(counts.min())))
            cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=self.seed)
            grid = {"C": np.logspace(-4, 4, self.Cs).tolist()}
            search = GridSearchCV(LogisticRegression(class_weight=self.class_weight, max_iter=self.max_iter), grid, cv=cv, scoring="balanced_accuracy", refit=True)
            search.fit(Z, label)
            self.chosen_C[task] = float(search.best_params_["C"])
            return search.best_estimator_
        self.chosen_C[task] = float(self.C)
        return LogisticRegression(C=float(self.C), class_weight=self.class_weight, max_iter=self.max_iter).fit(Z, label)

    def _predict_task(self, model: Any, Z: np.ndarray, task_info: Any) -> np.ndarray:
        n_classes = int(task_info.n_classes or len(task_info.spec.classes))
        out = np.zeros((Z.shape[0], n_classes))
        out[:, model.classes_] = model.predict_proba(Z)
        return out


@register_method("logistic", kind="tabular", modalities=("omics", "clinical"), params=LogisticParams,
                 description="logistic regression on clinical + omics, optional PCA")
def build_logistic(info: Any, **params: Any) -> LogisticMethod:
    """Params: :class:`LogisticParams` (validated, defaults filled)."""
    return LogisticMethod(info, **params)
