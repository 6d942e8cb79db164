"""The method interface shared by every recipe.

Torch methods are an *encoder* (modality encoders + fusion, ``forward(batch) -> (B, E)``, attribute
``out_dim``) wrapped in :class:`MultiTaskModel`, which adds one head per task and the task losses.
Methods whose forward is task-dependent (ModalTune runs once per task) override
:meth:`MultiTaskModel.forward`. Tabular methods implement :class:`TabularMethod`.

Task embeddings (what probes and embedding export read) come from one place of the protocol:
:meth:`MultiTaskModel.task_embeddings` (``batch -> {task: (B, D)}``; default: the shared embedding
for every task) and :meth:`MultiTaskModel.task_embedding_columns` (which columns of ``embed``'s
(B, E) output are each task's; default ``None``: all of them). ModalTune overrides both.

Output contract of ``MultiTaskModel.forward(batch)``::

    {"embedding": (B, E) float,
     "outputs": {task: (B, C) logits | (B, K) discrete-hazard logits | (B,) Cox risk | (B,) value},
     "aux_losses": {name: () float}}        # only when the encoder has auxiliary losses

Auxiliary losses (e.g. CMTA's alignment loss): an encoder that defines
``forward_with_aux(batch) -> ((B, E) embedding, {name: scalar loss})`` has them returned under
``"aux_losses"``; :meth:`MultiTaskModel.loss` adds them, as given (the method applies its own
weights), to the task loss, and the training module logs each as ``<stage>/loss_<name>``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

__all__ = ["MethodParams", "MultiTaskModel", "TabularMethod"]


class MethodParams(BaseModel):
    """Base of every method's parameter model: unknown keys are errors (like the rest of the config).
    Declare each parameter as ``name: type = Field(default, description="one-line meaning")``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class MultiTaskModel(nn.Module):
    """encoder -> one head per task -> masked task losses.

    Args:
        info: ``CohortInfo`` of the training fold (input dims, tasks, survival bins).
        encoder: ``nn.Module`` with ``forward(batch) -> (B, E)`` and ``out_dim: int``.
        survival_head: ``"discrete"`` (NLL of the discrete hazard, risk = -sum S) or ``"cox"``.
        alpha: weight of uncensored patients in the discrete-time NLL (MCAT: 0 or 0.5).
        task_weights: ``None`` (equal), a dict of fixed weights, or ``"uncertainty"`` (learned).
        head_hidden, head_dropout: optional hidden layer in each head.
    """

    def __init__(
        self,
        info: Any,
        encoder: nn.Module,
        *,
        survival_head: str = "discrete",
        alpha: float = 0.0,
        task_weights: dict[str, float] | str | None = None,
        class_weights: dict[str, list[float]] | None = None,
        head_hidden: int | None = None,
        head_dropout: float = 0.0,
    ):
        super().__init__()
        from modaltune.heads import build_head

        self.info = info
        self.encoder = encoder
        self.survival_head = survival_head
        self.alpha = alpha
        self.class_weights = class_weights or {}
        self.task_infos = {t.spec.name: t for t in info.tasks}
        self.heads = nn.ModuleDict(
            {name: build_head(t, encoder.out_dim, survival_head=survival_head, hidden=head_hidden, dropout=head_dropout) for name, t in self.task_infos.items()}
        )
        self.task_weighting: nn.Module | None = None
        self.fixed_weights: dict[str, float] | None = None
        if task_weights == "uncertainty":
            from modaltune.losses import UncertaintyWeighting

            self.task_weighting = UncertaintyWeighting(len(self.task_infos))
        elif isinstance(task_weights, dict):
            self.fixed_weights = dict(task_weights)

    @property
    def embed_dim(self) -> int:
        return int(self.encoder.out_dim)

    def embed(self, batch: dict) -> torch.Tensor:
        """(B, E) patient embedding (what linear probes read)."""
        return self.encoder(batch)

    def task_embeddings(self, batch: dict) -> dict[str, torch.Tensor]:
        """``{task: (B, E)}``: the shared patient embedding for every task (one tensor, not copies)."""
        emb = self.embed(batch)
        return dict.fromkeys(self.task_infos, emb)

    def task_embedding_columns(self) -> dict[str, slice] | None:
        """Columns of :meth:`embed`'s (B, E) output that are each task's embedding; ``None``: every
        task reads all E columns (a shared embedding)."""
        return None

    def forward(self, batch: dict) -> dict:
        with_aux = getattr(self.encoder, "forward_with_aux", None)
        emb, aux = with_aux(batch) if with_aux is not None else (self.embed(batch), None)
        out = {"embedding": emb, "outputs": {name: head(emb) for name, head in self.heads.items()}}
        if aux:
            out["aux_losses"] = dict(aux)
        return out

    def loss(self, batch: dict, out: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and per-task losses; patients without a task's label are masked out. The
        encoder's auxiliary losses (``out["aux_losses"]``, if any) are added to the total."""
        from modaltune.losses import combine_task_losses, task_loss

        losses = {}
        for name, t in self.task_infos.items():
            cw = self.class_weights.get(name)
            losses[name] = task_loss(
                t,
                out["outputs"][name],
                batch["targets"][name],
                batch["target_mask"][name],
                survival_loss="cox" if self.survival_head == "cox" else "nll",
                alpha=self.alpha,
                class_weights=torch.as_tensor(cw, dtype=torch.float32) if cw is not None else None,
            )
        weights = self.task_weighting if self.task_weighting is not None else self.fixed_weights
        # tasks without any label in this batch must not move their learned uncertainty weight
        n_labelled = {name: int(batch["target_mask"][name].sum()) for name in self.task_infos}
        total = combine_task_losses(losses, weights, n_labelled=n_labelled)
        for value in (out.get("aux_losses") or {}).values():
            total = total + value
        return total, losses


class TabularMethod:
    """Interface of non-deep methods (scikit-learn / scikit-survival).

    ``fit(X_train, targets_train)`` and ``predict(X) -> {task: (N, C) probs | (N,) risk | (N,) value}``
    on design matrices built by the engine from the same preprocessing as the torch methods
    (omics scaled on the training fold, clinical encoded on the training fold).
    """

    name: str = "tabular"

    def fit(self, X: np.ndarray, targets: dict[str, Any], info: Any) -> TabularMethod:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def embed(self, X: np.ndarray) -> np.ndarray:
        """Default embedding of a tabular method is its design matrix."""
        return X
