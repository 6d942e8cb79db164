"""Task heads (classification, discrete-time survival, Cox, regression) and output converters.

Output conventions (the model interface in docs/ARCHITECTURE.md):

| task kind | head | output |
|---|---|---|
| classification | ``classification`` | logits (B, C) |
| survival | ``discrete`` | hazard logits (B, K), K = ``len(bin_edges) - 1`` |
| survival | ``cox`` | log relative hazard / risk (B,) |
| regression | ``regression`` | value (B,) |
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from modaltune.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from modaltune.data.dataset import TaskInfo

__all__ = [
    "SURVIVAL_HEADS",
    "TaskHead",
    "build_head",
    "head_output_dim",
    "survival_curve",
    "risk_from_output",
    "probs_from_output",
]

SURVIVAL_HEADS = ("discrete", "cox")


def head_output_dim(task_info: TaskInfo, survival_head: str = "discrete") -> int:
    """Number of outputs of the head of ``task_info`` (1 for Cox/regression, squeezed to (B,))."""
    kind = task_info.spec.kind
    name = task_info.spec.name
    if kind == "classification":
        n = task_info.n_classes if task_info.n_classes is not None else len(task_info.spec.classes)
        if n is None or n < 2:
            raise InputError(f"classification task '{name}' needs at least 2 classes, got {n}")
        return int(n)
    if kind == "survival":
        if survival_head not in SURVIVAL_HEADS:
            raise ConfigError(f"unknown survival head '{survival_head}'", where=f"task '{name}'", fix=f"use one of {list(SURVIVAL_HEADS)}")
        if survival_head == "cox":
            return 1
        if task_info.bin_edges is None or len(task_info.bin_edges) < 2:
            raise InputError(
                f"survival task '{name}' has no bin edges for a discrete-time head",
                fix="compute them with modaltune.data.splits.survival_bin_edges (the dataset does), or use survival_head='cox'",
            )
        return len(task_info.bin_edges) - 1
    if kind == "regression":
        return 1
    raise InputError(f"unknown task kind '{kind}' for task '{name}'")


class TaskHead(nn.Module):
    """Optional hidden layer (Linear-ReLU-Dropout) then a linear output layer.

    Args:
        in_dim: input embedding size E.
        out_dim: number of outputs.
        squeeze: return (B,) instead of (B, 1) (Cox risk, regression).
        hidden: size of an optional hidden layer.
        dropout: dropout before the output layer.

    Shapes: (B, E) -> (B, out_dim) or (B,).
    """

    def __init__(self, in_dim: int, out_dim: int, *, squeeze: bool = False, hidden: int | None = None, dropout: float = 0.0, kind: str = ""):
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ConfigError(f"head dimensions must be >= 1, got in_dim={in_dim}, out_dim={out_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"head dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        d = in_dim
        if hidden:
            layers += [nn.Linear(in_dim, hidden), nn.ReLU()]
            d = hidden
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)
        self.squeeze = squeeze
        self.kind = kind
        self.in_dim = in_dim
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise InputError(f"{self.kind or 'task'} head expects (B, {self.in_dim}) input, got {tuple(x.shape)}")
        out = self.net(x)
        return out[:, 0] if self.squeeze else out


def build_head(
    task_info: TaskInfo,
    in_dim: int,
    *,
    survival_head: str = "discrete",
    hidden: int | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """Head for one task: classification logits (B, C), discrete hazard logits (B, K), Cox risk (B,)
    or regression value (B,). ``head.kind`` records which one was built."""
    out_dim = head_output_dim(task_info, survival_head)
    kind = task_info.spec.kind
    if kind == "survival":
        kind = "cox" if survival_head == "cox" else "discrete"
    squeeze = kind in ("cox", "regression")
    return TaskHead(in_dim, out_dim, squeeze=squeeze, hidden=hidden, dropout=dropout, kind=kind)


def survival_curve(hazard_logits: torch.Tensor) -> torch.Tensor:
    """Survival at the end of each bin, S_k = prod_{j<=k} (1 - sigmoid(logit_j)).

    (B, K) -> (B, K), non-increasing along K, in (0, 1). Computed in log space.

    Example:
        >>> survival_curve(torch.zeros(1, 3)).tolist()
        [[0.5, 0.25, 0.125]]
    """
    if not isinstance(hazard_logits, torch.Tensor) or hazard_logits.ndim != 2:
        raise InputError(f"hazard logits must be a (B, K) tensor, got {getattr(hazard_logits, 'shape', type(hazard_logits))}")
    return torch.exp(torch.cumsum(torch.nn.functional.logsigmoid(-hazard_logits), dim=1))


def risk_from_output(task_info: TaskInfo, output: torch.Tensor, survival_head: str = "discrete") -> torch.Tensor:
    """Risk score (B,) of a survival output; higher = earlier expected event.

    - ``discrete``: ``-sum_k S_k`` (negative expected number of survived bins, MCAT/PORPOISE).
    - ``cox``: the output itself (log relative hazard).

    Example:
        >>> from types import SimpleNamespace as N
        >>> info = N(spec=N(kind="survival", name="os"))
        >>> risk_from_output(info, torch.zeros(1, 3)).tolist()   # -(0.5 + 0.25 + 0.125)
        [-0.875]
    """
    if task_info.spec.kind != "survival":
        raise InputError(f"risk is defined for survival tasks; task '{task_info.spec.name}' is {task_info.spec.kind}")
    if survival_head == "discrete":
        if output.ndim != 2:
            raise InputError(f"discrete survival output must be (B, K), got {tuple(output.shape)}", where=f"task '{task_info.spec.name}'",
                             fix="pass survival_head='cox' for (B,) risk outputs")
        return -survival_curve(output).sum(dim=1)
    if survival_head == "cox":
        if output.ndim == 2 and output.shape[1] == 1:
            output = output[:, 0]
        if output.ndim != 1:
            raise InputError(f"Cox output must be (B,), got {tuple(output.shape)}", where=f"task '{task_info.spec.name}'")
        return output
    raise ConfigError(f"unknown survival head '{survival_head}'", fix=f"use one of {list(SURVIVAL_HEADS)}")


def probs_from_output(task_info: TaskInfo, output: torch.Tensor) -> torch.Tensor:
    """Class probabilities softmax(logits): (B, C) -> (B, C), rows sum to 1."""
    if task_info.spec.kind != "classification":
        raise InputError(f"probabilities are defined for classification tasks; task '{task_info.spec.name}' is {task_info.spec.kind}")
    if output.ndim != 2:
        raise InputError(f"classification output must be (B, C), got {tuple(output.shape)}", where=f"task '{task_info.spec.name}'")
    return torch.softmax(output, dim=1)
