"""Omics tables: Xena / PORPOISE readers, pathway tokenisation and train-only scaling.

Tables are ``pandas.DataFrame`` with one row per patient (index ``patient_id``) and one column per
gene (symbol). Each omics type (rna, cnv, mut, ...) is its own modality and its own table.

Duplicate samples of one patient (Xena matrices hold one column per *sample*, and a patient may
have a tumour and a normal sample, or two tumour portions) are resolved by one documented rule,
:func:`resolve_duplicate_samples`: primary tumour (sample type ``01``) beats other tumour types
(``02``-``09``), which beat normal tissue (``10``-``19``), which beat anything else (controls,
``20``+); ties are broken by the lexicographically smallest barcode. Dropped samples are returned
in ``df.attrs["dropped_samples"]``, never dropped silently.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from modaltune.data._files import ensure_readable
from modaltune.errors import InputError

__all__ = [
    "read_xena_matrix",
    "resolve_duplicate_samples",
    "tcga_patient_id",
    "tcga_sample_type",
    "split_porpoise_columns",
    "split_suffix_columns",
    "PORPOISE_SUFFIXES",
    "PathwaySet",
    "PathwayTokens",
    "read_gmt",
    "read_pathway_matrix",
    "read_pathways",
    "tokenize_pathways",
    "table_genes",
    "OmicsScaler",
]

log = logging.getLogger(__name__)

_TCGA_RE = re.compile(r"^(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})(?:-(\d{2})([A-Z])?)?", re.IGNORECASE)


# ------------------------------------------------------------------------------------ TCGA barcodes
def tcga_patient_id(barcode: str) -> str:
    """Patient id of a TCGA barcode: its first 12 characters (``TCGA-XX-XXXX``); other ids unchanged."""
    m = _TCGA_RE.match(str(barcode).strip())
    return m.group(1).upper() if m else str(barcode).strip()


def tcga_sample_type(barcode: str) -> int | None:
    """Sample type code (characters 14-15, e.g. 1 = primary tumour, 11 = solid normal), or None."""
    m = _TCGA_RE.match(str(barcode).strip())
    return int(m.group(2)) if m and m.group(2) else None


def _sample_rank(barcode: str) -> int:
    """0 primary tumour (01) < 1 other tumour (02-09) < 2 normal (10-19) < 3 other / unknown."""
    t = tcga_sample_type(barcode)
    if t == 1:
        return 0
    if t is not None and 2 <= t <= 9:
        return 1
    if t is not None and 10 <= t <= 19:
        return 2
    return 3


def resolve_duplicate_samples(barcodes: list[str]) -> tuple[dict[str, str], pd.DataFrame]:
    """Pick one sample per patient.

    Rule: lowest rank (primary tumour 01 > other tumour 02-09 > normal 10-19 > other), then the
    lexicographically smallest barcode.

    Returns:
        ``kept``: patient id -> chosen sample barcode; ``dropped``: DataFrame with columns
        ``sample, patient_id, kept_sample, reason`` (one row per sample not used).
    """
    by_patient: dict[str, list[str]] = {}
    for b in barcodes:
        by_patient.setdefault(tcga_patient_id(b), []).append(str(b))
    kept, rows = {}, []
    for pid, samples in by_patient.items():
        ordered = sorted(samples, key=lambda s: (_sample_rank(s), s))
        kept[pid] = ordered[0]
        for s in ordered[1:]:
            reason = (
                f"sample type rank {_sample_rank(s)} worse than {_sample_rank(ordered[0])}"
                if _sample_rank(s) > _sample_rank(ordered[0])
                else "same sample type; lexicographically later barcode"
            )
            rows.append((s, pid, ordered[0], reason))
    return kept, pd.DataFrame(rows, columns=["sample", "patient_id", "kept_sample", "reason"])


def read_xena_matrix(path: str | Path) -> pd.DataFrame:
    """Read a UCSC Xena-style matrix (genes x samples, tab-separated, first column = gene).

    Returns a float32 DataFrame patients x genes (index ``patient_id``), one row per patient
    chosen by :func:`resolve_duplicate_samples`. ``df.attrs["dropped_samples"]`` lists the samples
    not used (with reasons), ``df.attrs["sample_of_patient"]`` the sample kept per patient.
    Duplicate gene rows are averaged (reported in ``df.attrs["duplicate_genes"]``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError("omics matrix not found", where=path, fix="check the path")
    if path.is_dir():
        raise InputError("expected a matrix file, found a directory", where=path, fix="point at the genes x samples TSV")
    ensure_readable(path)
    try:
        raw = pd.read_csv(path, sep="\t", index_col=0)
    except PermissionError as exc:
        raise InputError("file is unreadable (permission denied)", where=path, fix="make the file readable (chmod u+r) or run as its owner") from exc
    except Exception as exc:
        raise InputError(f"cannot read Xena matrix ({type(exc).__name__})", where=path, fix="expected a tab-separated genes x samples table") from exc
    if raw.shape[1] == 0:
        raise InputError("matrix has no sample columns", where=path, fix="expected a tab-separated genes x samples table (first column = gene)")
    raw.index = raw.index.astype(str).str.strip()
    try:
        raw = raw.apply(pd.to_numeric, errors="raise")
    except (ValueError, TypeError) as exc:
        raise InputError(f"non-numeric values in the matrix ({exc})", where=path, fix="every cell after the gene column must be a number or empty") from exc
    dup_genes = sorted(set(raw.index[raw.index.duplicated()]))
    if dup_genes:
        raw = raw.groupby(level=0, sort=False).mean()
    kept, dropped = resolve_duplicate_samples([str(c) for c in raw.columns])
    cols = list(kept.values())
    df = raw[cols].T.astype(np.float32)
    df.index = pd.Index(list(kept.keys()), name="patient_id")
    df.columns.name = None
    if len(dropped):
        log.info("%s: %d duplicate samples dropped (rule: primary tumour first)", path.name, len(dropped))
    df.attrs["dropped_samples"] = dropped
    df.attrs["sample_of_patient"] = dict(kept)
    df.attrs["duplicate_genes"] = dup_genes
    return df


# ------------------------------------------------------------------------------------ PORPOISE
PORPOISE_SUFFIXES = {"_rnaseq": "rna", "_cnv": "cnv", "_mut": "mut"}


def split_porpoise_columns(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split a PORPOISE wide table into omics blocks ``{"rna", "cnv", "mut"}`` (only those present).

    Columns ``<GENE>_rnaseq`` / ``<GENE>_cnv`` / ``<GENE>_mut`` are renamed to ``<GENE>``; other
    columns are ignored. Row index is kept as is.
    """
    return split_suffix_columns(df, PORPOISE_SUFFIXES)


def split_suffix_columns(df: pd.DataFrame, suffixes: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Omics blocks of a wide table by column suffix: ``suffixes`` maps suffix -> modality name
    (e.g. ``{"_rnaseq": "rna"}``); ``<GENE><suffix>`` columns become ``<GENE>``. Only modalities
    with at least one column are returned; other columns are ignored."""
    out: dict[str, pd.DataFrame] = {}
    for suffix, name in suffixes.items():
        cols = [c for c in df.columns if isinstance(c, str) and c.endswith(suffix) and len(c) > len(suffix)]
        if not cols:
            continue
        block = df[cols].copy()
        block.columns = [c[: -len(suffix)] for c in cols]
        out[name] = block
    return out


# ------------------------------------------------------------------------------------ pathways
@dataclass
class PathwaySet:
    """Pathway membership: ``members[name]`` = list of gene symbols (source order, unique)."""

    members: dict[str, list[str]]
    source: str = ""

    @property
    def names(self) -> list[str]:
        return list(self.members)

    def __len__(self) -> int:
        return len(self.members)

    @classmethod
    def from_matrix(cls, matrix: pd.DataFrame, source: str = "") -> PathwaySet:
        """From a genes x pathways 0/1 DataFrame (index = gene symbols)."""
        m = matrix.apply(pd.to_numeric, errors="coerce").fillna(0)
        genes = np.asarray([str(g).strip() for g in m.index])
        members = {}
        for col in m.columns:
            sel = genes[m[col].to_numpy() != 0]
            members[str(col)] = list(dict.fromkeys(sel.tolist()))
        return cls(members, source)


def read_pathway_matrix(path: str | Path) -> PathwaySet:
    """Read a genes x pathways 0/1 CSV (``shared/data/pathways``): first column named ``gene`` or unnamed."""
    path = Path(path)
    if not path.exists():
        raise InputError("pathway file not found", where=path, fix="check the path (e.g. ../shared/data/pathways/combine_comps.csv)")
    try:
        df = pd.read_csv(path, index_col=0)
    except Exception as exc:
        raise InputError(f"cannot read pathway matrix ({type(exc).__name__})", where=path, fix="expected a CSV genes x pathways of 0/1") from exc
    if df.shape[1] == 0:
        raise InputError("pathway matrix has no pathway columns", where=path, fix="expected a CSV genes x pathways of 0/1")
    vals = df.apply(pd.to_numeric, errors="coerce")
    bad = ~vals.isin([0, 1]) & df.notna()
    if bad.to_numpy().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        raise InputError(
            f"pathway matrix value {df.iat[r, c]!r} at gene '{df.index[r]}', pathway '{df.columns[c]}' is not 0/1",
            where=path,
            fix="membership cells must be 0 or 1",
        )
    return PathwaySet.from_matrix(vals, str(path))


def read_gmt(path: str | Path) -> PathwaySet:
    """Read a GMT file: one pathway per line, ``name<TAB>description<TAB>gene1<TAB>gene2...``."""
    path = Path(path)
    if not path.exists():
        raise InputError("GMT file not found", where=path, fix="check the path")
    members: dict[str, list[str]] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 2:
            raise InputError(f"line {lineno} has no tab-separated fields", where=path, fix="GMT lines are name<TAB>description<TAB>genes...")
        name = parts[0].strip()
        if name in members:
            raise InputError(f"pathway '{name}' appears twice (line {lineno})", where=path, fix="pathway names must be unique")
        members[name] = list(dict.fromkeys(g.strip() for g in parts[2:] if g.strip()))
    if not members:
        raise InputError("GMT file holds no pathways", where=path, fix="GMT lines are name<TAB>description<TAB>genes...")
    return PathwaySet(members, str(path))


def read_pathways(source: str | Path | pd.DataFrame | PathwaySet) -> PathwaySet:
    """A :class:`PathwaySet` from a ``.gmt`` file, a CSV matrix, a genes x pathways DataFrame or a PathwaySet."""
    if isinstance(source, PathwaySet):
        return source
    if isinstance(source, pd.DataFrame):
        df = source
        if "gene" in df.columns:
            df = df.set_index("gene")
        return PathwaySet.from_matrix(df, "DataFrame")
    path = Path(source)
    return read_gmt(path) if path.suffix.lower() == ".gmt" else read_pathway_matrix(path)


@dataclass
class PathwayTokens:
    """Pathway tokens over one omics table.

    Attributes:
        names: kept pathways (those with at least ``min_genes`` genes in the table), in source order.
        gene_index: per kept pathway, int64 column indices into the omics table (sorted).
        coverage: DataFrame indexed by ``pathway`` (ALL pathways, kept or not) with columns
            ``n_expected`` (genes in the pathway), ``n_found`` (genes in the table), ``fraction``.
        dropped: pathways left out because fewer than ``min_genes`` of their genes are in the table.
    """

    names: list[str]
    gene_index: list[np.ndarray]
    coverage: pd.DataFrame
    dropped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    def summary(self) -> str:
        n = len(self.coverage)
        genes = int(np.unique(np.concatenate(self.gene_index)).size) if self.gene_index else 0
        return f"{len(self.names)}/{n} pathways kept ({len(self.dropped)} dropped: too few genes in the table), {genes} table genes used"


def tokenize_pathways(membership: str | Path | pd.DataFrame | PathwaySet, genes: list[str] | pd.Index, *, min_genes: int = 1) -> PathwayTokens:
    """Per-pathway gene index lists into ``genes`` (the omics table's columns), with a coverage report.

    Genes are matched by exact symbol (whitespace stripped). Pathways with fewer than ``min_genes``
    genes present are dropped **and reported** (``dropped``, a warning in the log); never an error,
    never silent. Raises :class:`InputError` only if *no* pathway remains.
    """
    ps = read_pathways(membership)
    pos = {}
    for i, g in enumerate(genes):
        pos.setdefault(str(g).strip(), i)
    names, index, rows, dropped = [], [], [], []
    for name, members in ps.members.items():
        found = sorted({pos[g] for g in members if g in pos})
        n_exp = len(members)
        rows.append((name, n_exp, len(found), len(found) / n_exp if n_exp else 0.0))
        if len(found) >= max(min_genes, 1):
            names.append(name)
            index.append(np.asarray(found, dtype=np.int64))
        else:
            dropped.append(name)
    coverage = pd.DataFrame(rows, columns=["pathway", "n_expected", "n_found", "fraction"]).set_index("pathway")
    if not names:
        pw_genes = {g for members in ps.members.values() for g in members}
        raise InputError(
            f"none of the {len(ps)} pathways has >= {max(min_genes, 1)} gene(s) in the omics table ({len(pos)} genes; "
            f"overlap {len(pw_genes & set(pos))} of {len(pw_genes)} pathway genes)",
            where=ps.source or "pathways",
            fix="check that gene symbols match (e.g. use gene_pathway_xena_matched.csv for Xena naming)",
        )
    if dropped:
        log.warning("%d of %d pathways dropped: fewer than %d gene(s) in the omics table (see PathwayTokens.dropped)", len(dropped), len(ps), max(min_genes, 1))
    return PathwayTokens(names, index, coverage, dropped)


def table_genes(path: str | Path, index_col: str = "patient_id") -> list[str]:
    """Gene (column) names of an omics table (Parquet or CSV) in file order, without reading its values.

    ``index_col`` and pandas' stored index columns are left out, as :meth:`Cohort.load` makes them the
    index. Used by the config-load checks (a method's pathway / signature overlap) on whole TCGA tables.
    """
    path = Path(path)
    ensure_readable(path)
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            names = list(pq.read_schema(path).names)
        else:
            names = list(pd.read_csv(path, nrows=0).columns)
    except Exception as exc:  # unreadable / corrupt file
        raise InputError(f"cannot read the table's columns ({type(exc).__name__})", where=path, fix="check that the file is a valid CSV/Parquet table") from exc
    return [str(c) for c in names if c != index_col and not str(c).startswith("__index_level_")]


# ------------------------------------------------------------------------------------ scaling
class OmicsScaler:
    """Per-gene scaling fitted on training patients only.

    - ``zscore``: ``(x - mean) / std`` (population std of the training rows);
    - ``minmax``: ``(x - min) / (max - min)`` (evaluation values may fall outside [0, 1]; not clipped);
    - ``none``: values unchanged.

    Constant genes in training (std or range 0) map to 0. Missing cells (NaN) map to 0, i.e. to the
    training mean for ``zscore``. Output is float32 and never contains NaN/inf.

    Statistics are computed in float64 on each gene divided by its largest magnitude, so any finite
    input (even 1e300) gives a finite mean and std (no overflow of the squares). Cohorts are refused
    earlier (``validate_cohort``, also run before training) when a value is beyond the float32 range
    (|x| > 3.4e38), and warned about when one value is over 1e6 interquartile ranges from its gene's
    median (it would flatten the other patients of that gene).
    """

    def __init__(self, method: Literal["zscore", "minmax", "none"] = "zscore"):
        if method not in ("zscore", "minmax", "none"):
            raise InputError(f"unknown omics scaling '{method}'", fix="use 'zscore', 'minmax' or 'none'")
        self.method = method
        self.columns: list[str] | None = None
        self.center_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, train: pd.DataFrame) -> OmicsScaler:
        """Fit on the training patients' rows (patients x genes)."""
        if len(train) == 0:
            raise InputError("cannot fit omics scaling on 0 training patients", fix="check the split: no training patient has this omics modality")
        x = train.to_numpy(dtype=np.float64)
        x = np.where(np.isfinite(x), x, np.nan)
        with np.errstate(all="ignore"), _quiet():
            # overflow-safe: statistics of x / m with m = max |x| per gene (values in [-1, 1]),
            # scaled back by m, so a finite 1e300 cannot overflow the squares of the std
            m = np.nanmax(np.abs(x), 0)
            m = np.where(np.isfinite(m) & (m > 0), m, 1.0)
            u = x / m
            if self.method == "zscore":
                center, scale = np.nanmean(u, 0) * m, np.nanstd(u, 0) * m
            elif self.method == "minmax":
                center, scale = np.nanmin(x, 0), (np.nanmax(u, 0) - np.nanmin(u, 0)) * m
            else:
                center, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
        center = np.where(np.isfinite(center), center, 0.0)
        # scale 0 (constant gene) or NaN (all missing) -> 0 marks "output 0"
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 0.0)
        self.columns = [str(c) for c in train.columns]
        self.center_, self.scale_ = center, scale
        return self

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Scale rows with the training statistics; returns float32 with the fitted columns."""
        if self.columns is None:
            raise RuntimeError("OmicsScaler.transform called before fit")
        cols = [str(c) for c in df.columns]
        missing = [c for c in self.columns if c not in set(cols)]
        if missing:
            raise InputError(f"omics table lacks {len(missing)} fitted gene column(s), e.g. {missing[:3]}", fix="use the same gene columns as the training table")
        x = df.set_axis(cols, axis=1)[self.columns].to_numpy(dtype=np.float64)
        if self.method == "none":
            y = x
        else:
            const = self.scale_ == 0
            with np.errstate(all="ignore"):
                y = (x - self.center_) / np.where(const, 1.0, self.scale_)
            y[:, const] = 0.0
        y = np.where(np.isfinite(y), y, 0.0).astype(np.float32)
        return pd.DataFrame(y, index=df.index, columns=self.columns)

    def fit_transform(self, train: pd.DataFrame) -> pd.DataFrame:
        return self.fit(train).transform(train)


class _quiet:
    """Silence numpy's 'mean of empty slice' RuntimeWarnings for all-NaN columns (handled above)."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)
