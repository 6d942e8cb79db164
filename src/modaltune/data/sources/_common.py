"""Helpers shared by the real-data importers: locating ``shared/``, reading the PORPOISE tables,
collapsing slide rows to patients, splitting and pooling omics columns.

Nothing here drops a patient silently: every conflict or exclusion is returned to the caller,
which records it in the manifest (``extra``) or in ``excluded.csv``.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, MutableMapping
from pathlib import Path

import numpy as np
import pandas as pd

from modaltune.data._files import ensure_readable
from modaltune.errors import InputError

__all__ = [
    "PORPOISE_COHORTS",
    "OMICS_SUFFIXES",
    "resolve_shared_dir",
    "porpoise_table_path",
    "read_porpoise_table",
    "read_porpoise_csv",
    "collapse_slides",
    "split_omics_columns",
    "pool_omics",
    "feature_path",
    "resolve_bag_suffixes",
    "endpoint_from_columns",
    "drop_duplicate_columns",
]

#: The 14 TCGA cohorts of the PORPOISE/MCAT tables.
PORPOISE_COHORTS = (
    "blca", "brca", "coadread", "gbmlgg", "hnsc", "kirc", "kirp",
    "lihc", "luad", "lusc", "paad", "skcm", "stad", "ucec",
)  # fmt: skip

#: omics modality name -> column suffix in the PORPOISE wide tables.
OMICS_SUFFIXES = {"rna": "_rnaseq", "cnv": "_cnv", "mut": "_mut"}

_SHARED_HINT = "pass --shared DIR (or shared_dir=...), or set MODALTUNE_SHARED to the folder that holds data/tcga"


def resolve_shared_dir(shared_dir: str | Path | None = None, *, must_exist: bool = True) -> Path:
    """The ``shared`` data folder: ``shared_dir`` if given, else ``$MODALTUNE_SHARED``, else
    ``../shared`` relative to the current directory.

    Raises :class:`InputError` when ``must_exist`` and the folder has no ``data/tcga``.
    """
    if shared_dir is not None:
        path = Path(shared_dir)
    elif os.environ.get("MODALTUNE_SHARED"):
        path = Path(os.environ["MODALTUNE_SHARED"])
    else:
        path = Path.cwd().parent / "shared"
    path = path.expanduser()
    if must_exist and not (path / "data" / "tcga").is_dir():
        raise InputError("shared data folder not found (no data/tcga inside)", where=path, fix=_SHARED_HINT)
    return path


def porpoise_table_path(cohort: str, shared_dir: str | Path | None = None) -> Path:
    """``<shared>/data/tcga/porpoise/datasets_csv_mutsig/tcga_<cohort>_all_clean.csv.zip``."""
    if cohort not in PORPOISE_COHORTS:
        raise InputError(f"unknown PORPOISE cohort '{cohort}'", fix=f"use one of {list(PORPOISE_COHORTS)}")
    shared = resolve_shared_dir(shared_dir)
    path = shared / "data" / "tcga" / "porpoise" / "datasets_csv_mutsig" / f"tcga_{cohort}_all_clean.csv.zip"
    if not path.exists():
        raise InputError("PORPOISE table not found", where=path, fix=_SHARED_HINT)
    return path


def read_porpoise_table(
    cohort: str,
    shared_dir: str | Path | None = None,
    *,
    cache: MutableMapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The raw slide-level PORPOISE table of one cohort of the shared folder (one row per slide);
    see :func:`read_porpoise_csv`."""
    return read_porpoise_csv(porpoise_table_path(cohort, shared_dir), cache=cache, fix="re-copy the file from the PORPOISE release")


def read_porpoise_csv(
    path: str | Path,
    *,
    cache: MutableMapping[str, pd.DataFrame] | None = None,
    fix: str = "give a PORPOISE-style wide CSV (case_id, slide_id, survival_months, censorship, age, is_female, oncotree_code, <GENE>_rnaseq/_cnv/_mut)",
) -> pd.DataFrame:
    """A PORPOISE-style wide table at any path (one row per slide), ``.csv`` or compressed
    (``.csv.zip``/``.gz``, inferred from the suffix).

    The release's ``.zip`` files hold one plain-CSV member (whose own name also ends in ``.zip``),
    read without unzipping. Identifier columns are read as strings (the ``site`` column mixes codes
    like ``3C`` and ``2``). Pass a dict as ``cache`` to reuse parsed tables across calls (the read
    is the main cost: about 1 s for BRCA); callers must not modify the returned frame in place.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("PORPOISE-style table not found", where=path, fix="check the path")
    if path.is_dir():
        raise InputError("expected a CSV file, found a directory", where=path, fix="point at the table file")
    ensure_readable(path)
    key = f"{path.resolve()}:{path.stat().st_mtime_ns}"
    if cache is not None and key in cache:
        return cache[key]
    try:
        df = pd.read_csv(
            path,
            compression="zip" if path.suffix.lower() == ".zip" else "infer",
            dtype={"case_id": str, "slide_id": str, "site": str, "oncotree_code": str},
            low_memory=False,
        )
    except PermissionError as exc:
        raise InputError("file is unreadable (permission denied)", where=path, fix="make the file readable (chmod u+r) or run as its owner") from exc
    except Exception as exc:  # corrupt zip, not a CSV, ...
        raise InputError(f"cannot read PORPOISE table ({type(exc).__name__}: {exc})", where=path, fix=fix) from exc
    df = df.drop(columns=[c for c in df.columns if c.startswith("Unnamed")])
    required = {"case_id", "slide_id", "survival_months", "censorship", "age", "is_female", "oncotree_code"}
    missing = sorted(required - set(df.columns))
    if missing:
        raise InputError(f"PORPOISE table lacks columns {missing}", where=path, fix="use the datasets_csv_mutsig tables, or `modaltune data import table` for other layouts")
    if cache is not None:
        cache[key] = df
    return df


def collapse_slides(
    df: pd.DataFrame, id_col: str, slide_cols: Iterable[str], *, source: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, list[str]]]:
    """Collapse a one-row-per-slide table to one row per patient.

    Args:
        df: slide-level table.
        id_col: patient id column.
        slide_cols: columns that legitimately differ between a patient's slides (slide id, path).
        source: file name for messages.

    Returns:
        ``(patients, slides, conflicts)``: ``patients`` indexed by ``id_col`` (first row of each
        patient, all columns except ``slide_cols``), ``slides`` = ``df[[id_col, *slide_cols]]`` in
        file order, and ``conflicts``: patient id -> patient-level columns whose values differ
        between that patient's rows (empty when the table is consistent).
    """
    slide_cols = list(slide_cols)
    if df[id_col].isna().any():
        rows = np.flatnonzero(df[id_col].isna().to_numpy())[:3].tolist()
        raise InputError(f"{int(df[id_col].isna().sum())} row(s) without a patient id (e.g. rows {rows})", where=source, fix=f"fill '{id_col}'")
    patient_cols = [c for c in df.columns if c not in slide_cols and c != id_col]
    conflicts: dict[str, list[str]] = {}
    multi = df[df.duplicated(id_col, keep=False)]
    if len(multi):
        nun = multi.groupby(id_col, sort=False)[patient_cols].nunique(dropna=False)
        bad = nun > 1
        for pid in nun.index[bad.any(axis=1)]:
            conflicts[str(pid)] = [c for c in patient_cols if bad.at[pid, c]]
    patients = df.drop(columns=slide_cols).drop_duplicates(id_col, keep="first").set_index(id_col)
    patients.index = patients.index.astype(str)
    slides = df[[id_col, *slide_cols]].reset_index(drop=True)
    return patients, slides, conflicts


def split_omics_columns(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """PORPOISE wide table -> ``{"rna": ..., "cnv": ..., "mut": ...}`` with gene-symbol columns.

    Only modalities with at least one column are returned (UCEC has no ``_rnaseq`` columns;
    KIRP, LUSC and SKCM have no ``_cnv`` columns). Values are float32.
    """
    from modaltune.data.omics import split_porpoise_columns

    out = {name: block.astype(np.float32) for name, block in split_porpoise_columns(table).items()}
    return {name: out[name] for name in OMICS_SUFFIXES if name in out}


def pool_omics(
    parts: dict[str, dict[str, pd.DataFrame]],
) -> tuple[dict[str, pd.DataFrame], dict[str, dict], dict[str, str]]:
    """Pool per-source omics blocks (``{source: {modality: table}}``) into one table per modality.

    Policy: the columns of a pooled modality are the genes shared by **every source that has
    that modality** (no gene is imputed); patients from a source without the modality simply
    lack it (a missing modality, recorded, not dropped). A modality no source has, or whose
    shared gene set is empty, is absent.

    Returns ``(tables, report, absent)``: ``report[modality]`` gives kept column count and the
    per-source column counts; ``absent[modality]`` gives the reason a modality is absent.
    """
    tables: dict[str, pd.DataFrame] = {}
    report: dict[str, dict] = {}
    absent: dict[str, str] = {}
    for name in OMICS_SUFFIXES:
        have = {s: blocks[name] for s, blocks in parts.items() if name in blocks}
        lacking = sorted(s for s in parts if name not in parts[s])
        if not have:
            absent[name] = f"no '{OMICS_SUFFIXES[name]}' columns in the {'/'.join(sorted(parts))} table(s)"
            continue
        first = next(iter(have.values()))
        shared = [c for c in first.columns if all(c in t.columns for t in have.values())]
        report[name] = {
            "columns": len(shared),
            "source_columns": {s: int(t.shape[1]) for s, t in have.items()},
            "sources_without": lacking,
        }
        if not shared:
            absent[name] = f"the {'/'.join(sorted(have))} tables share no '{OMICS_SUFFIXES[name]}' gene"
            continue
        tables[name] = pd.concat([t[shared] for t in have.values()], axis=0)
        tables[name].index.name = "patient_id"
    return tables, report, absent


def feature_path(features_dir: str, slide_name: str, ext: str = ".h5") -> str:
    """Expected patch-feature file of a slide: ``<features_dir>/<slide stem><ext>``.

    ``TCGA-3C-AALI-01Z-00-DX1.<uuid>.svs`` -> ``features/TCGA-3C-AALI-01Z-00-DX1.<uuid>.h5``
    (the name TRIDENT gives its output). Paths are relative to the cohort directory unless
    ``features_dir`` is absolute.
    """
    root, ext0 = os.path.splitext(slide_name)
    stem = root if ext0.lower() in (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn") else slide_name
    return f"{features_dir.rstrip('/')}/{stem}{ext}"


def resolve_bag_suffixes(paths: Iterable[str], base: str | Path | None) -> tuple[list[str], dict]:
    """Expected bag paths with the suffix of the files actually found on disk.

    The importers expect ``<features_dir>/<slide stem>.h5`` (TRIDENT); a folder of CLAM ``.pt``
    bags would then be listed as missing ``.h5`` files. For each path (relative to ``base``
    unless absolute) whose file is absent, a file with the same stem and another bag suffix
    (:data:`~modaltune.data.bags.BAG_SUFFIXES`) is used when it exists; when none exists, the
    suffix most common in that folder (if it holds any bag) is assumed. Returns ``(paths,
    report)`` with ``report = {"found": {suffix: n}, "assumed": {suffix: n}}``.
    """
    from modaltune.data.bags import BAG_SUFFIXES

    base_p = Path(base) if base is not None else Path.cwd()
    listing: dict[Path, dict[str, str]] = {}  # folder -> stem -> suffix of the bag files in it

    def folder(d: Path) -> dict[str, str]:
        if d not in listing:
            found: dict[str, str] = {}
            if d.is_dir():
                for f in sorted(d.iterdir()):
                    suf = f.suffix.lower()
                    if suf in BAG_SUFFIXES and f.is_file():
                        found.setdefault(f.stem, f.suffix)
            listing[d] = found
        return listing[d]

    out, found_n, assumed_n = [], {}, {}
    for p in paths:
        rel = Path(str(p))
        full = rel if rel.is_absolute() else base_p / rel
        stem, suf = rel.stem, rel.suffix
        have = folder(full.parent)
        if full.exists() or not have:
            out.append(str(p))
            continue
        if stem in have:
            new = have[stem]
            found_n[new] = found_n.get(new, 0) + 1
        else:
            new = pd.Series(list(have.values())).mode().iloc[0]
            assumed_n[new] = assumed_n.get(new, 0) + 1
        out.append(str(rel.with_suffix(new)) if suf else str(p) + new)
    return out, {"found": found_n, "assumed": assumed_n}


#: words in a survival time/event column name -> the endpoint they stand for (checked in order)
_ENDPOINT_WORDS = (
    ("dmfs", "distant metastasis-free survival"),
    ("pfs", "progression-free survival"),
    ("pfi", "progression-free interval"),
    ("dss", "disease-specific survival"),
    ("dfs", "disease-free survival"),
    ("dfi", "disease-free interval"),
    ("rfs", "relapse-free survival"),
    ("efs", "event-free survival"),
    ("os", "overall survival"),
    ("overall", "overall survival"),
)


def endpoint_from_columns(*names: str) -> str:
    """Survival endpoint read from column/task names (``OS.time`` -> ``overall survival``,
    ``PFI.time`` -> ``progression-free interval``, ``DMFS_days`` -> ``distant metastasis-free
    survival``); ``"survival"`` when no name says which (never guessed as overall survival)."""
    import re

    for name in names:
        words = [w for w in re.split(r"[^a-z]+", str(name).lower()) if w]
        for key, endpoint in _ENDPOINT_WORDS:
            if key in words:
                return endpoint
    return "survival"


def drop_duplicate_columns(df: pd.DataFrame, header: list[str], source: str | Path) -> tuple[pd.DataFrame, list[dict]]:
    """Keep the first of each repeated column name (``header``: the names as written in the file;
    pandas read the repeats as ``NAME.1``, ``NAME.2``). Returns ``(table, record)``; the record
    lists each repeated name, its number of copies, the columns dropped and whether their values
    equal the kept column's, for ``cohort.yaml`` ``extra.duplicate_columns``."""
    if len(header) != df.shape[1]:  # header not aligned with the parsed columns: nothing to match
        return df, []
    seen: dict[str, int] = {}
    for name in header:
        seen[name] = seen.get(name, 0) + 1
    record = []
    drop = []
    cols = list(df.columns)
    for name, n in seen.items():
        if n < 2:
            continue
        idx = [i for i, h in enumerate(header) if h == name]
        kept = df.iloc[:, idx[0]]
        dropped_names = [cols[i] for i in idx[1:]]
        same = all(kept.equals(df.iloc[:, i]) for i in idx[1:])
        record.append({"column": name, "copies": n, "kept": "first", "dropped": dropped_names, "identical": bool(same)})
        drop += idx[1:]
    if not drop:
        return df, []
    keep = [i for i in range(df.shape[1]) if i not in set(drop)]
    return df.iloc[:, keep], record
