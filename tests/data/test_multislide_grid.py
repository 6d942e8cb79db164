"""Multi-slide patients: merged coordinates stay inside a square position grid (GigaPath 1000 x 1000)."""
from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.data.bags import Bag, merge_bags

TILE = 256


def _big_slide(cells: int, n: int, seed: int, d: int = 16) -> Bag:
    """A slide (one slide is never moved; merged ones are) whose tissue spans ``cells`` x ``cells`` grid cells: its 4 corners + random patches."""
    rng = np.random.default_rng(seed)
    corners = np.array([[0, 0], [cells - 1, 0], [0, cells - 1], [cells - 1, cells - 1]])
    inner = rng.integers(0, cells, size=(n - 4, 2))
    origin = rng.integers(0, 50, size=2)  # slides rarely start at (0, 0)
    coords = (np.concatenate([corners, inner]) + origin) * TILE
    feats = rng.standard_normal((n, d)).astype(np.float32)
    return Bag(feats, coords.astype(np.int64), {"patch_size_level0": TILE}, f"s{seed}")


def test_five_large_slides_fit_gigapath_grid_and_forward_runs():
    from modaltune.encoders.slide.gigapath import GigaPathSlideEncoder

    bags = [_big_slide(300, 20, k) for k in range(5)]
    # the old rule (slides side by side along x) needs 5 * 300 + 4 gaps > 1000 cells
    assert 5 * 300 + 4 > 1000
    m = merge_bags(bags)
    cells = m.coords // TILE
    assert cells.min() >= 0 and cells.max() < 1000
    # 2 columns x 3 rows and 3 x 2 both give a 903-cell side; the tie goes to fewer columns.
    # Each slide takes 300 cells + a 1-cell gap, so the last column/row starts at 301 / 602
    assert cells[:, 0].max() == 301 + 299 and cells[:, 1].max() == 2 * 301 + 299
    torch.manual_seed(0)
    enc = GigaPathSlideEncoder(in_dim=16, embed_dim=32, depth=1, num_heads=16, ffn_dim=64, dropout=0.0, drop_path_rate=0.0).eval()
    with torch.no_grad():
        out = enc(torch.from_numpy(m.features)[None], torch.from_numpy(m.coords).float()[None])
    assert out.shape == (1, 32) and torch.isfinite(out).all()


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 16), seed=st.integers(0, 1000))
def test_property_equal_slides_fit_when_their_square_packing_does(n, seed):
    side = math.ceil(math.sqrt(n))
    cells = 1000 // side - 1  # largest slide side whose ceil(sqrt(n)) x ceil(sqrt(n)) packing (+ gaps) fits
    m = merge_bags([_big_slide(cells, 6, seed + k, d=4) for k in range(n)])
    g = m.coords // TILE
    assert g.min() >= 0 and g.max() < 1000
    # slides stay whole and disjoint: each keeps its own shape (a pure translation)
    for k, (_src, a, b) in enumerate(m.attrs["slides"]):
        orig = _big_slide(cells, 6, seed + k, d=4).coords
        assert np.array_equal(m.coords[a:b] - m.coords[a:b].min(0), orig - orig.min(0))
