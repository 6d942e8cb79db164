"""Synthetic pyramidal TIFF slides (tests, benchmarks, demos): H&E-coloured blobs on white glass.

Written tile by tile with tifffile, so a slide of any size is generated in bounded memory. Levels
are stored as successive IFDs (OpenSlide's "generic tiled TIFF"), which OpenSlide and tiffslide
both read; the pixel size goes into the TIFF resolution tags (centimetre unit), from which both
derive the MPP. ``mpp=None`` writes no resolution, i.e. a slide without pixel size.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_synthetic_slide"]

_BACKGROUND = np.array([242, 242, 240], np.float32)
_EOSIN = np.array([225, 140, 185], np.float32)
_HEMATOXYLIN = np.array([120, 70, 150], np.float32)


def _tissue_map(width: int, height: int, blobs: Sequence[tuple[float, float, float, float]], scale: int) -> np.ndarray:
    """Low-res bool map (1 px = ``scale`` level-0 px); blobs are (cx, cy, rx, ry) in fractions of width/height."""
    h, w = max(1, -(-height // scale)), max(1, -(-width // scale))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx = (xx + 0.5) * scale / width
    yy = (yy + 0.5) * scale / height
    m = np.zeros((h, w), bool)
    for cx, cy, rx, ry in blobs:
        m |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    return m


def _tile(x0: int, y0: int, tw: int, th: int, tmap: np.ndarray, scale: int, ds: int, seed: int) -> np.ndarray:
    """RGB tile at a level with downsample ``ds``; (x0, y0) in that level's px."""
    ys = ((np.arange(th) + y0) * ds) // scale
    xs = ((np.arange(tw) + x0) * ds) // scale
    ys = np.clip(ys, 0, tmap.shape[0] - 1)
    xs = np.clip(xs, 0, tmap.shape[1] - 1)
    inside = tmap[np.ix_(ys, xs)]
    rng = np.random.default_rng([seed, x0, y0, ds])
    tile = np.broadcast_to(_BACKGROUND, (th, tw, 3)).copy()
    if inside.any():
        # Nuclei-like texture: a random mix of eosin and haematoxylin colours.
        mix = rng.random((th, tw, 1), dtype=np.float32) ** 3
        tissue = _EOSIN * (1 - mix) + _HEMATOXYLIN * mix
        tile = np.where(inside[..., None], tissue, tile)
    tile += rng.normal(0, 3, tile.shape).astype(np.float32)
    return np.clip(tile, 0, 255).astype(np.uint8)


def write_synthetic_slide(path: str | Path, width: int = 4096, height: int = 3072, *, mpp: float | None = 0.5,
                          levels: int = 3, blobs: Sequence[tuple[float, float, float, float]] | None = None,
                          tile: int = 256, compression: str = "jpeg", seed: int = 0, objective: float | None = None) -> Path:
    """Write a tiled pyramidal RGB TIFF and return its path.

    ``width``/``height``: level-0 px; ``mpp``: µm/px at level 0 (None: no pixel size); ``levels``:
    pyramid levels, each 4x smaller; ``blobs``: tissue ellipses (cx, cy, rx, ry) as fractions of
    the slide size, ``[]`` for a blank slide; default two blobs covering ~30 % of the area.
    """
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if blobs is None:
        blobs = [(0.35, 0.5, 0.22, 0.35), (0.72, 0.45, 0.15, 0.25)]
    scale = 16
    tmap = _tissue_map(width, height, blobs, scale)
    desc = f"modaltune synthetic slide|AppMag = {objective:g}" if objective else "modaltune synthetic slide"
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2**31) as tw:
        for lvl in range(levels):
            ds = 4 ** lvl
            lw, lh = max(1, width // ds), max(1, height // ds)
            if lvl > 0 and min(lw, lh) < 16:
                break

            def tiles(lw=lw, lh=lh, ds=ds):
                for ty in range(0, lh, tile):
                    for tx in range(0, lw, tile):
                        t = _tile(tx, ty, tile, tile, tmap, scale, ds, seed)
                        yield t
            kw = dict(shape=(lh, lw, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb", compression=compression,
                      subfiletype=1 if lvl else 0, description=desc if lvl == 0 else None, metadata=None)
            if mpp is not None:
                kw.update(resolution=(1e4 / (mpp * ds), 1e4 / (mpp * ds)), resolutionunit="CENTIMETER")
            else:
                kw.update(resolutionunit="NONE")
            tw.write(tiles(), **kw)
    return path
