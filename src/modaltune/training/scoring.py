"""Score predictions against labels: the held-out metrics ``modaltune fit`` prints per fold, and the
metrics ``modaltune predict`` prints when the patients it predicts carry labels.

Python API::

    from modaltune.training.scoring import evaluate, score_predictions
    m = evaluate(fitted, cohort, fold.test)           # predict + score: one row per task x metric
    m = score_predictions(fitted, preds)              # score a table predict() returned (None: no labels)

Metrics are those of :mod:`modaltune.evaluation` (``compute_metrics``): by default Harrell's
C-index for survival tasks, balanced accuracy and macro one-vs-rest AUC for classification tasks,
MSE / MAE / R^2 for regression tasks (:data:`CONSOLE_METRICS`). A metric that is undefined on the
patients given (one class, no event) is NaN with the reason in the ``reason`` column.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["CONSOLE_METRICS", "METRIC_COLUMNS", "HeldOut", "evaluate", "heldout_metrics", "labelled_tasks", "mean_over_folds", "score_predictions", "write_metrics"]

#: metrics shown by ``fit`` / ``predict`` per task kind (few, so the console table stays small;
#: an experiment config's ``evaluation.metrics`` replaces them).
CONSOLE_METRICS: dict[str, list[str]] = {
    "survival": ["c_index"],
    "classification": ["balanced_accuracy", "macro_auc"],
    "regression": ["mse", "mae", "r2"],
}

#: columns of a metrics table (``metrics.csv``); ``fit`` adds ``fold`` and ``partition`` in front.
METRIC_COLUMNS = ["task", "metric", "value", "n_used", "n_masked", "reason"]


def _label_columns(kind: str) -> list[str]:
    return {"survival": ["time", "event"], "classification": ["label"]}.get(kind, ["value"])


def labelled_tasks(preds: pd.DataFrame, tasks: Sequence[str]) -> list[str]:
    """Tasks of ``tasks`` with at least one labelled row in ``preds`` (the ``labelled`` column that
    :func:`~modaltune.training.trainer.predict` adds when the cohort has the task's label columns)."""
    if "labelled" not in preds.columns or "task" not in preds.columns:
        return []
    lab = preds[preds["labelled"].fillna(False).astype(bool)]
    return [t for t in tasks if (lab["task"] == t).any()]


def _task_metrics(kind: str, metrics: Sequence[str] | None) -> list[str]:
    from modaltune.evaluation.metrics import METRICS

    if metrics:
        chosen = [m for m in metrics if m in METRICS and METRICS[m].kind == kind]
        if chosen:
            return chosen
    return list(CONSOLE_METRICS[kind])


def score_predictions(fitted: Any, preds: pd.DataFrame, *, train: pd.DataFrame | None = None,
                      metrics: Sequence[str] | None = None) -> pd.DataFrame | None:
    """Metrics of a prediction table, one row per task x metric (columns :data:`METRIC_COLUMNS`).

    Args:
        fitted: the :class:`~modaltune.training.trainer.FittedModel` that made ``preds`` (task kinds, classes).
        preds: one row per patient x task with the target columns (``predict(..., with_targets=True)``).
        train: training-fold targets (:func:`~modaltune.training.trainer.targets_frame`), needed
            only by metrics that estimate censoring on the training fold (``c_index_uno``, ``ibs``, ``cd_auc``).
        metrics: metric names (those of other task kinds are ignored); default :data:`CONSOLE_METRICS`.

    Returns:
        The table, or None when no task of the model has a labelled patient in ``preds``
        (the predictions are unscored).
    """
    from modaltune.evaluation import compute_metrics

    scored = labelled_tasks(preds, fitted.tasks)
    if not scored:
        return None
    infos = {t.spec.name: t for t in fitted.info.tasks}
    rows = []
    for name in scored:
        info = infos[name]
        kind = info.spec.kind
        # predict() concatenates tasks, so columns of the other tasks are all-NaN here
        p = preds[preds["task"] == name].dropna(axis=1, how="all")
        if kind == "classification" and "label" not in p:
            p = p.assign(label=-1)
        tr = None
        if train is not None and kind == "survival":
            tr = train[train["task"] == name]
        mv = compute_metrics(info, p, tr, _task_metrics(kind, metrics))
        for metric, value in mv.items():
            rows.append({"task": name, "metric": metric, "value": float(value), "n_used": mv.n_used,
                         "n_masked": mv.n_masked, "reason": mv.reasons.get(metric, "")})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def evaluate(fitted: Any, cohort: Any, ids: Sequence[str] | None = None, *, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Predict ``ids`` of ``cohort`` (default: all) and score them: :func:`score_predictions` of
    :func:`~modaltune.training.trainer.predict`. Censoring-based metrics use the model's training
    patients (``fitted.train_ids``) when they are in ``cohort``.

    Raises:
        InputError: the cohort carries no label of the model's tasks for these patients.
    """
    from modaltune.errors import InputError
    from modaltune.training.trainer import predict, targets_frame

    preds = predict(fitted, cohort, ids)
    train = None
    known = set(cohort.patient_ids)
    train_ids = [i for i in fitted.train_ids if i in known]
    if train_ids and labelled_tasks(preds, fitted.tasks):
        train = targets_frame(cohort, train_ids, fitted.tasks)
    out = score_predictions(fitted, preds, train=train, metrics=metrics)
    if out is None:
        raise InputError(f"cohort '{cohort.name}' has no label of the tasks {fitted.tasks} for these patients: nothing to score", where="evaluate",
                         fix="use predict() for unlabelled patients")
    return out


@dataclass
class HeldOut:
    """Held-out evaluation of a ``fit`` run: ``metrics`` (``fold``, ``partition`` + :data:`METRIC_COLUMNS`),
    ``predictions`` (``fold`` + the columns of ``predict``, held-out patients only) and the
    ``protocol`` line saying what was scored."""

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    protocol: str


def _protocol(cfg: Any, cohort: Any, partition: str, simulated: bool) -> str:
    split = f"split file '{cfg.split.file}'" if cfg.split.file else f"patient-level {cfg.split.kfold}-fold CV (seed {cfg.split.seed})"
    t = cfg.trainer
    from modaltune.methods.registry import get_method

    train = "fitted once (no epochs)" if get_method(cfg.method.name).kind == "tabular" else (
        f"{t.max_epochs} epoch{'s' if t.max_epochs != 1 else ''}, " + (f"early stopping on {t.early_stopping.monitor}" if t.early_stopping else "last epoch"))
    text = f"{cfg.method.name} on cohort '{cohort.name}', {split}; metrics on each fold's '{partition}' patients (never trained on); {train}"
    if simulated:
        from modaltune.data.simulate import SIMULATED_LABEL

        text += f"; {SIMULATED_LABEL}"
    return text


def heldout_metrics(cfg: Any, fitted: dict[int, Any], out_dir: str | Path) -> HeldOut | None:
    """Score each fold's model on that fold's held-out patients (``split.eval_partition``: the test
    patients, or val when the split has no test part).

    Args:
        cfg: the :class:`~modaltune.training.experiment_config.ExperimentConfig` that was fitted.
        fitted: ``{fold index: FittedModel}`` as :func:`~modaltune.training.trainer.fit_folds` returns.
        out_dir: the run folder (where simulated cohorts of the config were written).

    Returns:
        :class:`HeldOut`, or None when no fold has held-out patients with a label.
    """
    from modaltune.errors import InputError
    from modaltune.training import sources
    from modaltune.training.trainer import _load_experiment, predict, targets_frame

    _, cohort, _, folds = _load_experiment(cfg, out_dir)
    metric_frames, pred_frames, parts = [], [], []
    for k, model in fitted.items():
        try:
            part, ids = sources.eval_ids(folds[k], cfg.split.eval_partition)
        except InputError:  # the fold keeps no patient out of training
            continue
        preds = predict(model, cohort, ids)
        train = targets_frame(cohort, list(folds[k].train), model.tasks)
        m = score_predictions(model, preds, train=train, metrics=cfg.evaluation.metrics)
        if m is None:
            continue
        parts.append(part)
        metric_frames.append(m.assign(fold=k, partition=part))
        pred_frames.append(preds.assign(fold=k))
    if not metric_frames:
        return None
    metrics = pd.concat(metric_frames, ignore_index=True)[["fold", "partition", *METRIC_COLUMNS]]
    preds = pd.concat(pred_frames, ignore_index=True)
    preds = preds[["fold", *[c for c in preds.columns if c != "fold"]]]
    simulated = bool(cfg.data.simulate) or cohort.ground_truth is not None
    return HeldOut(metrics, preds, _protocol(cfg, cohort, "/".join(dict.fromkeys(parts)), simulated))


def write_metrics(metrics: pd.DataFrame, path: str | Path, protocol: str = "") -> Path:
    """Write ``metrics`` as CSV (atomically), with the ``protocol`` line as a last column when given."""
    from modaltune.fileio import atomic_write_text

    df = metrics.assign(protocol=protocol) if protocol else metrics
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, df.to_csv(index=False))
    return path


def mean_over_folds(metrics: pd.DataFrame) -> pd.DataFrame:
    """(task, metric) -> mean and population std (ddof 0) of ``value`` over folds, NaN folds left out."""
    g = metrics.groupby(["task", "metric"], sort=False)["value"]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0).fillna(0.0), "n_folds": g.count()}).reset_index()

