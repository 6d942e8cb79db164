"""Per-run monitoring of a ModalTune model during training (a Lightning callback).

Written to the unit folder (``out_dir``; nothing is written without one):

- ``adapter_diagnostics.jsonl``: one line per epoch: mean |gamma| per interaction group and the
  injected update as a fraction of ||x|| (last training batch), the "do the gates open" signal.
- ``text_targets_separability.json``: after the first epoch, per task, the pairwise cosine of
  the projected class / survival-bin targets and a cross-validated probe from the patients'
  target vectors to their labels (:func:`modaltune.modaltune.target_checks.separability_report`).
- ``epoch_selection.json`` (``select_epoch: val_probe``): the paper's model selection. Each epoch a
  logistic probe (liblinear, C = 1) is fitted on the training patients' selection embeddings (the
  General task's output when present, else each classification task's own; collected during the
  epoch's training steps, i.e. with that epoch's random patch subsets, not in a separate eval pass)
  and scored by balanced accuracy on the validation patients; the best epoch's weights are restored
  at the end of training. Each epoch's entry records how many patients per task fitted the probe
  (``n_train``) and scored it (``n_val``), so a run shows the selection saw its validation patients
  (carved from the training part by ``split.val_fraction``), never the held-out ones. A fold with
  no validation patients cannot select: the last epoch is kept (``restored: false``, with a note).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback

__all__ = ["ModalTuneMonitor"]


class ModalTuneMonitor(Callback):
    """See the module docstring; ``out_dir`` None = select epochs but write nothing."""

    def __init__(self, out_dir: str | Path | None):
        self.out = Path(out_dir) if out_dir is not None else None
        self.best_score = -np.inf
        self.best_epoch: int | None = None
        self.best_state: dict | None = None
        self.scores: list[dict[str, Any]] = []

    def _write(self, name: str, obj: Any, append: bool = False) -> None:
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / name, "a" if append else "w") as f:
            f.write(json.dumps(obj) + ("\n" if append else ""))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = pl_module.model
        m.collect = {"targets": trainer.current_epoch == 0, "selection": m.select_epoch == "val_probe", "train": {}, "val": {}, "z": {}}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = pl_module.model
        ep = int(trainer.current_epoch)
        self._write("adapter_diagnostics.jsonl", {"epoch": ep, **m.epoch_diagnostics()}, append=True)
        col = getattr(m, "collect", None) or {}
        if col.get("targets"):
            self._write("text_targets_separability.json", m.separability(col["z"]))
        if col.get("selection"):
            score = m.selection_score(col["train"], col["val"])
            self.scores.append({"epoch": ep, "val_probe_balanced_accuracy": score,
                                "n_train": _n_patients(col["train"]), "n_val": _n_patients(col["val"])})
            if np.isfinite(score) and score > self.best_score:
                self.best_score, self.best_epoch = score, ep
                self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in m.state_dict().items()})
        m.collect = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        m = pl_module.model
        m.collect = None
        if m.select_epoch != "val_probe":
            return
        if self.best_state is not None:
            m.load_state_dict(self.best_state)
        rec = {"rule": "best validation probe balanced accuracy (paper)", "best_epoch": self.best_epoch,
               "restored": self.best_state is not None, "epochs": self.scores}
        if self.best_state is None:
            rec["note"] = "no epoch could be scored (no labelled validation patients: set split.val_fraction > 0); the last epoch is kept"
        self._write("epoch_selection.json", rec)


def _n_patients(part: dict) -> dict[str, int]:
    """Patients per task in one collected part (``{task: (embeddings, labels)}``)."""
    return {t: int(sum(len(y) for y in ys)) for t, (_, ys) in part.items()}
