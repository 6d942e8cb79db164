"""Build a model-ready batch for chosen patients of a cohort from a fitted model (public API).

The batch is exactly what the engine feeds the model at prediction time: the cohort's tables are
transformed with the statistics the model was fitted with (omics scalers, clinical encoder, survival
bins; nothing is refitted), and each patient's slide bags are read and merged in ``slides.csv`` order.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modaltune.errors import InputError

__all__ = ["patient_batch"]


def patient_batch(fitted: Any, cohort: Any, patients: Sequence[str], *, max_patches: int | None = None) -> dict:
    """Collated batch of ``patients`` (in the given order) for ``fitted`` (a ``FittedModel``).

    Args:
        fitted: a :class:`~modaltune.training.FittedModel` (``FittedModel.load(path)``).
        cohort: a :class:`~modaltune.data.cohort.Cohort` with the model's modality names.
        patients: patient ids of ``cohort``.
        max_patches: patch cap per patient; ``None`` (default) keeps every patch, so attention maps
            cover the whole slide (the fixed evaluation subset is used otherwise).

    Returns:
        The batch dict of :func:`modaltune.data.dataset.collate_patients`: ``patient_id`` (list),
        ``slide`` (``features (B, N, D)``, ``coords (B, N, 2)`` level-0 px, ``mask (B, N)``),
        ``omics`` ({name: (B, G)}), ``clinical`` (B, F), ``modality_mask``, targets, ...
    """
    from modaltune.data.dataset import PatientDataset, collate_patients
    from modaltune.training._prep import bind

    ids = [str(p) for p in patients]
    if not ids:
        raise InputError("no patients to explain", where="patients", fix="pass patient ids of the cohort (or a fold)")
    unknown = [p for p in ids if p not in cohort.patients.index]
    if unknown:
        raise InputError(f"{len(unknown)} patient(s) not in cohort '{cohort.name}', e.g. {unknown[:3]}", where="patients",
                         fix="use ids from the cohort's patients table")
    if getattr(fitted, "kind", "torch") != "torch":
        raise InputError(f"method '{fitted.method.name}' is a tabular model: it reads a design matrix, not a batch", where="model",
                         fix="use modaltune.training.design_matrix for tabular methods")
    pp = bind(fitted.preprocessor, cohort)
    ds = PatientDataset(cohort, ids, pp, training=False, max_patches=max_patches, seed=fitted.trainer.seed)
    return collate_patients([ds[i] for i in range(len(ds))])
