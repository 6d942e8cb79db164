"""Linear probes on frozen embeddings (ModalTune protocol, MODALTUNE.md section 5).

- :class:`LogisticProbe`: scikit-learn logistic regression, liblinear solver, C = 1 (one-vs-rest
  for more than two classes, which is what liblinear always did; scikit-learn >= 1.8 needs the
  explicit ``OneVsRestClassifier`` wrapper) -> balanced accuracy.
- :class:`CoxProbe`: ridge-penalised Cox model -> Harrell's C-index.

Both standardise features with statistics fitted on the training embeddings only.

Penalty convention of :class:`CoxProbe`. The paper's "penalizer 0.1" is lifelines'
``CoxPHFitter(penalizer=0.1)``, which standardises covariates internally (std with ddof=1) and
penalises the average log partial likelihood: ``-ll/n + penalizer/2 * ||beta_std||^2``. modaltune
fits scikit-survival's ``CoxPHSurvivalAnalysis`` (a core dependency; lifelines is only a test
dependency) on features standardised the same way with ``alpha = penalizer * n_train``, which
minimises the same objective; a test checks the coefficients against lifelines.
That is the objective of every ridge Cox in the package, so the fit goes through the shared
:func:`modaltune.evaluation.ridge_cox.fit_ridge_cox` (exact; fitted in the row space of the
embeddings when their dimension exceeds the training patients).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modaltune.errors import ConfigError, InputError

__all__ = ["Standardizer", "LogisticProbe", "CoxProbe", "ProbeResult", "fit_probe", "probe_task_metrics", "PROBES", "PROBE_METRICS"]


class Standardizer:
    """Feature-wise ``(x - mean) / std`` with std computed with ``ddof`` on the training data;
    constant features get std 1 (they become 0) instead of a division by zero."""

    def __init__(self, ddof: int = 1):
        self.ddof = ddof

    def fit(self, x: np.ndarray) -> Standardizer:
        self.mean_ = x.mean(0)
        sd = x.std(0, ddof=self.ddof) if len(x) > self.ddof else np.zeros(x.shape[1])
        self.scale_ = np.where(sd > 0, sd, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) / self.scale_


def _check_X(x, name: str, dim: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 2 or len(a) == 0:
        raise InputError(f"{name} embeddings must be a non-empty (N, D) array, got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise InputError(f"{name} embeddings have {a.shape[1]} features, the probe was fitted on {dim}")
    if not np.isfinite(a).all():
        rows = np.flatnonzero(~np.isfinite(a).all(1))[:10].tolist()
        raise InputError(f"{name} embeddings contain NaN/inf in rows {rows}", fix="check the encoder outputs")
    return a


def _survival_target(y, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(time, event) from a (time, event) tuple, a DataFrame/dict with time/event, a structured
    array (event, time) or an (N, 2) array [time, event]."""
    if isinstance(y, (pd.DataFrame, dict)):
        if "time" not in y or "event" not in y:
            raise InputError(f"{name} survival target needs 'time' and 'event'")
        t, e = np.asarray(y["time"], float), np.asarray(y["event"], float)
    elif isinstance(y, tuple) and len(y) == 2:
        t, e = np.asarray(y[0], float), np.asarray(y[1], float)
    elif isinstance(y, np.ndarray) and y.dtype.names and len(y.dtype.names) == 2:
        e, t = np.asarray(y[y.dtype.names[0]], float), np.asarray(y[y.dtype.names[1]], float)
    else:
        a = np.asarray(y, dtype=float)
        if a.ndim != 2 or a.shape[1] != 2:
            raise InputError(f"{name} survival target must be (time, event), a DataFrame with time/event, or an (N, 2) array")
        t, e = a[:, 0], a[:, 1]
    if not np.isin(e, (0, 1)).all() or not np.isfinite(t).all() or (t < 0).any():
        raise InputError(f"{name} survival target needs finite times >= 0 and 0/1 events", fix="mask patients without a label first")
    return t, e.astype(bool)


class LogisticProbe:
    """Logistic-regression probe (liblinear, ``C``; one-vs-rest for > 2 classes).

    ``fit(X (N, D), y (N,) int)``, ``predict_proba(X) -> (N, C)``, ``score(X, y) -> balanced accuracy``.
    """

    metric = "balanced_accuracy"

    def __init__(self, C: float = 1.0, standardize: bool = True, max_iter: int = 1000, seed: int = 0):
        if C <= 0:
            raise ConfigError(f"LogisticProbe C must be > 0, got {C}")
        self.C, self.standardize, self.max_iter, self.seed = C, standardize, max_iter, seed

    def fit(self, X, y) -> LogisticProbe:
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        X = _check_X(X, "training")
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise InputError(f"training labels must be ({len(X)},), got {y.shape}")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise InputError(f"the probe's training set has a single class ({self.classes_.tolist()})",
                             fix="a classifier needs at least two classes among the training patients")
        self.scaler_ = Standardizer(ddof=0).fit(X) if self.standardize else None
        Z = self.scaler_.transform(X) if self.scaler_ else X
        lr = LogisticRegression(solver="liblinear", C=self.C, max_iter=self.max_iter, random_state=self.seed)
        self.model_ = (OneVsRestClassifier(lr) if len(self.classes_) > 2 else lr).fit(Z, y)
        self.dim_ = X.shape[1]
        return self

    def predict_proba(self, X) -> np.ndarray:
        X = _check_X(X, "evaluation", self.dim_)
        return self.model_.predict_proba(self.scaler_.transform(X) if self.scaler_ else X)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]

    def score(self, X, y) -> float:
        from sklearn.metrics import balanced_accuracy_score

        y = np.asarray(y)
        if y.shape != (len(np.asarray(X)),):
            raise InputError(f"evaluation labels must be ({len(np.asarray(X))},), got {y.shape}")
        return float(balanced_accuracy_score(y, self.predict(X)))


class CoxProbe:
    """Ridge Cox probe with lifelines' ``penalizer`` semantics (see the module docstring).

    ``fit(X, y)``, ``predict_risk(X) -> (N,)`` (linear predictor, higher = earlier event),
    ``score(X, y) -> Harrell's C-index``.
    """

    metric = "c_index"

    def __init__(self, penalizer: float = 0.1, standardize: bool = True, ties: str = "efron", max_iter: int = 100):
        if penalizer < 0:
            raise ConfigError(f"CoxProbe penalizer must be >= 0, got {penalizer}")
        self.penalizer, self.standardize, self.ties, self.max_iter = penalizer, standardize, ties, max_iter

    def fit(self, X, y) -> CoxProbe:
        import warnings

        from sksurv.linear_model import CoxPHSurvivalAnalysis

        from .ridge_cox import fit_ridge_cox

        X = _check_X(X, "training")
        t, e = _survival_target(y, "training")
        if len(t) != len(X):
            raise InputError(f"training survival target has {len(t)} rows, embeddings {len(X)}")
        if not e.any():
            raise InputError("no events among the probe's training patients", fix="a Cox model needs events to fit")
        self.scaler_ = Standardizer(ddof=1).fit(X) if self.standardize else None
        Z = self.scaler_.transform(X) if self.scaler_ else X
        yy = np.empty(len(t), dtype=[("event", bool), ("time", float)])
        yy["event"], yy["time"] = e, t
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter; the ridge term keeps the problem well posed
            if self.penalizer > 0:  # the shared exact ridge Cox (row space of Z when dim > patients)
                self.model_ = fit_ridge_cox(Z, yy, self.penalizer * len(X), ties=self.ties, n_iter=self.max_iter)
            else:  # no penalty: no unique optimum when dim > patients, so no row-space reduction
                self.model_ = CoxPHSurvivalAnalysis(alpha=0.0, ties=self.ties, n_iter=self.max_iter).fit(Z, yy)
        self.dim_ = X.shape[1]
        return self

    @property
    def coef_(self) -> np.ndarray:
        """Coefficients on the original (unstandardised) feature scale."""
        c = self.model_.coef_
        return c / self.scaler_.scale_ if self.scaler_ else c

    def predict_risk(self, X) -> np.ndarray:
        X = _check_X(X, "evaluation", self.dim_)
        return self.model_.predict(self.scaler_.transform(X) if self.scaler_ else X)

    def score(self, X, y) -> float:
        from .metrics import harrell_c

        t, e = _survival_target(y, "evaluation")
        return harrell_c(t, e.astype(int), self.predict_risk(X))


PROBES = {"logistic": LogisticProbe, "cox": CoxProbe}


@dataclass
class ProbeResult:
    """Metric of a probe fitted on training embeddings and scored on evaluation embeddings."""

    kind: str
    metric: str
    value: float
    predictions: np.ndarray = field(repr=False)
    probe: Any = field(repr=False, default=None)


def fit_probe(kind: str, X_train, y_train, X_eval, y_eval, **kwargs) -> ProbeResult:
    """Fit a ``"logistic"`` or ``"cox"`` probe on training embeddings and score it on evaluation ones.

    ``predictions`` are class probabilities (N, C) or Cox risks (N,). ``kwargs`` go to the probe
    (``C``, ``penalizer``, ``standardize``).
    """
    if kind not in PROBES:
        raise ConfigError(f"unknown probe '{kind}'", fix=f"use one of {sorted(PROBES)}")
    probe = PROBES[kind](**kwargs).fit(X_train, y_train)
    value = probe.score(X_eval, y_eval)
    preds = probe.predict_proba(X_eval) if kind == "logistic" else probe.predict_risk(X_eval)
    return ProbeResult(kind, probe.metric, value, preds, probe)


#: metric names written by :func:`probe_task_metrics` (results.csv rows), per task kind
PROBE_METRICS = {"classification": ("probe_balanced_accuracy", "probe_macro_auc"), "survival": ("probe_c_index",)}


def probe_task_metrics(task_info: Any, X_train, y_train: pd.DataFrame, X_eval, y_eval: pd.DataFrame, *, C: float = 1.0,
                       penalizer: float = 0.1) -> dict[str, tuple[float, str]]:
    """Linear-probe metrics of one task: ``{metric: (value, reason)}`` (NaN + reason when undefined).

    Classification: :class:`LogisticProbe` (liblinear, ``C``) -> ``probe_balanced_accuracy`` and
    ``probe_macro_auc`` (macro one-vs-rest AUC of the probe's probabilities). Survival:
    :class:`CoxProbe` (ridge, ``penalizer``) -> ``probe_c_index`` (Harrell). Regression: none.

    Args:
        task_info: the task (``spec.kind``, ``spec.name``).
        X_train, X_eval: (N, D) embeddings of the labelled training / evaluation patients.
        y_train, y_eval: their targets: a ``label`` column (class index) or ``time``/``event``.
    """
    from .metrics import MetricUndefined, macro_ovr_auc

    kind = task_info.spec.kind
    names = PROBE_METRICS.get(kind, ())
    if not names:
        return {}
    if not len(X_train) or not len(X_eval):
        why = f"no labelled {'training' if not len(X_train) else 'evaluation'} patients"
        return {n: (float("nan"), why) for n in names}
    out: dict[str, tuple[float, str]] = {}
    try:
        if kind == "classification":
            ytr, yev = np.asarray(y_train["label"], int), np.asarray(y_eval["label"], int)
            probe = LogisticProbe(C=C).fit(X_train, ytr)
            out["probe_balanced_accuracy"] = (probe.score(X_eval, yev), "")
            classes = list(getattr(task_info, "class_names", None) or getattr(task_info.spec, "classes", None) or [])
            proba = np.zeros((len(yev), max(len(classes), int(max(ytr.max(), yev.max())) + 1)))
            proba[:, probe.classes_] = probe.predict_proba(X_eval)
            try:
                out["probe_macro_auc"] = (macro_ovr_auc(yev, proba), "")
            except MetricUndefined as exc:
                out["probe_macro_auc"] = (float("nan"), exc.detail)
        else:
            probe = CoxProbe(penalizer=penalizer).fit(X_train, y_train[["time", "event"]])
            out["probe_c_index"] = (probe.score(X_eval, y_eval[["time", "event"]]), "")
    except (InputError, ValueError) as exc:  # one class / no event among the probe's patients
        why = getattr(exc, "detail", None) or str(exc).split("\n")[0]
        return {n: out.get(n, (float("nan"), why)) for n in names}
    return out
