"""The ModalTune model: frozen slide backbone + Modal Adapter + modal/task tokens + per-task fusion.

Per task ``t`` (the task token flows through the image stream, so the model runs once per task)::

    state  = adapter.embed(patches)                        # frozen prefix (embedding + layers before the
                                                           # first group), computed ONCE per batch without
                                                           # autograd, reused by every task, cached at eval
    c      = [task token_t ; modal tokens] + positions     # modal tokens: pathways, CNV/mut, clinical, report
    img, c = ModalAdapter(state, c, mask)                  # injector / frozen groups / extractor
    f_t    = LN([img, c[task], mean(genomic c), mean(clinical c)] summed or concatenated)
    out_t  = Linear(f_t) -> (B, out_dim=256)               # the task output / task embedding

``forward(batch) -> {"embedding": (B, T*out_dim) concatenated task outputs, "task_embeddings":
{t: (B, out_dim)}, "outputs": {t: logits (B, C) | hazard logits (B, K) | risk (B,)}}``; ``loss``
combines (a) KL text distillation, (b) supervised heads, (c) text-similarity classification with
weights (see :class:`Objectives`).

Missing data: a patient without a slide gets a learned "missing image" vector and its modal tokens
skip the adapter; a missing modality's tokens are masked out of every attention and out of the
fusion means. No patient is dropped.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modaltune.adapters.modal_adapter import ModalAdapter
from modaltune.data.text import TEMPLATES
from modaltune.errors import ConfigError, InputError

from .text_targets import RandomProjector, SentenceStats, class_label_sentences, embed_texts, label_sentences, task_prompt
from .tokens import ModalTokenizer, TaskTokenSet

__all__ = ["Objectives", "ModalTuneModel", "GENERAL", "GENERAL_DESCRIPTION", "PARAM_GROUPS"]

#: name of the paper's General task output (not a cohort task: no labels of its own, KL only)
GENERAL = "general"
#: its task-token description
GENERAL_DESCRIPTION = "General: cancer site, diagnosis, stage and survival."
#: learning-rate groups of :meth:`ModalTuneModel.param_groups`
PARAM_GROUPS = ("gates", "injectors", "extractors", "tokens", "other")


@dataclass
class Objectives:
    """Weights of the training objectives (any may be 0; at least one must be > 0).

    Attributes:
        kl: weight of the KL text distillation; the loss is ``kl * kl_scale * sum_t KL_t``
            (paper: kl = 1, kl_scale = 10, temperature 1).
        supervised: weight of the supervised heads (CE, discrete-time NLL or Cox) on task outputs.
        text_cls: weight of cross-entropy on text-similarity logits (classification tasks).
        kl_scale, kl_temperature: see above.
        text_temperature: temperature of the text-similarity logits (cosine / T).
        templates: task -> label-sentence template: a name (``general`` | ``diagnosis`` |
            ``survival`` | ``staging``) or a list of fragments (``location``, ``diagnosis``,
            ``stage``, ``t``, ``n``, ``m``, ``survival``, ``value``; see
            :mod:`modaltune.modaltune.text_targets`). Defaults: ``diagnosis`` for classification,
            ``survival`` (site + stage/TNM + survival bin) for survival, location + value for regression.
        sentence_fields: ``{stage|t|n|m: record column}`` overriding the default record columns.
    """

    kl: float = 1.0
    supervised: float = 1.0
    text_cls: float = 0.0
    kl_scale: float = 10.0
    kl_temperature: float = 1.0
    text_temperature: float = 0.07
    templates: dict[str, Any] = field(default_factory=dict)
    sentence_fields: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .text_targets import check_sentence_fields, resolve_template

        if min(self.kl, self.supervised, self.text_cls) < 0 or (self.kl + self.supervised + self.text_cls) <= 0:
            raise ConfigError(f"objective weights must be >= 0 with at least one > 0 (kl={self.kl}, supervised={self.supervised}, text_cls={self.text_cls})",
                              where="method.params.objectives")
        self.templates = {str(t): resolve_template(v, where=f"method.params.templates.{t}") for t, v in dict(self.templates).items()}
        self.sentence_fields = check_sentence_fields(self.sentence_fields)


class ModalTuneModel(nn.Module):
    """See the module docstring.

    Args:
        info: ``CohortInfo`` of the training fold.
        adapter: a :class:`ModalAdapter` around the frozen backbone.
        tokenizer: the modal token sets (may hold zero sets: then only the task token is used).
        text_dim: width of the text encoder's embeddings; text_model: its local path (None = default).
        out_dim: task-output width (paper 256).
        fusion: ``sum`` (GigaPath) or ``concat`` (TITAN).
        objectives: :class:`Objectives`.
        cls_output: what ``outputs[t]`` of a classification task is: ``head`` (supervised head
            logits) or ``text`` (text-similarity logits); ``auto`` = head if ``supervised > 0``.
        survival_head: ``discrete`` or ``cox``; alpha: uncensored weight of the discrete NLL.
        projector_seed: seed of the frozen random text projector (recorded in the state dict).
        cache_embed: cache the frozen prefix (``adapter.embed``: patch embedding + layers before the
            first interaction group) at evaluation, keyed by patients + patch selection (LRU
            bounded by ``cache_size`` entries and ``cache_mb`` MiB of tokens). Valid because
            evaluation samples patches deterministically; training never reads the cache.
    """

    def __init__(
        self,
        info: Any,
        adapter: ModalAdapter,
        tokenizer: ModalTokenizer,
        *,
        text_dim: int,
        text_model: str | None = None,
        out_dim: int = 256,
        fusion: str = "sum",
        objectives: Objectives | None = None,
        cls_output: str = "auto",
        survival_head: str = "discrete",
        alpha: float = 0.0,
        projector_seed: int = 0,
        cache_embed: bool = True,
        cache_size: int = 256,
        cache_mb: float = 1024.0,
        shared_fusion: bool = False,
        general_task: bool = False,
        lr_mult: dict[str, float] | None = None,
        select_epoch: str = "last",
        variant: str = "modaltune",
        targets: str = "text",
    ):
        super().__init__()
        from modaltune.heads import build_head

        if fusion not in ("sum", "concat"):
            raise ConfigError(f"unknown fusion '{fusion}'", where="method.params.fusion", fix="use 'sum' or 'concat'")
        self.info = info
        self.task_infos = {t.spec.name: t for t in info.tasks}
        self.adapter = adapter
        self.tokenizer = tokenizer
        d = adapter.dim
        self.dim = d
        self.text_model = text_model
        self.task_tokens = TaskTokenSet(text_dim, d, text_model)
        self.modal_pos = nn.Parameter(torch.randn(1, 1 + tokenizer.n_tokens, d) * 0.02)
        self.missing_image = nn.Parameter(torch.zeros(d))
        kinds = tokenizer.kinds
        self.register_buffer("_genomic", torch.tensor([k == "genomic" for k in kinds], dtype=torch.bool), persistent=False)
        self.register_buffer("_clinical", torch.tensor([k == "clinical" for k in kinds], dtype=torch.bool), persistent=False)
        self.has_genomic = bool(self._genomic.any())
        self.has_clinical = bool(self._clinical.any())
        n_parts = 2 + int(self.has_genomic) + int(self.has_clinical)
        self.fusion = fusion
        fdim = d if fusion == "sum" else n_parts * d
        #: the paper's General task: one more pass with a "General" task token, trained by KL to the
        #: ``general`` sentence (site + diagnosis + stage/TNM + survival); used for epoch selection
        self.general_task = bool(general_task)
        fuse_names = list(self.task_infos) + ([GENERAL] if self.general_task else [])
        # shared_fusion (paper): one LayerNorm + Linear for every task; else one per task
        self.shared_fusion = bool(shared_fusion)
        self._fuse_key = {t: ("shared" if self.shared_fusion else t) for t in fuse_names}
        self.fuse = nn.ModuleDict({k: nn.Sequential(nn.LayerNorm(fdim), nn.Linear(fdim, out_dim)) for k in dict.fromkeys(self._fuse_key.values())})
        bad = sorted(set(lr_mult or {}) - set(PARAM_GROUPS))
        if bad:
            raise ConfigError(f"lr_mult names unknown parameter group(s) {bad}", where="method.params.lr_mult", fix=f"use keys from {list(PARAM_GROUPS)}")
        self.lr_mult = {g: float((lr_mult or {}).get(g, 1.0)) for g in PARAM_GROUPS}
        if select_epoch not in ("last", "val_probe"):
            raise ConfigError(f"unknown select_epoch '{select_epoch}'", where="method.params.select_epoch", fix="use 'last' or 'val_probe'")
        self.select_epoch = select_epoch
        self.variant = variant
        if targets not in ("text", "onehot"):
            raise ConfigError(f"unknown targets '{targets}'", where="method.params.targets", fix="use 'text' (paper) or 'onehot' (ablation)")
        self.targets = targets
        #: per-epoch collection buffers set by :class:`~modaltune.modaltune.monitor.ModalTuneMonitor`
        #: (None = collect nothing): projected targets (first epoch) and selection embeddings
        self.collect: dict | None = None
        self.out_dim = int(out_dim)
        self.objectives = objectives or Objectives()
        unknown_t = sorted(set(self.objectives.templates) - set(self.task_infos))
        if unknown_t:
            raise ConfigError(f"templates given for unknown task(s) {unknown_t}", where="method.params.templates", fix=f"use task names from {sorted(self.task_infos)}")
        #: written / missing counts of label-sentence fragments (accumulated over every loss call)
        self.sentence_stats = SentenceStats()
        self.projector = RandomProjector(text_dim, out_dim, projector_seed)
        if cls_output == "auto":
            cls_output = "head" if self.objectives.supervised > 0 else "text"
        if cls_output not in ("head", "text"):
            raise ConfigError(f"unknown cls_output '{cls_output}'", where="method.params.cls_output", fix="use 'auto', 'head' or 'text'")
        self.cls_output = cls_output
        self.survival_head = survival_head
        self.alpha = alpha
        self.heads = nn.ModuleDict({t: build_head(ti, out_dim, survival_head=survival_head) for t, ti in self.task_infos.items()})
        self.cache_embed = cache_embed
        self.cache_size = int(cache_size)
        self.cache_bytes = int(cache_mb * 2**20)
        self._embed_cache: OrderedDict = OrderedDict()
        self._cache_used = 0
        self.embed_cache_hits = 0
        self.slide_key = getattr(info, "slide_modality", None) or "slide"
        self.method_name = "modaltune"

    # ------------------------------------------------------------------ helpers
    @property
    def embed_dim(self) -> int:
        return self.out_dim * len(self.task_infos)

    def task_embeddings(self, batch: dict) -> dict[str, torch.Tensor]:
        """``{task: (B, out_dim)}``: each task's own embedding (the model protocol of
        :class:`~modaltune.methods.base.MultiTaskModel`)."""
        return self.forward(batch)["task_embeddings"]

    def task_embedding_columns(self) -> dict[str, slice]:
        """Task ``i`` (in model task order) owns columns ``[i * out_dim, (i + 1) * out_dim)`` of the
        concatenated ``embedding``."""
        return {t: slice(i * self.out_dim, (i + 1) * self.out_dim) for i, t in enumerate(self.task_infos)}

    @property
    def backbone(self) -> nn.Module:
        return self.adapter.backbone

    def train(self, mode: bool = True) -> ModalTuneModel:
        super().train(mode)
        if mode:
            self._embed_cache.clear()  # cached states are for evaluation only
            self._cache_used = 0
        return self

    def _frozen_embed(self, batch: dict, rows: torch.Tensor):
        """Frozen prefix (``adapter.embed``) of the patients ``rows`` (no graph); LRU-cached at evaluation."""
        s = batch["slide"]
        feats = s["features"][rows].float()
        coords = s["coords"][rows] if s.get("coords") is not None else None
        mask = s["mask"][rows].bool()
        # trim padding shared by all selected rows (a batch of one has no padding at all)
        n = int(mask.sum(1).max())
        feats, mask = feats[:, :n], mask[:, :n]
        coords = coords[:, :n] if coords is not None else None
        use_cache = self.cache_embed and not self.training and not torch.is_grad_enabled()
        key = None
        if use_cache:
            pids = tuple(batch["patient_id"][i] for i in rows.tolist())
            ch = hash(coords.cpu().numpy().tobytes()) if coords is not None else 0
            fh = hash(feats[:, : min(n, 8)].cpu().numpy().tobytes())
            key = (pids, n, ch, fh)
            hit = self._embed_cache.get(key)
            if hit is not None:
                self._embed_cache.move_to_end(key)
                self.embed_cache_hits += 1
                return hit
        with torch.no_grad():
            state = self.adapter.embed(feats, coords, mask=None if bool(mask.all()) else mask)
        size = state.tokens.numel() * state.tokens.element_size()
        if key is not None and size <= self.cache_bytes:
            self._embed_cache[key] = state
            self._cache_used += size
            while len(self._embed_cache) > self.cache_size or self._cache_used > self.cache_bytes:
                _, old = self._embed_cache.popitem(last=False)
                self._cache_used -= old.tokens.numel() * old.tokens.element_size()
        return state

    @staticmethod
    def _masked_mean(c: torch.Tensor, present: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        w = (present & which[None]).to(c.dtype)  # (B, M)
        return (c * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)

    def _slide_rows(self, batch: dict) -> torch.Tensor:
        if "slide" not in batch:
            raise InputError("ModalTune needs the slide modality but the batch has no 'slide' entry", where="batch", fix="add the slide modality to the method's modalities")
        mask = batch["slide"]["mask"].bool()
        present = mask.any(1)
        mm = batch.get("modality_mask") or {}
        if self.slide_key in mm:
            present = present & mm[self.slide_key].to(present.device).bool()
        return present.nonzero(as_tuple=True)[0]

    # ------------------------------------------------------------------ forward
    def task_forward(self, batch: dict, task: str, *, modal: tuple[torch.Tensor, torch.Tensor] | None = None, state=None,
                     rows: torch.Tensor | None = None, return_parts: bool = False):
        """Task output ``(B, out_dim)`` of one task.

        With ``return_parts`` a dict: ``out`` (B, out_dim), ``image`` (B, d) adapted slide output,
        ``tokens`` (B, 1 + M, d) adapted [task; modal] tokens and ``mask`` (B, 1 + M).
        """
        B = len(batch["patient_id"])
        if modal is None:
            modal = self.tokenizer(batch)
        tokens, present = modal
        dev = self.modal_pos.device
        desc = GENERAL_DESCRIPTION if task == GENERAL else self.task_infos[task].spec.description
        prompts = [task_prompt(desc, site, task) for site in batch["site"]]
        tt = self.task_tokens.forward_prompts(prompts)  # (B, 1, d)
        c = torch.cat([tt, tokens.to(dev)], dim=1)
        cmask = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=dev), present.to(dev)], dim=1)
        if rows is None:
            rows = self._slide_rows(batch)
        img = self.missing_image[None].expand(B, -1)
        if rows.numel():
            if state is None:
                state = self._frozen_embed(batch, rows)
            img_r, c_r = self.adapter(None, None, c[rows], cmask[rows], modal_pos=self.modal_pos, state=state)
            img = img.index_put((rows,), img_r)
            c = c.index_put((rows,), c_r)
        parts = [img, c[:, 0]]
        if self.has_genomic:
            parts.append(self._masked_mean(c[:, 1:], cmask[:, 1:], self._genomic))
        if self.has_clinical:
            parts.append(self._masked_mean(c[:, 1:], cmask[:, 1:], self._clinical))
        f = torch.stack(parts, 0).sum(0) if self.fusion == "sum" else torch.cat(parts, dim=1)
        out = self.fuse[self._fuse_key[task]](f)
        return {"out": out, "image": img, "tokens": c, "mask": cmask} if return_parts else out

    def forward(self, batch: dict) -> dict:
        modal = self.tokenizer(batch)
        rows = self._slide_rows(batch)
        state = self._frozen_embed(batch, rows) if rows.numel() else None  # shared by all tasks
        task_emb = {t: self.task_forward(batch, t, modal=modal, state=state, rows=rows) for t in self.task_infos}
        outputs = {}
        for t, ti in self.task_infos.items():
            if ti.spec.kind == "classification" and self.cls_output == "text":
                outputs[t] = self.text_logits(task_emb[t], batch["site"], t)
            else:
                outputs[t] = self.heads[t](task_emb[t])
        res = {"embedding": torch.cat([task_emb[t] for t in self.task_infos], dim=1), "task_embeddings": task_emb, "outputs": outputs}
        if self.general_task:
            res["general_embedding"] = self.task_forward(batch, GENERAL, modal=modal, state=state, rows=rows)
        return res

    def embed(self, batch: dict) -> torch.Tensor:
        """(B, T * out_dim) concatenated task outputs (what probes read; slice per task)."""
        return self.forward(batch)["embedding"]

    # ------------------------------------------------------------------ text
    def text_targets(self, sentences: Sequence[str]) -> torch.Tensor:
        """``z = normalise(P(text(sentences)))``: (N, out_dim). With ``targets="onehot"`` (ablation)
        ``text(s)`` is replaced by :func:`~modaltune.modaltune.text_targets.onehot_embeddings`: each
        distinct sentence (= label) its own random direction, so no similarity between labels is left."""
        dev = self.projector.weight.device
        if self.targets == "onehot":
            from .text_targets import onehot_embeddings

            return self.projector(onehot_embeddings(list(sentences), int(self.projector.weight.shape[1])).to(dev))
        return self.projector(embed_texts(list(sentences), self.text_model).to(dev))

    def class_embeddings(self, site: str | None, class_names: Sequence[str]) -> torch.Tensor:
        """(C, out_dim) projected label-sentence embeddings of ``class_names`` for ``site``."""
        return self.text_targets(class_label_sentences(site, class_names))

    def score_labels(self, task_output: torch.Tensor, sites: Sequence[str], class_names: Sequence[str]) -> torch.Tensor:
        """Text-similarity logits ``(B, len(class_names))`` for *any* label names (zero-shot capable)."""
        scale = 1.0 / self.objectives.text_temperature
        s = F.normalize(task_output, dim=1)
        rows = []
        cache: dict[str, torch.Tensor] = {}
        for b, site in enumerate(sites):
            if site not in cache:
                cache[site] = self.class_embeddings(site, class_names).to(s.dtype)
            rows.append(s[b] @ cache[site].T)
        return torch.stack(rows) * scale

    def text_logits(self, task_output: torch.Tensor, sites: Sequence[str], task: str) -> torch.Tensor:
        return self.score_labels(task_output, sites, self.task_infos[task].class_names)

    # ------------------------------------------------------------------ loss
    def _template(self, task: str) -> list[str]:
        if task in self.objectives.templates:
            return self.objectives.templates[task]
        kind = self.task_infos[task].spec.kind
        return list(TEMPLATES["survival" if kind == "survival" else "diagnosis"]) if kind != "regression" else ["location", "value"]

    def loss(self, batch: dict, out: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, {task: loss})``; see :class:`Objectives` for the terms and weights."""
        from modaltune.losses import kl_text_distillation, task_loss

        ob = self.objectives
        per: dict[str, torch.Tensor] = {}
        for t, ti in self.task_infos.items():
            emb = out["task_embeddings"][t]
            mask = batch["target_mask"][t].to(emb.device).bool()
            total = 0.0 * emb.sum()
            if ob.kl > 0:
                sents, usable = label_sentences(batch, self.info.tasks, t, self._template(t), sentence_fields=ob.sentence_fields, stats=self.sentence_stats)
                usable = usable.to(emb.device)
                if bool(usable.any()):
                    idx = usable.nonzero(as_tuple=True)[0]
                    z = self.text_targets([sents[i] for i in idx.tolist()]).to(emb.dtype)
                    total = total + ob.kl * ob.kl_scale * kl_text_distillation(emb[idx], z, ob.kl_temperature)
                    if self.collect is not None and self.collect.get("targets") and self.training:
                        self._collect_targets(t, ti, batch, idx, z)
            if ob.supervised > 0:
                head_out = out["outputs"][t] if not (ti.spec.kind == "classification" and self.cls_output == "text") else self.heads[t](emb)
                total = total + ob.supervised * task_loss(ti, head_out, batch["targets"][t], mask,
                                                          survival_loss="cox" if self.survival_head == "cox" else "nll", alpha=self.alpha)
            if ob.text_cls > 0 and ti.spec.kind == "classification" and bool(mask.any()):
                logits = out["outputs"][t] if self.cls_output == "text" else self.text_logits(emb, batch["site"], t)
                lab = batch["targets"][t]["label"].to(emb.device)
                total = total + ob.text_cls * F.cross_entropy(logits[mask], lab[mask])
            per[t] = total
        if self.collect is not None and self.collect.get("selection"):
            self._collect_selection(batch, out)
        if self.general_task and ob.kl > 0 and "general_embedding" in out:
            per[GENERAL] = ob.kl * ob.kl_scale * self._general_kl(batch, out["general_embedding"])
        return torch.stack(list(per.values())).sum(), per

    def general_owner(self) -> str:
        """The task whose labelled patients carry the General sentence: the first survival task
        (its bins write the survival fragment), else the first task; the diagnosis fragment comes
        from the first labelled classification task (:func:`label_sentences`)."""
        return next((t for t, ti in self.task_infos.items() if ti.spec.kind == "survival"), next(iter(self.task_infos)))

    def _general_kl(self, batch: dict, emb: torch.Tensor) -> torch.Tensor:
        from modaltune.losses import kl_text_distillation

        sents, usable = label_sentences(batch, self.info.tasks, self.general_owner(), "general",
                                        sentence_fields=self.objectives.sentence_fields, stats=self.sentence_stats)
        usable = usable.to(emb.device)
        if not bool(usable.any()):
            return 0.0 * emb.sum()
        idx = usable.nonzero(as_tuple=True)[0]
        z = self.text_targets([sents[i] for i in idx.tolist()]).to(emb.dtype)
        return kl_text_distillation(emb[idx], z, self.objectives.kl_temperature)

    # ------------------------------------------------------------------ monitoring
    def _collect_targets(self, t: str, ti: Any, batch: dict, idx: torch.Tensor, z: torch.Tensor) -> None:
        tgt = batch["targets"][t]
        if ti.spec.kind == "classification":
            lab = tgt["label"].detach().cpu()[idx.cpu()].numpy()  # targets live on the model's device (GPU)
        elif ti.spec.kind == "survival":
            from modaltune.data.splits import assign_survival_bins

            lab = assign_survival_bins(tgt["time"].detach().cpu()[idx.cpu()].numpy(), np.asarray(ti.bin_edges))
        else:
            return
        zs, ls = self.collect["z"].setdefault(t, ([], []))
        zs.append(z.detach().float().cpu().numpy())
        ls.append(np.asarray(lab))

    def _collect_selection(self, batch: dict, out: dict) -> None:
        part = self.collect["train" if self.training else "val"]
        for t, ti in self.task_infos.items():
            if ti.spec.kind != "classification":
                continue
            m = batch["target_mask"][t].bool().cpu()
            if not bool(m.any()):
                continue
            emb = out["general_embedding"] if self.general_task else out["task_embeddings"][t]
            xs, ys = part.setdefault(t, ([], []))
            xs.append(emb.detach().float().cpu().numpy()[m.numpy()])
            ys.append(batch["targets"][t]["label"].cpu().numpy()[m.numpy()])

    def selection_score(self, train: dict, val: dict) -> float:
        """Mean over classification tasks of the validation balanced accuracy of a logistic probe
        (liblinear, C = 1) fitted on the training embeddings; NaN when no task can be scored."""
        from modaltune.evaluation.probes import fit_probe

        vals = []
        for t in train:
            if t not in val:
                continue
            Xtr, ytr = np.concatenate(train[t][0]), np.concatenate(train[t][1])
            Xev, yev = np.concatenate(val[t][0]), np.concatenate(val[t][1])
            if len(np.unique(ytr)) < 2:
                continue
            vals.append(float(fit_probe("logistic", Xtr, ytr, Xev, yev, C=1.0).value))
        return float(np.mean(vals)) if vals else float("nan")

    def separability(self, collected: dict | None = None) -> dict:
        """Separability report of the text targets (:func:`~modaltune.modaltune.target_checks.separability_report`):
        class sentences (diagnosis template, first site of the cohort) and survival-bin sentences
        ("died between a and b months") after the projector, plus the probe on collected patient targets."""
        from modaltune.data.text import SentenceBuilder

        from .target_checks import separability_report

        sites = list(getattr(self.info, "sites", None) or [None])
        site = sites[0]
        cls: dict = {}
        for t, ti in self.task_infos.items():
            if ti.spec.kind == "classification":
                names = list(ti.class_names)
                cls[t] = (names, self.class_embeddings(site, names).detach().cpu().numpy())
            elif ti.spec.kind == "survival" and getattr(ti, "bin_edges", None) is not None:
                e = np.asarray(ti.bin_edges, dtype=float)
                sb = SentenceBuilder(edges=e, time_unit=ti.spec.time_unit)
                mids = [(e[k] + e[k + 1]) / 2 if np.isfinite(e[k + 1]) else e[k] + 1 for k in range(len(e) - 1)]
                sents = [sb.sentence({"site": site, "time": float(mt), "event": 1}, ["location", "survival"]) for mt in mids]
                cls[t] = ([f"bin{k}" for k in range(len(sents))], self.text_targets(sents).detach().cpu().numpy())
        pat = {t: (np.concatenate(z), np.concatenate(y)) for t, (z, y) in (collected or {}).items() if z}
        return {"site": site, "text_model": self.text_model or "all-MiniLM-L6-v2 (packaged)", "tasks": separability_report(cls, pat)}

    def target_leakage(self, batch: dict) -> dict:
        """Audit of the text targets against what this model reads, on a label-side batch
        (:meth:`modaltune.data.dataset.PatientDataset.label_batch`): per task (and the General task),
        no patient's target sentence or label name may appear in its report text (when the report is
        a modal token) and no task prompt may name a strict subset of the task's classes
        (:func:`~modaltune.modaltune.target_checks.find_target_leakage`).

        Returns ``{"clean", "n_patients", "inputs", "tasks", "problems": [{"task", "input", "problem"}]}``.
        """
        from .target_checks import find_target_leakage
        from .tokens import ReportTextTokenSet

        pids = [str(p) for p in batch["patient_id"]]
        report = next((ts for ts in self.tokenizer.sets if isinstance(ts, ReportTextTokenSet)), None)
        field = f"report text (modality '{report.modality}')" if report is not None else ""
        inputs = {p: str(t or "") for p, t in zip(pids, batch.get("text") or [])} if report is not None else {}
        labels: dict[str, list[str]] = {p: [] for p in pids}
        for t, ti in self.task_infos.items():
            if ti.spec.kind == "classification":
                lab, m = batch["targets"][t]["label"].tolist(), batch["target_mask"][t].tolist()
                for p, k, ok in zip(pids, lab, m):
                    if ok:
                        labels[p].append(str(ti.class_names[k]))
        stats = SentenceStats()  # the audit's fragments are not the training counts
        tasks = list(self.task_infos) + ([GENERAL] if self.general_task else [])
        problems = []
        for t in tasks:
            owner, template = (self.general_owner(), "general") if t == GENERAL else (t, self._template(t))
            sents, usable = label_sentences(batch, self.info.tasks, owner, template, sentence_fields=self.objectives.sentence_fields, stats=stats)
            targets = {p: [s] for p, s, ok in zip(pids, sents, usable.tolist()) if ok}
            desc = GENERAL_DESCRIPTION if t == GENERAL else self.task_infos[t].spec.description
            prompts = sorted({task_prompt(desc, site, t) for site in batch["site"]})
            classes = list(self.task_infos[t].class_names) if t != GENERAL and self.task_infos[t].spec.kind == "classification" else []
            for pr in find_target_leakage(inputs, targets, labels, prompts, classes, input_field=field or "input text"):
                problems.append({"task": t, "input": "task prompt" if pr.startswith("prompt ") else field, "problem": pr})
        return {"clean": not problems, "n_patients": len(pids), "inputs": ([field] if field else []) + ["task prompts"],
                "tasks": tasks, "problems": problems}

    def audit_inputs(self, label_batch: dict, out_dir: Any = None) -> dict:
        """:meth:`target_leakage` run before training (the engine calls it for every fit): the report
        goes to ``<out_dir>/target_leakage.json``; a leak raises an :class:`InputError` naming the
        task and the input field."""
        import json
        from pathlib import Path

        rep = self.target_leakage(label_batch)
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / "target_leakage.json").write_text(json.dumps(rep, indent=2))
        if rep["problems"]:
            first = rep["problems"][0]
            more = f" (+{len(rep['problems']) - 1} more)" if len(rep["problems"]) > 1 else ""
            raise InputError(f"text target of task '{first['task']}' reaches the model's input {first['input']}: {first['problem']}{more}",
                             where=f"task '{first['task']}', input {first['input']}",
                             fix="remove label statements from the report texts / task descriptions, or drop the report token (use_report: false)")
        return rep

    def training_callbacks(self, out_dir: Any) -> list:
        """Callbacks the engine adds when it trains this model (diagnostics, epoch selection)."""
        from .monitor import ModalTuneMonitor

        return [ModalTuneMonitor(out_dir)]

    # ------------------------------------------------------------------ optimisation
    def parameter_group_of(self, name: str) -> str:
        """The learning-rate group of parameter ``name``: ``gates`` (injector gammas), ``injectors``
        (the rest of the injectors), ``extractors`` (extractors, extra extractors and the prompt
        self-attention), ``tokens`` (modal and task token encoders, modal positions) or ``other``
        (fusion, heads, missing-image vector)."""
        if name.startswith("adapter.injectors."):
            return "gates" if name.endswith(".gamma") else "injectors"
        if name.startswith(("adapter.extractors.", "adapter.extra_extractors.", "adapter.self_attn.")):
            return "extractors"
        if name.startswith(("tokenizer.", "task_tokens.")) or name == "modal_pos":
            return "tokens"
        return "other"

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser parameter groups ``[{"params", "lr", "name"}]``: base ``lr`` times this model's
        ``lr_mult[group]`` (read by the engine's ``configure_optimizers``; empty groups left out)."""
        groups: dict[str, list] = {g: [] for g in PARAM_GROUPS}
        for n, p in self.named_parameters():
            if p.requires_grad:
                groups[self.parameter_group_of(n)].append(p)
        return [{"params": ps, "lr": lr * self.lr_mult[g], "name": g} for g, ps in groups.items() if ps]

    def epoch_diagnostics(self) -> dict[str, float]:
        """Mean |gamma| per interaction group and the last injected update as a fraction of ||x||
        (:func:`modaltune.adapters.modal_adapter.gate_diagnostics`)."""
        from modaltune.adapters.modal_adapter import gate_diagnostics

        return gate_diagnostics(self.adapter)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
