"""Loading official slide-encoder checkpoints from local files (timm ``checkpoint_filter_fn`` style).

The filters adapt an official file's state dict to our modules, whose parameter names are the
official ones, so the adaptation is only unwrapping/prefix handling:

* Prov-GigaPath ``slide_encoder.pth``: ``torch.load(path)["model"]`` (a bare state dict also works);
  the non-persistent ``pos_embed`` table is dropped if a file carries it.
* TITAN ``model.safetensors`` (HF MahmoodLab/TITAN): keep the keys under ``vision_encoder.`` and strip
  that prefix; ``text_encoder.*`` and other components are ignored. A bare vision-encoder state dict
  also works.

Loading is strict by default: any missing or unexpected key, or a shape mismatch, raises
:class:`~modaltune.errors.InputError` listing them. Nothing is downloaded.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from modaltune.errors import InputError

__all__ = [
    "read_state_dict",
    "default_checkpoint_filter_fn",
    "gigapath_checkpoint_filter_fn",
    "titan_checkpoint_filter_fn",
    "load_checkpoint",
]

StateDict = dict[str, torch.Tensor]


def read_state_dict(path: str | Path) -> dict:
    """Read a ``.safetensors`` file or a torch pickle (``weights_only=True``) from a local path."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(
            "checkpoint file not found",
            where=p,
            fix="download the official weights yourself (they are gated) and pass the local file path",
        )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(p), device="cpu"))
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt/truncated/wrong format: one line naming the file
        raise InputError(f"cannot read checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})", where=p) from exc


def _unwrap(obj: Mapping, path: str | Path | None) -> StateDict:
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError("checkpoint does not contain a state dict of tensors", where=path)
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel/DDP
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def default_checkpoint_filter_fn(obj: Mapping, path: str | Path | None = None) -> StateDict:
    """Bare state dict, or one under ``model``/``state_dict``; strips a DDP ``module.`` prefix."""
    return _unwrap(obj, path)


def gigapath_checkpoint_filter_fn(obj: Mapping, path: str | Path | None = None) -> StateDict:
    """Official ``slide_encoder.pth`` -> our state dict (unwrap ``["model"]``, drop ``pos_embed``)."""
    sd = _unwrap(obj, path)
    sd.pop("pos_embed", None)  # fixed sin-cos table, recomputed on the fly here
    return sd


def titan_checkpoint_filter_fn(obj: Mapping, path: str | Path | None = None, prefix: str = "vision_encoder.") -> StateDict:
    """HF TITAN ``model.safetensors`` -> vision-encoder state dict (keys under ``prefix``, stripped)."""
    sd = _unwrap(obj, path)
    if any(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if any(k.startswith("text_encoder.") for k in sd):
        raise InputError(f"TITAN checkpoint has no '{prefix}*' keys (only other components)", where=path)
    return sd


def _fmt(keys: list[str], limit: int = 8) -> str:
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_checkpoint(
    model: nn.Module,
    path: str | Path,
    filter_fn: Callable[..., StateDict] = default_checkpoint_filter_fn,
    strict: bool = True,
) -> dict[str, list[str]]:
    """Load a local checkpoint into ``model`` and set ``model.weights_source = str(path)``.

    Args:
        model: the module to fill (its parameter names are the official ones).
        path: local ``.pth``/``.pt``/``.bin`` (torch pickle) or ``.safetensors`` file.
        filter_fn: ``(raw_object, path) -> state dict`` adapter for the official format.
        strict: raise :class:`InputError` on any missing or unexpected key (default). With
            ``strict=False`` missing/unexpected keys are returned (shape mismatches always raise).

    Returns:
        ``{"missing": [...], "unexpected": [...]}`` (empty lists after a strict load).
    """
    sd = filter_fn(read_state_dict(path), path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if mismatched:
        raise InputError(
            f"checkpoint shapes do not match {type(model).__name__} (checkpoint vs model): {_fmt(mismatched)}",
            where=path,
            fix="build the encoder with the configuration the checkpoint was trained with",
        )
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_fmt(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_fmt(unexpected)}")
        raise InputError(
            f"checkpoint does not fit {type(model).__name__}: " + "; ".join(parts),
            where=path,
            fix="check that the file is the right model's checkpoint (strict loading never leaves random weights)",
        )
    model.load_state_dict(sd, strict=strict)
    model.weights_source = str(path)
    return {"missing": missing, "unexpected": unexpected}
