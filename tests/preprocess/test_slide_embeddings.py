"""Optional slide embeddings during extraction: ``slide_embedding`` in each h5 equals the slide
encoder applied to that h5's features and coords; resume adds it to a finished h5; a foundation
model without a checkpoint or an explicit random_init is refused before any slide is touched."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from modaltune.errors import ConfigError
from modaltune.preprocess import extract_features

FAST = dict(batch_size=16, progress=False, save_qc=False, patch_size=128)


def _reference(h5) -> np.ndarray:
    """The small transformer rebuilt independently (same seed, in_dim = patch feature width) on the h5's bag."""
    from modaltune.encoders.slide import create_slide_encoder

    with h5py.File(h5) as f:
        feats, coords, ps = f["features"][()], f["coords"][()], int(f["coords"].attrs["patch_size_level0"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc = create_slide_encoder("small_transformer", random_init=True, in_dim=feats.shape[1], patch_size_level0=ps).eval()
    with torch.no_grad():
        return enc(torch.from_numpy(feats)[None], torch.from_numpy(coords)[None])[0].numpy()


def test_slide_embedding_written_with_attrs_and_equal_to_the_encoder_output(synth, tmp_path):
    p = synth("emb.tif", 768, 512)
    out = tmp_path / "out"
    s = extract_features([p], out, slide_encoder="small_transformer", random_init=True, **FAST)
    r = s.slides[0]
    assert r.status == "done" and r.n_patches > 1 and r.slide_embedding_dim == 192
    with h5py.File(r.h5) as f:
        assert f.attrs["status"] == "complete"
        emb = f["slide_embedding"]
        assert emb.shape == (192,) and emb.dtype == np.float32
        assert emb.attrs["slide_encoder"] == "small_transformer" and emb.attrs["slide_encoder_weights"] == "random_init"
        got = emb[()]
    np.testing.assert_allclose(got, _reference(r.h5), rtol=1e-5, atol=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["slide_encoder"] == "small_transformer" and summary["slides"][0]["slide_embedding_dim"] == 192
    assert "Slide encoder: `small_transformer`" in (out / "summary.md").read_text()
    assert not list(out.glob("*.tmp"))
    from modaltune.data.bags import read_bag

    assert read_bag(r.h5).n_patches == r.n_patches  # the data layer still reads the bag

    # resume: a finished h5 without an embedding gets one (same weights -> same values), features untouched
    plain = tmp_path / "plain"
    first = extract_features([p], plain, **FAST).slides[0]
    with h5py.File(first.h5) as f:
        assert "slide_embedding" not in f
        feats = f["features"][()]
    again = extract_features([p], plain, slide_encoder="small_transformer", random_init=True, **FAST).slides[0]
    assert again.status == "skipped" and again.slide_embedding_dim == 192
    with h5py.File(again.h5) as f:
        np.testing.assert_array_equal(f["features"][()], feats)
        np.testing.assert_allclose(f["slide_embedding"][()], got, rtol=1e-5, atol=1e-5)
    assert not list(plain.glob("*.tmp"))


def test_foundation_slide_encoder_without_weights_is_refused(synth, tmp_path, capsys):
    p = synth("gp.tif", 512, 512)
    with pytest.raises(ConfigError, match="frozen foundation model and no checkpoint") as ei:
        extract_features([p], tmp_path / "out", slide_encoder="gigapath", **FAST)
    assert "random_init=True" in str(ei.value)
    assert not list((tmp_path / "out").glob("*.h5"))  # refused before any slide
    with pytest.raises(ConfigError, match="unknown slide encoder 'gigapathh'"):
        extract_features([p], tmp_path / "out", slide_encoder="gigapathh", **FAST)
    # through the CLI: one line, exit status 2
    from modaltune.cli import main

    rc = main(["extract", "--slides", str(p), "--out", str(tmp_path / "cli"), "--patch-size", "128", "--slide-encoder", "gigapath"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and "no checkpoint was given" in err[0]
