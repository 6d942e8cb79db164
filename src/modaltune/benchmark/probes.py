"""Probes after training: linear probes on a benchmark unit's frozen task embeddings.

The probe maths (logistic regression / ridge Cox on fixed features) lives in
:mod:`modaltune.evaluation.probes`; this module only orchestrates it for one trained unit:
embed the fold's patients through the model protocol's ``task_embeddings``, fit on the training
patients and score on the evaluated ones.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from modaltune.evaluation.probes import PROBE_METRICS, probe_task_metrics

__all__ = ["probe_rows"]


def probe_rows(fitted: Any, cohort: Any, fold: Any, eval_ids: list[str]) -> tuple[list[dict], dict[str, Any], Any]:
    """Linear-probe metric rows of one unit and the (N, E) embeddings of ``eval_ids``.

    The probes (:mod:`modaltune.evaluation.probes`) are fitted on the task embeddings of the
    fold's training patients and scored on ``eval_ids``. Returns ``(rows, notes, embeddings)``:
    metric rows shaped like the unit's ``metrics.csv`` rows, per-task notes for ``unit.json``,
    and the embeddings of ``eval_ids`` (one block, or the task blocks side by side).
    """
    from modaltune.training.trainer import targets_frame, task_embeddings  # imports Lightning: deferred

    ids = list(dict.fromkeys(list(fold.train) + list(eval_ids)))
    blocks = task_embeddings(fitted, cohort, ids)
    tgt = targets_frame(cohort, ids, fitted.tasks)
    rows, notes = [], {}
    for t in fitted.info.tasks:
        name = t.spec.name
        if t.spec.kind not in PROBE_METRICS:
            notes[name] = "regression tasks are not probed"
            continue
        g = tgt[(tgt["task"] == name) & tgt["labelled"].astype(bool)].set_index("patient_id")
        tr = [p for p in fold.train if p in g.index]
        ev = [p for p in eval_ids if p in g.index]
        E = blocks[name]
        vals = probe_task_metrics(t, E.loc[tr].to_numpy(float), g.loc[tr], E.loc[ev].to_numpy(float), g.loc[ev])
        for metric, (v, why) in vals.items():
            rows.append({"task": name, "metric": metric, "value": float(v), "reason": why, "n_used": len(ev), "n_masked": len(eval_ids) - len(ev)})
        notes[name] = {"n_train": len(tr), "n_eval": len(ev), "embedding_dim": int(E.shape[1])}
    first = blocks[fitted.tasks[0]]
    full = first if all(b is first for b in blocks.values()) else pd.concat([blocks[t] for t in fitted.tasks], axis=1)
    return rows, notes, full.loc[list(eval_ids)]
