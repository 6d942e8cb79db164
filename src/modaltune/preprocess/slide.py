"""Open whole-slide images with OpenSlide (default) or tiffslide, and resolve their pixel size.

Coordinates everywhere in :mod:`modaltune.preprocess` are **level-0 pixels**, (x, y) of the top-left
corner. Pixel size is in µm per pixel (MPP). A slide must have an MPP, either from its metadata or
from an override table (CSV with columns ``slide,mpp``); a slide with neither is an
:class:`~modaltune.errors.InputError` that names the slide, because guessing the scale silently
produces patches at the wrong magnification.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modaltune.errors import InputError, require

__all__ = [
    "SLIDE_EXTENSIONS",
    "WSI",
    "open_slide",
    "read_mpp_overrides",
    "magnification_from_mpp",
]

# Formats OpenSlide 4 reads (tiffslide covers the TIFF-based subset).
SLIDE_EXTENSIONS = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm",
)
_TIFFSLIDE_EXTENSIONS = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".svslide")
# Standard objective powers; a magnification derived from MPP snaps to the nearest one.
_STANDARD_MAGS = (1.25, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 80.0)


def magnification_from_mpp(mpp: float) -> float:
    """Objective power implied by a pixel size, using the convention 10 µm/px ≙ 1x (0.5 µm/px ≙ 20x).

    Snaps to the nearest standard magnification when within 20 %, so 0.499 µm/px gives 20.0.

    >>> magnification_from_mpp(0.2527)
    40.0
    """
    raw = 10.0 / mpp
    nearest = min(_STANDARD_MAGS, key=lambda m: abs(math.log(raw / m)))
    return nearest if abs(raw / nearest - 1) <= 0.2 else round(raw, 2)


def read_mpp_overrides(path: str | Path) -> dict[str, float]:
    """Read an MPP override table: CSV with header ``slide,mpp``; ``slide`` is a file name or stem.

    Returns ``{slide: mpp}`` with keys as written. Raises :class:`InputError` naming the row at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("MPP override table not found", where=path, fix="pass a CSV with columns slide,mpp")
    out: dict[str, float] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "slide" not in cols or "mpp" not in cols:
            raise InputError(f"columns are {reader.fieldnames}, expected slide,mpp", where=path, fix="add a header line 'slide,mpp'")
        for i, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            try:
                mpp = float(row["mpp"])
            except ValueError:
                mpp = float("nan")
            if not (mpp > 0 and math.isfinite(mpp)):
                raise InputError(f"line {i}: mpp '{row['mpp']}' for slide '{row['slide']}' is not a positive number", where=path, fix="write the pixel size in µm per pixel, e.g. 0.25")
            out[row["slide"]] = mpp
    return out


def _lookup_override(overrides: Mapping[str, float] | None, path: Path) -> float | None:
    if not overrides:
        return None
    for key in (path.name, path.stem):
        if key in overrides:
            return float(overrides[key])
    return None


@dataclass
class _Meta:
    mpp: float | None
    objective: float | None


def _float_or_none(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v > 0 and math.isfinite(v) else None


class WSI:
    """A whole-slide image opened with one backend.

    Attributes: ``name`` (file stem), ``path``, ``backend`` ('openslide' | 'tiffslide'), ``width``/
    ``height`` (level-0 px), ``level_dimensions`` ((w, h) per level), ``level_downsamples``, ``mpp``
    (µm/px at level 0), ``mpp_source`` ('metadata' | 'override'), ``magnification`` (level-0 objective
    power, from metadata or derived from MPP).

    Handles are not picklable; worker processes re-open the slide from ``path``.
    """

    def __init__(self, path: str | Path, *, backend: str = "auto", mpp: float | None = None,
                 mpp_overrides: Mapping[str, float] | None = None):
        self.path = Path(path)
        self.name = self.path.stem
        if not self.path.exists():
            raise InputError("slide file not found", where=self.path)
        ext = self.path.suffix.lower()
        if ext not in SLIDE_EXTENSIONS:
            raise InputError(
                f"unsupported slide format '{ext or self.path.name}'", where=self.path,
                fix=f"convert it to a pyramidal TIFF; readable formats are {', '.join(SLIDE_EXTENSIONS)}",
            )
        if backend not in ("auto", "openslide", "tiffslide"):
            raise InputError(f"unknown slide backend '{backend}'", fix="use auto, openslide or tiffslide")
        self._handle, self.backend = self._open(backend, ext)
        h = self._handle
        self.level_dimensions = tuple((int(w), int(hh)) for w, hh in h.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in h.level_downsamples)
        self.width, self.height = self.level_dimensions[0]
        meta = self._metadata()
        override = mpp if mpp is not None else _lookup_override(mpp_overrides, self.path)
        if override is not None:
            self.mpp, self.mpp_source = float(override), "override"
        elif meta.mpp is not None:
            self.mpp, self.mpp_source = meta.mpp, "metadata"
        else:
            self.close()
            raise InputError(
                f"slide '{self.path.name}' has no pixel size (MPP) in its metadata", where=self.path,
                fix="add a row to an override CSV (columns slide,mpp) and pass --mpp-overrides",
            )
        if meta.objective is not None and override is None:
            self.magnification = meta.objective
        else:
            self.magnification = magnification_from_mpp(self.mpp)

    # -- opening -------------------------------------------------------------------------------
    def _open(self, backend: str, ext: str):
        errors = []
        order = ["openslide", "tiffslide"] if backend == "auto" else [backend]
        for name in order:
            if name == "tiffslide" and ext not in _TIFFSLIDE_EXTENSIONS:
                errors.append(f"tiffslide: format {ext} not supported")
                continue
            try:
                if name == "openslide":
                    mod = require("openslide", "wsi", "reading slides with OpenSlide")
                    handle = mod.OpenSlide(str(self.path))
                else:
                    mod = require("tiffslide", "wsi", "reading slides with tiffslide")
                    handle = mod.TiffSlide(str(self.path))
                # tiffslide parses lazily: touch geometry and metadata now so a broken file fails here.
                try:
                    if not handle.level_dimensions or min(handle.level_dimensions[0]) < 1:
                        raise ValueError("no image levels")
                    dict(handle.properties)
                except Exception:
                    handle.close()
                    raise
                return handle, name
            except ImportError:
                raise
            except Exception as exc:  # noqa: BLE001 - each backend raises its own error types for unreadable files
                errors.append(f"{name}: {type(exc).__name__}: {exc}".strip())
        raise InputError(
            "cannot read the file as a slide (" + "; ".join(errors) + ")", where=self.path,
            fix="check the file is a complete, uncorrupted whole-slide image",
        )

    def _metadata(self) -> _Meta:
        props = self._handle.properties
        prefix = "openslide" if self.backend == "openslide" else "tiffslide"
        mpp_x = _float_or_none(props.get(f"{prefix}.mpp-x"))
        mpp_y = _float_or_none(props.get(f"{prefix}.mpp-y"))
        mpp = mpp_x if mpp_y is None else (mpp_y if mpp_x is None else (mpp_x + mpp_y) / 2)
        if mpp is None:
            mpp = _float_or_none(props.get("aperio.MPP"))
        objective = _float_or_none(props.get(f"{prefix}.objective-power")) or _float_or_none(props.get("aperio.AppMag"))
        return _Meta(mpp, objective)

    # -- geometry ------------------------------------------------------------------------------
    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def best_level(self, downsample: float) -> int:
        """Highest-index level whose downsample does not exceed ``downsample`` (so we only ever shrink)."""
        best = 0
        for i, d in enumerate(self.level_downsamples):
            if d <= downsample * (1 + 1e-3):
                best = i
        return best

    # -- pixels --------------------------------------------------------------------------------
    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        """Read (height, width, 3) uint8 RGB at ``level``; (x, y) is the top-left in level-0 px.

        Transparent pixels (outside the scanned area) are composited onto white, as a glass slide is.
        """
        img = self._handle.read_region((int(x), int(y)), int(level), (int(width), int(height)))
        arr = np.asarray(img)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.shape[2] == 4:
            alpha = arr[..., 3]
            if alpha.min() < 255:
                # Integer compositing (uint16) keeps the temporary at 2 bytes per channel, not float32's 4.
                a = alpha.astype(np.uint16)[..., None]
                rgb = (arr[..., :3].astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
                return rgb.astype(np.uint8)
        return np.ascontiguousarray(arr[..., :3])

    def low_resolution(self, downsample: float, chunk: int = 2048) -> tuple[np.ndarray, float]:
        """Whole-slide RGB image at roughly ``downsample`` x level 0, read in chunks to bound memory.

        Returns ``(image (h, w, 3) uint8, actual_downsample)``: level-0 px per image px along x.
        Memory stays at one chunk of the best pyramid level plus the output, even for a single-level
        slide of any size.
        """
        import cv2

        downsample = max(1.0, float(downsample))
        out_w = max(1, int(round(self.width / downsample)))
        out_h = max(1, int(round(self.height / downsample)))
        level = self.best_level(downsample)
        lvl_ds = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        out = np.empty((out_h, out_w, 3), np.uint8)
        sx, sy = out_w / lw, out_h / lh  # output px per level px
        for ly in range(0, lh, chunk):
            for lx in range(0, lw, chunk):
                cw, ch = min(chunk, lw - lx), min(chunk, lh - ly)
                ox0, oy0 = int(round(lx * sx)), int(round(ly * sy))
                ox1, oy1 = int(round((lx + cw) * sx)), int(round((ly + ch) * sy))
                if ox1 <= ox0 or oy1 <= oy0:
                    continue
                region = self.read_region(int(lx * lvl_ds), int(ly * lvl_ds), level, cw, ch)
                out[oy0:oy1, ox0:ox1] = cv2.resize(region, (ox1 - ox0, oy1 - oy0), interpolation=cv2.INTER_AREA)
        return out, self.width / out_w

    def close(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.close()
            self._handle = None

    def __enter__(self) -> WSI:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"WSI({self.name!r}, {self.width}x{self.height} px, {self.level_count} levels, "
                f"mpp={self.mpp:.4g} ({self.mpp_source}), mag={self.magnification:g}x, backend={self.backend})")


def open_slide(path: str | Path, *, backend: str = "auto", mpp: float | None = None,
               mpp_overrides: Mapping[str, float] | str | Path | None = None) -> WSI:
    """Open a slide. ``backend``: 'auto' (OpenSlide, then tiffslide), 'openslide' or 'tiffslide'.

    ``mpp`` forces the pixel size; ``mpp_overrides`` is a ``{slide: mpp}`` mapping or a CSV path.
    """
    if isinstance(mpp_overrides, (str, Path)):
        mpp_overrides = read_mpp_overrides(mpp_overrides)
    return WSI(path, backend=backend, mpp=mpp, mpp_overrides=mpp_overrides)
