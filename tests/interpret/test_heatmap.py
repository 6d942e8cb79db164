"""Heatmaps: the drawn cells are the patches of the h5 coords (pixel positions computed from coords / patch size)."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.interpret import patch_cells, render_heatmap
from modaltune.interpret.heatmap import GRID_CELL_PX, infer_patch_size


def test_patch_cells_hand_values():
    # 256-px patches at downsample 16 are 16-px cells; downsample 100: floor(256/100)=2, floor(512/100)=5
    assert patch_cells(np.array([[0, 0], [256, 512]]), 256, 16.0).tolist() == [[0, 0, 16, 16], [16, 32, 32, 48]]
    assert patch_cells(np.array([[256, 0]]), 256, 100.0).tolist() == [[2, 0, 5, 2]]
    assert patch_cells(np.array([[10, 10]]), 4, 1000.0).tolist() == [[0, 0, 1, 1]]  # never empty
    assert infer_patch_size(np.array([[0, 0], [512, 0], [256, 256]])) == 256


def _colour(v):
    return np.rint(np.asarray(matplotlib.colormaps["inferno"](v))[:3] * 255)


@settings(max_examples=25, deadline=None)
@given(cells=st.sets(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=2, max_size=30), ps=st.sampled_from([224, 256, 512]),
       seed=st.integers(0, 1000))
def test_grid_heatmap_draws_each_patch_at_its_coords(cells, ps, seed):
    cells = sorted(cells)
    coords = np.array(cells, dtype=np.int64) * ps
    w = np.random.default_rng(seed).random(len(cells))
    img, boxes = render_heatmap(w, coords, ps)
    g = GRID_CELL_PX
    # cell j covers rows y/ps*g .. +g and columns x/ps*g .. +g, computed from the coords alone
    expect = np.concatenate([coords // ps * g, coords // ps * g + g], axis=1)
    np.testing.assert_array_equal(boxes, expect)
    drawn = np.zeros(img.shape[:2], bool)
    norm = (w - w.min()) / (w.max() - w.min()) if w.max() > w.min() else np.ones_like(w)
    for (x0, y0, x1, y1), v in zip(expect, norm):
        patch = img[y0:y1, x0:x1].reshape(-1, 3)
        assert (np.abs(patch.astype(int) - _colour(v)) <= 1).all()
        drawn[y0:y1, x0:x1] = True
    assert (img[~drawn] == 255).all()  # nothing outside the patches
    assert img.shape[:2] == (int(expect[:, 3].max()), int(expect[:, 2].max()))


def test_overlay_blends_over_the_thumbnail_at_its_downsample():
    bg = np.full((40, 60, 3), 200, np.uint8)
    coords = np.array([[0, 0], [1000, 500]])
    img, boxes = render_heatmap(np.array([0.2, 0.8]), coords, 500, background=bg, downsample=50.0, alpha=0.5)
    assert boxes.tolist() == [[0, 0, 10, 10], [20, 10, 30, 20]]
    hi = np.rint(0.5 * 200 + 0.5 * np.asarray(matplotlib.colormaps["inferno"](1.0))[:3] * 255)
    np.testing.assert_allclose(img[15, 25], hi, atol=1)
    assert (img[30:, :] == 200).all() and (img[:, 35:] == 200).all()
    with pytest.raises(ValueError):
        render_heatmap(np.ones(2), coords, 500, background=bg)
