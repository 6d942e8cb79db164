"""Quality-control picture: slide thumbnail with the tissue outline (green), holes (orange) and kept patches (blue)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["draw_qc_thumbnail", "OUTLINE_RGB", "HOLE_RGB", "PATCH_RGB"]

OUTLINE_RGB = (0, 170, 0)  # tissue region exterior, 2 px
HOLE_RGB = (230, 140, 0)  # holes kept inside a region (lumen, fat), 1 px
PATCH_RGB = (40, 90, 255)  # kept patches, 1-px squares; drawn first, so outlines stay on top


def draw_qc_thumbnail(rgb: np.ndarray, downsample: float, polygons: list, coords: np.ndarray,
                      patch_size_level0: int, path: str | Path, *, max_side: int = 1024, title: str = "") -> Path:
    """Write a PNG of ``rgb`` (h, w, 3 uint8 at ``downsample`` level-0 px per px) at most ``max_side`` px.

    ``polygons``: tissue polygons in level-0 px (see :func:`~modaltune.preprocess.tissue.mask_to_polygons`);
    ``coords``: (N, 2) level-0 (x, y) of kept patches, each ``patch_size_level0`` wide.
    """
    import cv2
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    img = cv2.resize(rgb, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA) if scale < 1 else rgb.copy()
    f = scale / downsample  # thumbnail px per level-0 px
    side = max(1, int(round(patch_size_level0 * f)))
    for x, y in np.asarray(coords).reshape(-1, 2):
        x0, y0 = int(round(x * f)), int(round(y * f))
        cv2.rectangle(img, (x0, y0), (x0 + side - 1, y0 + side - 1), PATCH_RGB, 1)
    for rings in polygons:
        pts = [np.round(r * f).astype(np.int32).reshape(-1, 1, 2) for r in rings]
        cv2.polylines(img, pts[:1], True, OUTLINE_RGB, 2)
        if len(pts) > 1:
            cv2.polylines(img, pts[1:], True, HOLE_RGB, 1)
    if title:
        cv2.putText(img, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(img, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    from modaltune.fileio import atomic_write

    # the temporary name keeps ``.png``: PIL picks the format from it
    return atomic_write(path, lambda tmp: Image.fromarray(img).save(tmp), suffix=".tmp.png")
