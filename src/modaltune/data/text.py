"""Label sentences: a patient's labels and clinical fields written as text (ModalTune §4).

Sentences are built from *fragments* by configurable templates::

    general   = location + diagnosis + stage + t + n + m + survival
    diagnosis = location + diagnosis
    survival  = location + stage + t + n + m + survival

e.g. ``"Cancer location: breast; Cancer diagnosis: infiltrating duct carcinoma; Overall stage:
stage two; Survival status: The patient died between 15 and 27 months."``

Survival bins come from :func:`modaltune.data.splits.survival_bin_edges` fitted on *training*
patients (the published code fitted them on all patients). Fragments whose value is missing are
left out (never written as "nan").
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "SITE_NAMES",
    "TEMPLATES",
    "SentenceBuilder",
    "verbalize_stage",
    "verbalize_t",
    "verbalize_n",
    "verbalize_m",
    "survival_phrase",
    "class_sentences",
    "DIAGNOSIS_NAMES",
    "diagnosis_name",
]

#: class abbreviation -> full diagnosis name written in label sentences. Abbreviations make weak
#: targets: after the projector "idc" vs "ilc" sentences have cosine 0.90, the full names 0.61.
DIAGNOSIS_NAMES = {
    "idc": "invasive ductal carcinoma", "ilc": "invasive lobular carcinoma",
    "gbm": "glioblastoma", "lgg": "lower-grade glioma",
    "luad": "lung adenocarcinoma", "lusc": "lung squamous cell carcinoma",
    "kirc": "clear cell renal cell carcinoma", "ccrcc": "clear cell renal cell carcinoma",
    "kirp": "papillary renal cell carcinoma", "prcc": "papillary renal cell carcinoma",
    "kich": "chromophobe renal cell carcinoma", "chrcc": "chromophobe renal cell carcinoma",
    "coad": "colon adenocarcinoma", "read": "rectal adenocarcinoma",
}


def diagnosis_name(name: Any) -> str:
    """The diagnosis written in a sentence: the full name of a known abbreviation (``"IDC"`` ->
    ``"invasive ductal carcinoma"``), else the class name lower-cased."""
    k = str(name).strip().lower()
    return DIAGNOSIS_NAMES.get(k, k)

#: TCGA project / site code -> organ name used in "Cancer location: ...".
SITE_NAMES = {
    "BRCA": "breast", "LUAD": "lung", "LUSC": "lung", "NSCLC": "lung", "KIRC": "kidney", "KIRP": "kidney",
    "KICH": "kidney", "RCC": "kidney", "GBM": "brain", "LGG": "brain", "GBMLGG": "brain", "COAD": "colon",
    "READ": "rectum", "COADREAD": "colon and rectum", "BLCA": "bladder", "UCEC": "endometrium", "HNSC": "head and neck",
    "LIHC": "liver", "PAAD": "pancreas", "SKCM": "skin", "STAD": "stomach",
}

TEMPLATES: dict[str, list[str]] = {
    "general": ["location", "diagnosis", "stage", "t", "n", "m", "survival"],
    "diagnosis": ["location", "diagnosis"],
    "survival": ["location", "stage", "t", "n", "m", "survival"],
    "staging": ["location", "stage", "t", "n", "m"],
}

_NUM = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four"}
_ROMAN = {"IV": 4, "III": 3, "II": 2, "I": 1, "0": 0}


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() in ("", "nan", "None", "'--")


def verbalize_stage(stage: Any) -> str | None:
    """``"Stage IIA"`` -> ``"stage two"``; unknown or missing -> None."""
    if _missing(stage):
        return None
    m = re.search(r"stage\s*(IV|III|II|I|0)", str(stage), flags=re.I)
    if not m:
        return None
    return f"stage {_NUM[_ROMAN[m.group(1).upper()]]}"


def verbalize_t(t: Any) -> str | None:
    """``"T2b"`` -> ``"tumor stage two"``; ``"Tis"`` -> ``"tumor in situ"``."""
    if _missing(t):
        return None
    s = str(t).strip().upper()
    if s.startswith("TIS"):
        return "tumor in situ"
    m = re.match(r"T([0-4])", s)
    return f"tumor stage {_NUM[int(m.group(1))]}" if m else None


def verbalize_n(n: Any) -> str | None:
    """``"N0 (i-)"`` -> ``"cancer has not spread to lymph nodes"``; ``"N2"`` -> spread, grade two."""
    if _missing(n):
        return None
    m = re.match(r"N([0-3])", str(n).strip().upper())
    if not m:
        return None
    k = int(m.group(1))
    return "cancer has not spread to lymph nodes" if k == 0 else f"cancer has spread to lymph nodes, node stage {_NUM[k]}"


def verbalize_m(mv: Any) -> str | None:
    """``"M0"`` -> ``"no metastasis detected"``; ``"M1a"`` -> ``"distant metastasis detected"``."""
    if _missing(mv):
        return None
    s = str(mv).strip().upper()
    if s.startswith("M0"):
        return "no metastasis detected"
    if s.startswith("M1"):
        return "distant metastasis detected"
    return None


def _fmt(x: float) -> str:
    return str(int(round(x)))


def survival_phrase(time: float, event: int, edges: np.ndarray, unit: str = "months") -> str | None:
    """``"The patient died between 15 and 27 months"`` (event) or ``"The patient was alive at last
    follow-up between 15 and 27 months"`` (censored), with the bin given by ``edges``."""
    if _missing(time) or _missing(event):
        return None
    from modaltune.data.splits import assign_survival_bins

    b = int(assign_survival_bins(np.array([time]), edges)[0])
    lo, hi = edges[b], edges[b + 1]
    rng = f"between {_fmt(lo)} and {_fmt(hi)} {unit}"
    return f"The patient died {rng}" if int(event) == 1 else f"The patient was alive at last follow-up {rng}"


_LABELS = {
    "location": "Cancer location",
    "diagnosis": "Cancer diagnosis",
    "stage": "Overall stage",
    "t": "Tumor stage status",
    "n": "Lymph node status",
    "m": "Distant metastasis status",
    "survival": "Survival status",
}


@dataclass
class SentenceBuilder:
    """Build label sentences from patient records.

    Args:
        columns: fragment -> record key, e.g. ``{"diagnosis": "primary_diagnosis", "stage":
            "ajcc_pathologic_stage", "t": "ajcc_pathologic_t", ...}``; ``location`` reads ``site``.
        time_key, event_key: survival fields of the record (event 1 = died).
        edges: survival bin edges (fit them on training patients); required for ``survival``.
        time_unit: unit written in the sentence.
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    time_key: str = "time"
    event_key: str = "event"
    edges: np.ndarray | None = None
    time_unit: str = "months"

    def fragment(self, name: str, record: Mapping[str, Any]) -> str | None:
        if name == "location":
            site = record.get(self.columns.get("location", "site"))
            if _missing(site):
                return None
            s = str(site).replace("TCGA-", "").upper()
            value = SITE_NAMES.get(s, str(site).lower())
        elif name == "diagnosis":
            v = record.get(self.columns.get("diagnosis", "diagnosis"))
            value = None if _missing(v) else diagnosis_name(v)
        elif name in ("stage", "t", "n", "m"):
            fn = {"stage": verbalize_stage, "t": verbalize_t, "n": verbalize_n, "m": verbalize_m}[name]
            value = fn(record.get(self.columns.get(name, name)))
        elif name == "survival":
            if self.edges is None:
                raise ValueError("survival fragments need bin edges fitted on training patients (edges=...)")
            value = survival_phrase(record.get(self.time_key), record.get(self.event_key), self.edges, self.time_unit)
        else:
            raise KeyError(f"unknown sentence fragment '{name}'; known: {sorted(_LABELS)}")
        return None if value is None else f"{_LABELS[name]}: {value}"

    def sentence(self, record: Mapping[str, Any], template: str | list[str] = "general") -> str:
        """The sentence of one record; fragments with missing values are omitted."""
        frags = TEMPLATES[template] if isinstance(template, str) else list(template)
        parts = [f for f in (self.fragment(n, record) for n in frags) if f]
        return "; ".join(parts) + "." if parts else ""


def class_sentences(site: str | None, class_names: list[str], template: str = "{location}Cancer diagnosis: {name}.") -> list[str]:
    """One sentence per class name for text-similarity classification (unseen names work too)."""
    loc = f"Cancer location: {SITE_NAMES.get(str(site).upper(), str(site).lower())}; " if site else ""
    return [template.format(location=loc, name=diagnosis_name(n)) for n in class_names]
