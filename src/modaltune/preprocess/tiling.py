"""Patch grid over tissue: level-0 coordinates plus the attributes TRIDENT writes on ``coords``.

A patch is ``patch_size`` px at the target magnification; its footprint at level 0 is
``patch_size_level0 = patch_size * level0_magnification // target_magnification`` (TRIDENT's
formula, so files agree with TRIDENT's readers), or ``round(patch_size * target_mpp / mpp)`` when
a target MPP is given. The grid step is ``(patch_size - overlap)`` target px. Only patches lying
fully inside the slide are kept, and only if at least ``min_tissue`` of their area is tissue.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modaltune.errors import InputError

__all__ = ["TilingPlan", "plan_tiles", "tissue_fraction_per_patch"]


@dataclass
class TilingPlan:
    """Coordinates and reading geometry of a slide's patches.

    ``coords``: (N, 2) int64, level-0 (x, y) top-left; ``tissue``: (N,) float32 tissue fraction;
    ``read_level``: pyramid level read from; ``read_size``: patch side in px at that level (resized to
    ``patch_size`` afterwards when different); ``attrs``: TRIDENT ``coords`` attributes.
    """

    coords: np.ndarray
    tissue: np.ndarray
    patch_size: int
    patch_size_level0: int
    read_level: int
    read_size: int
    attrs: dict

    def __len__(self) -> int:
        return int(self.coords.shape[0])


def tissue_fraction_per_patch(mask: np.ndarray, downsample: float, coords: np.ndarray, size_level0: int) -> np.ndarray:
    """Fraction (0-1) of each square patch covered by ``mask``; (N,) float32.

    ``mask``: (h, w) bool at ``downsample`` level-0 px per mask px; ``coords``: (N, 2) level-0 (x, y).
    Uses a summed-area table, so the cost is O(N) whatever the patch size.
    """
    if len(coords) == 0:
        return np.zeros(0, np.float32)
    h, w = mask.shape
    sat = np.zeros((h + 1, w + 1), np.int64)
    sat[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    x0 = np.clip(np.round(coords[:, 0] / downsample).astype(np.int64), 0, w)
    y0 = np.clip(np.round(coords[:, 1] / downsample).astype(np.int64), 0, h)
    x1 = np.clip(np.round((coords[:, 0] + size_level0) / downsample).astype(np.int64), 0, w)
    y1 = np.clip(np.round((coords[:, 1] + size_level0) / downsample).astype(np.int64), 0, h)
    # Patches smaller than one mask pixel still sample the pixel they fall in.
    x1 = np.maximum(x1, np.minimum(x0 + 1, w))
    y1 = np.maximum(y1, np.minimum(y0 + 1, h))
    area = (x1 - x0) * (y1 - y0)
    inside = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    return np.where(area > 0, inside / np.maximum(area, 1), 0.0).astype(np.float32)


def plan_tiles(wsi, tissue, *, patch_size: int = 256, magnification: float | None = 20.0,
               target_mpp: float | None = None, overlap: int = 0, min_tissue: float = 0.25) -> TilingPlan:
    """Grid of patches over ``wsi`` kept where ``tissue`` (a :class:`TissueMask`) covers ≥ ``min_tissue``.

    Give either ``magnification`` (e.g. 20) or ``target_mpp`` (µm/px; wins when both are given).
    Raises :class:`InputError` when the request asks for more resolution than the slide has.
    """
    if patch_size <= 0:
        raise InputError(f"patch size {patch_size} must be positive")
    if not 0 <= overlap < patch_size:
        raise InputError(f"overlap {overlap} must be in [0, patch_size={patch_size})")
    if not 0.0 <= min_tissue <= 1.0:
        raise InputError(f"min tissue fraction {min_tissue} must be in [0, 1]")
    if target_mpp is not None:
        if target_mpp <= 0:
            raise InputError(f"target MPP {target_mpp} must be positive")
        size0 = int(round(patch_size * target_mpp / wsi.mpp))
        target_mag = float(wsi.magnification) * wsi.mpp / target_mpp
    else:
        if magnification is None or magnification <= 0:
            raise InputError("give a positive target magnification (--mag) or a target MPP (--mpp)")
        target_mag = float(magnification)
        size0 = int(patch_size * float(wsi.magnification) // target_mag)
    if target_mag > float(wsi.magnification) * 1.01:
        raise InputError(
            f"slide '{wsi.name}' is scanned at {wsi.magnification:g}x; cannot extract patches at {target_mag:g}x",
            where=wsi.path, fix=f"use --mag {wsi.magnification:g} or lower",
        )
    size0 = max(1, size0)
    step0 = max(1, int(round((patch_size - overlap) * size0 / patch_size)))
    xs = np.arange(0, wsi.width - size0 + 1, step0, dtype=np.int64)
    ys = np.arange(0, wsi.height - size0 + 1, step0, dtype=np.int64)
    gx, gy = np.meshgrid(xs, ys)  # row-major: y outer, x inner, as a reader scans a slide
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    frac = tissue_fraction_per_patch(tissue.mask, tissue.downsample, grid, size0)
    # A zero threshold still demands some tissue: background-only patches are never useful.
    keep = (frac >= min_tissue) & (frac > 0)
    level = wsi.best_level(size0 / patch_size)
    read_size = max(1, int(round(size0 / wsi.level_downsamples[level])))
    mag0 = float(wsi.magnification)
    attrs = {
        "patch_size": int(patch_size),
        "patch_size_level0": int(size0),
        "level0_magnification": int(mag0) if mag0.is_integer() else mag0,
        "target_magnification": int(target_mag) if float(target_mag).is_integer() else float(target_mag),
        "overlap": int(overlap),
        "name": wsi.name,
        "level0_width": int(wsi.width),
        "level0_height": int(wsi.height),
    }
    return TilingPlan(coords=grid[keep], tissue=frac[keep], patch_size=int(patch_size), patch_size_level0=size0,
                      read_level=level, read_size=read_size, attrs=attrs)
