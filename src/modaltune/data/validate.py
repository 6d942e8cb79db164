"""``validate_cohort``: every problem of a cohort, at once.

Checks (errors unless marked *warning*):

- manifest: YAML syntax and schema (nothing else is checked without a valid manifest);
- ``patients.csv``: present, ``patient_id`` column, duplicate ids; task columns present; unknown
  class labels; survival time negative / NaN / inf / non-numeric (with an event recorded) and
  events not in {0, 1}; non-numeric regression values; sites not declared in the manifest (*warning*);
  tasks without any usable label (*warning*);
- ``cohort.yaml``'s ``files`` (written by ``Cohort.save``): every listed file present;
- ``slides.csv``: unknown patients; one bag file listed twice (for one patient: a doubled bag; for
  two: leakage); bag files listed but absent (*warning*, counted per slide modality: the TCGA
  importers record expected paths that do not exist here), an error when none exists; a FIFO /
  socket / device as a bag (never opened); with ``check_bags``: unreadable / corrupt / truncated
  files, no ``features``, features not 2-D or not float (int/bool), NaN/inf, empty bags,
  coords of the wrong shape or non-integral, feature dim or encoder different from the manifest's
  ``feature_dim`` / ``encoder`` or (when the manifest declares none) mixed across the cohort;
- omics tables: missing file, duplicate patient ids, unknown patients (*warning*), non-numeric
  columns, NaN/inf cells, values beyond the float32 range, extreme outliers (*warning*);
- ``clinical.csv``: duplicate ids, unknown patients (*warning*), values outside each field's schema,
  declared fields absent (*warning*);
- ``text.csv``: duplicate ids;
- ``splits/*.csv``: columns, partition names, a patient in two partitions of one fold or twice in
  one partition, patients not in the cohort, patients absent from some of the folds (*warning*).

Problems are aggregated per file and kind, naming up to a few patients/files each, so a report on a
10,000-patient cohort stays readable.
"""
from __future__ import annotations

import logging
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modaltune.data._files import UNREADABLE, UNREADABLE_FIX, is_unreadable
from modaltune.data.bags import BAG_SUFFIXES, check_bag_header, is_no_tissue_bag, not_a_regular_file, read_bag
from modaltune.data.clinical import check_clinical_value
from modaltune.data.cohort import MANIFEST_NAME, Cohort, CohortManifest, load_manifest, missing_declared_files
from modaltune.data.labels import label_problems
from modaltune.data.splits import PARTITIONS
from modaltune.errors import InputError, ValidationReport

__all__ = ["validate_cohort", "check_trainable", "ValidationReport"]

log = logging.getLogger(__name__)

_EXAMPLES = 5
_F32_MAX = float(np.finfo(np.float32).max)
_OUTLIER_IQRS = 1e6


def _examples(items: list[Any], k: int = _EXAMPLES) -> str:
    items = list(items)
    shown = ", ".join(f"'{x}'" for x in items[:k])
    return shown + (f" and {len(items) - k} more" if len(items) > k else "")


def _read_csv(report: ValidationReport, path: Path, required: bool, id_col: str | None = "patient_id") -> pd.DataFrame | None:
    if not path.exists():
        if required:
            report.add(path, "file not found", "re-create the cohort with `modaltune data import` or `modaltune data simulate`")
        return None
    if is_unreadable(path):
        report.add(path, UNREADABLE, UNREADABLE_FIX)
        return None
    try:
        df = pd.read_csv(path, dtype={id_col: str} if id_col else None)
    except Exception as exc:  # noqa: BLE001 - an untrusted file: any parse failure is one report line
        report.add(path, f"cannot read CSV ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})", "check that the file is a valid CSV table")
        return None
    if id_col and id_col not in df.columns:
        report.add(path, f"missing column '{id_col}'", f"add a '{id_col}' column")
        return None
    return df


def _duplicates(report: ValidationReport, where: Path | str, ids: pd.Series | pd.Index, what: str = "patient id") -> None:
    s = pd.Series(list(ids)).astype(str)
    dup = sorted(set(s[s.duplicated()]))
    if dup:
        report.add(where, f"{len(dup)} duplicate {what}(s): {_examples(dup)}", "keep one row per patient (merge or remove the duplicates)")


# ------------------------------------------------------------------------------------ sections
def _check_tasks(report: ValidationReport, manifest: CohortManifest, patients: pd.DataFrame, where: Path | str) -> None:
    for t in manifest.tasks:
        cols = [c for c in t.columns if c not in patients.columns]
        if cols:
            report.add(where, f"task '{t.name}' reads column(s) {cols} that the table does not have", "fix the column name in cohort.yaml or add the column")
            continue
        problems, usable_mask = label_problems(t, patients)
        for p in problems:
            report.add(f"{where}:{p.column}", p.message, p.fix)
        usable = int(usable_mask.sum())
        if usable == 0 and len(patients):
            report.add(where, f"task '{t.name}': no patient has a usable label", "check the label column and exclude_values", severity="warning")


def _check_omics(report: ValidationReport, name: str, tab: pd.DataFrame, where: Path | str, known: set[str]) -> None:
    _duplicates(report, where, tab.index)
    unknown = sorted(set(tab.index.astype(str)) - known)
    if unknown:
        report.add(where, f"{len(unknown)} patient(s) not in patients.csv: {_examples(unknown)}", "remove them or add them to patients.csv", severity="warning")
    nonnum = [str(c) for c in tab.columns if not pd.api.types.is_numeric_dtype(tab[c])]
    if nonnum:
        report.add(where, f"omics '{name}': {len(nonnum)} non-numeric column(s): {_examples(nonnum)}", "omics tables hold numbers only (patients x genes)")
    num = tab[[c for c in tab.columns if str(c) not in set(nonnum)]]
    if num.shape[1]:
        x = num.to_numpy(dtype=np.float64)
        _flag_cells(report, where, name, num, ~np.isfinite(x), "NaN/inf value(s)", "",
                    "impute or remove the values; a patient without this modality must have no row at all")
        # models read omics as float32: a larger finite value would become inf there
        _flag_cells(report, where, name, num, np.isfinite(x) & (np.abs(x) > _F32_MAX), "value(s) beyond the float32 range (|x| > 3.4e38)", "",
                    "omics values are read as float32: correct the values (a unit or log-transform error?) or remove them")
        _check_outliers(report, name, num, x, where)


def _check_outliers(report: ValidationReport, name: str, num: pd.DataFrame, x: np.ndarray, where: Path | str) -> None:
    """*Warning*: a value more than 1e6 interquartile ranges from its gene's median dominates the
    z-score standard deviation, so every other patient of that gene scales to (nearly) one value."""
    xf = np.where(np.isfinite(x) & (np.abs(x) <= _F32_MAX), x, np.nan)
    if not np.isfinite(xf).any():
        return
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q25, med, q75 = np.nanpercentile(xf, [25, 50, 75], axis=0)
        far = np.abs(xf - med) > _OUTLIER_IQRS * (q75 - q25)
    far &= (q75 - q25 > 0)[None, :]
    _flag_cells(report, where, name, num, far, "extreme value(s) (over 1e6 interquartile ranges from the gene's median)",
                "; z-scoring flattens the other patients of these genes",
                "check the values (a unit, parse or log-transform error?); the cohort still trains", severity="warning")


def _flag_cells(report: ValidationReport, where: Path | str, name: str, num: pd.DataFrame, cells: np.ndarray, what: str, tail: str, fix: str,
                severity: str = "error") -> None:
    """One problem for the flagged ``cells`` ((patients, features) bool) of omics table ``name``:
    how many, and which patients and features (examples), or nothing when none is flagged."""
    if not cells.any():
        return
    rows, cols = np.flatnonzero(cells.any(axis=1)), np.flatnonzero(cells.any(axis=0))
    report.add(
        where,
        f"omics '{name}': {int(cells.sum())} {what} in {len(rows)} patient(s) ({_examples([str(num.index[r]) for r in rows])}) "
        f"and {len(cols)} feature(s) ({_examples([str(num.columns[c]) for c in cols])}){tail}",
        fix,
        severity=severity,
    )


def _check_clinical(report: ValidationReport, manifest: CohortManifest, clin: pd.DataFrame, where: Path | str, known: set[str]) -> None:
    _duplicates(report, where, clin.index)
    unknown = sorted(set(clin.index.astype(str)) - known)
    if unknown:
        report.add(where, f"{len(unknown)} patient(s) not in patients.csv: {_examples(unknown)}", "remove them or add them to patients.csv", severity="warning")
    for f in manifest.clinical_fields:
        if f.name not in clin.columns:
            report.add(where, f"declared clinical field '{f.name}' has no column (all patients missing)", "add the column or remove the field from cohort.yaml", severity="warning")
            continue
        msgs = [m for pid, v in zip(clin.index.astype(str), clin[f.name].tolist()) if (m := check_clinical_value(f, v, pid))]
        for m in msgs[:_EXAMPLES]:
            report.add(f"{where}:{f.name}", m, "correct the value, leave the cell empty for 'missing', or extend the field's schema in cohort.yaml")
        if len(msgs) > _EXAMPLES:
            report.add(f"{where}:{f.name}", f"field '{f.name}': {len(msgs) - _EXAMPLES} more value(s) outside the schema", "see the messages above")


def _check_slides(report: ValidationReport, cohort_like: dict[str, Any], manifest: CohortManifest, known: set[str], check_bags: bool, max_bags: int | None) -> None:
    slides: pd.DataFrame = cohort_like["slides"]
    where = cohort_like["slides_where"]
    root: Path | None = cohort_like["root"]
    slide_mods = [m for m in manifest.modalities if m.kind == "slide"]
    if slides is None or not len(slides):
        if slide_mods:
            report.add(where, f"no slides listed for slide modality '{slide_mods[0].name}'", "list bags in slides.csv (patient_id, slide_id, path)", severity="warning")
        return
    missing_cols = {"patient_id", "path"} - set(slides.columns)
    if missing_cols:
        report.add(where, f"missing column(s) {sorted(missing_cols)}", "slides.csv needs patient_id, slide_id, path")
        return
    pids = slides["patient_id"].astype(str)
    unknown = sorted(set(pids) - known)
    if unknown:
        report.add(where, f"{len(unknown)} patient(s) not in patients.csv: {_examples(unknown)}", "add them to patients.csv or remove their slides")
    if "slide_id" in slides.columns:
        _duplicates(report, where, slides["slide_id"].astype(str), what="slide id")
    spec = slide_mods[0] if slide_mods else None
    name = spec.name if spec else "slides"

    def resolve(p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() or root is None else root / q

    paths = [resolve(str(p)) if isinstance(p, str) and p.strip() else None for p in slides["path"]]
    _check_shared_files(report, where, pids, paths)
    absent_slides = [i for i, p in enumerate(paths) if p is None or not p.exists()]
    # (an in-memory cohort not yet saved cannot resolve relative paths: only the warning below)
    resolvable = root is not None or all(p is not None and p.is_absolute() for p in paths)
    if absent_slides and len(absent_slides) == len(paths) and resolvable:
        report.add(
            where,
            f"slide modality '{name}': none of the {len(paths)} listed feature files exists, e.g. {_examples([str(p) if p else '<empty path>' for p in paths], 2)}",
            "extract the features (`modaltune extract`), fix the paths in slides.csv (relative to the cohort folder), or remove the slide modality",
        )
        return
    if absent_slides:
        by_patient = defaultdict(int)
        for i in absent_slides:
            by_patient[pids.iloc[i]] += 1
        have_any = {pids.iloc[i] for i, p in enumerate(paths) if p is not None and p.exists()}
        fully = sorted(p for p in by_patient if p not in have_any)
        report.add(
            where,
            f"slide modality '{name}': expected feature file missing for {len(absent_slides)} slide(s) of {len(by_patient)} patient(s) "
            f"({len(fully)} with no bag at all, masked as missing), e.g. {_examples([str(paths[i]) if paths[i] else '<empty path>' for i in absent_slides], 2)}",
            "extract the features (`modaltune extract --slides <slide folder> --out <features folder>`) or place them at the listed paths; the rest of the cohort is usable",
            severity="warning",
        )
    bad_suffix = [str(p) for p in paths if p is not None and p.suffix.lower() not in BAG_SUFFIXES]
    if bad_suffix:
        report.add(where, f"{len(bad_suffix)} listed file(s) are not .h5/.pt bags: {_examples(bad_suffix, 2)}", "list TRIDENT .h5 or CLAM .pt feature files")
    if not check_bags:
        return
    existing = [(pids.iloc[i], p) for i, p in enumerate(paths) if p is not None and p.exists() and p.suffix.lower() in BAG_SUFFIXES]
    # a FIFO or device listed as a bag would block the reader forever: report it, never open it
    special = [(pid, p) for pid, p in existing if not p.is_file()]
    for pid, p in special[:_EXAMPLES]:
        report.add(p, f"patient '{pid}': {not_a_regular_file(p)}", "list regular .h5/.pt files in slides.csv")
    existing = [(pid, p) for pid, p in existing if p.is_file()]
    if max_bags is not None and len(existing) > max_bags:
        report.add(where, f"checked {max_bags} of {len(existing)} bag files (max_bags)", "run without max_bags to check every file", severity="warning")
        existing = existing[:max_bags]
    expected_dim = spec.feature_dim if spec else None
    expected_enc = spec.encoder if spec else None
    dims: dict[int, list[str]] = defaultdict(list)
    encs: dict[str, list[str]] = defaultdict(list)
    flagged = [(pid, p) for pid, p in existing if is_no_tissue_bag(p)]
    if flagged:
        report.add(
            where,
            f"{len(flagged)} bag(s) flagged 'no_tissue' by extraction (0 patches; the slide counts as missing), e.g. {_examples([str(p) for _, p in flagged], 2)}",
            "check the slide and tissue-detection settings, or remove it from slides.csv",
            severity="warning",
        )
        existing = [(pid, p) for pid, p in existing if (pid, p) not in flagged]
    mode, why = _bag_mode(check_bags, existing)
    if mode == "header":
        log.warning("%d bag files checked from their headers only (%s); NaN/inf features are reported when they are read", len(existing), why)
        report.add(
            where,
            f"{len(existing)} bag file(s) checked from their headers only ({why}): their values (NaN/inf) are checked when they are read",
            f"run `modaltune data validate` (reads every bag) or raise {FULL_READ_BYTES_ENV}",
            severity="warning",
        )
    for pid, p in existing:
        try:
            bag = read_bag(p) if mode == "full" else check_bag_header(p)
        except InputError as exc:
            report.add(exc.where or p, f"patient '{pid}': {exc.detail}", exc.fix or "")
            continue
        dims[bag.dim].append(str(p))
        if bag.encoder:
            encs[bag.encoder].append(str(p))
        if expected_dim is not None and bag.dim != expected_dim:
            report.add(p, f"patient '{pid}': feature dim {bag.dim} does not match the manifest's feature_dim {expected_dim}", "re-extract with the cohort's encoder or fix feature_dim in cohort.yaml")
        if expected_enc is not None and bag.encoder is not None and bag.encoder != expected_enc:
            report.add(p, f"patient '{pid}': bag encoder '{bag.encoder}' does not match the manifest's encoder '{expected_enc}'", "re-extract with the cohort's encoder or fix 'encoder' in cohort.yaml")
    if expected_dim is None and len(dims) > 1:
        desc = "; ".join(f"dim {d}: {len(fs)} file(s), e.g. {fs[0]}" for d, fs in sorted(dims.items()))
        report.add(where, f"mixed feature dims across the cohort ({desc})", "use one patch encoder for the whole cohort and set feature_dim in cohort.yaml")
    if expected_enc is None and len(encs) > 1:
        desc = "; ".join(f"'{e}': {len(fs)} file(s), e.g. {fs[0]}" for e, fs in sorted(encs.items()))
        report.add(where, f"mixed encoders across the cohort ({desc})", "use one patch encoder for the whole cohort and set encoder in cohort.yaml")


#: ``check_bags="auto"`` reads every bag when their features total at most this many bytes
FULL_READ_BYTES_ENV = "MODALTUNE_VALIDATE_READ_BYTES"
_DEFAULT_FULL_READ = 2 << 30


def _full_read_budget() -> int:
    v = os.environ.get(FULL_READ_BYTES_ENV)
    return int(float(v)) if v else _DEFAULT_FULL_READ


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.3g} GiB"


def _bag_mode(check_bags: bool | str, existing: list[tuple[str, Path]]) -> tuple[str, str]:
    """(``full`` | ``header``, why): ``full`` reads every bag (values too), ``header`` checks shapes,
    dtype and format only. ``auto``: full unless the bag files add up to more than
    :data:`FULL_READ_BYTES_ENV` bytes (default 2 GiB)."""
    if check_bags is True or check_bags == "full":
        return "full", ""
    if check_bags == "header":
        return "header", "check_bags='header'"
    # file sizes stand for the feature bytes (features dominate a bag file), at the cost of one stat each
    total, budget = sum(p.stat().st_size for _, p in existing), _full_read_budget()
    if total > budget:
        return "header", f"the bag files total {_gib(total)}, over the full-read budget of {_gib(budget)}"
    return "full", ""


def _check_shared_files(report: ValidationReport, where: Path | str, pids: pd.Series, paths: list[Path | None]) -> None:
    """One bag file listed twice: for one patient it doubles the bag; for two patients it leaks
    one slide into both (train/test leakage when they land in different partitions)."""
    owners: dict[str, list[str]] = defaultdict(list)
    for pid, p in zip(pids.tolist(), paths):
        if p is not None:
            owners[os.path.normpath(str(p.resolve() if p.exists() else p))].append(str(pid))
    twice = sorted((f, ps) for f, ps in owners.items() if len(ps) > 1 and len(set(ps)) == 1)
    shared = sorted((f, ps) for f, ps in owners.items() if len(set(ps)) > 1)
    if twice:
        desc = ", ".join(f"'{f}' ({len(ps)}x for '{ps[0]}')" for f, ps in twice[:2])
        report.add(where, f"{len(twice)} bag file(s) listed more than once for one patient (the bag would be doubled): {desc}", "keep one slides.csv row per slide")
    if shared:
        desc = ", ".join(f"'{f}' for {sorted(set(ps))}" for f, ps in shared[:2])
        report.add(where, f"{len(shared)} bag file(s) shared by several patients (train/test leakage): {desc}", "each slide belongs to one patient: fix the patient_id or the path of these rows")


def _check_declared_files(report: ValidationReport, manifest: CohortManifest, root: Path) -> None:
    """Files that cohort.yaml lists (``files``) must exist (an omics table is reported by its own check)."""
    omics_paths = {m.path or f"omics/{m.name}.parquet" for m in manifest.modalities if m.kind == "omics"}
    missing = [f for f in missing_declared_files(manifest, root) if f not in omics_paths]
    if missing:
        report.add(root, f"{len(missing)} file(s) that cohort.yaml declares are missing: {_examples(missing)}", "re-create the cohort (`modaltune data simulate/import`), or restore the files")


def _check_splits(report: ValidationReport, root: Path, known: set[str]) -> None:
    d = root / "splits"
    if not d.is_dir():
        return
    for path in sorted(d.glob("*.csv")):
        df = _read_csv(report, path, required=True)
        if df is None:
            continue
        missing = {"fold", "partition", "patient_id"} - set(df.columns)
        if missing:
            report.add(path, f"split file lacks columns {sorted(missing)}", "columns must be fold,partition,patient_id")
            continue
        bad = sorted(set(df["partition"].astype(str)) - set(PARTITIONS))
        if bad:
            report.add(path, f"unknown partition name(s) {bad}", f"use {list(PARTITIONS)}")
        df = df.dropna(subset=["patient_id"])
        for fold, g in df.groupby("fold", sort=True):
            parts = g.groupby("patient_id")["partition"].agg(list)
            two = sorted(p for p, lst in parts.items() if len(set(lst)) > 1)
            if two:
                desc = ", ".join(f"'{p}' in {sorted(set(parts[p]))}" for p in two[:_EXAMPLES])
                report.add(path, f"fold {fold}: {len(two)} patient(s) in two partitions: {desc}", "a patient must be in exactly one partition of a fold (leakage otherwise)")
            twice = sorted(p for p, lst in parts.items() if len(set(lst)) == 1 and len(lst) > 1)
            if twice:
                report.add(path, f"fold {fold}: {len(twice)} patient(s) listed twice in one partition: {_examples(twice)}", "remove the duplicate rows")
        unknown = sorted(set(df["patient_id"].astype(str)) - known)
        if unknown:
            report.add(path, f"{len(unknown)} patient(s) not in the cohort: {_examples(unknown)}", "re-create the split, or add the patients to patients.csv")
        _check_split_coverage(report, path, df)


def _check_split_coverage(report: ValidationReport, path: Path, df: pd.DataFrame) -> None:
    """*Warning*: patients of the split file missing from some of its folds (in no partition of
    that fold), named with the folds, so a hand-edited split that lost a row does not pass silently."""
    if df["fold"].nunique() < 2:
        return
    ids = df["patient_id"].astype(str)
    every = set(ids)
    absent: dict[str, list] = defaultdict(list)
    for fold, g in df.assign(patient_id=ids).groupby("fold", sort=True):
        for pid in sorted(every - set(g["patient_id"])):
            absent[pid].append(fold)
    if absent:
        names = sorted(absent)
        desc = ", ".join(f"'{p}' (fold {', '.join(str(f) for f in absent[p])})" for p in names[:_EXAMPLES])
        more = f" and {len(names) - _EXAMPLES} more" if len(names) > _EXAMPLES else ""
        report.add(path, f"{len(names)} patient(s) absent from some folds (in no partition there): {desc}{more}",
                   "add each patient to one partition of every fold, or remove it from all folds", severity="warning")


# ------------------------------------------------------------------------------------ entry point
def validate_cohort(
    root_or_cohort: str | Path | Cohort, *, check_bags: bool | str = True, max_bags: int | None = None, modalities: list[str] | None = None
) -> ValidationReport:
    """Check a cohort directory (or an in-memory :class:`Cohort`) and return **all** problems.

    Args:
        root_or_cohort: cohort directory (with ``cohort.yaml``) or a Cohort object.
        check_bags: ``True``/``"full"``: read every existing bag file (full validation incl. the
            NaN/inf check); ``"header"``: every check that needs no feature values (file type,
            format, shape, dtype, dims, encoder); ``"auto"``: full unless the features total more
            than ``$MODALTUNE_VALIDATE_READ_BYTES`` (default 2 GiB); ``False``: bags not opened.
        max_bags: read at most this many bag files (a warning says so).
        modalities: check only these modalities' files (omics tables, clinical, text, slides);
            None = all. Patients, tasks, splits and declared files are always checked.
    Returns:
        :class:`~modaltune.errors.ValidationReport`; ``report.ok`` is False when there are errors.
    """
    report = ValidationReport()
    if isinstance(root_or_cohort, Cohort):
        c = root_or_cohort
        manifest, root = c.manifest, c.root
        patients = c.patients
        where_p: Path | str = (root / "patients.csv") if root else "patients"
        slides, clin, text = c.slides, c.clinical, c.text.rename_axis("patient_id").rename("text").reset_index()
        omics = {m.name: (c.omics.get(m.name), (root / (m.path or f"omics/{m.name}.parquet")) if root else f"omics:{m.name}") for m in manifest.modalities if m.kind == "omics"}
        for name, (tab, w) in omics.items():
            if tab is None:
                report.add(w, f"omics modality '{name}' has no table", "add the table or remove the modality from cohort.yaml")
    else:
        root = Path(root_or_cohort)
        try:
            manifest = load_manifest(root)
        except InputError as exc:
            report.add(exc.where or root / MANIFEST_NAME, exc.detail, exc.fix or "")
            return report
        where_p = root / "patients.csv"
        raw = _read_csv(report, where_p, required=True)
        patients = raw.set_index("patient_id") if raw is not None else None
        if patients is not None:
            patients.index = patients.index.astype(str)
        slides_path = root / "slides.csv"
        slides = _read_csv(report, slides_path, required=False) if slides_path.exists() else None
        clin_raw = _read_csv(report, root / "clinical.csv", required=False)
        clin = clin_raw.set_index("patient_id") if clin_raw is not None else None
        text = _read_csv(report, root / "text.csv", required=False)
        omics = {}
        for m in manifest.modalities:
            if m.kind != "omics":
                continue
            path = root / (m.path or f"omics/{m.name}.parquet")
            if not path.exists():
                report.add(path, f"omics table of modality '{m.name}' not found", "re-create the cohort or fix the modality's 'path' in cohort.yaml")
                omics[m.name] = (None, path)
                continue
            if is_unreadable(path):
                report.add(path, UNREADABLE, UNREADABLE_FIX)
                omics[m.name] = (None, path)
                continue
            try:
                tab = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"patient_id": str})
                if tab.index.name != "patient_id" and "patient_id" in tab.columns:
                    tab = tab.set_index("patient_id")
                tab.index = tab.index.astype(str)
                omics[m.name] = (tab, path)
            except Exception as exc:  # noqa: BLE001 - an untrusted file: any parse failure is one report line
                report.add(path, f"cannot read omics table ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})", "re-create the table (Parquet or CSV, index patient_id)")
                omics[m.name] = (None, path)

    if patients is None:
        return report  # nothing else can be cross-checked without patients
    kinds = {m.kind for m in manifest.modalities if modalities is None or m.name in modalities}
    if modalities is not None:
        omics = {k: v for k, v in omics.items() if k in modalities}
        clin = clin if "clinical" in kinds else None
        text = text if "text" in kinds else None
        slides = slides if "slide" in kinds else None
    known = set(patients.index.astype(str))
    _duplicates(report, where_p, patients.index)
    if manifest.sites and "site" in patients.columns:
        undeclared = sorted(set(patients["site"].dropna().astype(str)) - set(manifest.sites))
        if undeclared:
            report.add(f"{where_p}:site", f"site(s) {undeclared[:5]} are not declared in the manifest's 'sites'", "add them to 'sites' in cohort.yaml", severity="warning")
    _check_tasks(report, manifest, patients, where_p)
    for name, (tab, w) in omics.items():
        if tab is not None:
            _check_omics(report, name, tab, w, known)
    if clin is not None and (len(clin.columns) or manifest.clinical_fields):
        _check_clinical(report, manifest, clin, (root / "clinical.csv") if root else "clinical", known)
    elif manifest.clinical_fields and "clinical" in kinds:
        report.add((root / "clinical.csv") if root else "clinical", "clinical fields are declared but there is no clinical table", "add clinical.csv or remove the clinical modality", severity="warning")
    if text is not None and len(text) and "patient_id" in text.columns:
        _duplicates(report, (root / "text.csv") if root else "text", text["patient_id"])
    if "slide" in kinds:
        _check_slides(report, {"slides": slides, "slides_where": (root / "slides.csv") if root else "slides", "root": root}, manifest, known, check_bags, max_bags)
    if root is not None:
        _check_declared_files(report, manifest, root)
        _check_splits(report, root, known)
    return report


def check_trainable(cohort: Cohort, *, modalities: list[str] | None = None, check_bags: bool | str = "auto") -> ValidationReport:
    """The training-time gate: run :func:`validate_cohort` on the cohort as loaded, limited to the
    ``modalities`` a method reads (None = all), and raise the first error as a one-line
    :class:`InputError` with the same where / message / fix that ``modaltune data validate`` prints.
    So a cohort that validates is exactly a cohort that trains (an omics-only method also trains on
    a cohort whose slide features are not extracted yet).

    Called by ``fit`` (hence by every benchmark unit); the report is remembered on the cohort object
    per modality set, so cross-validation folds and units of one loaded cohort check it once.
    ``check_bags="auto"`` reads every bag file once (shapes, dtype, NaN/inf) when they total at most
    2 GiB of features (measured on the demo cohort: about one epoch of bag reads, once per process),
    else checks their headers only and leaves the NaN/inf test to the reader (docs/data.md).
    Returns the report (warnings only) when the cohort is usable.
    """
    memo = cohort.__dict__.setdefault("_trainable_reports", {})
    key = (None if modalities is None else tuple(sorted(modalities)), str(check_bags))
    if key not in memo:
        report = validate_cohort(cohort, check_bags=check_bags, modalities=modalities)
        report.raise_if_errors()
        memo[key] = report
    return memo[key]
