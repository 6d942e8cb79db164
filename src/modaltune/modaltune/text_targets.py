"""Text side of ModalTune: label sentences, the frozen random projector, task prompts, text cache.

Label sentences (MODALTUNE.md section 4) are built per patient and task from what the batch
carries: the patient's site, the class name of each classification label and the survival time /
event, verbalised by :class:`modaltune.data.text.SentenceBuilder` with the survival bin edges of
the task's ``TaskInfo`` (fitted on the training patients by the preprocessor). Templates per task:

- ``diagnosis`` (default of classification tasks): location + "Cancer diagnosis: <class>";
- ``survival`` (default of survival tasks): location + survival bin with died / censored;
- ``general``: location + every label the patient has (all tasks).

Stage / TNM fragments need the raw clinical strings, which the batch does not carry (it holds the
encoded clinical matrix); they are therefore not written by the model (see docs/modaltune.md).

Text embeddings come from one :class:`modaltune.encoders.text.TextEncoder` per model path and
process (module-level, so models stay picklable and a benchmark embeds each sentence once).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modaltune.data.text import SITE_NAMES, SentenceBuilder
from modaltune.errors import ConfigError

__all__ = [
    "TEMPLATE_KINDS",
    "get_text_encoder",
    "embed_texts",
    "RandomProjector",
    "label_sentences",
    "task_prompt",
    "class_label_sentences",
]

TEMPLATE_KINDS = ("diagnosis", "survival", "general")

_ENCODERS: dict[str, Any] = {}


def get_text_encoder(model_path: str | None = None):
    """The process-wide :class:`TextEncoder` of ``model_path`` (None = packaged all-MiniLM-L6-v2)."""
    key = str(model_path or "")
    if key not in _ENCODERS:
        from modaltune.encoders.text import TextEncoder

        _ENCODERS[key] = TextEncoder(model_path)
    return _ENCODERS[key]


def embed_texts(sentences: Sequence[str], model_path: str | None = None) -> torch.Tensor:
    """``(N, text_dim)`` float32 L2-normalised embeddings (cached per unique sentence)."""
    return get_text_encoder(model_path).encode(list(sentences))


class RandomProjector(nn.Module):
    """Frozen random linear map ``text_dim -> out_dim`` (N(0, 1/text_dim) weights, seeded).

    The weight is a *persistent buffer*, so it is saved in the model's state dict and the targets of
    a saved model can be recomputed exactly (the authors' release did not save it). ``seed`` is
    recorded as a buffer too.

    Shapes: ``(N, text_dim) -> (N, out_dim)`` L2-normalised (``z = normalise(P t)``).
    """

    def __init__(self, text_dim: int, out_dim: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("weight", torch.randn(out_dim, text_dim, generator=g) / float(np.sqrt(text_dim)))
        self.register_buffer("seed", torch.tensor(int(seed)))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return F.normalize(t.to(self.weight.dtype) @ self.weight.T, dim=-1)


def _location(site: str) -> str:
    s = str(site).replace("TCGA-", "").upper()
    return SITE_NAMES.get(s, str(site).lower())


def task_prompt(description: str, site: str | None, name: str) -> str:
    """Text of a task token: the cancer site and the task's description (its name if empty).

    Example: ``"Cancer location: breast. Task: Simulated overall survival in months."``
    """
    desc = (description or "").strip() or f"predict {name}"
    loc = f"Cancer location: {_location(site)}. " if site else ""
    return f"{loc}Task: {desc}"


def class_label_sentences(site: str | None, class_names: Sequence[str]) -> list[str]:
    """Sentences of each class of a classification task for one site (text-similarity scoring);
    identical to the ``diagnosis`` label sentence of a patient of that site and class."""
    return [_diagnosis_sentence(site, n) for n in class_names]


def _diagnosis_sentence(site: str | None, class_name: str) -> str:
    return SentenceBuilder().sentence({"site": site, "diagnosis": class_name}, ["location", "diagnosis"])


def label_sentences(batch: dict, task_infos: Sequence[Any], task: str, template: str | Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """One label sentence per patient of ``batch`` for ``task``.

    Args:
        batch: the collated batch (``site``, ``targets``, ``target_mask``).
        task_infos: the model's ``TaskInfo`` list (class names, survival bin edges fitted on training).
        task: the task whose target sentence is built.
        template: ``diagnosis`` | ``survival`` | ``general`` or a list of fragment names.

    Returns:
        ``(sentences (B,), usable (B,) bool)``; a patient is usable when the task's own label is
        present (its sentence then states it); other patients get ``""`` and are masked.
    """
    infos = {t.spec.name: t for t in task_infos}
    B = len(batch["patient_id"])
    usable = batch["target_mask"][task].bool().cpu()
    out: list[str] = []
    for b in range(B):
        if not bool(usable[b]):
            out.append("")
            continue
        site = batch["site"][b]
        parts = [f"Cancer location: {_location(site)}"]
        if isinstance(template, str):
            if template not in TEMPLATE_KINDS:
                raise ConfigError(f"unknown label-sentence template '{template}'", where="method.params.templates", fix=f"use one of {list(TEMPLATE_KINDS)}")
            use_tasks = [task] if template != "general" else list(infos)
        else:
            use_tasks = [task]
        first_cls = True
        for tn in use_tasks:
            ti = infos[tn]
            if not bool(batch["target_mask"][tn][b]):
                continue
            tgt = batch["targets"][tn]
            if ti.spec.kind == "classification":
                name = ti.class_names[int(tgt["label"][b])]
                label = "Cancer diagnosis" if first_cls else (ti.spec.name.replace("_", " ").capitalize())
                first_cls = False
                parts.append(f"{label}: {str(name).strip().lower()}")
            elif ti.spec.kind == "survival":
                sb = SentenceBuilder(edges=np.asarray(ti.bin_edges), time_unit=ti.spec.time_unit)
                frag = sb.fragment("survival", {"time": float(tgt["time"][b]), "event": int(tgt["event"][b])})
                if frag:
                    parts.append(frag)
            else:
                parts.append(f"{ti.spec.name.replace('_', ' ').capitalize()}: {float(tgt['value'][b]):.3g}")
        out.append("; ".join(parts) + ".")
    return out, usable
