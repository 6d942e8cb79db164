"""Slide reading: backends, pyramid geometry, MPP/magnification, override table, unreadable input."""
from __future__ import annotations

import numpy as np
import pytest

from modaltune.errors import InputError
from modaltune.preprocess.slide import magnification_from_mpp, open_slide, read_mpp_overrides


def test_real_slide_metadata_openslide(cmu_slide):
    with open_slide(cmu_slide) as wsi:
        assert wsi.backend == "openslide"
        assert (wsi.width, wsi.height) == (2220, 2967)
        assert wsi.level_count == 1  # single-level image
        assert wsi.mpp == pytest.approx(0.499)
        assert wsi.magnification == 20
        tile = wsi.read_region(1000, 1000, 0, 64, 48)
        assert tile.shape == (48, 64, 3) and tile.dtype == np.uint8


def test_real_slide_tiffslide_backend_agrees(cmu_slide):
    with open_slide(cmu_slide, backend="openslide") as a, open_slide(cmu_slide, backend="tiffslide") as b:
        assert b.backend == "tiffslide"
        assert (b.width, b.height, b.mpp) == (a.width, a.height, a.mpp)
        ta, tb = a.read_region(800, 1200, 0, 128, 128), b.read_region(800, 1200, 0, 128, 128)
        # Different JPEG decoders may differ by a grey level or two, never more on average.
        assert np.abs(ta.astype(int) - tb.astype(int)).mean() < 2.0
        assert ta.std() > 10  # real tissue, not blank


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_synthetic_pyramid_levels_and_mpp(synth, backend):
    p = synth("pyr.tif", 2048, 1536, mpp=0.25, levels=3)
    with open_slide(p, backend=backend) as wsi:
        assert wsi.level_dimensions == ((2048, 1536), (512, 384), (128, 96))
        assert wsi.level_downsamples[1] == pytest.approx(4.0)
        assert wsi.mpp == pytest.approx(0.25)
        assert wsi.magnification == 40  # derived from MPP: 10 / 0.25
        assert wsi.best_level(8.0) == 1 and wsi.best_level(3.9) == 0 and wsi.best_level(100) == 2
        # The same place read at level 1 is the level-0 region shrunk 4x (synthetic levels are subsampled
        # views of one tissue map, so colours agree on average).
        lvl1 = wsi.read_region(0, 0, 1, 256, 192).astype(float)
        assert lvl1.shape == (192, 256, 3)
        lo, _ = wsi.low_resolution(4.0, chunk=100)  # chunked reading must tile seamlessly
        assert lo.shape == (384, 512, 3)
        assert np.abs(lo[:192, :256].astype(float) - lvl1).mean() < 3.0


def test_magnification_from_mpp_known_values():
    assert magnification_from_mpp(0.499) == 20.0
    assert magnification_from_mpp(0.2527) == 40.0
    assert magnification_from_mpp(1.0) == 10.0
    assert magnification_from_mpp(0.75) == 13.33  # not near a standard power: kept as computed


def test_missing_mpp_is_an_error_naming_the_slide_and_override_fixes_it(synth, tmp_path):
    p = synth("no_mpp.tif", mpp=None)
    with pytest.raises(InputError, match="no_mpp.tif.*no pixel size"):
        open_slide(p)
    csv = tmp_path / "mpp.csv"
    csv.write_text("slide,mpp\nno_mpp,0.5\n")
    with open_slide(p, mpp_overrides=csv) as wsi:
        assert wsi.mpp == 0.5 and wsi.mpp_source == "override" and wsi.magnification == 20


def test_override_table_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,pixel\na,1\n")
    with pytest.raises(InputError, match="expected slide,mpp"):
        read_mpp_overrides(bad)
    bad.write_text("slide,mpp\na,0.5\nb,zero\n")
    with pytest.raises(InputError, match="line 3.*'b'"):
        read_mpp_overrides(bad)
    with pytest.raises(InputError, match="not found"):
        read_mpp_overrides(tmp_path / "missing.csv")


def test_corrupt_and_unsupported_files(tmp_path):
    corrupt = tmp_path / "broken.svs"
    corrupt.write_bytes(b"II*\x00" + bytes(range(256)) * 10)  # TIFF magic, garbage after
    with pytest.raises(InputError, match="broken.svs.*cannot read the file as a slide"):
        open_slide(corrupt)
    text = tmp_path / "notes.svs"
    text.write_text("not a slide")
    with pytest.raises(InputError, match="cannot read"):
        open_slide(text)
    other = tmp_path / "scan.xyz"
    other.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="unsupported slide format '.xyz'"):
        open_slide(other)
    with pytest.raises(InputError, match="not found"):
        open_slide(tmp_path / "absent.svs")
