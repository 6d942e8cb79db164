"""``modaltune``: the Modal Adapter on a frozen slide encoder with text-embedded multi-task learning.

Ramanathan et al., "ModalTune", ICCV 2025 (shared/docs/MODALTUNE.md; docs/modaltune.md). The
model lives in :mod:`modaltune.modaltune`; this module turns method params into it.

Params (defaults in brackets):

- ``backbone`` [small_transformer]: slide encoder name (``gigapath`` | ``titan`` |
  ``small_transformer``); ``backbone_params`` [{}]: constructor kwargs (``in_dim`` defaults to the
  cohort's patch-feature width); ``checkpoint`` [None] / ``random_init`` [False]: gigapath / titan
  need a local checkpoint or an explicit ``random_init: true`` (recorded as
  ``model.backbone.weights_source``); ``grad_checkpointing`` [False].
- ``groups`` [paper groups for gigapath/titan, else up to 3 equal groups; the first may start at a
  layer k > 0: layers before it are the frozen prefix, run without autograd and cached at
  evaluation]; ``attn_dim`` / ``heads``
  [192 / 12 for gigapath/titan, else 64 / 4]; ``ffn_dim`` [192 | 64]; ``extra_extractors`` [2];
  ``drop_path`` [0.1].
- modal tokens: ``omics_tokens`` [{}]: omics block -> ``pathways`` | ``block`` | ``none`` (default:
  ``pathways`` when pathway lists exist for the block, else ``block``); ``pathways`` [None]: pathway
  lists for ``pathway_omics`` when the run has none from ``data.pathways`` (the preferred place: it is
  resolved relative to the config file and tokenised by the preprocessor): ``builtin`` (the
  simulator's list) or a CSV/GMT file, absolute or relative to the working directory (a missing
  file is a ConfigError; giving both is a ConfigError); ``pathway_omics`` [rna]; ``gene_mixer`` [{}]:
  ``token_dim`` 256, ``n_blocks`` 3, ``channel_hidden`` 128, ``dropout`` 0.25, ``n_compress`` None
  (paper 64); ``block_tokens`` [4]; ``use_clinical`` [True]; ``clinical_fields`` [None = all declared
  fields; the paper used age, stage, T, N, M: list them, because a cohort may also declare fields
  that restate a label, e.g. ``primary_diagnosis`` for the BRCA IDC/ILC subtype]; ``use_report`` [True].
- ``out_dim`` [256]; ``fusion`` [sum; concat for titan].
- objectives: ``kl`` [1.0], ``supervised`` [1.0], ``text_cls`` [0.0], ``kl_scale`` [10],
  ``kl_temperature`` [1.0], ``text_temperature`` [0.07], ``templates`` [{}: task -> a template
  name (general | diagnosis | survival | staging) or a fragment list such as ``[location, stage,
  survival]``]; ``sentence_fields`` [{}: stage/t/n/m -> record column]; ``cls_output``
  [auto]; ``survival_head`` [discrete]; ``alpha`` [0.0]; ``projector_seed`` [0].
- ``text_model`` [None = packaged all-MiniLM-L6-v2]; ``cache_embed`` [True], ``cache_mb`` [1024]: the
  evaluation cache of the frozen prefix (``adapter.embed`` outputs, MiB of tokens).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from modaltune.errors import ConfigError
from modaltune.methods.registry import register_method

__all__ = ["build_modaltune", "build_slide_fm", "default_groups"]

_KEYS = {
    "backbone", "backbone_params", "checkpoint", "random_init", "grad_checkpointing", "groups", "attn_dim", "heads", "ffn_dim",
    "extra_extractors", "drop_path", "omics_tokens", "pathways", "pathway_omics", "gene_mixer", "block_tokens", "use_clinical",
    "use_report", "clinical_fields", "out_dim", "fusion", "kl", "supervised", "text_cls", "kl_scale", "kl_temperature", "text_temperature", "templates", "sentence_fields",
    "cls_output", "survival_head", "alpha", "projector_seed", "text_model", "cache_embed", "cache_mb",
}
_FOUNDATION = ("gigapath", "titan")


def default_groups(backbone: str, num_layers: int) -> list[list[int]]:
    """Paper groups for gigapath / titan; otherwise ``min(3, L)`` contiguous near-equal groups."""
    from modaltune.adapters.modal_adapter import PAPER_GROUPS

    if backbone in PAPER_GROUPS and PAPER_GROUPS[backbone][-1][-1] == num_layers - 1:
        return [list(g) for g in PAPER_GROUPS[backbone]]
    g = max(1, min(3, num_layers))
    bounds = [round(i * num_layers / g) for i in range(g + 1)]
    return [[bounds[i], bounds[i + 1] - 1] for i in range(g)]


def _pathway_tokens_for(info: Any, omics: str, source: Any):
    """Pathway tokens of omics block ``omics``: the cohort's (``data.pathways``, tokenised by the
    preprocessor) or the method's ``pathways`` source; giving both is a ConfigError (one source of
    truth, nothing silently ignored)."""
    pw = (getattr(info, "pathways", None) or {}).get(omics)
    if pw is not None and source is not None:
        raise ConfigError(f"pathway lists for '{omics}' are given twice: data.pathways and method.params.pathways={source!r}",
                          where="method.params.pathways", fix="keep data.pathways (resolved relative to the config file) and drop the method's pathways")
    if pw is not None:
        return pw
    if source is None:
        return None
    from modaltune.data.omics import tokenize_pathways

    if source == "builtin":
        from modaltune.data.simulate import builtin_pathways

        source = builtin_pathways()
    elif isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(f"pathway file {str(source)!r} not found (a relative path is read from the working directory {Path.cwd()})",
                              where="method.params.pathways",
                              fix=f"set data.pathways: {{{omics}: <file>}} (relative to the config file) instead, or give an absolute path, or 'builtin'")
        source = path
    return tokenize_pathways(source, list(info.omics_feature_names[omics]))


@register_method("modaltune", kind="torch", modalities=("slide", "omics", "clinical", "text"),
                 description="ModalTune: Modal Adapter on a frozen slide encoder + text-embedded multi-task objectives")
def build_modaltune(info: Any, **params: Any):
    """Build a :class:`~modaltune.modaltune.model.ModalTuneModel` for ``info``; params in the module docstring."""
    from modaltune.adapters.modal_adapter import ModalAdapter
    from modaltune.encoders.fusion import clinical_modality_name
    from modaltune.encoders.slide import create_slide_encoder
    from modaltune.modaltune.model import ModalTuneModel, Objectives
    from modaltune.modaltune.text_targets import get_text_encoder
    from modaltune.modaltune.tokens import ClinicalTokenSet, ModalTokenizer, OmicsBlockTokenSet, PathwayTokenSet, ReportTextTokenSet, clinical_columns

    unknown = set(params) - _KEYS
    if unknown:
        raise ConfigError(f"unknown modaltune parameter(s) {sorted(unknown)}", where="method.params", fix=f"use some of {sorted(_KEYS)}")
    if not getattr(info, "slide_dim", None):
        raise ConfigError("modaltune adapts a slide encoder but the cohort/run has no slide modality", where="method.modalities", fix="include the slide modality")
    name = params.get("backbone", "small_transformer")
    foundation = name in _FOUNDATION
    bparams = {"in_dim": int(info.slide_dim), **dict(params.get("backbone_params") or {})}
    if name == "small_transformer":
        bparams = {"embed_dim": 64, "depth": 3, "num_heads": 4, **bparams}
    if name == "titan" and "patch_size_level0" not in bparams:
        bparams["patch_size_level0"] = 512
    backbone = create_slide_encoder(name, checkpoint=params.get("checkpoint"), random_init=bool(params.get("random_init", False)), **bparams)
    if params.get("grad_checkpointing"):
        backbone.set_grad_checkpointing(True)
    groups = params.get("groups") or default_groups(name, int(backbone.num_layers))
    try:
        adapter = ModalAdapter(
            backbone,
            groups,
            attn_dim=int(params.get("attn_dim", 192 if foundation else 64)),
            heads=int(params.get("heads", 12 if foundation else 4)),
            ffn_dim=int(params.get("ffn_dim", 192 if foundation else 64)),
            extra_extractors=int(params.get("extra_extractors", 2)),
            drop_path=float(params.get("drop_path", 0.1)),
        )
    except ValueError as exc:
        raise ConfigError(str(exc), where="method.params.groups/attn_dim/heads",
                          fix=f"use contiguous inclusive groups ending at layer {int(backbone.num_layers) - 1} and attn_dim divisible by heads") from exc
    d = adapter.dim
    text_model = params.get("text_model")
    text_dim = int(get_text_encoder(text_model).dim)

    # modal token sets
    sets = []
    otok = dict(params.get("omics_tokens") or {})
    gm = dict(params.get("gene_mixer") or {})
    pw_omics = params.get("pathway_omics", "rna")
    for om, g in dict(info.omics_dims).items():
        pw_source = params.get("pathways") if om == pw_omics else None
        pw = _pathway_tokens_for(info, om, pw_source)
        mode = otok.get(om, "pathways" if pw is not None else "block")
        if mode == "none":
            continue
        if mode == "pathways":
            if pw is None:
                raise ConfigError(f"omics block '{om}' has no pathway lists for pathway tokens", where="method.params.omics_tokens",
                                  fix="set pathways: <pathway CSV/GMT> (or 'builtin' for simulated cohorts), or omics_tokens: {%s: block}" % om)
            sets.append(PathwayTokenSet(om, int(g), pw.gene_index, getattr(pw, "names", None), d, **gm))
        elif mode == "block":
            sets.append(OmicsBlockTokenSet(om, int(g), d, n_tokens=int(params.get("block_tokens", 4))))
        else:
            raise ConfigError(f"unknown omics token mode '{mode}' for '{om}'", where="method.params.omics_tokens", fix="use pathways, block or none")
    if params.get("use_clinical", True) and int(getattr(info, "clinical_dim", 0) or 0) > 0:
        cols = clinical_columns(info.clinical_feature_names, params.get("clinical_fields"))
        sets.append(ClinicalTokenSet(clinical_modality_name(info), int(info.clinical_dim), d, columns=cols))
    if params.get("use_report", True) and getattr(info, "text", False):
        sets.append(ReportTextTokenSet(getattr(info, "text_modality", None) or "text", text_dim, d, text_model))
    tokenizer = ModalTokenizer(sets)

    objectives = Objectives(
        kl=float(params.get("kl", 1.0)),
        supervised=float(params.get("supervised", 1.0)),
        text_cls=float(params.get("text_cls", 0.0)),
        kl_scale=float(params.get("kl_scale", 10.0)),
        kl_temperature=float(params.get("kl_temperature", 1.0)),
        text_temperature=float(params.get("text_temperature", 0.07)),
        templates=dict(params.get("templates") or {}),
        sentence_fields=dict(params.get("sentence_fields") or {}),
    )
    model = ModalTuneModel(
        info,
        adapter,
        tokenizer,
        text_dim=text_dim,
        text_model=text_model,
        out_dim=int(params.get("out_dim", 256)),
        fusion=params.get("fusion", "concat" if name == "titan" else "sum"),
        objectives=objectives,
        cls_output=params.get("cls_output", "auto"),
        survival_head=params.get("survival_head", "discrete"),
        alpha=float(params.get("alpha", 0.0)),
        projector_seed=int(params.get("projector_seed", 0)),
        cache_embed=bool(params.get("cache_embed", True)),
        cache_mb=float(params.get("cache_mb", 1024.0)),
    )
    model.weights_source = getattr(backbone, "weights_source", "random_init")
    return model


def _slide_fm_encoder(info: Any, backbone: str, checkpoint: Any, random_init: bool, tune: bool, backbone_params: dict, grad_checkpointing: bool):
    import torch
    from torch import nn

    from modaltune.encoders.slide import create_slide_encoder

    bparams = {"in_dim": int(info.slide_dim), **backbone_params}
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
                f, c, pad = s["features"][rows, :n].float(), s["coords"][rows, :n], ~mask[rows, :n]
                with torch.set_grad_enabled(torch.is_grad_enabled() and self.tune):
                    e = self.backbone(f, c, padding_mask=pad if bool(pad.any()) else None)
                out = out.index_put((rows,), e)
            return out

    return SlideFMEncoder()


@register_method("slide_fm", kind="torch", modalities=("slide",),
                 description="slide foundation model embedding + heads: frozen (linear probe) or tuned (ModalTune paper comparison rows)")
def build_slide_fm(info: Any, **params: Any):
    """Params: ``backbone`` (small_transformer | gigapath | titan), ``checkpoint`` / ``random_init``
    (foundation models need one), ``tune`` (False = frozen backbone, linear heads only),
    ``backbone_params``, ``grad_checkpointing`` + head/loss params (``survival_head``, ``alpha`` ...)."""
    from modaltune.methods._torch_common import split_params, wrap

    model_params, enc = split_params(params)
    allowed = {"backbone", "checkpoint", "random_init", "tune", "backbone_params", "grad_checkpointing"}
    unknown = set(enc) - allowed
    if unknown:
        raise ConfigError(f"unknown slide_fm parameter(s) {sorted(unknown)}", where="method.params", fix=f"use some of {sorted(allowed)}")
    if not getattr(info, "slide_dim", None):
        raise ConfigError("slide_fm needs the slide modality", where="method.modalities", fix="include the slide modality")
    e = _slide_fm_encoder(info, enc.get("backbone", "small_transformer"), enc.get("checkpoint"), bool(enc.get("random_init", False)),
                          bool(enc.get("tune", False)), dict(enc.get("backbone_params") or {}), bool(enc.get("grad_checkpointing", False)))
    model = wrap(info, e, model_params, "slide_fm")
    model.weights_source = e.backbone.weights_source
    return model
