"""Importers for the user's **own** files, at any path.

- :func:`import_xena`: UCSC Xena-style omics matrices (genes x samples TSV, one per modality) plus
  a label/clinical table (CSV/TSV, one row per patient or per sample) and optional splits;
- :func:`import_table`: one wide table (CSV/TSV; one row per patient, or per slide with
  ``slide_column``) whose omics columns carry a suffix (``<GENE>_rnaseq`` ... as in PORPOISE);
- :func:`read_splits`: a split in any of the three layouts modaltune knows (long CSV
  ``fold,partition,patient_id``; a folder of MCAT/PORPOISE ``splits_{k}.csv``; a folder of
  ModalTune ``train/val/test.json``).

Tasks and clinical fields are declared with short specs (the same strings on the command line):

============================  ================================================================
``classification``            ``COLUMN`` (classes = the column's distinct values, sorted),
                              ``NAME=COLUMN`` or ``NAME=COLUMN:A,B,C`` (explicit classes; other
                              values are excluded from the task and counted)
``survival``                  ``TIME,EVENT`` (task ``survival``) or ``NAME=TIME,EVENT``
                              (``event_is_censorship``: the column holds 1 = censored)
``regression``                ``COLUMN`` or ``NAME=COLUMN``
``clinical``                  ``COLUMN`` (numeric if every value is a number, else categorical),
                              ``COLUMN:numeric``, ``COLUMN:categorical[=A,B]``,
                              ``COLUMN:ordinal=LOW,MID,HIGH``
============================  ================================================================

Policies (nothing is dropped silently; every count lands in ``cohort.yaml`` ``extra``):

- patient ids: TCGA sample barcodes (``TCGA-XX-XXXX-01A``) map to the patient (first 12
  characters); other ids are used as given. A label table with several rows of one patient keeps
  one by the primary-tumour rule of :func:`~modaltune.data.omics.resolve_duplicate_samples`, and
  those rows must agree on every declared task and clinical column (else an error names the patient);
- the label table defines the cohort: patients found only in an omics matrix or a slide list are
  written to ``excluded.csv`` with the reason; patients without an omics row lack that modality;
- omics matrices: duplicate samples of a patient are resolved by the same primary-tumour rule;
  a patient whose row is all NaN lacks the modality; genes with any NaN among the kept patients are
  dropped (listed in ``extra.omics_genes_dropped_nan``), so tables never hold NaN;
- wrong labels (unknown class, negative time, event not in {0, 1}, ...) fail the import with the
  rule of :mod:`modaltune.data.labels`; the importer validates the cohort before writing it.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modaltune.data._files import ensure_readable
from modaltune.data.cohort import ClinicalField, Cohort, CohortManifest, ModalitySpec, TaskSpec
from modaltune.data.labels import given_mask, label_str
from modaltune.data.omics import read_xena_matrix, resolve_duplicate_samples, split_suffix_columns, tcga_patient_id
from modaltune.data.sources._common import endpoint_from_columns
from modaltune.data.splits import Fold, SplitSet, kfold_split
from modaltune.errors import InputError

__all__ = [
    "import_xena",
    "import_table",
    "read_splits",
    "read_user_table",
    "parse_task_specs",
    "parse_clinical_specs",
    "ID_COLUMNS",
]

#: columns tried, in order, as the patient/sample id when no ``id_column`` is given
ID_COLUMNS = ("patient_id", "_PATIENT", "case_id", "case_submitter_id", "submitter_id", "bcr_patient_barcode", "sample", "sampleID")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


# ---------------------------------------------------------------------------------------- reading
def _sep_for(path: Path) -> str:
    name = path.name.lower()
    for comp in (".gz", ".zip", ".bz2", ".xz"):
        name = name.removesuffix(comp)
    return "\t" if name.endswith((".tsv", ".txt", ".tab")) else ","


def read_user_table(path: str | Path, *, what: str = "table", str_columns: Iterable[str] = (), na_values: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV/TSV table at any path (``.tsv``/``.txt``/``.tab`` are tab-separated, everything else
    comma-separated; ``.gz``/``.zip``/``.bz2``/``.xz`` compression from the suffix).

    Every cell is read as text, then each column whose non-empty cells are all numbers becomes
    numeric (so ids like ``007`` and classes like ``1`` survive); ``str_columns`` stay text.
    ``na_values`` are extra missing-value codes (e.g. ``na``, ``[Not Available]``), read as empty
    cells on top of pandas' defaults, so they never become a class or category. A column name
    written twice keeps its first column; ``df.attrs["duplicate_columns"]`` records the rest
    (see :func:`~modaltune.data.sources._common.drop_duplicate_columns`).
    """
    from modaltune.data.sources._common import drop_duplicate_columns

    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found", where=path, fix="check the path")
    if path.is_dir():
        raise InputError(f"expected a {what} file, found a directory", where=path, fix="point at the file")
    ensure_readable(path)
    try:
        df = pd.read_csv(path, sep=_sep_for(path), dtype=str, keep_default_na=True, na_values=list(na_values) or None)
        header = pd.read_csv(path, sep=_sep_for(path), dtype=str, header=None, nrows=1, keep_default_na=False).iloc[0].tolist() if len(df.columns) else []
    except PermissionError as exc:
        raise InputError("file is unreadable (permission denied)", where=path, fix="make the file readable (chmod u+r) or run as its owner") from exc
    except Exception as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise InputError(f"cannot read {what} ({type(exc).__name__}: {first})", where=path, fix="give a CSV, or a TSV named .tsv/.txt") from exc
    df.columns = [str(c).strip() for c in df.columns]
    df, dups = drop_duplicate_columns(df, [str(h).strip() for h in header], path)
    keep = set(str_columns)
    for c in df.columns:
        if c in keep:
            continue
        num = pd.to_numeric(df[c], errors="coerce")
        given = given_mask(df[c])
        if given.any() and num[given].notna().all():
            df[c] = num
    df.attrs["duplicate_columns"] = dups
    return df


def _pick_id_column(df: pd.DataFrame, id_column: str | None, path: Path | str) -> str:
    if id_column:
        if id_column not in df.columns:
            raise InputError(f"no id column '{id_column}' (columns: {_cols(df)})", where=path, fix="pass --id-column with the column that holds patient or sample ids")
        return id_column
    for c in ID_COLUMNS:
        if c in df.columns:
            return c
    raise InputError(f"no patient id column (looked for {list(ID_COLUMNS)}; columns: {_cols(df)})", where=path, fix="pass --id-column NAME")


def _cols(df: pd.DataFrame, k: int = 12) -> str:
    cols = [str(c) for c in df.columns]
    return ", ".join(cols[:k]) + (f" ... ({len(cols)} columns)" if len(cols) > k else "")


def _one_row_per_patient(df: pd.DataFrame, id_col: str, path: Path | str, agree: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Index ``df`` by patient id (TCGA barcodes -> patient). Several rows of one patient: keep the
    primary-tumour sample's row (:func:`resolve_duplicate_samples`); the ``agree`` columns must be
    equal across that patient's rows. Returns ``(table, dropped_rows)``."""
    given = given_mask(df[id_col])
    if not given.all():
        rows = (np.flatnonzero(~given)[:3] + 2).tolist()  # +2: header line, 1-based
        raise InputError(f"{int((~given).sum())} row(s) without an id in column '{id_col}' (e.g. lines {rows})", where=path, fix=f"fill '{id_col}' or remove those rows")
    raw = df[id_col].map(lambda v: label_str(v))
    dup_raw = sorted(set(raw[raw.duplicated()]))
    if dup_raw:
        raise InputError(f"{len(dup_raw)} id(s) appear on more than one row: {', '.join(repr(x) for x in dup_raw[:5])}", where=f"{path}:{id_col}",
                         fix="keep one row per patient (or per sample)")
    pid = raw.map(tcga_patient_id)
    df = df.assign(_raw_id=raw.to_numpy(), _pid=pid.to_numpy())
    dropped = pd.DataFrame(columns=["sample", "patient_id", "kept_sample", "reason"])
    if pid.duplicated().any():
        multi = df[df["_pid"].duplicated(keep=False)]
        for p, g in multi.groupby("_pid", sort=True):
            for c in agree:
                vals = {label_str(v) for v, ok in zip(g[c].tolist(), given_mask(g[c])) if ok}
                if len(vals) > 1:
                    raise InputError(f"patient '{p}' has rows with different '{c}' values {sorted(vals)[:4]} (samples {g['_raw_id'].tolist()[:4]})",
                                     where=f"{path}:{c}", fix="make the patient's rows agree, or keep one row per patient")
        kept, dropped = resolve_duplicate_samples(raw.tolist())
        df = df[df["_raw_id"].isin(set(kept.values()))]
    out = df.drop(columns=["_raw_id"]).set_index("_pid")
    out.index = out.index.astype(str).rename("patient_id")
    return out, dropped


# ---------------------------------------------------------------------------------------- specs
def _name_and_rest(spec: str, what: str) -> tuple[str | None, str]:
    spec = spec.strip()
    if not spec:
        raise InputError(f"empty --{what} spec", fix=_SPEC_HELP[what])
    if "=" in spec:
        name, rest = spec.split("=", 1)
        name = name.strip()
        if not _NAME_RE.match(name):
            raise InputError(f"task name '{name}' in --{what} '{spec}' must be letters, digits, '_', '-' or '.'", fix=_SPEC_HELP[what])
        return name, rest.strip()
    return None, spec


_SPEC_HELP = {
    "classification": "write COLUMN, NAME=COLUMN or NAME=COLUMN:CLASS1,CLASS2",
    "survival": "write TIME,EVENT or NAME=TIME,EVENT",
    "regression": "write COLUMN or NAME=COLUMN",
    "clinical": "write COLUMN, COLUMN:numeric, COLUMN:categorical[=A,B] or COLUMN:ordinal=LOW,MID,HIGH",
}


def _need(df: pd.DataFrame, col: str, path, flag: str) -> None:
    if col not in df.columns:
        close = [c for c in df.columns if c.lower() == col.lower()]
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise InputError(f"no column '{col}' for --{flag} ({hint}columns: {_cols(df)})", where=path, fix=_SPEC_HELP[flag])


def parse_task_specs(
    table: pd.DataFrame,
    *,
    classification: Iterable[str] = (),
    survival: Iterable[str] = (),
    regression: Iterable[str] = (),
    exclude_values: Iterable[str] = (),
    event_is_censorship: bool = False,
    time_unit: str = "days",
    endpoint: str | dict[str, str] | None = None,
    where: str | Path = "table",
) -> tuple[list[TaskSpec], pd.DataFrame, dict]:
    """Task specs (see the module docstring) -> ``(tasks, label columns, report)``.

    ``endpoint``: the survival endpoint of every survival task, or task name -> endpoint; a task
    without one gets it from its column names (:func:`~modaltune.data.sources._common.endpoint_from_columns`:
    ``OS.time`` -> overall survival, ``PFI.time`` -> progression-free interval, else ``survival``).

    The label columns are named after the task (``<task>``; survival ``<task>_time`` and
    ``<task>_event``) and indexed like ``table``. ``report[task]`` records the source columns and,
    for classification, the class counts and the values excluded from the task.
    """
    tasks: list[TaskSpec] = []
    cols: dict[str, pd.Series] = {}
    report: dict[str, Any] = {}
    excl = [str(v) for v in exclude_values]
    for spec in classification:
        name, rest = _name_and_rest(spec, "classification")
        col, _, cls = rest.partition(":")
        col = col.strip()
        _need(table, col, where, "classification")
        name = name or col
        raw = table[col]
        values = pd.Series([label_str(v) if g else np.nan for v, g in zip(raw.tolist(), given_mask(raw))], index=table.index, dtype=object)
        present = sorted(set(values.dropna()) - set(excl))
        classes = [c.strip() for c in cls.split(",") if c.strip()] if cls else present
        if len(classes) < 2:
            raise InputError(f"classification task '{name}' (column '{col}') has {len(classes)} class(es) {classes}", where=where,
                             fix="a classification task needs at least 2 classes; list them as NAME=COLUMN:A,B")
        other = sorted(set(present) - set(classes))
        tasks.append(TaskSpec(name=name, kind="classification", label_column=name, classes=classes, exclude_values=sorted(set(excl) | set(other)),
                              description=f"Predict {col} ({', '.join(classes)})."))
        cols[name] = values
        report[name] = {"column": col, "classes": {c: int((values == c).sum()) for c in classes},
                        "excluded": {v: int((values == v).sum()) for v in sorted(set(excl) | set(other)) if (values == v).any()},
                        "missing": int(values.isna().sum())}
    for spec in survival:
        name, rest = _name_and_rest(spec, "survival")
        parts = [p.strip() for p in rest.split(",")]
        if len(parts) != 2 or not all(parts):
            raise InputError(f"--survival '{spec}' needs a time and an event column", fix=_SPEC_HELP["survival"])
        tcol, ecol = parts
        _need(table, tcol, where, "survival")
        _need(table, ecol, where, "survival")
        name = name or "survival"
        time = table[tcol]
        event = table[ecol]
        if event_is_censorship:
            num = pd.to_numeric(event, errors="coerce")
            event = event.where(~num.isin([0, 1]), 1 - num)  # only 0/1 are flipped; anything else stays wrong and is reported
        given_ep = endpoint.get(name) if isinstance(endpoint, dict) else endpoint
        ep = given_ep or endpoint_from_columns(tcol, ecol, name)
        tasks.append(TaskSpec(name=name, kind="survival", time_column=f"{name}_time", event_column=f"{name}_event", endpoint=ep, time_unit=time_unit,
                              description=f"Predict {ep} ({time_unit})."))
        cols[f"{name}_time"], cols[f"{name}_event"] = time, event
        report[name] = {"time_column": tcol, "event_column": ecol, "event_is_censorship": bool(event_is_censorship),
                        "endpoint": ep, "endpoint_from": "--endpoint" if given_ep else "column names"}
    for spec in regression:
        name, col = _name_and_rest(spec, "regression")
        _need(table, col, where, "regression")
        name = name or col
        tasks.append(TaskSpec(name=name, kind="regression", label_column=name, description=f"Predict {col}."))
        cols[name] = table[col]
        report[name] = {"column": col}
    names = [t.name for t in tasks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"task name(s) {dup} given twice", fix="name each task: NAME=COLUMN")
    if not tasks:
        raise InputError("no task declared", fix="give at least one --classification, --survival or --regression")
    return tasks, pd.DataFrame(cols, index=table.index), report


def parse_clinical_specs(table: pd.DataFrame, specs: Iterable[str], where: str | Path = "table") -> tuple[list[ClinicalField], pd.DataFrame]:
    """Clinical field specs -> ``(fields, values)``; categorical/ordinal values are canonical
    strings (``1.0`` -> ``"1"``), empty cells stay missing."""
    fields: list[ClinicalField] = []
    out: dict[str, pd.Series] = {}
    for spec in specs:
        col, _, kind_part = spec.strip().partition(":")
        col = col.strip()
        _need(table, col, where, "clinical")
        kind, _, cats = kind_part.partition("=")
        kind = kind.strip().lower()
        raw = table[col]
        given = given_mask(raw)
        num = pd.to_numeric(raw, errors="coerce")
        if not kind:
            kind = "numeric" if given.any() and num[given].notna().all() else "categorical"
        if kind not in ("numeric", "categorical", "ordinal"):
            raise InputError(f"--clinical '{spec}': unknown kind '{kind}'", fix=_SPEC_HELP["clinical"])
        if kind == "numeric":
            bad = given & num.isna().to_numpy()
            if bad.any():
                ex = raw[bad].astype(str).unique()[:3].tolist()
                raise InputError(f"--clinical '{col}:numeric': non-numeric values {ex}", where=f"{where}:{col}", fix="declare it categorical, or clean the column")
            fields.append(ClinicalField(name=col, kind="numeric"))
            out[col] = num
            continue
        values = pd.Series([label_str(v) if g else np.nan for v, g in zip(raw.tolist(), given)], index=table.index, dtype=object)
        categories = [c.strip() for c in cats.split(",") if c.strip()] if cats else sorted(set(values.dropna()))
        if kind == "ordinal" and not cats:
            raise InputError(f"--clinical '{spec}': an ordinal field needs its levels in order", fix="e.g. stage:ordinal=I,II,III,IV")
        if not categories:
            raise InputError(f"--clinical '{col}': no values", where=f"{where}:{col}", fix="drop the field or fill the column")
        fields.append(ClinicalField(name=col, kind=kind, categories=categories))
        out[col] = values
    return fields, pd.DataFrame(out, index=table.index)


# ---------------------------------------------------------------------------------------- splits
def read_splits(path: str | Path, *, name: str | None = None) -> SplitSet:
    """A split from any path, in one of three layouts:

    - a long CSV ``fold,partition,patient_id`` (modaltune's own format);
    - a folder of MCAT/PORPOISE ``splits_{k}.csv`` (columns ``,train,val``; ``val`` = held-out
      fold), or one such file;
    - a folder of ModalTune ``train.json``/``val.json``/``test.json`` (one fold).

    A patient in two partitions of one fold is an error naming the patient. ``name`` defaults to
    the file's stem or the folder's name.
    """
    from modaltune.data.sources.modaltune_json import read_modaltune_partitions
    from modaltune.data.sources.porpoise import read_porpoise_split_dir

    path = Path(path)
    if not path.exists():
        raise InputError("split file or folder not found", where=path, fix="give a fold,partition,patient_id CSV, a folder of splits_{k}.csv, or a folder of train/val/test.json")
    name = name or path.stem
    if path.is_dir():
        if (path / "splits_0.csv").exists():
            folds = read_porpoise_split_dir(path)
            return SplitSet(name, [Fold(k, tr, va, []) for k, (tr, va) in enumerate(folds)], protocol=f"MCAT/PORPOISE-style {len(folds)}-fold CV from {path}; val = held-out fold")
        if (path / "train.json").exists():
            parts = read_modaltune_partitions(path)
            return SplitSet(name, [Fold(0, parts["train"], parts["val"], parts["test"])], protocol=f"ModalTune-style train/val/test split from {path}")
        raise InputError("folder holds neither splits_0.csv nor train.json", where=path, fix="give a folder of splits_{k}.csv or of train/val/test.json, or a long CSV")
    try:
        head = pd.read_csv(path, nrows=0)
    except PermissionError as exc:
        raise InputError("file is unreadable (permission denied)", where=path, fix="make the file readable (chmod u+r)") from exc
    except Exception as exc:
        raise InputError(f"cannot read split file ({type(exc).__name__})", where=path, fix="give a CSV") from exc
    cols = set(head.columns)
    if {"fold", "partition", "patient_id"} <= cols:
        return SplitSet.load(path, name=name, protocol=f"split file {path}")
    if {"train", "val"} <= cols:
        (tr, va), = read_porpoise_split_dir(path)
        return SplitSet(name, [Fold(0, tr, va, [])], protocol=f"MCAT/PORPOISE-style split file {path}; val = held-out fold")
    raise InputError(f"split file has columns {sorted(cols)[:6]}", where=path, fix="use fold,partition,patient_id (long) or ,train,val (PORPOISE splits_{k}.csv)")


def _restrict_split(split: SplitSet, known: set[str]) -> tuple[SplitSet, dict]:
    """Drop split patients that are not in the cohort (reported) and map TCGA barcodes to patients."""
    not_in: set[str] = set()
    folds = []
    for f in split.folds:
        parts = {}
        for part in ("train", "val", "test"):
            ids = [tcga_patient_id(p) for p in getattr(f, part)]
            not_in |= {p for p in ids if p not in known}
            parts[part] = list(dict.fromkeys(p for p in ids if p in known))
        folds.append(Fold(f.index, **parts))
    out = SplitSet(split.name, folds, split.protocol)
    return out, {"split_patients_not_in_cohort": sorted(not_in), "cohort_patients_not_in_split": sorted(known - out.patients())}


# ---------------------------------------------------------------------------------------- assembly
def _clean_omics(name: str, tab: pd.DataFrame, known: set[str], source: str, report: dict, excluded: list[tuple[str, str]]) -> pd.DataFrame | None:
    """Cohort patients only; all-NaN rows removed (patient lacks the modality); NaN genes dropped."""
    extra_ids = sorted(set(tab.index) - known)
    for p in extra_ids:
        excluded.append((p, f"in omics '{name}' ({source}) but not in the label table"))
    tab = tab[tab.index.isin(known)]
    bad_cols = [str(c) for c in tab.columns if not pd.api.types.is_numeric_dtype(tab[c])]
    if bad_cols:
        raise InputError(f"omics '{name}': non-numeric column(s) {bad_cols[:5]}", where=source, fix="omics values must be numbers (empty cell = missing)")
    x = tab.to_numpy(dtype=np.float64)
    x[np.isinf(x)] = np.nan
    empty = np.isnan(x).all(axis=1)
    report.setdefault("omics_patients_all_nan", {})[name] = sorted(str(p) for p in tab.index[empty])
    tab = pd.DataFrame(x[~empty], index=tab.index[~empty], columns=tab.columns).astype(np.float32)
    nan_genes = [str(c) for c in tab.columns[tab.isna().any(axis=0).to_numpy()]]
    tab = tab.drop(columns=nan_genes)
    report.setdefault("omics_genes_dropped_nan", {})[name] = nan_genes
    report.setdefault("omics_patients_not_in_labels", {})[name] = len(extra_ids)
    if tab.shape[1] == 0 or len(tab) == 0:
        report.setdefault("absent_modalities", {})[name] = f"no gene without NaN / no patient with values in {source}"
        return None
    tab.index.name = "patient_id"
    tab.columns = [str(c) for c in tab.columns]
    return tab


def _read_slides(path: str | Path, known: set[str], excluded: list[tuple[str, str]]) -> pd.DataFrame:
    df = read_user_table(path, what="slide list", str_columns=("patient_id", "slide_id", "path"))
    for c in ("patient_id", "path"):
        if c not in df.columns:
            raise InputError(f"slide list lacks column '{c}' (columns: {_cols(df)})", where=path, fix="columns: patient_id, path[, slide_id]")
    df["patient_id"] = df["patient_id"].map(lambda v: tcga_patient_id(label_str(v)))
    if "slide_id" not in df.columns:
        df["slide_id"] = df["path"].map(lambda p: Path(str(p)).stem)
    base = Path(path).resolve().parent
    df["path"] = [str(p) if Path(str(p)).is_absolute() else str(base / str(p)) for p in df["path"]]
    unknown = df[~df["patient_id"].isin(known)]
    for p in sorted(set(unknown["patient_id"])):
        excluded.append((p, f"in the slide list {path} but not in the label table"))
    return df[df["patient_id"].isin(known)][["patient_id", "slide_id", "path"]].reset_index(drop=True)


def _slide_modality(slides: pd.DataFrame, description: str) -> ModalitySpec:
    """The slide modality, with feature_dim/encoder from the first readable bag (so mixed bags are caught)."""
    from modaltune.data.bags import open_bag

    dim = enc = ps = None
    for p in slides["path"]:
        try:
            h = open_bag(p)
        except InputError:
            continue
        dim, enc, ps = h.dim, h.encoder, h.patch_size_level0
        break
    return ModalitySpec(name="slide", kind="slide", feature_dim=dim, encoder=enc, patch_size_level0=ps, description=description)


def _finish(
    *,
    name: str,
    source: str,
    description: str,
    labels: pd.DataFrame,
    tasks: list[TaskSpec],
    task_report: dict,
    omics: dict[str, pd.DataFrame],
    omics_desc: dict[str, str],
    clinical_fields: list[ClinicalField],
    clinical: pd.DataFrame,
    site: str | None,
    site_column: str | None,
    slides: pd.DataFrame | None,
    slides_desc: str,
    excluded: list[tuple[str, str]],
    report: dict,
    splits: str | Path | None,
    n_folds: int,
    seed: int,
    out_dir: str | Path | None,
    overwrite: bool,
    where: str | Path,
) -> Cohort:
    from modaltune.data.sources.porpoise import save_with_splits
    from modaltune.data.validate import validate_cohort
    from modaltune.data.workflows import task_split_kwargs

    if not _NAME_RE.match(name):
        raise InputError(f"cohort name '{name}' must be letters, digits, '_', '-' or '.'", where="--name", fix="e.g. --name my_cohort")
    patients = labels.copy()
    if site_column:
        if site_column not in patients.columns:
            raise InputError(f"no site column '{site_column}'", where=where, fix=f"columns: {_cols(patients)}")
        patients.insert(0, "site", patients.pop(site_column).map(lambda v: label_str(v) if pd.notna(v) else "unknown"))
    else:
        patients.insert(0, "site", site or name.upper())
    sites = sorted(set(patients["site"].astype(str)))
    modalities = [ModalitySpec(name=m, kind="omics", path=f"omics/{m}.parquet", omics_type=m, description=omics_desc.get(m, "")) for m in omics]
    if slides is not None:
        modalities.insert(0, _slide_modality(slides, slides_desc))
    if clinical_fields:
        modalities.append(ModalitySpec(name="clinical", kind="clinical", description=", ".join(f.name for f in clinical_fields)))
    report["tasks"] = task_report
    manifest = CohortManifest(name=name, description=description, synthetic=False, source=source, sites=sites, tasks=tasks,
                              modalities=modalities, clinical_fields=clinical_fields, extra=report)
    ex = pd.DataFrame(excluded, columns=["patient_id", "reason"]).drop_duplicates()
    cohort = Cohort(manifest, patients, slides=slides, omics=omics, clinical=clinical if clinical_fields else None, excluded=ex)
    # the importer refuses to write a cohort that `data validate` would reject
    rep = validate_cohort(cohort, check_bags=False)
    if rep.errors:
        first = rep.errors[0]
        more = f" (+{len(rep.errors) - 1} more problems)" if len(rep.errors) > 1 else ""
        raise InputError(f"{first.where}: {first.message}{more}", where=where, fix=first.fix or None)
    extra = cohort.manifest.extra  # pydantic copied ``report``: record the splits on the manifest itself
    if splits is not None:
        split, split_report = _restrict_split(read_splits(splits), set(cohort.patient_ids))
        cohort.splits = {split.name: split}
        extra["split_report"] = {split.name: split_report}
    elif n_folds:
        s = kfold_split(cohort.patient_ids, n_folds, seed=seed, name=f"kfold{n_folds}", **task_split_kwargs(cohort, tasks[0].name))
        s.protocol += "; held-out fold = test"
        cohort.splits = {s.name: s}
    extra["splits"] = {k: v.protocol for k, v in cohort.splits.items()}
    if out_dir is not None:
        save_with_splits(cohort, out_dir, overwrite=overwrite)
        cohort.root = Path(out_dir)
    return cohort


def import_xena(
    name: str,
    out_dir: str | Path | None = None,
    *,
    omics: dict[str, str | Path],
    labels: str | Path,
    id_column: str | None = None,
    classification: Iterable[str] = (),
    survival: Iterable[str] = (),
    regression: Iterable[str] = (),
    clinical: Iterable[str] = (),
    exclude_values: Iterable[str] = (),
    event_is_censorship: bool = False,
    time_unit: str = "days",
    endpoint: str | dict[str, str] | None = None,
    na_values: Iterable[str] = (),
    site: str | None = None,
    site_column: str | None = None,
    slides: str | Path | None = None,
    splits: str | Path | None = None,
    n_folds: int = 5,
    seed: int = 0,
    overwrite: bool = False,
) -> Cohort:
    """Xena-style matrices + a label table -> a cohort (see the module docstring for the rules).

    Args:
        name: cohort name (letters, digits, ``_-.``).
        out_dir: cohort directory to write (None: in memory only).
        omics: modality name -> genes x samples matrix (TSV, first column = gene; ``.gz`` ok),
            read by :func:`~modaltune.data.omics.read_xena_matrix`.
        labels: label/clinical table (CSV or TSV), one row per patient or per sample.
        id_column: its patient/sample id column (default: the first of :data:`ID_COLUMNS`).
        classification, survival, regression, clinical: specs (module docstring).
        exclude_values: values masked out of every classification task (e.g. ``-1``).
        event_is_censorship: the survival event column holds 1 = censored (PORPOISE style).
        time_unit, endpoint: of the survival tasks (Xena ``OS.time`` is in days); ``endpoint`` (text, or
            task name -> text) defaults to what the column names say, else ``survival``.
        na_values: extra missing-value codes of the label table (e.g. ``["na", "[Not Available]"]``).
        site / site_column: the site of every patient, or the column holding it (default: NAME).
        slides: optional CSV ``patient_id,path[,slide_id]`` of patch-feature bags (paths relative to it).
        splits: a split in any layout of :func:`read_splits`; else ``n_folds`` stratified by the
            first task (``0``: no split), seeded by ``seed``.
        overwrite: replace a cohort already in ``out_dir``.
    """
    if not omics:
        raise InputError("no omics matrix given", fix="pass --omics NAME=MATRIX.tsv (repeatable), e.g. --omics rna=HiSeqV2.tsv")
    table = read_user_table(labels, what="label table", str_columns={*ID_COLUMNS, *([id_column] if id_column else [])}, na_values=na_values)
    id_col = _pick_id_column(table, id_column, labels)
    tasks, label_cols, task_report = parse_task_specs(table, classification=classification, survival=survival, regression=regression,
                                                      exclude_values=exclude_values, event_is_censorship=event_is_censorship,
                                                      time_unit=time_unit, endpoint=endpoint, where=labels)
    fields, clin = parse_clinical_specs(table, clinical, where=labels)
    both = pd.concat([table[[id_col] + ([site_column] if site_column and site_column in table.columns else [])], label_cols, clin.add_prefix("__clin__")], axis=1)
    both, dropped_rows = _one_row_per_patient(both, id_col, labels, agree=[c for c in both.columns if c != id_col])
    both = both.drop(columns=[id_col])
    clin = both[[c for c in both.columns if c.startswith("__clin__")]]
    clin.columns = [c.removeprefix("__clin__") for c in clin.columns]
    label_table = both[[c for c in both.columns if not c.startswith("__clin__")]]
    known = set(label_table.index)
    excluded: list[tuple[str, str]] = []
    report: dict[str, Any] = {"labels": str(Path(labels).resolve()), "id_column": id_col,
                              "label_rows_dropped": dropped_rows.to_dict("records"), "omics_files": {},
                              "duplicate_columns": table.attrs.get("duplicate_columns", []), "na_values": list(na_values)}
    tables, desc = {}, {}
    for m, path in omics.items():
        if not _NAME_RE.match(m):
            raise InputError(f"omics modality name '{m}' must be letters, digits, '_', '-' or '.'", fix="e.g. --omics rna=HiSeqV2.tsv")
        mat = read_xena_matrix(path)
        report["omics_files"][m] = str(Path(path).resolve())
        report.setdefault("omics_samples_dropped", {})[m] = mat.attrs["dropped_samples"].to_dict("records")
        report.setdefault("omics_duplicate_genes_averaged", {})[m] = list(mat.attrs["duplicate_genes"])
        tab = _clean_omics(m, mat, known, str(path), report, excluded)
        if tab is not None:
            tables[m] = tab
            desc[m] = f"Xena matrix {Path(path).name}; {tab.shape[1]} genes"
    sl = _read_slides(slides, known, excluded) if slides is not None else None
    return _finish(
        name=name, source="xena", description=f"User cohort {name} from Xena-style matrices ({', '.join(omics)}) and the label table {Path(labels).name}: {len(label_table)} patients.",
        labels=label_table, tasks=tasks, task_report=task_report, omics=tables, omics_desc=desc, clinical_fields=fields, clinical=clin,
        site=site, site_column=site_column, slides=sl, slides_desc=f"patch-feature bags listed in {slides}", excluded=excluded, report=report,
        splits=splits, n_folds=n_folds, seed=seed, out_dir=out_dir, overwrite=overwrite, where=labels,
    )


def import_table(
    path: str | Path,
    name: str,
    out_dir: str | Path | None = None,
    *,
    id_column: str | None = None,
    slide_column: str | None = None,
    features_dir: str = "features",
    omics_suffixes: dict[str, str] | None = None,
    classification: Iterable[str] = (),
    survival: Iterable[str] = (),
    regression: Iterable[str] = (),
    clinical: Iterable[str] = (),
    exclude_values: Iterable[str] = (),
    event_is_censorship: bool = False,
    time_unit: str = "months",
    endpoint: str | dict[str, str] | None = None,
    na_values: Iterable[str] = (),
    site: str | None = None,
    site_column: str | None = None,
    splits: str | Path | None = None,
    n_folds: int = 5,
    seed: int = 0,
    overwrite: bool = False,
) -> Cohort:
    """One wide table -> a cohort. Omics columns ``<GENE><suffix>`` (``omics_suffixes`` maps
    modality -> suffix; default PORPOISE's ``rna=_rnaseq, cnv=_cnv, mut=_mut``) become one
    modality each. With ``slide_column`` the rows are slides: a patient's rows must agree on
    every other declared column, and ``slides.csv`` lists ``<features_dir>/<slide stem>.h5`` as the
    expected bag of each slide (``.pt`` etc. when the folder already holds bags of that format:
    :func:`~modaltune.data.sources._common.resolve_bag_suffixes`). Without it, the id column must be unique per row (TCGA sample
    barcodes of one patient follow the primary-tumour rule). Other arguments as :func:`import_xena`.
    """
    from modaltune.data.sources._common import feature_path, resolve_bag_suffixes

    suffixes = omics_suffixes or {"rna": "_rnaseq", "cnv": "_cnv", "mut": "_mut"}
    table = read_user_table(path, what="table", str_columns={*ID_COLUMNS, *(c for c in (id_column, slide_column) if c)}, na_values=na_values)
    id_col = _pick_id_column(table, id_column, path)
    tasks, label_cols, task_report = parse_task_specs(table, classification=classification, survival=survival, regression=regression,
                                                      exclude_values=exclude_values, event_is_censorship=event_is_censorship,
                                                      time_unit=time_unit, endpoint=endpoint, where=path)
    fields, clin = parse_clinical_specs(table, clinical, where=path)
    blocks = split_suffix_columns(table, {suf: m for m, suf in suffixes.items()})
    keep = [id_col] + ([site_column] if site_column and site_column in table.columns else [])
    wide = pd.concat([table[keep], label_cols, clin.add_prefix("__clin__"),
                      *[b.add_prefix(f"__{m}__") for m, b in blocks.items()]], axis=1)
    slides = None
    bag_report: dict = {}
    excluded: list[tuple[str, str]] = []
    if slide_column:
        if slide_column not in table.columns:
            raise InputError(f"no slide column '{slide_column}' (columns: {_cols(table)})", where=path, fix="pass --slide-column with the column naming each row's slide")
        wide[slide_column] = table[slide_column].astype(str)
        rows = wide.assign(**{id_col: wide[id_col].map(lambda v: tcga_patient_id(label_str(v)))})
        agree = [c for c in rows.columns if c not in (id_col, slide_column)]
        for pid, g in rows[rows[id_col].duplicated(keep=False)].groupby(id_col, sort=True):
            diff = [c for c in agree if g[c].nunique(dropna=False) > 1]
            if diff:
                show = [c.split("__")[-1] for c in diff[:4]]
                raise InputError(f"patient '{pid}' has slide rows with different values of {show}", where=path, fix="patient-level columns must be equal on all of a patient's slide rows")
        # the bags' format (TRIDENT .h5, CLAM .pt) is read off the files already in the folder
        bag_paths, bag_report = resolve_bag_suffixes([feature_path(features_dir, s) for s in rows[slide_column]], out_dir)
        slides = pd.DataFrame({"patient_id": rows[id_col].astype(str), "slide_id": rows[slide_column], "path": bag_paths})
        wide = rows.drop(columns=[slide_column]).drop_duplicates(id_col).set_index(id_col)
        wide.index = wide.index.astype(str).rename("patient_id")
        dropped = pd.DataFrame()
    else:
        wide, dropped = _one_row_per_patient(wide, id_col, path, agree=list(label_cols.columns) + [f"__clin__{c}" for c in clin.columns])
        wide = wide.drop(columns=[id_col])
    known = set(wide.index)
    report: dict[str, Any] = {"table": str(Path(path).resolve()), "id_column": id_col, "omics_suffixes": suffixes,
                              "rows_dropped": dropped.to_dict("records") if len(dropped) else [], "features_dir": features_dir,
                              "duplicate_columns": table.attrs.get("duplicate_columns", []), "na_values": list(na_values),
                              **({"bag_files": bag_report} if any(bag_report.values()) else {})}
    tables, desc = {}, {}
    for m in blocks:
        tab = wide[[f"__{m}__{g}" for g in blocks[m].columns]]
        tab.columns = list(blocks[m].columns)
        tab = _clean_omics(m, tab, known, str(path), report, excluded)
        if tab is not None:
            tables[m] = tab
            desc[m] = f"'{suffixes[m]}' columns of {Path(path).name}; {tab.shape[1]} genes"
    absent = {m: f"no '{suf}' columns in {Path(path).name}" for m, suf in suffixes.items() if m not in blocks}
    report["absent_modalities"] = {**absent, **report.get("absent_modalities", {})}
    clin_t = wide[[f"__clin__{c}" for c in clin.columns]]
    clin_t.columns = list(clin.columns)
    labels_t = wide[[c for c in wide.columns if not c.startswith("__")]]
    return _finish(
        name=name, source="table", description=f"User cohort {name} from the wide table {Path(path).name}: {len(labels_t)} patients" + (f", {len(slides)} slides" if slides is not None else "") + ".",
        labels=labels_t, tasks=tasks, task_report=task_report, omics=tables, omics_desc=desc, clinical_fields=fields, clinical=clin_t,
        site=site, site_column=site_column, slides=slides, slides_desc=f"patch-feature bags expected under '{features_dir}/'", excluded=excluded,
        report=report, splits=splits, n_folds=n_folds, seed=seed, out_dir=out_dir, overwrite=overwrite, where=path,
    )


# ---------------------------------------------------------------------------------------- registry adapters
def any_name() -> list[str]:
    """These importers accept any cohort name (the user's own files)."""
    return []


def xena_importer(cohort: str, shared_dir=None, out_dir=None, **options) -> Cohort:
    """Registry form of :func:`import_xena` (``shared_dir`` is not used)."""
    return import_xena(cohort, out_dir, **options)


def table_importer(cohort: str, shared_dir=None, out_dir=None, *, path, **options) -> Cohort:
    """Registry form of :func:`import_table` (``shared_dir`` is not used)."""
    return import_table(path, cohort, out_dir, **options)


def porpoise_csv_importer(cohort: str | None, shared_dir=None, out_dir=None, *, path, **options) -> Cohort:
    """Registry form of :func:`~modaltune.data.sources.porpoise.import_porpoise_csv`."""
    from modaltune.data.sources.porpoise import import_porpoise_csv

    return import_porpoise_csv(path, cohort, out_dir, **options)
