"""Importer for the PORPOISE/MCAT TCGA tables (``shared/data/tcga/porpoise``).

``import_porpoise("blca", shared_dir)`` builds a :class:`~modaltune.data.cohort.Cohort` with

- one row per patient (``case_id``); the table has one row per slide, and a patient's rows must
  carry identical patient-level values (otherwise an error names the patient and the columns);
- task ``survival``: overall survival, time ``survival_months`` (months), event
  ``1 - censorship`` (column ``event``);
- omics modalities ``rna`` / ``cnv`` / ``mut`` (``<GENE>_rnaseq`` / ``_cnv`` / ``_mut`` columns),
  each its own modality; a modality with no columns (UCEC has no RNA; KIRP, LUSC, SKCM no CNV)
  is listed in ``manifest.extra["absent_modalities"]`` with the reason;
- clinical fields ``age`` (numeric, years) and ``is_female`` (categorical ``0``/``1``);
- the slide modality ``slide``: ``slides.csv`` records the *expected* feature file of each slide
  (``<features_dir>/<slide stem>.h5``); the files are not part of the release, so validation
  reports them missing without failing;
- patient-table metadata: ``site`` (cancer site = cohort, e.g. ``BLCA``), ``source_cohort``,
  ``tissue_source_site`` (TCGA TSS code from the barcode, e.g. ``3C``; the table's ``site``
  column loses leading zeros, so the barcode is used), ``oncotree_code``;
- the MCAT/PORPOISE 5-fold split as ``SplitSet("porpoise_5fold")`` (``val`` = held-out fold,
  no test), saved as ``splits/porpoise_5fold.csv``.

Subtype cohorts (``SUBTYPE_COHORTS``) add task ``subtype`` and a patient-level 5-fold split
stratified by subtype (``subtype_5fold``, seed 0, held-out fold in ``test``):
``nsclc`` (luad + lusc: LUAD vs LUSC), ``rcc`` (kirc + kirp: CCRCC vs PRCC), ``brca`` (IDC vs
ILC; other codes kept in the cohort, excluded from the task and counted), ``gbmlgg`` (GBM vs
lower-grade glioma: every other glioma oncotree code, see ``GBMLGG_MAPPING``) and ``coadread``
(COAD vs READ; MACR excluded from the task). Pooled cohorts keep, per omics modality, the genes
shared by the sources that have it; their RNA z-scores were computed per source cohort, so
pooling is approximate (stated in the manifest description).
"""
from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from modaltune.data.cohort import ClinicalField, Cohort, CohortManifest, ModalitySpec, TaskSpec
from modaltune.data.sources._common import (
    PORPOISE_COHORTS,
    collapse_slides,
    feature_path,
    pool_omics,
    read_porpoise_csv,
    read_porpoise_table,
    resolve_bag_suffixes,
    resolve_shared_dir,
    split_omics_columns,
)
from modaltune.data.splits import Fold, SplitSet, kfold_split
from modaltune.errors import InputError

__all__ = [
    "PORPOISE_COHORTS",
    "SUBTYPE_COHORTS",
    "GBMLGG_MAPPING",
    "SubtypeDef",
    "import_porpoise",
    "import_porpoise_csv",
    "porpoise_csv_name",
    "read_porpoise_splits",
    "read_porpoise_split_dir",
    "porpoise_cohort_names",
    "porpoise_omics",
    "save_with_splits",
    "prepare_out_dir",
]

#: Oncotree codes of the TCGA GBMLGG table -> task class. Every diffuse glioma that is not
#: glioblastoma (astrocytoma, anaplastic astrocytoma, oligodendroglioma, anaplastic
#: oligodendroglioma, oligoastrocytoma, anaplastic oligoastrocytoma) is a lower-grade glioma (LGG).
GBMLGG_MAPPING = {
    "GBM": "GBM",
    "ASTR": "LGG",
    "AASTR": "LGG",
    "ODG": "LGG",
    "AODG": "LGG",
    "OAST": "LGG",
    "AOAST": "LGG",
}


@dataclass(frozen=True)
class SubtypeDef:
    """A subtype classification task built from the ``oncotree_code`` column.

    ``mapping``: oncotree code -> class name; codes not in it are kept in the cohort but
    excluded from the task (listed in ``exclude_values`` and counted).
    """

    sources: tuple[str, ...]
    classes: tuple[str, ...]
    mapping: dict[str, str] = field(default_factory=dict)
    description: str = ""


SUBTYPE_COHORTS: dict[str, SubtypeDef] = {
    "nsclc": SubtypeDef(
        ("luad", "lusc"), ("LUAD", "LUSC"), {"LUAD": "LUAD", "LUSC": "LUSC"},
        "Classify non-small cell lung cancer as lung adenocarcinoma (LUAD) or lung squamous cell carcinoma (LUSC).",
    ),
    "rcc": SubtypeDef(
        ("kirc", "kirp"), ("CCRCC", "PRCC"), {"CCRCC": "CCRCC", "PRCC": "PRCC"},
        "Classify renal cell carcinoma as clear cell (CCRCC) or papillary (PRCC).",
    ),
    "brca": SubtypeDef(
        ("brca",), ("IDC", "ILC"), {"IDC": "IDC", "ILC": "ILC"},
        "Classify invasive breast carcinoma as invasive ductal (IDC) or invasive lobular (ILC).",
    ),
    "gbmlgg": SubtypeDef(
        ("gbmlgg",), ("GBM", "LGG"), dict(GBMLGG_MAPPING),
        "Classify diffuse glioma as glioblastoma (GBM) or lower-grade glioma (LGG).",
    ),
    "coadread": SubtypeDef(
        ("coadread",), ("COAD", "READ"), {"COAD": "COAD", "READ": "READ"},
        "Classify colorectal adenocarcinoma as colon (COAD) or rectal (READ) adenocarcinoma.",
    ),
}  # fmt: skip

_SITE_NAMES = {
    "blca": "bladder urothelial carcinoma", "brca": "breast invasive carcinoma",
    "coadread": "colon and rectum adenocarcinoma", "gbmlgg": "glioblastoma and lower-grade glioma",
    "hnsc": "head and neck squamous cell carcinoma", "kirc": "kidney renal clear cell carcinoma",
    "kirp": "kidney renal papillary cell carcinoma", "lihc": "liver hepatocellular carcinoma",
    "luad": "lung adenocarcinoma", "lusc": "lung squamous cell carcinoma",
    "paad": "pancreatic adenocarcinoma", "skcm": "skin cutaneous melanoma",
    "stad": "stomach adenocarcinoma", "ucec": "uterine corpus endometrial carcinoma",
    "nsclc": "non-small cell lung cancer", "rcc": "renal cell carcinoma",
}  # fmt: skip


def porpoise_cohort_names() -> list[str]:
    """Every cohort name ``import_porpoise`` accepts (14 tables + pooled subtype cohorts)."""
    return list(PORPOISE_COHORTS) + [c for c in SUBTYPE_COHORTS if c not in PORPOISE_COHORTS]


def read_porpoise_splits(cohort: str, shared_dir: str | Path | None = None, n_folds: int = 5) -> list[tuple[list[str], list[str]]]:
    """Raw MCAT/PORPOISE folds of one table cohort of the shared folder: ``[(train_ids, val_ids), ...]``
    from ``<shared>/data/tcga/porpoise/splits/5foldcv/tcga_<cohort>/splits_{k}.csv``."""
    shared = resolve_shared_dir(shared_dir)
    return read_porpoise_split_dir(shared / "data" / "tcga" / "porpoise" / "splits" / "5foldcv" / f"tcga_{cohort}", n_folds)


def read_porpoise_split_dir(folder: str | Path, n_folds: int | None = None) -> list[tuple[list[str], list[str]]]:
    """MCAT/PORPOISE folds from any folder of ``splits_{k}.csv`` files: ``[(train_ids, val_ids), ...]``.

    Each file has columns ``,train,val`` (ragged; empty cells are padding and skipped). ``n_folds``
    None reads ``splits_0.csv``, ``splits_1.csv``, ... up to the first missing index. A single
    ``splits_{k}.csv`` file may be given instead of the folder (one fold).
    """
    folder = Path(folder)
    if folder.is_file():
        files = [folder]
    else:
        if not folder.is_dir():
            raise InputError("PORPOISE split folder not found", where=folder, fix="point at the folder holding splits_0.csv, splits_1.csv, ...")
        if n_folds is None:
            n_folds = 0
            while (folder / f"splits_{n_folds}.csv").exists():
                n_folds += 1
            if n_folds == 0:
                raise InputError("no splits_0.csv in this folder", where=folder, fix="point at the folder holding splits_0.csv, splits_1.csv, ... (columns ,train,val)")
        files = [folder / f"splits_{k}.csv" for k in range(n_folds)]
    folds = []
    for path in files:
        if not path.exists():
            raise InputError("PORPOISE split file not found", where=path, fix="check the split folder (splits_0.csv ... splits_{k-1}.csv)")
        try:
            df = pd.read_csv(path, dtype=str, index_col=0)
        except PermissionError as exc:
            raise InputError("file is unreadable (permission denied)", where=path, fix="make the file readable (chmod u+r)") from exc
        except Exception as exc:
            raise InputError(f"cannot read split file ({type(exc).__name__}: {exc})", where=path, fix="expected a CSV with columns ',train,val'") from exc
        missing = {"train", "val"} - set(df.columns)
        if missing:
            raise InputError(f"split file lacks columns {sorted(missing)}", where=path, fix="expected columns ',train,val'")
        tr = [s.strip() for s in df["train"].dropna() if s.strip()]
        va = [s.strip() for s in df["val"].dropna() if s.strip()]
        folds.append((tr, va))
    return folds


def _patient_block(cohort: str, shared_dir, cache, features_dir: str, on_conflict: str, table: str | Path | None = None):
    """One table cohort -> (patients, clinical, slides, omics blocks, report). ``table``: read
    this PORPOISE-style file instead of the shared folder's table of ``cohort``."""
    if table is not None:
        raw = read_porpoise_csv(table, cache=cache)
        source = str(table)
    else:
        raw = read_porpoise_table(cohort, shared_dir, cache=cache)
        source = f"tcga_{cohort}_all_clean.csv.zip"
    raw = raw.drop(columns=[c for c in ("train",) if c in raw.columns])  # PORPOISE's own flag; not a split we use
    pats, slides, conflicts = collapse_slides(raw, "case_id", ["slide_id"], source=source)
    if conflicts and on_conflict == "error":
        pid, cols = next(iter(conflicts.items()))
        more = f" (+{len(conflicts) - 1} more patients)" if len(conflicts) > 1 else ""
        raise InputError(
            f"patient '{pid}' has different values of {cols[:5]} on its slide rows{more}",
            where=source,
            fix="fix the table, or pass on_conflict='first' to keep each patient's first row (recorded in the manifest)",
        )
    cens = pd.to_numeric(pats["censorship"], errors="coerce")
    bad = cens.notna() & ~cens.isin([0, 1])
    if bad.any():
        pid = pats.index[bad.to_numpy()][0]
        raise InputError(f"patient '{pid}' has censorship {cens[pid]!r}, expected 0 or 1", where=f"{source}:censorship", fix="use 1 = censored, 0 = death")
    time = pd.to_numeric(pats["survival_months"], errors="coerce")
    if (time < 0).any():
        pid = pats.index[(time < 0).to_numpy()][0]
        raise InputError(f"patient '{pid}' has negative survival_months {time[pid]}", where=f"{source}:survival_months", fix="survival times must be >= 0")
    tss_table = pats["site"].astype(str).str.strip().str.zfill(2) if "site" in pats.columns else None
    tss = pats.index.to_series().str.split("-").str[1]
    patients = pd.DataFrame(
        {
            "site": cohort.upper(),
            "source_cohort": cohort,
            "tissue_source_site": tss.to_numpy(),
            "oncotree_code": pats["oncotree_code"].to_numpy(),
            "survival_months": time.to_numpy(),
            "event": (1 - cens).astype("Int64").to_numpy(),
        },
        index=pats.index.rename("patient_id"),
    )
    clinical = pd.DataFrame(
        {
            "age": pd.to_numeric(pats["age"], errors="coerce").to_numpy(),
            "is_female": pd.to_numeric(pats["is_female"], errors="coerce").map(lambda v: np.nan if pd.isna(v) else str(int(v))).to_numpy(),
        },
        index=patients.index,
    )
    bad_sex = clinical["is_female"].dropna()[~clinical["is_female"].dropna().isin(["0", "1"])]
    if len(bad_sex):
        raise InputError(f"patient '{bad_sex.index[0]}' has is_female={bad_sex.iloc[0]!r}", where=f"{source}:is_female", fix="use 0 or 1")
    slides = pd.DataFrame(
        {
            "patient_id": slides["case_id"].astype(str),
            "slide_id": slides["slide_id"].astype(str),
            "path": [feature_path(features_dir, s) for s in slides["slide_id"].astype(str)],
        }
    )
    omics = split_omics_columns(pats)
    report = {
        "slides": int(len(raw)),
        "patients": int(len(patients)),
        "deaths": int(patients["event"].sum()),
        "conflicting_patients": dict(conflicts),
        "tss_code_mismatches": int((tss_table != tss).sum()) if tss_table is not None else None,
        "omics_columns": {k: int(v.shape[1]) for k, v in omics.items()},
    }
    return patients, clinical, slides, omics, report


def porpoise_omics(
    sources: tuple[str, ...] | list[str],
    shared_dir: str | Path | None = None,
    *,
    table_cache: MutableMapping[str, pd.DataFrame] | None = None,
    tables: list[str | Path] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict, dict[str, str]]:
    """Per-patient omics of one or more PORPOISE table cohorts, pooled with :func:`pool_omics`.

    ``tables``: PORPOISE-style CSV files at any path, used instead of the shared folder's tables of
    ``sources`` (each file is one source, named by its file name).
    Returns ``(tables, pooling_report, absent)`` with tables indexed by TCGA patient id.
    """
    parts = {}
    items = [(Path(t).name, t) for t in tables] if tables else [(s, None) for s in sources]
    for s, path in items:
        raw = read_porpoise_csv(path, cache=table_cache) if path is not None else read_porpoise_table(s, shared_dir, cache=table_cache)
        where = str(path) if path is not None else f"tcga_{s}_all_clean.csv.zip"
        pats, _, conflicts = collapse_slides(raw.drop(columns=["train"], errors="ignore"), "case_id", ["slide_id"], source=where)
        if conflicts:
            pid, cols = next(iter(conflicts.items()))
            raise InputError(f"patient '{pid}' has different values of {cols[:5]} on its slide rows", where=where, fix="fix the table")
        parts[s] = split_omics_columns(pats)
    return pool_omics(parts)


def _subtype_column(patients: pd.DataFrame, sdef: SubtypeDef) -> tuple[pd.Series, list[str]]:
    """Class name per patient from ``oncotree_code``; unmapped codes stay as the raw code and
    are returned as excluded values (kept in the cohort, masked out of the task, counted)."""
    codes = patients["oncotree_code"]
    label = codes.map(lambda c: sdef.mapping.get(str(c).strip(), str(c).strip()) if pd.notna(c) else np.nan)
    excluded = sorted({str(v) for v in label.dropna() if v not in sdef.classes})
    return label, excluded


def import_porpoise(
    cohort: str,
    shared_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    *,
    subtype_task: bool = True,
    features_dir: str = "features",
    on_conflict: str = "error",
    table_cache: MutableMapping[str, pd.DataFrame] | None = None,
    overwrite: bool = False,
    table: str | Path | None = None,
    splits_dir: str | Path | None = None,
    n_folds: int = 5,
    seed: int = 0,
) -> Cohort:
    """Import one PORPOISE cohort (see the module docstring for what is built).

    Args:
        cohort: one of the 14 table cohorts (``blca`` ... ``ucec``) or a pooled subtype cohort
            (``nsclc``, ``rcc``). ``brca``, ``gbmlgg`` and ``coadread`` also get the subtype task
            when ``subtype_task`` is true.
        shared_dir: folder holding ``data/tcga`` (default: ``$MODALTUNE_SHARED`` or ``../shared``).
        out_dir: if given, the cohort directory is written there (with ``splits/*.csv``).
        subtype_task: add the subtype task and ``subtype_5fold`` split where one is defined.
        features_dir: where the slides' patch-feature files are expected (relative to the
            cohort directory unless absolute).
        on_conflict: ``"error"`` (default) if a patient's slide rows disagree on a patient-level
            value; ``"first"`` keeps the first row and records the conflict in the manifest.
        table_cache: optional dict reused across calls to avoid re-reading tables.
        overwrite: replace a cohort already in ``out_dir`` (its features folder is kept).
        table: a PORPOISE-style wide CSV at any path (your own file) instead of the shared
            folder's table; ``cohort`` is then any short name (``site`` = its upper case; a known
            code such as ``brca`` still gets its subtype task). The shared folder is not needed.
        splits_dir: a folder of ``splits_{k}.csv`` files (any path) instead of the shared folder's
            published folds. With ``table`` and no ``splits_dir``, a seeded patient-level
            ``n_folds``-fold split stratified by event x time quartile is made (``kfold<n>``).
        n_folds, seed: that split (``n_folds=0``: none).

    Returns:
        The cohort; its split sets are in ``cohort.splits`` (name -> :class:`SplitSet`).
    """
    cohort = cohort.lower().strip()
    if table is not None:
        if not cohort or not all(ch.isalnum() or ch in "_-" for ch in cohort):
            raise InputError(f"cohort name '{cohort}' must be letters, digits, '_' or '-'", where="--name", fix="e.g. --name mycohort")
    elif cohort not in porpoise_cohort_names():
        raise InputError(f"unknown PORPOISE cohort '{cohort}'", fix=f"use one of {porpoise_cohort_names()}, or pass your own table (`modaltune data import porpoise-csv FILE`)")
    if on_conflict not in ("error", "first"):
        raise InputError(f"on_conflict must be 'error' or 'first', got '{on_conflict}'", fix="use 'error' or 'first'")
    sdef = SUBTYPE_COHORTS.get(cohort) if subtype_task else None
    if cohort in PORPOISE_COHORTS or table is not None:
        sources: tuple[str, ...] = (cohort,)
        if sdef is not None and len(sdef.sources) > 1:
            sdef = None  # a pooled subtype needs both source tables
    else:
        sources = SUBTYPE_COHORTS[cohort].sources
        sdef = SUBTYPE_COHORTS[cohort]  # a pooled cohort exists only for its subtype task

    blocks = [_patient_block(s, shared_dir, table_cache, features_dir, on_conflict, table=table) for s in sources]
    patients = pd.concat([b[0] for b in blocks])
    clinical = pd.concat([b[1] for b in blocks])
    slides = pd.concat([b[2] for b in blocks], ignore_index=True)
    # TRIDENT .h5 is expected; a folder already holding CLAM .pt bags keeps their suffix
    paths, bag_report = resolve_bag_suffixes(slides["path"].tolist(), out_dir)
    slides["path"] = paths
    dup = patients.index[patients.index.duplicated()]
    if len(dup):
        raise InputError(f"patient '{dup[0]}' appears in more than one source table {list(sources)}", fix="pool cohorts whose patients are disjoint")
    patients["site"] = cohort.upper()
    omics, omics_report, absent = pool_omics({s: b[3] for s, b in zip(sources, blocks)})
    source_report = {s: b[4] for s, b in zip(sources, blocks)}

    tasks = [
        TaskSpec(
            name="survival",
            kind="survival",
            time_column="survival_months",
            event_column="event",
            endpoint="overall survival",
            time_unit="months",
            description=f"Predict overall survival of patients with {_SITE_NAMES.get(cohort, cohort.upper() + ' cancer')}.",
        )
    ]
    task_report: dict = {}
    if sdef is not None:
        label, excluded_codes = _subtype_column(patients, sdef)
        patients["subtype"] = label
        tasks.append(
            TaskSpec(
                name="subtype",
                kind="classification",
                label_column="subtype",
                classes=list(sdef.classes),
                exclude_values=excluded_codes,
                description=sdef.description,
            )
        )
        task_report["subtype"] = {
            "classes": {c: int((label == c).sum()) for c in sdef.classes},
            "excluded": {c: int((label == c).sum()) for c in excluded_codes},
            "missing": int(label.isna().sum()),
            "mapping": dict(sdef.mapping),
        }

    modalities = [
        ModalitySpec(
            name="slide",
            kind="slide",
            description=f"patch-feature bags expected under '{features_dir}/' (not part of the PORPOISE release; import or extract them, e.g. with TRIDENT)",
        )
    ]
    for name, tab in omics.items():
        desc = {
            "rna": "RNA-seq z-scores (within each source cohort)",
            "cnv": "GISTIC copy number (-2..2)",
            "mut": "mutation status (0/1)",
        }[name]
        modalities.append(ModalitySpec(name=name, kind="omics", path=f"omics/{name}.parquet", omics_type=name, description=f"{desc}; {tab.shape[1]} genes"))
    modalities.append(ModalitySpec(name="clinical", kind="clinical", description="age, is_female"))
    clinical_fields = [
        ClinicalField(name="age", kind="numeric", min=0, max=120, unit="years", description="age at diagnosis"),
        ClinicalField(name="is_female", kind="categorical", categories=["0", "1"], description="1 = female, 0 = male"),
    ]

    pooled = len(sources) > 1
    origin = f"the PORPOISE-style table {table}" if table is not None else "the PORPOISE/MCAT tables"
    description = (
        f"{'' if table is not None else 'TCGA '}{cohort.upper()} ({_SITE_NAMES.get(cohort, 'user table')}) from {origin}: {len(patients)} patients, "
        f"{len(slides)} slides; omics {', '.join(omics) or 'none'}"
        + (f"; absent omics: {', '.join(absent)}" if absent else "")
        + (f". Pooled from {' + '.join(sources)}: RNA z-scores were computed within each source cohort, so pooling is approximate." if pooled else ".")
    )
    conflicts = {s: r.pop("conflicting_patients") for s, r in source_report.items()}
    manifest = CohortManifest(
        name=f"porpoise_{cohort}",
        description=description,
        synthetic=False,
        source="porpoise-csv" if table is not None else "porpoise",
        sites=[cohort.upper()],
        tasks=tasks,
        modalities=modalities,
        clinical_fields=clinical_fields,
        extra={
            "source_cohorts": list(sources),
            "sources": source_report,
            "absent_modalities": absent,
            "omics_pooling": omics_report if pooled else {},
            "slide_conflicts": {s: c for s, c in conflicts.items() if c},
            "tasks": task_report,
            "features_dir": features_dir,
            **({"bag_files": bag_report} if any(bag_report.values()) else {}),
            "zscores_per_cohort": True,
            **({"table": str(Path(table).resolve())} if table is not None else {}),
            **({"splits_dir": str(Path(splits_dir).resolve())} if splits_dir is not None else {}),
        },
    )
    result = Cohort(manifest, patients, slides=slides, omics=omics, clinical=clinical)
    if splits_dir is not None:
        raw_folds: dict[str, list] | None = {cohort: read_porpoise_split_dir(splits_dir)}
    elif table is not None:
        raw_folds = None
    else:
        raw_folds = {s: read_porpoise_splits(s, shared_dir) for s in sources}
    result.splits, split_report = _build_splits(result, raw_folds, sdef is not None, n_folds=n_folds, seed=seed)
    result.check_labels()
    manifest.extra["splits"] = {name: s.protocol for name, s in result.splits.items()}
    manifest.extra["split_report"] = split_report
    if out_dir is not None:
        save_with_splits(result, out_dir, overwrite=overwrite)
    return result


def porpoise_csv_name(path: str | Path) -> str:
    """Default cohort name of a PORPOISE-style file: ``tcga_blca_all_clean.csv.zip`` -> ``blca``."""
    stem = Path(path).name.lower()
    for suf in (".zip", ".gz", ".bz2", ".xz", ".csv", ".tsv"):
        stem = stem.removesuffix(suf)
    return stem.removeprefix("tcga_").removesuffix("_all_clean") or "cohort"


def import_porpoise_csv(
    path: str | Path,
    name: str | None = None,
    out_dir: str | Path | None = None,
    *,
    splits_dir: str | Path | None = None,
    n_folds: int = 5,
    seed: int = 0,
    subtype_task: bool = True,
    features_dir: str = "features",
    on_conflict: str = "error",
    overwrite: bool = False,
    table_cache: MutableMapping[str, pd.DataFrame] | None = None,
) -> Cohort:
    """Import your own PORPOISE-style wide CSV (any path; same columns and rules as the shared
    tables, see :func:`import_porpoise`). ``name`` defaults to :func:`porpoise_csv_name`;
    ``splits_dir`` is any folder of ``splits_{k}.csv``, else a seeded ``n_folds``-fold split."""
    return import_porpoise(name or porpoise_csv_name(path), None, out_dir, table=path, splits_dir=splits_dir, n_folds=n_folds, seed=seed,
                           subtype_task=subtype_task, features_dir=features_dir, on_conflict=on_conflict, overwrite=overwrite, table_cache=table_cache)


def _build_splits(cohort: Cohort, raw_folds: dict[str, list] | None, with_subtype: bool, *, n_folds: int = 5, seed: int = 0) -> tuple[dict[str, SplitSet], dict]:
    """``porpoise_<k>fold`` (given folds ``{source: [(train, val), ...]}``, united fold by fold;
    ``val`` = held-out fold) or, without folds, a seeded ``kfold<n>`` split stratified by event x
    time quartile (held-out fold in ``test``); with a subtype task also ``subtype_5fold``
    (stratified by subtype; excluded/missing as one stratum)."""
    known = set(cohort.patient_ids)
    splits: dict[str, SplitSet] = {}
    report: dict = {}
    if raw_folds is None:
        if n_folds:
            t = cohort.targets("survival")
            # event x time quartile, rare strata merged by the splitter (any fallback lands in the protocol)
            s = kfold_split(cohort.patient_ids, n_folds, seed=seed, time=np.where(t.mask, t.time, np.nan), event=np.where(t.mask, t.event, 0),
                            name=f"kfold{n_folds}", stratify_name="task 'survival'")
            s.protocol += "; held-out fold = test"
            splits[s.name] = s
    else:
        per_fold: list[tuple[list[str], list[str]]] = []
        not_in_table: dict[str, list[str]] = {}
        for s, source_folds in raw_folds.items():
            for k, (tr, va) in enumerate(source_folds):
                missing = [p for p in tr + va if p not in known]
                if missing:
                    not_in_table.setdefault(s, []).extend(missing)
                tr = [p for p in tr if p in known]
                va = [p for p in va if p in known]
                if len(per_fold) <= k:
                    per_fold.append(([], []))
                per_fold[k][0].extend(tr)
                per_fold[k][1].extend(va)
        folds = [Fold(k, tr, va, []) for k, (tr, va) in enumerate(per_fold)]
        name = f"porpoise_{len(folds)}fold"
        splits[name] = SplitSet(name, folds, protocol=f"MCAT/PORPOISE {len(folds)}-fold CV; val = held-out fold; no test set")
        in_split = splits[name].patients()
        never_validated = sorted(known - {p for f in folds for p in f.val})
        report[name] = {
            "split_patients_not_in_table": {s: sorted(set(v)) for s, v in not_in_table.items()},
            "table_patients_not_in_split": sorted(known - in_split),
            "table_patients_never_held_out": never_validated,
        }
    if with_subtype:
        label = cohort.patients["subtype"]
        classes = cohort.manifest.task("subtype").classes
        strata = np.array([v if v in classes else "__other__" for v in label.fillna("__other__")])
        s = kfold_split(cohort.patient_ids, 5, seed=0, labels=strata, name="subtype_5fold", stratify_name="task 'subtype'")
        splits["subtype_5fold"] = s
    return splits, report


_COHORT_FILES = ("cohort.yaml", "patients.csv", "slides.csv", "clinical.csv", "text.csv", "excluded.csv", "ground_truth.csv")


def prepare_out_dir(out_dir: str | Path, *, overwrite: bool = False, keep: str | None = "features") -> Path:
    """Make ``out_dir`` ready for a new cohort.

    A new or empty folder, or one holding only ``keep`` (the features folder, so bags placed there
    first are kept), is used as is. A folder holding a cohort is cleared of the cohort's files
    (``keep`` is never touched) only with ``overwrite``; any other non-empty folder is an error.
    """
    import shutil

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("output path is a file", where=out, fix="choose a directory for --out")
    keep_name = Path(keep).parts[0] if keep and not Path(keep).is_absolute() else None
    others = [p for p in out.iterdir() if p.name != keep_name] if out.is_dir() else []
    if not others:
        return out
    # cohort files without the manifest: an interrupted write (Cohort.save writes cohort.yaml last),
    # cleared like a cohort with --overwrite
    interrupted = not (out / "cohort.yaml").exists() and any((out / n).exists() for n in _COHORT_FILES[1:])
    if not (out / "cohort.yaml").exists() and not interrupted:
        raise InputError("output directory is not empty and holds no cohort", where=out, fix="choose a new or empty --out directory")
    if not overwrite:
        what = "the files of an interrupted cohort write (no cohort.yaml)" if interrupted else "a cohort"
        raise InputError(f"output directory already holds {what}", where=out, fix="pass --overwrite (keeps the features folder) or choose another --out")
    for name in _COHORT_FILES:
        (out / name).unlink(missing_ok=True)
    for sub in ("omics", "splits"):
        if (out / sub).is_dir() and sub != keep_name:
            shutil.rmtree(out / sub)
    return out


def save_with_splits(cohort: Cohort, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write the cohort directory and every split set in ``cohort.splits`` to ``splits/<name>.csv``
    (see :func:`prepare_out_dir` for what happens when ``out_dir`` is not empty)."""
    prepare_out_dir(out_dir, overwrite=overwrite, keep=cohort.manifest.extra.get("features_dir", "features"))
    root = cohort.save(out_dir)
    for name, s in getattr(cohort, "splits", {}).items():
        s.save(Path(root) / "splits" / f"{name}.csv")
    return root
