"""Tiny synthetic CohortInfo + batches following the batch contract (docs/ARCHITECTURE.md).

Signal: the subtype label is carried by the slide (a shifted patch-feature direction), by the
first omics genes and by clinical feature 0; survival risk follows the same latent.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from modaltune.data.cohort import TaskSpec
from modaltune.data.dataset import CohortInfo, TaskInfo
from modaltune.data.omics import PathwayTokens

SLIDE_DIM, RNA_DIM, CNV_DIM, CLIN_DIM = 12, 30, 8, 5
# 6 pathways over genes 0..23; genes 24..29 are in no pathway.
PATHWAYS = [np.array(ix, dtype=np.int64) for ix in ([0, 1, 2], [3, 4], [5], [6, 7, 8, 9, 10, 11, 12], [0, 13, 14, 15], list(range(16, 24)))]
OUTSIDE_GENES = list(range(24, 30))


def make_info(slide: bool = True, omics: tuple[str, ...] = ("rna", "cnv"), clinical: bool = True, pathways: bool = True, tasks: tuple[str, ...] = ("subtype", "os")) -> CohortInfo:
    infos = []
    if "subtype" in tasks:
        spec = TaskSpec(name="subtype", kind="classification", label_column="st", classes=["A", "B"])
        infos.append(TaskInfo(spec, 2, ["A", "B"], None, {"A": 10, "B": 10}))
    if "os" in tasks:
        spec = TaskSpec(name="os", kind="survival", time_column="t", event_column="e")
        infos.append(TaskInfo(spec, 4, ["b0", "b1", "b2", "b3"], np.array([0.0, 10.0, 20.0, 30.0, 1000.0]), {}))
    dims = {"rna": RNA_DIM, "cnv": CNV_DIM}
    omics_dims = {k: dims[k] for k in omics}
    pw = None
    if pathways and "rna" in omics:
        names = [f"P{i}" for i in range(len(PATHWAYS))]
        pw = {"rna": PathwayTokens(names, PATHWAYS, pd.DataFrame({"pathway": names}).set_index("pathway"))}
    mods = (["slide"] if slide else []) + list(omics) + (["clinical"] if clinical else [])
    return CohortInfo(
        slide_dim=SLIDE_DIM if slide else None,
        slide_modality="slide" if slide else None,
        omics_dims=omics_dims,
        omics_feature_names={k: [f"{k}{i}" for i in range(d)] for k, d in omics_dims.items()},
        pathways=pw,
        clinical_dim=CLIN_DIM if clinical else 0,
        clinical_feature_names=[f"c{i}" for i in range(CLIN_DIM)] if clinical else [],
        text=False,
        tasks=infos,
        modalities=mods,
        sites=["s0", "s1"],
    )


def make_batch(B: int = 8, n_max: int = 10, seed: int = 0, info: CohortInfo | None = None, missing: dict[str, list[int]] | None = None, signal: float = 2.0) -> dict:
    """Batch with ragged bags (right padded); ``missing={modality: [rows]}`` sets modality_mask False and zeroes inputs."""
    info = info or make_info()
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(B) % 2
    z = (y.float() * 2 - 1) * signal  # latent
    batch: dict = {"patient_id": [f"p{i}" for i in range(B)], "site": ["s0"] * B, "modality_mask": {}}
    if info.slide_dim:
        n = torch.randint(1, n_max + 1, (B,), generator=g)
        n[0] = n_max
        feats = torch.zeros(B, n_max, info.slide_dim)
        mask = torch.arange(n_max)[None, :] < n[:, None]
        feats[mask] = torch.randn(int(mask.sum()), info.slide_dim, generator=g)
        feats[..., 0] += z[:, None] * mask
        batch["slide"] = {"features": feats, "coords": torch.randint(0, 5000, (B, n_max, 2), generator=g), "mask": mask}
        batch["modality_mask"]["slide"] = torch.ones(B, dtype=torch.bool)
    batch["omics"] = {}
    for name, d in info.omics_dims.items():
        x = torch.randn(B, d, generator=g)
        x[:, :3] += z[:, None]
        batch["omics"][name] = x
        batch["modality_mask"][name] = torch.ones(B, dtype=torch.bool)
    batch["clinical"] = torch.randn(B, info.clinical_dim, generator=g)
    if info.clinical_dim:
        batch["clinical"][:, 0] += z
        batch["modality_mask"]["clinical"] = torch.ones(B, dtype=torch.bool)
    time = torch.where(y == 1, 5.0 + torch.rand(B, generator=g) * 5, 25.0 + torch.rand(B, generator=g) * 10)
    batch["targets"] = {
        "subtype": {"label": y.long()},
        "os": {"time": time, "event": torch.ones(B), "bin": torch.bucketize(time, torch.tensor([10.0, 20.0, 30.0]), right=True)},
    }
    batch["target_mask"] = {"subtype": torch.ones(B, dtype=torch.bool), "os": torch.ones(B, dtype=torch.bool)}
    batch["targets"] = {t.spec.name: batch["targets"][t.spec.name] for t in info.tasks}
    batch["target_mask"] = {t.spec.name: batch["target_mask"][t.spec.name] for t in info.tasks}
    for mod, rows in (missing or {}).items():
        batch["modality_mask"][mod][rows] = False
        if mod == "slide":
            batch["slide"]["features"][rows] = 0.0
            batch["slide"]["mask"][rows] = False
        elif mod == "clinical":
            batch["clinical"][rows] = 0.0
        else:
            batch["omics"][mod][rows] = 0.0
    return batch


def make_wide_tabular(n: int, genes: int, seed: int = 0) -> tuple[CohortInfo, np.ndarray, dict]:
    """A wide tabular cohort for the Cox / penalised-model tests: one RNA block of ``genes`` columns.

    Returns ``(info, X, y)``: X (n, genes + CLIN_DIM) standard normal; survival time exponential with
    log-hazard = the sum of the first 3 columns (times x10, arbitrary units), about 30 % censored;
    the subtype label is that sum > 0. ``y`` follows the tabular methods' target layout.
    """
    info = dataclasses.replace(make_info(omics=("rna",), pathways=False), omics_dims={"rna": genes}, omics_feature_names={"rna": [f"g{i}" for i in range(genes)]})
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, genes + CLIN_DIM))
    lin = X[:, :3].sum(1)
    t = rng.exponential(np.exp(-lin)) * 10
    e = (rng.uniform(size=n) > 0.3).astype(float)
    y = {"os": {"time": t, "event": e, "bin": np.zeros(n, int), "mask": np.ones(n, bool)}, "subtype": {"label": (lin > 0).astype(int), "mask": np.ones(n, bool)}}
    return info, X, y
