"""Tissue detection on a low-resolution copy of the slide, and its contours as QuPath GeoJSON.

Method: saturation channel (HSV) -> median blur -> Otsu threshold (never below a floor, so a blank
slide yields no tissue instead of thresholding noise) -> morphological closing then opening ->
drop regions smaller than ``min_region_um2`` -> fill holes smaller than ``max_hole_um2`` (larger
holes such as lumens or fat stay holes). Areas are in µm² so results do not depend on the
resolution the mask was computed at.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["TissueMask", "detect_tissue", "tissue_mask_from_rgb", "write_geojson", "mask_to_polygons"]


@dataclass
class TissueMask:
    """Binary tissue mask of a slide.

    ``mask``: (h, w) bool, True = tissue; ``downsample``: level-0 px per mask px; ``threshold``: the
    saturation threshold used (0-255); ``polygons``: list of polygons, each a list of rings (exterior
    first, then holes), each ring an (n, 2) float array of level-0 (x, y).
    """

    mask: np.ndarray
    downsample: float
    threshold: float
    polygons: list = field(default_factory=list)
    rgb: np.ndarray | None = field(default=None, repr=False)  # the low-res image the mask was computed on

    @property
    def tissue_fraction(self) -> float:
        """Fraction of the slide area covered by tissue, in [0, 1]."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def found(self) -> bool:
        return bool(self.mask.any())


def tissue_mask_from_rgb(rgb: np.ndarray, *, um_per_px: float, min_saturation: float = 20.0,
                         min_region_um2: float = 20_000.0, max_hole_um2: float = 20_000.0,
                         blur: int = 5, close_um: float = 16.0) -> tuple[np.ndarray, float]:
    """Tissue mask of an RGB image whose pixels are ``um_per_px`` wide.

    Returns ``(mask (h, w) bool, threshold)``. ``min_saturation`` (0-255) is the floor of the Otsu
    threshold; ``min_region_um2``: smallest kept region; ``max_hole_um2``: larger holes stay holes.
    """
    import cv2

    sat = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)[..., 1]
    k = max(3, blur | 1)
    if min(sat.shape) >= k:
        sat = cv2.medianBlur(sat, k)
    # Otsu needs two classes; a constant image (blank slide) has none, and the floor handles
    # near-constant backgrounds where Otsu would split sensor noise.
    otsu = float(cv2.threshold(sat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0]) if sat.max() > sat.min() else 255.0
    thr = max(otsu, float(min_saturation))
    mask = sat > thr
    radius = max(1, int(round(close_um / um_per_px / 2)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    m8 = mask.astype(np.uint8)
    m8 = cv2.morphologyEx(m8, cv2.MORPH_CLOSE, kernel)
    m8 = cv2.morphologyEx(m8, cv2.MORPH_OPEN, kernel)
    mask = m8.astype(bool)
    px_area = um_per_px ** 2
    min_obj = max(1, int(round(min_region_um2 / px_area)))
    max_hole = max(1, int(round(max_hole_um2 / px_area)))
    mask = _drop_small_components(mask, min_obj)
    # Holes are background components not touching the border; fill the small ones.
    mask = ~_drop_small_components(~mask, max_hole + 1, keep_border=True)
    return mask, thr


def _drop_small_components(mask: np.ndarray, min_area: int, keep_border: bool = False) -> np.ndarray:
    """Remove 8-connected True components with fewer than ``min_area`` px (optionally keeping border-touching ones)."""
    import cv2

    if min_area <= 1 or not mask.any():
        return mask
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    if keep_border:
        h, w = mask.shape
        x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
        bw, bh = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
        keep |= (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
    keep[0] = False  # label 0 is the complement
    return keep[labels]


def mask_to_polygons(mask: np.ndarray, downsample: float) -> list:
    """Outer contours and their holes of a bool mask, as polygons in level-0 (x, y) coordinates.

    Each polygon is ``[exterior, hole, ...]``, each ring an (n, 2) float64 array (not closed).
    """
    import cv2

    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]
    polygons = []
    for i, (_nxt, _prev, child, parent) in enumerate(hierarchy):
        if parent != -1 or len(contours[i]) < 3:
            continue
        rings = [contours[i][:, 0, :].astype(np.float64) * downsample]
        c = child
        while c != -1:
            if len(contours[c]) >= 3:
                rings.append(contours[c][:, 0, :].astype(np.float64) * downsample)
            c = hierarchy[c][0]
        polygons.append(rings)
    return polygons


def detect_tissue(wsi, *, mask_long_side: int = 2048, min_saturation: float = 20.0,
                  min_region_um2: float = 20_000.0, max_hole_um2: float = 20_000.0) -> TissueMask:
    """Detect tissue on ``wsi`` (a :class:`~modaltune.preprocess.slide.WSI`) at about ``mask_long_side`` px.

    Memory is bounded by the mask size (the low-resolution copy is read in chunks).
    """
    downsample = max(1.0, max(wsi.width, wsi.height) / float(mask_long_side))
    rgb, actual = wsi.low_resolution(downsample)
    mask, thr = tissue_mask_from_rgb(rgb, um_per_px=wsi.mpp * actual, min_saturation=min_saturation,
                                     min_region_um2=min_region_um2, max_hole_um2=max_hole_um2)
    return TissueMask(mask=mask, downsample=actual, threshold=thr, polygons=mask_to_polygons(mask, actual), rgb=rgb)


def _closed(ring: np.ndarray) -> list:
    pts = [[round(float(x), 2), round(float(y), 2)] for x, y in ring]
    return pts + [pts[0]]


def write_geojson(polygons: list, path: str | Path, *, slide_name: str = "") -> Path:
    """Write tissue polygons (level-0 px) as a GeoJSON FeatureCollection that QuPath imports.

    Each region is a Feature with a Polygon geometry (exterior ring then holes, rings closed) and
    QuPath properties (``objectType: annotation``, classification 'Tissue').
    """
    features = []
    for i, rings in enumerate(polygons):
        features.append({
            "type": "Feature",
            "id": f"{slide_name or 'tissue'}-{i}",
            "geometry": {"type": "Polygon", "coordinates": [_closed(r) for r in rings]},
            "properties": {
                "objectType": "annotation",
                "name": f"tissue {i + 1}",
                "classification": {"name": "Tissue", "color": [0, 160, 0]},
            },
        })
    from modaltune.fileio import atomic_write_json

    return atomic_write_json(path, {"type": "FeatureCollection", "features": features}, indent=None)
