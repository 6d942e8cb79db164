"""Integrated gradients of a task output over the omics and clinical inputs of any torch method.

For one patient and one task the attributed scalar ``F`` is:

- survival: the risk (``-sum_k S_k`` of the discrete head, or the Cox log hazard);
- classification: the logit of the class predicted for the patient (fixed before integrating);
- regression: the predicted value.

Inputs are the model-ready blocks of the batch: each present omics block ``(G,)`` (scaled on the
training fold, so 0 = the training mean) and the encoded clinical vector ``(F,)``. The baseline is 0
for every block (training-mean expression; standardised numeric fields at their mean, one-hot
categories all off). Slide features and absent blocks stay fixed. IG (captum) integrates the
gradient along the straight path from the baseline; completeness says
``sum of attributions = F(x) - F(baseline)`` up to the integration error captum reports as
``delta``. Gene attributions are also summed per pathway when the cohort declares pathways for the
block (a gene in k pathways counts in each).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from modaltune.errors import require

__all__ = ["attributable_blocks", "input_attributions", "pathway_totals"]


def attributable_blocks(model: Any, batch: dict) -> list[str]:
    """Input blocks IG can explain for ``model``: omics names and/or ``clinical`` (empty: none)."""
    info = model.info
    mods = set(info.modalities or [])
    out = [m for m in (batch.get("omics") or {}) if m in (info.omics_dims or {}) and m in mods]
    if info.clinical_dim and batch.get("clinical") is not None and batch["clinical"].shape[-1]:
        out.append("clinical")
    return out


def _scalar(model: Any, task: str, out: torch.Tensor, cls: int | None) -> torch.Tensor:
    from modaltune.heads import risk_from_output

    ti = model.task_infos[task]
    kind = ti.spec.kind
    if kind == "survival":
        return risk_from_output(ti, out, "cox" if getattr(model, "survival_head", "discrete") == "cox" else "discrete")
    if kind == "classification":
        return out[:, cls]
    return out.reshape(-1)


def _feature_names(model: Any, block: str, width: int) -> list[str]:
    info = model.info
    names = list(info.clinical_feature_names) if block == "clinical" else list((info.omics_feature_names or {}).get(block, []))
    return names if len(names) == width else [f"{block}:{j}" for j in range(width)]


def input_attributions(model: Any, batch: dict, task: str | None = None, *, n_steps: int = 64) -> pd.DataFrame:
    """IG attributions per input feature for every patient of ``batch``.

    Args:
        model: a torch method's model (``FittedModel.model``).
        batch: from :func:`modaltune.interpret.patient_batch`.
        task: task to explain (default: the first task).
        n_steps: IG integration steps (Gauss-Legendre, captum's default rule).

    Returns:
        Long DataFrame ``patient_id, task, target, block, feature, value, attribution, output,
        baseline_output, delta`` (``value`` = the model-ready input; ``target`` names the scalar).
        Empty when the model has no omics or clinical input.
    """
    captum_attr = require("captum.attr", "interpret", "integrated gradients")
    from .integrated_gradients import _one

    task = task or next(iter(model.task_infos))
    blocks = attributable_blocks(model, batch)
    rows: list[dict] = []
    if not blocks:
        return pd.DataFrame(rows)
    kind = model.task_infos[task].spec.kind
    was_training = model.training
    model.eval()
    try:
        for b, pid in enumerate(batch["patient_id"]):
            one = _one(batch, b)
            mm = one.get("modality_mask") or {}
            clin_key = model.info.clinical_modality or "clinical"
            present = [k for k in blocks if bool(mm.get(clin_key if k == "clinical" else k, torch.ones(1))[0])]
            if not present:
                continue
            xs = tuple((one["clinical"] if k == "clinical" else one["omics"][k]).float() for k in present)

            def forward(*inp: torch.Tensor, _one=one, _present=present, _cls=None) -> torch.Tensor:
                outs = []
                for i in range(inp[0].shape[0]):  # one forward per IG step: other inputs keep batch size 1
                    bb = {**_one, "omics": dict(_one.get("omics") or {})}
                    for k, x in zip(_present, inp):
                        if k == "clinical":
                            bb["clinical"] = x[i : i + 1]
                        else:
                            bb["omics"][k] = x[i : i + 1]
                    outs.append(_scalar(model, task, model(bb)["outputs"][task], _cls))
                return torch.cat(outs)

            cls = None
            if kind == "classification":
                with torch.no_grad():
                    cls = int(model(one)["outputs"][task].argmax(-1)[0])
            f = lambda *inp, _c=cls: forward(*inp, _cls=_c)
            base = tuple(torch.zeros_like(x) for x in xs)
            ig = captum_attr.IntegratedGradients(f)
            attrs, delta = ig.attribute(xs, baselines=base, n_steps=n_steps, return_convergence_delta=True, internal_batch_size=n_steps)
            with torch.no_grad():
                y, y0 = float(f(*xs)[0]), float(f(*base)[0])
            target = {"survival": "risk", "regression": "value"}.get(kind, f"logit[{_class_name(model, task, cls)}]")
            for k, x, a in zip(present, xs, attrs):
                names = _feature_names(model, k, x.shape[1])
                for name, v, av in zip(names, x[0].tolist(), a[0].tolist()):
                    rows.append({"patient_id": str(pid), "task": task, "target": target, "block": k, "feature": name, "value": v,
                                 "attribution": av, "output": y, "baseline_output": y0, "delta": float(delta[0])})
    finally:
        model.train(was_training)
    return pd.DataFrame(rows)


def _class_name(model: Any, task: str, cls: int | None) -> str:
    ti = model.task_infos[task]
    names = list(getattr(ti, "class_names", None) or ti.spec.classes or [])
    return str(names[cls]) if cls is not None and cls < len(names) else str(cls)


def pathway_totals(attributions: pd.DataFrame, info: Any) -> pd.DataFrame:
    """Gene attributions summed per pathway: ``patient_id, task, block, pathway, attribution, n_genes``.

    Only blocks with pathways in ``info.pathways`` (the cohort's declared pathway file) appear.
    """
    rows = []
    pws = getattr(info, "pathways", None) or {}
    if attributions.empty:
        return pd.DataFrame(rows)
    for (pid, task, block), grp in attributions.groupby(["patient_id", "task", "block"], sort=False):
        pw = pws.get(block)
        if pw is None:
            continue
        a = grp["attribution"].to_numpy()
        for name, idx in zip(pw.names, pw.gene_index):
            idx = np.asarray(idx)
            idx = idx[idx < len(a)]
            rows.append({"patient_id": pid, "task": task, "block": block, "pathway": name, "attribution": float(a[idx].sum()), "n_genes": int(idx.size)})
    return pd.DataFrame(rows)
