"""A tiny on-disk cohort (12 patients) for tests: every modality and task kind, each patient missing something."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from modaltune.data.bags import write_bag_h5
from modaltune.data.cohort import ClinicalField, Cohort, CohortManifest, ModalitySpec, TaskSpec

D = 8
PATIENTS = [f"P{i:02d}" for i in range(12)]


def make_cohort(root: Path, *, n_slides=None) -> Cohort:
    """12 patients, 2 sites; P00 has 2 slides, P01 no slide, P02 a listed-but-missing file,
    P03 no rna, P04 no clinical, P05 no text, P06 unlabelled subtype, P07 no survival."""
    rng = np.random.default_rng(0)
    manifest = CohortManifest(
        name="toy",
        sites=["A", "B"],
        tasks=[
            TaskSpec(name="subtype", kind="classification", label_column="subtype", classes=["x", "y"], exclude_values=["-1"]),
            TaskSpec(name="os", kind="survival", time_column="time", event_column="event", n_bins=2),
            TaskSpec(name="score", kind="regression", label_column="score"),
        ],
        modalities=[
            ModalitySpec(name="wsi", kind="slide", feature_dim=D, encoder="toyenc", patch_size_level0=256),
            ModalitySpec(name="rna", kind="omics", path="omics/rna.parquet"),
            ModalitySpec(name="clinical", kind="clinical"),
            ModalitySpec(name="report", kind="text"),
        ],
        clinical_fields=[
            ClinicalField(name="age", kind="numeric", min=0, max=120),
            ClinicalField(name="stage", kind="ordinal", categories=["I", "II", "III"]),
            ClinicalField(name="sex", kind="categorical", categories=["F", "M"]),
        ],
    )
    subtype = ["x", "y"] * 6
    subtype[6] = "-1"
    time = rng.uniform(1, 100, 12).round(1)
    time[7] = np.nan
    patients = pd.DataFrame(
        {
            "patient_id": PATIENTS,
            "site": ["A"] * 6 + ["B"] * 6,
            "subtype": subtype,
            "time": time,
            "event": [1, 0, 1, 0, 1, 0, 1, np.nan, 1, 0, 1, 0],
            "score": np.arange(12, dtype=float),
        }
    )
    slides = []
    (root / "bags").mkdir(parents=True)
    sizes = n_slides or {p: 5 + i for i, p in enumerate(PATIENTS)}
    for p in PATIENTS:
        if p == "P01":
            continue
        if p == "P02":
            slides.append((p, "s_missing", "bags/missing.h5"))
            continue
        k = 2 if p == "P00" else 1
        for s in range(k):
            n = sizes[p] + s
            c = np.stack([np.arange(n) % 3, np.arange(n) // 3], 1) * 256
            write_bag_h5(root / f"bags/{p}_{s}.h5", rng.standard_normal((n, D)).astype(np.float16), c, patch_size_level0=256, encoder="toyenc")
            slides.append((p, f"{p}_{s}", f"bags/{p}_{s}.h5"))
    slides = pd.DataFrame(slides, columns=["patient_id", "slide_id", "path"])
    rna_ids = [p for p in PATIENTS if p != "P03"]
    rna = pd.DataFrame(rng.standard_normal((11, 5)), index=pd.Index(rna_ids, name="patient_id"), columns=["TP53", "EGFR", "MYC", "KRAS", "CONST"])
    rna["CONST"] = 3.0
    clinical = pd.DataFrame(
        {"age": [50.0 + i for i in range(12)], "stage": ["I", "II", "III"] * 4, "sex": ["F", "M"] * 6},
        index=pd.Index(PATIENTS, name="patient_id"),
    ).astype(object)
    clinical.loc["P04"] = [np.nan, np.nan, np.nan]
    clinical.loc["P08", "stage"] = np.nan
    text = pd.Series({p: f"report of {p}" for p in PATIENTS if p != "P05"}, name="text")
    cohort = Cohort(manifest, patients, slides=slides, omics={"rna": rna}, clinical=clinical, text=text)
    cohort.save(root)
    return Cohort.load(root)
