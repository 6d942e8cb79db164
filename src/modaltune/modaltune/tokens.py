"""Modal tokens of ModalTune: every extra-modal input becomes a set of ``d``-wide tokens with a mask.

Each token set is a module ``forward(batch) -> (tokens (B, M_i, d), present (B, M_i) bool)``;
:class:`ModalTokenizer` concatenates any number of sets. A patient lacking a modality gets
``present`` False for that set's tokens (they are zeros and masked out of every attention), and the
encoder of that modality never reads the patient's zero-filled input.

Sets (MODALTUNE.md section 3):

- :class:`PathwayTokenSet` - Gene Mixer over one omics block (per-pathway SNN + MLP-Mixer) ->
  LayerNorm -> Linear(token_dim -> d); optional learned compression P -> K over the token axis
  (mixes pathways; without it token ``p`` is the named pathway ``p``).
- :class:`OmicsBlockTokenSet` - any omics block (CNV, mutations, RNA without pathways): SNN ->
  ``n_tokens`` tokens.
- :class:`ClinicalTokenSet` - Linear(F -> 384), ReLU, Linear(384 -> d), LayerNorm -> 1 token.
- :class:`ReportTextTokenSet` - frozen sentence embedding of the report -> Linear -> LayerNorm.
- :class:`TaskTokenSet` - frozen sentence embedding of the task prompt (site + task description)
  -> Linear -> LayerNorm -> 1 token; so a new task or site only needs its description.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from modaltune.errors import ConfigError

__all__ = [
    "TokenSet",
    "PathwayTokenSet",
    "OmicsBlockTokenSet",
    "ClinicalTokenSet",
    "ReportTextTokenSet",
    "TaskTokenSet",
    "ModalTokenizer",
    "clinical_columns",
]


def _present(batch: dict, key: str | None, B: int, device: torch.device) -> torch.Tensor:
    mm = batch.get("modality_mask") or {}
    if key is None or key not in mm:
        return torch.ones(B, dtype=torch.bool, device=device)
    return mm[key].to(device=device, dtype=torch.bool)


class TokenSet(nn.Module):
    """Base class. ``kind`` is ``genomic`` | ``clinical`` | ``text`` (fusion uses genomic/clinical).

    Attributes:
        name: label of the set (e.g. ``rna:pathways``); ``n_tokens``: tokens per patient;
        token_names: one name per token (pathway names for uncompressed pathway tokens).
    """

    kind: str = "genomic"
    name: str = ""
    n_tokens: int = 0
    token_names: list[str]

    def _scatter(self, rows: torch.Tensor, values: torch.Tensor, B: int, M: int, d: int) -> torch.Tensor:
        """Zeros (B, M, d) with ``values`` at ``rows`` (absent patients are never computed)."""
        out = values.new_zeros(B, M, d)
        return out.index_put((rows,), values) if rows.numel() else out


class PathwayTokenSet(TokenSet):
    """Gene Mixer pathway tokens over omics block ``omics`` (``(B, G) -> (B, P or K, d)``)."""

    kind = "genomic"

    def __init__(self, omics: str, in_dim: int, gene_index: Sequence[Any], pathway_names: Sequence[str] | None, dim: int, *,
                 token_dim: int = 256, n_blocks: int = 3, channel_hidden: int = 128, dropout: float = 0.25, n_compress: int | None = None):
        super().__init__()
        from modaltune.encoders.omics import GeneMixer

        self.omics = omics
        self.mixer = GeneMixer(in_dim, gene_index, pathway_names, token_dim=token_dim, n_blocks=n_blocks, channel_hidden=channel_hidden, dropout=dropout)
        self.proj = nn.Sequential(nn.LayerNorm(token_dim), nn.Linear(token_dim, dim))
        P = self.mixer.n_pathways
        self.compress = nn.Linear(P, int(n_compress)) if n_compress else None
        self.n_tokens = int(n_compress) if n_compress else P
        self.token_names = [f"{omics}:compressed_{k}" for k in range(self.n_tokens)] if n_compress else list(self.mixer.pathway_names)
        self.name = f"{omics}:pathways"
        self.dim = dim

    def tokens_from_values(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, G)`` scaled omics values of present patients -> ``(n, M, d)`` tokens."""
        t = self.proj(self.mixer.pathway_tokens(x))
        if self.compress is not None:
            t = self.compress(t.transpose(1, 2)).transpose(1, 2)
        return t

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["omics"][self.omics].float()
        B = x.shape[0]
        present = _present(batch, self.omics, B, x.device)
        rows = present.nonzero(as_tuple=True)[0]
        vals = self.tokens_from_values(x[rows]) if rows.numel() else x.new_zeros(0, self.n_tokens, self.dim)
        return self._scatter(rows, vals, B, self.n_tokens, self.dim), present[:, None].expand(B, self.n_tokens)


class OmicsBlockTokenSet(TokenSet):
    """SNN over a whole omics block -> ``n_tokens`` tokens (CNV, mutations, or RNA without pathways)."""

    kind = "genomic"

    def __init__(self, omics: str, in_dim: int, dim: int, *, n_tokens: int = 4, hidden: int = 256, dropout: float = 0.25):
        super().__init__()
        from modaltune.encoders.omics import SNNEncoder

        self.omics = omics
        self.snn = SNNEncoder(in_dim, hidden=(hidden, hidden), dropout=dropout)
        self.out = nn.Sequential(nn.Linear(hidden, n_tokens * dim), nn.Unflatten(1, (n_tokens, dim)), nn.LayerNorm(dim))
        self.n_tokens = int(n_tokens)
        self.dim = dim
        self.name = f"{omics}:block"
        self.token_names = [f"{omics}:{k}" for k in range(n_tokens)]

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["omics"][self.omics].float()
        B = x.shape[0]
        present = _present(batch, self.omics, B, x.device)
        rows = present.nonzero(as_tuple=True)[0]
        vals = self.out(self.snn(x[rows])) if rows.numel() else x.new_zeros(0, self.n_tokens, self.dim)
        return self._scatter(rows, vals, B, self.n_tokens, self.dim), present[:, None].expand(B, self.n_tokens)


def clinical_columns(feature_names: Sequence[str], fields: Sequence[str] | None) -> list[int]:
    """Indices of the encoded clinical columns of the declared ``fields`` (all when None).

    A field ``f`` owns the columns named ``f``, ``f__missing`` and ``f=<category>``.
    """
    names = list(feature_names)
    if fields is None:
        return list(range(len(names)))
    cols: list[int] = []
    for f in fields:
        own = [i for i, n in enumerate(names) if n == f or n.startswith(f + "__") or n.startswith(f + "=")]
        if not own:
            fields_known = sorted({n.split("=")[0].split("__")[0] for n in names})
            raise ConfigError(f"clinical field '{f}' is not among the encoded clinical columns", where="method.params.clinical_fields", fix=f"use some of {fields_known}")
        cols += own
    return sorted(set(cols))


class ClinicalTokenSet(TokenSet):
    """Declared clinical fields (encoded, ``(B, F)``; optionally a subset of columns) -> one token."""

    kind = "clinical"

    def __init__(self, modality: str, in_dim: int, dim: int, hidden: int = 384, columns: Sequence[int] | None = None):
        super().__init__()
        self.modality = modality
        self.register_buffer("columns", torch.as_tensor(list(columns) if columns is not None else list(range(in_dim)), dtype=torch.long), persistent=False)
        self.net = nn.Sequential(nn.Linear(len(self.columns), hidden), nn.ReLU(), nn.Linear(hidden, dim), nn.LayerNorm(dim))
        self.n_tokens, self.dim, self.name, self.token_names = 1, dim, "clinical", ["clinical"]

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["clinical"].float()[:, self.columns.to(batch["clinical"].device)]
        B = x.shape[0]
        present = _present(batch, self.modality, B, x.device)
        rows = present.nonzero(as_tuple=True)[0]
        vals = self.net(x[rows])[:, None] if rows.numel() else x.new_zeros(0, 1, self.dim)
        return self._scatter(rows, vals, B, 1, self.dim), present[:, None]


class ReportTextTokenSet(TokenSet):
    """Report text -> frozen sentence embedding -> Linear -> LayerNorm -> one token."""

    kind = "text"

    def __init__(self, modality: str, text_dim: int, dim: int, text_model: str | None = None):
        super().__init__()
        self.modality = modality
        self.text_model = text_model
        self.net = nn.Sequential(nn.Linear(text_dim, dim), nn.LayerNorm(dim))
        self.n_tokens, self.dim, self.name, self.token_names = 1, dim, "report", ["report"]

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        from .text_targets import embed_texts

        texts = [str(t) for t in batch.get("text") or []]
        dev = self.net[0].weight.device
        B = len(batch["patient_id"])
        present = _present(batch, self.modality, B, dev) & torch.tensor([bool(t.strip()) for t in texts] or [False] * B, device=dev)
        rows = present.nonzero(as_tuple=True)[0]
        if rows.numel():
            e = embed_texts([texts[i] for i in rows.tolist()], self.text_model).to(dev)
            vals = self.net(e)[:, None]
        else:
            vals = self.net[0].weight.new_zeros(0, 1, self.dim)
        return self._scatter(rows, vals, B, 1, self.dim), present[:, None]


class TaskTokenSet(TokenSet):
    """Task token from the text embedding of the task prompt (site + description); always present.

    The prompt embeddings are frozen (computed by the text encoder, cached per prompt); only the
    ``Linear -> LayerNorm`` map is learned, so unseen sites / tasks get a token from their text.
    """

    kind = "task"

    def __init__(self, text_dim: int, dim: int, text_model: str | None = None):
        super().__init__()
        self.text_model = text_model
        self.net = nn.Sequential(nn.Linear(text_dim, dim), nn.LayerNorm(dim))
        self.n_tokens, self.dim, self.name, self.token_names = 1, dim, "task", ["task"]

    def forward_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """``prompts (B,) -> (B, 1, d)``."""
        from .text_targets import embed_texts

        dev = self.net[0].weight.device
        return self.net(embed_texts(list(prompts), self.text_model).to(dev))[:, None]


class ModalTokenizer(nn.Module):
    """Concatenate token sets: ``batch -> (tokens (B, M, d), present (B, M), kinds list[str] (M))``."""

    def __init__(self, sets: Sequence[TokenSet]):
        super().__init__()
        self.sets = nn.ModuleList(list(sets))
        self.kinds: list[str] = [s.kind for s in self.sets for _ in range(s.n_tokens)]
        self.token_names: list[str] = [n for s in self.sets for n in s.token_names]
        self.n_tokens = len(self.kinds)
        if any(s.n_tokens < 1 for s in self.sets):
            raise ConfigError("a modal token set has no tokens", where="method.params")

    def slices(self) -> dict[str, slice]:
        """Token-axis slice of each set by name (after the task token, offset 1 in the model)."""
        out, i = {}, 0
        for s in self.sets:
            out[s.name] = slice(i, i + s.n_tokens)
            i += s.n_tokens
        return out

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        toks, pres = [], []
        for s in self.sets:
            t, p = s(batch)
            toks.append(t)
            pres.append(p)
        return torch.cat(toks, dim=1), torch.cat(pres, dim=1)
