"""End to end: real slide -> TRIDENT h5 -> cohort data layer -> ABMIL; resume; bad inputs isolated per slide."""
from __future__ import annotations

import errno
import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from modaltune.data.bags import read_bag
from modaltune.errors import ConfigError
from modaltune.preprocess import extract_features
from modaltune.preprocess.h5writer import BagWriter

FAST = dict(batch_size=16, progress=False)


def _read(path):
    b = read_bag(path)
    return b.features, b.coords, b.attrs


def _cohort_over(root, bags: dict, n_dim: int):
    """A cohort directory at ``root`` whose slide table lists ``bags`` (patient -> h5 path relative to
    root, or None for a patient without a slide); one classification task."""
    from modaltune.data.cohort import Cohort, CohortManifest, ModalitySpec, TaskSpec

    manifest = CohortManifest(
        name="cmu_e2e", sites=["CMU"],
        tasks=[TaskSpec(name="subtype", kind="classification", label_column="subtype", classes=["a", "b"])],
        modalities=[ModalitySpec(name="wsi", kind="slide", feature_dim=n_dim, encoder="efficientnet_lite0", patch_size_level0=256)],
    )
    pids = list(bags)
    patients = pd.DataFrame({"patient_id": pids, "site": "CMU", "subtype": ["a", "b", "a"][: len(pids)]})
    slides = pd.DataFrame([(p, f"{p}_slide", path) for p, path in bags.items() if path],
                          columns=["patient_id", "slide_id", "path"])
    Cohort(manifest, patients, slides=slides).save(root)
    return Cohort.load(root)


def test_real_slide_end_to_end(cmu_slide, synth, tmp_path):
    """Issue item 7: tissue found, patches at 20x, EfficientNet-Lite0 features written to h5, read back
    by the cohort data layer (Cohort.load -> PatientDataset -> collate) and used by the registered ABMIL."""
    from modaltune.data.dataset import CohortPreprocessor, PatientDataset, collate_patients
    from modaltune.encoders.slide.abmil import ABMILSlideEncoder
    from modaltune.methods import build_method

    root = tmp_path / "cohort"
    out = root / "features"
    syn = synth("syn.tif", 768, 512, seed=2)
    s = extract_features([cmu_slide, syn], out, encoder="efficientnet_lite0", magnification=20, patch_size=256, **FAST)
    assert (s.done, s.failed) == (2, 0)
    r, rs = s.slides
    feats, coords, attrs = _read(out / "cmu_small_region.h5")
    # 2220 x 2967 px at 20x: 8 x 11 grid of 256-px patches, of which the tissue strip keeps 40.
    assert feats.shape == (40, 1280) and feats.dtype == np.float32 and r.n_patches == 40
    assert coords.dtype == np.int64 and (coords % 256 == 0).all()
    assert coords[:, 0].max() + 256 <= 2220 and coords[:, 1].max() + 256 <= 2967
    assert attrs["patch_size_level0"] == 256 and attrs["level0_magnification"] == 20 and attrs["target_magnification"] == 20
    assert attrs["encoder"] == "efficientnet_lite0" and attrs["level0_width"] == 2220 and attrs["level0_height"] == 2967
    assert np.isfinite(feats).all() and feats.std(0).mean() > 0.01  # patches differ
    assert 0 < rs.n_patches < 6  # the synthetic slide: a few tissue patches of its 3 x 2 grid
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
    from PIL import Image

    from modaltune.preprocess.qc import OUTLINE_RGB, PATCH_RGB

    thumb = np.asarray(Image.open(out / "qc" / "cmu_small_region_thumbnail.png").convert("RGB"))
    assert (thumb == OUTLINE_RGB).all(-1).sum() > 500 and (thumb == PATCH_RGB).all(-1).sum() > 40 * 20
    summ = json.loads((out / "summary.json").read_text())
    assert summ["totals"]["done"] == 2 and summ["totals"]["patches"] == 40 + rs.n_patches and summ["pathology_encoder"] is False
    assert "NOT a pathology encoder" in (out / "summary.md").read_text()

    # The cohort data layer reads the bags: a slide table pointing at the h5 files, one patient without a slide.
    cohort = _cohort_over(root, {"P_cmu": "features/cmu_small_region.h5", "P_syn": "features/syn.h5", "P_none": None}, 1280)
    avail = cohort.availability()["wsi"]
    assert avail.to_dict() == {"P_cmu": True, "P_syn": True, "P_none": False}
    ids = ["P_cmu", "P_syn", "P_none"]
    prep = CohortPreprocessor(cohort).fit(ids)
    assert prep.info.slide_dim == 1280
    ds = PatientDataset(cohort, ids, prep, training=False)
    batch = collate_patients([ds[i] for i in range(len(ds))])
    sl = batch["slide"]
    assert sl["features"].shape == (3, 40, 1280) and sl["coords"].shape == (3, 40, 2)
    assert sl["mask"].sum(1).tolist() == [40, rs.n_patches, 0]
    np.testing.assert_array_equal(sl["features"][0].numpy(), feats)  # bit-exact round trip through the data layer
    np.testing.assert_array_equal(sl["coords"][0].numpy(), coords)
    assert batch["modality_mask"]["wsi"].tolist() == [True, True, False]

    # The registered ABMIL method (gated attention) trains on that batch.
    torch.manual_seed(0)
    model = build_method("abmil", prep.info, embed_dim=32, attn_dim=16)
    enc = next(m for m in model.modules() if isinstance(m, ABMILSlideEncoder))
    seen = []
    attention = enc.attention

    def recording(state):
        a = attention(state)
        seen.append(a.detach())
        return a

    enc.attention = recording
    model.eval()
    out_ = model(batch)
    logits = out_["outputs"]["subtype"]
    assert logits.shape == (3, 2) and torch.isfinite(logits).all() and torch.isfinite(out_["embedding"]).all()
    (att,) = seen  # one call, on the two patients that have a slide
    assert att.shape == (2, 40)
    assert (att[0] > 0).sum() == 40 and (att[1] > 0).sum() == rs.n_patches  # exactly the extracted patches
    assert torch.allclose(att.sum(1), torch.ones(2)) and (att[1, rs.n_patches:] == 0).all()
    model.train()
    loss, per_task = model.loss(batch, model(batch))
    loss.backward()
    assert torch.isfinite(loss) and set(per_task) == {"subtype"}
    assert enc.attention_w.weight.grad is not None and torch.isfinite(enc.attention_w.weight.grad).all()
    assert float(enc.fc[0].weight.grad.abs().sum()) > 0


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


def test_disk_full_inside_commit_leaves_no_h5_and_no_done_state(synth, tmp_path, monkeypatch):
    """A full disk often shows only when HDF5 flushes its buffers at commit; h5py's error carries no errno."""
    p = synth("late.tif", 768, 512)
    out = tmp_path / "out"

    def full_disk_flush(self):
        raise OSError("Can't write data (file write failed: time = now, filename = 'late.h5.tmp', file descriptor = 5, "
                      "errno = 28, error message = 'No space left on device', buf = 0x1, total write size = 65536)")

    monkeypatch.setattr(h5py.File, "flush", full_disk_flush)
    s = extract_features([p], out, patch_size=128, **FAST)
    monkeypatch.undo()
    r = s.slides[0]
    assert r.status == "failed" and r.h5 is None and s.done == 0
    assert r.error.startswith("disk full while writing (ENOSPC: flushing late.h5 failed: Can't write data")
    assert "no partial h5 was left" in r.error and "rerun" in r.error
    assert not list(out.glob("*.h5")) and not list(out.glob("*.tmp"))
    assert json.loads((out / "summary.json").read_text())["slides"][0]["status"] == "failed"
    assert extract_features([p], out, patch_size=128, **FAST).slides[0].status == "done"  # a rerun completes it


def test_describe_gives_a_useful_line_for_errors_without_errno():
    from modaltune.preprocess.h5writer import BagWriteError
    from modaltune.preprocess.pipeline import _describe

    assert _describe(OSError()) == "OSError: no message (an I/O error with no errno)"
    assert _describe(OSError(errno.EIO, "Input/output error")) == "OSError EIO: [Errno 5] Input/output error"
    closing = BagWriteError("/out/s.h5.tmp", "closing", OSError("Can't close file"))
    assert _describe(closing) == ("cannot write the h5 (closing s.h5.tmp failed: Can't close file); no partial h5 was left; "
                                  "check free space and write permission of the output folder")
    quota = BagWriteError("/out/s.h5.tmp", "writing", OSError("Disk quota exceeded"))
    assert _describe(quota).startswith("disk full while writing (EDQUOT: writing s.h5.tmp failed")
    assert _describe(ValueError("")) == "ValueError: ValueError('')"


def test_ray_run_checks_the_encoder_weights_once_before_any_task(synth, tmp_path, monkeypatch):
    """Missing weights with --ray-address: one ConfigError up front, no Ray task started (Ray not needed)."""
    from modaltune.preprocess import distributed

    synth("r1.tif", 512, 512)
    synth("r2.tif", 512, 512, seed=1)
    started = []
    monkeypatch.setattr(distributed, "run_with_ray", lambda *a, **k: started.append(a) or [])
    monkeypatch.setenv("MODALTUNE_WEIGHTS_DIR", str(tmp_path / "weights"))
    for enc, where in (("uni", "MahmoodLab/UNI"), ("conch_v15", "conch_v1_5_pytorch_model.bin")):
        with pytest.raises(ConfigError) as e:
            extract_features(tmp_path / "slides", tmp_path / "out", encoder=enc, ray_address="auto", **FAST)
        assert f"weights for patch encoder '{enc}' not found at {tmp_path / 'weights' / enc}" in str(e.value) and where in str(e.value)
    with pytest.raises(ConfigError, match="efficientnet_lite0' not found at .*nowhere.pth"):
        extract_features(tmp_path / "slides", tmp_path / "out", weights=tmp_path / "nowhere.pth", ray_address="auto", **FAST)
    assert started == [] and not list((tmp_path / "out").glob("*.h5"))
    # with the weights in place the check passes and the slides go to Ray
    extract_features(tmp_path / "slides", tmp_path / "out", ray_address="auto", **FAST)
    assert len(started) == 1 and [p.name for p in started[0][0]] == ["r1.tif", "r2.tif"]


@pytest.mark.slow
def test_ray_tasks_match_local_run(synth, tmp_path):
    ray = pytest.importorskip("ray", reason="needs the [distributed] extra")
    a, _ = synth("ra.tif", 768, 512), synth("rb.tif", 768, 512, seed=3)  # rb.tif: the second slide of the folder
    extract_features(a.parent, tmp_path / "local", patch_size=128, **FAST)
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


def test_cli_exposes_dtype_qc_progress_and_mask_size(synth, tmp_path, capsys):
    from modaltune.cli import main

    p = synth("cli.tif", 768, 512)
    out = tmp_path / "out"
    args = ["extract", "--slides", str(p), "--out", str(out), "--patch-size", "128", "--batch-size", "16"]
    assert main(args + ["--features-dtype", "float16", "--no-qc", "--no-progress", "--mask-long-side", "512"]) == 0
    assert "1 done" in capsys.readouterr().out
    with h5py.File(out / "cli.h5") as f:
        assert f["features"].dtype == np.float16 and f["features"].shape[0] > 0
    assert not (out / "qc").exists()
    cfg = json.loads((out / "summary.json").read_text())["config"]
    assert (cfg["features_dtype"], cfg["save_qc"], cfg["progress"], cfg["mask_long_side"]) == ("float16", False, False, 512)
    assert main(args + ["--no-resume", "--mask-long-side", "16"]) != 0  # refused with the ConfigError
