"""AGM adaptive gradient modulation (Li et al., ICCV 2023) as an engine option (``trainer.modulation: agm``).

AGM counters *modality competition* (one modality learned fast, starving the others) in any fusion
model whose modalities each have their own encoder. Before every training step, with ``M`` modality
branches ``m`` (their fused output embeddings, see :func:`modality_branches`):

1. **Mono-modal responses** (Shapley values). The model is evaluated (no gradient, eval mode) on the
   ``2^M`` subsets ``S`` of branches, the branches outside ``S`` having their output replaced by
   zeros (``baseline: zero``, the official code zero-pads a modality's input) or by its batch mean
   (``baseline: mean``). Each task output of modality ``m`` is its Shapley value
   ``phi_m = sum_{S not containing m} |S|! (M-|S|-1)! / M! [f(S + m) - f(S)]``.
2. **Mono-modal score** ``s_m = loss(phi_m)``: the model's own task loss on ``phi_m`` (cross-entropy,
   discrete-time NLL, Cox, MSE), lower = better (the official code: the NLL of the true class).
3. **Coefficients.** ``ratio_m = exp(2 (mean_k s_k - s_m))`` (> 1: ``m`` is ahead of the others now),
   ``target_m = exp(2 (mean_k r_k - r_m))`` from the running averages ``r_m`` of past scores, and
   ``coeff_m = exp(alpha (target_m - ratio_m))``. A modality pulling ahead of where it has been
   (``ratio > target``) gets ``coeff < 1``, one falling behind gets ``coeff > 1``.
4. **Gradient scaling.** In the training step the gradient reaching branch ``m``'s output (so its
   whole encoder) is multiplied by ``coeff_m`` (a tensor hook on the branch output).
5. After the step ``r_m <- r_m (t-1)/t + s_m / t`` (``t`` = training steps so far: a cumulative mean,
   as the official code).

Per epoch, :class:`AGMCallback` logs and writes ``agm.csv`` (epoch, modality, mean score ``s_m``, the
running average ``r_m``, the competition strength = epoch-mean ``ratio_m``, the epoch-mean
coefficient, whether modulation was on). Departures from the official code are listed in
docs/methods.md ("AGM").
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from modaltune.errors import ConfigError

__all__ = [
    "AGM",
    "AGM_CSV",
    "NEEDS_BRANCHES",
    "AGMCallback",
    "BranchControl",
    "agm_coefficients",
    "modality_branches",
    "shapley_values",
    "update_running",
]

AGM_CSV = "agm.csv"
NEEDS_BRANCHES = "trainer.modulation: agm needs a method with two or more modality branches"
# Scale of the score gap inside exp(): the official code's factor 2 (for two modalities,
# exp(2 (mean - s_m)) = exp(s_other - s_m)).
_GAP_SCALE = 2.0


# ------------------------------------------------------------------------------- pure functions
def shapley_values(values: Mapping[frozenset, Any], players: Sequence[str]) -> dict[str, Any]:
    """Exact Shapley value of each player from the value of every coalition.

    Args:
        values: ``frozenset(players in S) -> f(S)`` for all ``2^M`` subsets (floats or tensors of one
            shape; anything supporting ``+``, ``-`` and ``* float``).
        players: the ``M`` player names.

    Returns:
        ``{player: phi}`` with ``phi_m = sum_{S not containing m} |S|!(M-|S|-1)!/M! [f(S+m) - f(S)]``;
        they sum to ``f(all) - f(empty)``.
    """
    players = list(players)
    M = len(players)
    out: dict[str, Any] = {}
    for m in players:
        others = [p for p in players if p != m]
        phi = None
        for k in range(M):
            w = math.factorial(k) * math.factorial(M - k - 1) / math.factorial(M)
            for S in combinations(others, k):
                s = frozenset(S)
                term = (values[s | {m}] - values[s]) * w
                phi = term if phi is None else phi + term
        out[m] = phi
    return out


def agm_coefficients(scores: Mapping[str, float], running: Mapping[str, float], alpha: float) -> tuple[dict[str, float], dict[str, float]]:
    """AGM modulation coefficients of one step.

    Args:
        scores: ``{modality: s_m}`` mono-modal loss of this batch (lower = better).
        running: ``{modality: r_m}`` running average of past scores (all 0 before the first step).
        alpha: modulation strength (0: every coefficient is 1).

    Returns:
        ``(coeff, ratio)``: ``ratio_m = exp(2 (mean s - s_m))`` (competition strength now),
        ``coeff_m = exp(alpha (exp(2 (mean r - r_m)) - ratio_m))``.
    """
    names = list(scores)
    s_mean = sum(scores[n] for n in names) / len(names)
    r_mean = sum(running[n] for n in names) / len(names)
    ratio = {n: math.exp(_GAP_SCALE * (s_mean - scores[n])) for n in names}
    target = {n: math.exp(_GAP_SCALE * (r_mean - running[n])) for n in names}
    coeff = {n: math.exp(alpha * (target[n] - ratio[n])) for n in names}
    return coeff, ratio


def update_running(running: Mapping[str, float], scores: Mapping[str, float], step: int) -> dict[str, float]:
    """Cumulative mean after training step ``step`` (1-based): ``r (step-1)/step + s/step``."""
    return {n: running[n] * (step - 1) / step + scores[n] / step for n in scores}


# ------------------------------------------------------------------------------- branch protocol
def modality_branches(model: nn.Module) -> dict[str, nn.Module]:
    """``{modality: module}`` whose (B, E) output is one modality's embedding before fusion.

    A model takes part by defining ``modality_branches()`` on itself or on its ``encoder`` (the
    :class:`~modaltune.methods.base.MultiTaskModel` layout); ``{}`` when neither does.
    """
    for owner in (model, getattr(model, "encoder", None)):
        fn = getattr(owner, "modality_branches", None)
        if callable(fn):
            return dict(fn())
    return {}


class _GradScale(torch.autograd.Function):
    """Identity forward; gradient times ``scale`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


class BranchControl:
    """Forward hooks on each modality branch: replace its output (for the coalition passes) or scale
    the gradient flowing back into it (for the training step).

    Args:
        branches: ``{modality: module}`` (:func:`modality_branches`).
        baseline: ``zero`` (a replaced output is zeros) or ``mean`` (its batch mean, every row).
    """

    def __init__(self, branches: Mapping[str, nn.Module], baseline: str = "zero"):
        if baseline not in ("zero", "mean"):
            raise ConfigError(f"unknown AGM baseline '{baseline}'", where="trainer.agm.baseline", fix="use zero or mean")
        self.names = list(branches)
        self.baseline = baseline
        self.replaced: frozenset = frozenset()
        self.scales: dict[str, float] = {}
        self._handles = [mod.register_forward_hook(self._hook(name)) for name, mod in branches.items()]

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: Any, out: torch.Tensor):
            if name in self.replaced:
                if self.baseline == "zero" or out.shape[0] == 0:
                    return torch.zeros_like(out)
                return out.mean(0, keepdim=True).expand_as(out).clone()
            scale = self.scales.get(name)
            if scale is not None and torch.is_grad_enabled() and out.requires_grad:
                return _GradScale.apply(out, float(scale))
            return None

        return hook

    @contextmanager
    def replacing(self, names: frozenset) -> Iterator[None]:
        """Within the block, the outputs of the branches ``names`` are replaced by the baseline."""
        old, self.replaced = self.replaced, frozenset(names)
        try:
            yield
        finally:
            self.replaced = old

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block, then every submodule's own flag back (a frozen part stays frozen)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, f in flags:
            m.training = f


# ------------------------------------------------------------------------------- the algorithm
class AGM:
    """AGM state of one training run: running scores, the current coefficients, epoch statistics.

    Args:
        model: a :class:`~modaltune.methods.base.MultiTaskModel` with two or more modality branches.
        alpha: modulation strength. start_epoch / end_epoch: 0-based epochs (inclusive) in which the
            gradients are scaled (scores and running averages are tracked in every epoch).
        baseline: ``zero`` | ``mean`` (see :class:`BranchControl`).
    """

    def __init__(self, model: nn.Module, *, alpha: float = 1.0, start_epoch: int = 0, end_epoch: int | None = None, baseline: str = "zero"):
        branches = modality_branches(model)
        if len(branches) < 2:
            name = getattr(model, "method_name", type(model).__name__)
            raise ConfigError(f"{NEEDS_BRANCHES}; '{name}' has {len(branches)} here ({', '.join(branches) or 'none'})",
                              where="trainer.modulation", fix="use late_fusion, porpoise or pathomic_fusion over two or more modalities, or drop trainer.modulation")
        self.model = model
        self.names = list(branches)
        self.alpha, self.start_epoch, self.end_epoch = float(alpha), int(start_epoch), end_epoch
        self.control = BranchControl(branches, baseline)
        self.running = dict.fromkeys(self.names, 0.0)
        self.step = 0
        self.rows: list[dict[str, Any]] = []
        self._pending: dict[str, float] | None = None
        self._epoch: dict[str, dict[str, float]] = {}
        self._n = 0

    def active(self, epoch: int) -> bool:
        return epoch >= self.start_epoch and (self.end_epoch is None or epoch <= self.end_epoch)

    @torch.no_grad()
    def mono_scores(self, batch: dict) -> dict[str, float]:
        """``{modality: s_m}``: the model's loss on each modality's Shapley output (eval mode, no gradient)."""
        outs: dict[frozenset, dict[str, torch.Tensor]] = {}
        with _eval_mode(self.model):
            for k in range(len(self.names) + 1):
                for S in combinations(self.names, k):
                    S = frozenset(S)
                    with self.control.replacing(frozenset(self.names) - S):
                        outs[S] = {t: o.float() for t, o in self.model(batch)["outputs"].items()}
        tasks = list(outs[frozenset()])
        per_task = {t: shapley_values({S: o[t] for S, o in outs.items()}, self.names) for t in tasks}
        scores = {}
        for m in self.names:
            total, _ = self.model.loss(batch, {"outputs": {t: per_task[t][m] for t in tasks}})
            scores[m] = float(total)
        return scores

    def before_step(self, batch: dict, epoch: int) -> dict[str, float]:
        """Scores this batch, sets the gradient scales of the coming backward pass; returns them."""
        scores = self.mono_scores(batch)
        coeff, ratio = agm_coefficients(scores, self.running, self.alpha)
        on = self.active(epoch)
        if not on:
            coeff = dict.fromkeys(self.names, 1.0)
        self.control.scales = dict(coeff) if on else {}
        self._pending = scores
        for n in self.names:
            acc = self._epoch.setdefault(n, {"score": 0.0, "ratio": 0.0, "coeff": 0.0})
            acc["score"] += scores[n]
            acc["ratio"] += ratio[n]
            acc["coeff"] += coeff[n]
        self._n += 1
        return coeff

    def after_step(self) -> None:
        """Folds this step's scores into the running averages."""
        if self._pending is None:
            return
        self.step += 1
        self.running = update_running(self.running, self._pending, self.step)
        self._pending = None

    def close_epoch(self, epoch: int) -> list[dict[str, Any]]:
        """Rows ``(epoch, modality, score, running_score, strength, coeff, modulated)`` of the epoch."""
        n = max(self._n, 1)
        rows = [{"epoch": epoch, "modality": m, "score": self._epoch[m]["score"] / n, "running_score": self.running[m],
                 "strength": self._epoch[m]["ratio"] / n, "coeff": self._epoch[m]["coeff"] / n, "modulated": self.active(epoch)}
                for m in self.names if m in self._epoch]
        self.rows = [r for r in self.rows if r["epoch"] != epoch] + rows
        self._epoch, self._n = {}, 0
        self.control.scales = {}
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"running": dict(self.running), "step": self.step, "rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.running = {n: float(state["running"].get(n, 0.0)) for n in self.names}
        self.step = int(state["step"])
        self.rows = [dict(r) for r in state.get("rows", [])]

    def remove(self) -> None:
        self.control.remove()


class AGMCallback(Callback):
    """Runs :class:`AGM` inside a Lightning fit and writes ``<out_dir>/agm.csv`` every epoch.

    Per epoch it also logs ``agm/strength_<m>`` and ``agm/coeff_<m>`` (so they reach
    ``train_log.csv`` with the CSV logger). Its state (running scores, step, rows) is saved in
    ``last.ckpt``, so a resumed run continues the same averages.
    """

    def __init__(self, *, alpha: float = 1.0, start_epoch: int = 0, end_epoch: int | None = None, baseline: str = "zero", out_dir: str | Path | None = None):
        self.kw = {"alpha": alpha, "start_epoch": start_epoch, "end_epoch": end_epoch, "baseline": baseline}
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.agm: AGM | None = None
        self._state: dict | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and self.agm is None:
            self.agm = AGM(pl_module.model, **self.kw)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self.agm is not None:
            self.agm.remove()  # the fitted model leaves without hooks
            self.agm = None

    def on_fit_start(self, trainer, pl_module) -> None:
        if self._state is not None and self.agm is not None:
            self.agm.load_state_dict(self._state)
            self._state = None

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        self.agm.before_step(batch, trainer.current_epoch)

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.agm.after_step()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        rows = self.agm.close_epoch(trainer.current_epoch)
        for r in rows:
            pl_module.log(f"agm/strength_{r['modality']}", float(r["strength"]), on_step=False, on_epoch=True)
            pl_module.log(f"agm/coeff_{r['modality']}", float(r["coeff"]), on_step=False, on_epoch=True)
        if self.out_dir is not None and trainer.is_global_zero:
            import pandas as pd

            from modaltune.fileio import atomic_write

            frame = pd.DataFrame(self.agm.rows)
            atomic_write(self.out_dir / AGM_CSV, lambda tmp: frame.to_csv(tmp, index=False))

    def state_dict(self) -> dict[str, Any]:
        return self.agm.state_dict() if self.agm is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callback states after setup: load now when AGM exists, else at fit start
        if state_dict:
            if self.agm is not None:
                self.agm.load_state_dict(state_dict)
            else:
                self._state = dict(state_dict)
