"""Encoder specs (TRIDENT's tile size / magnification), the pairing check, Phikon-v2 from a tiny local
DINOv2 folder, and user encoders through a config (CLI `extract` on the real CMU slide) and entry points."""
from __future__ import annotations

import dataclasses
import json
import textwrap
import warnings

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from modaltune.errors import ConfigError, InputError
from modaltune.preprocess.encoders import (
    PATCH_ENCODERS,
    EncoderPairingWarning,
    check_pairing,
    custom_encoder_spec,
    get_patch_encoder_spec,
    load_patch_encoder,
    pairing_problem,
    register_patch_encoder,
    strip_prefix_filter,
)
from modaltune.preprocess.encoders import registry as reg

FAST = dict(batch_size=16, progress=False, save_qc=False, mask_long_side=512)


# ------------------------------------------------------------------------------------------ specs
def test_literature_encoders_declare_trident_geometry():
    # name: (D, tile px, magnification, µm/px, model input px, GPU precision) from TRIDENT's load.py and the model cards
    want = {
        "uni": (1024, 256, 20.0, 0.5, 224, "float16"),
        "uni2": (1536, 256, 20.0, 0.5, 224, "bfloat16"),
        "conch_v1": (512, 512, 20.0, 0.5, 448, "float32"),
        "conch_v15": (768, 512, 20.0, 0.5, 448, "float16"),
        "virchow2": (2560, 224, 20.0, 0.5, 224, "float16"),
        "hoptimus0": (1536, 224, 20.0, 0.5, 224, "float16"),
        "hoptimus1": (1536, 224, 20.0, 0.5, 224, "float16"),
        "gigapath": (1536, 256, 20.0, 0.5, 224, "float16"),
        "phikon_v2": (1024, 224, 20.0, 0.5, 224, "float32"),
        "ctranspath": (768, 224, 20.0, 0.5, 224, "float32"),
    }
    got = {n: (s.embedding_dim, s.tile_px, s.magnification, s.mpp, s.input_size, s.precision)
           for n, s in PATCH_ENCODERS.items() if n in want}
    assert got == want
    assert PATCH_ENCODERS["efficientnet_lite0"].tile_px is None  # ImageNet: no pairing to respect
    timm_based = {n for n, s in PATCH_ENCODERS.items() if "timm" in s.requires}
    assert timm_based == {"uni", "uni2", "gigapath", "virchow2", "hoptimus0", "hoptimus1", "ctranspath"}
    assert all(PATCH_ENCODERS[n].extra == "timm" for n in timm_based)
    assert PATCH_ENCODERS["hoptimus1"].mean == (0.707223, 0.578729, 0.703617)
    assert PATCH_ENCODERS["conch_v1"].mean[0] == pytest.approx(0.48145466)  # OpenAI CLIP statistics


@pytest.mark.parametrize("alias,name", [("uni_v1", "uni"), ("UNI_V2", "uni2"), ("prov-gigapath", "gigapath"),
                                        ("h-optimus-1", "hoptimus1"), ("conch", "conch_v1")])
def test_trident_names_are_accepted(alias, name):
    assert get_patch_encoder_spec(alias).name == name


def test_missing_timm_names_the_extra(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"x")
    try:
        import timm  # noqa: F401
        pytest.skip("timm imports here")
    except ImportError:
        pass
    with pytest.raises(reg.MissingModelPackageError, match=r"pip install 'modaltune\[timm\]'"):
        load_patch_encoder("hoptimus1", weights=tmp_path / "w.bin")


def test_strip_prefix_filter_only_touches_prefixed_keys():
    sd = {"backbone.a": 1, "backbone.b.c": 2, "head.w": 3}
    assert strip_prefix_filter("backbone.")(sd, None) == {"a": 1, "b.c": 2, "head.w": 3}


def test_ctranspath_stem_shapes():
    from modaltune.preprocess.encoders.ctranspath import ConvStem

    stem = ConvStem(img_size=224, embed_dim=96)
    assert [k for k in stem.state_dict() if k.endswith("weight")][:3] == ["proj.0.weight", "proj.1.weight", "proj.3.weight"]
    assert stem(torch.zeros(2, 3, 224, 224)).shape == (2, 56, 56, 96)
    assert ConvStem(output_fmt="NCHW")(torch.zeros(1, 3, 224, 224)).shape == (1, 56 * 56, 96)


# ---------------------------------------------------------------------------------------- pairing
def test_pairing_problem_known_answers():
    conch = PATCH_ENCODERS["conch_v15"]
    assert pairing_problem(conch, 512, 20) is None
    assert pairing_problem(conch, 512, None, target_mpp=0.52) is None  # within 10 % of 0.5 µm/px
    msg = pairing_problem(conch, 256, 20)
    assert msg == ("patch encoder 'conch_v15' was trained on tiles of 512 px at 20x (0.5 µm/px at 20x); "
                   "this run tiles 256 px at 20x")
    assert "512 px at 10x" in pairing_problem(conch, 512, 10)
    assert "0.25 µm/px (~40x)" in pairing_problem(conch, 512, None, target_mpp=0.25)
    # accepted secondary pairs: CHIEF tiles CTransPath at 256 px / 10x
    assert pairing_problem(PATCH_ENCODERS["ctranspath"], 256, 10) is None
    assert pairing_problem(PATCH_ENCODERS["ctranspath"], 256, 20) is not None
    assert pairing_problem(PATCH_ENCODERS["efficientnet_lite0"], 123, 7) is None


def test_check_pairing_warns_once_or_refuses():
    spec = PATCH_ENCODERS["uni"]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert check_pairing(spec, 224, 20) is not None
    assert len(w) == 1 and issubclass(w[0].category, EncoderPairingWarning) and "\n" not in str(w[0].message)
    with pytest.raises(ConfigError, match=r"trained on tiles of 256 px at 20x.*--patch-size 256 --mag 20"):
        check_pairing(spec, 224, 20, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_pairing(spec, 256, 20.0, strict=True) is None


@pytest.fixture
def tiny_conch(monkeypatch):
    from functools import partial

    from modaltune.preprocess.encoders.registry import _build_conch_v15

    tiny = dict(img_size=32, patch_size=16, width=32, depth=1, num_heads=2, mlp_ratio=2.0, embed_dim=8, pooler_heads=2, n_queries=1)
    spec = dataclasses.replace(PATCH_ENCODERS["conch_v15"], embedding_dim=8, input_size=32, _build=partial(_build_conch_v15, arch=tiny))
    monkeypatch.setitem(PATCH_ENCODERS, "conch_v15", spec)
    from modaltune.preprocess.encoders.conch_v15 import ConchV15

    torch.manual_seed(0)
    return ConchV15(**tiny)


def test_conch_v15_defaults_to_512px_at_20x_and_strict_pairing_refuses(tmp_path, tiny_conch, cmu_slide, monkeypatch):
    from modaltune.preprocess.pipeline import extract_features

    torch.save(tiny_conch.state_dict(), tmp_path / "conch.bin")
    with warnings.catch_warnings():
        warnings.simplefilter("error", EncoderPairingWarning)  # the default pairing must not warn
        s = extract_features([cmu_slide], tmp_path / "out", encoder="conch_v15", weights=tmp_path / "conch.bin", **FAST)
    assert s.done == 1 and s.config["patch_size"] == 512 and s.config["magnification"] == 20.0
    with h5py.File(tmp_path / "out" / f"{cmu_slide.stem}.h5") as f:
        assert f["coords"].attrs["patch_size"] == 512 and f["features"].shape[1] == 8
        # CMU-1-Small-Region is scanned at 20x: a 512-px tile is 512 level-0 px
        assert f["coords"].attrs["patch_size_level0"] == 512
    with pytest.raises(ConfigError, match="trained on tiles of 512 px at 20x"):
        extract_features([cmu_slide], tmp_path / "o2", encoder="conch_v15", weights=tmp_path / "conch.bin",
                         patch_size=256, strict_pairing=True, **FAST)
    assert not (tmp_path / "o2" / f"{cmu_slide.stem}.h5").exists()
    with pytest.warns(EncoderPairingWarning, match="this run tiles 256 px at 20x"):
        extract_features([cmu_slide], tmp_path / "o3", encoder="conch_v15", weights=tmp_path / "conch.bin", patch_size=256, **FAST)


# ------------------------------------------------------------------------------------ Phikon-v2
def _tiny_dinov2_folder(path, hidden=1024):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Dinov2Config(hidden_size=hidden, num_hidden_layers=1, num_attention_heads=8, intermediate_size=64,
                                    image_size=28, patch_size=14)
    torch.manual_seed(0)
    model = transformers.Dinov2Model(cfg).eval()
    model.save_pretrained(path)
    return model


def test_phikon_v2_loads_a_local_dinov2_folder_strictly(tmp_path):
    ref = _tiny_dinov2_folder(tmp_path / "pv2")
    spec = dataclasses.replace(PATCH_ENCODERS["phikon_v2"], input_size=28)
    enc = reg.PatchEncoder(spec, *spec._build(spec, tmp_path / "pv2"))
    x = torch.randint(0, 256, (2, 28, 28, 3), dtype=torch.uint8)
    got = enc.encode(x)
    with torch.no_grad():
        want = ref(pixel_values=enc.preprocess(x)).last_hidden_state[:, 0]
    assert got.shape == (2, 1024)
    torch.testing.assert_close(got, want, rtol=1.3e-6, atol=1e-5)  # fp32, same graph
    # a checkpoint missing a weight is refused (transformers would random-initialise it)
    from safetensors.torch import load_file, save_file

    sd = load_file(tmp_path / "pv2" / "model.safetensors")
    dropped = next(k for k in sd if k.endswith("layernorm.weight"))
    del sd[dropped]
    save_file(sd, tmp_path / "pv2" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match=r"weights do not fit encoder 'phikon_v2' \(missing keys: .*layernorm\.weight"):
        spec._build(spec, tmp_path / "pv2")


def test_phikon_v2_refuses_a_vit_folder_and_wrong_width(tmp_path):
    _tiny_dinov2_folder(tmp_path / "narrow", hidden=64)
    with pytest.raises(InputError, match="hidden_size 64 does not give the 1024-d features of 'phikon_v2'"):
        load_patch_encoder("phikon_v2", weights=tmp_path / "narrow")


# ---------------------------------------------------------------------------------- custom hook
ENCODER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn

    class MeanColour(nn.Module):
        """(B, 3, S, S) -> (B, 4): per-channel means through a Linear layer."""

        def __init__(self):
            super().__init__()
            self.head = nn.Linear(3, 4)

        def forward(self, x):
            return self.head(x.mean(dim=(2, 3)))

    def build():
        return MeanColour()
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A tiny encoder module on sys.path and its weights saved with a 'backbone.' prefix."""
    (tmp_path / "mt_user_encoder.py").write_text(ENCODER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(reg, "PATCH_ENCODERS", dict(reg.PATCH_ENCODERS))  # registrations stay in this test
    import importlib
    import sys

    sys.modules.pop("mt_user_encoder", None)
    mod = importlib.import_module("mt_user_encoder")
    torch.manual_seed(1)
    model = mod.build()
    torch.save({f"backbone.{k}": v for k, v in model.state_dict().items()}, tmp_path / "user.pth")
    return model


def _config(tmp_path, **kw):
    cfg = dict(name="my_encoder", builder="mt_user_encoder:build", embedding_dim=4, tile_px=64, magnification=20,
               weights=str(tmp_path / "user.pth"), mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], strip_prefix="backbone.")
    cfg.update(kw)
    return cfg


def test_custom_spec_loads_strictly_and_encodes_known_values(tmp_path, user_module):
    spec = register_patch_encoder(custom_encoder_spec(_config(tmp_path)))
    assert get_patch_encoder_spec("my-encoder") is spec and (spec.tile_px, spec.magnification, spec.input_size) == (64, 20.0, 64)
    enc = load_patch_encoder("my_encoder")
    x = torch.full((2, 64, 64, 3), 191, dtype=torch.uint8)  # (191/255 - 0.5) / 0.25 in every channel
    v = (191 / 255 - 0.5) / 0.25
    want = user_module.head(torch.full((2, 3), v))
    torch.testing.assert_close(enc.encode(x), want.detach(), rtol=1.3e-6, atol=1e-6)
    with pytest.raises(ConfigError, match="already registered"):
        register_patch_encoder(custom_encoder_spec(_config(tmp_path)))
    # without the prefix filter the keys do not fit: one line naming them
    reg.PATCH_ENCODERS.pop("my_encoder")
    register_patch_encoder(custom_encoder_spec(_config(tmp_path, strip_prefix=None)))
    with pytest.raises(InputError, match=r"missing keys: head\.weight, head\.bias; unexpected keys: backbone\.head\.weight"):
        load_patch_encoder("my_encoder")


@pytest.mark.parametrize("change,message", [
    (dict(builder="mt_user_encoder:nope"), "module 'mt_user_encoder' has no function 'nope'"),
    (dict(builder="no_such_module_xyz:build"), "cannot import builder module 'no_such_module_xyz'"),
    (dict(name="uni"), "encoder name 'uni' is a built-in encoder"),
    (dict(embedding_dim=None), "encoder config lacks embedding_dim"),
    (dict(colour="red"), "has unknown keys colour"),
    (dict(std=[1, 1]), "mean/std must be 3 numbers"),
])
def test_custom_config_mistakes_are_one_line(tmp_path, user_module, change, message):
    with pytest.raises(ConfigError, match=message):
        custom_encoder_spec(_config(tmp_path, **change))


def test_custom_encoder_through_cli_extract_on_the_real_slide(tmp_path, user_module, cmu_slide):
    from modaltune.cli import app

    cfg_file = tmp_path / "enc.yaml"
    cfg = _config(tmp_path, weights="user.pth")  # relative to the config file
    import yaml

    cfg_file.write_text(yaml.safe_dump(cfg))
    args = ["extract", "--slides", str(cmu_slide), "--out", str(tmp_path / "out"), "--encoder-config", str(cfg_file),
            "--no-progress", "--no-qc", "--mask-long-side", "512", "--batch-size", "64"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "out" / f"{cmu_slide.stem}.h5") as f:
        feats, attrs = f["features"][()], dict(f.attrs)
        assert f["coords"].attrs["patch_size"] == 64  # the config's tile size is the default
        assert f["coords"].attrs["target_magnification"] == 20
    assert attrs["encoder"] == "my_encoder" and feats.shape[1] == 4 and len(feats) > 100
    # every feature is the Linear head of the tile's normalised channel means: a known affine map
    w, b = user_module.head.weight.detach().numpy(), user_module.head.bias.detach().numpy()
    means = np.linalg.lstsq(w, (feats - b).T, rcond=None)[0].T  # (N, 3) normalised means
    rgb = means * 0.25 + 0.5
    assert rgb.min() > -1e-4 and rgb.max() < 1 + 1e-4 and rgb.std(0).min() > 0.01  # real tissue colours, varying
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["config"]["encoder_config"]["builder"] == "mt_user_encoder:build"
    # another tile size warns in one line on stderr; --strict-pairing refuses before any slide
    res = CliRunner().invoke(app, args[:4] + [str(tmp_path / "o2")] + args[5:] + ["--patch-size", "128", "--strict-pairing"])
    assert isinstance(res.exception, ConfigError) and "trained on tiles of 64 px at 20x" in str(res.exception)
    assert not (tmp_path / "o2" / f"{cmu_slide.stem}.h5").exists()
    res = CliRunner().invoke(app, args[:4] + [str(tmp_path / "o3")] + args[5:] + ["--patch-size", "128"])
    assert res.exit_code == 0, res.output
    warned = [ln for ln in res.output.splitlines() if "trained on tiles" in ln]
    assert len(warned) == 1 and warned[0].startswith("warning: patch encoder 'my_encoder' was trained on tiles of 64 px at 20x")


def test_entry_point_registers_a_spec(tmp_path, user_module, monkeypatch):
    spec = custom_encoder_spec(_config(tmp_path, name="plugin_encoder"))

    class EP:
        name, value = "plugin_encoder", "pkg:spec"

        def load(self):
            return lambda: spec

    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [EP()] if group == reg.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(reg, "_entry_points_loaded", False)
    assert get_patch_encoder_spec("plugin_encoder") is spec
    assert load_patch_encoder("plugin_encoder").embedding_dim == 4

    class Broken(EP):
        def load(self):
            raise ImportError("no module named pkg")

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [Broken()])
    monkeypatch.setattr(reg, "_entry_points_loaded", False)
    with pytest.raises(ConfigError, match=r"entry point 'plugin_encoder = pkg:spec' failed to load \(ImportError"):
        get_patch_encoder_spec("not_there")


def test_custom_config_weights_are_what_check_patch_encoder_finds(tmp_path, user_module):
    from modaltune.preprocess.encoders import check_patch_encoder

    register_patch_encoder(custom_encoder_spec(_config(tmp_path)))
    assert check_patch_encoder("my_encoder") == tmp_path / "user.pth"  # the driver's check before Ray tasks
    assert check_patch_encoder("my_encoder", tmp_path / "user.pth") == tmp_path / "user.pth"


# ------------------------------------------------------------- timm families (only where timm imports)
def _timm_or_skip():
    import subprocess
    import sys

    if subprocess.run([sys.executable, "-c", "import timm"], capture_output=True, check=False).returncode != 0:
        pytest.skip("timm does not import here (needs torchvision built for this torch)")
    import timm

    return timm


@pytest.mark.parametrize("name,arch,kw", [
    ("uni", "vit_large_patch16_224", dict(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, init_values=1e-5,
                                          num_classes=0, dynamic_img_size=True)),
    ("virchow2", "vit_huge_patch14_224", dict(img_size=28, patch_size=14, embed_dim=32, depth=1, num_heads=2, init_values=1e-5,
                                              num_classes=0, mlp_ratio=5.3375, global_pool="", dynamic_img_size=True,
                                              mlp_layer=reg._TimmAttr("layers.SwiGLUPacked"), act_layer=torch.nn.SiLU, reg_tokens=4)),
])
def test_tiny_timm_families_load_strictly(tmp_path, name, arch, kw):
    timm = _timm_or_skip()
    build = reg._timm_builder(arch, forward=reg._virchow_forward if name == "virchow2" else None, **kw)
    dim = 64 if name == "virchow2" else 32  # Virchow2: class token ++ mean patch token
    spec = dataclasses.replace(PATCH_ENCODERS[name], embedding_dim=dim, input_size=kw["img_size"], resize_size=None, _build=build)
    ref_kw = {k: (timm.layers.SwiGLUPacked if isinstance(v, reg._TimmAttr) else v) for k, v in kw.items()}
    torch.manual_seed(0)
    ref = timm.create_model(arch, pretrained=False, **ref_kw).eval()
    torch.save(ref.state_dict(), tmp_path / "w.bin")
    enc = reg.PatchEncoder(spec, *build(spec, tmp_path / "w.bin"))
    x = torch.randint(0, 256, (2, kw["img_size"], kw["img_size"], 3), dtype=torch.uint8)
    assert enc.encode(x).shape == (2, dim)
    sd = ref.state_dict()
    sd.pop(next(iter(sd)))
    torch.save(sd, tmp_path / "bad.bin")
    with pytest.raises(InputError, match=f"weights do not fit encoder '{name}' \\(missing keys"):
        build(spec, tmp_path / "bad.bin")
