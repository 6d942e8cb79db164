"""Feed-forward building blocks shared by the slide encoders: :class:`Mlp` and :class:`DropPath`."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Mlp", "DropPath", "drop_path"]


class Mlp(nn.Module):
    """Two-layer perceptron ``fc2(drop(act(fc1(x))))`` (timm layout: parameter names ``fc1``/``fc2``).

    Args:
        in_features: input width D.
        hidden_features: hidden width (default ``in_features``).
        out_features: output width (default ``in_features``).
        act_layer: activation module class (default exact-erf GELU).
        drop: dropout probability after the activation and after ``fc2``.

    Shapes: ``(..., D) -> (..., out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        drop: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


def drop_path(x: torch.Tensor, p: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability ``p``.

    Surviving samples are scaled by ``1 / (1 - p)`` so the expectation is unchanged. Identity when
    ``p == 0`` or not training.
    """
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(shape).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Module form of :func:`drop_path` (per-sample stochastic depth)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
