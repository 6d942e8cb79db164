"""Integrated gradients over pathways for a ModalTune model's survival risk (captum, ``[interpret]`` extra).

Two attribution targets for the risk of a survival task (``-sum_k S_k`` of the discrete head, or
the Cox output):

- ``"pathways"`` (default): the per-pathway SNN outputs ``(P, token_dim)`` that feed the Gene
  Mixer; attributions are summed over the channel axis -> one score per named pathway. Baseline:
  the per-pathway outputs of an all-zero (i.e. training-mean, since RNA is z-scored) profile.
- ``"genes"``: the scaled RNA values ``(G,)``; baseline zeros (training mean). Gene scores are also
  summed per pathway (a gene in k pathways counts in each).

Completeness (sum of attributions = risk(input) - risk(baseline), up to the integration error
reported as ``delta``) is what captum's IG guarantees and what the tests check.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pandas as pd
import torch

from modaltune.errors import ConfigError, require

__all__ = ["pathway_attributions"]


def _risk(model: Any, task: str, emb: torch.Tensor) -> torch.Tensor:
    from modaltune.heads import risk_from_output

    ti = model.task_infos[task]
    return risk_from_output(ti, model.heads[task](emb), "cox" if model.survival_head == "cox" else "discrete")


def _pathway_set(model: Any, omics: str | None):
    from modaltune.modaltune.tokens import PathwayTokenSet

    sets = [s for s in model.tokenizer.sets if isinstance(s, PathwayTokenSet) and (omics is None or s.omics == omics)]
    if not sets:
        raise ConfigError("the model has no pathway tokens to attribute", where="method.params.omics_tokens", fix="train ModalTune with pathway tokens (pathways: ...)")
    return sets[0]


@contextmanager
def _override_pathway_embeddings(mixer: Any, value: torch.Tensor):
    orig = mixer.pathway_embeddings
    mixer.pathway_embeddings = lambda x: value  # the tokens of the attributed input
    try:
        yield
    finally:
        mixer.pathway_embeddings = orig


def _one(batch: dict, b: int) -> dict:
    def take(x):
        if isinstance(x, torch.Tensor):
            return x[b : b + 1]
        if isinstance(x, dict):
            return {k: take(v) for k, v in x.items()}
        if isinstance(x, list) and len(x) == len(batch["patient_id"]):
            return [x[b]]
        return x

    return {k: (v if k == "pathways" else take(v)) for k, v in batch.items()}


def pathway_attributions(model: Any, batch: dict, task: str | None = None, *, target: str = "pathways", n_steps: int = 32,
                         omics: str | None = None) -> pd.DataFrame:
    """IG attributions of the survival risk per pathway for every patient of ``batch`` that has the block.

    Returns a long DataFrame ``patient_id, pathway, attribution, risk, baseline_risk, delta``.
    """
    captum_attr = require("captum.attr", "interpret", "integrated gradients")
    surv = [t for t, ti in model.task_infos.items() if ti.spec.kind == "survival"]
    task = task or (surv[0] if surv else None)
    if task is None or model.task_infos[task].spec.kind != "survival":
        raise ConfigError(f"pathway attributions explain a survival risk; task {task!r} is not a survival task", where="task", fix=f"use one of {surv}")
    if target not in ("pathways", "genes"):
        raise ConfigError(f"unknown IG target '{target}'", fix="use 'pathways' or 'genes'")
    ps = _pathway_set(model, omics)
    mixer = ps.mixer
    was_training = model.training
    model.eval()
    rows = []
    try:
        present = batch["modality_mask"].get(ps.omics, torch.ones(len(batch["patient_id"]), dtype=torch.bool))
        for b in range(len(batch["patient_id"])):
            if not bool(present[b]):
                continue
            one = _one(batch, b)
            x = one["omics"][ps.omics].float()
            if target == "genes":
                def f(xin: torch.Tensor, *, one: dict = one) -> torch.Tensor:
                    outs = []
                    for i in range(xin.shape[0]):
                        bb = {**one, "omics": {**one["omics"], ps.omics: xin[i : i + 1]}}
                        outs.append(_risk(model, task, model.task_forward(bb, task)))
                    return torch.cat(outs)

                inp, base = x, torch.zeros_like(x)
            else:
                with torch.no_grad():
                    inp = mixer.pathway_embeddings(x)
                    base = mixer.pathway_embeddings(torch.zeros_like(x))

                def f(pe: torch.Tensor, *, one: dict = one) -> torch.Tensor:
                    outs = []
                    for i in range(pe.shape[0]):
                        with _override_pathway_embeddings(mixer, pe[i : i + 1]):
                            outs.append(_risk(model, task, model.task_forward(one, task)))
                    return torch.cat(outs)

            ig = captum_attr.IntegratedGradients(f)
            attr, delta = ig.attribute(inp, baselines=base, n_steps=n_steps, return_convergence_delta=True, internal_batch_size=n_steps)
            with torch.no_grad():
                r, r0 = float(f(inp)[0]), float(f(base)[0])
            if target == "genes":
                a = attr[0]
                per = [float(a[torch.as_tensor(ix)].sum()) for ix in _gene_index(mixer)]
            else:
                per = attr[0].sum(-1).tolist()
            for name, v in zip(mixer.pathway_names, per):
                rows.append({"patient_id": batch["patient_id"][b], "pathway": name, "attribution": v, "risk": r, "baseline_risk": r0, "delta": float(delta[0])})
    finally:
        model.train(was_training)
    return pd.DataFrame(rows)


def _gene_index(mixer: Any) -> list[torch.Tensor]:
    """Per-pathway gene indices (original pathway order) recovered from the mixer's buckets."""
    out: list[Any] = [None] * mixer.n_pathways
    for bucket, members in zip(mixer.buckets, mixer.bucket_members):
        for r, p in enumerate(members):
            idx = bucket.index[r]
            out[p] = idx[idx < mixer.in_dim]
    return out
