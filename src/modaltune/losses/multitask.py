"""Per-task loss dispatch with label masks, and multi-task loss weighting."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from modaltune.errors import ConfigError, InputError

from .basic import cross_entropy, regression_mse
from .survival import cox_partial_likelihood, nll_discrete_survival

if TYPE_CHECKING:  # pragma: no cover
    from modaltune.data.dataset import TaskInfo

__all__ = ["task_loss", "UncertaintyWeighting", "combine_task_losses", "SURVIVAL_LOSSES"]

SURVIVAL_LOSSES = ("nll", "cox")


def _need(targets: Mapping[str, Any], keys: Sequence[str], task: str) -> list[torch.Tensor]:
    missing = [k for k in keys if k not in targets]
    if missing:
        raise InputError(f"targets of task '{task}' lack {missing}", where="task_loss",
                         fix=f"a {task} batch target must hold {list(keys)} (see the batch contract)")
    return [targets[k] for k in keys]


def task_loss(
    task_info: TaskInfo,
    output: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    mask: torch.Tensor,
    *,
    survival_loss: str = "nll",
    alpha: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Loss of one task on the patients of a batch that have its label.

    Patients with ``mask == False`` are left out before the loss is computed. When no patient of
    the batch has a label (common with batch size 1 and gradient accumulation) the result is
    ``0 * output.sum()``: a zero that is still connected to the graph, so ``backward`` and DDP
    gradient synchronisation work.

    Args:
        task_info: the task (``spec.kind``, ``n_classes``, ``bin_edges``), from the data layer.
        output: the head output: (B, C) logits, (B, K) hazard logits (``survival_loss="nll"``),
            (B,) risk (``"cox"``) or (B,) value (regression).
        targets: the task's batch targets: ``{"label"}``, ``{"time", "event", "bin"}`` or ``{"value"}``.
        mask: (B,) bool, True = label usable.
        survival_loss: ``"nll"`` (discrete-time hazard NLL) or ``"cox"`` (Efron partial likelihood;
            needs several patients per batch to be informative: with one patient it is always 0).
        alpha: weight of the uncensored term of the NLL (ignored otherwise).
        class_weights: optional (C,) class weights for classification.

    Returns:
        scalar tensor.
    """
    kind = task_info.spec.kind
    name = task_info.spec.name
    where = f"task '{name}'"
    if not isinstance(output, torch.Tensor):
        raise InputError(f"output must be a tensor, got {type(output).__name__}", where=where)
    mask = torch.as_tensor(mask, dtype=torch.bool, device=output.device)
    if mask.ndim != 1 or mask.shape[0] != output.shape[0]:
        raise InputError(f"mask shape {tuple(mask.shape)} does not match output batch size {output.shape[0]}", where=where)
    if not bool(mask.any()):
        return 0.0 * output.sum()
    out = output[mask]

    if kind == "classification":
        (label,) = _need(targets, ["label"], name)
        if output.ndim != 2 or (task_info.n_classes is not None and output.shape[1] != task_info.n_classes):
            raise InputError(f"classification output shape {tuple(output.shape)} != (B, {task_info.n_classes})", where=where)
        return cross_entropy(out, label.to(output.device)[mask], class_weights)
    if kind == "survival":
        if survival_loss not in SURVIVAL_LOSSES:
            raise ConfigError(f"unknown survival loss '{survival_loss}'", where=where, fix=f"use one of {list(SURVIVAL_LOSSES)}")
        time, event = _need(targets, ["time", "event"], name)
        event = event.to(output.device)[mask]
        if survival_loss == "nll":
            (bins,) = _need(targets, ["bin"], name)
            k = None if task_info.bin_edges is None else len(task_info.bin_edges) - 1
            if output.ndim != 2 or (k is not None and output.shape[1] != k):
                raise InputError(
                    f"discrete survival output shape {tuple(output.shape)} != (B, {k})", where=where,
                    fix="use a discrete survival head with one output per bin, or survival_loss='cox' with a Cox head",
                )
            return nll_discrete_survival(out, bins.to(output.device)[mask], event, alpha=alpha)
        if output.ndim == 2 and output.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 1:
            raise InputError(
                f"Cox loss needs a (B,) risk output, got shape {tuple(output.shape)}", where=where,
                fix="build the head with survival_head='cox'",
            )
        return cox_partial_likelihood(out, time.to(output.device)[mask], event)
    if kind == "regression":
        (value,) = _need(targets, ["value"], name)
        return regression_mse(out, value.to(output.device)[mask])
    raise InputError(f"unknown task kind '{kind}'", where=where)


class UncertaintyWeighting(nn.Module):
    r"""Learned homoscedastic-uncertainty task weighting (Kendall, Gal & Cipolla, CVPR 2018).

    With one learned log-variance :math:`s_i = \log\sigma_i^2` per task (initialised at 0, i.e.
    weight 1), the total loss is :math:`\sum_i e^{-s_i} L_i + s_i`: noisy tasks get a smaller
    weight, and the :math:`s_i` term stops the weights from collapsing to zero. The parameters must
    be handed to the optimiser (they are when this module is a submodule of the model).

    Args:
        n_tasks: number of tasks, or the list of task names (then losses are matched by name,
            which is safer than relying on dict order).
    """

    def __init__(self, n_tasks: int | Sequence[str]):
        super().__init__()
        if isinstance(n_tasks, int):
            if n_tasks < 1:
                raise ConfigError(f"UncertaintyWeighting needs at least one task, got {n_tasks}")
            self.names: list[str] | None = None
            n = n_tasks
        else:
            self.names = [str(t) for t in n_tasks]
            if len(set(self.names)) != len(self.names) or not self.names:
                raise ConfigError(f"UncertaintyWeighting task names must be unique and non-empty, got {self.names}")
            n = len(self.names)
        self.log_vars = nn.Parameter(torch.zeros(n))

    def forward(self, losses: Mapping[str, torch.Tensor], n_labelled: Mapping[str, int] | None = None) -> torch.Tensor:
        """Weighted total. ``n_labelled`` (optional, ``{task: patients with a label in the batch}``)
        skips tasks with none: their loss is a graph-connected zero, and adding ``s_i`` alone
        would push that task's weight up on every unlabelled batch."""
        if self.names is None:
            if len(losses) != len(self.log_vars):
                raise InputError(f"UncertaintyWeighting was built for {len(self.log_vars)} tasks, got {len(losses)} losses",
                                 fix="pass one loss per task (task_loss returns a zero for tasks without labels)")
            idx = list(range(len(losses)))
            items = list(losses.values())
        else:
            unknown = sorted(set(losses) - set(self.names))
            if unknown:
                raise InputError(f"losses for unknown tasks {unknown}", fix=f"UncertaintyWeighting knows {self.names}")
            idx = [self.names.index(k) for k in losses]
            items = list(losses.values())
        total = 0.0
        for i, (name, loss) in zip(idx, zip(losses, items)):
            s = self.log_vars[i]
            if n_labelled is not None and n_labelled.get(name, 1) == 0:
                total = total + loss + 0.0 * s  # keep s in the graph (DDP needs every parameter used)
                continue
            total = total + torch.exp(-s) * loss + s
        return total  # type: ignore[return-value]

    def weights(self) -> dict[str, float]:
        """Current effective weights exp(-s_i), by task name (or index)."""
        keys = self.names if self.names is not None else [str(i) for i in range(len(self.log_vars))]
        return {k: float(torch.exp(-v)) for k, v in zip(keys, self.log_vars.detach())}


def combine_task_losses(
    losses: Mapping[str, torch.Tensor],
    weights: Mapping[str, float] | UncertaintyWeighting | None = None,
    *,
    n_labelled: Mapping[str, int] | None = None,
) -> torch.Tensor:
    """Total loss from per-task losses.

    Args:
        losses: ``{task: scalar loss}`` (non-empty).
        weights: ``None`` (plain sum), fixed ``{task: weight}`` (tasks not named get 1.0; naming a
            task that has no loss is an error, it is most likely a typo) or an
            :class:`UncertaintyWeighting` module.
        n_labelled: optional ``{task: labelled patients in the batch}``; with uncertainty
            weighting, tasks with 0 do not update their log-variance (see :class:`UncertaintyWeighting`).

    Example:
        >>> combine_task_losses({"a": torch.tensor(2.0), "b": torch.tensor(1.0)}, {"a": 0.5}).item()
        2.0
    """
    if not losses:
        raise InputError("no task losses to combine", fix="the model must have at least one task")
    if isinstance(weights, UncertaintyWeighting):
        return weights(losses, n_labelled)
    if weights is None:
        weights = {}
    unknown = sorted(set(weights) - set(losses))
    if unknown:
        raise ConfigError(f"loss weights name unknown tasks {unknown}", fix=f"tasks are {sorted(losses)}")
    bad = {k: v for k, v in weights.items() if not float(v) >= 0}
    if bad:
        raise ConfigError(f"loss weights must be >= 0, got {bad}")
    total = 0.0
    for k, v in losses.items():
        total = total + float(weights.get(k, 1.0)) * v
    return total  # type: ignore[return-value]
