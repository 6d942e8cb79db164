"""Input checks shared by the slide encoders; every failure is a one-line :class:`InputError`."""
from __future__ import annotations

import warnings

import torch

from modaltune.errors import InputError

__all__ = ["check_features", "check_coords", "check_mask"]


def check_features(features: torch.Tensor, in_dim: int, model: str) -> torch.Tensor:
    """Validate patch features and return them as ``(B, N, D_in)``.

    Accepts ``(N, D_in)`` (a single slide, batch axis added) or ``(B, N, D_in)`` floating tensors.
    """
    if not isinstance(features, torch.Tensor):
        raise InputError(f"{model} expects patch features as a torch.Tensor, got {type(features).__name__}", where="features")
    if features.ndim == 2:
        features = features[None]
    if features.ndim != 3:
        raise InputError(
            f"{model} expects patch features of shape (B, N, {in_dim}) or (N, {in_dim}), got {tuple(features.shape)}",
            where="features",
        )
    if features.shape[-1] != in_dim:
        raise InputError(
            f"{model} expects {in_dim}-d patch features but got {features.shape[-1]}-d",
            where="features",
            fix=f"use the tile encoder this slide encoder was trained on (its features are {in_dim}-d)",
        )
    if not torch.is_floating_point(features):
        raise InputError(
            f"{model} expects floating-point patch features (float32/float16/bfloat16/float64 "
            f"tile-encoder embeddings), got {features.dtype}",
            where="features",
            fix="pass the float features from the feature file; integer values are not embeddings (cast with .float() if they really are)",
        )
    if features.shape[1] == 0:
        raise InputError(f"{model} got a bag with no patches", where="features", fix="drop slides without tissue patches before encoding")
    return features


def check_coords(coords: torch.Tensor | None, features: torch.Tensor, model: str) -> torch.Tensor:
    """Validate level-0 patch coordinates against ``features (B, N, D)``; return ``(B, N, 2)``."""
    if coords is None:
        raise InputError(
            f"{model} needs the level-0 (x, y) pixel coordinates of every patch, but coords is None",
            where="coords",
            fix="pass coords (B, N, 2) from the feature file (TRIDENT/CLAM h5 'coords')",
        )
    if not isinstance(coords, torch.Tensor):
        coords = torch.as_tensor(coords)
    if coords.ndim == 2:
        coords = coords[None]
    B, N = features.shape[:2]
    if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[:2] != (B, N):
        raise InputError(
            f"{model} expects coords of shape ({B}, {N}, 2) matching the features, got {tuple(coords.shape)}",
            where="coords",
        )
    if coords.dtype == torch.bool or coords.is_complex():
        raise InputError(f"{model} expects real-valued level-0 pixel coordinates, got {coords.dtype}", where="coords")
    if torch.is_floating_point(coords):
        bad = ~torch.isfinite(coords).all(dim=-1)
        if bad.any():
            b, n = (int(i) for i in bad.nonzero()[0])
            raise InputError(
                f"{model} expects finite level-0 (x, y) pixel coordinates, but {int(bad.sum())} patch(es) have "
                f"NaN/inf (first: slide {b}, patch {n}, coords {coords[b, n].tolist()})",
                where="coords",
                fix="drop or re-extract the patches without valid coordinates",
            )
    return coords.to(features.device)


def check_mask(
    mask: torch.Tensor | None, features: torch.Tensor, model: str, padding_mask: torch.Tensor | None = None
) -> torch.Tensor | None:
    """Validate a ``(B, N)`` bool valid-patch mask (True = valid patch, valid patches first).

    None (every patch valid) passes through. ``padding_mask`` is the deprecated keyword of the old
    convention (True = padding): it is converted to ``~padding_mask`` with a DeprecationWarning.
    """
    if padding_mask is not None:
        mask = _from_padding_mask(mask, padding_mask, model)
    if mask is None:
        return None
    B, N = features.shape[:2]
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"{model} expects mask as a bool torch.Tensor (True = valid patch), got {type(mask).__name__}", where="mask")
    if mask.ndim == 1:
        mask = mask[None]
    if mask.shape != (B, N) or mask.dtype != torch.bool:
        raise InputError(
            f"{model} expects a bool mask of shape ({B}, {N}) (True = valid patch), got {tuple(mask.shape)} {mask.dtype}",
            where="mask",
        )
    mask = mask.to(features.device)
    lengths = mask.sum(1)
    if (lengths == 0).any():
        raise InputError(f"{model} got a slide whose patches are all padding (no True in mask)", where="mask",
                         fix="mask is True for valid patches (the old padding_mask= was True for padding)")
    # Valid patches must come first: position-dependent encoders (LongNet) need contiguous tokens.
    expected = torch.arange(N, device=mask.device)[None, :] < lengths[:, None]
    if not torch.equal(expected, mask):
        raise InputError(
            f"{model} expects right padding (valid patches first, padding at the end of each row)",
            where="mask",
            fix="mask is True for valid patches (the old padding_mask= was True for padding)",
        )
    return mask


def _from_padding_mask(mask: torch.Tensor | None, padding_mask: torch.Tensor, model: str) -> torch.Tensor:
    """The valid-patch mask ``~padding_mask`` of the deprecated keyword (warns once per call)."""
    warnings.warn(
        f"{model}: padding_mask= (True = padding) is deprecated and will be removed in the next release; "
        "pass mask= (True = valid patch), i.e. mask=~padding_mask",
        DeprecationWarning,
        stacklevel=4,
    )
    if mask is not None:
        raise InputError(f"{model} got both mask= and the deprecated padding_mask=", where="padding_mask",
                         fix="pass only mask= (True = valid patch)")
    if not isinstance(padding_mask, torch.Tensor) or padding_mask.dtype != torch.bool:
        got = padding_mask.dtype if isinstance(padding_mask, torch.Tensor) else type(padding_mask).__name__
        raise InputError(f"{model} expects the deprecated padding_mask as a bool tensor (True = padding), got {got}",
                         where="padding_mask", fix="pass mask= (True = valid patch) instead")
    return ~padding_mask
