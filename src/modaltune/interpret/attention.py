"""Attention maps of the Modal Adapter's injectors and extractors, per patch.

For one task of a ModalTune model (:class:`modaltune.modaltune.model.ModalTuneModel`) and a batch:

- **injector** ``g``: every patch token queries the modal tokens ``[task; modal...]``; the map
  ``(B, N_patches, 1 + M)`` says which modal tokens (pathways, clinical, task) each patch read;
- **extractor** ``g`` (and the extra extractors): every modal token queries the patch tokens; the map
  ``(B, 1 + M, N_patches)`` is a heatmap over patches per modal token (e.g. where the task token or
  a pathway token looked). Rows of an absent modality are all zero.

Weights are averaged over heads. Patch order is the backbone's token order: for the small
transformer and Prov-GigaPath it is the input order of the (capped) bag, so ``coords[j]`` locates
patch ``j``; TITAN reorders tokens (``state.context['token_patch_index']`` maps them back).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["recording", "attention_maps"]


@contextmanager
def recording(adapter: Any):
    """Make every cross-attention of ``adapter`` keep its weights while the block runs."""
    mods = [m.attn for m in list(adapter.injectors) + list(adapter.extractors) + list(adapter.extra_extractors)]
    old = [m.record for m in mods]
    for m in mods:
        m.record, m.last_attn = True, None
    try:
        yield
    finally:
        for m, o in zip(mods, old):
            m.record = o


def attention_maps(model: Any, batch: dict, task: str) -> dict[str, Any]:
    """Injector / extractor attention maps of ``task`` for the patients of ``batch`` that have a slide.

    Returns:
        ``{"injector": [(B_s, N, 1 + M) per group], "extractor": [(B_s, 1 + M, N) per group],
        "extra_extractor": [...], "token_names": ["task", ...modal token names],
        "patient_id": [...], "coords": (B_s, N, 2)}`` with ``B_s`` the patients with a slide and
        ``N`` the longest bag among them (padding columns are zero).
    """
    ad = model.adapter
    inj, ext, extra = [], [], []
    was_training = model.training
    model.eval()
    rows = model._slide_rows(batch)
    try:
        with torch.no_grad(), recording(ad):
            # run group by group to collect each block's weights (the model reuses the same modules)
            hooks = []

            def keep(store):
                def hook(mod, args, out):
                    store.append(mod.attn.last_attn.mean(1).cpu())
                return hook

            for m in ad.injectors:
                hooks.append(m.register_forward_hook(keep(inj)))
            for m in ad.extractors:
                hooks.append(m.register_forward_hook(keep(ext)))
            for m in ad.extra_extractors:
                hooks.append(m.register_forward_hook(keep(extra)))
            try:
                model.task_forward(batch, task, rows=rows)
            finally:
                for h in hooks:
                    h.remove()
    finally:
        model.train(was_training)
    coords = batch["slide"]["coords"][rows] if batch["slide"].get("coords") is not None else None
    n = inj[0].shape[1] if inj else 0
    return {
        "injector": inj,
        "extractor": ext,
        "extra_extractor": extra,
        "token_names": ["task"] + list(model.tokenizer.token_names),
        "patient_id": [batch["patient_id"][i] for i in rows.tolist()],
        "coords": coords[:, :n] if coords is not None else None,
    }
