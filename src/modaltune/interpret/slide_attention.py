"""Per-patch attention weights of every attention-based slide method, one patient at a time.

Which weights (one number per patch of the patient's bag, summing to 1):

- **ABMIL** (``abmil``, and ``late_fusion`` with ``slide_encoder: abmil``): the gated-attention
  softmax that pools the patches (:meth:`ABMILSlideEncoder.attention`), exactly as used.
- **TransMIL**: the CLS token's attention over the patch tokens in the last attention layer
  (averaged over heads). TransMIL squares the bag by repeating its first patches; the weight of a
  repeated token is added back to the patch it copies, and the CLS self-weight is dropped before
  renormalising, so the map is a distribution over the real patches.
- **ModalTune**: the task token's attention over the patch tokens in the last extractor of the
  Modal Adapter (:func:`modaltune.interpret.attention.attention_maps`), averaged over heads.

Patch ``j`` of a map is row ``j`` of the patient's bag (the batch order), so ``coords[j]`` locates it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["PatchAttention", "attention_sources", "slide_attention"]


@dataclass
class PatchAttention:
    """One attention map of one patient.

    Attributes:
        patient_id: the patient.
        source: ``abmil``, ``transmil`` or ``modaltune`` (which mechanism produced the weights).
        weights: (N,) float64, >= 0, sums to 1 over the patient's N patches.
        coords: (N, 2) int64, level-0 (x, y) top-left of each patch.
    """

    patient_id: str
    source: str
    weights: np.ndarray
    coords: np.ndarray


def attention_sources(model: Any) -> list[str]:
    """Names of the attention mechanisms of ``model`` over patches (empty: nothing to draw)."""
    from modaltune.encoders.slide.abmil import ABMILSlideEncoder
    from modaltune.encoders.slide.transmil import TransMILSlideEncoder

    if hasattr(model, "adapter") and hasattr(model, "task_forward"):
        return ["modaltune"]
    out = []
    for m in model.modules():
        if isinstance(m, ABMILSlideEncoder):
            out.append("abmil")
        elif isinstance(m, TransMILSlideEncoder):
            out.append("transmil")
    return out


def _single(batch: dict, b: int) -> dict:
    from .integrated_gradients import _one

    return _one(batch, b)


def _transmil_cls_attention(layer: Any, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
    """(B, T) head-averaged attention of the CLS query (token 0) of ``layer`` given its input ``x``."""
    q, k, _ = layer.attn.split_heads(layer.norm(x))
    logits = (q[:, :, :1] @ k.transpose(-1, -2)).squeeze(2) / q.shape[-1] ** 0.5  # (B, H, T), SDPA's scale
    if pad is not None:
        logits = logits.masked_fill(pad[:, None, :], float("-inf"))
    return torch.softmax(logits.float(), -1).mean(1)


def _fold_square(w: torch.Tensor, n: int) -> np.ndarray:
    """Attention over the TransMIL square tokens (s*s,) -> (n,) over the real patches (repeats folded back)."""
    out = np.zeros(n)
    idx = np.arange(w.shape[0])
    src = np.where(idx < n, idx, (idx - n) % n)
    np.add.at(out, src, w.double().cpu().numpy())
    return out


def _run_recorded(model: Any, one: dict, task: str) -> list[tuple[str, torch.Tensor]]:
    """Run ``model`` on a one-patient batch and return ``[(source, raw weights)]`` of its slide encoders."""
    from modaltune.encoders.slide.abmil import ABMILSlideEncoder
    from modaltune.encoders.slide.transmil import TransMILSlideEncoder

    seen: list[tuple[str, Any]] = []
    patched, hooks = [], []
    for m in model.modules():
        if isinstance(m, ABMILSlideEncoder):
            orig = m.attention

            def rec(state, _orig=orig):
                a = _orig(state)
                seen.append(("abmil", a.detach()))
                return a

            m.attention = rec  # instance attribute shadows the method; removed below
            patched.append(m)
        elif isinstance(m, TransMILSlideEncoder):
            def hook(mod, args, _out):
                x, pad = args[0], (args[1] if len(args) > 1 else None)
                seen.append(("transmil", _transmil_cls_attention(mod, x, pad).detach()))

            hooks.append(m.layer2.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(one)
    finally:
        for m in patched:
            del m.attention
        for h in hooks:
            h.remove()
    return seen


def slide_attention(model: Any, batch: dict, task: str | None = None) -> list[PatchAttention]:
    """Attention maps over patches for every patient of ``batch`` that has a slide.

    Args:
        model: a torch method's model (``FittedModel.model``), ABMIL / TransMIL / ModalTune or a
            fusion model with an ABMIL or TransMIL slide branch.
        batch: from :func:`modaltune.interpret.patient_batch` (patients without slide are skipped).
        task: the task whose ModalTune task token is read (default: the first task); ABMIL and
            TransMIL attention does not depend on the task.

    Returns:
        One :class:`PatchAttention` per (patient with a slide, attention mechanism).
    """
    sources = attention_sources(model)
    if not sources or "slide" not in batch:
        return []
    task = task or next(iter(model.task_infos))
    was_training = model.training
    model.eval()
    out: list[PatchAttention] = []
    try:
        for b, pid in enumerate(batch["patient_id"]):
            mask = batch["slide"]["mask"][b].bool()
            n = int(mask.sum())
            if n == 0:
                continue
            one = _single(batch, b)
            coords = batch["slide"]["coords"][b][mask].cpu().numpy().astype(np.int64)
            if sources == ["modaltune"]:
                from .attention import attention_maps

                maps = attention_maps(model, one, task)
                if not maps["patient_id"]:
                    continue
                w = maps["extractor"][-1][0, 0, :n].double().numpy()  # task token -> patches, last extractor
                out.append(PatchAttention(str(pid), "modaltune", w / w.sum(), coords))
                continue
            for source, raw in _run_recorded(model, one, task):
                if source == "abmil":
                    w = raw[0, :n].double().cpu().numpy()
                else:
                    s = int(np.ceil(np.sqrt(n)))
                    w = _fold_square(raw[0, 1 : 1 + s * s], n)
                out.append(PatchAttention(str(pid), source, w / w.sum(), coords))
    finally:
        model.train(was_training)
    return out
