"""Apply a fitted model to new data without a cohort directory: feature files, or raw slides.

``predict_features(fitted, "feats/")`` reads TRIDENT/CLAM ``.h5`` or ``.pt`` bags (a folder or one
file), one prediction row per file x task (``patient_id`` = the file stem), with optional omics /
clinical tables indexed by that id. ``predict_slides(fitted, "slides/", work_dir)`` first extracts
patch features with the model's recorded patch encoder and tiling (``FittedModel.slide_features``,
saved in ``fitted.json``), then predicts. Features made by another encoder, or of another width,
are refused up front with one line naming the file.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from modaltune.errors import InputError

__all__ = ["check_features", "feature_files", "features_cohort", "predict_features", "predict_slides"]


def feature_files(features: str | Path) -> list[Path]:
    """The bag files of ``features``: one ``.h5``/``.pt`` file, or every one in a folder (sorted)."""
    from modaltune.data.bags import BAG_SUFFIXES

    p = Path(features)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise InputError("feature file or folder not found", where=p, fix="pass a folder of .h5/.pt files or one file")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in BAG_SUFFIXES and not f.name.endswith(".tmp"))
    if not files:
        raise InputError(f"no feature files ({', '.join(BAG_SUFFIXES)}) in the folder", where=p, fix="run `modaltune extract` first, or pass --slides")
    return files


def check_features(fitted: Any, files: list[Path]) -> None:
    """Refuse bags whose width or patch encoder differs from the model's (header only, no features read)."""
    from modaltune.data.bags import open_bag

    rec = fitted.slide_features
    if rec is None:
        raise InputError(f"model '{fitted.method.name}' has no slide input: slide features cannot be predicted from", where="MODEL",
                         fix="predict it from a cohort directory (modaltune predict MODEL COHORT_DIR)")
    want_dim, want_enc = rec.get("feature_dim"), rec.get("encoder")
    for f in files:
        h = open_bag(f)
        if want_dim is not None and h.dim != want_dim:
            raise InputError(f"features are {h.dim}-d (encoder '{h.encoder}') but the model was trained on {want_dim}-d features of encoder '{want_enc}'",
                             where=f, fix=f"extract the slides with --encoder {want_enc} (or use `modaltune predict MODEL --slides DIR`)")
        if want_enc is not None and h.encoder is not None and h.encoder != want_enc:
            raise InputError(f"features come from encoder '{h.encoder}' but the model was trained on encoder '{want_enc}' features",
                             where=f, fix=f"extract the slides with --encoder {want_enc} (or use `modaltune predict MODEL --slides DIR`)")


def _read_table(t: str | Path | pd.DataFrame, what: str) -> pd.DataFrame:
    if isinstance(t, pd.DataFrame):
        df = t
    else:
        path = Path(t)
        if not path.exists():
            raise InputError(f"{what} table not found", where=path)
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, sep="\t" if path.suffix in (".tsv", ".txt") else ",")
        if "patient_id" in df.columns:
            df = df.set_index("patient_id")
        elif df.columns[0].lower() in ("", "unnamed: 0", "id", "sample", "case_id"):
            df = df.set_index(df.columns[0])
    df.index = df.index.astype(str)
    df.index.name = "patient_id"
    return df


def _match_rows(tab: pd.DataFrame, ids: list[str], what: str) -> pd.DataFrame:
    """Rows of ``tab`` for the file stems ``ids``: the row named like the stem, else the one row whose
    id starts the stem followed by ``-``, ``_`` or ``.`` (a TCGA patient id for its slide files);
    rows are re-labelled with the stems. Stems without a row are left out (the block is missing)."""
    index = list(tab.index)
    keep, labels = [], []
    for i in ids:
        if i in tab.index:
            keep.append(i)
            labels.append(i)
            continue
        hits = [t for t in index if i.startswith(t) and len(i) > len(t) and i[len(t)] in "-_."]
        if len(hits) > 1:
            raise InputError(f"file '{i}' matches several rows of the {what} table: {hits[:3]}", where=what, fix="name the table rows exactly like the feature files")
        if hits:
            keep.append(hits[0])
            labels.append(i)
    out = tab.loc[keep].copy()
    out.index = pd.Index(labels, name="patient_id")
    return out


def features_cohort(fitted: Any, features: str | Path, *, omics: Mapping[str, Any] | None = None, clinical: Any = None):
    """An in-memory cohort over feature files with the model's modality names and task specs.

    Each file is one patient (``patient_id`` = file stem); ``omics`` maps the model's omics block
    names to tables (path or DataFrame, rows = ids, columns = genes; absent ids/blocks are treated
    as missing), ``clinical`` is a table of the model's raw clinical fields. A table row matches the
    file of the same stem, or files whose stem starts with its id and ``-``/``_``/``.`` (patient
    ``TCGA-AB-1234`` for ``TCGA-AB-1234-01Z-00-DX1.h5``). No label columns: predictions only.
    """
    from modaltune.data.cohort import Cohort, CohortManifest, ModalitySpec

    pp = fitted.preprocessor
    files = feature_files(features)
    check_features(fitted, files)
    ids = [f.stem for f in files]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"two feature files share the stem(s) {dup[:3]}: one row per file needs unique names", where=features, fix="rename the files")
    rec = fitted.slide_features
    omics = dict(omics or {})
    unknown = [k for k in omics if k not in pp.omics_modalities]
    if unknown:
        raise InputError(f"the model reads no omics block {unknown}", where="--omics", fix=f"use the model's blocks {pp.omics_modalities}")
    mods = [ModalitySpec(name=rec["modality"], kind="slide", feature_dim=rec["feature_dim"], encoder=rec["encoder"])]
    mods += [ModalitySpec(name=m, kind="omics") for m in pp.omics_modalities]
    if pp.clinical_modality:
        mods.append(ModalitySpec(name=pp.clinical_modality, kind="clinical"))
    if pp.text_modality:
        mods.append(ModalitySpec(name=pp.text_modality, kind="text"))
    fields = list(pp.clinical_encoder.fields) if pp.clinical_modality else []
    manifest = CohortManifest(name="new_slides", tasks=list(pp.task_specs), modalities=mods, clinical_fields=fields)
    patients = pd.DataFrame({"patient_id": ids, "site": "new"})
    slides = pd.DataFrame({"patient_id": ids, "slide_id": ids, "path": [str(f.resolve()) for f in files]})
    om = {}
    for m in pp.omics_modalities:
        cols = list(pp.scalers[m].columns or [])
        tab = _read_table(omics[m], f"omics '{m}'") if m in omics else pd.DataFrame(columns=cols, dtype=float)
        missing = [c for c in cols if c not in tab.columns]
        if m in omics and missing:
            raise InputError(f"omics table '{m}' lacks {len(missing)} of the model's {len(cols)} features, e.g. {missing[:3]}", where="--omics",
                             fix="give every gene the model was trained on (same column names)")
        om[m] = _match_rows(tab, ids, f"omics '{m}'").reindex(columns=cols).astype(float)
        om[m].index.name = "patient_id"
    clin = None
    if pp.clinical_modality:
        names = [f.name for f in fields]
        clin = _read_table(clinical, "clinical") if clinical is not None else pd.DataFrame(columns=names)
        clin = _match_rows(clin, ids, "clinical").reindex(index=ids, columns=names)
        clin.index.name = "patient_id"
    return Cohort(manifest, patients, slides=slides, omics=om, clinical=clin)


def predict_features(fitted: Any, features: str | Path, *, omics: Mapping[str, Any] | None = None, clinical: Any = None) -> pd.DataFrame:
    """Predictions for every feature file: one row per file x task (columns of :func:`predict`)."""
    from modaltune.training.trainer import predict

    cohort = features_cohort(fitted, features, omics=omics, clinical=clinical)
    return predict(fitted, cohort, with_targets=False)


def predict_slides(fitted: Any, slides: str | Path, work_dir: str | Path, *, omics: Mapping[str, Any] | None = None, clinical: Any = None,
                   weights: str | Path | None = None, device: str = "auto", progress: bool = False, **extract_kw: Any) -> pd.DataFrame:
    """Extract patch features of ``slides`` with the model's recorded encoder and tiling into
    ``work_dir/features``, then :func:`predict_features` (slides without tissue get no row)."""
    from modaltune.preprocess.pipeline import extract_features

    rec = fitted.slide_features
    if rec is None:
        check_features(fitted, [])  # raises the no-slide-input error
    enc = rec.get("encoder")
    from modaltune.errors import ModaltuneError
    from modaltune.preprocess.encoders import get_patch_encoder_spec

    try:
        get_patch_encoder_spec(enc)
    except (ModaltuneError, AttributeError):
        raise InputError(f"the model was trained on features of encoder '{enc}', which `modaltune extract` cannot make", where="MODEL",
                         fix="extract the features with the tool that made the training features, then use --features") from None
    kw: dict[str, Any] = {"patch_size": int(rec.get("patch_size") or 256), "magnification": float(rec.get("target_magnification") or 20.0)}
    kw.update(extract_kw)
    out = Path(work_dir) / "features"
    summary = extract_features(slides, out, encoder=enc, weights=weights, device=device, progress=progress, no_tissue="skip", **kw)
    failed = [r for r in summary.slides if r.status == "failed"]
    if failed:
        raise InputError(f"feature extraction failed for {len(failed)} slide(s): {failed[0].error}", where=failed[0].slide, fix=f"see {out}/summary.md")
    return predict_features(fitted, out, omics=omics, clinical=clinical)
