"""Pickle-free storage of fitted objects: a JSON tree plus a ``.safetensors`` file of arrays.

A saved model folder must never run code when it is read (a crafted ``pickle`` does), so fitted
state (the preprocessor, scikit-learn / scikit-survival estimators, tabular methods) is written
as data only:

* ``<stem>.json``: the object tree. JSON scalars, lists and str-keyed dicts are stored as they
  are; everything else is a tagged dict (``{"__array__": key}``, ``{"__tuple__": [...]}``,
  ``{"__items__": [[k, v], ...]}`` for dicts with non-str keys, ``{"__object__": name,
  "state": {...}}`` ...).
* ``<stem>.safetensors``: the numpy arrays the tree refers to (numeric and bool dtypes only;
  read back with ``safetensors.numpy.load_file``, which parses a JSON header and raw buffers).

Objects are rebuilt only for the classes named in :data:`_ALLOWED` (an explicit allow-list):
``cls.__new__(cls)`` followed by setting the saved attributes (plain objects and dataclasses), or
``Model.model_validate`` (pydantic models). No constructor, ``__setstate__`` or import named by the
file is ever called, so the worst a crafted file can do is fail to load. scikit-learn estimators
are restored the same way: their hyper-parameters and fitted arrays (``coef_``, ``components_``
...) are exactly their ``__dict__``; the versions of scikit-learn / scikit-survival that wrote the
file are recorded and a mismatch is logged (as scikit-learn itself warns for pickles).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
from pathlib import Path, PurePath
from typing import Any

import numpy as np

__all__ = ["encode", "decode", "save_state", "load_state", "StateError"]

log = logging.getLogger("modaltune.training")

#: name in the file -> (module, attribute). Only these classes can be rebuilt from a file.
_ALLOWED: dict[str, tuple[str, str]] = {
    # modaltune: the fitted preprocessor and what it holds
    "CohortPreprocessor": ("modaltune.data.dataset", "CohortPreprocessor"),
    "CohortInfo": ("modaltune.data.dataset", "CohortInfo"),
    "TaskInfo": ("modaltune.data.dataset", "TaskInfo"),
    "TaskSpec": ("modaltune.data.cohort", "TaskSpec"),
    "ClinicalField": ("modaltune.data.cohort", "ClinicalField"),
    "ModalitySpec": ("modaltune.data.cohort", "ModalitySpec"),
    "OmicsScaler": ("modaltune.data.omics", "OmicsScaler"),
    "PathwayTokens": ("modaltune.data.omics", "PathwayTokens"),
    "ClinicalEncoder": ("modaltune.data.clinical", "ClinicalEncoder"),
    # modaltune: tabular methods
    "TabularFeatures": ("modaltune.methods._tabular", "TabularFeatures"),
    "LogisticMethod": ("modaltune.methods.logistic", "LogisticMethod"),
    "CoxnetMethod": ("modaltune.methods.coxnet", "CoxnetMethod"),
    "EmbeddingFusionMethod": ("modaltune.methods.embedding_fusion", "EmbeddingFusionMethod"),
    # scikit-learn / scikit-survival estimators the tabular methods fit
    "sklearn.LogisticRegression": ("sklearn.linear_model", "LogisticRegression"),
    "sklearn.PCA": ("sklearn.decomposition", "PCA"),
    "sksurv.CoxnetSurvivalAnalysis": ("sksurv.linear_model", "CoxnetSurvivalAnalysis"),
    "sksurv.CoxPHSurvivalAnalysis": ("sksurv.linear_model", "CoxPHSurvivalAnalysis"),
    "sksurv.BreslowEstimator": ("sksurv.linear_model.coxph", "BreslowEstimator"),
    "sksurv.StepFunction": ("sksurv.functions", "StepFunction"),
}

_TAGS = ("__array__", "__strarray__", "__tuple__", "__items__", "__slice__", "__dtype__", "__path__", "__frame__", "__object__", "__model__")


class StateError(ValueError):
    """A file does not hold a state this module can rebuild (unknown tag or class, missing array)."""


def _allowed_class(name: str) -> type:
    if name not in _ALLOWED:
        raise StateError(f"class '{name}' is not one modaltune rebuilds from a saved model")
    mod, attr = _ALLOWED[name]
    return getattr(importlib.import_module(mod), attr)


def _class_name(obj: Any) -> str | None:
    """The allow-list name of ``type(obj)`` (None when it is not allowed)."""
    t = type(obj)
    for name, (mod, attr) in _ALLOWED.items():
        # compare names first so that encoding a preprocessor never imports scikit-survival
        if attr == t.__name__ and t.__module__.split(".")[0] == mod.split(".")[0] and _allowed_class(name) is t:
            return name
    return None


# ---------------------------------------------------------------------------------------- encode
class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def _array(self, a: np.ndarray) -> dict:
        if a.dtype.kind in "US":
            return {"__strarray__": a.tolist(), "shape": list(a.shape)}
        if a.dtype.kind not in "biuf":
            raise TypeError(f"cannot store a numpy array of dtype {a.dtype} without pickle")
        key = f"a{len(self.arrays)}"
        self.arrays[key] = np.ascontiguousarray(a)
        return {"__array__": key}

    def __call__(self, obj: Any) -> Any:
        import torch

        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, (int, float)) and not isinstance(obj, np.generic):
            return obj
        if isinstance(obj, np.generic):
            return obj.item() if obj.dtype.kind in "biuf" else self._array(np.asarray(obj))
        if isinstance(obj, np.ndarray):
            return self._array(obj)
        if isinstance(obj, tuple):
            return {"__tuple__": [self(v) for v in obj]}
        if isinstance(obj, list):
            return [self(v) for v in obj]
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: self(v) for k, v in obj.items()}
            return {"__items__": [[self(k), self(v)] for k, v in obj.items()]}
        if isinstance(obj, slice):
            return {"__slice__": [obj.start, obj.stop, obj.step]}
        if isinstance(obj, torch.dtype):
            return {"__dtype__": str(obj).removeprefix("torch.")}
        if isinstance(obj, PurePath):
            return {"__path__": str(obj)}
        import pandas as pd

        if isinstance(obj, pd.DataFrame):
            return {"__frame__": {
                "index": self(obj.index.tolist()),
                "index_name": obj.index.name,
                "columns": [str(c) for c in obj.columns],
                "data": [self(obj[c].to_numpy()) if obj[c].dtype.kind in "biuf" else self([None if v is None else str(v) for v in obj[c].tolist()]) for c in obj.columns],
            }}
        name = _class_name(obj)
        if name is None:
            raise TypeError(f"{type(obj).__module__}.{type(obj).__qualname__} is not in the allow-list of modaltune.training._state")
        from pydantic import BaseModel

        if isinstance(obj, BaseModel):
            return {"__model__": name, "fields": obj.model_dump(mode="json")}
        return {"__object__": name, "state": {k: self(v) for k, v in vars(obj).items()} if not dataclasses.is_dataclass(obj) else {f.name: self(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}


def encode(obj: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """(JSON-able tree, {key: array}) of ``obj``; raises TypeError for a type not allowed here."""
    enc = _Encoder()
    return enc(obj), enc.arrays


# ---------------------------------------------------------------------------------------- decode
def decode(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Rebuild what :func:`encode` stored; raises :class:`StateError` on anything it did not write."""
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [decode(v, arrays) for v in tree]
    if not isinstance(tree, dict):
        raise StateError(f"unexpected JSON value of type {type(tree).__name__}")
    tags = [k for k in tree if k in _TAGS]
    if not tags:
        bad = [k for k in tree if k.startswith("__")]
        if bad:
            raise StateError(f"unknown tag {bad[0]!r}")
        return {k: decode(v, arrays) for k, v in tree.items()}
    tag = tags[0]
    val = tree[tag]
    if tag == "__array__":
        if val not in arrays:
            raise StateError(f"array '{val}' is missing from the .safetensors file")
        return arrays[val]
    if tag == "__strarray__":
        return np.array(val, dtype=str).reshape(tree.get("shape", [-1]))
    if tag == "__tuple__":
        return tuple(decode(v, arrays) for v in val)
    if tag == "__items__":
        return {_hashable(decode(k, arrays)): decode(v, arrays) for k, v in val}
    if tag == "__slice__":
        return slice(*[None if v is None else int(v) for v in val])
    if tag == "__dtype__":
        import torch

        dt = getattr(torch, str(val), None)
        if not isinstance(dt, torch.dtype):
            raise StateError(f"unknown torch dtype '{val}'")
        return dt
    if tag == "__path__":
        return Path(str(val))
    if tag == "__frame__":
        import pandas as pd

        cols = {c: decode(v, arrays) for c, v in zip(val["columns"], val["data"])}
        return pd.DataFrame(cols, index=pd.Index(decode(val["index"], arrays), name=val.get("index_name")), columns=list(val["columns"]))
    cls = _allowed_class(str(val))
    if tag == "__model__":
        return cls.model_validate(tree["fields"])
    state = decode(tree["state"], arrays)
    if not isinstance(state, dict):
        raise StateError(f"the state of {val} is not a mapping")
    obj = cls.__new__(cls)  # no __init__: the saved attributes are the object
    obj.__dict__.update(state)
    return obj


def _hashable(k: Any) -> Any:
    if isinstance(k, list):
        return tuple(_hashable(v) for v in k)
    return k


# ---------------------------------------------------------------------------------------- files
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("modaltune", "numpy", "scikit-learn", "scikit-survival"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def save_state(folder: str | Path, stem: str, obj: Any) -> list[Path]:
    """Write ``folder/<stem>.json`` and ``folder/<stem>.safetensors`` (atomically each); returns both paths."""
    from safetensors.numpy import save

    from modaltune.fileio import atomic_write_bytes, atomic_write_text

    tree, arrays = encode(obj)
    folder = Path(folder)
    js, st = folder / f"{stem}.json", folder / f"{stem}.safetensors"
    atomic_write_bytes(st, save(arrays, metadata={"format": "modaltune-state"}))
    atomic_write_text(js, json.dumps({"versions": _versions(), "state": tree}, indent=1))
    return [js, st]


def load_state(folder: str | Path, stem: str) -> Any:
    """Read what :func:`save_state` wrote (no pickle anywhere: JSON + safetensors).

    Raises:
        StateError / ValueError / OSError: the files are missing, unparsable or hold something
        this module did not write (the caller turns it into a one-line InputError).
    """
    from safetensors.numpy import load

    folder = Path(folder)
    js, st = folder / f"{stem}.json", folder / f"{stem}.safetensors"
    text = js.read_text()
    doc = json.loads(text)
    if not isinstance(doc, dict) or "state" not in doc:
        raise StateError("no 'state' entry")
    arrays = load(st.read_bytes())
    saved = doc.get("versions") or {}
    now = _versions()
    for pkg, tag in (("scikit-learn", '"sklearn.'), ("scikit-survival", '"sksurv.')):
        if tag in text and pkg in saved and pkg in now and saved[pkg] != now[pkg]:
            log.warning("%s was written with %s %s and is read with %s: refit if predictions look off", js, pkg, saved[pkg], now[pkg])
    return decode(doc["state"], arrays)
