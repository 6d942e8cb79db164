"""Patch-feature bags: readers, writer, multi-slide merge and patch cap.

A *bag* is the set of patch embeddings of one slide (or of one patient, after merging):

- ``features``: (N, D) float16 or float32, **kept as stored** (no upcast; the model casts);
- ``coords``: (N, 2) int64 level-0 pixel coordinates ``(x, y)`` of each patch's top-left corner,
  or ``None`` when the file has none (CLAM ``.pt`` tensors).

Supported files:

- TRIDENT ``.h5``: datasets ``features`` (N, D) and ``coords`` (N, 2); attributes on ``coords``
  (``patch_size``, ``patch_size_level0``, ``level0_magnification``, ``target_magnification``,
  ``overlap``, ``level0_width``, ``level0_height``) and an ``encoder`` name on ``features`` or the
  file root (else taken from a ``features_<encoder>`` parent folder, TRIDENT's layout).
- CLAM ``.pt``: a tensor (N, D), no coordinates.
- dict ``.pt``: ``{"features": (N, D), "coords": (N, 2)}``.

Every malformed input raises :class:`~modaltune.errors.InputError` with a one-line message naming
the file and the fix. Reading is fast: an uncompressed contiguous h5 dataset is read with `readinto`
at its file offset in 512 KiB chunks (the speed of reading the raw bytes), and the finite check looks at
the exponent bits of each cache-sized chunk right after it is read (two integer max-reductions per
chunk: no float conversion, no temporaries, no second pass over memory).
"""
from __future__ import annotations

import os
import stat
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modaltune.data._files import ensure_readable
from modaltune.data.h5layout import py_value, read_attrs, read_status, write_bag
from modaltune.errors import InputError

__all__ = [
    "Bag",
    "BagHandle",
    "read_bag",
    "open_bag",
    "write_bag_h5",
    "load_patient_bag",
    "cap_patient_bag",
    "merge_bags",
    "sample_patch_indices",
    "is_diagnostic_slide",
    "bag_memory_budget",
    "BAG_SUFFIXES",
    "not_a_regular_file",
    "check_bag_header",
    "MAX_BAG_BYTES_ENV",
]

BAG_SUFFIXES = (".h5", ".hdf5", ".pt", ".pth")
_COORD_ATTRS = (
    "patch_size",
    "patch_size_level0",
    "level0_magnification",
    "target_magnification",
    "overlap",
    "level0_width",
    "level0_height",
)


@dataclass
class Bag:
    """Patch features of one slide or one patient.

    Attributes:
        features: (N, D) float16 or float32 array, as stored in the file.
        coords: (N, 2) int64 level-0 pixel (x, y), or None when the source has no coordinates.
        attrs: metadata (``encoder``, ``patch_size_level0``, magnifications, ...; merged bags add
            ``slides``: [(source, start, stop)] row ranges before capping, and ``patch_index`` when capped).
        source: file path (or ``"a.h5+b.h5"`` for a merged patient bag).
    """

    features: np.ndarray
    coords: np.ndarray | None
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def n_patches(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def encoder(self) -> str | None:
        return self.attrs.get("encoder")

    def __len__(self) -> int:
        return self.n_patches


# ---------------------------------------------------------------------------------------- helpers
def _fix_for(path: Path) -> str:
    return f"re-extract the slide's features (`modaltune extract --slides <slide file> --out {path.parent}`) or remove the slide from slides.csv"


_py = py_value  # h5 attribute value -> plain Python (kept: used throughout this module)


def _bag_format(path: Path) -> str:
    suf = path.suffix.lower()
    if suf in (".h5", ".hdf5"):
        return "h5"
    if suf in (".pt", ".pth"):
        return "pt"
    raise InputError(
        f"unsupported bag file type '{path.suffix}'",
        where=path,
        fix=f"use a TRIDENT .h5 or a CLAM .pt file (suffixes {list(BAG_SUFFIXES)})",
    )


def not_a_regular_file(path: Path) -> str:
    """Message for a path that exists but is no regular file (FIFO, socket, device): opening a
    FIFO blocks until a writer appears, so such a bag would hang validation and training."""
    mode = path.stat().st_mode
    kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device" if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) else "not a regular file"
    return f"bag path is {kind}, not a feature file"


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise InputError("feature file not found", where=path, fix="check slides.csv paths, or extract the features first")
    if path.is_dir():
        raise InputError("expected a feature file, found a directory", where=path, fix="point at the .h5/.pt file")
    if not path.is_file():  # checked before any open(): a FIFO would block the reader forever
        raise InputError(not_a_regular_file(path), where=path, fix="list regular .h5/.pt files in slides.csv")
    ensure_readable(path)


# A float is NaN/inf exactly when all its exponent bits are set. Viewed as a signed integer, the
# positive ones are the values >= EXP (nothing finite is larger); viewed as unsigned, the negative
# ones are the values >= SIGN|EXP. So two max-reductions (no temporaries, no writes) decide a block;
# the exact row is only located in a block that failed.
_FINITE_SPEC = {
    np.dtype(np.float16): (np.uint16, np.int16, 0x7C00, 0xFC00),
    np.dtype(np.float32): (np.uint32, np.int32, 0x7F800000, 0xFF800000),
    np.dtype(np.float64): (np.uint64, np.int64, 0x7FF0000000000000, 0xFFF0000000000000),
}
#: elements per block (512 KiB of float16): the block stays in L2 between the two reductions
_CHECK_BLOCK = 1 << 18


def _block_has_nonfinite(u: np.ndarray, i: np.ndarray, pos: int, neg: int) -> bool:
    return bool(u.size) and (int(u.max()) >= neg or int(i.max()) >= pos)


def _first_nonfinite_element(flat: np.ndarray, start: int = 0, stop: int | None = None) -> int | None:
    """Index of the first NaN/inf in ``flat[start:stop]`` (1-D, contiguous), or None."""
    stop = flat.size if stop is None else stop
    spec = _FINITE_SPEC.get(flat.dtype)
    if spec is None:  # unusual dtype: plain isfinite
        bad = ~np.isfinite(flat[start:stop])
        return start + int(np.argmax(bad)) if bad.any() else None
    utype, itype, pos, neg = spec
    u = flat.view(utype)
    i = u.view(itype)
    for a in range(start, stop, _CHECK_BLOCK):
        b = min(a + _CHECK_BLOCK, stop)
        if _block_has_nonfinite(u[a:b], i[a:b], pos, neg):
            return a + int(np.argmax(~np.isfinite(flat[a:b])))
    return None


def _first_nonfinite_row(features: np.ndarray) -> int | None:
    """Row index of the first NaN/inf value, or None (see :data:`_FINITE_SPEC` for the test)."""
    flat = np.ascontiguousarray(features).reshape(-1)
    k = _first_nonfinite_element(flat)
    return None if k is None else k // max(features.shape[-1], 1)


def _raise_nonfinite(path: Path | str, row: int) -> None:
    raise InputError(
        f"features contain NaN/inf (first at patch row {row})",
        where=path,
        fix="re-extract the features; NaNs usually come from a failed patch encoder run",
    )


def _check_feature_layout(shape: tuple[int, ...], dtype: np.dtype, path: Path | str) -> None:
    """Shape (N, D) with N, D > 0 and a float dtype, else InputError (shared by the full reader and
    :func:`check_bag_header`, so both give the same messages)."""
    if len(shape) != 2:
        raise InputError(
            f"features must be 2-D (N patches, D dims), got shape {tuple(shape)}",
            where=path,
            fix="store one row per patch; squeeze a leading batch axis of size 1 before saving",
        )
    if shape[0] == 0:
        raise InputError("empty bag: 0 patches", where=path, fix="re-run tissue detection/extraction, or remove the slide from slides.csv")
    if shape[1] == 0:
        raise InputError("features have 0 dimensions", where=path, fix="re-extract the features")
    if np.dtype(dtype).kind != "f":
        # integer/bool "features" are labels or masks saved by mistake, never embeddings
        what = "non-numeric" if np.dtype(dtype).kind not in "iub" else "integer/bool"
        raise InputError(f"features have {what} dtype {dtype}, not float", where=path, fix="store the patch encoder's float16/float32 embeddings")


def check_bag_header(path: str | Path) -> BagHandle:
    """Every check of :func:`read_bag` that needs no feature values (file type, format, ``features``
    present, shape, dtype, coords present with N rows), from the file's header only. The values
    (NaN/inf) are checked whenever the features are read."""
    h = open_bag(path)
    _check_feature_layout(h.shape, h.dtype, h.path)
    return h


def _normalise_features(features: np.ndarray, path: Path | str, *, finite_checked: bool = False) -> np.ndarray:
    """Validate (N, D) features; float16/float32 kept as stored, other dtypes become float32.
    ``finite_checked``: the reader already ran the NaN/inf test on these values."""
    _check_feature_layout(tuple(features.shape), features.dtype, path)
    if features.dtype not in (np.float16, np.float32):
        # float64 (or bfloat16 read as float32) -> float32: values beyond float32 become inf, so check after the cast
        finite_checked = False
        features = features.astype(np.float32)
    if not finite_checked:
        row = _first_nonfinite_row(features)
        if row is not None:
            _raise_nonfinite(path, row)
    return features


def _normalise_coords(coords: Any, n: int, path: Path | str) -> np.ndarray:
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] != n:
        raise InputError(
            f"coords must have shape ({n}, 2) to match {n} feature rows, got {tuple(coords.shape)}",
            where=path,
            fix="store one (x, y) level-0 pixel pair per patch, in the same order as the features",
        )
    if coords.dtype.kind in "iu":
        return coords.astype(np.int64, copy=False)
    if coords.dtype.kind == "f":
        if not np.isfinite(coords).all() or not np.array_equal(coords, np.round(coords)):
            raise InputError(
                "coords are not integers (non-integral or NaN float values)",
                where=path,
                fix="coords must be integer level-0 pixel positions; re-export them as int64",
            )
        return coords.astype(np.int64)
    raise InputError(f"coords have non-numeric dtype {coords.dtype}", where=path, fix="store coords as int64 (x, y)")


def _encoder_from_dir(path: Path) -> str | None:
    """TRIDENT writes ``.../features_<encoder>/<slide>.h5``: recover the encoder name from it."""
    parent = path.parent.name
    if parent.startswith("features_") and len(parent) > len("features_"):
        return parent[len("features_") :]
    return None


# ---------------------------------------------------------------------------------------- h5
def _open_h5(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(
            f"cannot open HDF5 file (corrupt or truncated: {str(exc).splitlines()[0][:120]})",
            where=path,
            fix=_fix_for(path),
        ) from exc


def _h5_attrs(f, path: Path) -> dict[str, Any]:
    """Root, ``features`` and ``coords`` attributes (root first) plus ``encoder`` (see :func:`h5layout.read_attrs`)."""
    return read_attrs(f, fallback_encoder=_encoder_from_dir(path))


#: bytes per ``readinto`` when reading and checking at once: the chunk just copied is still in cache
_READ_CHUNK = 1 << 19


def _read_h5_dataset(ds, path: Path, *, check_finite: bool = False) -> tuple[np.ndarray, bool]:
    """Read a whole dataset; returns ``(array, finite_checked)``.

    Fast path: contiguous, unfiltered, native little-endian data is read with ``readinto`` at its
    byte offset (what h5py would do, minus the overhead). With ``check_finite`` on a float dataset it
    reads in cache-sized chunks and tests each chunk for NaN/inf right after it arrives, so the test
    reads cached bytes instead of making a second pass over memory (InputError on the first bad row).
    """
    dtype = ds.dtype
    offset = None
    try:
        if ds.chunks is None and ds.compression is None and dtype.kind in "fiu" and dtype.byteorder in ("<", "=", "|") and ds.size > 0:
            offset = ds.id.get_offset()
    except Exception:  # noqa: BLE001 - exotic storage layouts fall back to reads through h5py  # pragma: no cover
        offset = None
    if offset is None:
        try:
            return ds[()], False
        except (OSError, RuntimeError, ValueError) as exc:
            raise InputError(f"cannot read dataset '{ds.name}' (corrupt or truncated: {str(exc).splitlines()[0][:120]})", where=path, fix=_fix_for(path)) from exc
    out = np.empty(ds.shape, dtype=dtype)
    nbytes = out.nbytes
    spec = _FINITE_SPEC.get(dtype) if check_finite else None
    view = memoryview(out).cast("B")
    got = 0
    with open(path, "rb", buffering=0) as fh:
        fh.seek(offset)
        if spec is None:
            got = fh.readinto(view)
        else:
            utype, itype, pos, neg = spec
            flat = out.reshape(-1)
            u = flat.view(utype)
            i = u.view(itype)
            step = max(_READ_CHUNK // dtype.itemsize, 1) * dtype.itemsize
            while got < nbytes:
                n = fh.readinto(view[got : got + step])
                if not n:
                    break
                a, b = got // dtype.itemsize, (got + n) // dtype.itemsize
                if _block_has_nonfinite(u[a:b], i[a:b], pos, neg):
                    _raise_nonfinite(path, (a + int(np.argmax(~np.isfinite(flat[a:b])))) // max(out.shape[-1], 1))
                got += n
    if got != nbytes:
        raise InputError(
            f"truncated HDF5 file: dataset '{ds.name}' needs {nbytes} bytes at offset {offset}, file has {got}",
            where=path,
            fix=_fix_for(path),
        )
    return out, spec is not None


def _read_h5(path: Path, attrs: dict[str, Any] | None = None) -> Bag:
    """``attrs``: the file's attributes when already read (by :func:`open_bag`): h5py attribute
    access costs ~2 ms per file, more than reading a small bag."""
    with _open_h5(path) as f:
        if "features" not in f:
            raise InputError(
                f"no 'features' dataset (found {sorted(f.keys())})",
                where=path,
                fix="a TRIDENT bag needs datasets 'features' (N, D) and 'coords' (N, 2)",
            )
        attrs = dict(attrs) if attrs is not None else _h5_attrs(f, path)
        features, checked = _read_h5_dataset(f["features"], path, check_finite=True)
        # TRIDENT/CLAM sometimes store (1, N, D)
        if features.ndim == 3 and features.shape[0] == 1:
            features = features[0]
        features = _normalise_features(features, path, finite_checked=checked)
        coords = None
        if "coords" in f:
            raw, _ = _read_h5_dataset(f["coords"], path)
            if raw.ndim == 3 and raw.shape[0] == 1:
                raw = raw[0]
            coords = _normalise_coords(raw, features.shape[0], path)
    return Bag(features, coords, attrs, str(path))


# ---------------------------------------------------------------------------------------- pt
def _to_numpy(t: Any, path: Path, what: str) -> np.ndarray:
    import torch

    if isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16
            t = t.float()
        return t.numpy()
    if isinstance(t, np.ndarray):
        return t
    raise InputError(f"'{what}' is a {type(t).__name__}, not a tensor", where=path, fix="save features/coords as torch tensors")


def _load_pt(path: Path, mmap: bool = False) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:
        if mmap:  # legacy (non-zip) .pt files cannot be memory-mapped
            return _load_pt(path, mmap=False)
        raise InputError(
            f"cannot read .pt file ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})",
            where=path,
            fix="save a tensor (N, D) or a dict {'features': (N, D), 'coords': (N, 2)} with torch.save",
        ) from exc


def _pt_parts(obj: Any, path: Path) -> tuple[Any, Any, dict[str, Any]]:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj, None, {}
    if isinstance(obj, dict):
        if "features" not in obj:
            raise InputError(
                f"dict .pt file has no 'features' key (keys: {sorted(map(str, obj))})",
                where=path,
                fix="save {'features': (N, D) tensor, 'coords': (N, 2) tensor}",
            )
        attrs = {k: v for k, v in obj.items() if k not in ("features", "coords") and isinstance(v, (str, int, float, bool))}
        for key in ("features", "coords"):
            v = obj.get(key)
            if v is not None and not isinstance(v, (torch.Tensor, np.ndarray)):
                raise InputError(f"dict .pt file: '{key}' is a {type(v).__name__}, not a tensor", where=path, fix=f"save '{key}' as one torch tensor (torch.stack a list first)")
        return obj["features"], obj.get("coords"), attrs
    raise InputError(f".pt file holds a {type(obj).__name__}", where=path, fix="save a tensor (N, D) or a dict with 'features' and 'coords'")


def _read_pt(path: Path) -> Bag:
    feats, coords, attrs = _pt_parts(_load_pt(path), path)
    features = _to_numpy(feats, path, "features")
    if features.ndim == 3 and features.shape[0] == 1:
        features = features[0]
    features = _normalise_features(features, path)
    c = None
    if coords is not None:
        c = _normalise_coords(_to_numpy(coords, path, "coords"), features.shape[0], path)
    attrs.setdefault("encoder", _encoder_from_dir(path))
    return Bag(features, c, attrs, str(path))


# ---------------------------------------------------------------------------------------- public API
def read_bag(path: str | Path) -> Bag:
    """Read one bag file (TRIDENT ``.h5``, CLAM ``.pt`` tensor or dict ``.pt``), validated.

    Raises:
        InputError: missing/unreadable/corrupt file, no ``features``, features not 2-D, empty bag,
            NaN/inf features, coords of the wrong shape or non-integral values.
    """
    path = Path(path)
    fmt = _bag_format(path)
    _check_exists(path)
    return _read_h5(path) if fmt == "h5" else _read_pt(path)


@dataclass
class BagHandle:
    """Lazy view of a bag file: shape, dim and encoder without reading the features.

    ``read()`` loads and validates the full :class:`Bag`.
    """

    path: Path
    format: str
    shape: tuple[int, ...]
    dtype: np.dtype
    encoder: str | None
    has_coords: bool
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_patches(self) -> int:
        return int(self.shape[0]) if self.shape else 0

    @property
    def dim(self) -> int | None:
        return int(self.shape[-1]) if len(self.shape) >= 2 else None

    @property
    def patch_size_level0(self) -> int | None:
        v = self.attrs.get("patch_size_level0")
        return int(v) if v is not None else None

    def read(self) -> Bag:
        return read_bag(self.path)


def open_bag(path: str | Path) -> BagHandle:
    """Open a bag lazily (h5 metadata only; ``.pt`` memory-mapped where possible)."""
    path = Path(path)
    fmt = _bag_format(path)
    _check_exists(path)
    if fmt == "h5":
        with _open_h5(path) as f:
            if "features" not in f:
                raise InputError(f"no 'features' dataset (found {sorted(f.keys())})", where=path, fix="a TRIDENT bag needs datasets 'features' and 'coords'")
            ds = f["features"]
            shape = tuple(ds.shape)
            if len(shape) == 3 and shape[0] == 1:
                shape = shape[1:]
            attrs = _h5_attrs(f, path)
            return BagHandle(path, fmt, shape, ds.dtype, attrs.get("encoder"), "coords" in f, attrs)
    feats, coords, attrs = _pt_parts(_load_pt(path, mmap=True), path)
    shape = tuple(feats.shape)
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    dtype = np.dtype(str(feats.dtype).replace("torch.", "")) if str(feats.dtype) != "torch.bfloat16" else np.dtype(np.float32)
    return BagHandle(path, fmt, shape, dtype, attrs.get("encoder") or _encoder_from_dir(path), coords is not None, attrs)


def is_no_tissue_bag(path: str | Path) -> bool:
    """True when ``path`` is an h5 bag that ``modaltune extract`` flagged ``status='no_tissue'``
    (a valid file with 0 patches). Such slides are treated as *missing* and reported, not as errors."""
    path = Path(path)
    if _bag_format(path) != "h5" or not path.is_file():
        return False
    try:
        with _open_h5(path) as f:
            status = read_status(f)
    except InputError:
        return False
    return status == "no_tissue"


def write_bag_h5(
    path: str | Path,
    features: np.ndarray,
    coords: np.ndarray | None,
    *,
    patch_size_level0: int,
    encoder: str,
    level0_magnification: float | None = None,
    target_magnification: float | None = None,
    patch_size: int | None = None,
    extra_attrs: dict[str, Any] | None = None,
    savetodir: str | Path | None = None,
) -> Path:
    """Write a TRIDENT-layout bag atomically (:func:`modaltune.data.h5layout.write_bag`: temporary file
    in the same folder, then ``os.replace``; a full or read-only disk raises a one-line ``DiskError``).

    Args:
        features: (N, D) float16/float32, written as is (contiguous, uncompressed: fastest to read).
        coords: (N, 2) integer level-0 (x, y), or ``None`` to write no ``coords`` dataset (the
            patch size then goes on the root attributes).
        patch_size_level0: patch side in level-0 pixels.
        encoder: patch encoder name (attribute ``encoder`` on ``features`` and the root).
        savetodir: the folder recorded in the ``savetodir`` attributes (default: ``path``'s folder;
            give the final folder when ``path`` lies in a staging folder that is renamed later).
    Returns:
        The written path.
    """
    path = Path(path)
    features = np.asarray(features)
    features = _normalise_features(features, path)
    cattrs: dict[str, Any] = {"patch_size_level0": int(patch_size_level0)}
    if coords is not None:
        coords = _normalise_coords(coords, features.shape[0], path)
        cattrs = {
            "patch_size": int(patch_size if patch_size is not None else patch_size_level0),
            "patch_size_level0": int(patch_size_level0),
            "level0_magnification": level0_magnification,
            "target_magnification": target_magnification,
            "overlap": 0,
            "level0_width": int(coords[:, 0].max() + patch_size_level0) if len(coords) else None,
            "level0_height": int(coords[:, 1].max() + patch_size_level0) if len(coords) else None,
        }
    return write_bag(path, features, coords, encoder=encoder, coords_attrs=cattrs, extra_attrs=extra_attrs, savetodir=savetodir)


# ---------------------------------------------------------------------------------------- patients
def is_diagnostic_slide(path: str | Path) -> bool:
    """TCGA diagnostic slide 1: ``DX1`` in the file name (e.g. ``TCGA-3C-AALI-01Z-00-DX1.<uuid>.h5``)."""
    return "DX1" in Path(path).name.upper()


def _patch_size_of(bag: Bag) -> int:
    """Level-0 patch side: the ``patch_size_level0`` attribute, else the smallest positive gap
    between distinct x coordinates, else 1."""
    v = bag.attrs.get("patch_size_level0")
    if v is not None:
        try:
            return max(int(v), 1)
        except (TypeError, ValueError):
            pass
    if bag.coords is not None and len(bag.coords) > 1:
        xs = np.unique(bag.coords[:, 0])
        if len(xs) > 1:
            return max(int(np.diff(xs).min()), 1)
    return 1


def _grid_layout(sizes: list[tuple[int, int]], gaps: list[int]) -> list[tuple[int, int]]:
    """Origins ``(x, y)`` of boxes placed row by row on a near-square grid.

    ``sizes[k]`` = (width, height) of box k, ``gaps[k]`` its gap to the next box. Every number of
    columns 1..n is tried; the one whose bounding box has the smallest longer side wins (ties: fewer
    columns), so the side grows like sqrt(n) instead of n and any number of slides of a patient
    stays inside a square position grid (GigaPath: 1000 x 1000 cells) as long as their area fits.
    Column k's x = sum of the widths (+ gaps) of the widest box of each column before it; row r's
    y likewise with the tallest box of each row.
    """
    n = len(sizes)
    best = None
    for cols in range(1, n + 1):
        rows = -(-n // cols)
        col_w = [max(sizes[i][0] + gaps[i] for i in range(c, n, cols)) for c in range(cols)]
        row_h = [max(sizes[i][1] + gaps[i] for i in range(r * cols, min(n, (r + 1) * cols))) for r in range(rows)]
        xs = np.concatenate([[0], np.cumsum(col_w)[:-1]]).astype(np.int64)
        ys = np.concatenate([[0], np.cumsum(row_h)[:-1]]).astype(np.int64)
        side = max(sum(col_w), sum(row_h))
        if best is None or side < best[0]:
            best = (side, [(int(xs[i % cols]), int(ys[i // cols])) for i in range(n)])
    return best[1]  # type: ignore[index]


def merge_bags(bags: list[Bag], *, gap: int | None = None) -> Bag:
    """Concatenate slides of one patient into one bag.

    Coordinate rule (several slides with coordinates): each slide is translated so that its
    bounding box (min corner to max corner + its patch size) sits in one cell of a near-square grid
    of slides, row by row in file order (:func:`_grid_layout`), separated by ``gap`` level-0 pixels
    (default: one patch size of the slide). The first slide starts at (0, 0). Bounding boxes of
    different slides are therefore disjoint, and the merged extent grows like sqrt(number of slides),
    so a patient with many slides stays inside an encoder's position grid (GigaPath's 1000 x 1000
    cells; TITAN's dense patch grid stays near-square). Offsets are multiples of nothing in
    particular: a patch keeps its offset within its slide. If any slide lacks coordinates, the
    merged bag has ``coords=None``. One slide is returned unchanged.
    """
    if not bags:
        raise InputError("no slides to merge", fix="the patient has no readable bag files")
    if len(bags) == 1:
        b = bags[0]
        attrs = dict(b.attrs)
        attrs["slides"] = [(b.source, 0, b.n_patches)]
        return Bag(b.features, b.coords, attrs, b.source)
    dtype = np.result_type(*[b.features.dtype for b in bags])
    features = np.concatenate([b.features for b in bags], axis=0).astype(dtype, copy=False)
    coords = None
    if all(b.coords is not None for b in bags):
        lows, sizes, gaps = [], [], []
        for b in bags:
            c = b.coords  # type: ignore[union-attr]
            ps = _patch_size_of(b)
            lo = c.min(axis=0) if len(c) else np.zeros(2, c.dtype)
            hi = c.max(axis=0) if len(c) else np.zeros(2, c.dtype)
            lows.append(lo)
            sizes.append((int(hi[0] - lo[0]) + ps, int(hi[1] - lo[1]) + ps))
            gaps.append(ps if gap is None else int(gap))
        origins = _grid_layout(sizes, gaps)
        parts = []
        for b, lo, (ox, oy) in zip(bags, lows, origins):
            c = b.coords.copy()  # type: ignore[union-attr]
            c[:, 0] += ox - lo[0]
            c[:, 1] += oy - lo[1]
            parts.append(c)
        coords = np.concatenate(parts, axis=0)
    ranges, start = [], 0
    for b in bags:
        ranges.append((b.source, start, start + b.n_patches))
        start += b.n_patches
    attrs = dict(bags[0].attrs)
    attrs["slides"] = ranges
    return Bag(features, coords, attrs, "+".join(b.source for b in bags))


def _stable_key(paths: Iterable[str | Path]) -> int:
    """A process-independent 32-bit key for a patient's file set (Python's hash() is salted)."""
    return zlib.crc32("|".join(Path(p).name for p in paths).encode())


def sample_patch_indices(n: int, max_patches: int, *, training: bool, seed: int = 0, epoch: int = 0, key: int = 0) -> np.ndarray:
    """Sorted indices of ``min(n, max_patches)`` patches.

    Training draws a fresh random subset per ``epoch`` (rng seeded by ``(seed, epoch, key)``);
    evaluation draws one fixed subset per ``(seed, key)``, identical on every call. ``key``
    distinguishes patients so that they do not share one pattern.
    """
    if max_patches is None or n <= max_patches:
        return np.arange(n)
    entropy = [int(seed) & 0xFFFFFFFF, int(key) & 0xFFFFFFFF] + ([int(epoch) & 0xFFFFFFFF, 1] if training else [0, 0])
    rng = np.random.default_rng(entropy)
    return np.sort(rng.choice(n, size=max_patches, replace=False))


# ---------------------------------------------------------------------------------------- memory guard
MAX_BAG_BYTES_ENV = "MODALTUNE_MAX_BAG_BYTES"
_DEFAULT_RAM_FRACTION = 0.5  # a bag may take at most half the RAM available when it is read
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


def _parse_bytes(text: str) -> int | None:
    """``"2147483648"``, ``"2e9"``, ``"512M"``, ``"4GiB"`` -> bytes (binary units); ``"0"``/``"none"``/``"off"`` -> None (no limit)."""
    t = text.strip().upper().replace(" ", "")
    if t in ("", "0", "NONE", "OFF", "INF", "UNLIMITED"):
        return None
    num = t.rstrip("KMGTIB")
    unit = t[len(num):]
    try:
        value = float(num) * _UNITS[unit]
    except (ValueError, KeyError):
        raise InputError(
            f"cannot read {MAX_BAG_BYTES_ENV}={text!r} as a size",
            fix="use bytes or a size like 512M / 8G (0 or 'none' turns the bag memory guard off)",
        ) from None
    return int(value) if value > 0 else None


def _available_ram_bytes() -> int | None:
    """RAM available to new allocations now: /proc/meminfo MemAvailable, else psutil, else os.sysconf."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file states kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - optional psutil probe: absent or unsupported platform
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def bag_memory_budget(max_bag_bytes: int | None = None) -> int | None:
    """Bytes one patient bag may take in memory, or None for no limit.

    ``max_bag_bytes`` (> 0) wins; else ``$MODALTUNE_MAX_BAG_BYTES`` (bytes or ``512M``/``8G``; ``0``
    or ``none`` = no limit); else half of the RAM available now (MemAvailable).
    """
    if max_bag_bytes is not None:
        return int(max_bag_bytes) if max_bag_bytes > 0 else None
    env = os.environ.get(MAX_BAG_BYTES_ENV)
    if env is not None:
        return _parse_bytes(env)
    avail = _available_ram_bytes()
    return None if avail is None else int(avail * _DEFAULT_RAM_FRACTION)


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.3g} GiB"


def _check_bag_memory(handles: list[BagHandle], n_keep: int, budget: int | None) -> int:
    """Estimated bytes of the patient bag (``n_keep`` feature rows at the widest stored dtype, plus
    every slide's coords, which are read in full for the merge rule); InputError over ``budget``."""
    itemsize = max(h.dtype.itemsize for h in handles)
    dim = handles[0].dim or 0
    n_total = sum(h.n_patches for h in handles)
    need = n_keep * dim * itemsize + sum(h.n_patches * 16 for h in handles if h.has_coords)
    if budget is not None and need > budget:
        names = ", ".join(h.path.name for h in handles)
        cap = "" if n_keep == n_total else f" after the cap of {n_keep} patches"
        raise InputError(
            f"patient bag too large for memory: {n_total} patches x {dim} dims ({handles[0].dtype}) would need "
            f"{_gib(need)}{cap}, over the budget of {_gib(budget)} ({MAX_BAG_BYTES_ENV} or half the available RAM)",
            where=names,
            fix=f"set trainer.max_patches to cap the patches read per patient, or raise {MAX_BAG_BYTES_ENV} (e.g. 16G)",
        )
    return need


def _read_rows_h5(path: Path, rows: np.ndarray, attrs: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Features of the sorted ``rows`` only, all coords, attrs. A contiguous unfiltered dataset is
    memory-mapped at its file offset (only the touched pages are read); other layouts use h5py's
    fancy indexing, which reads just the selected rows."""
    with _open_h5(path) as f:
        if "features" not in f:
            raise InputError(f"no 'features' dataset (found {sorted(f.keys())})", where=path, fix="a TRIDENT bag needs datasets 'features' (N, D) and 'coords' (N, 2)")
        attrs = dict(attrs) if attrs is not None else _h5_attrs(f, path)
        ds = f["features"]
        squeeze = ds.ndim == 3 and ds.shape[0] == 1
        offset = None
        try:
            if ds.chunks is None and ds.compression is None and ds.dtype.kind in "fiu" and ds.dtype.byteorder in ("<", "=", "|") and ds.size > 0:
                offset = ds.id.get_offset()
        except Exception:  # noqa: BLE001 - exotic storage layouts fall back to reads through h5py  # pragma: no cover
            offset = None
        try:
            if len(rows) == 0:  # no sampled row in this slide
                features = np.empty((0, ds.shape[-1]), dtype=ds.dtype)
            elif offset is not None:
                shape = ds.shape[1:] if squeeze else ds.shape
                mm = np.memmap(path, dtype=ds.dtype, mode="r", offset=offset, shape=shape)
                features = np.asarray(mm[rows])
                del mm
            else:
                features = ds[0, rows] if squeeze else ds[rows]
        except (OSError, RuntimeError, ValueError) as exc:
            raise InputError(f"cannot read dataset 'features' (corrupt or truncated: {str(exc).splitlines()[0][:120]})", where=path, fix=_fix_for(path)) from exc
        coords = None
        if "coords" in f:
            coords, _ = _read_h5_dataset(f["coords"], path)
            if coords.ndim == 3 and coords.shape[0] == 1:
                coords = coords[0]
    return features, coords, attrs


def _read_rows(handle: BagHandle, rows: np.ndarray) -> Bag:
    """A :class:`Bag` holding only feature ``rows`` (sorted) of ``handle`` but **all** its coords
    (``features`` and ``coords`` then differ in length; :func:`load_patient_bag` indexes the coords)."""
    path = handle.path
    if handle.format == "h5":
        features, coords, attrs = _read_rows_h5(path, rows, handle.attrs)
    else:
        feats, c, attrs = _pt_parts(_load_pt(path, mmap=True), path)  # mmap: indexing reads the rows only
        full = feats[0] if feats.ndim == 3 and feats.shape[0] == 1 else feats
        features = _to_numpy(full[rows], path, "features") if len(rows) else _to_numpy(full[:0], path, "features")
        coords = None if c is None else _to_numpy(c, path, "coords")
        if coords is not None and coords.ndim == 3 and coords.shape[0] == 1:
            coords = coords[0]
        attrs.setdefault("encoder", _encoder_from_dir(path))
    if coords is not None:
        coords = _normalise_coords(coords, handle.n_patches, path)
    if len(rows):
        features = _normalise_features(features, path)
    return Bag(features, coords, attrs, str(path))


def load_patient_bag(
    paths: list[str | Path],
    *,
    max_patches: int | None = None,
    training: bool = False,
    seed: int = 0,
    epoch: int = 0,
    diagnostic_only: bool = False,
    expected_dim: int | None = None,
    expected_encoder: str | None = None,
    max_bag_bytes: int | None = None,
) -> Bag:
    """Read and merge a patient's slides into one bag (see :func:`merge_bags` for the coordinate
    rule), then cap it to ``max_patches`` (:func:`sample_patch_indices`).

    ``diagnostic_only`` keeps only ``DX1`` slides; a patient without any keeps its first listed
    slide (``attrs["diagnostic_fallback"] = True``) rather than being dropped.
    Feature dim and encoder must agree across slides and with ``expected_*``, else InputError naming the file.

    Memory guard: the files' shapes are read first (:func:`open_bag`) and the bag's size after the
    cap (rows x dim x itemsize, plus 16 bytes of coords per patch) is checked against
    :func:`bag_memory_budget` (``max_bag_bytes``, else ``$MODALTUNE_MAX_BAG_BYTES``, else half the
    available RAM): over it, InputError names the files, the size and the fix. With a cap, only the
    sampled feature rows are read from disk (the same rows as capping the full bag).
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("patient has no slide files", fix="list the patient's bags in slides.csv or mark the slide modality missing")
    fallback = False
    if diagnostic_only:
        dx = [p for p in paths if is_diagnostic_slide(p)]
        if not dx:
            dx, fallback = paths[:1], True
        paths = dx
    handles = [open_bag(p) for p in paths]
    well_formed = all(len(h.shape) == 2 and h.n_patches > 0 and (h.dim or 0) > 0 for h in handles)
    n_total = sum(h.n_patches for h in handles)
    capped = well_formed and max_patches is not None and n_total > max_patches
    if well_formed and len({h.dim for h in handles}) == 1:  # else the per-file checks below name the culprit
        _check_bag_memory(handles, min(n_total, max_patches) if capped else n_total, bag_memory_budget(max_bag_bytes))
    idx = sample_patch_indices(n_total, max_patches, training=training, seed=seed, epoch=epoch, key=_stable_key(paths)) if capped else None
    bags: list[Bag] = []
    start = 0
    for h in handles:
        p = h.path
        if capped:
            lo, hi = np.searchsorted(idx, [start, start + h.n_patches])
            b = _read_rows(h, idx[lo:hi] - start)
            start += h.n_patches
        else:
            b = _read_h5(p, h.attrs) if h.format == "h5" else read_bag(p)
        if expected_dim is not None and b.dim != expected_dim:
            raise InputError(
                f"feature dim {b.dim} does not match the cohort's feature_dim {expected_dim}",
                where=p,
                fix="re-extract with the cohort's encoder, or fix feature_dim in cohort.yaml",
            )
        if expected_encoder is not None and b.encoder is not None and b.encoder != expected_encoder:
            raise InputError(
                f"bag encoder '{b.encoder}' does not match the cohort's encoder '{expected_encoder}'",
                where=p,
                fix="re-extract with the cohort's encoder, or fix 'encoder' in cohort.yaml",
            )
        if bags:
            first = bags[0]
            if b.dim != first.dim:
                raise InputError(
                    f"feature dim {b.dim} differs from {first.dim} in {Path(first.source).name} (same patient)",
                    where=p,
                    fix="all slides of a patient must be encoded with the same patch encoder",
                )
            if b.encoder and first.encoder and b.encoder != first.encoder:
                raise InputError(
                    f"encoder '{b.encoder}' differs from '{first.encoder}' in {Path(first.source).name} (same patient)",
                    where=p,
                    fix="all slides of a patient must be encoded with the same patch encoder",
                )
        bags.append(b)
    if capped:
        # the coordinate rule needs each slide's full extent: merge all coords, then keep the sampled rows
        coords = None
        if all(b.coords is not None for b in bags):
            coords = merge_bags([Bag(b.coords, b.coords, b.attrs, b.source) for b in bags]).coords[idx]  # type: ignore[index]
        dtype = np.result_type(*[b.features.dtype for b in bags])
        features = np.concatenate([b.features for b in bags], axis=0).astype(dtype, copy=False)
        bounds = np.cumsum([0] + [h.n_patches for h in handles]).tolist()
        attrs = dict(bags[0].attrs)
        attrs["slides"] = [(b.source, bounds[k], bounds[k + 1]) for k, b in enumerate(bags)]
        attrs["patch_index"] = idx
        bag = Bag(features, coords, attrs, "+".join(b.source for b in bags))
    else:
        bag = merge_bags(bags)
    if fallback:
        bag.attrs["diagnostic_fallback"] = True
    return bag


def cap_patient_bag(bag: Bag, max_patches: int | None, *, training: bool = False, seed: int = 0, epoch: int = 0) -> Bag:
    """Cap a patient bag that is already in memory: the same rows, coordinates and order that
    :func:`load_patient_bag` with the same ``max_patches/training/seed/epoch`` reads from disk.

    ``bag`` must be an uncapped bag from :func:`load_patient_bag` (its ``attrs["slides"]`` lists the
    source files, which key the seeded sample). Used by the in-memory bag cache of
    :class:`modaltune.data.dataset.PatientDataset`, so caching never changes which patches a model sees.
    Returns ``bag`` itself when no cap applies (N <= max_patches).
    """
    n = bag.n_patches
    if max_patches is None or n <= max_patches:
        return bag
    sources = [s for s, _, _ in bag.attrs.get("slides", [(bag.source, 0, n)])]
    idx = sample_patch_indices(n, max_patches, training=training, seed=seed, epoch=epoch, key=_stable_key(sources))
    attrs = dict(bag.attrs)
    attrs["patch_index"] = idx
    coords = bag.coords[idx] if bag.coords is not None else None
    return Bag(bag.features[idx], coords, attrs, bag.source)
