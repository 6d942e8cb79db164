"""The paper's evaluation of ModalTune: linear probes on frozen task embeddings (MODALTUNE.md section 5).

- :func:`task_embeddings` - per-task (N, out_dim) embeddings of a fitted model (the concatenated
  ``embedding`` sliced per task, in the model's task order).
- :func:`probe_scores` - for every task: logistic regression (liblinear, C = 1) -> balanced
  accuracy, ridge Cox (penalizer 0.1) -> Harrell's C, fitted on the *training* patients' embeddings
  and scored on the evaluation patients; per site (pan-cancer) and over all patients.
- :func:`ood_probe_scores` - out-of-distribution: a model trained on other sites embeds a new
  cohort (unseen site); probes are fitted on that cohort's training patients and scored on its
  evaluation patients. The model itself is never refitted.

Works for any fitted method (the probed embedding is then the method's embedding, one block). The
fitted model (``modaltune.training.FittedModel``) brings its embeddings and targets
(``fitted.task_embeddings`` / ``fitted.targets``), so this package never imports the training loop.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from modaltune.errors import InputError

__all__ = ["task_embeddings", "probe_scores", "ood_probe_scores"]


def task_embeddings(fitted: Any, cohort: Any, ids: Sequence[str]) -> dict[str, pd.DataFrame]:
    """``{task: DataFrame (N, D) indexed by patient_id}`` (the model protocol's task embeddings;
    methods with one shared embedding give it under every task)."""
    return fitted.task_embeddings(cohort, list(ids))


def _probe_one(kind: str, Xtr: np.ndarray, ytr: Any, Xev: np.ndarray, yev: Any, **kw: Any) -> tuple[float, str]:
    from modaltune.evaluation.probes import fit_probe

    try:
        r = fit_probe(kind, Xtr, ytr, Xev, yev, **kw)
        return float(r.value), ""
    except (InputError, ValueError) as exc:  # a degenerate subset (one class, no event): report, do not crash
        return float("nan"), str(exc).split("\n")[0]


def _score_task(task_info: Any, emb: pd.DataFrame, tgt: pd.DataFrame, train_ids: list[str], eval_ids: list[str], C: float, penalizer: float) -> tuple[float, str, str, int, int]:
    tgt = tgt[tgt["labelled"].astype(bool)].set_index("patient_id")
    tr = [p for p in train_ids if p in tgt.index]
    ev = [p for p in eval_ids if p in tgt.index]
    if not tr or not ev:
        return float("nan"), "", "no labelled training or evaluation patients", len(tr), len(ev)
    Xtr, Xev = emb.loc[tr].to_numpy(float), emb.loc[ev].to_numpy(float)
    if task_info.spec.kind == "classification":
        v, why = _probe_one("logistic", Xtr, tgt.loc[tr, "label"].to_numpy(int), Xev, tgt.loc[ev, "label"].to_numpy(int), C=C)
        return v, "balanced_accuracy", why, len(tr), len(ev)
    if task_info.spec.kind == "survival":
        ytr = (tgt.loc[tr, "time"].to_numpy(float), tgt.loc[tr, "event"].to_numpy(float).astype(bool))
        yev = (tgt.loc[ev, "time"].to_numpy(float), tgt.loc[ev, "event"].to_numpy(float).astype(bool))
        v, why = _probe_one("cox", Xtr, ytr, Xev, yev, penalizer=penalizer)
        return v, "c_index", why, len(tr), len(ev)
    return float("nan"), "", "regression tasks are not probed", len(tr), len(ev)


def probe_scores(fitted: Any, cohort: Any, train_ids: Sequence[str], eval_ids: Sequence[str], *, per_site: bool = True,
                 C: float = 1.0, penalizer: float = 0.1) -> pd.DataFrame:
    """Probe metrics of every task: rows ``task, site ('all' or a site), metric, value, n_train, n_eval, reason``.

    Probes are fitted on ``train_ids`` only (the patients the model was trained on, or a new
    cohort's training patients) and scored on ``eval_ids``.
    """
    train_ids, eval_ids = [str(p) for p in train_ids], [str(p) for p in eval_ids]
    tasks = [t.spec.name for t in fitted.info.tasks]
    embs = task_embeddings(fitted, cohort, list(dict.fromkeys(train_ids + eval_ids)))
    tgt_all = fitted.targets(cohort, list(dict.fromkeys(train_ids + eval_ids)), tasks)
    site_of = cohort.patients["site"].astype(str)
    rows = []
    for ti in fitted.info.tasks:
        t = ti.spec.name
        tgt = tgt_all[tgt_all["task"] == t]
        groups: list[tuple[str, list[str], list[str]]] = [("all", train_ids, eval_ids)]
        sites = sorted(set(site_of.reindex(eval_ids).tolist()))
        if per_site and len(sites) > 1:
            for s in sites:
                groups.append((s, [p for p in train_ids if site_of[p] == s], [p for p in eval_ids if site_of[p] == s]))
        for site, tr, ev in groups:
            v, metric, why, ntr, nev = _score_task(ti, embs[t], tgt, tr, ev, C, penalizer)
            rows.append({"task": t, "site": site, "metric": metric, "value": v, "n_train": ntr, "n_eval": nev, "reason": why})
    return pd.DataFrame(rows)


def ood_probe_scores(fitted: Any, ood_cohort: Any, train_ids: Sequence[str], eval_ids: Sequence[str], **kw: Any) -> pd.DataFrame:
    """Probe a trained model on an unseen cohort/site: embeddings from the frozen fitted model,
    probes fitted on ``train_ids`` of ``ood_cohort`` and scored on its ``eval_ids``.

    ``ood_cohort`` needs the modality names (and gene columns) the model was trained with and the
    same task names; the preprocessing statistics stay those of the original training fold.
    """
    missing = [t.spec.name for t in fitted.info.tasks if t.spec.name not in {x.name for x in ood_cohort.tasks}]
    if missing:
        raise InputError(f"the OOD cohort '{ood_cohort.name}' lacks the task(s) {missing} the model was trained on", where="cohort.yaml",
                         fix="give the OOD cohort tasks with the same names (their labels may differ)")
    return probe_scores(fitted, ood_cohort, train_ids, eval_ids, **kw).assign(ood_cohort=ood_cohort.name)
