"""Input checks shared by the loss functions (one-line :class:`InputError` messages)."""
from __future__ import annotations

import torch

from modaltune.errors import InputError


def _check_tensor(x, name: str, ndim: int, where: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"'{name}' must be a torch.Tensor, got {type(x).__name__}", where=where)
    if x.ndim != ndim:
        raise InputError(f"'{name}' must have {ndim} dimension(s), got shape {tuple(x.shape)}", where=where)
    return x


def _check_same_len(where: str, **tensors: torch.Tensor) -> int:
    lens = {k: int(v.shape[0]) for k, v in tensors.items()}
    if len(set(lens.values())) != 1:
        raise InputError(f"batch sizes differ: {lens}", where=where, fix="pass one row per patient in every argument")
    return next(iter(lens.values()))


def _check_finite(x: torch.Tensor, name: str, where: str) -> None:
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).reshape(x.shape[0], -1).any(1).nonzero().flatten().tolist()
        raise InputError(
            f"'{name}' has non-finite values for batch rows {bad[:10]}",
            where=where,
            fix="check the model for divergence (lower the learning rate) or the inputs for NaN",
        )


def _check_binary(x: torch.Tensor, name: str, where: str) -> None:
    if not bool(((x == 0) | (x == 1)).all()):
        raise InputError(f"'{name}' must contain only 0/1 values, got {sorted(set(x.flatten().tolist()))[:10]}", where=where)
