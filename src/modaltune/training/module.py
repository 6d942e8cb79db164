"""The LightningModule that trains any :class:`~modaltune.methods.base.MultiTaskModel`.

The module is thin on purpose: the model owns its forward and its masked task losses
(``model.loss(batch, out) -> (total, {task: loss})``); the module adds the optimiser and schedule,
modality dropout, logging, and turns outputs into per-patient prediction columns:

- classification: ``prob_<class name>`` (softmax) and ``pred`` (argmax class index)
- survival, discrete hazard (B, K) logits: ``surv_0 .. surv_{K-1}`` (S through bin k) and
  ``risk = -sum_k S_k`` (higher = worse); Cox (B,) output: ``risk``
- regression: ``prediction``
"""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch

__all__ = ["MultiTaskLightningModule", "outputs_to_columns"]


def outputs_to_columns(task_info: Any, output: torch.Tensor) -> dict[str, np.ndarray]:
    """Prediction columns of one task from the model output (the columns
    :func:`modaltune.evaluation.metrics.compute_metrics` reads).

    Args:
        task_info: the task's ``TaskInfo`` (``spec.kind``, ``class_names``).
        output: (B, C) logits, (B, K) discrete-hazard logits, (B,) / (B, 1) Cox risk or value.

    Returns:
        classification: ``prob_<class name>`` (softmax) and ``pred`` (argmax class index);
        survival: ``surv_0 .. surv_{K-1}`` (S through bin k) and ``risk = -sum_k S_k`` for
        discrete hazards, only ``risk`` for Cox outputs; regression: ``prediction``.
    """
    from modaltune.heads import probs_from_output, risk_from_output, survival_curve

    out = output.detach().float().cpu()
    kind = task_info.spec.kind
    cols: dict[str, np.ndarray] = {}
    if kind == "classification":
        probs = probs_from_output(task_info, out).numpy()
        names = list(task_info.class_names or task_info.spec.classes)
        for c in range(probs.shape[1]):
            cols[f"prob_{names[c]}"] = probs[:, c]
        cols["pred"] = probs.argmax(axis=1)
    elif kind == "survival":
        if out.ndim == 2 and out.shape[1] > 1:
            surv = survival_curve(out).numpy()
            for k in range(surv.shape[1]):
                cols[f"surv_{k}"] = surv[:, k]
            cols["risk"] = risk_from_output(task_info, out, "discrete").numpy()
        else:
            cols["risk"] = risk_from_output(task_info, out, "cox").numpy()
    else:
        cols["prediction"] = out.reshape(-1).numpy()
    return cols


class MultiTaskLightningModule(L.LightningModule):
    """Lightning wrapper of a multi-task model.

    Args:
        model: ``nn.Module`` with ``forward(batch) -> {"embedding", "outputs"}`` and
            ``loss(batch, out) -> (total, {task: loss})`` (a ``MultiTaskModel``).
        task_infos: task name -> ``TaskInfo`` (kind, class names, bin edges) of the tasks to predict.
        optimizer: ``adam`` | ``adamw``; ``lr``, ``weight_decay`` as usual.
        scheduler: ``none`` | ``cosine`` (per optimiser step, after ``warmup_epochs`` of linear warm-up).
        warmup_start_lr: lr of the first warm-up step (None: ``lr / warm-up steps``); the warm-up
            rises linearly from it to ``lr``.
        modality_dropout: probability of hiding each present modality of a training patient
            (:class:`modaltune.layers.missing.ModalityDropout`; each patient keeps at least one).
        return_embeddings: add the (B, E) embedding to ``predict_step`` outputs.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        task_infos: dict[str, Any],
        *,
        optimizer: str = "adam",
        lr: float = 2e-4,
        weight_decay: float = 1e-5,
        scheduler: str = "none",
        warmup_epochs: float = 0.0,
        warmup_start_lr: float | None = None,
        modality_dropout: float = 0.0,
        return_embeddings: bool = False,
    ):
        super().__init__()
        self.model = model
        self.task_infos = dict(task_infos)
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.scheduler_name = scheduler
        self.warmup_epochs = warmup_epochs
        self.warmup_start_lr = warmup_start_lr
        self.modality_dropout = modality_dropout
        self.drop = None
        if modality_dropout > 0:
            from modaltune.layers.missing import ModalityDropout

            self.drop = ModalityDropout(modality_dropout)
        self.return_embeddings = return_embeddings
        self._sums: dict[str, dict[str, list]] = {}

    # ------------------------------------------------------------------ steps
    def forward(self, batch: dict) -> dict:
        return self.model(batch)

    def _step_loss(self, batch: dict, stage: str) -> torch.Tensor:
        out = self.model(batch)
        total, per_task = self.model.loss(batch, out)
        # Tie every head's output into the graph with weight 0: a batch where a task has no label
        # then still gives (zero) gradients to that head, which DDP needs (no unused parameters).
        total = total + 0.0 * sum(o.float().sum() for o in out["outputs"].values())
        # Epoch means are accumulated here as device tensors and logged once per epoch:
        # Lightning's per-step self.log costs ~1 ms per call, more than a small MIL step.
        bs = len(batch["patient_id"])
        acc = self._sums.setdefault(stage, {})
        self._add(acc, "loss", total.detach(), bs)
        tmask = batch.get("target_mask", {})
        for name, value in per_task.items():
            n = tmask[name].sum() if name in tmask else bs
            self._add(acc, f"loss_{name}", value.detach().float() * n, n, weighted=True)
        for name, value in (out.get("aux_losses") or {}).items():  # already inside ``total`` (model.loss)
            self._add(acc, f"loss_{name}", value.detach().float(), bs)
        return total

    @staticmethod
    def _add(acc: dict, key: str, value: torch.Tensor, n: Any, weighted: bool = False) -> None:
        v = value if weighted else value * n
        if key in acc:
            acc[key][0] = acc[key][0] + v
            acc[key][1] = acc[key][1] + n
        else:
            acc[key] = [v, n]

    def _log_epoch(self, stage: str) -> None:
        acc = self._sums.pop(stage, {})
        sync = self.trainer.world_size > 1
        for key, (total, n) in acc.items():
            n = torch.as_tensor(n, dtype=torch.float32, device=self.device)
            value = total.float() / n.clamp(min=1)  # a task without any label this epoch logs 0
            self.log(f"{stage}/{key}", value, on_step=False, on_epoch=True, prog_bar=key == "loss", sync_dist=sync)

    def on_train_epoch_start(self) -> None:
        self._sums.pop("train", None)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.drop is not None and batch.get("modality_mask"):
            batch = {**batch, "modality_mask": self.drop(batch["modality_mask"])}
        return self._step_loss(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step_loss(batch, "val")

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        out = self.model(batch)
        rec: dict[str, Any] = {
            "patient_id": list(batch["patient_id"]),
            "outputs": {name: outputs_to_columns(self.task_infos[name], o) for name, o in out["outputs"].items() if name in self.task_infos},
        }
        if self.return_embeddings:
            rec["embedding"] = out["embedding"].detach().float().cpu().numpy()
        return rec

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        # a model may split its parameters into groups with their own learning rates
        # (``model.param_groups(lr) -> [{"params", "lr", ...}]``, e.g. ModalTune's gates / injectors)
        if hasattr(self.model, "param_groups"):
            params = self.model.param_groups(self.lr)
        else:
            params = [p for p in self.model.parameters() if p.requires_grad]
        cls = torch.optim.AdamW if self.optimizer_name == "adamw" else torch.optim.Adam
        opt = cls(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.scheduler_name == "none":
            return opt
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        max_epochs = max(int(self.trainer.max_epochs or 1), 1)
        warmup = int(round(self.warmup_epochs * total / max_epochs))
        start = None if self.warmup_start_lr is None else self.warmup_start_lr / self.lr
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(warmup, total, start))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _warmup_cosine(warmup: int, total: int, start: float | None = None):
    """LR multiplier of optimiser step ``step``: linear warm-up over ``warmup`` steps, then cosine
    decay to 0 at ``total``.

    Warm-up: ``(step + 1) / warmup`` when ``start`` is None (the first step already trains), else
    ``start + (1 - start) * step / warmup`` (step 0 runs at ``start * lr``, step ``warmup`` at ``lr``).
    """

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            if start is not None:
                return start + (1.0 - start) * step / warmup
            return (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return f
