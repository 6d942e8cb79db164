"""Tissue detection (known shapes), GeoJSON, and the patch grid with TRIDENT attributes."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modaltune.errors import InputError
from modaltune.preprocess.slide import open_slide
from modaltune.preprocess.tiling import plan_tiles, tissue_fraction_per_patch
from modaltune.preprocess.tissue import TissueMask, detect_tissue, mask_to_polygons, tissue_mask_from_rgb, write_geojson

PINK, WHITE = (220, 130, 180), (242, 242, 240)


def _canvas(h=400, w=400):
    img = np.empty((h, w, 3), np.uint8)
    img[:] = WHITE
    return img


def test_mask_of_known_shapes_holes_and_specks():
    import cv2

    img = _canvas()
    cv2.circle(img, (120, 200), 80, PINK, -1)           # disc: area pi*80^2 = 20106 px
    cv2.circle(img, (120, 200), 30, WHITE, -1)          # big hole: 2827 px, stays a hole
    cv2.rectangle(img, (280, 100), (379, 299), PINK, -1)  # 100 x 200 block
    cv2.circle(img, (330, 200), 3, WHITE, -1)           # small hole: filled
    cv2.circle(img, (50, 30), 3, PINK, -1)              # speck: removed
    # 1 px = 2 µm -> 4 µm² per px; min region 400 µm² = 100 px, holes up to 1000 µm² = 250 px filled.
    mask, thr = tissue_mask_from_rgb(img, um_per_px=2.0, min_region_um2=400, max_hole_um2=1000, close_um=4)
    assert 20 <= thr < 150
    assert not mask[30, 50], "speck below min region size must be dropped"
    assert not mask[200, 120], "a large hole stays background"
    assert mask[200, 330], "a small hole is filled"
    expected = np.pi * 80**2 - np.pi * 30**2 + 100 * 200
    assert mask.sum() == pytest.approx(expected, rel=0.03)
    polys = mask_to_polygons(mask, downsample=10.0)
    assert len(polys) == 2
    ring_counts = sorted(len(p) for p in polys)
    assert ring_counts == [1, 2]  # the disc has its hole as a second ring
    block = [p for p in polys if len(p) == 1][0][0]
    # level-0 coordinates are mask px x downsample
    assert block[:, 0].min() == pytest.approx(2800, abs=10) and block[:, 0].max() == pytest.approx(3790, abs=10)


def test_blank_image_has_no_tissue():
    img = _canvas()
    img += np.random.default_rng(0).integers(0, 4, img.shape, dtype=np.uint8)  # sensor noise only
    mask, thr = tissue_mask_from_rgb(img, um_per_px=2.0)
    assert not mask.any() and thr >= 20


def test_geojson_is_a_qupath_feature_collection(tmp_path):
    poly = [[np.array([[0, 0], [100, 0], [100, 50], [0, 50]], float), np.array([[10, 10], [20, 10], [20, 20]], float)]]
    p = write_geojson(poly, tmp_path / "t.geojson", slide_name="s1")
    gj = json.loads(p.read_text())
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == 1
    f = gj["features"][0]
    assert f["geometry"]["type"] == "Polygon"
    ext, hole = f["geometry"]["coordinates"]
    assert ext[0] == ext[-1] == [0.0, 0.0] and len(ext) == 5  # closed ring
    assert hole[0] == hole[-1] and len(hole) == 4
    assert f["properties"]["objectType"] == "annotation" and f["properties"]["classification"]["name"] == "Tissue"


def test_detect_tissue_on_real_slide(cmu_slide):
    with open_slide(cmu_slide) as wsi:
        t = detect_tissue(wsi)
    # CMU-1-Small-Region: a vertical strip of skin covering roughly a third of the image.
    assert 0.25 < t.tissue_fraction < 0.5
    assert t.mask.shape == (2048, 1532) and t.downsample == pytest.approx(2220 / 1532)
    big = max(t.polygons, key=lambda rings: len(rings[0]))[0]
    assert big[:, 1].max() > 2500 and big[:, 1].min() < 300  # spans the slide from top to bottom, level-0 px


class _FakeWSI:
    def __init__(self, w, h, mpp=0.25, mag=40.0, downsamples=(1.0, 4.0, 16.0)):
        self.width, self.height, self.mpp, self.magnification = w, h, mpp, mag
        self.level_downsamples = downsamples
        self.name, self.path = "fake", "fake.tif"

    def best_level(self, ds):
        return max(i for i, d in enumerate(self.level_downsamples) if d <= ds * 1.001)


def _full(w, h, ds=8.0):
    return TissueMask(mask=np.ones((int(np.ceil(h / ds)), int(np.ceil(w / ds))), bool), downsample=ds, threshold=0)


def test_grid_geometry_and_trident_attributes():
    wsi = _FakeWSI(1000, 800)
    plan = plan_tiles(wsi, _full(1000, 800), patch_size=128, magnification=20, min_tissue=0.5)
    # 40x slide, 20x patches of 128 -> 256 level-0 px; fully inside: x in {0,256,512}, y in {0,256,512}
    assert plan.patch_size_level0 == 256 and len(plan) == 9
    assert plan.coords.dtype == np.int64 and plan.coords.tolist()[:4] == [[0, 0], [256, 0], [512, 0], [0, 256]]
    assert plan.read_level == 0 and plan.read_size == 256  # 2x downsample: level 0 then resize (level 1 is 4x)
    assert plan.attrs == {"patch_size": 128, "patch_size_level0": 256, "level0_magnification": 40,
                          "target_magnification": 20, "overlap": 0, "name": "fake", "level0_width": 1000, "level0_height": 800}
    over = plan_tiles(wsi, _full(1000, 800), patch_size=128, magnification=20, overlap=64)
    # step (128-64)*2 = 128 level-0 px: x in 0..744 -> 6 positions, y in 0..544 -> 5
    assert len(over) == 30 and over.attrs["overlap"] == 64
    at10 = plan_tiles(wsi, _full(1000, 800), patch_size=64, magnification=10)
    assert at10.patch_size_level0 == 256 and at10.read_level == 1 and at10.read_size == 64
    by_mpp = plan_tiles(wsi, _full(1000, 800), patch_size=128, target_mpp=0.5)
    assert by_mpp.patch_size_level0 == 256 and by_mpp.attrs["target_magnification"] == 20


def test_min_tissue_and_errors():
    wsi = _FakeWSI(1024, 512)
    mask = np.zeros((64, 128), bool)  # ds 8
    mask[:, :40] = True                # x < 320 level-0 px is tissue
    t = TissueMask(mask=mask, downsample=8.0, threshold=0)
    plan = plan_tiles(wsi, t, patch_size=128, magnification=20, min_tissue=0.25)
    # columns at x=0 (100 %) and x=256 (64/256 = 25 %) pass; x=512, 768 have none
    assert sorted(set(plan.coords[:, 0].tolist())) == [0, 256]
    assert plan.tissue.min() == pytest.approx(0.25)
    strict = plan_tiles(wsi, t, patch_size=128, magnification=20, min_tissue=0.5)
    assert sorted(set(strict.coords[:, 0].tolist())) == [0]
    with pytest.raises(InputError, match="scanned at 40x"):
        plan_tiles(wsi, t, magnification=80)
    with pytest.raises(InputError, match="overlap"):
        plan_tiles(wsi, t, patch_size=128, overlap=128)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), ds=st.sampled_from([1.0, 2.0, 4.0]), size=st.integers(1, 40),
       seed=st.integers(0, 10_000))
def test_tissue_fraction_matches_brute_force(h, w, ds, size, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((h, w)) < 0.5
    coords = np.stack([rng.integers(0, int(w * ds), 5), rng.integers(0, int(h * ds), 5)], 1).astype(np.int64)
    got = tissue_fraction_per_patch(mask, ds, coords, size)
    for (x, y), g in zip(coords, got):
        x0, y0 = int(round(x / ds)), int(round(y / ds))
        x1, y1 = min(w, int(round((x + size) / ds))), min(h, int(round((y + size) / ds)))
        x0, y0 = min(x0, w), min(y0, h)
        x1, y1 = max(x1, min(x0 + 1, w)), max(y1, min(y0 + 1, h))
        sub = mask[y0:y1, x0:x1]
        assert g == pytest.approx(sub.mean() if sub.size else 0.0, abs=1e-6)


def test_qc_thumbnail_draws_outline_holes_and_patches_where_they_are(tmp_path):
    from PIL import Image

    from modaltune.preprocess.qc import HOLE_RGB, OUTLINE_RGB, PATCH_RGB, draw_qc_thumbnail

    rgb = np.full((100, 200, 3), 255, np.uint8)  # a 2000 x 1000 px slide seen at downsample 10
    ring = np.array([[100, 100], [1500, 100], [1500, 900], [100, 900]], float)
    hole = np.array([[600, 300], [900, 300], [900, 600], [600, 600]], float)
    coords = np.array([[200, 200], [1200, 200]])
    path = draw_qc_thumbnail(rgb, 10.0, [[ring, hole]], coords, 250, tmp_path / "qc" / "s_thumbnail.png")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == (100, 200, 3) and not list((tmp_path / "qc").glob("*.tmp.png"))

    def px(y, x):
        return tuple(int(v) for v in img[y, x])

    # patches: level-0 (200, 200) and (1200, 200), 250 px -> 25-px squares at (20, 20) and (120, 20)
    for x0 in (20, 120):
        assert px(20, x0 + 10) == px(44, x0 + 10) == px(30, x0) == px(30, x0 + 24) == PATCH_RGB
        assert px(32, x0 + 12) == (255, 255, 255)  # inside a patch: the slide itself
    assert px(10, 80) == px(50, 150) == px(90, 100) == px(50, 10) == OUTLINE_RGB  # the region's four sides
    assert px(30, 75) == px(60, 75) == px(45, 60) == HOLE_RGB  # the hole's outline
    assert px(5, 5) == px(95, 195) == (255, 255, 255)  # outside the tissue nothing is drawn
    counts = {c: int((img == c).all(-1).sum()) for c in (OUTLINE_RGB, HOLE_RGB, PATCH_RGB)}
    assert counts[PATCH_RGB] == 2 * 4 * 24  # two 1-px squares of side 25
    assert counts[OUTLINE_RGB] > 2 * (140 + 80) and counts[HOLE_RGB] >= 4 * 29
