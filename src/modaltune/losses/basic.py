"""Classification and regression losses with validated inputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from modaltune.errors import InputError

from ._checks import _check_finite, _check_same_len, _check_tensor

__all__ = ["cross_entropy", "regression_mse"]


def cross_entropy(logits: torch.Tensor, label: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    r"""Mean cross-entropy :math:`-\frac{\sum_i w_{y_i}\log \mathrm{softmax}(z_i)_{y_i}}{\sum_i w_{y_i}}`.

    Args:
        logits: (B, C) float.
        label: (B,) int64 class index in ``[0, C)`` (masked rows, label -1, must be removed first).
        class_weights: optional (C,) float weights per class (e.g. inverse frequency); the weighted
            mean divides by the sum of the weights of the batch's labels, as ``torch`` does.

    Example:
        >>> # uniform logits over 4 classes: loss = log 4
        >>> round(cross_entropy(torch.zeros(3, 4), torch.tensor([0, 1, 3])).item(), 4)
        1.3863
    """
    where = "cross_entropy"
    _check_tensor(logits, "logits", 2, where)
    _check_tensor(label, "label", 1, where)
    _check_same_len(where, logits=logits, label=label)
    c = logits.shape[1]
    if label.dtype.is_floating_point:
        raise InputError("'label' must be an integer tensor of class indices", where=where)
    if len(label) and (int(label.min()) < 0 or int(label.max()) >= c):
        raise InputError(
            f"'label' values must be in [0, {c}), got [{int(label.min())}, {int(label.max())}]",
            where=where,
            fix="remove masked patients (label -1) first, e.g. with task_loss and the target mask",
        )
    if class_weights is not None:
        class_weights = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
        if class_weights.shape != (c,):
            raise InputError(f"class_weights must have shape ({c},), got {tuple(class_weights.shape)}", where=where)
        if bool((class_weights < 0).any()):
            raise InputError("class_weights must be >= 0", where=where)
    _check_finite(logits, "logits", where)
    return F.cross_entropy(logits, label.long(), weight=class_weights)


def regression_mse(prediction: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    r"""Mean squared error :math:`\frac1B\sum_i (\hat y_i - y_i)^2`.

    Args:
        prediction: (B,) float (a (B, 1) output is accepted and flattened).
        value: (B,) float target.

    Example:
        >>> regression_mse(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])).item()  # (1 + 4) / 2
        2.5
    """
    where = "regression_mse"
    if isinstance(prediction, torch.Tensor) and prediction.ndim == 2 and prediction.shape[1] == 1:
        prediction = prediction[:, 0]
    _check_tensor(prediction, "prediction", 1, where)
    _check_tensor(value, "value", 1, where)
    _check_same_len(where, prediction=prediction, value=value)
    _check_finite(prediction, "prediction", where)
    _check_finite(value, "value", where)
    return F.mse_loss(prediction, value.to(prediction.dtype))
