"""``modaltune``: the Modal Adapter on a frozen slide encoder with text-embedded multi-task learning.

Ramanathan et al., "ModalTune", ICCV 2025 (shared/docs/MODALTUNE.md; docs/modaltune.md). The
model lives in :mod:`modaltune.modaltune`; this module turns method params into it.

Parameters: :class:`ModalTuneParams` (``modaltune methods --params modaltune`` prints them).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from modaltune.encoders.slide.precision import SLIDE_PRECISIONS, SlidePrecision
from modaltune.errors import ConfigError
from modaltune.methods._torch_common import HeadParams
from modaltune.methods.base import MethodParams
from modaltune.methods.omics_token_plan import BlockTokens, plan_omics_tokens
from modaltune.methods.registry import register_method
from modaltune.methods.requirements import DataProblem, modaltune_omics_tokens

__all__ = ["ModalTuneParams", "PAPER_PROTOCOL", "VARIANT_LABELS", "resolve_protocol", "SlideFMParams", "build_modaltune", "build_slide_fm", "default_groups"]

_FOUNDATION = ("gigapath", "titan")


class _BackboneParams(MethodParams):
    """The slide encoder a method starts from (shared by ``modaltune`` and ``slide_fm``)."""

    backbone: str = Field("small_transformer", description="slide encoder: small_transformer, gigapath or titan")
    backbone_params: dict[str, Any] = Field(default_factory=dict, description="slide-encoder constructor arguments (in_dim defaults to the patch-feature width)")
    checkpoint: str | Path | None = Field(None, description="local weights of the backbone (gigapath / titan need one, or random_init)")
    random_init: bool = Field(False, description="build gigapath / titan without weights (tests; recorded as weights_source)")
    grad_checkpointing: bool = Field(False, description="activation checkpointing in the backbone")
    backbone_precision: SlidePrecision = Field(
        "fp32", validate_default=True,
        description="storage precision of the frozen backbone: fp32, or bf16-weights (weights cast to bfloat16 once; trainable params stay float32; "
                    "a labelled fast path with a bf16 error bound, docs/modaltune.md); backbone_params.precision is read as the same setting")

    @field_validator("backbone_params")
    @classmethod
    def _precision_in_backbone_params(cls, v: dict[str, Any]) -> dict[str, Any]:
        """``backbone_params.precision`` (the pass-through spelling documented first) is checked like the typed field."""
        if "precision" in v and v["precision"] not in SLIDE_PRECISIONS:
            raise ValueError(f"precision {v['precision']!r} is not one of {', '.join(SLIDE_PRECISIONS)} (set backbone_precision instead)")
        return v

    @field_validator("backbone_precision")
    @classmethod
    def _one_precision(cls, v: str, info: ValidationInfo) -> str:
        """The effective precision: ``backbone_params.precision`` when only it says anything (the typed field
        at its default), and a refusal when the two disagree."""
        other = (info.data.get("backbone_params") or {}).get("precision")
        if other is None or other == v:
            return v
        if v == "fp32":
            return str(other)
        raise ValueError(f"{v!r} disagrees with backbone_params.precision {other!r}; give the precision once")


class ModalTuneParams(_BackboneParams):
    """Parameters of ``modaltune``: one place for names, types, defaults and meanings."""

    groups: list[list[int]] | None = Field(None, description="inclusive layer groups [first, last] (None: paper groups for gigapath/titan, else up to 3 equal groups; layers before the first group are a frozen prefix)")
    attn_dim: int | None = Field(None, description="adapter attention width (None: 192 for gigapath/titan, else 64)")
    heads: int | None = Field(None, description="adapter attention heads (None: 12 for gigapath/titan, else 4)")
    ffn_dim: int | None = Field(None, description="adapter feed-forward width (None: 192 for gigapath/titan, else 64)")
    extra_extractors: int = Field(2, description="extra extractor blocks after the last group")
    extractors: bool = Field(True, description="ablation: False = no extractor blocks (the modal tokens never read the patch tokens)")
    drop_path: float = Field(0.1, description="drop-path (stochastic depth) rate on the extractors' attention and FFN branches (0 = off)")
    prompt_attn_dim: int | None = Field(None, description="width of the prompt self-attention over modal tokens (0: full width; None: by protocol, custom full width, paper 192)")
    shared_fusion: bool | None = Field(None, description="one fusion projection for all tasks (paper) instead of one per task (None: by protocol, custom False)")
    general_task: bool | None = Field(None, description="(None: by protocol, custom False) add the paper's General task (KL to the site + diagnosis + stage/TNM + survival sentence; selects the epoch)")
    lr_mult: dict[str, float] = Field(default_factory=dict, description="learning-rate multiplier per parameter group: gates, injectors, extractors, tokens, other (default 1)")
    gate_init: Literal["zero", "constant", "normal"] = Field("zero", description="injector gate initialisation: zero (paper), constant (= gate_init_value) or normal (std gate_init_value)")
    gate_init_value: float = Field(0.0, description="the constant or the std of gate_init")
    select_epoch: Literal["last", "val_probe"] | None = Field(None, description="(None: by protocol, custom last) last epoch, or the epoch with the best validation probe score (paper; needs validation patients)")
    protocol: Literal["custom", "paper", "paper+sup"] = Field("custom", description="paper: the paper's method (KL only, General task, shared fusion, 192-d prompt attention, epoch by validation probes); paper+sup: the same plus supervised heads; explicit params override")
    omics_tokens: dict[str, str] = Field(default_factory=dict, description="omics block -> pathways | block | none (default: pathways when the block has pathway lists, else block)")
    pathways: str | Path | None = Field(None, description="pathway lists for pathway_omics when the run has none from data.pathways: 'builtin' or a CSV/GMT file")
    pathway_omics: str = Field("rna", description="the omics block the pathways parameter applies to")
    gene_mixer: dict[str, Any] = Field(default_factory=dict, description="Gene Mixer arguments of pathway tokens (token_dim 256, n_blocks 3, channel_hidden 128, dropout 0.25, n_compress None)")
    block_tokens: int = Field(4, description="tokens per omics block in block mode")
    use_clinical: bool = Field(True, description="clinical fields as modal tokens")
    clinical_fields: list[str] | None = Field(None, description="clinical fields to tokenise (None: every declared field; list them when a field restates a label)")
    use_report: bool = Field(True, description="the report text as a modal token")
    out_dim: int = Field(256, description="width of each task embedding")
    fusion: Literal["sum", "concat"] | None = Field(None, description="how slide and modal outputs combine (None: concat for titan, else sum)")
    kl: float = Field(1.0, description="weight of the KL objective to the text targets")
    targets: Literal["text", "onehot"] = Field("text", description="KL targets: text (label sentences through the text encoder; paper) or onehot (ablation: one fixed random direction per distinct sentence, no similarity between labels)")
    supervised: float | None = Field(None, description="weight of the supervised task losses (None: by protocol, custom 1, paper 0)")
    text_cls: float = Field(0.0, description="weight of the text-embedded classification objective")
    kl_scale: float = Field(10.0, description="scale of the KL objective")
    kl_temperature: float = Field(1.0, description="temperature of the KL objective")
    text_temperature: float = Field(0.07, description="temperature of the text-classification logits")
    templates: dict[str, Any] = Field(default_factory=dict, description="task -> sentence template name (general | diagnosis | survival | staging) or fragment list")
    sentence_fields: dict[str, str] = Field(default_factory=dict, description="stage/t/n/m -> record column used in the sentences")
    cls_output: str = Field("auto", description="which head produces class outputs (auto, head or text)")
    survival_head: str = Field("discrete", description="survival head: discrete or cox")
    alpha: float = Field(0.0, description="weight of uncensored patients in the discrete-time NLL")
    projector_seed: int = Field(0, description="seed of the fixed text projector")
    text_model: str | None = Field(None, description="sentence encoder (None: the packaged all-MiniLM-L6-v2)")
    cache_embed: bool = Field(True, description="cache the frozen prefix outputs at evaluation")
    cache_mb: float = Field(1024.0, description="size of that cache in MiB of tokens")


#: what ``protocol: paper`` sets (params the user gives explicitly win)
PAPER_PROTOCOL: dict[str, Any] = {"supervised": 0.0, "general_task": True, "shared_fusion": True, "prompt_attn_dim": 192, "select_epoch": "val_probe"}
#: what ``protocol: custom`` sets (the defaults before issue 17; existing configs unchanged)
CUSTOM_PROTOCOL: dict[str, Any] = {"supervised": 1.0, "general_task": False, "shared_fusion": False, "prompt_attn_dim": 0, "select_epoch": "last"}
#: the variant label tables print per protocol
VARIANT_LABELS = {"paper": "modaltune (paper: KL only)", "paper+sup": "modaltune+sup", "custom": "modaltune"}


def resolve_protocol(p: ModalTuneParams) -> ModalTuneParams:
    """Fill the protocol-dependent params left at None: ``custom`` = :data:`CUSTOM_PROTOCOL` (the
    pre-issue-17 behaviour), ``paper`` = :data:`PAPER_PROTOCOL`, ``paper+sup`` = the paper's with
    ``supervised: 1``. Params given explicitly (not None) are kept."""
    if p.protocol == "custom":
        preset = dict(CUSTOM_PROTOCOL)
    else:
        preset = dict(PAPER_PROTOCOL, **({"supervised": 1.0} if p.protocol == "paper+sup" else {}))
        if p.backbone not in _FOUNDATION:
            preset["prompt_attn_dim"] = p.attn_dim or 64  # small backbones: the compressed width of their adapter
    upd = {k: v for k, v in preset.items() if getattr(p, k) is None}
    return p.model_copy(update=upd)


class SlideFMParams(_BackboneParams, HeadParams):
    """Parameters of ``slide_fm`` (+ the head/loss parameters of :class:`HeadParams`)."""

    tune: bool = Field(False, description="False: frozen backbone, linear heads only (a probe); True: tune the backbone")


def default_groups(backbone: str, num_layers: int) -> list[list[int]]:
    """Paper groups for gigapath / titan; otherwise ``min(3, L)`` contiguous near-equal groups."""
    from modaltune.adapters.modal_adapter import PAPER_GROUPS

    if backbone in PAPER_GROUPS and PAPER_GROUPS[backbone][-1][-1] == num_layers - 1:
        return [list(g) for g in PAPER_GROUPS[backbone]]
    g = max(1, min(3, num_layers))
    bounds = [round(i * num_layers / g) for i in range(g + 1)]
    return [[bounds[i], bounds[i + 1] - 1] for i in range(g)]


def _omics_token_sources(info: Any, p: ModalTuneParams) -> list[tuple[BlockTokens, Any]]:
    """The omics token plan of ``p`` on ``info`` (:func:`~modaltune.methods.omics_token_plan.plan_omics_tokens`,
    the plan the load-time check refuses with), each block with its pathway tokens: the preprocessor's
    (``data.pathways``), ``params.pathways`` tokenised over the block's features, or None. A refused
    plan is a :class:`ConfigError` with the load-time line."""
    from modaltune.data.omics import tokenize_pathways

    cohort_pw = getattr(info, "pathways", None) or {}
    try:
        plan = plan_omics_tokens(p, list(info.omics_dims), dict.fromkeys(cohort_pw, ""))
    except DataProblem as exc:
        raise ConfigError(f"method 'modaltune' {exc.problem}", fix=exc.fix or None) from exc
    out = []
    for bt in plan.blocks:
        if bt.source == "data":
            out.append((bt, cohort_pw[bt.block]))
        elif bt.source == "params":
            out.append((bt, tokenize_pathways(plan.params_membership(), list(info.omics_feature_names[bt.block]))))
        else:
            out.append((bt, None))
    return out


@register_method("modaltune", kind="torch", modalities=("slide", "omics", "clinical", "text"), requires=("slide",), params=ModalTuneParams,
                 check_data=modaltune_omics_tokens,
                 description="ModalTune: Modal Adapter on a frozen slide encoder + text-embedded multi-task objectives")
def build_modaltune(info: Any, **params: Any):
    """Build a :class:`~modaltune.modaltune.model.ModalTuneModel` for ``info``; params: :class:`ModalTuneParams`
    (validated, every default filled in; ``None`` values resolve per backbone here)."""
    from modaltune.adapters.modal_adapter import ModalAdapter
    from modaltune.encoders.fusion import clinical_modality_name
    from modaltune.encoders.slide import create_slide_encoder
    from modaltune.modaltune.model import ModalTuneModel, Objectives
    from modaltune.modaltune.text_targets import get_text_encoder
    from modaltune.modaltune.tokens import ClinicalTokenSet, ModalTokenizer, OmicsBlockTokenSet, PathwayTokenSet, ReportTextTokenSet, clinical_columns

    if not getattr(info, "slide_dim", None):
        raise ConfigError("modaltune adapts a slide encoder but the cohort/run has no slide modality", where="method.modalities", fix="include the slide modality")
    p = resolve_protocol(ModalTuneParams(**params))
    name = p.backbone
    foundation = name in _FOUNDATION
    bparams = {"in_dim": int(info.slide_dim), **dict(p.backbone_params), "precision": p.backbone_precision}
    if name == "small_transformer":
        bparams = {"embed_dim": 64, "depth": 3, "num_heads": 4, **bparams}
    if name == "titan" and "patch_size_level0" not in bparams:
        bparams["patch_size_level0"] = 512
    # bf16-weights: the frozen backbone's weights are bfloat16 from here on; the adapter built below (and every
    # other trainable parameter) stays float32, and reads the backbone's bf16 tokens in float32 (ModalAdapter.forward)
    backbone = create_slide_encoder(name, checkpoint=p.checkpoint, random_init=p.random_init, **bparams)
    if p.grad_checkpointing:
        backbone.set_grad_checkpointing(True)
    groups = p.groups or default_groups(name, int(backbone.num_layers))
    try:
        adapter = ModalAdapter(
            backbone,
            groups,
            attn_dim=(192 if foundation else 64) if p.attn_dim is None else p.attn_dim,
            heads=(12 if foundation else 4) if p.heads is None else p.heads,
            ffn_dim=(192 if foundation else 64) if p.ffn_dim is None else p.ffn_dim,
            extra_extractors=p.extra_extractors,
            drop_path=p.drop_path,
            prompt_attn_dim=p.prompt_attn_dim or None,
            gate_init=p.gate_init,
            gate_value=p.gate_init_value,
            gate_seed=p.projector_seed,
            use_extractors=p.extractors,
        )
    except ValueError as exc:
        raise ConfigError(str(exc), where="method.params.groups/attn_dim/heads",
                          fix=f"use contiguous inclusive groups ending at layer {int(backbone.num_layers) - 1} and attn_dim divisible by heads") from exc
    d = adapter.dim
    text_model = p.text_model
    text_dim = int(get_text_encoder(text_model).dim)

    # modal token sets
    sets = []
    gm = dict(p.gene_mixer)
    for bt, pw in _omics_token_sources(info, p):
        if bt.mode == "pathways":
            sets.append(PathwayTokenSet(bt.block, int(info.omics_dims[bt.block]), pw.gene_index, getattr(pw, "names", None), d, **gm))
        elif bt.mode == "block":
            sets.append(OmicsBlockTokenSet(bt.block, int(info.omics_dims[bt.block]), d, n_tokens=p.block_tokens))
    if p.use_clinical and int(getattr(info, "clinical_dim", 0) or 0) > 0:
        cols = clinical_columns(info.clinical_feature_names, p.clinical_fields)
        sets.append(ClinicalTokenSet(clinical_modality_name(info), int(info.clinical_dim), d, columns=cols))
    if p.use_report and getattr(info, "text", False):
        sets.append(ReportTextTokenSet(getattr(info, "text_modality", None) or "text", text_dim, d, text_model))
    tokenizer = ModalTokenizer(sets)

    objectives = Objectives(
        kl=p.kl,
        supervised=p.supervised,
        text_cls=p.text_cls,
        kl_scale=p.kl_scale,
        kl_temperature=p.kl_temperature,
        text_temperature=p.text_temperature,
        templates=dict(p.templates),
        sentence_fields=dict(p.sentence_fields),
    )
    model = ModalTuneModel(
        info,
        adapter,
        tokenizer,
        text_dim=text_dim,
        text_model=text_model,
        out_dim=p.out_dim,
        fusion=p.fusion or ("concat" if name == "titan" else "sum"),
        objectives=objectives,
        cls_output=p.cls_output,
        survival_head=p.survival_head,
        alpha=p.alpha,
        projector_seed=p.projector_seed,
        cache_embed=p.cache_embed,
        cache_mb=p.cache_mb,
        shared_fusion=p.shared_fusion,
        general_task=p.general_task,
        lr_mult=dict(p.lr_mult),
        select_epoch=p.select_epoch,
        variant=VARIANT_LABELS[p.protocol],
        targets=p.targets,
    )
    model.weights_source = getattr(backbone, "weights_source", "random_init")
    return model


def _slide_fm_encoder(info: Any, backbone: str, checkpoint: Any, random_init: bool, tune: bool, backbone_params: dict, grad_checkpointing: bool,
                     precision: str = "fp32"):
    import torch
    from torch import nn

    from modaltune.encoders.slide import create_slide_encoder

    if tune and precision != "fp32":
        raise ConfigError(f"backbone_precision {precision!r} freezes the backbone in bfloat16 but tune: true would train it",
                          where="method.params.backbone_precision", fix="use backbone_precision: fp32 to tune the backbone, or tune: false")
    bparams = {"in_dim": int(info.slide_dim), **backbone_params, "precision": precision}
    if backbone == "small_transformer":
        bparams = {"embed_dim": 64, "depth": 3, "num_heads": 4, **bparams}
    if backbone == "titan" and "patch_size_level0" not in bparams:
        bparams["patch_size_level0"] = 512
    enc = create_slide_encoder(backbone, checkpoint=checkpoint, random_init=random_init, **bparams)
    if grad_checkpointing:
        enc.set_grad_checkpointing(True)
    slide_key = getattr(info, "slide_modality", None) or "slide"

    class SlideFMEncoder(nn.Module):
        """Slide foundation model as a batch encoder: ``batch -> (B, embed_dim)`` pooled slide embedding;
        frozen (``tune=False``: only the heads learn, a linear probe trained by the engine) or tuned."""

        def __init__(self):
            super().__init__()
            self.backbone = enc
            self.out_dim = int(enc.embed_dim)
            self.tune = tune
            self.missing = nn.Parameter(torch.zeros(self.out_dim))
            if not tune:
                for p in enc.parameters():
                    p.requires_grad_(False)

        def train(self, mode: bool = True):
            super().train(mode)
            if not self.tune:
                self.backbone.eval()
            return self

        def forward(self, batch: dict) -> torch.Tensor:
            s = batch["slide"]
            mask = s["mask"].bool()
            present = mask.any(1)
            mm = batch.get("modality_mask") or {}
            if slide_key in mm:
                present = present & mm[slide_key].to(present.device).bool()
            B = mask.shape[0]
            out = self.missing[None].expand(B, -1)
            rows = present.nonzero(as_tuple=True)[0]
            if rows.numel():
                n = int(mask[rows].sum(1).max())
                f, c, m = s["features"][rows, :n].float(), s["coords"][rows, :n], mask[rows, :n]
                with torch.set_grad_enabled(torch.is_grad_enabled() and self.tune):
                    e = self.backbone(f, c, mask=None if bool(m.all()) else m)
                out = out.index_put((rows,), e)
            return out

    return SlideFMEncoder()


@register_method("slide_fm", kind="torch", modalities=("slide",),
                 requires=("slide",), params=SlideFMParams,
                 description="slide foundation model embedding + heads: frozen (linear probe) or tuned (ModalTune paper comparison rows)")
def build_slide_fm(info: Any, **params: Any):
    """Params: :class:`SlideFMParams` (validated, defaults filled)."""
    from modaltune.methods._torch_common import split_params, wrap

    model_params, enc = split_params(params)
    if not getattr(info, "slide_dim", None):
        raise ConfigError("slide_fm needs the slide modality", where="method.modalities", fix="include the slide modality")
    e = _slide_fm_encoder(info, enc.get("backbone", "small_transformer"), enc.get("checkpoint"), bool(enc.get("random_init", False)),
                          bool(enc.get("tune", False)), dict(enc.get("backbone_params") or {}), bool(enc.get("grad_checkpointing", False)),
                          str(enc.get("backbone_precision", "fp32")))
    model = wrap(info, e, model_params, "slide_fm")
    model.weights_source = e.backbone.weights_source
    return model
