"""``survpath``: SurvPath (Jaume et al., CVPR 2024; mahmoodlab/SurvPath ``models/model_SurvPath.py``).

Tokens of one patient: P biological-pathway tokens and N histology tokens, all of width d = 256.

- Pathway token i: its own SNN over the genes of pathway i, ``[Linear(n_i -> 256), ELU,
  AlphaDropout(0.25)] x 2`` (the official ``sig_networks``). The gene lists are the cohort's
  pathway tokens (``data.pathways``, e.g. shared/data/pathways/combine_comps.csv: 281 Reactome +
  50 Hallmark), matched to the omics block's genes by :func:`modaltune.data.omics.tokenize_pathways`
  (pathways without any gene in the table are dropped and reported; the coverage table is written
  to the run folder by the engine).
- Histology token j: ``Linear(D -> 256)`` of patch feature j (``wsi_projection_net``).

One masked multimodal attention layer (``cross_attender``; LayerNorm(256) then single-head
attention with ``to_qkv = Linear(256 -> 3*128, bias=False)``, no output projection, no residual),
with x = [pathways; histology], q, k, v = split(W x), q scaled by 128^-1/2::

    out_P = softmax([q_P k_P^T , q_P k_H^T]) [v_P ; v_H]     # pathway -> pathway and -> histology
    out_H = softmax(q_H k_P^T) v_P                              # histology -> pathway only

No histology -> histology score is ever built (the official memory-efficient form: the (N, N)
block is never computed; :func:`survpath_attention_mask` spells out which pairs interact).
Then ``FeedForward(128)`` (LayerNorm, Linear, GELU, Dropout(0.1), Linear) and LayerNorm(128) on
every token, the mean of the pathway tokens and the mean of the valid histology tokens are
concatenated into the 256-d patient embedding, and the survival head is the official
``to_logits`` (Linear(256 -> 64), ReLU, Linear(64 -> K)): ``head_hidden = 64`` by default.

Padding and missing modalities (the official code runs one patient per batch and has neither):

- Padded / invalid patches (``batch["slide"]["mask"]`` False) are never keys of the pathway
  queries (score -inf before the softmax) and are left out of the histology mean; their own
  query rows are computed but never read.
- A patient without a slide (modality mask False, or no valid patch): pathway queries attend to
  the pathways only, and the histology half of the embedding is a learned missing vector (128-d).
- A patient without the omics block: its P pathway tokens are P learned "missing pathway" tokens
  (one per pathway, so the histology queries still see P distinct keys and the slide still
  informs the embedding); the per-pathway SNNs never read the zero-filled input.
- A patient missing both gets a constant embedding (only the learned vectors).

The learned missing-modality parameters live outside the official layout (``encoder.missing_*``);
:func:`load_official_state_dict` loads an official SurvPath checkpoint strictly into the rest.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from modaltune.encoders.fusion import _omics_reader, _slide_reader, slide_modality_name
from modaltune.errors import ConfigError, InputError
from modaltune.layers.missing import MissingModalityEmbedding, masked_mean
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.registry import register_method
from modaltune.methods.requirements import pathway_block

__all__ = [
    "FeedForward",
    "MMAttention",
    "MMAttentionLayer",
    "SurvPathEncoder",
    "SurvPathNet",
    "SurvPathParams",
    "build_survpath",
    "load_official_state_dict",
    "survpath_attention_mask",
]


class SurvPathParams(HeadParams):
    """Parameters of ``survpath`` (defaults = the official ``SurvPath(...)`` defaults; + :class:`HeadParams`)."""

    omics: str | None = Field(None, description="omics block with pathway lists (None: rna, or the only block with pathways)")
    wsi_projection_dim: int = Field(256, ge=2, description="token width d (patch projection and per-pathway SNN width)")
    heads: int = Field(1, ge=1, description="attention heads of the multimodal attention (official: 1)")
    dim_head: int | None = Field(None, ge=1, description="width of each head (None: d // 2 = 128, the official)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout of the feed-forward block (official 0.1)")
    snn_dropout: float = Field(0.25, ge=0.0, lt=1.0, description="AlphaDropout of the per-pathway SNNs (official 0.25)")
    head_hidden: int | None = Field(64, description="hidden width of the survival head (official to_logits: d // 4 = 64)")


# ------------------------------------------------------------------------------------ layers
def _snn_block(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    """Linear -> ELU -> AlphaDropout (the official ``SNN_Block``; PyTorch default init, as there)."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ELU(), nn.AlphaDropout(p=dropout))


class FeedForward(nn.Module):
    """LayerNorm -> Linear(d, d) -> GELU -> Dropout -> Linear(d, d); no residual (as the official)."""

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))


def survpath_attention_mask(n_pathways: int, patch_mask: torch.Tensor) -> torch.Tensor:
    """Which (query i, key j) pairs interact in SurvPath's attention, as an explicit boolean matrix.

    Token order is ``[P pathways ; N patches]``. ``allowed[b, i, j]`` is True iff

    - i and j are both pathways (pathway <-> pathway);
    - i is a pathway and j a valid patch (pathway -> histology);
    - i is a valid patch and j a pathway (histology -> pathway).

    Never patch -> patch; invalid (padded) patches are neither queries nor keys. A patient without
    a slide has every patch invalid, so only the pathway block is True. A patient without omics
    still has P (learned) pathway tokens, so its mask is that of any patient with its patches.

    Args:
        n_pathways: P.
        patch_mask: (B, N) bool, True = valid patch.

    Returns:
        (B, P + N, P + N) bool. :class:`MMAttention` never materialises it (memory ~ P (P + N));
        it is the specification the tests check the attention weights against.
    """
    valid = torch.as_tensor(patch_mask, dtype=torch.bool)
    B, N = valid.shape
    P = int(n_pathways)
    is_path = torch.cat([torch.ones(B, P, dtype=torch.bool, device=valid.device), torch.zeros(B, N, dtype=torch.bool, device=valid.device)], 1)
    is_patch = torch.cat([torch.zeros(B, P, dtype=torch.bool, device=valid.device), valid], 1)
    q_path, k_path = is_path[:, :, None], is_path[:, None, :]
    q_patch, k_patch = is_patch[:, :, None], is_patch[:, None, :]
    return (q_path & k_path) | (q_path & k_patch) | (q_patch & k_path)


class MMAttention(nn.Module):
    """Pathway/histology masked attention in the memory-efficient form (no histology x histology scores).

    Args:
        dim: token width d; ``heads``, ``dim_head``: inner width ``heads * dim_head`` (output width).
        n_pathways: P (the first P tokens are pathways).

    Shapes: ``x`` (B, P + N, dim), ``patch_mask`` (B, N) bool (True = valid) ->
    (B, P + N, heads * dim_head). With ``return_attn``: also the pathway-query weights
    (B, heads, P, P + N) and the histology-query weights (B, heads, N, P).
    """

    def __init__(self, dim: int, dim_head: int, heads: int, n_pathways: int):
        super().__init__()
        self.heads, self.dim_head, self.n_pathways = int(heads), int(dim_head), int(n_pathways)
        self.scale = self.dim_head ** -0.5
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)

    def forward(self, x: torch.Tensor, patch_mask: torch.Tensor, return_attn: bool = False):
        B, T, _ = x.shape
        P, h = self.n_pathways, self.heads
        if patch_mask.shape != (B, T - P):
            raise InputError(f"patch mask {tuple(patch_mask.shape)} does not match {T - P} histology tokens of {B} patients")
        q, k, v = (t.reshape(B, T, h, self.dim_head).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        q = q * self.scale
        q_p, k_p, v_p = q[:, :, :P], k[:, :, :P], v[:, :, :P]
        q_h, k_h = q[:, :, P:], k[:, :, P:]
        # pathway queries: one softmax over [pathways ; valid patches]; P >= 1 keys are always valid, so no NaN
        s_ph = (q_p @ k_h.transpose(-1, -2)).masked_fill(~patch_mask[:, None, None, :], float("-inf"))
        a_p = torch.cat([q_p @ k_p.transpose(-1, -2), s_ph], dim=-1).softmax(dim=-1)
        # histology queries: pathways only (the (N, N) block is never built)
        a_h = (q_h @ k_p.transpose(-1, -2)).softmax(dim=-1)
        out = torch.cat([a_p @ v, a_h @ v_p], dim=2).transpose(1, 2).reshape(B, T, h * self.dim_head)
        return (out, a_p, a_h) if return_attn else out


class MMAttentionLayer(nn.Module):
    """LayerNorm(dim) -> :class:`MMAttention` (the official ``cross_attender``; no residual)."""

    def __init__(self, dim: int, dim_head: int, heads: int, n_pathways: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = MMAttention(dim, dim_head, heads, n_pathways)

    def forward(self, x: torch.Tensor, patch_mask: torch.Tensor, return_attn: bool = False):
        return self.attn(self.norm(x), patch_mask, return_attn=return_attn)


# ------------------------------------------------------------------------------------ network
class SurvPathNet(nn.Module):
    """SurvPath with the official module names (``state_dict`` keys = mahmoodlab/SurvPath's).

    Args:
        omic_sizes: genes per pathway (n_1..n_P).
        wsi_embedding_dim: patch feature width D (official 1024).
        wsi_projection_dim: token width d (256); pathway SNNs are ``[d, d]`` wide.
        dropout: feed-forward dropout (0.1); ``snn_dropout``: AlphaDropout of the SNNs (0.25).
        heads, dim_head: attention heads (1) and head width (None: d // 2).
        num_classes: K outputs of the official ``to_logits`` (Linear(2 h dh -> d // 4), ReLU,
            Linear(-> K)); None leaves it out (the method uses a :class:`MultiTaskModel` head instead).
    """

    def __init__(self, omic_sizes: Sequence[int], wsi_embedding_dim: int = 1024, wsi_projection_dim: int = 256, *,
                 dropout: float = 0.1, snn_dropout: float = 0.25, heads: int = 1, dim_head: int | None = None,
                 num_classes: int | None = 4):
        super().__init__()
        sizes = [int(n) for n in omic_sizes]
        if not sizes or min(sizes) < 1:
            raise InputError(f"SurvPath needs at least one pathway with >= 1 gene, got sizes {sizes[:10]}", where="info.pathways")
        d = int(wsi_projection_dim)
        self.num_pathways = len(sizes)
        self.token_dim = d
        self.inner_dim = int(heads) * int(dim_head or d // 2)
        self.out_dim = 2 * self.inner_dim
        self.sig_networks = nn.ModuleList(nn.Sequential(_snn_block(n, d, snn_dropout), _snn_block(d, d, snn_dropout)) for n in sizes)
        self.wsi_projection_net = nn.Sequential(nn.Linear(int(wsi_embedding_dim), d))
        self.cross_attender = MMAttentionLayer(d, int(dim_head or d // 2), int(heads), self.num_pathways)
        self.feed_forward = FeedForward(self.inner_dim, dropout=dropout)
        self.layer_norm = nn.LayerNorm(self.inner_dim)
        if num_classes is not None:
            self.to_logits = nn.Sequential(nn.Linear(self.out_dim, d // 4), nn.ReLU(), nn.Linear(d // 4, int(num_classes)))

    def pathway_tokens(self, omic_list: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[(B, n_i)] * P -> (B, P, d)``: each pathway through its own SNN (a loop, as the official)."""
        return torch.stack([net(x) for net, x in zip(self.sig_networks, omic_list)], dim=1)

    def fuse(self, path_tokens: torch.Tensor, wsi: torch.Tensor, patch_mask: torch.Tensor, return_attn: bool = False):
        """Tokens -> ``(pathway mean (B, hd), histology mean (B, hd))`` [+ attention weights].

        ``path_tokens`` (B, P, d), ``wsi`` (B, N, D) patch features, ``patch_mask`` (B, N) True = valid.
        The histology mean is over valid patches (0 for a patient without any).
        """
        x = torch.cat([path_tokens, self.wsi_projection_net(wsi)], dim=1)
        res = self.cross_attender(x, patch_mask, return_attn=return_attn)
        out = res[0] if return_attn else res
        out = self.layer_norm(self.feed_forward(out))
        P = self.num_pathways
        path_emb = out[:, :P].mean(dim=1)
        hist_emb = masked_mean(out[:, P:], patch_mask)
        return (path_emb, hist_emb, res[1], res[2]) if return_attn else (path_emb, hist_emb)

    def forward(self, omic_list: Sequence[torch.Tensor], wsi: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Official forward (every patient has both modalities): hazard logits (B, K)."""
        if not hasattr(self, "to_logits"):
            raise ConfigError("this SurvPathNet was built without to_logits (num_classes=None)", where="SurvPathNet.forward",
                              fix="call fuse() and your own head, or build with num_classes")
        if patch_mask is None:
            patch_mask = torch.ones(wsi.shape[:2], dtype=torch.bool, device=wsi.device)
        p, hst = self.fuse(self.pathway_tokens(omic_list), wsi, patch_mask)
        return self.to_logits(torch.cat([p, hst], dim=1))


class SurvPathEncoder(nn.Module):
    """Batch encoder: ``forward(batch) -> (B, 2 * heads * dim_head)`` = [pathway mean ; histology mean].

    Args:
        net: :class:`SurvPathNet` built with ``num_classes=None``.
        gene_index: per pathway, int64 indices into the omics block's G columns.
        omics: the omics block name; ``slide_key``: the slide modality name in ``modality_mask``.
    """

    def __init__(self, net: SurvPathNet, gene_index: Sequence[np.ndarray], omics: str, slide_key: str = "slide"):
        super().__init__()
        self.net = net
        self.omics = omics
        self.out_dim = net.out_dim
        self._read_omics = _omics_reader([omics])
        self._read_slide = _slide_reader(slide_key)
        # gene indices are derived from the cohort's pathway file, not learned: not in the state dict
        for i, ix in enumerate(gene_index):
            self.register_buffer(f"_genes_{i}", torch.as_tensor(np.asarray(ix, dtype=np.int64)), persistent=False)
        # learned stand-ins for absent modalities (outside the official key layout)
        self.missing_pathway_tokens = nn.Parameter(torch.randn(net.num_pathways, net.token_dim))
        self.missing_histology = MissingModalityEmbedding(net.inner_dim)

    def _gene_index(self) -> list[torch.Tensor]:
        return [getattr(self, f"_genes_{i}") for i in range(self.net.num_pathways)]

    def tokens(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(pathway tokens (B, P, d), patch features (B, N, D), patch_mask (B, N), omics present (B,), slide present (B,))``."""
        x, has_omics = self._read_omics(batch)
        s, has_slide = self._read_slide(batch)
        patch_mask = s["mask"] & has_slide[:, None]
        B = x.shape[0]
        tok = self.missing_pathway_tokens.to(x.dtype).unsqueeze(0).expand(B, -1, -1)
        if bool(has_omics.any()):
            rows = has_omics.nonzero(as_tuple=True)[0]
            xr = x[rows]  # absent patients' zero-filled omics are never read
            tok = tok.index_put((rows,), self.net.pathway_tokens([xr[:, ix] for ix in self._gene_index()]))
        return tok, s["features"], patch_mask, has_omics, has_slide

    def forward(self, batch: dict) -> torch.Tensor:
        tok, feats, patch_mask, _, _ = self.tokens(batch)
        path_emb, hist_emb = self.net.fuse(tok, feats, patch_mask)
        return torch.cat([path_emb, self.missing_histology(hist_emb, patch_mask.any(1))], dim=1)

    def attention(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weights (B, P + N, P + N), allowed (B, P + N, P + N))`` of the first head, for interpretation and tests.

        ``weights[b, i, j]``: attention of query token i on key token j, assembled from the two
        computed blocks (histology -> histology entries and rows of invalid patches are 0: never
        computed / never read); ``allowed``: :func:`survpath_attention_mask`.
        """
        tok, feats, patch_mask, _, _ = self.tokens(batch)
        _, _, a_p, a_h = self.net.fuse(tok, feats, patch_mask, return_attn=True)
        B, P, N = tok.shape[0], self.net.num_pathways, feats.shape[1]
        w = a_p.new_zeros(B, P + N, P + N)
        w[:, :P, :] = a_p[:, 0]
        w[:, P:, :P] = a_h[:, 0] * patch_mask[:, :, None]
        return w, survpath_attention_mask(P, patch_mask)


def load_official_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], task: str) -> None:
    """Load an official SurvPath ``state_dict`` into a ``survpath`` model, strictly.

    ``to_logits.{0,2}.*`` go to the survival head of ``task`` (``heads.<task>.net.{0,2}``, which has
    the same layout with ``head_hidden=64``); every other key to ``encoder.net``. The learned
    missing-modality parameters keep their initial values.
    """
    logits = {k[len("to_logits."):]: v for k, v in state_dict.items() if k.startswith("to_logits.")}
    body = {k: v for k, v in state_dict.items() if not k.startswith("to_logits.")}
    model.encoder.net.load_state_dict(body, strict=True)
    if task not in model.heads:
        raise ConfigError(f"no head for task '{task}'", where="load_official_state_dict", fix=f"use one of {sorted(model.heads)}")
    model.heads[task].net.load_state_dict(logits, strict=True)


def _pathway_omics(info: Any, omics: str | None) -> str:
    pw = dict(getattr(info, "pathways", None) or {})
    if omics is None:
        omics = "rna" if "rna" in pw else (next(iter(pw)) if len(pw) == 1 else None)
    if omics is None or omics not in pw:
        raise ConfigError(
            f"survpath needs pathway gene lists for omics block '{omics or 'rna'}' but the cohort has " + (f"them only for {sorted(pw)}" if pw else "none"),
            where="data.pathways",
            fix="set data.pathways: {rna: shared/data/pathways/combine_comps.csv} (or method.params.omics: <block with pathways>)",
        )
    return omics


@register_method("survpath", kind="torch", modalities=("slide", "omics"), requires=("slide", "omics"), params=SurvPathParams, check_data=pathway_block,
                 description="SurvPath: pathway + histology tokens, masked multimodal attention (Jaume et al. 2024)")
def build_survpath(info: Any, **params: Any):
    """Params: :class:`SurvPathParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    omics = _pathway_omics(info, enc.pop("omics", None))
    if not getattr(info, "slide_dim", None):
        raise ConfigError("survpath needs the slide modality but the cohort has no slide features", where="method.params.modalities",
                          fix="add slide features to the cohort")
    pw = info.pathways[omics]
    net = SurvPathNet([len(ix) for ix in pw.gene_index], int(info.slide_dim), enc["wsi_projection_dim"], dropout=enc["dropout"],
                      snn_dropout=enc["snn_dropout"], heads=enc["heads"], dim_head=enc["dim_head"], num_classes=None)
    return wrap(info, SurvPathEncoder(net, pw.gene_index, omics, slide_modality_name(info)), model_params, "survpath")
