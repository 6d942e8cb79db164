"""Importer for the ModalTune paper's split files (``shared/data/tcga/modaltune_splits``).

``import_modaltune_json("brca", shared_dir)`` reads ``tcga_<c>/{train,val,test}.json`` (one record
per slide) and builds a :class:`~modaltune.data.cohort.Cohort` with

- one row per patient (``case_submitter_id``, the TCGA patient id); a patient's slide records
  must agree on every patient-level field and lie in one partition, else an error names it;
- task ``subtype`` (classification of ``primary_class``; class names in ``SUBTYPE_CLASSES``;
  ``-1`` marks a rare subtype the paper excluded: kept in the cohort, masked out of the task and
  counted). ``pancancer`` has one subtype task per member cohort (``subtype_brca``,
  ``subtype_gbmlgg``, ``subtype_nsclc``, ``subtype_rcc``) because ``primary_class`` indices
  mean different classes in each;
- task ``survival``: overall survival, ``durations`` (months) and ``vital_status`` (1 = dead);
- clinical fields: ``age_at_index`` (numeric, years); ``stage`` / ``t_stage`` / ``n_stage`` /
  ``m_stage`` (ordinal groups normalised from the raw GDC strings, e.g. ``Stage IIA`` -> ``stage
  II``, ``N0 (i-)`` -> ``N0``; ``X`` values, "cannot be assessed", and absent values are missing,
  which downstream encoders turn into their own "missing" level); ``primary_diagnosis`` and
  ``project_id`` (categorical). The raw strings stay in the patient table
  (``ajcc_pathologic_*``);
- omics ``rna`` / ``cnv`` / ``mut`` joined from the PORPOISE tables by patient id
  (``SOURCE_TABLES``): patients without a PORPOISE row lack those modalities (recorded, never
  dropped);
- ``text``: per-patient sentences built from the clinical fields (``build_text``);
- ``slide``: the expected feature file of each slide (``<features_dir>/<basename of
  features_path>``; the paper's GigaPath features are not available here);
- the paper's split as ``SplitSet("modaltune_paper")`` (one fold: train/val/test).

Label leakage: ``primary_diagnosis``, ``project_id`` and the text's diagnosis sentence determine
the subtype label; ``manifest.extra["label_leaking_fields"]`` lists them so subtype
experiments can leave them out.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, MutableMapping
from pathlib import Path

import numpy as np
import pandas as pd

from modaltune.data.cohort import ClinicalField, Cohort, CohortManifest, ModalitySpec, TaskSpec
from modaltune.data.sources._common import collapse_slides, feature_path, resolve_shared_dir
from modaltune.data.sources.porpoise import porpoise_omics, save_with_splits
from modaltune.data.splits import Fold, SplitSet
from modaltune.errors import InputError

__all__ = [
    "MODALTUNE_COHORTS",
    "SUBTYPE_CLASSES",
    "SOURCE_TABLES",
    "STAGE_LEVELS",
    "T_LEVELS",
    "N_LEVELS",
    "M_LEVELS",
    "import_modaltune_json",
    "read_modaltune_records",
    "read_modaltune_partitions",
    "normalise_stage",
    "normalise_tnm",
    "build_text",
    "modaltune_json_cohort_names",
]

MODALTUNE_COHORTS = ("brca", "gbmlgg", "nsclc", "rcc", "coadread", "blca", "pancancer")
PANCANCER_MEMBERS = ("brca", "gbmlgg", "nsclc", "rcc")

#: primary_class index -> class name, per cohort (DATA.md).
SUBTYPE_CLASSES: dict[str, list[str]] = {
    "brca": ["IDC", "ILC"],
    "gbmlgg": ["GBM", "LGG"],
    "nsclc": ["LUAD", "LUSC"],
    "rcc": ["KIRP", "KIRC", "KICH"],
    "coadread": ["colon", "rectal"],
    "blca": ["non-papillary", "papillary"],
}

_SUBTYPE_DESCRIPTIONS = {
    "brca": "Classify invasive breast carcinoma as invasive ductal (IDC) or invasive lobular (ILC) carcinoma.",
    "gbmlgg": "Classify diffuse glioma as glioblastoma (GBM) or lower-grade glioma (LGG).",
    "nsclc": "Classify non-small cell lung cancer as lung adenocarcinoma (LUAD) or lung squamous cell carcinoma (LUSC).",
    "rcc": "Classify renal cell carcinoma as papillary (KIRP), clear cell (KIRC) or chromophobe (KICH).",
    "coadread": "Classify colorectal adenocarcinoma as colon or rectal.",
    "blca": "Classify bladder urothelial carcinoma as non-papillary or papillary.",
}

#: ModalTune cohort -> PORPOISE table cohorts whose omics are joined by patient id.
SOURCE_TABLES: dict[str, tuple[str, ...]] = {
    "brca": ("brca",),
    "gbmlgg": ("gbmlgg",),
    "nsclc": ("luad", "lusc"),
    "rcc": ("kirc", "kirp"),
    "coadread": ("coadread",),
    "blca": ("blca",),
    "pancancer": ("brca", "gbmlgg", "luad", "lusc", "kirc", "kirp"),
}

#: GDC project -> (member cohort, organ named in the text).
_PROJECTS = {
    "TCGA-BRCA": ("brca", "breast"),
    "TCGA-GBM": ("gbmlgg", "brain"),
    "TCGA-LGG": ("gbmlgg", "brain"),
    "TCGA-LUAD": ("nsclc", "lung"),
    "TCGA-LUSC": ("nsclc", "lung"),
    "TCGA-KIRC": ("rcc", "kidney"),
    "TCGA-KIRP": ("rcc", "kidney"),
    "TCGA-KICH": ("rcc", "kidney"),
    "TCGA-COAD": ("coadread", "colon"),
    "TCGA-READ": ("coadread", "rectum"),
    "TCGA-BLCA": ("blca", "bladder"),
}

STAGE_LEVELS = ["stage 0", "stage I", "stage II", "stage III", "stage IV"]
T_LEVELS = ["T0", "Tis", "T1", "T2", "T3", "T4"]
N_LEVELS = ["N0", "N1", "N2", "N3"]
M_LEVELS = ["M0", "M1"]
_STAGE_WORDS = {"stage 0": "stage zero", "stage I": "stage one", "stage II": "stage two", "stage III": "stage three", "stage IV": "stage four"}
_SLIDE_COLS = ["slide_submitter_id", "features_path", "patches_path"]


def modaltune_json_cohort_names() -> list[str]:
    """Cohort names ``import_modaltune_json`` accepts."""
    return list(MODALTUNE_COHORTS)


def normalise_stage(raw) -> str | float:
    """``"Stage IIA"`` -> ``"stage II"``; ``"Stage X"``, empty or unknown -> NaN."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return np.nan
    m = re.match(r"^\s*stage\s+(iv|iii|ii|i|0)(?:[a-c]\d?)?\s*$", str(raw), flags=re.IGNORECASE)
    return f"stage {m.group(1).upper()}" if m else np.nan


def normalise_tnm(raw, axis: str) -> str | float:
    """Group a raw AJCC T/N/M string: ``T2a`` -> ``T2``, ``N0 (i-)`` / ``N1mi`` -> ``N0`` / ``N1``,
    ``cM0 (i+)`` / ``M1b`` -> ``M0`` / ``M1``; ``TX``/``NX``/``MX`` (not assessable), empty or
    unknown -> NaN."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return np.nan
    s = str(raw).strip()
    if axis == "t":
        m = re.match(r"^[cp]?T(is|[0-4])", s)
        return f"T{m.group(1)}" if m else np.nan
    if axis == "n":
        m = re.match(r"^[cp]?N([0-3])", s)
        return f"N{m.group(1)}" if m else np.nan
    if axis == "m":
        m = re.match(r"^[cp]?M([01])", s)
        return f"M{m.group(1)}" if m else np.nan
    raise ValueError(f"axis must be t, n or m, not {axis!r}")


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip())


def build_text(row: dict, fields: Iterable[str] = ("location", "diagnosis", "stage", "t", "n", "m", "age")) -> str:
    """Report-like sentences of one patient from its clinical fields; missing fields are left out.

    ``row`` needs ``project_id``, ``primary_diagnosis``, ``stage``, ``t_stage``, ``n_stage``,
    ``m_stage``, ``age_at_index``. Example: ``"Cancer location: breast; Cancer diagnosis:
    infiltrating duct carcinoma; Overall stage: stage two; Tumour stage: T2; Lymph node stage: N0;
    Metastasis stage: M0; Age at diagnosis: 62 years."``
    """
    parts = []
    for f in fields:
        if f == "location":
            org = _PROJECTS.get(str(row.get("project_id")), (None, None))[1]
            if org:
                parts.append(f"Cancer location: {org}")
        elif f == "diagnosis" and not _is_missing(row.get("primary_diagnosis")):
            parts.append(f"Cancer diagnosis: {row['primary_diagnosis']}")
        elif f == "stage" and not _is_missing(row.get("stage")):
            parts.append(f"Overall stage: {_STAGE_WORDS.get(row['stage'], row['stage'])}")
        elif f == "t" and not _is_missing(row.get("t_stage")):
            parts.append(f"Tumour stage: {row['t_stage']}")
        elif f == "n" and not _is_missing(row.get("n_stage")):
            parts.append(f"Lymph node stage: {row['n_stage']}")
        elif f == "m" and not _is_missing(row.get("m_stage")):
            parts.append(f"Metastasis stage: {row['m_stage']}")
        elif f == "age" and not _is_missing(row.get("age_at_index")):
            parts.append(f"Age at diagnosis: {int(round(float(row['age_at_index'])))} years")
        elif f not in ("location", "diagnosis", "stage", "t", "n", "m", "age"):
            raise InputError(f"unknown text field '{f}'", fix="use location, diagnosis, stage, t, n, m, age")
    return "; ".join(parts) + ("." if parts else "")


def _json_split_dir(cohort: str, shared_dir, json_dir) -> Path:
    if json_dir is not None:
        return Path(json_dir)
    return resolve_shared_dir(shared_dir) / "data" / "tcga" / "modaltune_splits" / f"tcga_{cohort}"


def _read_json_records(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputError("ModalTune split file not found", where=path, fix="point at the folder holding train.json, val.json and test.json")
    try:
        data = json.loads(path.read_text())
    except PermissionError as exc:
        raise InputError("file is unreadable (permission denied)", where=path, fix="make the file readable (chmod u+r)") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON ({exc.msg} at line {exc.lineno})", where=path, fix="re-copy the file") from exc
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InputError("expected an object with a 'data' list of records", where=path, fix="use the ModalTune split files")
    return pd.DataFrame(data["data"])


def read_modaltune_partitions(folder: str | Path) -> dict[str, list[str]]:
    """Patient ids (``case_submitter_id``) per partition of a ModalTune JSON split folder at any
    path: ``{"train": [...], "val": [...], "test": [...]}`` (unique, file order). Only
    ``case_submitter_id`` is required of the records."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("ModalTune split folder not found", where=folder, fix="point at the folder holding train.json, val.json and test.json")
    out: dict[str, list[str]] = {}
    for part in ("train", "val", "test"):
        path = folder / f"{part}.json"
        df = _read_json_records(path)
        if "case_submitter_id" not in df.columns:
            raise InputError("records lack field 'case_submitter_id'", where=path, fix="each record needs the patient id in case_submitter_id")
        ids = [str(v).strip() for v in df["case_submitter_id"].dropna() if str(v).strip()]
        out[part] = list(dict.fromkeys(ids))
    return out


def read_modaltune_records(cohort: str, shared_dir: str | Path | None = None, json_dir: str | Path | None = None) -> pd.DataFrame:
    """All slide records of one ModalTune cohort with a ``partition`` column (train/val/test), from
    ``<shared>/data/tcga/modaltune_splits/tcga_<cohort>/`` or from ``json_dir`` (any folder holding
    ``train.json``, ``val.json``, ``test.json`` in the same format)."""
    folder = _json_split_dir(cohort, shared_dir, json_dir)
    if json_dir is not None and not folder.is_dir():
        raise InputError("ModalTune split folder not found", where=folder, fix="point --json-dir at the folder holding train.json, val.json and test.json")
    frames = []
    for part in ("train", "val", "test"):
        path = folder / f"{part}.json"
        df = _read_json_records(path)
        need = {"case_submitter_id", "slide_submitter_id", "project_id", "durations", "vital_status", "primary_class"}
        missing = sorted(need - set(df.columns))
        if missing:
            raise InputError(f"records lack fields {missing}", where=path, fix="use the ModalTune split files")
        df["partition"] = part
        df["_file"] = path.name
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    # year_of_diagnosis mixes "2010" and 2010 between files: make it numeric before comparing rows
    if "year_of_diagnosis" in df.columns:
        df["year_of_diagnosis"] = pd.to_numeric(df["year_of_diagnosis"], errors="coerce")
    for c in _SLIDE_COLS:
        if c not in df.columns:
            df[c] = np.nan
    return df


def import_modaltune_json(
    cohort: str,
    shared_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    *,
    features_dir: str = "features",
    text_fields: Iterable[str] = ("location", "diagnosis", "stage", "t", "n", "m", "age"),
    join_omics: bool = True,
    table_cache: MutableMapping[str, pd.DataFrame] | None = None,
    overwrite: bool = False,
    json_dir: str | Path | None = None,
    omics_tables: list[str | Path] | None = None,
) -> Cohort:
    """Import one ModalTune split cohort (see the module docstring for what is built).

    Args:
        cohort: ``brca``, ``gbmlgg``, ``nsclc``, ``rcc``, ``coadread``, ``blca`` or ``pancancer``.
        shared_dir: folder holding ``data/tcga`` (default: ``$MODALTUNE_SHARED`` or ``../shared``).
        out_dir: if given, the cohort directory is written there (with ``splits/modaltune_paper.csv``).
        features_dir: where the slides' feature files are expected (relative to the cohort dir).
        text_fields: which sentences :func:`build_text` writes (drop ``diagnosis`` for subtype
            tasks: it names the subtype).
        join_omics: join rna/cnv/mut from the PORPOISE tables (``SOURCE_TABLES``).
        table_cache: optional dict reused across calls to avoid re-reading PORPOISE tables.
        overwrite: replace a cohort already in ``out_dir`` (its features folder is kept).
        json_dir: any folder holding ``train.json``/``val.json``/``test.json`` in the paper's
            format, instead of the shared folder's ``tcga_<cohort>`` (``cohort`` still names the
            class mapping, ``SUBTYPE_CLASSES``).
        omics_tables: PORPOISE-style CSV files (any path) whose omics are joined by patient id,
            instead of the shared folder's ``SOURCE_TABLES``.

    Returns:
        The cohort; ``cohort.splits == {"modaltune_paper": SplitSet}``.
    """
    cohort = cohort.lower().strip()
    if cohort not in MODALTUNE_COHORTS:
        raise InputError(f"unknown ModalTune cohort '{cohort}'", fix=f"use one of {list(MODALTUNE_COHORTS)}")
    text_fields = tuple(text_fields)
    rec = read_modaltune_records(cohort, shared_dir, json_dir)
    source = str(json_dir) if json_dir is not None else f"modaltune_splits/tcga_{cohort}"

    # rows without a patient id cannot be placed: excluded with their reason, never dropped silently
    no_id = rec["case_submitter_id"].isna() | (rec["case_submitter_id"].astype(str).str.strip() == "")
    excluded = pd.DataFrame(
        {"patient_id": rec.loc[no_id, "slide_submitter_id"].astype(str), "reason": "slide record without case_submitter_id (" + rec.loc[no_id, "_file"] + ")"}
    )
    rec = rec[~no_id].drop(columns=["_file"])
    pats, slide_rows, conflicts = collapse_slides(rec, "case_submitter_id", _SLIDE_COLS, source=source)
    if conflicts:
        pid, cols = next(iter(conflicts.items()))
        if "partition" in cols:
            raise InputError(f"patient '{pid}' has slides in more than one of train/val/test", where=source, fix="a patient must be in one partition (leakage otherwise)")
        more = f" (+{len(conflicts) - 1} more patients)" if len(conflicts) > 1 else ""
        raise InputError(f"patient '{pid}' has different values of {cols[:5]} on its slide records{more}", where=source, fix="fix the records")

    unknown_proj = sorted(set(pats["project_id"].astype(str)) - set(_PROJECTS))
    if unknown_proj:
        raise InputError(f"unknown project_id {unknown_proj[:3]}", where=source, fix=f"expected one of {sorted(_PROJECTS)}")
    member = pats["project_id"].map(lambda p: _PROJECTS[p][0])
    if cohort != "pancancer" and (member != cohort).any():
        pid = member.index[(member != cohort).to_numpy()][0]
        raise InputError(f"patient '{pid}' has project {pats.at[pid, 'project_id']}, not part of cohort '{cohort}'", where=source, fix="check the split files")

    time = pd.to_numeric(pats["durations"], errors="coerce")
    event = pd.to_numeric(pats["vital_status"], errors="coerce")
    bad = event.notna() & ~event.isin([0, 1])
    if bad.any():
        pid = event.index[bad.to_numpy()][0]
        raise InputError(f"patient '{pid}' has vital_status {event[pid]!r}", where=f"{source}:vital_status", fix="use 1 = dead, 0 = alive")
    if (time < 0).any():
        pid = time.index[(time < 0).to_numpy()][0]
        raise InputError(f"patient '{pid}' has negative durations {time[pid]}", where=f"{source}:durations", fix="survival times must be >= 0")

    patients = pd.DataFrame(index=pats.index.rename("patient_id"))
    patients["site"] = (member if cohort == "pancancer" else pd.Series(cohort, index=pats.index)).str.upper().to_numpy()
    patients["project_id"] = pats["project_id"].to_numpy()
    patients["gdc_case_id"] = pats.get("case_id")
    patients["survival_months"] = time.to_numpy()
    patients["event"] = event.astype("Int64").to_numpy()
    patients["primary_class"] = pd.to_numeric(pats["primary_class"], errors="coerce").astype("Int64").to_numpy()
    for c in ("gene_availability", "year_of_diagnosis", "ajcc_pathologic_stage", "ajcc_pathologic_t", "ajcc_pathologic_n", "ajcc_pathologic_m"):
        patients[c] = pats[c].to_numpy() if c in pats.columns else np.nan

    # subtype task(s): primary_class index -> class name; -1 kept as the excluded value "-1"
    tasks: list[TaskSpec] = []
    task_report: dict = {}
    members = PANCANCER_MEMBERS if cohort == "pancancer" else (cohort,)
    for m in members:
        classes = SUBTYPE_CLASSES[m]
        col = "subtype" if cohort != "pancancer" else f"subtype_{m}"
        in_m = (member == m).to_numpy()
        pc = patients["primary_class"]
        bad = in_m & pc.notna().to_numpy() & ~pc.isin(list(range(len(classes))) + [-1]).to_numpy()
        if bad.any():
            pid = patients.index[bad][0]
            raise InputError(f"patient '{pid}' has primary_class {pc[pid]} for cohort {m}", where=f"{source}:primary_class", fix=f"use -1 or 0..{len(classes) - 1}")
        label = pd.Series(np.nan, index=patients.index, dtype=object)
        label[in_m] = [("-1" if v == -1 else classes[int(v)]) if pd.notna(v) else np.nan for v in pc[in_m]]
        patients[col] = label
        name = "subtype" if cohort != "pancancer" else f"subtype_{m}"
        tasks.append(TaskSpec(name=name, kind="classification", label_column=col, classes=classes, exclude_values=["-1"], description=_SUBTYPE_DESCRIPTIONS[m]))
        task_report[name] = {"classes": {c: int((label == c).sum()) for c in classes}, "excluded_-1": int((label == "-1").sum()), "missing": int((in_m & label.isna().to_numpy()).sum())}
    tasks.append(
        TaskSpec(
            name="survival",
            kind="survival",
            time_column="survival_months",
            event_column="event",
            endpoint="overall survival",
            time_unit="months",
            description="Predict overall survival (months from diagnosis) of the patient.",
        )
    )

    clinical = pd.DataFrame(index=patients.index)
    clinical["age_at_index"] = pd.to_numeric(pats.get("age_at_index"), errors="coerce").to_numpy()
    clinical["stage"] = pats["ajcc_pathologic_stage"].map(normalise_stage).to_numpy() if "ajcc_pathologic_stage" in pats else np.nan
    for axis in ("t", "n", "m"):
        raw = pats.get(f"ajcc_pathologic_{axis}")
        clinical[f"{axis}_stage"] = raw.map(lambda v, a=axis: normalise_tnm(v, a)).to_numpy() if raw is not None else np.nan
    clinical["primary_diagnosis"] = pats["primary_diagnosis"].map(lambda v: np.nan if _is_missing(v) else str(v).strip()).to_numpy() if "primary_diagnosis" in pats else np.nan
    clinical["project_id"] = patients["project_id"]
    # raw strings that became missing (X = not assessable, or unrecognised) are reported, not hidden
    unmapped: dict[str, dict[str, int]] = {}
    for raw_col, norm_col in (("ajcc_pathologic_stage", "stage"), ("ajcc_pathologic_t", "t_stage"), ("ajcc_pathologic_n", "n_stage"), ("ajcc_pathologic_m", "m_stage")):
        raw = patients[raw_col]
        lost = raw[raw.notna() & clinical[norm_col].isna()].astype(str)
        if len(lost):
            unmapped[raw_col] = lost.value_counts().to_dict()

    def _cats(col: str) -> list[str]:
        return sorted({str(v) for v in clinical[col].dropna()}) or ["unknown"]

    clinical_fields = [
        ClinicalField(name="age_at_index", kind="numeric", min=0, max=120, unit="years", description="age at diagnosis (GDC age_at_index)"),
        ClinicalField(name="stage", kind="ordinal", categories=STAGE_LEVELS, description="AJCC pathologic stage group (substages merged; Stage X = missing)"),
        ClinicalField(name="t_stage", kind="ordinal", categories=T_LEVELS, description="AJCC pathologic T group (TX = missing)"),
        ClinicalField(name="n_stage", kind="ordinal", categories=N_LEVELS, description="AJCC pathologic N group (NX = missing)"),
        ClinicalField(name="m_stage", kind="ordinal", categories=M_LEVELS, description="AJCC pathologic M group (MX = missing)"),
        ClinicalField(name="primary_diagnosis", kind="categorical", categories=_cats("primary_diagnosis"), description="GDC primary diagnosis (names the subtype: leaks subtype labels)"),
        ClinicalField(name="project_id", kind="categorical", categories=_cats("project_id"), description="GDC project (leaks subtype labels in nsclc, rcc, gbmlgg, coadread)"),
    ]

    text_rows = pd.concat([clinical, patients[["project_id"]].rename(columns={"project_id": "_p"})], axis=1)
    text = pd.Series(
        [build_text({**r, "project_id": r["_p"]}, text_fields) for r in text_rows.to_dict("records")],
        index=patients.index,
        name="text",
    )

    slides = pd.DataFrame(
        {
            "patient_id": slide_rows["case_submitter_id"].astype(str),
            "slide_id": slide_rows["slide_submitter_id"].astype(str),
            "path": [
                feature_path(features_dir, Path(str(fp)).name, ext="") if isinstance(fp, str) and fp else feature_path(features_dir, str(sid), ".pt")
                for fp, sid in zip(slide_rows["features_path"], slide_rows["slide_submitter_id"])
            ],
            "source_path": slide_rows["features_path"].astype(str),
        }
    )

    omics_sources = [Path(t).name for t in omics_tables] if omics_tables else list(SOURCE_TABLES[cohort])
    omics: dict[str, pd.DataFrame] = {}
    absent: dict[str, str] = {}
    omics_report: dict = {}
    if join_omics:
        if omics_tables is None and json_dir is not None:
            try:
                resolve_shared_dir(shared_dir)
            except InputError as exc:
                raise InputError(
                    "the omics join needs the PORPOISE tables, and the shared data folder is not found",
                    where=exc.where,
                    fix="pass --omics-table FILE (PORPOISE-style CSV, repeatable), --shared DIR, or --no-omics",
                ) from exc
        tables, pooling, absent = porpoise_omics(SOURCE_TABLES[cohort], shared_dir, table_cache=table_cache, tables=omics_tables)
        known = set(patients.index)
        for name, tab in tables.items():
            omics[name] = tab[tab.index.isin(known)]
        parts = {p: set(g.index) for p, g in pats.groupby("partition")}
        omics_report = {
            "sources": [str(t) for t in omics_tables] if omics_tables else list(SOURCE_TABLES[cohort]),
            "pooling": pooling,
            "patients_with": {
                name: {p: int(len(ids & set(t.index))) for p, ids in sorted(parts.items())} | {"all": int(len(t))} for name, t in omics.items()
            },
        }
    else:
        absent = dict.fromkeys(("rna", "cnv", "mut"), "join_omics=False")

    modalities = [
        ModalitySpec(
            name="slide",
            kind="slide",
            description=f"patch features expected under '{features_dir}/' (the paper's Prov-GigaPath features; not available here)",
        )
    ]
    for name, tab in omics.items():
        modalities.append(ModalitySpec(name=name, kind="omics", path=f"omics/{name}.parquet", omics_type=name, description=f"joined from PORPOISE tables {'/'.join(omics_sources)} by patient id; {tab.shape[1]} genes"))
    modalities.append(ModalitySpec(name="clinical", kind="clinical", description="age, AJCC stage/T/N/M groups, primary diagnosis, project"))
    modalities.append(ModalitySpec(name="text", kind="text", description=f"sentences built from clinical fields: {', '.join(text_fields)}"))

    folds = [
        Fold(
            0,
            sorted(pats.index[pats["partition"] == "train"]),
            sorted(pats.index[pats["partition"] == "val"]),
            sorted(pats.index[pats["partition"] == "test"]),
        )
    ]
    split = SplitSet("modaltune_paper", folds, protocol="ModalTune paper single split: train/val/test")

    sites = sorted(patients["site"].unique())
    manifest = CohortManifest(
        name=f"modaltune_{cohort}",
        description=(
            f"TCGA {cohort.upper()} from the ModalTune paper's split files: {len(patients)} patients, {len(slides)} slides; "
            f"GDC clinical fields; omics joined from PORPOISE tables ({', '.join(omics_sources)}) where the patient has them"
            + (" (RNA z-scores computed per source cohort: pooling is approximate)" if len(omics_sources) > 1 else "")
            + "."
        ),
        synthetic=False,
        source="modaltune-json",
        sites=sites,
        tasks=tasks,
        modalities=modalities,
        clinical_fields=clinical_fields,
        extra={
            "slides": int(len(slides)),
            "partitions": {p: int((pats["partition"] == p).sum()) for p in ("train", "val", "test")},
            "tasks": task_report,
            "omics": omics_report,
            "absent_modalities": absent,
            "clinical_raw_values_set_missing": unmapped,
            "label_leaking_fields": {t.name: ["primary_diagnosis", "project_id", "text (diagnosis sentence)"] for t in tasks if t.kind == "classification"},
            "features_dir": features_dir,
            "splits": {"modaltune_paper": split.protocol},
        },
    )
    if json_dir is not None:
        manifest.extra["json_dir"] = str(Path(json_dir).resolve())
    result = Cohort(manifest, patients, slides=slides, omics=omics, clinical=clinical, text=text, excluded=excluded.reset_index(drop=True))
    result.check_labels()
    result.splits = {"modaltune_paper": split}
    if out_dir is not None:
        save_with_splits(result, out_dir, overwrite=overwrite)
    return result
