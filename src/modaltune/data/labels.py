"""Task-label rules shared by :class:`~modaltune.data.cohort.Cohort` and ``data validate``.

One function, :func:`label_problems`, decides for every task which cells are usable, which are
**masked** (counted, the patient stays in the cohort) and which are **errors** (the cohort cannot be
used until they are fixed). ``Cohort.load`` / ``Cohort.targets`` raise the first error as a
one-line :class:`~modaltune.errors.InputError`; ``validate_cohort`` lists them all.

=================  ==========================================  ===========================================
task kind          masked and counted (not an error)           error
=================  ==========================================  ===========================================
classification     empty cell; a value in ``exclude_values``   a value that is neither a class nor excluded
survival           time **and** event both empty               non-numeric / infinite / negative time;
                                                               time empty (or NaN) while the event is set;
                                                               event set while the time is empty and vice
                                                               versa; event not in {0, 1}
regression         empty cell                                  non-numeric or infinite value
=================  ==========================================  ===========================================

A *missing* label is something the data does not know (masked); a *wrong* label is something the
data claims that cannot be true (an error): training on it would silently learn from garbage.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from modaltune.data.cohort import TaskSpec

__all__ = ["LabelProblem", "label_problems", "given_mask", "label_str", "examples"]

_EXAMPLES = 5


@dataclass(frozen=True)
class LabelProblem:
    """One kind of wrong label in one column: ``message`` names the task, the fault and up to a few
    patients; ``patient_ids`` lists all of them; ``values`` the offending cells (same order)."""

    task: str
    column: str
    message: str
    fix: str
    patient_ids: tuple[str, ...]
    values: tuple[Any, ...] = ()


def examples(items, k: int = _EXAMPLES) -> str:
    """``'a', 'b', 'c' and 4 more``."""
    items = list(items)
    shown = ", ".join(f"'{x}'" for x in items[:k])
    return shown + (f" and {len(items) - k} more" if len(items) > k else "")


def label_str(v: Any) -> str:
    """Canonical string of a label cell: ``1.0 -> '1'``, ``' IDC ' -> 'IDC'``."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, np.integer):
        return str(int(v))
    return str(v).strip()


def given_mask(col: pd.Series) -> np.ndarray:
    """True where a cell holds a value (not None/NaN/<NA> and not an empty or blank string)."""
    notna = col.notna().to_numpy()
    blank = col.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
    return notna & ~blank


def _problem(task: TaskSpec, column: str, what: str, ids: np.ndarray, values: np.ndarray, fix: str) -> LabelProblem:
    pids = [str(p) for p in ids]
    shown = examples(pids)
    return LabelProblem(task.name, column, f"task '{task.name}': {what} for {len(pids)} patient(s): {shown}", fix, tuple(pids), tuple(values.tolist()))


def label_problems(task: TaskSpec, patients: pd.DataFrame) -> tuple[list[LabelProblem], np.ndarray]:
    """Wrong labels of ``task`` in ``patients`` (indexed by patient id) and the usable-label mask.

    The task's columns must exist (callers report a missing column themselves).
    Returns ``(problems, usable)``: ``usable[i]`` is True where row i has a valid label.
    """
    ids = patients.index.astype(str).to_numpy()
    out: list[LabelProblem] = []
    if task.kind == "classification":
        raw = patients[task.label_column]
        given = given_mask(raw)
        sv = np.array([label_str(v) if g else "" for v, g in zip(raw.tolist(), given)], dtype=object)
        is_class = np.isin(sv, np.array(task.classes, dtype=object)) & given
        is_excl = np.isin(sv, np.array([str(v) for v in task.exclude_values], dtype=object)) & given
        is_class &= ~is_excl  # an excluded value is masked even when it is also a class name
        unknown = given & ~is_class & ~is_excl
        for label in sorted(set(sv[unknown].tolist())):
            sel = unknown & (sv == label)
            out.append(_problem(task, task.label_column, f"unknown class label '{label}' (classes: {task.classes})", ids[sel], sv[sel],
                                "add the class to 'classes', list it in 'exclude_values', or correct the labels"))
        return out, is_class
    if task.kind == "survival":
        raw_t, raw_e = patients[task.time_column], patients[task.event_column]
        t_given, e_given = given_mask(raw_t), given_mask(raw_e)
        time = pd.to_numeric(raw_t, errors="coerce").to_numpy(dtype=np.float64)
        event = pd.to_numeric(raw_e, errors="coerce").to_numpy(dtype=np.float64)
        tcol, ecol = task.time_column, task.event_column
        checks = [
            (tcol, t_given & np.isnan(time), "non-numeric survival time", raw_t, "times must be numbers >= 0 (empty cell = missing)"),
            (tcol, ~t_given & e_given, "NaN/missing survival time but an event recorded", raw_t,
             "give the follow-up time, or leave both time and event empty to mask the patient"),
            (tcol, np.isinf(time), "infinite survival time", raw_t, "times must be finite numbers >= 0"),
            (tcol, time < 0, "negative survival time", raw_t, "times must be >= 0 (check the unit and the date arithmetic)"),
            (ecol, e_given & ~np.isin(event, [0.0, 1.0]), "event value not in {0, 1}", raw_e,
             "use 1 = event observed, 0 = censored (PORPOISE 'censorship' is the opposite: 1 - censorship)"),
            (ecol, t_given & ~e_given, "survival time without an event value", raw_e, "give the event (1/0) or leave both empty to mask the patient"),
        ]
        bad_any = np.zeros(len(ids), dtype=bool)
        for col, sel, what, raw, fix in checks:
            if sel.any():
                vals = np.array([label_str(v) if pd.notna(v) else "NaN" for v in raw.to_numpy()[sel]], dtype=object)
                if what.startswith("event value"):
                    what = f"event values {sorted(set(vals.tolist()))[:5]} not in {{0, 1}}"
                out.append(_problem(task, col, what, ids[sel], vals, fix))
                bad_any |= sel
        usable = t_given & e_given & ~bad_any
        return out, usable
    raw = patients[task.label_column]
    given = given_mask(raw)
    val = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = given & ~np.isfinite(val)
    if bad.any():
        vals = np.array([label_str(v) for v in raw.to_numpy()[bad]], dtype=object)
        out.append(_problem(task, task.label_column, "non-numeric or infinite value", ids[bad], vals,
                            "regression targets must be finite numbers (empty cell = missing)"))
    return out, given & ~bad
