"""The one place that knows the h5 bag layout (TRIDENT's, plus modaltune's root attributes).

Every writer (:func:`modaltune.data.bags.write_bag_h5` for whole arrays, the streaming
:class:`modaltune.preprocess.h5writer.BagWriter` of ``modaltune extract``) creates files through
:func:`create_layout` / :func:`finish_layout`, and every reader takes attributes and status from
:func:`read_attrs` / :func:`read_status`.

Layout:

- ``features``: (N, D) float32 or float16 (stored as given: half precision halves the disk);
  attrs ``encoder``, ``name`` (slide name), ``savetodir``.
- ``coords`` (optional): (N, 2) int64 level-0 (x, y) of each patch's top-left corner; attrs
  ``patch_size``, ``patch_size_level0``, ``level0_magnification``, ``target_magnification``,
  ``overlap``, ``name``, ``savetodir``, ``level0_width``, ``level0_height`` (those known).
- ``slide_embedding`` (optional): (E,) float32 slide-encoder output.
- root attrs (the union both writers used to write separately): ``modaltune_version``,
  ``encoder``, ``embedding_dim``, ``status`` ('incomplete' while being written, then 'complete' or
  'no_tissue'), ``num_patches``; ``mpp`` when known (extract); ``patch_size_level0`` on the root
  when there is no ``coords`` dataset to carry it; any ``extra`` attributes.

Writes are atomic through :mod:`modaltune.fileio` (process-unique temporary name, then rename).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FEATURES", "COORDS", "SLIDE_EMBEDDING", "FEATURE_DTYPES", "COORDS_DTYPE", "FINISHED_STATUSES",
    "create_layout", "finish_layout", "write_bag", "read_attrs", "read_status", "bag_is_complete", "py_value",
]

FEATURES, COORDS, SLIDE_EMBEDDING = "features", "coords", "slide_embedding"
FEATURE_DTYPES = ("float32", "float16")
COORDS_DTYPE = "int64"
FINISHED_STATUSES = ("complete", "no_tissue")


def _version() -> str:
    try:
        from modaltune import __version__

        return str(__version__)
    except Exception:  # noqa: BLE001 - partial installs: the version is informational only  # pragma: no cover
        return "unknown"


def py_value(v: Any) -> Any:
    """h5 attribute value -> plain Python (bytes -> str, numpy scalar -> int/float)."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return [py_value(x) for x in v.tolist()] if v.dtype.kind in "SO" else v.tolist()
    return v


def create_layout(f, path: str | Path, *, embedding_dim: int, encoder: str, dtype: str = "float32",
                  n_rows: int | None = None, chunk_rows: int = 1024, with_coords: bool = True,
                  coords_attrs: dict | None = None, mpp: float | None = None, extra_attrs: dict | None = None,
                  features: np.ndarray | None = None, coords: np.ndarray | None = None, savetodir: str | Path | None = None):
    """Create the datasets and attributes of a bag in the open h5py file ``f`` (status 'incomplete').

    Either pass whole arrays (``features`` (N, D), ``coords`` (N, 2)) or sizes: ``n_rows`` known up
    front gives contiguous fixed-size datasets (TRIDENT's layout, fastest to read); ``None`` gives
    chunked datasets of ``chunk_rows`` rows that grow. ``path`` is the *final* path (its folder and
    stem become ``savetodir`` and ``name``; ``savetodir`` overrides the folder when the file is built
    somewhere else and moved into place, e.g. a cohort's staging folder). Returns ``(features_ds, coords_ds or None)``.
    """
    path = Path(path)
    d = int(embedding_dim)
    if features is not None:
        fds = f.create_dataset(FEATURES, data=features)
        cds = f.create_dataset(COORDS, data=coords) if coords is not None else None
    elif n_rows is not None:
        fds = f.create_dataset(FEATURES, shape=(int(n_rows), d), dtype=dtype)
        cds = f.create_dataset(COORDS, shape=(int(n_rows), 2), dtype=COORDS_DTYPE) if with_coords else None
    else:
        rows = max(1, int(chunk_rows))
        fds = f.create_dataset(FEATURES, shape=(0, d), maxshape=(None, d), dtype=dtype, chunks=(rows, d))
        cds = (f.create_dataset(COORDS, shape=(0, 2), maxshape=(None, 2), dtype=COORDS_DTYPE, chunks=(rows, 2))
               if with_coords else None)
    savetodir = str(path.parent if savetodir is None else savetodir)
    cattrs = {k: v for k, v in (coords_attrs or {}).items() if v is not None}
    name = cattrs.get("name", path.stem)
    if cds is not None:
        for k, v in cattrs.items():
            cds.attrs[k] = v
        cds.attrs["savetodir"] = savetodir
    fds.attrs["encoder"] = encoder
    fds.attrs["name"] = name
    fds.attrs["savetodir"] = savetodir
    root = f.attrs
    root["modaltune_version"] = _version()
    root["encoder"] = encoder
    root["embedding_dim"] = d
    if mpp is not None:
        root["mpp"] = float(mpp)
    if cds is None and "patch_size_level0" in cattrs:
        root["patch_size_level0"] = int(cattrs["patch_size_level0"])
    root["status"] = "incomplete"
    for k, v in (extra_attrs or {}).items():
        root[k] = v
    return fds, cds


def finish_layout(f, *, status: str, num_patches: int, root_attrs: dict | None = None) -> None:
    """Mark a bag finished: root ``status`` ('complete' | 'no_tissue') and ``num_patches``."""
    if status not in FINISHED_STATUSES:
        raise ValueError(f"status must be one of {FINISHED_STATUSES}")
    f.attrs["status"] = status
    f.attrs["num_patches"] = int(num_patches)
    for k, v in (root_attrs or {}).items():
        f.attrs[k] = v


def write_bag(path: str | Path, features: np.ndarray, coords: np.ndarray | None, *, encoder: str,
              coords_attrs: dict | None = None, mpp: float | None = None, extra_attrs: dict | None = None,
              status: str = "complete", savetodir: str | Path | None = None) -> Path:
    """Write a whole bag atomically: ``features`` (N, D) float16/32 as given, ``coords`` (N, 2) int64 or None.

    Disk conditions (full, read-only) raise :class:`modaltune.fileio.DiskError`; no file is left behind.
    """
    import h5py

    from modaltune.fileio import atomic_write

    features = np.asarray(features)

    def _write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            create_layout(f, path, embedding_dim=features.shape[1] if features.ndim == 2 else 0, encoder=encoder,
                          coords_attrs=coords_attrs, mpp=mpp, extra_attrs=extra_attrs, features=features, coords=coords,
                          with_coords=coords is not None, savetodir=savetodir)
            finish_layout(f, status=status, num_patches=int(features.shape[0]))

    return atomic_write(path, _write)


def read_attrs(f, fallback_encoder: str | None = None) -> dict[str, Any]:
    """Root, ``features`` and ``coords`` attributes of an open bag (root wins, then features, then
    coords) as plain Python values, with ``encoder`` from features or the root (else ``fallback_encoder``)."""
    feats = f.get(FEATURES)
    per_obj: list[dict[str, Any]] = []
    for obj in (feats, f, f.get(COORDS)):  # h5py attribute access is slow: read each object once
        if obj is None:
            per_obj.append({})
            continue
        try:
            per_obj.append({k: py_value(v) for k, v in obj.attrs.items()})
        except (OSError, RuntimeError):  # unreadable attribute: ignore the metadata, not the data
            per_obj.append({})
    attrs: dict[str, Any] = {}
    for d in (per_obj[1], per_obj[0], per_obj[2]):
        for k, v in d.items():
            attrs.setdefault(k, v)
    # the encoder name lives on features or the root; 'name' in TRIDENT is the slide name
    enc = per_obj[0].get("encoder", per_obj[1].get("encoder"))
    attrs["encoder"] = enc if enc is not None else fallback_encoder
    return attrs


def read_status(f) -> str | None:
    """Root ``status`` of an open bag (None for files from other tools, e.g. TRIDENT itself)."""
    s = f.attrs.get("status")
    return py_value(s) if s is not None else None


def bag_is_complete(path: str | Path, encoder: str | None = None, coords_attrs: dict | None = None) -> bool:
    """True when ``path`` is a finished bag: readable, ``status`` finished, features/coords rows agree,
    and (when given) written by ``encoder`` with ``coords`` attributes equal to ``coords_attrs``
    (e.g. the same patch size and magnification). Used by resume to skip slides already done."""
    import h5py

    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            if read_status(f) not in FINISHED_STATUSES or FEATURES not in f or COORDS not in f:
                return False
            if f[FEATURES].shape[0] != f[COORDS].shape[0] or f[COORDS].ndim != 2:
                return False
            if encoder is not None and py_value(f[FEATURES].attrs.get("encoder")) != encoder:
                return False
            for k, v in (coords_attrs or {}).items():
                have = f[COORDS].attrs.get(k)
                if have is None or abs(float(have) - float(v)) > 1e-6 * max(1.0, abs(float(v))):
                    return False
            return True
    except (OSError, KeyError, TypeError, ValueError):
        return False
