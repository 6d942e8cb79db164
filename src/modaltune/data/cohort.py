"""The cohort data model: a patient table, its modalities and its tasks.

A :class:`Cohort` is what every method, trainer and benchmark reads. On disk it is a directory::

    cohort.yaml            the manifest (:class:`CohortManifest`): tasks, modalities, clinical schema
    patients.csv           one row per patient: patient_id, site, label/time/event columns
    slides.csv             one row per slide: patient_id, slide_id, path (relative to the cohort dir or absolute)
    omics/<name>.parquet   one table per omics modality (index patient_id, float columns)
    clinical.csv           declared clinical fields (index patient_id)
    text.csv               patient_id, text (report or sentences built from fields)
    excluded.csv           patients excluded at import, with the reason (never dropped silently)
    splits/<name>.csv      long table: fold, partition, patient_id  (see :mod:`modaltune.data.splits`)
    ground_truth.csv       simulated cohorts only: latent factors and true risk

Patients may lack any modality and any task label: availability and label masks are computed,
counted and reported, never used to drop a patient silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modaltune.data._files import ensure_readable
from modaltune.data.labels import examples, given_mask, label_problems, label_str
from modaltune.errors import InputError

__all__ = [
    "TaskSpec",
    "ModalitySpec",
    "ClinicalField",
    "CohortManifest",
    "Cohort",
    "TaskTargets",
    "MANIFEST_NAME",
    "missing_declared_files",
]

MANIFEST_NAME = "cohort.yaml"
FORMAT_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskSpec(_Strict):
    """One prediction task.

    - ``classification``: ``label_column`` holds class names (strings) from ``classes`` (index
      order = class index); values in ``exclude_values`` (e.g. ``"-1"`` or a rare subtype) and
      empty cells are masked out of this task only, and counted.
    - ``survival``: ``time_column`` (in ``time_unit``, >= 0) and ``event_column`` (1 = event
      observed, 0 = censored) for the named ``endpoint``.
    - ``regression``: ``label_column`` holds floats.

    ``description`` is a sentence describing the task; text-embedded methods (ModalTune) turn it
    into a task token, so a new task is added by writing its description.
    """

    name: str
    kind: Literal["classification", "survival", "regression"]
    label_column: str | None = None
    classes: list[str] = Field(default_factory=list)
    exclude_values: list[str] = Field(default_factory=list)
    time_column: str | None = None
    event_column: str | None = None
    endpoint: str = "overall survival"
    time_unit: str = "months"
    n_bins: int = 4
    description: str = ""

    @model_validator(mode="after")
    def _check_kind_fields(self) -> TaskSpec:
        if self.kind == "classification":
            if not self.label_column:
                raise ValueError(f"task '{self.name}': classification needs 'label_column'")
            if len(self.classes) < 2:
                raise ValueError(f"task '{self.name}': classification needs at least 2 'classes'")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"task '{self.name}': duplicate class names in 'classes'")
        elif self.kind == "survival":
            if not self.time_column or not self.event_column:
                raise ValueError(f"task '{self.name}': survival needs 'time_column' and 'event_column'")
        elif self.kind == "regression" and not self.label_column:
            raise ValueError(f"task '{self.name}': regression needs 'label_column'")
        return self

    @property
    def columns(self) -> list[str]:
        """Patient-table columns this task reads."""
        if self.kind == "survival":
            return [self.time_column, self.event_column]  # type: ignore[list-item]
        return [self.label_column]  # type: ignore[list-item]


class ClinicalField(_Strict):
    """Declared schema of one clinical field.

    ``numeric`` fields may give ``min``/``max`` (inclusive) and a ``unit``; ``categorical`` and
    ``ordinal`` fields list their ``categories`` (ordinal: in increasing order). Missing values
    are allowed (empty cell) and become their own "missing" category / indicator downstream.
    """

    name: str
    kind: Literal["numeric", "categorical", "ordinal"]
    categories: list[str] = Field(default_factory=list)
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> ClinicalField:
        if self.kind in ("categorical", "ordinal") and not self.categories:
            raise ValueError(f"clinical field '{self.name}': {self.kind} needs 'categories'")
        return self


class ModalitySpec(_Strict):
    """One input modality.

    ``kind``: ``slide`` (patch-feature bags listed in ``slides.csv``), ``omics`` (a table at
    ``path``, e.g. ``omics/rna.parquet``; rna, cnv and mut are separate modalities), ``clinical``
    (``clinical.csv`` with the declared ``clinical_fields``) or ``text`` (``text.csv``).
    Slide modalities declare ``feature_dim`` and ``encoder`` so mismatching bags are caught.
    """

    name: str
    kind: Literal["slide", "omics", "clinical", "text"]
    path: str | None = None
    feature_dim: int | None = None
    encoder: str | None = None
    patch_size_level0: int | None = None
    omics_type: str | None = None  # rna / cnv / mut / protein ... (omics only)
    description: str = ""


class CohortManifest(_Strict):
    """The ``cohort.yaml`` manifest."""

    format_version: int = FORMAT_VERSION
    name: str
    description: str = ""
    synthetic: bool = False
    source: str = ""
    sites: list[str] = Field(default_factory=list)
    tasks: list[TaskSpec] = Field(default_factory=list)
    modalities: list[ModalitySpec] = Field(default_factory=list)
    clinical_fields: list[ClinicalField] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)
    #: files written with the manifest (paths relative to the cohort folder). ``Cohort.save`` fills
    #: it; ``Cohort.load`` and ``validate_cohort`` refuse a cohort that lacks any of them.
    files: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> CohortManifest:
        for what, names in (("task", [t.name for t in self.tasks]), ("modality", [m.name for m in self.modalities])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"duplicate {what} names: {dup}")
        return self

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise InputError(f"unknown task '{name}'", where="cohort.yaml", fix=f"use one of {[t.name for t in self.tasks]}")

    def modality(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise InputError(
            f"unknown modality '{name}'", where="cohort.yaml", fix=f"use one of {[m.name for m in self.modalities]}"
        )


@dataclass
class TaskTargets:
    """Targets of one task for a list of patients, aligned with ``patient_ids``.

    - classification: ``label`` int64 (class index, -1 where masked)
    - survival: ``time`` float64 (``time_unit``), ``event`` int64 (1 event, 0 censored)
    - regression: ``value`` float64
    ``mask`` is True where the patient has a usable label for this task; ``reasons`` counts why
    the others are masked (e.g. ``{"missing": 3, "excluded value '-1'": 12}``).
    """

    task: TaskSpec
    patient_ids: list[str]
    mask: np.ndarray
    label: np.ndarray | None = None
    time: np.ndarray | None = None
    event: np.ndarray | None = None
    value: np.ndarray | None = None
    reasons: dict[str, int] = field(default_factory=dict)


def _read_table(path: Path, index_col: str | None = "patient_id") -> pd.DataFrame:
    if not path.exists():
        raise InputError("file not found", where=path, fix="check the path, or re-create the cohort with `modaltune data import/simulate`")
    ensure_readable(path)
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
            if index_col and df.index.name != index_col and index_col in df.columns:
                df = df.set_index(index_col)
        else:
            df = pd.read_csv(path, dtype={index_col: str} if index_col else None, keep_default_na=True)
            if index_col:
                if index_col not in df.columns:
                    raise InputError(f"missing column '{index_col}'", where=path, fix=f"add a '{index_col}' column")
                df = df.set_index(index_col)
    except InputError:
        raise
    except Exception as exc:  # unreadable / corrupt file
        raise InputError(f"cannot read table ({type(exc).__name__}: {exc})", where=path, fix="check that the file is a valid CSV/Parquet table") from exc
    if index_col:
        df.index = df.index.astype(str)
    return df


class Cohort:
    """Patients x modalities x tasks.

    Attributes:
        manifest: the validated :class:`CohortManifest`.
        patients: DataFrame indexed by ``patient_id`` (str) with a ``site`` column and the task columns.
        slides: DataFrame with columns ``patient_id, slide_id, path`` (one row per slide; ``path`` may
            be relative to ``root``).
        omics: modality name -> DataFrame (index ``patient_id``, float columns = features/genes),
            holding rows only for patients that have that modality.
        clinical: DataFrame (index ``patient_id``) with the declared clinical fields (raw values).
        text: Series ``patient_id -> str``.
        excluded: DataFrame ``patient_id, reason`` of patients left out at import.
        ground_truth: simulated cohorts only (latent factors, true risk), else None.
        root: directory the cohort was loaded from / saved to (None for in-memory cohorts).
    """

    def __init__(
        self,
        manifest: CohortManifest,
        patients: pd.DataFrame,
        *,
        slides: pd.DataFrame | None = None,
        omics: dict[str, pd.DataFrame] | None = None,
        clinical: pd.DataFrame | None = None,
        text: pd.Series | None = None,
        excluded: pd.DataFrame | None = None,
        ground_truth: pd.DataFrame | None = None,
        root: str | Path | None = None,
    ):
        self.manifest = manifest
        patients = patients.copy()
        if patients.index.name != "patient_id":
            if "patient_id" in patients.columns:
                patients = patients.set_index("patient_id")
            else:
                raise InputError("patient table has no 'patient_id' column or index", where="patients", fix="add a patient_id column")
        patients.index = patients.index.astype(str)
        _raise_on_duplicates(patients.index, Path(root) / "patients.csv" if root is not None else "patients")
        if "site" not in patients.columns:
            patients["site"] = manifest.name
        self.patients = patients
        self.slides = slides if slides is not None else pd.DataFrame(columns=["patient_id", "slide_id", "path"])
        if len(self.slides):
            self.slides = self.slides.astype({"patient_id": str, "slide_id": str})
        self.omics = dict(omics or {})
        self.clinical = clinical if clinical is not None else pd.DataFrame(index=pd.Index([], name="patient_id"))
        self.text = text if text is not None else pd.Series(dtype=object, name="text")
        self.excluded = excluded if excluded is not None else pd.DataFrame(columns=["patient_id", "reason"])
        self.ground_truth = ground_truth
        self.root = Path(root) if root is not None else None
        #: named split sets (``splits/<name>.csv``), e.g. ``porpoise_5fold`` or ``modaltune_paper``
        self.splits: dict = {}

    # ------------------------------------------------------------------ basic views
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def patient_ids(self) -> list[str]:
        return list(self.patients.index)

    @property
    def tasks(self) -> list[TaskSpec]:
        return list(self.manifest.tasks)

    @property
    def modalities(self) -> list[ModalitySpec]:
        return list(self.manifest.modalities)

    def __len__(self) -> int:
        return len(self.patients)

    def __repr__(self) -> str:
        return (
            f"Cohort(name={self.name!r}, patients={len(self)}, tasks={[t.name for t in self.tasks]}, "
            f"modalities={[m.name for m in self.modalities]}, synthetic={self.manifest.synthetic})"
        )

    def resolve_path(self, path: str | Path) -> Path:
        """Absolute path of a file referenced by the cohort (relative paths are under ``root``)."""
        p = Path(path)
        if not p.is_absolute() and self.root is not None:
            p = self.root / p
        return p

    def slide_paths(self, patient_id: str) -> list[Path]:
        """Bag files of one patient, in ``slides.csv`` order."""
        rows = self.slides[self.slides["patient_id"] == patient_id]
        return [self.resolve_path(p) for p in rows["path"]]

    # ------------------------------------------------------------------ availability
    def availability(self, check_files: bool = True) -> pd.DataFrame:
        """Boolean table patients x modality names: True where the patient has that modality.

        Slides count as available when at least one listed bag file exists (``check_files``) or
        is listed (``check_files=False``).
        """
        out = pd.DataFrame(index=self.patients.index)
        for m in self.modalities:
            if m.kind == "slide":
                s = self.slides
                if check_files and len(s):
                    exists = s["path"].map(lambda p: self.resolve_path(p).exists())
                    have = set(s.loc[exists.values, "patient_id"])
                else:
                    have = set(s["patient_id"])
                out[m.name] = out.index.isin(list(have))
            elif m.kind == "omics":
                tab = self.omics.get(m.name)
                out[m.name] = out.index.isin(list(tab.index)) if tab is not None else False
            elif m.kind == "clinical":
                cl = self.clinical
                have = cl.index[cl.notna().any(axis=1)] if len(cl.columns) else []
                out[m.name] = out.index.isin(list(have))
            elif m.kind == "text":
                t = self.text.dropna()
                t = t[t.astype(str).str.len() > 0]
                out[m.name] = out.index.isin(list(t.index))
        return out

    # ------------------------------------------------------------------ targets
    def targets(self, task: str | TaskSpec, patient_ids: list[str] | None = None) -> TaskTargets:
        """Targets of ``task`` for ``patient_ids`` (default: all), with the mask and its reasons."""
        spec = task if isinstance(task, TaskSpec) else self.manifest.task(task)
        ids = list(self.patients.index) if patient_ids is None else list(patient_ids)
        missing_cols = [c for c in spec.columns if c not in self.patients.columns]
        if missing_cols:
            raise InputError(
                f"task '{spec.name}' reads column(s) {missing_cols} that the patient table does not have",
                where=self.root / "patients.csv" if self.root else "patients",
                fix="fix the column name in the task definition or add the column",
            )
        unknown = [p for p in ids if p not in self.patients.index]
        if unknown:
            raise InputError(
                f"{len(unknown)} patient(s) asked for task '{spec.name}' are not in cohort '{self.name}', e.g. {unknown[:3]}",
                where=self._patients_where(),
                fix="check the split file against patients.csv",
            )
        rows = self.patients.loc[ids] if ids else self.patients.iloc[:0]
        problems, usable = label_problems(spec, rows)
        if problems:
            p = problems[0]
            more = f" (+{len(problems) - 1} more kinds of wrong label; `modaltune data validate` lists all)" if len(problems) > 1 else ""
            raise InputError(p.message + more, where=f"{self._patients_where()}:{p.column}", fix=p.fix)
        reasons: dict[str, int] = {}
        n = len(ids)
        mask = usable.copy()
        if spec.kind == "classification":
            raw = rows[spec.label_column]
            given = given_mask(raw)
            index = {c: i for i, c in enumerate(spec.classes)}
            excluded = {str(v) for v in spec.exclude_values}
            label = np.full(n, -1, dtype=np.int64)
            for i, (v, g) in enumerate(zip(raw.tolist(), given)):
                if not g:
                    reasons["missing"] = reasons.get("missing", 0) + 1
                    continue
                sv = _label_str(v)
                if sv in excluded:
                    key = f"excluded value '{sv}'"
                    reasons[key] = reasons.get(key, 0) + 1
                    continue
                label[i] = index[sv]
            return TaskTargets(spec, ids, mask, label=label, reasons=reasons)
        if spec.kind == "survival":
            time = pd.to_numeric(rows[spec.time_column], errors="coerce").to_numpy(dtype=np.float64)
            event = pd.to_numeric(rows[spec.event_column], errors="coerce").to_numpy(dtype=np.float64)
            if (~mask).any():
                reasons["missing"] = int((~mask).sum())
            return TaskTargets(spec, ids, mask, time=np.where(mask, time, np.nan), event=np.where(mask, event, 0).astype(np.int64), reasons=reasons)
        value = pd.to_numeric(rows[spec.label_column], errors="coerce").to_numpy(dtype=np.float64)
        if (~mask).any():
            reasons["missing"] = int((~mask).sum())
        return TaskTargets(spec, ids, mask, value=np.where(mask, value, np.nan), reasons=reasons)

    def _patients_where(self) -> str:
        return str(self.root / "patients.csv") if self.root is not None else "patients"

    def check_labels(self) -> None:
        """Raise a one-line :class:`InputError` naming the file, column, patients and the fix at the
        first wrong task label (see :mod:`modaltune.data.labels` for what is an error and what is
        masked). Called by :meth:`load`, so a bad cohort fails before any training starts."""
        from modaltune.errors import ValidationReport

        report = ValidationReport()
        for spec in self.tasks:
            missing_cols = [c for c in spec.columns if c not in self.patients.columns]
            if missing_cols:
                report.add(self._patients_where(), f"task '{spec.name}' reads column(s) {missing_cols} that the patient table does not have",
                           "fix the column name in cohort.yaml or add the column")
                continue
            for p in label_problems(spec, self.patients)[0]:
                report.add(f"{self._patients_where()}:{p.column}", p.message, p.fix)
        report.raise_if_errors()

    # ------------------------------------------------------------------ subsets
    def subset(self, patient_ids: list[str], name: str | None = None) -> Cohort:
        """A new cohort restricted to ``patient_ids`` (same manifest, same root)."""
        ids = [str(p) for p in patient_ids]
        unknown = [p for p in ids if p not in self.patients.index]
        if unknown:
            raise InputError(f"{len(unknown)} patient(s) not in cohort '{self.name}', e.g. {unknown[:3]}", fix="check the split file")
        keep = set(ids)
        manifest = self.manifest.model_copy(update={"name": name or self.manifest.name})
        return Cohort(
            manifest,
            self.patients.loc[ids],
            slides=self.slides[self.slides["patient_id"].isin(keep)].reset_index(drop=True),
            omics={k: v[v.index.isin(keep)] for k, v in self.omics.items()},
            clinical=self.clinical[self.clinical.index.isin(keep)],
            text=self.text[self.text.index.isin(keep)],
            excluded=self.excluded,
            ground_truth=None if self.ground_truth is None else self.ground_truth[self.ground_truth.index.isin(keep)],
            root=self.root,
        )

    # ------------------------------------------------------------------ persistence
    def save(self, root: str | Path) -> Path:
        """Write the cohort directory (see module docstring). Returns the directory.

        Crash-safe: an existing ``cohort.yaml`` is removed first, every file is written to a
        temporary name and renamed into place, and the manifest, listing every file written
        (``files``), comes **last**. A folder whose write was interrupted therefore has no manifest,
        which :meth:`load` and ``validate_cohort`` refuse, and is never mistaken for a cohort.
        """
        from modaltune import fileio

        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        (root / MANIFEST_NAME).unlink(missing_ok=True)  # "done" marker goes until everything is written
        written: list[str] = []

        def put(rel: str, write) -> None:
            with fileio.atomic_file(root / rel) as tmp:
                write(tmp)
            written.append(rel)

        put("patients.csv", lambda t: self.patients.reset_index().to_csv(t, index=False))
        put("slides.csv", lambda t: self.slides.to_csv(t, index=False))
        for m in self.modalities:
            if m.kind == "omics" and m.name in self.omics:
                tab = self.omics[m.name].copy()
                tab.index.name = "patient_id"
                tab.columns = [str(c) for c in tab.columns]
                put(m.path or f"omics/{m.name}.parquet", tab.to_parquet)
        if len(self.clinical.columns):
            c = self.clinical.copy()
            c.index.name = "patient_id"
            put("clinical.csv", lambda t: c.reset_index().to_csv(t, index=False))
        if len(self.text):
            put("text.csv", lambda t: self.text.rename("text").rename_axis("patient_id").reset_index().to_csv(t, index=False))
        put("excluded.csv", lambda t: self.excluded.to_csv(t, index=False))
        if self.ground_truth is not None:
            put("ground_truth.csv", lambda t: self.ground_truth.rename_axis("patient_id").reset_index().to_csv(t, index=False))
        for split_name, split in self.splits.items():
            put(f"splits/{split_name}.csv", split.save)
        manifest = self.manifest.model_copy(update={"files": written})
        fileio.atomic_write_text(root / MANIFEST_NAME, yaml.safe_dump(manifest.model_dump(mode="json"), sort_keys=False))
        self.manifest = manifest
        self.root = root
        return root

    def split(self, name: str | None = None):
        """The named :class:`~modaltune.data.splits.SplitSet` (the only one when ``name`` is None)."""
        if name is None:
            if len(self.splits) == 1:
                return next(iter(self.splits.values()))
            raise InputError(
                f"cohort '{self.name}' has {len(self.splits)} split sets; name one",
                fix=f"choose from {sorted(self.splits)} or create one with `modaltune data split`",
            )
        if name not in self.splits:
            raise InputError(f"cohort '{self.name}' has no split set '{name}'", fix=f"choose from {sorted(self.splits)} or create one with `modaltune data split`")
        return self.splits[name]

    @classmethod
    def load(cls, root: str | Path) -> Cohort:
        """Read a cohort directory. Structural errors raise :class:`InputError`; use
        :func:`modaltune.data.validate.validate_cohort` to list every problem at once."""
        root = Path(root)
        manifest = load_manifest(root)
        missing = missing_declared_files(manifest, root)
        if missing:
            raise InputError(
                f"{len(missing)} file(s) that cohort.yaml declares are missing: {examples(missing)}",
                where=root,
                fix="re-create the cohort (`modaltune data simulate/import`), or restore the files",
            )
        patients = _read_table(root / "patients.csv")
        slides_path = root / "slides.csv"
        slides = pd.read_csv(slides_path, dtype=str) if slides_path.exists() else None
        omics = {}
        for m in manifest.modalities:
            if m.kind == "omics":
                path = root / (m.path or f"omics/{m.name}.parquet")
                if path.exists():
                    omics[m.name] = _read_table(path)
                    _raise_on_duplicates(omics[m.name].index, path)
        clinical = _read_table(root / "clinical.csv") if (root / "clinical.csv").exists() else None
        if clinical is not None:
            _raise_on_duplicates(clinical.index, root / "clinical.csv")
            for f in manifest.clinical_fields:
                if f.kind in ("categorical", "ordinal") and f.name in clinical.columns:
                    clinical[f.name] = clinical[f.name].map(_label_str_or_nan)
        text = None
        if (root / "text.csv").exists():
            tab = _read_table(root / "text.csv")
            if "text" not in tab.columns:
                raise InputError("missing column 'text'", where=root / "text.csv", fix="text.csv needs columns patient_id,text")
            _raise_on_duplicates(tab.index, root / "text.csv")
            text = tab["text"]
        excluded = pd.read_csv(root / "excluded.csv", dtype=str) if (root / "excluded.csv").exists() else None
        gt = _read_table(root / "ground_truth.csv") if (root / "ground_truth.csv").exists() else None
        cohort = cls(manifest, patients, slides=slides, omics=omics, clinical=clinical, text=text, excluded=excluded, ground_truth=gt, root=root)
        cohort.check_labels()
        if (root / "splits").is_dir():
            from modaltune.data.splits import SplitSet

            for f in sorted((root / "splits").glob("*.csv")):
                cohort.splits[f.stem] = SplitSet.load(f)
        return cohort

    def summary(self) -> dict[str, Any]:
        """Counts for reports: patients per site, modality availability, label counts per task."""
        avail = self.availability()
        out: dict[str, Any] = {
            "name": self.name,
            "synthetic": self.manifest.synthetic,
            "patients": len(self),
            "sites": self.patients["site"].value_counts().to_dict(),
            "slides": int(len(self.slides)),
            "modalities": {m: int(avail[m].sum()) for m in avail.columns},
            "excluded": int(len(self.excluded)),
            "tasks": {},
        }
        for t in self.tasks:
            tt = self.targets(t)
            info: dict[str, Any] = {"kind": t.kind, "labelled": int(tt.mask.sum()), "masked": tt.reasons}
            if t.kind == "classification":
                info["classes"] = {c: int((tt.label == i).sum()) for i, c in enumerate(t.classes)}
            elif t.kind == "survival":
                info["events"] = int(tt.event[tt.mask].sum())
                info["median_time"] = float(np.nanmedian(tt.time[tt.mask])) if tt.mask.any() else None
                info["time_unit"] = t.time_unit
            out["tasks"][t.name] = info
        return out


_label_str = label_str


def _raise_on_duplicates(index: pd.Index, where: str | Path, what: str = "patient id") -> None:
    """One row per patient: InputError naming the duplicated ids and the file."""
    dup = sorted(set(index[index.duplicated()].astype(str)))
    if dup:
        raise InputError(f"{len(dup)} duplicate {what}(s): {examples(dup)}", where=where, fix="keep one row per patient (merge or remove the duplicates)")


def _label_str_or_nan(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return np.nan
    return _label_str(v)


def missing_declared_files(manifest: CohortManifest, root: str | Path) -> list[str]:
    """Files the manifest declares (``files`` and omics modality paths), relative to ``root``,
    that do not exist."""
    root = Path(root)
    declared = list(manifest.files) + [m.path or f"omics/{m.name}.parquet" for m in manifest.modalities if m.kind == "omics"]
    return [f for f in dict.fromkeys(declared) if not (root / f).exists()]


#: files a cohort folder holds besides the manifest: their presence without cohort.yaml means an
#: interrupted write (``Cohort.save`` writes the manifest last)
_COHORT_DATA_FILES = ("patients.csv", "slides.csv", "clinical.csv", "text.csv", "excluded.csv", "omics", "splits")


def load_manifest(root: str | Path) -> CohortManifest:
    """Read and validate ``<root>/cohort.yaml`` with one-line error messages."""
    root = Path(root)
    path = root / MANIFEST_NAME
    if not root.exists():
        raise InputError("cohort directory not found", where=root, fix="create it with `modaltune data simulate` or `modaltune data import`")
    if not path.exists():
        if any((root / f).exists() for f in _COHORT_DATA_FILES):
            raise InputError(
                "cohort files without cohort.yaml: the cohort's write was interrupted (the manifest is written last)",
                where=root,
                fix="delete the folder and re-create the cohort with `modaltune data simulate/import`",
            )
        raise InputError("no cohort.yaml manifest in this directory", where=root, fix="point at a cohort directory written by modaltune")
    ensure_readable(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"invalid YAML ({str(exc).splitlines()[0]})", where=path, fix="fix the YAML syntax") from exc
    try:
        return CohortManifest.model_validate(raw)
    except ValidationError as exc:
        from modaltune.config import format_validation_error

        raise InputError(format_validation_error(exc, CohortManifest), where=path, fix="see docs/data.md for the manifest schema") from exc
