"""What the benchmark's splits really did, for the summary: a stratification that merged rare
strata or fell back (appended to the protocol line) and classes that only the evaluated patients
of a fold have (a note: the model never saw them in training, yet they are scored)."""
from __future__ import annotations

from typing import Any

__all__ = ["split_protocol_text", "split_summary_lines", "test_only_class_notes"]


def _all_tasks(cfg: Any, cohort: Any) -> list[str]:
    return list(dict.fromkeys(t for ts in cfg.task_sets([t.name for t in cohort.tasks]) for t in ts))


def split_protocol_text(cfg: Any, splits: dict[str, Any]) -> str:
    """``"; split made: <cohort>: <protocol>"`` for each cohort whose k-fold split merged rare
    strata or fell back (``splits``: cohort name -> SplitSet); ``""`` when all went as asked."""
    if cfg.split.file:
        return ""
    odd = [f"{name}: {ss.protocol}" for name, ss in splits.items() if "FALLBACK" in ss.protocol or "merged" in ss.protocol]
    return "; split made: " + " | ".join(odd) if odd else ""


def test_only_class_notes(cfg: Any, cohort: Any, ss: Any) -> list[str]:
    """One line per (classification task, fold) whose evaluated patients hold a class that no
    training patient of that fold has."""
    from modaltune.training.sources import eval_ids

    lines = []
    for task in _all_tasks(cfg, cohort):
        spec = cohort.manifest.task(task)
        if spec.kind != "classification":
            continue
        t = cohort.targets(task)
        lab = {p: int(v) for p, v, m in zip(t.patient_ids, t.label, t.mask) if m}
        for f in ss.folds:
            part, ids = eval_ids(f, cfg.split.eval_partition)
            train = {lab[p] for p in f.train if p in lab}
            only = sorted({lab[p] for p in ids if p in lab} - train)
            if only:
                names = [spec.classes[i] if spec.classes and 0 <= i < len(spec.classes) else str(i) for i in only]
                n = sum(1 for p in ids if lab.get(p, -1) in set(only))
                lines.append(
                    f"{cohort.name} / {task} / fold {f.index}: class(es) {names} occur only in the evaluated '{part}' patients "
                    f"({n} patient(s)), never in its training patients, and are scored there"
                )
    return lines


def split_summary_lines(cfg: Any, cohorts: list[Any]) -> tuple[str, list[str]]:
    """(text to append to the protocol line, notes) for the benchmark summary."""
    from modaltune.training.sources import make_splits

    splits, notes = {}, []
    for c in cohorts:
        ss, _ = make_splits(c, cfg.split, _all_tasks(cfg, c))
        splits[c.name] = ss
        notes += test_only_class_notes(cfg, c, ss)
    return split_protocol_text(cfg, splits), notes

