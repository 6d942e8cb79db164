"""Importers of public cohorts into the modaltune cohort format.

The registry maps a source name (as typed on the command line) to an importer with the
signature ``importer(cohort, shared_dir=None, out_dir=None, **options) -> Cohort``::

    from modaltune.data.sources import import_cohort
    cohort = import_cohort("porpoise", "blca", shared_dir="../shared", out_dir="cohorts/blca")

Importers are imported lazily, so ``import modaltune`` stays cheap.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modaltune.data.sources._common import PORPOISE_COHORTS, resolve_shared_dir
from modaltune.errors import InputError

__all__ = ["IMPORTERS", "get_importer", "import_cohort", "importer_cohorts", "resolve_shared_dir", "PORPOISE_COHORTS"]

#: source name -> ("module:function", "module:function listing accepted cohort names", one-line description)
IMPORTERS: dict[str, tuple[str, str, str]] = {
    "porpoise": (
        "modaltune.data.sources.porpoise:import_porpoise",
        "modaltune.data.sources.porpoise:porpoise_cohort_names",
        "PORPOISE/MCAT TCGA tables: omics, age/sex, overall survival, 5-fold splits (14 cohorts + nsclc, rcc)",
    ),
    "modaltune-json": (
        "modaltune.data.sources.modaltune_json:import_modaltune_json",
        "modaltune.data.sources.modaltune_json:modaltune_json_cohort_names",
        "ModalTune paper split: GDC clinical fields, subtypes, survival, text, joined to PORPOISE omics",
    ),
    "xena": (
        "modaltune.data.sources.user_files:xena_importer",
        "modaltune.data.sources.user_files:any_name",
        "your own Xena-style genes x samples matrices (one per omics modality) + a label table + optional splits",
    ),
    "table": (
        "modaltune.data.sources.user_files:table_importer",
        "modaltune.data.sources.user_files:any_name",
        "your own wide table (<GENE>_rnaseq/_cnv/_mut omics columns, declared task and clinical columns)",
    ),
    "porpoise-csv": (
        "modaltune.data.sources.user_files:porpoise_csv_importer",
        "modaltune.data.sources.user_files:any_name",
        "your own PORPOISE-style wide CSV at any path (+ any folder of splits_{k}.csv)",
    ),
    "sksurv-breast": (
        "modaltune.data.sources.sksurv_breast:import_sksurv_breast",
        "modaltune.data.sources.sksurv_breast:sksurv_breast_cohort_names",
        "GSE7390 breast cancer cohort bundled with scikit-survival: 76 genes + age/size/grade, ER status, DMFS",
    ),
}


def _load(ref: str) -> Callable[..., Any]:
    mod, fn = ref.split(":")
    return getattr(importlib.import_module(mod), fn)


def get_importer(source: str) -> Callable[..., Any]:
    """The importer function registered as ``source`` (a key of :data:`IMPORTERS`)."""
    key = source.lower().replace("_", "-")
    if key not in IMPORTERS:
        raise InputError(f"unknown data source '{source}'", fix=f"use one of {sorted(IMPORTERS)}")
    return _load(IMPORTERS[key][0])


def importer_cohorts(source: str) -> list[str]:
    """Cohort names the ``source`` importer accepts (empty: any name, for the user-file importers)."""
    get_importer(source)  # validates the name
    return list(_load(IMPORTERS[source.lower().replace("_", "-")][1])())


def import_cohort(source: str, cohort: str, shared_dir: str | Path | None = None, out_dir: str | Path | None = None, **options: Any):
    """Import ``cohort`` from ``source`` (see :data:`IMPORTERS`); writes ``out_dir`` if given."""
    return get_importer(source)(cohort, shared_dir, out_dir, **options)
