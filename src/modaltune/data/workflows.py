"""The Python functions behind ``modaltune data ...``: each CLI command is a thin wrapper of one.

========================  ==============================================================
``data import porpoise``  :func:`import_data` (-> :func:`modaltune.data.sources.import_cohort`)
``data import xena``      :func:`import_xena` (your own Xena matrices + label table)
``data import table``     :func:`import_table` (your own wide table)
``data import porpoise-csv``  :func:`import_porpoise_csv` (your own PORPOISE-style CSV)
``--splits PATH``         :func:`read_splits` (long CSV, ``splits_{k}.csv`` folder, ModalTune JSON folder)
``data validate``         :func:`validate_dir`
``data summary``          :func:`summarize_cohort` + :func:`render_summary`
``data split``            :func:`split_cohort`
``data simulate``         :func:`modaltune.data.simulate.simulate_cohort`
========================  ==============================================================
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modaltune.errors import InputError, ValidationReport

__all__ = [
    "import_data",
    "import_xena",
    "import_table",
    "import_porpoise_csv",
    "read_splits",
    "validate_dir",
    "summarize_cohort",
    "render_summary",
    "split_cohort",
    "task_strata",
    "task_split_kwargs",
    "list_splits",
]


def import_data(source: str, cohort: str, out_dir: str | Path, shared_dir: str | Path | None = None, **options: Any):
    """Import ``cohort`` from ``source`` (``porpoise`` or ``modaltune-json``) into ``out_dir``.

    Returns the :class:`~modaltune.data.cohort.Cohort` (its split sets in ``cohort.splits``).
    """
    from modaltune.data.sources import import_cohort

    return import_cohort(source, cohort, shared_dir, out_dir, **options)


def import_xena(name: str, out_dir: str | Path | None = None, **options: Any):
    """Your own Xena-style matrices + label table -> a cohort directory.
    See :func:`modaltune.data.sources.user_files.import_xena` for every option."""
    from modaltune.data.sources.user_files import import_xena as _imp

    return _imp(name, out_dir, **options)


def import_table(path: str | Path, name: str, out_dir: str | Path | None = None, **options: Any):
    """Your own wide table -> a cohort directory.
    See :func:`modaltune.data.sources.user_files.import_table` for every option."""
    from modaltune.data.sources.user_files import import_table as _imp

    return _imp(path, name, out_dir, **options)


def import_porpoise_csv(path: str | Path, name: str | None = None, out_dir: str | Path | None = None, **options: Any):
    """Your own PORPOISE-style wide CSV (any path) -> a cohort directory.
    See :func:`modaltune.data.sources.porpoise.import_porpoise_csv`."""
    from modaltune.data.sources.porpoise import import_porpoise_csv as _imp

    return _imp(path, name, out_dir, **options)


def read_splits(path: str | Path, name: str | None = None):
    """A :class:`~modaltune.data.splits.SplitSet` from any path (long CSV, a folder of
    ``splits_{k}.csv``, or a folder of ModalTune ``train/val/test.json``)."""
    from modaltune.data.sources.user_files import read_splits as _read

    return _read(path, name=name)


def validate_dir(root: str | Path, *, check_bags: bool = True, max_bags: int | None = None) -> ValidationReport:
    """Every problem of the cohort directory ``root`` (errors and warnings), at once.

    See :func:`modaltune.data.validate.validate_cohort`; ``check_bags`` reads every existing
    bag file (NaN/inf, shapes, dims), ``max_bags`` caps how many are read.
    """
    from modaltune.data.validate import validate_cohort

    return validate_cohort(root, check_bags=check_bags, max_bags=max_bags)


def list_splits(root: str | Path) -> dict[str, Path]:
    """Split files of a cohort directory: name -> ``splits/<name>.csv``."""
    d = Path(root) / "splits"
    return {p.stem: p for p in sorted(d.glob("*.csv"))} if d.is_dir() else {}


def summarize_cohort(root: str | Path) -> dict[str, Any]:
    """Counts of a cohort directory: :meth:`Cohort.summary` plus excluded patients grouped by
    reason, per-task mask reasons, absent modalities and the split sets with their sizes."""
    from modaltune.data.cohort import Cohort
    from modaltune.data.splits import SplitSet

    cohort = Cohort.load(root)
    out = cohort.summary()
    out["description"] = cohort.manifest.description
    out["source"] = cohort.manifest.source
    ex = cohort.excluded
    out["excluded_reasons"] = ex["reason"].value_counts().to_dict() if len(ex) and "reason" in ex else {}
    out["absent_modalities"] = dict(cohort.manifest.extra.get("absent_modalities", {}) or {})
    slides_listed = int(cohort.slides["patient_id"].nunique()) if len(cohort.slides) else 0
    out["slides_listed_patients"] = slides_listed
    splits = {}
    for name, path in list_splits(root).items():
        try:
            s = SplitSet.load(path)
        except InputError as exc:
            splits[name] = f"unreadable: {exc}"
            continue
        splits[name] = [{p: len(getattr(f, p)) for p in ("train", "val", "test")} for f in s.folds]
    out["splits"] = splits
    return out


def render_summary(summary: dict[str, Any]):
    """Rich renderables (tables) of :func:`summarize_cohort`'s output, for ``data summary``."""
    from rich.table import Table

    tables = []
    head = Table(title=f"cohort {summary['name']}" + (" (SYNTHETIC)" if summary.get("synthetic") else ""), show_header=False)
    head.add_row("patients", str(summary["patients"]))
    head.add_row("slides listed", f"{summary['slides']} (for {summary.get('slides_listed_patients', 0)} patients)")
    head.add_row("source", str(summary.get("source") or "-"))
    head.add_row("excluded at import", str(summary["excluded"]))
    tables.append(head)

    sites = Table(title="patients per site")
    sites.add_column("site")
    sites.add_column("patients", justify="right")
    for k, v in sorted(summary["sites"].items()):
        sites.add_row(str(k), str(v))
    tables.append(sites)

    mods = Table(title="modality availability")
    mods.add_column("modality")
    mods.add_column("patients with it", justify="right")
    mods.add_column("missing", justify="right")
    for k, v in summary["modalities"].items():
        mods.add_row(k, str(v), str(summary["patients"] - v))
    for k, why in summary.get("absent_modalities", {}).items():
        mods.add_row(k, "absent", why)
    tables.append(mods)

    tasks = Table(title="tasks")
    for c in ("task", "kind", "labelled", "labels", "masked (reason: n)"):
        tasks.add_column(c)
    for name, t in summary["tasks"].items():
        if t["kind"] == "classification":
            labels = ", ".join(f"{c}: {n}" for c, n in t["classes"].items())
        elif t["kind"] == "survival":
            med = f"{t['median_time']:.1f}" if t.get("median_time") is not None else "-"
            labels = f"events: {t['events']}, median time {med} {t.get('time_unit', '')}"
        else:
            labels = ""
        masked = ", ".join(f"{r}: {n}" for r, n in t["masked"].items()) or "-"
        tasks.add_row(name, t["kind"], str(t["labelled"]), labels, masked)
    tables.append(tasks)

    if summary.get("excluded_reasons"):
        ex = Table(title="patients excluded at import")
        ex.add_column("reason")
        ex.add_column("patients", justify="right")
        for r, n in summary["excluded_reasons"].items():
            ex.add_row(str(r), str(n))
        tables.append(ex)

    if summary.get("splits"):
        sp = Table(title="splits (train/val/test per fold)")
        sp.add_column("split")
        sp.add_column("folds")
        for name, folds in summary["splits"].items():
            text = folds if isinstance(folds, str) else "; ".join(f"{f['train']}/{f['val']}/{f['test']}" for f in folds)
            sp.add_row(name, text)
        tables.append(sp)
    return tables


def task_strata(cohort, task: str | None, n_time_bins: int = 4) -> np.ndarray | None:
    """Stratum label per patient (cohort order) for splitting on ``task``.

    classification: the class index (unlabelled patients form one extra stratum); survival:
    event x time quartile of labelled patients; regression: value quartile; ``None``: no strata.
    Unlabelled patients stay in the split (they may have other tasks' labels).
    """
    if task is None:
        return None
    t = cohort.targets(task)
    strata = np.full(len(t.patient_ids), -1, dtype=np.int64)
    m = t.mask
    if t.task.kind == "classification":
        strata[m] = t.label[m]
    elif t.task.kind == "survival":
        tm = t.time[m]
        edges = np.quantile(tm, np.linspace(0, 1, n_time_bins + 1)[1:-1]) if m.any() else []
        strata[m] = t.event[m] * n_time_bins + np.searchsorted(edges, tm, side="right")
    else:
        v = t.value[m]
        edges = np.quantile(v, np.linspace(0, 1, n_time_bins + 1)[1:-1]) if m.any() else []
        strata[m] = np.searchsorted(edges, v, side="right")
    return strata


def task_split_kwargs(cohort, task: str | None) -> dict:
    """Keyword arguments of :func:`~modaltune.data.splits.kfold_split` that stratify by ``task``.

    classification: ``labels`` (class index, -1 = unlabelled); survival: ``time`` (NaN =
    unlabelled) and ``event``, so rare event x time strata are merged by the splitter;
    regression: ``labels`` = value quartile (-1 = unlabelled). ``None``: no stratification.
    """
    if task is None:
        return {}
    t = cohort.targets(task)
    if t.task.kind == "survival":
        return {"time": np.where(t.mask, t.time, np.nan), "event": np.where(t.mask, t.event, 0), "stratify_name": f"task '{task}'"}
    strata = task_strata(cohort, task)
    if t.task.kind == "classification":  # class names, so a merge or fallback in the protocol names them
        strata = np.array([t.task.classes[i] if i >= 0 else "(unlabelled)" for i in strata], dtype=object)
    return {"labels": strata, "stratify_name": f"task '{task}'"}


def split_cohort(
    root: str | Path,
    n_folds: int = 5,
    *,
    task: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.0,
    name: str | None = None,
    overwrite: bool = False,
):
    """Patient-level k-fold split of the cohort at ``root``, saved as ``splits/<name>.csv``.

    Stratified by ``task`` (see :func:`task_strata`); every patient of the cohort is placed,
    including those without a label for ``task``. The held-out fold is ``test``; with
    ``val_fraction`` > 0 a validation part is carved out of each training part.
    Default name: ``<task or 'random'>_<n_folds>fold_seed<seed>``. The split's protocol (with any
    merge of rare strata or fallback) is recorded in ``cohort.yaml`` ``extra.splits``. Returns the
    :class:`SplitSet`.
    """
    from modaltune.data._files import check_plain_name
    from modaltune.data.cohort import Cohort
    from modaltune.data.splits import kfold_split

    cohort = Cohort.load(root)
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val fraction {val_fraction} outside [0, 1)", fix="e.g. --val-fraction 0.1")
    name = check_plain_name(name, "--name") if name is not None else f"{task or 'random'}_{n_folds}fold_seed{seed}"
    path = Path(root) / "splits" / f"{name}.csv"
    if path.exists() and not overwrite:
        raise InputError("split file already exists", where=path, fix="choose another --name or pass --overwrite")
    s = kfold_split(cohort.patient_ids, n_folds, seed=seed, val_fraction_of_train=val_fraction, name=name, **task_split_kwargs(cohort, task))
    s.save(path)
    _record_split_protocol(Path(root), name, s.protocol)
    return s


def _record_split_protocol(root: Path, name: str, protocol: str) -> None:
    """Write the split's description (how it was stratified, any merge or fallback) into
    ``cohort.yaml`` ``extra.splits``, where the importers keep theirs."""
    import yaml

    from modaltune.data.cohort import MANIFEST_NAME, load_manifest

    manifest = load_manifest(root)
    manifest.extra["splits"] = {**(manifest.extra.get("splits") or {}), name: protocol}
    (root / MANIFEST_NAME).write_text(yaml.safe_dump(manifest.model_dump(mode="json"), sort_keys=False))

