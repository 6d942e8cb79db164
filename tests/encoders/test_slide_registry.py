"""Registry, checkpoint adapters (official file layouts) and strict-loading errors."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from slide_refs import load_ref

from modaltune.encoders.slide import (
    GigaPathSlideEncoder,
    TitanSlideEncoder,
    create_slide_encoder,
    list_slide_encoders,
)
from modaltune.errors import ConfigError, InputError


def test_list_and_unknown_name():
    assert list_slide_encoders() == ["abmil", "gigapath", "pathway_transformer", "small_transformer", "titan", "transmil"]
    with pytest.raises(ConfigError, match="unknown slide encoder 'gigapth'.*abmil, gigapath"):
        create_slide_encoder("gigapth")


def test_foundation_models_refuse_silent_random_weights():
    for name in ("gigapath", "titan"):
        with pytest.raises(ConfigError, match="no checkpoint was given; refusing to run with random weights"):
            create_slide_encoder(name)
    m = create_slide_encoder("titan", random_init=True, embed_dim=48, depth=1, num_heads=12)
    assert m.weights_source == "random_init"
    with pytest.raises(ConfigError, match="both a checkpoint and random_init"):
        create_slide_encoder("gigapath", checkpoint="x.pth", random_init=True)
    assert create_slide_encoder("abmil", in_dim=8).weights_source == "random_init"


def test_gigapath_official_pth_layout(tmp_path, gigapath_full_sd):
    """slide_encoder.pth stores {"model": state_dict}; loading it reproduces the reference output."""
    ref = load_ref("ref_gigapath_p300_full_20x.pt")
    path = tmp_path / "slide_encoder.pth"
    torch.save({"model": gigapath_full_sd, "epoch": 3}, path)
    m = create_slide_encoder("gigapath", checkpoint=path).eval()
    assert m.weights_source == str(path)
    with torch.no_grad():
        out = m(ref["inputs"]["features"], ref["inputs"]["coords"])
    assert float((out - ref["outputs"]["fp32"]["cls_default"]).abs().max()) <= 1e-5
    # bare state dict with the (non-persistent) pos_embed a re-export might carry
    bare = tmp_path / "bare.pt"
    torch.save({"pos_embed": torch.zeros(1, 3, 768), **gigapath_full_sd}, bare)
    assert create_slide_encoder("gigapath", checkpoint=bare).weights_source == str(bare)


def test_titan_official_safetensors_layout(tmp_path, titan_full_sd):
    ref = load_ref("ref_titan_p300_full_20x.pt")
    tensors = {f"vision_encoder.{k}": v.contiguous() for k, v in titan_full_sd.items()}
    tensors["text_encoder.token_embedding.weight"] = torch.zeros(4, 8)  # ignored
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    m = create_slide_encoder("titan", checkpoint=path, patch_size_level0=512).eval()
    with torch.no_grad():
        out = m(ref["inputs"]["features"], ref["inputs"]["coords"])
    assert float((out - ref["outputs"]["fp32"]["slide_embedding"]).abs().max()) <= 1e-5
    assert m.weights_source == str(path)


def _reduced_gigapath_sd():
    return dict(load_ref("ref_gigapath_p37_reduced_20x.pt")["state_dict"])


GP_REDUCED = dict(embed_dim=256, depth=8, num_heads=16, ffn_dim=1024)


def test_strict_loading_errors(tmp_path):
    sd = _reduced_gigapath_sd()
    ok = tmp_path / "ok.pth"
    torch.save({"model": sd}, ok)
    m = create_slide_encoder("gigapath", checkpoint=ok, **GP_REDUCED)
    assert torch.equal(m.norm.weight, sd["norm.weight"])

    missing = dict(sd)
    del missing["encoder.layers.3.ffn.fc1.weight"]
    missing["head.weight"] = torch.zeros(2, 256)
    p = tmp_path / "missing.pth"
    torch.save({"model": missing}, p)
    with pytest.raises(InputError, match=r"1 missing key\(s\): encoder.layers.3.ffn.fc1.weight; 1 unexpected key\(s\): head.weight") as e:
        create_slide_encoder("gigapath", checkpoint=p, **GP_REDUCED)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    # non-strict: returns the lists and keeps the rest
    m2 = GigaPathSlideEncoder(**GP_REDUCED)
    from modaltune.encoders.slide import gigapath_checkpoint_filter_fn, load_checkpoint

    rep = load_checkpoint(m2, p, gigapath_checkpoint_filter_fn, strict=False)
    assert rep == {"missing": ["encoder.layers.3.ffn.fc1.weight"], "unexpected": ["head.weight"]}

    # wrong architecture -> shape mismatch, always an error
    with pytest.raises(InputError, match="shapes do not match.*patch_embed.proj.weight"):
        create_slide_encoder("gigapath", checkpoint=ok)  # full-size model, reduced file

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="cannot read checkpoint"):
        create_slide_encoder("gigapath", checkpoint=corrupt, **GP_REDUCED)
    with pytest.raises(InputError, match="checkpoint file not found"):
        create_slide_encoder("gigapath", checkpoint=tmp_path / "nope.pth", **GP_REDUCED)


def test_titan_checkpoint_without_vision_keys(tmp_path):
    p = tmp_path / "text_only.safetensors"
    save_file({"text_encoder.w": torch.zeros(2, 2)}, str(p))
    with pytest.raises(InputError, match="no 'vision_encoder.\\*' keys"):
        create_slide_encoder("titan", checkpoint=p)
    # a bare reduced TITAN state dict (no prefix) in .safetensors also loads
    sd = load_ref("ref_titan_p37_reduced_20x.pt")["state_dict"]
    q = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(q))
    m = create_slide_encoder("titan", checkpoint=q, embed_dim=192)
    assert isinstance(m, TitanSlideEncoder) and torch.equal(m.proj, sd["proj"])


def test_reference_dir_follows_modaltune_shared(monkeypatch, tmp_path):
    """Like tests/conftest.py: $MODALTUNE_SHARED/reference, else <repo>/../shared/reference; a
    missing pack skips with a message naming the folder and the variable."""
    import slide_refs

    monkeypatch.delenv("MODALTUNE_SHARED", raising=False)
    assert slide_refs.ref_dir() == slide_refs.REPO.parent / "shared" / "reference"
    monkeypatch.setenv("MODALTUNE_SHARED", str(tmp_path))
    assert slide_refs.ref_dir() == tmp_path / "reference"
    with pytest.raises(pytest.skip.Exception, match=rf"reference pack not found at {tmp_path}/reference .*MODALTUNE_SHARED"):
        slide_refs._need_refs()
