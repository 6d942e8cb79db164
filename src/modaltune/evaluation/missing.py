"""Missing-modality protocol (DisPro, CVPR 2025; PROTOCOLS.md section C) as benchmark settings.

A *setting* names which fraction of patients lose their slide and their omics, e.g. ``W20_O40``
(20 % without slide, 40 % without omics). ``evaluation.missing`` in a benchmark config lists
settings as strings (``"W0_O60"``), dicts (``{slide: 0.2, omics: 0.4, name: optional}``) or DisPro
split folders (``{dispro: PATH, setting: W20_O40}``, the per-fold files of the DisPro repository).

Masks (:func:`setting_mask`):

- are drawn per fold and per partition (train / val / test separately, so each partition of each
  fold loses ``floor(rate * n + 0.5)`` patients' modality: the rate holds within one patient per
  partition);
- depend only on (setting name, fold index, split seed) and the sorted patient ids: never on the
  method or the training seed, so every method and seed of a setting sees the same patients masked;
- draw the slide and omics subsets disjoint when ``W + O <= 1`` (as DisPro's files: no patient
  loses both by the protocol), overlapping as little as possible otherwise.

:func:`mask_cohort` applies a mask at the data layer: the masked patients' slide rows / omics rows
are removed from a copy of the cohort, exactly as if the files never existed, so the engine's
modality masks treat them like naturally missing data. Patients are never removed: a patient
missing both after masking stays in training and in the tables and is counted
(:func:`mask_counts`).

Methods (:func:`refusal`): a method runs in every setting that leaves some training patients with
each modality kind it reads; a setting that drops a kind the method reads for every patient
(rate 1) refuses it with a one-line reason.
"""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modaltune.errors import ConfigError, InputError

__all__ = [
    "MissingSetting",
    "parse_setting",
    "parse_settings",
    "setting_seed",
    "setting_mask",
    "read_dispro_fold",
    "mask_cohort",
    "mask_counts",
    "refusal",
    "MASK_COLUMNS",
]

#: columns of a mask frame (index ``patient_id``)
MASK_COLUMNS = ("partition", "drop_slide", "drop_omics")
_NAME = re.compile(r"^W(\d{1,3})_O(\d{1,3})$")
_PARTS = ("train", "val", "test")


class MissingSetting(BaseModel):
    """One missing-modality setting: ``slide`` / ``omics`` rates in [0, 1], or a DisPro folder.

    ``name`` defaults to ``W<slide%>_O<omics%>``; with ``dispro`` the rates are read from the
    setting name (``W20_O40``) and the patients from the folder's ``*_fold_<k>_<setting>.csv``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    slide: float = Field(0.0, ge=0.0, le=1.0)
    omics: float = Field(0.0, ge=0.0, le=1.0)
    dispro: str | None = None

    @model_validator(mode="after")
    def _name(self) -> MissingSetting:
        if not self.name:
            object.__setattr__(self, "name", f"W{round(self.slide * 100)}_O{round(self.omics * 100)}")
        if not re.fullmatch(r"[A-Za-z0-9_.+=-]+", self.name):
            raise ValueError(f"missing setting name {self.name!r} may use letters, digits and _ . + = - only")
        return self


def _rates(name: str, where: str) -> tuple[float, float]:
    m = _NAME.match(name)
    if not m:
        raise ConfigError(f"missing-modality setting {name!r} is not of the form W<slide %>_O<omics %>", where=where, fix="write e.g. W0_O60 or W20_O40, or a dict {slide: 0.2, omics: 0.4}")
    w, o = int(m.group(1)), int(m.group(2))
    if w > 100 or o > 100:
        raise ConfigError(f"missing-modality setting {name!r} has a rate above 100 %", where=where, fix="use percentages 0..100")
    return w / 100, o / 100


def parse_setting(item: str | dict[str, Any] | MissingSetting, where: str = "evaluation.missing") -> MissingSetting:
    """A :class:`MissingSetting` from ``"W20_O40"``, ``{slide, omics[, name]}`` or ``{dispro, setting}``."""
    if isinstance(item, MissingSetting):
        return item
    if isinstance(item, str):
        w, o = _rates(item, where)
        return MissingSetting(name=item, slide=w, omics=o)
    if isinstance(item, dict):
        d = dict(item)
        if "dispro" in d:
            setting = d.pop("setting", None)
            extra = sorted(set(d) - {"dispro", "name"})
            if setting is None or extra:
                raise ConfigError(f"a DisPro setting needs exactly 'dispro' and 'setting' (got keys {sorted(item)})", where=where, fix="write {dispro: PATH/TO/csv_missing_cleaned/BLCA, setting: W20_O40}")
            w, o = _rates(str(setting), where)
            return MissingSetting(name=str(d.get("name") or setting), slide=w, omics=o, dispro=str(d["dispro"]))
        try:
            return MissingSetting.model_validate(d)
        except ValidationError as exc:  # pydantic's message, on one line
            raise ConfigError(f"bad missing-modality setting {item}: {str(exc).splitlines()[-1].strip()}", where=where, fix="write {slide: 0.2, omics: 0.4} with rates in [0, 1]") from None
    raise ConfigError(f"a missing-modality setting must be a string or a dict, got {item!r}", where=where, fix="write e.g. W20_O40")


def parse_settings(items: list[Any] | None, where: str = "evaluation.missing") -> list[MissingSetting]:
    """Parsed settings in config order; duplicate names raise ConfigError."""
    out = [parse_setting(x, f"{where}[{i}]") for i, x in enumerate(items or [])]
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"missing-modality setting {dup[0]!r} is listed twice", where=where, fix="give each setting a distinct name")
    return out


def setting_seed(name: str, fold: int, split_seed: int) -> int:
    """The random seed of one setting's mask on one fold: a hash of (name, fold, split seed) only."""
    return int.from_bytes(hashlib.sha256(f"{name}|{int(fold)}|{int(split_seed)}".encode()).digest()[:8], "little")


def _count(rate: float, n: int) -> int:
    return int(math.floor(rate * n + 0.5))  # round half up (Python's round is half-to-even)


def _draw(ids: list[str], w: float, o: float, rng: np.random.Generator) -> tuple[set[str], set[str]]:
    n = len(ids)
    kw, ko = _count(w, n), _count(o, n)
    perm = [ids[i] for i in rng.permutation(n)]
    slide = set(perm[:kw])
    # disjoint while they fit (DisPro's files never drop both), else as little overlap as possible
    omics = set(perm[kw:kw + ko]) if kw + ko <= n else set(perm[n - ko:])
    return slide, omics


def setting_mask(setting: MissingSetting, fold: Any, split_seed: int) -> pd.DataFrame:
    """The mask of ``setting`` on ``fold``: index ``patient_id``, columns ``partition``,
    ``drop_slide``, ``drop_omics`` (bool), one row per patient of the fold.

    Drawn per partition from the sorted ids with :func:`setting_seed`; DisPro settings read the
    folder's file for this fold (:func:`read_dispro_fold`).
    """
    rows = []
    if setting.dispro:
        theirs = read_dispro_fold(setting.dispro, fold.index, setting.name)
        for part in _PARTS:
            for pid in getattr(fold, part):
                r = theirs.loc[pid] if pid in theirs.index else None
                rows.append((str(pid), part, bool(r is not None and r["drop_slide"]), bool(r is not None and r["drop_omics"])))
    else:
        rng = np.random.default_rng(setting_seed(setting.name, fold.index, split_seed))
        for part in _PARTS:
            ids = sorted(map(str, getattr(fold, part)))
            s, o = _draw(ids, setting.slide, setting.omics, rng)
            rows += [(p, part, p in s, p in o) for p in ids]
    return pd.DataFrame(rows, columns=["patient_id", *MASK_COLUMNS]).set_index("patient_id")


def _dispro_file(folder: Path, fold: int, name: str) -> Path:
    hits = sorted(folder.glob(f"*_fold_{int(fold)}_{name}.csv"))
    if not hits:
        raise InputError(f"no DisPro split file *_fold_{fold}_{name}.csv in {folder}", where=folder, fix="point 'dispro' at a study folder of csv_missing_cleaned/ (e.g. csv_missing_cleaned/BLCA)")
    if len(hits) > 1:
        raise InputError(f"{len(hits)} DisPro split files match fold {fold} / {name} in {folder}: {[h.name for h in hits]}", where=folder, fix="keep one study per folder")
    return hits[0]


def read_dispro_fold(folder: str | Path, fold: int, name: str) -> pd.DataFrame:
    """DisPro's per-fold missing-modality file ``<folder>/<STUDY>_fold_<fold>_<name>.csv`` as a mask.

    Their columns: ``ID`` (TCGA case id), ``WSI`` / ``Omics`` (file name; an empty cell = missing),
    ``Split`` (train / val). Returns index ``patient_id`` (= ``ID``), columns ``partition``
    (their ``Split``), ``drop_slide``, ``drop_omics``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"DisPro split folder {folder} does not exist", where="evaluation.missing.dispro", fix="give the folder holding <STUDY>_fold_<k>_W<w>_O<o>.csv files")
    path = _dispro_file(folder, fold, name)
    df = pd.read_csv(path, dtype={"ID": str, "WSI": str, "Omics": str, "Split": str}, keep_default_na=True)
    lack = [c for c in ("ID", "WSI", "Omics", "Split") if c not in df.columns]
    if lack:
        raise InputError(f"DisPro split file lacks column(s) {lack} (has {list(df.columns)})", where=path, fix="use the csv_missing_cleaned files of the DisPro repository")
    if df["ID"].duplicated().any():
        raise InputError(f"case id {df.loc[df['ID'].duplicated(), 'ID'].iloc[0]} appears twice", where=path, fix="one row per case")
    empty = lambda s: s.isna() | (s.astype(str).str.strip() == "")
    return pd.DataFrame({"partition": df["Split"].str.strip().to_numpy(), "drop_slide": empty(df["WSI"]).to_numpy(), "drop_omics": empty(df["Omics"]).to_numpy()},
                        index=pd.Index(df["ID"].str.strip(), name="patient_id"))


def mask_cohort(cohort: Any, mask: pd.DataFrame) -> Any:
    """A copy of ``cohort`` whose masked patients have no slide rows (``drop_slide``) and no omics
    rows in any omics table (``drop_omics``). Patient table, clinical, text and tasks are unchanged,
    so no patient is removed."""
    from modaltune.data.cohort import Cohort

    no_slide = set(mask.index[mask["drop_slide"].to_numpy(bool)])
    no_omics = set(mask.index[mask["drop_omics"].to_numpy(bool)])
    slides = cohort.slides[~cohort.slides["patient_id"].astype(str).isin(no_slide)].reset_index(drop=True) if len(cohort.slides) else cohort.slides
    omics = {k: v[~v.index.astype(str).isin(no_omics)] for k, v in cohort.omics.items()}
    out = Cohort(cohort.manifest, cohort.patients, slides=slides, omics=omics, clinical=cohort.clinical, text=cohort.text,
                 excluded=cohort.excluded, ground_truth=cohort.ground_truth, root=cohort.root)
    out.splits = dict(cohort.splits)
    return out


def mask_counts(cohort: Any, masked: Any, mask: pd.DataFrame) -> dict[str, Any]:
    """Counts of one masked fold, per partition: patients, slides / omics dropped by the protocol,
    and patients left with neither slide nor omics (natural + protocol; they stay in the tables)."""
    kinds = {m.name: m.kind for m in cohort.modalities}
    av = masked.availability(check_files=False)
    slide_cols = [n for n, k in kinds.items() if k == "slide" and n in av]
    omics_cols = [n for n, k in kinds.items() if k == "omics" and n in av]
    has_slide = av[slide_cols].any(axis=1) if slide_cols else pd.Series(False, index=av.index)
    has_omics = av[omics_cols].any(axis=1) if omics_cols else pd.Series(False, index=av.index)
    out: dict[str, Any] = {}
    for part, g in mask.groupby("partition", sort=False):
        ids = [p for p in g.index if p in av.index]
        neither = (~has_slide.loc[ids] & ~has_omics.loc[ids]) if ids else pd.Series([], dtype=bool)
        out[str(part)] = {"patients": len(g), "slide_dropped": int(g["drop_slide"].sum()), "omics_dropped": int(g["drop_omics"].sum()),
                          "neither_slide_nor_omics": int(neither.sum()), "not_in_cohort": len(g) - len(ids)}
    return out


def refusal(entry: Any, setting: MissingSetting, modalities: list[str] | None = None) -> str | None:
    """One-line reason why method ``entry`` (a registry ``MethodEntry``) cannot run in ``setting``,
    or None when it runs. ``modalities`` = the kinds the method reads (default its declared ones).

    A kind dropped for every patient (rate 1) refuses a method that reads it: a method that
    ``requires`` it has nothing to learn from, and the others would fit a scaler / encoder on no
    training patient. Partial rates run: the engine masks absent modalities per patient.
    """
    reads = set(modalities or entry.modalities or ())
    for kind, rate in (("slide", setting.slide), ("omics", setting.omics)):
        if rate >= 1.0 and kind in reads:
            why = "requires" if kind in entry.requires else "reads"
            return f"method '{entry.name}' {why} {kind} data and setting {setting.name} drops it for every patient"
    return None
