"""Checks on ModalTune's text targets: leakage into inputs and per-task separability.

- :func:`find_target_leakage` / :func:`check_target_leakage`: no target sentence and no patient's
  own label name may appear in any text the model *reads* (the report-text modality, the task
  prompts). A prompt that lists every class of its task (e.g. "... as IDC or ILC") is the same for
  every patient and carries no label: only names of a strict subset of the classes count there.
- :func:`separability_report`: how far apart the projected targets of a task's classes / survival
  bins are (pairwise cosine after the projector) and how well a linear probe recovers the labels
  from the patients' target vectors (cross-validated balanced accuracy). Targets that cannot be told
  apart cannot teach the model the labels.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from modaltune.data.text import diagnosis_name
from modaltune.errors import InputError

__all__ = ["find_target_leakage", "check_target_leakage", "separability_report"]


def _contains(text: str, needle: str) -> bool:
    needle = needle.strip().lower().rstrip(".")
    return bool(needle) and re.search(r"(?<![a-z0-9])" + re.escape(needle) + r"(?![a-z0-9])", text.lower()) is not None


def find_target_leakage(inputs: Mapping[str, str], targets: Mapping[str, Sequence[str]], labels: Mapping[str, Sequence[str]],
                        prompts: Sequence[str] = (), class_names: Sequence[str] = (), input_field: str = "input text") -> list[str]:
    """Problems found (empty = clean).

    Args:
        inputs: patient id -> the text the model reads for that patient (report text).
        targets: patient id -> its target sentences (all tasks).
        labels: patient id -> its label names (class names; abbreviation and full name are both checked;
            a one-character name, e.g. a simulated class "A", is not looked for in free text, where it
            is an ordinary word: its target sentence still is).
        prompts: task-prompt texts (shared by patients); class_names: every class of the tasks.
        input_field: how the problems name ``inputs`` (e.g. "report text (modality 'text')").
    """
    out = []
    for pid, text in inputs.items():
        text = str(text or "")
        for s in targets.get(pid, ()):
            if s and _contains(text, s):
                out.append(f"patient {pid}: {input_field} contains its target sentence {s!r}")
        for name in labels.get(pid, ()):
            for form in dict.fromkeys([str(name), diagnosis_name(name)]):
                if len(form.strip()) > 1 and _contains(text, form):
                    out.append(f"patient {pid}: {input_field} names its label {form!r}")
    names = list(dict.fromkeys(str(c) for c in class_names))
    for pr in prompts:
        hit = [c for c in names if _contains(pr, c) or _contains(pr, diagnosis_name(c))]
        if hit and len(hit) < len(names):
            out.append(f"prompt {pr!r} names only some classes {hit}")
    return out


def check_target_leakage(*args, **kw) -> None:
    """:func:`find_target_leakage`, raising an :class:`InputError` naming the first problems."""
    problems = find_target_leakage(*args, **kw)
    if problems:
        raise InputError(f"target text reaches the model's inputs ({len(problems)} problem(s)): " + "; ".join(problems[:3]),
                         where="text modality / task descriptions", fix="remove label statements from report texts and task descriptions")


def separability_report(class_targets: Mapping[str, tuple[Sequence[str], np.ndarray]],
                        patient_targets: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None, *, folds: int = 3, seed: int = 0) -> dict:
    """Per task: ``names``, ``cosine`` (K, K) pairwise cosine of the projected class / bin targets,
    ``max_offdiag_cosine``, ``mean_offdiag_cosine``, and (with ``patient_targets``) ``probe_balanced_accuracy``:
    one-vs-rest logistic regression (liblinear, C = 1), ``folds``-fold stratified CV, from the patients' target
    vectors (N, D) to their labels (N,) (NaN with fewer than 2 patients per class in a fold).

    Args:
        class_targets: task -> (K names, (K, D) projected targets).
        patient_targets: task -> ((N, D) projected targets, (N,) int labels or bin indices).
    """
    rep: dict[str, dict] = {}
    for task, (names, Z) in class_targets.items():
        Z = np.asarray(Z, dtype=np.float64)
        Zn = Z / np.linalg.norm(Z, axis=1, keepdims=True).clip(1e-12)
        cos = Zn @ Zn.T
        off = cos[~np.eye(len(Z), dtype=bool)]
        rep[task] = {"names": [str(n) for n in names], "cosine": cos.round(6).tolist(),
                     "max_offdiag_cosine": float(off.max()) if off.size else float("nan"),
                     "mean_offdiag_cosine": float(off.mean()) if off.size else float("nan")}
    for task, (X, y) in dict(patient_targets or {}).items():
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_score
        from sklearn.multiclass import OneVsRestClassifier

        y = np.asarray(y)
        _, counts = np.unique(y, return_counts=True)
        k = min(int(folds), int(counts.min())) if len(counts) > 1 else 0
        acc = float("nan")
        if k >= 2:
            cv = StratifiedKFold(k, shuffle=True, random_state=seed)
            acc = float(np.mean(cross_val_score(OneVsRestClassifier(LogisticRegression(solver="liblinear", C=1.0)), np.asarray(X), y, cv=cv, scoring="balanced_accuracy")))
        rep.setdefault(task, {})["probe_balanced_accuracy"] = acc
        rep[task]["n_patients"] = int(len(y))
    return rep
