"""Text side of ModalTune: label sentences, the frozen random projector, task prompts, text cache.

Label sentences (MODALTUNE.md section 4) are built per patient and task by templates, each a list
of *fragments* verbalised by :class:`modaltune.data.text.SentenceBuilder`:

==============  =======================================================================================
fragment        written from
==============  =======================================================================================
``location``    the patient's site ("Cancer location: breast")
``diagnosis``   the class name of the task's label (classification), else of the first
                classification task labelled for the patient ("Cancer diagnosis: ...")
``stage``       AJCC overall stage from the patient record ("Overall stage: stage two")
``t``/``n``/``m``  AJCC T / N / M ("Tumor stage status: tumor stage two", "Lymph node status: cancer has
                not spread to lymph nodes", "Distant metastasis status: no metastasis detected")
``survival``    the survival bin of the task (survival), else of the first labelled survival task, with
                died / censored ("Survival status: The patient died between 15 and 27 months"); bins are
                the task's ``bin_edges``, fitted on the training patients by the preprocessor
``value``       a regression task's value ("<Task name>: 3.2")
==============  =======================================================================================

Named templates (:data:`modaltune.data.text.TEMPLATES`): ``general`` = location + diagnosis +
stage + T + N + M + survival; ``diagnosis`` = location + diagnosis (default of classification
tasks); ``survival`` = location + stage + T + N + M + survival (default of survival tasks);
``staging`` = location + stage + T + N + M. Any list of fragment names is a template too; an
unknown name is a :class:`ConfigError`.

Stage / TNM values come from ``batch["records"]`` (the raw patient and clinical tables, see
:func:`modaltune.data.dataset.patient_records`): by default the first of the columns in
:data:`DEFAULT_FIELD_COLUMNS` that the record has (the modaltune-json importer's raw
``ajcc_pathologic_*`` strings, else the normalised ``stage`` / ``t_stage`` ... fields); a
``sentence_fields`` mapping overrides them. A fragment whose value is missing or not
verbalisable is left out of the sentence and counted (:class:`SentenceStats`), never written as
"nan".

Text embeddings come from one :class:`modaltune.encoders.text.TextEncoder` per model path and
process (module-level, so models stay picklable and a benchmark embeds each sentence once).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modaltune.data.text import SITE_NAMES, TEMPLATES, SentenceBuilder
from modaltune.errors import ConfigError, InputError

__all__ = [
    "TEMPLATE_KINDS",
    "FRAGMENTS",
    "DEFAULT_FIELD_COLUMNS",
    "SentenceStats",
    "resolve_template",
    "check_sentence_fields",
    "get_text_encoder",
    "embed_texts",
    "RandomProjector",
    "label_sentences",
    "task_prompt",
    "class_label_sentences",
    "onehot_embeddings",
]

#: named templates (fragment lists in :data:`modaltune.data.text.TEMPLATES`)
TEMPLATE_KINDS = tuple(TEMPLATES)
#: fragment names a template may list
FRAGMENTS = ("location", "diagnosis", "stage", "t", "n", "m", "survival", "value")
#: record columns tried, in order, for the stage / TNM fragments
DEFAULT_FIELD_COLUMNS: dict[str, tuple[str, ...]] = {
    "stage": ("ajcc_pathologic_stage", "stage"),
    "t": ("ajcc_pathologic_t", "t_stage"),
    "n": ("ajcc_pathologic_n", "n_stage"),
    "m": ("ajcc_pathologic_m", "m_stage"),
}

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


def onehot_embeddings(sentences: Sequence[str], dim: int) -> torch.Tensor:
    """``(N, dim)`` float32 unit vectors, one fixed random direction per distinct sentence (seeded by
    the sentence's MD5, so the same label gets the same vector in every process).

    The one-hot ablation of the text targets: a one-hot code of the labels seen through a fixed random
    rotation (near-orthogonal for ``dim`` >> number of labels), i.e. the label identity without
    the text encoder's similarity between labels."""
    import hashlib

    rows = []
    for s in sentences:
        seed = int.from_bytes(hashlib.md5(str(s).encode()).digest()[:8], "little") & (2**63 - 1)
        rows.append(torch.randn(dim, generator=torch.Generator().manual_seed(seed)))
    return F.normalize(torch.stack(rows), dim=-1) if rows else torch.zeros(0, dim)


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


def resolve_template(template: str | Sequence[str], where: str = "method.params.templates") -> list[str]:
    """A template name or fragment list -> the fragment list; unknown names raise :class:`ConfigError`."""
    if isinstance(template, str):
        if template not in TEMPLATES:
            raise ConfigError(f"unknown label-sentence template '{template}'", where=where,
                              fix=f"use one of {list(TEMPLATES)} or a list of fragments from {list(FRAGMENTS)}")
        return list(TEMPLATES[template])
    frags = [str(f) for f in template]
    bad = [f for f in frags if f not in FRAGMENTS]
    if bad or not frags:
        raise ConfigError(f"unknown label-sentence fragment(s) {bad}" if bad else "empty label-sentence template", where=where,
                          fix=f"use fragments from {list(FRAGMENTS)}")
    return frags


def check_sentence_fields(fields: dict[str, str] | None, where: str = "method.params.sentence_fields") -> dict[str, str]:
    """Validate a ``{fragment: record column}`` override (fragments stage, t, n, m)."""
    out = {str(k): str(v) for k, v in dict(fields or {}).items()}
    bad = sorted(set(out) - set(DEFAULT_FIELD_COLUMNS))
    if bad:
        raise ConfigError(f"sentence_fields names unknown fragment(s) {bad}", where=where, fix=f"use keys from {list(DEFAULT_FIELD_COLUMNS)}")
    return out


class SentenceStats:
    """Counts, per fragment, how often it was written and how often it was left out (value missing
    or not verbalisable): ``stats.written["stage"]``, ``stats.missing["stage"]``; :meth:`as_dict`."""

    def __init__(self) -> None:
        from collections import Counter

        self.written: Counter = Counter()
        self.missing: Counter = Counter()

    def as_dict(self) -> dict[str, dict[str, int]]:
        names = sorted(set(self.written) | set(self.missing))
        return {n: {"written": int(self.written[n]), "missing": int(self.missing[n])} for n in names}


def _class_name(ti: Any, tgt: dict, b: int) -> str:
    return str(ti.class_names[int(tgt["label"][b])]).strip().lower()


def _record_value(record: dict, fragment: str, fields: dict[str, str]) -> Any:
    cols = (fields[fragment],) if fragment in fields else DEFAULT_FIELD_COLUMNS[fragment]
    for c in cols:
        if c in record:
            return record[c]
    return None


def label_sentences(batch: dict, task_infos: Sequence[Any], task: str, template: str | Sequence[str], *,
                    sentence_fields: dict[str, str] | None = None, stats: SentenceStats | None = None) -> tuple[list[str], torch.Tensor]:
    """One label sentence per patient of ``batch`` for ``task``.

    Args:
        batch: the collated batch (``site``, ``targets``, ``target_mask``, optionally ``records``).
        task_infos: the model's ``TaskInfo`` list (class names, survival bin edges fitted on training).
        task: the task whose target sentence is built.
        template: a named template (``general`` | ``diagnosis`` | ``survival`` | ``staging``) or a
            list of fragment names (module docstring).
        sentence_fields: ``{stage|t|n|m: record column}`` overriding :data:`DEFAULT_FIELD_COLUMNS`.
        stats: a :class:`SentenceStats` to count written / missing fragments in.

    Returns:
        ``(sentences (B,), usable (B,) bool)``; a patient is usable when the task's own label is
        present (its sentence then states it); other patients get ``""`` and are masked.

    Raises:
        ConfigError: unknown template / fragment names.
        InputError: a ``sentence_fields`` column that no record of the batch has.
    """
    frags = resolve_template(template)
    fields = check_sentence_fields(sentence_fields)
    infos = {t.spec.name: t for t in task_infos}
    own = infos[task]
    records = list(batch.get("records") or [])
    B = len(batch["patient_id"])
    if fields and any(records):
        for frag, col in fields.items():
            if frag in frags and not any(col in r for r in records if r):
                raise InputError(f"sentence_fields maps '{frag}' to column '{col}', which is in neither the patient nor the clinical table",
                                 where="method.params.sentence_fields", fix="name a column of patients.csv / clinical.csv")
    usable = batch["target_mask"][task].bool().cpu()
    tmask = {t: batch["target_mask"][t].bool().cpu() for t in infos}
    cls_order = [own] if own.spec.kind == "classification" else [t for t in infos.values() if t.spec.kind == "classification"]
    surv_order = [own] if own.spec.kind == "survival" else [t for t in infos.values() if t.spec.kind == "survival"]
    out: list[str] = []
    for b in range(B):
        if not bool(usable[b]):
            out.append("")
            continue
        record = records[b] if b < len(records) and records[b] else {}
        rec: dict[str, Any] = {"site": batch["site"][b]}
        for ti in cls_order:
            if bool(tmask[ti.spec.name][b]):
                rec["diagnosis"] = _class_name(ti, batch["targets"][ti.spec.name], b)
                break
        surv = next((ti for ti in surv_order if bool(tmask[ti.spec.name][b])), None)
        for f in ("stage", "t", "n", "m"):
            if f in frags:
                rec[f] = _record_value(record, f, fields)
        parts: list[str] = []
        for f in frags:
            if f == "survival":
                frag = None
                if surv is not None:
                    tgt = batch["targets"][surv.spec.name]
                    sb = SentenceBuilder(edges=np.asarray(surv.bin_edges), time_unit=surv.spec.time_unit)
                    frag = sb.fragment("survival", {"time": float(tgt["time"][b]), "event": int(tgt["event"][b])})
            elif f == "value":
                frag = f"{own.spec.name.replace('_', ' ').capitalize()}: {float(batch['targets'][task]['value'][b]):.3g}" if own.spec.kind == "regression" else None
            else:
                frag = SentenceBuilder().fragment(f, rec)
            if frag:
                parts.append(frag)
            if stats is not None:
                (stats.written if frag else stats.missing)[f] += 1
        out.append("; ".join(parts) + "." if parts else "")
    # a labelled patient whose every fragment is missing has no target sentence: masked, not embedded as ""
    usable = usable & torch.tensor([bool(s) for s in out], dtype=torch.bool)
    return out, usable
