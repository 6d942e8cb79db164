"""Draw patch weights as a heatmap over the slide thumbnail, or over the bare patch grid.

Geometry: patch ``j`` covers level-0 pixels ``[x_j, x_j + P) x [y_j, y_j + P)`` with ``(x_j, y_j) =
coords[j]`` and ``P = patch_size_level0`` (TRIDENT / CLAM h5 contract). An image at ``downsample``
``d`` (level-0 px per image px) shows it as the cell ``[floor(x_j / d), floor((x_j + P) / d))`` (at
least one pixel wide) and the same along y: :func:`patch_cells`. Cells are filled with the colour
of the min-max normalised weight (matplotlib colormap) and alpha-blended over the thumbnail; the
image is written pixel for pixel (no resampling), so the drawn cells are exactly those of
:func:`patch_cells`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["find_slide", "grid_cell_px", "infer_patch_size", "patch_cells", "render_heatmap", "slide_thumbnail", "topk_tiles"]

#: pixel side of one patch when there is no slide to draw on (default of :func:`render_heatmap`)
GRID_CELL_PX = 16


def grid_cell_px(coords: np.ndarray, patch_size_level0: int, long_side: int = 512) -> int:
    """Cell side (px) that makes a grid heatmap about ``long_side`` px long: ``clip(long_side // n, 4, 48)``
    with ``n`` the extent of the bag in patches along its longer axis.

    >>> grid_cell_px(np.array([[0, 0], [256 * 19, 256 * 3]]), 256)   # 20 x 4 patches: 512 // 20
    25
    >>> grid_cell_px(np.array([[0, 0], [256 * 9, 0]]), 256)   # 10 patches: 51, capped at 48
    48
    """
    c = np.asarray(coords, dtype=np.int64)
    n = int(((c.max(0) - c.min(0)) // max(1, patch_size_level0) + 1).max()) if len(c) else 1
    return int(np.clip(long_side // n, 4, 48))


def infer_patch_size(coords: np.ndarray) -> int:
    """Patch side in level-0 px guessed from the smallest non-zero coordinate step (h5 files without
    ``patch_size_level0``); 1 for a single patch."""
    steps = [np.diff(np.unique(coords[:, a])) for a in (0, 1)]
    steps = np.concatenate([s[s > 0] for s in steps]) if len(coords) else np.array([])
    return int(steps.min()) if steps.size else 1


def patch_cells(coords: np.ndarray, patch_size_level0: int, downsample: float) -> np.ndarray:
    """(N, 4) int64 image-pixel boxes ``x0, y0, x1, y1`` (end exclusive) of the patches.

    Args:
        coords: (N, 2) level-0 (x, y) top-left of each patch.
        patch_size_level0: patch side in level-0 px.
        downsample: level-0 px per image px (> 0).

    >>> patch_cells(np.array([[0, 0], [256, 512]]), 256, 16.0).tolist()
    [[0, 0, 16, 16], [16, 32, 32, 48]]
    """
    c = np.asarray(coords, dtype=np.float64)
    lo = np.floor(c / downsample).astype(np.int64)
    hi = np.maximum(lo + 1, np.floor((c + patch_size_level0) / downsample).astype(np.int64))
    return np.concatenate([lo, hi], axis=1)


def _normalise(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    span = w.max() - w.min() if w.size else 0.0
    return (w - w.min()) / span if span > 0 else np.ones_like(w)


def render_heatmap(weights: np.ndarray, coords: np.ndarray, patch_size_level0: int, *, background: np.ndarray | None = None,
                   downsample: float | None = None, cmap: str = "inferno", alpha: float = 0.55, cell_px: int = GRID_CELL_PX) -> tuple[np.ndarray, np.ndarray]:
    """RGB heatmap image and the patch cells drawn.

    Args:
        weights: (N,) patch weights (any scale; min-max normalised for the colours).
        coords: (N, 2) level-0 (x, y) top-left of each patch.
        patch_size_level0: patch side in level-0 px.
        background: (H, W, 3) uint8 slide thumbnail, or None for the bare patch grid (white).
        downsample: level-0 px per image px; required with ``background``; without it, each patch
            is drawn ``cell_px`` px wide (default :data:`GRID_CELL_PX`).
        cmap: matplotlib colormap name; alpha: opacity of the cells over the thumbnail (1 on the grid).

    Returns:
        ``(image (H, W, 3) uint8, cells (N, 4) int64)`` with ``cells`` from :func:`patch_cells`.
    """
    import matplotlib

    coords = np.asarray(coords, dtype=np.int64)
    if background is None:
        downsample = patch_size_level0 / cell_px if downsample is None else downsample
        cells = patch_cells(coords, patch_size_level0, downsample)
        h, w = (int(cells[:, 3].max()), int(cells[:, 2].max())) if len(cells) else (1, 1)
        img = np.full((h, w, 3), 255.0)
        alpha = 1.0
    else:
        if downsample is None:
            raise ValueError("render_heatmap: a background image needs its downsample")
        cells = patch_cells(coords, patch_size_level0, downsample)
        img = np.asarray(background, dtype=np.float64).copy()
    colours = matplotlib.colormaps[cmap](_normalise(weights))[:, :3] * 255.0
    # low weights first so that, where patches overlap, the higher weight is the one seen
    for j in np.argsort(weights, kind="stable"):
        x0, y0, x1, y1 = cells[j]
        region = img[y0:y1, x0:x1]
        region[...] = (1 - alpha) * region + alpha * colours[j]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), cells


def find_slide(stem: str, slides_dir: str | Path | None) -> Path | None:
    """The slide file named ``<stem>.<slide extension>`` in ``slides_dir`` (searched recursively), or None."""
    if slides_dir is None:
        return None
    from modaltune.preprocess.slide import SLIDE_EXTENSIONS

    root = Path(slides_dir)
    if root.is_file():
        return root if root.stem == stem else None
    for p in sorted(root.rglob(f"{stem}.*")):
        if p.suffix.lower() in SLIDE_EXTENSIONS:
            return p
    return None


def slide_thumbnail(slide_path: str | Path, max_side: int = 2048) -> tuple[np.ndarray, float]:
    """``(thumbnail (h, w, 3) uint8, downsample)`` of a slide, long side about ``max_side`` px ([wsi] extra)."""
    from modaltune.preprocess.slide import open_slide

    with open_slide(slide_path) as wsi:
        return wsi.low_resolution(max(wsi.width, wsi.height) / max_side)


def topk_tiles(slide_path: str | Path, coords: np.ndarray, weights: np.ndarray, patch_size_level0: int, k: int, out: str | Path,
               *, tile_px: int = 224, title: str = "") -> Path:
    """Write a PNG of the ``k`` highest-weight patches read from the slide at level 0 (rank and weight above each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from modaltune.preprocess.slide import open_slide

    order = np.argsort(-np.asarray(weights), kind="stable")[:k]
    with open_slide(slide_path) as wsi:
        tiles = [wsi.read_region(int(coords[j, 0]), int(coords[j, 1]), 0, patch_size_level0, patch_size_level0) for j in order]
    tiles = [np.asarray(Image.fromarray(t).resize((tile_px, tile_px))) for t in tiles]
    cols = min(4, len(tiles)) or 1
    rows = int(np.ceil(len(tiles) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (j, t) in enumerate(zip(order, tiles)):
        ax = axes.ravel()[r]
        ax.imshow(t)
        ax.set_title(f"#{r + 1} w={weights[j]:.3g}\n({coords[j, 0]}, {coords[j, 1]})", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
