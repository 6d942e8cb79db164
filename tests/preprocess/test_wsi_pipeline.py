"""End to end: real slide -> TRIDENT h5 -> data layer -> ABMIL; resume; bad inputs isolated per slide."""
from __future__ import annotations

import errno
import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from modaltune.preprocess import extract_features
from modaltune.preprocess.h5writer import BagWriter

FAST = dict(batch_size=16, progress=False)


def _read(path):
    """Read a bag with the cohort data layer when present, else with h5py."""
    try:
        from modaltune.data.bags import read_bag
    except ImportError:  # pragma: no cover - data layer not installed
        with h5py.File(path) as f:
            return f["features"][:], f["coords"][:], dict(f["coords"].attrs)
    b = read_bag(path)
    return b.features, b.coords, b.attrs


class _GatedABMIL(torch.nn.Module):
    """Minimal gated-attention MIL (Ilse et al. 2018) used only to check the bags feed a model."""

    def __init__(self, d, h=64, n_classes=2):
        super().__init__()
        self.v, self.u, self.w = torch.nn.Linear(d, h), torch.nn.Linear(d, h), torch.nn.Linear(h, 1)
        self.head = torch.nn.Linear(d, n_classes)

    def forward(self, x):  # x: (N, D)
        a = torch.softmax(self.w(torch.tanh(self.v(x)) * torch.sigmoid(self.u(x))).squeeze(-1), dim=0)
        return self.head(a @ x), a


def test_real_slide_end_to_end(cmu_slide, tmp_path):
    out = tmp_path / "out"
    s = extract_features([cmu_slide], out, encoder="efficientnet_lite0", magnification=20, patch_size=256, **FAST)
    assert (s.done, s.failed) == (1, 0)
    r = s.slides[0]
    feats, coords, attrs = _read(out / "cmu_small_region.h5")
    # 2220 x 2967 px at 20x: 8 x 11 grid of 256-px patches, of which the tissue strip keeps 40.
    assert feats.shape == (40, 1280) and feats.dtype == np.float32 and r.n_patches == 40
    assert coords.dtype == np.int64 and (coords % 256 == 0).all()
    assert coords[:, 0].max() + 256 <= 2220 and coords[:, 1].max() + 256 <= 2967
    assert attrs["patch_size_level0"] == 256 and attrs["level0_magnification"] == 20 and attrs["target_magnification"] == 20
    assert attrs["encoder"] == "efficientnet_lite0" and attrs["level0_width"] == 2220 and attrs["level0_height"] == 2967
    assert np.isfinite(feats).all() and feats.std(0).mean() > 0.01  # patches differ
    # Features equal re-encoding the same tile directly (coordinates and pixels line up).
    from modaltune.preprocess.encoders import load_patch_encoder
    from modaltune.preprocess.slide import open_slide

    with open_slide(cmu_slide) as wsi:
        tile = wsi.read_region(int(coords[3, 0]), int(coords[3, 1]), 0, 256, 256)
    direct = load_patch_encoder().encode(torch.from_numpy(tile)[None])[0].numpy()
    np.testing.assert_allclose(feats[3], direct, rtol=1e-4, atol=1e-4)
    # QC outputs and the summary
    gj = json.loads((out / "qc" / "cmu_small_region_tissue.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and gj["features"]
    assert (out / "qc" / "cmu_small_region_thumbnail.png").stat().st_size > 10_000
    summ = json.loads((out / "summary.json").read_text())
    assert summ["totals"]["done"] == 1 and summ["totals"]["patches"] == 40 and summ["pathology_encoder"] is False
    assert "NOT a pathology encoder" in (out / "summary.md").read_text()
    # A gated-attention ABMIL consumes the bag.
    torch.manual_seed(0)
    model = _GatedABMIL(1280)
    logits, att = model(torch.from_numpy(np.asarray(feats, np.float32)))
    assert logits.shape == (2,) and att.shape == (40,) and float(att.detach().sum()) == pytest.approx(1.0)


def test_resume_skips_complete_and_redoes_broken(synth, tmp_path):
    a, b = synth("a.tif", 768, 512), synth("b.tif", 768, 512, seed=1)
    out = tmp_path / "out"
    first = extract_features(a.parent, out, patch_size=128, **FAST)
    assert [r.status for r in first.slides] == ["done", "done"]
    mtime = (out / "a.h5").stat().st_mtime_ns
    (out / "b.h5").write_bytes(b"garbage from a killed run")
    (out / "c.h5.tmp").write_bytes(b"leftover")
    again = extract_features(a.parent, out, patch_size=128, **FAST)
    assert [r.status for r in again.slides] == ["skipped", "done"]
    assert again.slides[0].n_patches == first.slides[0].n_patches
    assert (out / "a.h5").stat().st_mtime_ns == mtime
    with h5py.File(out / "b.h5") as f:
        assert f.attrs["status"] == "complete"
    forced = extract_features(a.parent, out, patch_size=128, resume=False, **FAST)
    assert [r.status for r in forced.slides] == ["done", "done"]
    # a complete bag written by another encoder is not overwritten by a resumed run
    with h5py.File(out / "a.h5", "a") as f:
        f["features"].attrs["encoder"] = "uni"
    other = extract_features([a], out, patch_size=128, **FAST).slides[0]
    assert other.status == "failed" and "another encoder" in other.error and "--no-resume" in other.error
    with h5py.File(out / "a.h5") as f:
        assert f["features"].attrs["encoder"] == "uni"
    # ... nor one tiled differently (asking for 10x patches where 20x ones are stored)
    at10 = extract_features([b], out, patch_size=128, magnification=10, **FAST).slides[0]
    assert at10.status == "failed" and "magnification" in at10.error


def test_workers_and_backends_give_the_same_features(synth, tmp_path):
    p = synth("w.tif", 768, 512)
    ref = extract_features([p], tmp_path / "o0", patch_size=128, workers=0, **FAST)
    par = extract_features([p], tmp_path / "o2", patch_size=128, workers=2, **FAST)
    tsl = extract_features([p], tmp_path / "ot", patch_size=128, backend="tiffslide", **FAST)
    f0, c0, _ = _read(tmp_path / "o0" / "w.h5")
    f2, c2, _ = _read(tmp_path / "o2" / "w.h5")
    ft, ct, _ = _read(tmp_path / "ot" / "w.h5")
    assert ref.done == par.done == tsl.done == 1 and len(f0) > 0
    np.testing.assert_array_equal(c0, c2)
    np.testing.assert_allclose(f0, f2, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(c0, ct)
    assert np.abs(f0 - ft).mean() < 0.05  # JPEG decoders differ by a grey level at most


def test_bad_inputs_are_reported_and_the_rest_continues(synth, tmp_path, capsys):
    good = synth("good.tif", 768, 512)
    synth("blank.tif", 768, 512, blobs=[])
    synth("nompp.tif", 768, 512, mpp=None)
    d = good.parent
    (d / "corrupt.svs").write_bytes(b"II*\x00" + b"\x13" * 3000)
    (d / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (d / "readme.txt").write_text("ignored: not an image")
    out = tmp_path / "out"
    s = extract_features(d, out, patch_size=128, **FAST)
    by = {r.slide: r for r in s.slides}
    assert set(by) == {"good", "blank", "nompp", "corrupt", "photo"}
    assert by["good"].status == "done" and by["good"].n_patches > 0
    assert by["blank"].status == "no_tissue"
    assert by["nompp"].status == "failed" and "no pixel size (MPP)" in by["nompp"].error and "nompp.tif" in by["nompp"].error
    assert by["corrupt"].status == "failed" and "cannot read the file as a slide" in by["corrupt"].error
    assert by["photo"].status == "failed" and "unsupported slide format '.png'" in by["photo"].error
    # no-tissue policy 'write': an empty but valid h5 flagged as such
    with h5py.File(out / "blank.h5") as f:
        assert f.attrs["status"] == "no_tissue" and f["features"].shape == (0, 1280) and f["coords"].shape == (0, 2)
    assert sorted(p.name for p in out.glob("*.h5")) == ["blank.h5", "good.h5"]
    assert (s.done, s.no_tissue, s.failed) == (1, 1, 3)
    # the override table rescues the slide without MPP; 'skip' policy writes no file for blank slides
    csv = tmp_path / "mpp.csv"
    csv.write_text("slide,mpp\nnompp.tif,0.5\n")
    out2 = tmp_path / "out2"
    s2 = extract_features([d / "nompp.tif", d / "blank.tif"], out2, patch_size=128, mpp_overrides=csv, no_tissue="skip", **FAST)
    assert [r.status for r in s2.slides] == ["done", "no_tissue"] and not (out2 / "blank.h5").exists()
    with h5py.File(out2 / "nompp.h5") as f:
        assert f.attrs["mpp"] == 0.5 and f.attrs["mpp_source"] == "override"
    # the CLI reports failures and exits non-zero
    from modaltune.cli import main

    assert main(["extract", "--slides", str(d), "--out", str(tmp_path / "out3"), "--patch-size", "128", "--batch-size", "16"]) == 1
    err = capsys.readouterr().err
    assert "failed: nompp:" in err and "failed: photo:" in err


def test_disk_full_during_write_leaves_no_h5(synth, tmp_path, monkeypatch):
    p = synth("full.tif", 768, 512)
    real_append = BagWriter.append
    calls = {"n": 0}

    def failing_append(self, features, coords):
        calls["n"] += 1
        if calls["n"] == 2:  # the second batch hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, features, coords)

    monkeypatch.setattr(BagWriter, "append", failing_append)
    out = tmp_path / "out"
    s = extract_features([p], out, patch_size=128, batch_size=4, progress=False)
    r = s.slides[0]
    assert calls["n"] == 2 and r.status == "failed" and "disk full" in r.error
    assert not list(out.glob("*.h5")) and not list(out.glob("*.tmp"))
    monkeypatch.setattr(BagWriter, "append", real_append)
    assert extract_features([p], out, patch_size=128, **FAST).slides[0].status == "done"  # resume finishes it


@pytest.mark.slow
def test_ray_tasks_match_local_run(synth, tmp_path):
    ray = pytest.importorskip("ray", reason="needs the [distributed] extra")
    a, b = synth("ra.tif", 768, 512), synth("rb.tif", 768, 512, seed=3)
    local = extract_features(a.parent, tmp_path / "local", patch_size=128, **FAST)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        dist = extract_features(a.parent, tmp_path / "ray", patch_size=128, ray_address="auto", **FAST)
    finally:
        ray.shutdown()
    assert [r.status for r in dist.slides] == ["done", "done"]
    for name in ("ra", "rb"):
        fl, cl, _ = _read(tmp_path / "local" / f"{name}.h5")
        fr, cr, _ = _read(tmp_path / "ray" / f"{name}.h5")
        np.testing.assert_array_equal(cl, cr)
        np.testing.assert_allclose(fl, fr, rtol=1e-5, atol=1e-5)
