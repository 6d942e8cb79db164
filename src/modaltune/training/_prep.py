"""Saving a fitted ``CohortPreprocessor`` without its cohort, and applying it to another cohort.

``CohortPreprocessor.fit`` learns the statistics (omics scalers, clinical encoder, survival bin
edges) *and* caches the fit cohort's transformed tables. A saved model keeps only the learned part
(:func:`detach`); :func:`bind` re-creates the cohort-specific tables for any cohort with the same
modality names and gene columns, using the *fitted* statistics (nothing is refitted).
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["detach", "bind"]

_COHORT_STATE = ("cohort", "availability", "omics_scaled", "clinical_matrix", "_row", "targets", "bins", "slide_paths")


def detach(pp: Any) -> Any:
    """A shallow copy of ``pp`` without the fit cohort and its cached tables: only the learned
    statistics remain (what :func:`modaltune.training._state.save_state` writes to a model folder).

    The pathway *sources* (file paths or in-memory tables given to ``fit``) are dropped too: they
    are only read by ``fit``, and the tokens made from them stay in ``pp.info.pathways``.
    """
    out = copy.copy(pp)
    for k in _COHORT_STATE:
        if hasattr(out, k):
            setattr(out, k, None)
    if hasattr(out, "pathway_sources"):
        out.pathway_sources = {}
    return out


def bind(pp: Any, cohort: Any) -> Any:
    """``pp`` ready to serve patients of ``cohort`` (``pp`` itself when already bound to it)."""
    if getattr(pp, "cohort", None) is cohort:
        return pp
    from modaltune.data.cohort import TaskTargets
    from modaltune.data.splits import assign_survival_bins
    from modaltune.errors import InputError

    have = {m.name for m in cohort.modalities}
    missing = [m for m in pp.info.modalities if m not in have]
    if missing:
        raise InputError(f"cohort '{cohort.name}' lacks the modalities {missing} the model was trained with", where="cohort.yaml", fix="use a cohort with the same modality names")
    out = copy.copy(pp)
    out.cohort = cohort
    out.availability = cohort.availability(check_files=True)
    out.omics_scaled = {}
    for m in pp.omics_modalities:
        tab = cohort.omics.get(m)
        if tab is None or not len(tab):
            tab = pd.DataFrame(columns=pp.scalers[m].columns, index=pd.Index([], name="patient_id"), dtype=float)
        out.omics_scaled[m] = pp.scalers[m].transform(tab)
    ids = list(cohort.patients.index)
    where = str(cohort.root / "clinical.csv") if cohort.root else "clinical"
    if pp.clinical_modality and pp.info.clinical_dim:
        out.clinical_matrix = pp.clinical_encoder.transform(cohort.clinical.reindex(ids), where=where)
    else:
        out.clinical_matrix = np.zeros((len(ids), 0), dtype=np.float32)
    out._row = {p: i for i, p in enumerate(ids)}
    out.targets, out.bins = {}, {}
    for spec in pp.task_specs:
        if all(c in cohort.patients.columns for c in spec.columns):
            tt = cohort.targets(spec)
        else:  # an unlabelled cohort: predictions only, every label masked
            n = len(ids)
            tt = TaskTargets(spec, ids, np.zeros(n, bool), label=np.full(n, -1, np.int64) if spec.kind == "classification" else None,
                             time=np.full(n, np.nan) if spec.kind == "survival" else None, event=np.zeros(n, np.int64) if spec.kind == "survival" else None,
                             value=np.full(n, np.nan) if spec.kind == "regression" else None, reasons={"no label column": n})
        out.targets[spec.name] = tt
        if spec.kind == "survival":
            out.bins[spec.name] = assign_survival_bins(np.where(tt.mask, tt.time, 0.0), pp.info.task(spec.name).bin_edges)
    out.slide_paths = {}
    if pp.slide_modality:
        for pid, grp in cohort.slides.groupby("patient_id", sort=False):
            existing = [cohort.resolve_path(p) for p in grp["path"] if isinstance(p, str) and cohort.resolve_path(p).exists()]
            if existing:
                out.slide_paths[str(pid)] = existing
    return out
