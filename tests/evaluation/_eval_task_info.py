"""Build a TaskInfo for evaluation tests (the data layer's class when importable)."""
from __future__ import annotations

from types import SimpleNamespace

from modaltune.data.cohort import TaskSpec


def make_task_info(kind, name="t", classes=None, bin_edges=None):
    kw = {"classification": dict(label_column="y", classes=list(classes or ["a", "b"])),
          "survival": dict(time_column="time", event_column="event"),
          "regression": dict(label_column="y")}[kind]
    spec = TaskSpec(name=name, kind=kind, **kw)
    n = len(spec.classes) if kind == "classification" else (len(bin_edges) - 1 if bin_edges is not None else None)
    names = list(spec.classes) if kind == "classification" else []
    try:
        from modaltune.data.dataset import TaskInfo

        return TaskInfo(spec=spec, n_classes=n, class_names=names, bin_edges=bin_edges, class_counts={})
    except ImportError:
        return SimpleNamespace(spec=spec, n_classes=n, class_names=names, bin_edges=bin_edges, class_counts={})
