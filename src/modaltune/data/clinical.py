"""Clinical field encoding, fitted on training patients.

Each declared :class:`~modaltune.data.cohort.ClinicalField` becomes a few float columns:

- ``numeric``: ``<name>`` = (x - train mean) / train std (0 when missing; std 1 if constant in
  training) and ``<name>__missing`` (1.0 when the value is missing);
- ``categorical``: one-hot ``<name>=<category>`` per declared category plus ``<name>=missing``;
- ``ordinal``: ``<name>`` = rank / (n_categories - 1) in [0, 1] (0 when missing) and ``<name>__missing``.

Values outside the declared schema (a numeric value below ``min``/above ``max`` or not a number, a
category not in ``categories``) raise :class:`~modaltune.errors.InputError` naming patient and field.
The output never holds NaN.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modaltune.data.cohort import ClinicalField
from modaltune.errors import InputError

__all__ = ["ClinicalEncoder", "check_clinical_value", "canonical_category"]


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    return isinstance(v, str) and v.strip() == ""


def canonical_category(v: Any) -> str:
    """Category cell as a string: ``1.0 -> "1"``, ``" IDC " -> "IDC"``."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (np.integer,)):
        return str(int(v))
    return str(v).strip()


def check_clinical_value(f: ClinicalField, v: Any, patient_id: str) -> str | None:
    """Message describing why ``v`` violates the schema of field ``f`` (None when valid or missing)."""
    if _is_missing(v):
        return None
    if f.kind == "numeric":
        try:
            x = float(v)
        except (TypeError, ValueError):
            return f"patient '{patient_id}', field '{f.name}': value {v!r} is not a number"
        if not np.isfinite(x):
            return f"patient '{patient_id}', field '{f.name}': value {v!r} is not finite"
        if f.min is not None and x < f.min:
            return f"patient '{patient_id}', field '{f.name}': value {x:g} is below the schema minimum {f.min:g}"
        if f.max is not None and x > f.max:
            return f"patient '{patient_id}', field '{f.name}': value {x:g} is above the schema maximum {f.max:g}"
        return None
    c = canonical_category(v)
    if c not in f.categories:
        return f"patient '{patient_id}', field '{f.name}': value '{c}' is not one of the declared categories {f.categories}"
    return None


_FIX = "correct the value, leave the cell empty for 'missing', or extend the field's schema in cohort.yaml"


class ClinicalEncoder:
    """Encode declared clinical fields into a float32 matrix (see module docstring).

    Usage::

        enc = ClinicalEncoder(cohort.manifest.clinical_fields).fit(cohort.clinical.loc[train_ids])
        x = enc.transform(cohort.clinical.reindex(ids))   # (len(ids), enc.n_features) float32
    """

    def __init__(self, fields: list[ClinicalField]):
        self.fields = list(fields)
        self.stats_: dict[str, tuple[float, float]] = {}
        self.fitted = False

    # ------------------------------------------------------------------ schema
    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for f in self.fields:
            if f.kind == "categorical":
                names += [f"{f.name}={c}" for c in f.categories] + [f"{f.name}=missing"]
            else:
                names += [f.name, f"{f.name}__missing"]
        return names

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def _column(self, df: pd.DataFrame, f: ClinicalField) -> pd.Series:
        if f.name in df.columns:
            return df[f.name]
        return pd.Series([np.nan] * len(df), index=df.index, dtype=object)

    def check(self, df: pd.DataFrame, where: str = "clinical.csv") -> list[str]:
        """Every schema violation in ``df`` (one message per cell), without raising."""
        out = []
        for f in self.fields:
            for pid, v in self._column(df, f).items():
                msg = check_clinical_value(f, v, str(pid))
                if msg:
                    out.append(msg)
        return out

    def _raise_first(self, df: pd.DataFrame, where: str) -> None:
        problems = self.check(df, where)
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            raise InputError(problems[0] + more, where=where, fix=_FIX)

    # ------------------------------------------------------------------ fit / transform
    def fit(self, train: pd.DataFrame, where: str = "clinical.csv") -> ClinicalEncoder:
        """Fit numeric means/stds on the training patients' rows (patients x fields)."""
        self._raise_first(train, where)
        self.stats_ = {}
        for f in self.fields:
            if f.kind != "numeric":
                continue
            x = pd.to_numeric(self._column(train, f), errors="coerce").to_numpy(dtype=np.float64)
            x = x[np.isfinite(x)]
            mean = float(x.mean()) if len(x) else 0.0
            std = float(x.std()) if len(x) else 1.0
            self.stats_[f.name] = (mean, std if std > 0 else 1.0)
        self.fitted = True
        return self

    def transform(self, df: pd.DataFrame, where: str = "clinical.csv") -> np.ndarray:
        """(len(df), n_features) float32 (rows in ``df`` order; all-NaN rows = all missing)."""
        if not self.fitted:
            raise RuntimeError("ClinicalEncoder.transform called before fit")
        self._raise_first(df, where)
        cols: list[np.ndarray] = []
        n = len(df)
        for f in self.fields:
            raw = self._column(df, f)
            missing = raw.map(_is_missing).to_numpy(dtype=bool)
            if f.kind == "numeric":
                mean, std = self.stats_[f.name]
                x = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
                cols += [np.where(missing, 0.0, (x - mean) / std), missing.astype(np.float64)]
            elif f.kind == "ordinal":
                k = len(f.categories)
                rank = {c: i for i, c in enumerate(f.categories)}
                r = np.array([0.0 if m else rank[canonical_category(v)] / max(k - 1, 1) for v, m in zip(raw.tolist(), missing)])
                cols += [r.reshape(n), missing.astype(np.float64)]
            else:
                level = {c: i for i, c in enumerate(f.categories)}
                onehot = np.zeros((n, len(f.categories) + 1))
                for i, (v, m) in enumerate(zip(raw.tolist(), missing)):
                    onehot[i, len(f.categories) if m else level[canonical_category(v)]] = 1.0
                cols += list(onehot.T)
        if not cols:
            return np.zeros((n, 0), dtype=np.float32)
        return np.stack(cols, axis=1).astype(np.float32)

