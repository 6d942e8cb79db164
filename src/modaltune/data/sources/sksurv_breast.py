"""Importer of scikit-survival's bundled breast cancer cohort (GSE7390, Desmedt et al. 2007).

``sksurv.datasets.load_breast_cancer()`` ships with scikit-survival (a core dependency), so this
real cohort needs no download and no ``shared/`` folder. It holds 198 node-negative breast cancer
patients of the TRANSBIG validation study (GEO GSE7390): expression of 76 Affymetrix probes (the
"76-gene signature" of Wang et al. 2005), ``age`` (years), tumour ``size`` (cm), histological
``grade`` and oestrogen-receptor status ``er``; the outcome is distant-metastasis-free survival
(``t.tdm`` in days, event ``e.tdm``).

The cohort built by :func:`import_sksurv_breast`:

- patients ``GSE7390-001`` ... ``GSE7390-198`` (the bundled table has no identifiers; ids follow
  the row order of the bundled file, which is fixed per scikit-survival release);
- omics modality ``rna``: the 76 probe columns (log-scale expression as bundled);
- clinical fields ``age`` (numeric, years), ``size`` (numeric, cm), ``grade`` (ordinal: well,
  intermediate, poorly differentiated; the bundled value ``unkown`` becomes a missing cell, so the
  patient is kept and the field's 'missing' level encodes it). ``er`` is a *label*, never an input;
- task ``er_status`` (classification, classes ``negative``/``positive``) and task ``dmfs``
  (survival: distant-metastasis-free survival, time in days, event ``e.tdm``);
- split ``kfold5``: patient-level 5-fold CV (seed 0) stratified by ER status x event, so every
  held-out fold has both ER classes and events; held-out fold in ``test``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modaltune.errors import InputError

__all__ = ["GRADES", "import_sksurv_breast", "sksurv_breast_cohort_names", "load_sksurv_breast_table"]

#: Histological grades in increasing order (the bundled categorical's levels, minus 'unkown').
GRADES = ("well differentiated", "intermediate", "poorly differentiated")
_CLINICAL = ("age", "size", "grade")
_NAMES = ("gse7390",)


def sksurv_breast_cohort_names() -> list[str]:
    """Cohort names this importer accepts."""
    return list(_NAMES)


def load_sksurv_breast_table() -> pd.DataFrame:
    """The bundled table as one frame: 76 probe columns, ``age, size, grade, er``, ``time_days``, ``event``.

    Raises :class:`InputError` if scikit-survival is missing or its bundled file changed shape.
    """
    try:
        from sksurv.datasets import load_breast_cancer
    except ImportError as exc:  # pragma: no cover - scikit-survival is a core dependency
        raise InputError("scikit-survival is not installed", where="sksurv.datasets", fix="pip install scikit-survival") from exc
    X, y = load_breast_cancer()
    names = set(y.dtype.names or ())
    if not {"t.tdm", "e.tdm"} <= names:
        raise InputError(f"the bundled breast cancer outcome has fields {sorted(names)}, expected t.tdm and e.tdm", where="sksurv.datasets.load_breast_cancer", fix="use scikit-survival >= 0.22")
    missing = [c for c in (*_CLINICAL, "er") if c not in X.columns]
    if missing:
        raise InputError(f"the bundled breast cancer table lacks columns {missing}", where="sksurv.datasets.load_breast_cancer", fix="use scikit-survival >= 0.22")
    df = X.copy()
    df["time_days"] = np.asarray(y["t.tdm"], dtype=float)
    df["event"] = np.asarray(y["e.tdm"]).astype(float)
    df.index = [f"GSE7390-{i + 1:03d}" for i in range(len(df))]
    df.index.name = "patient_id"
    return df


def import_sksurv_breast(
    cohort: str = "gse7390",
    shared_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    *,
    n_folds: int = 5,
    seed: int = 0,
    overwrite: bool = False,
    **_: Any,
):
    """Build (and with ``out_dir`` write) the GSE7390 cohort; see the module docstring.

    Args:
        cohort: ``gse7390`` (the only cohort of this source).
        shared_dir: unused (the data ship with scikit-survival); accepted for the importer signature.
        out_dir: cohort directory to write (with ``splits/kfold<n_folds>.csv``).
        n_folds: folds of the stratified patient-level split.
        seed: split seed.
        overwrite: replace a cohort already in ``out_dir``.

    Returns:
        The :class:`~modaltune.data.cohort.Cohort`; ``cohort.splits`` holds ``kfold<n_folds>``.
    """
    from modaltune.data.cohort import ClinicalField, Cohort, CohortManifest, ModalitySpec, TaskSpec
    from modaltune.data.sources.porpoise import save_with_splits
    from modaltune.data.splits import kfold_split

    if str(cohort).lower().strip() not in _NAMES:
        raise InputError(f"unknown sksurv-breast cohort '{cohort}'", fix=f"use one of {list(_NAMES)}")
    df = load_sksurv_breast_table()
    probes = [c for c in df.columns if c not in (*_CLINICAL, "er", "time_days", "event")]
    rna = df[probes].astype(np.float32)
    rna.index.name = "patient_id"

    grade = df["grade"].astype(str)
    unknown_grade = ~grade.isin(GRADES)
    clinical = pd.DataFrame(
        {"age": df["age"].astype(float), "size": df["size"].astype(float), "grade": grade.where(~unknown_grade, None)},
        index=df.index,
    )
    er = df["er"].astype(str)
    bad_er = sorted(set(er) - {"negative", "positive"})
    if bad_er:
        raise InputError(f"unexpected ER values {bad_er}", where="sksurv breast cancer table, column er", fix="update the importer's class list")
    patients = pd.DataFrame({"site": "BRCA", "er_status": er, "time_days": df["time_days"], "event": df["event"]}, index=df.index)

    tasks = [
        TaskSpec(name="er_status", kind="classification", label_column="er_status", classes=["negative", "positive"],
                 description="Predict oestrogen-receptor status (negative / positive) of node-negative breast cancer."),
        TaskSpec(name="dmfs", kind="survival", time_column="time_days", event_column="event", endpoint="distant-metastasis-free survival",
                 time_unit="days", description="Predict distant-metastasis-free survival of node-negative breast cancer."),
    ]
    modalities = [
        ModalitySpec(name="rna", kind="omics", path="omics/rna.parquet", omics_type="rna", description=f"Affymetrix expression of the {len(probes)} probes of the 76-gene signature (as bundled)"),
        ModalitySpec(name="clinical", kind="clinical", description="age, tumour size, histological grade (ER status is a label, not an input)"),
    ]
    fields = [
        ClinicalField(name="age", kind="numeric", min=0, max=120, unit="years", description="age at diagnosis"),
        ClinicalField(name="size", kind="numeric", min=0, max=50, unit="cm", description="tumour size"),
        ClinicalField(name="grade", kind="ordinal", categories=list(GRADES), description="histological grade; the bundled 'unkown' is a missing value"),
    ]
    manifest = CohortManifest(
        name="gse7390",
        description=(f"REAL data: GSE7390 breast cancer cohort bundled with scikit-survival ({len(df)} patients, "
                     f"{int(df['event'].sum())} distant metastases; {len(probes)} probes + age, size, grade; ER status as label)."),
        synthetic=False,
        source="sksurv-breast",
        sites=["BRCA"],
        tasks=tasks,
        modalities=modalities,
        clinical_fields=fields,
        extra={
            "loader": "sksurv.datasets.load_breast_cancer",
            "geo": "GSE7390",
            "grade_unknown_patients": sorted(df.index[unknown_grade]),
            "time_unit_note": "t.tdm is in days",
        },
    )
    result = Cohort(manifest, patients, omics={"rna": rna}, clinical=clinical)
    # strata ER x event: each held-out fold gets both ER classes and some events
    strata = (er + "_" + df["event"].astype(int).astype(str)).to_numpy()
    name = f"kfold{n_folds}"
    split = kfold_split(result.patient_ids, n_folds, seed=seed, labels=strata, name=name, stratify_name="ER status x event")
    split.protocol += "; held-out fold = test"
    result.splits = {name: split}
    manifest.extra["splits"] = {name: split.protocol}
    if out_dir is not None:
        save_with_splits(result, out_dir, overwrite=overwrite)
        result = _reload(out_dir)
    return result


def _reload(out_dir: str | Path):
    from modaltune.data.cohort import Cohort
    from modaltune.data.splits import SplitSet

    c = Cohort.load(out_dir)
    c.splits = {p.stem: SplitSet.load(p) for p in sorted((Path(out_dir) / "splits").glob("*.csv"))}
    return c
