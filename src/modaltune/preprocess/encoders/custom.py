"""A user's own patch encoder, without editing modaltune: a config naming a builder, weights and a transform.

The config (a dict, or a JSON / YAML file) holds:

``name``           the encoder's name in h5 attrs and summaries (must not shadow a built-in one)
``builder``        ``'package.module:function'`` (importable, e.g. on ``sys.path``) or ``'path/to/file.py:function'``;
                   ``function()`` returns an ``nn.Module`` mapping normalised (B, 3, S, S) to (B, embedding_dim)
``embedding_dim``  D of the features
``tile_px``, ``magnification``  the geometry it was trained with (drives the default tiling and the pairing check)
``weights``        a local state-dict file (optional here: ``--weights`` or ``$MODALTUNE_WEIGHTS_DIR/<name>/`` otherwise),
                   loaded with ``strict=True`` after removing ``strip_prefix`` from the keys
``mean``, ``std``  normalisation of [0, 1] RGB (default ImageNet); ``input_size`` px the model sees
                   (default ``tile_px``); ``resize_size``; ``interpolation`` ('bilinear' | 'bicubic');
                   ``precision`` on GPU ('float32' default); ``pathology`` (default true); ``description``.

Packages can instead declare a :class:`~.registry.PatchEncoderSpec` (or a function returning one) in the
``modaltune.patch_encoders`` entry-point group; :func:`custom_encoder_spec` builds such specs too.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

from torch import nn

from modaltune.errors import ConfigError

from .registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PATCH_ENCODERS,
    PatchEncoderSpec,
    _resolve_weights,
    load_state_dict_strict,
    strip_prefix_filter,
)

__all__ = ["custom_encoder_spec", "read_encoder_config", "import_builder"]

_REQUIRED = ("name", "builder", "embedding_dim", "tile_px", "magnification")
_OPTIONAL = ("weights", "mean", "std", "input_size", "resize_size", "interpolation", "precision", "pathology",
             "description", "strip_prefix")


def read_encoder_config(path: str | Path) -> dict:
    """A custom-encoder config from a JSON or YAML file (relative ``builder`` / ``weights`` paths are
    taken relative to the file's folder)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the encoder config ({exc.strerror or exc})", where=path, fix="pass an existing JSON or YAML file") from None
    try:
        if path.suffix.lower() == ".json":
            cfg = json.loads(text)
        else:
            import yaml

            cfg = yaml.safe_load(text)
    except ValueError as exc:  # json.JSONDecodeError
        raise ConfigError(f"the encoder config is not valid JSON ({exc})", where=path) from None
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError (yaml is imported lazily inside the try)
        raise ConfigError(f"the encoder config is not valid YAML ({type(exc).__name__})", where=path) from None
    if not isinstance(cfg, dict):
        raise ConfigError("the encoder config must be a mapping of keys (name, builder, embedding_dim, ...)", where=path)
    base = path.parent
    module, sep, fn = str(cfg.get("builder", "")).rpartition(":")
    if sep and module.endswith(".py") and not Path(module).is_absolute():
        cfg["builder"] = f"{base / module}:{fn}"
    if cfg.get("weights") and not Path(str(cfg["weights"])).expanduser().is_absolute():
        cfg["weights"] = str(base / str(cfg["weights"]))
    return cfg


def import_builder(target: str, where: str = "builder"):
    """The function named by ``'package.module:function'`` or ``'path/file.py:function'``."""
    module, sep, name = str(target).rpartition(":")
    if not sep or not module or not name:
        raise ConfigError(f"builder '{target}' is not 'module:function'", where=where,
                          fix="name a function, e.g. 'my_encoders:build' or 'encoders/mine.py:build'")
    try:
        if module.endswith(".py"):
            file = Path(module).expanduser()
            if not file.is_file():
                raise ConfigError("builder file not found", where=file, fix="give the path of the .py file holding the builder")
            spec = importlib.util.spec_from_file_location(f"modaltune_user_encoder_{file.stem}", file)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(module)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - importing user code can raise anything: one ConfigError
        raise ConfigError(f"cannot import builder module '{module}' ({type(exc).__name__}: {exc})", where=where,
                          fix="put the module on PYTHONPATH (or give 'path/file.py:function')") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise ConfigError(f"module '{module}' has no function '{name}'", where=where, fix="name a function defined in that module")
    return fn


def _builder(target: str, strip: str | None):
    def build(spec: PatchEncoderSpec, weights):
        path = _resolve_weights(spec, weights)
        model = import_builder(target)()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"builder '{target}' returned a {type(model).__name__}, not a torch nn.Module",
                              fix="return the model (its forward maps (B, 3, S, S) to (B, D))")
        load_state_dict_strict(model, path, encoder=spec.name, filter_fn=strip_prefix_filter(strip) if strip else None)
        return model, None
    return build


def custom_encoder_spec(config: dict | str | Path) -> PatchEncoderSpec:
    """A :class:`PatchEncoderSpec` from a custom-encoder config (dict or file; see the module docstring).
    Raises ConfigError for missing/unknown keys, bad values, or a name that shadows a built-in encoder."""
    cfg = read_encoder_config(config) if isinstance(config, (str, Path)) else dict(config)
    where = str(config) if isinstance(config, (str, Path)) else "encoder config"
    missing = [k for k in _REQUIRED if cfg.get(k) in (None, "")]
    unknown = sorted(set(cfg) - set(_REQUIRED) - set(_OPTIONAL))
    if missing or unknown:
        raise ConfigError("encoder config " + "; ".join(p for p in (f"lacks {', '.join(missing)}" if missing else "",
                                                                      f"has unknown keys {', '.join(unknown)}" if unknown else "") if p),
                          where=where, fix=f"give {', '.join(_REQUIRED)} (optional: {', '.join(_OPTIONAL)})")
    name = str(cfg["name"]).strip().lower().replace("-", "_")
    builtin = PATCH_ENCODERS.get(name, None)
    if builtin is not None and builtin.source != "custom encoder config":
        raise ConfigError(f"encoder name '{name}' is a built-in encoder", where=where, fix="give your encoder another name")
    try:
        mean, std = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN)), tuple(float(v) for v in cfg.get("std", IMAGENET_STD))
        dim, tile, mag = int(cfg["embedding_dim"]), int(cfg["tile_px"]), float(cfg["magnification"])
        size = int(cfg.get("input_size") or tile)
        resize = int(cfg["resize_size"]) if cfg.get("resize_size") else None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"encoder config has a non-numeric value ({exc})", where=where) from None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError("encoder config mean/std must be 3 numbers each (std > 0)", where=where)
    if dim < 1 or tile < 1 or size < 1 or mag <= 0:
        raise ConfigError("encoder config embedding_dim, tile_px, input_size and magnification must be positive", where=where)
    interp, precision = str(cfg.get("interpolation", "bilinear")), str(cfg.get("precision", "float32"))
    if interp not in ("bilinear", "bicubic"):
        raise ConfigError(f"interpolation '{interp}' is not 'bilinear' or 'bicubic'", where=where)
    if precision not in ("float32", "float16", "bfloat16"):
        raise ConfigError(f"precision '{precision}' is not float32, float16 or bfloat16", where=where)
    import_builder(str(cfg["builder"]), where)  # fail now, not on the first slide
    strip = cfg.get("strip_prefix") or None
    return PatchEncoderSpec(
        name=name, embedding_dim=dim, precision=precision, input_size=size, mean=mean, std=std, interpolation=interp,
        pathology=bool(cfg.get("pathology", True)), description=str(cfg.get("description") or f"user encoder {cfg['builder']}"),
        source="custom encoder config", requires=(), resize_size=resize, _build=_builder(str(cfg["builder"]), strip),
        tile_px=tile, magnification=mag, mpp=round(10.0 / mag, 4), architecture=f"user builder {cfg['builder']}",
        strip_prefix=strip, default_weights=str(Path(str(cfg["weights"])).expanduser()) if cfg.get("weights") else None)
