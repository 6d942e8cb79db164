"""Omics encoders: plain MLP, self-normalising network (SNN) and the pathway-token Gene Mixer.

All encoders map a ``(B, G)`` float tensor of scaled omics values to a ``(B, out_dim)`` embedding
(the Gene Mixer can also return its ``(B, P, token_dim)`` pathway tokens). They never see the
modality mask: missing patients are handled one level up by
:class:`modaltune.encoders.fusion.ModalityBranch`, which only passes present patients in.

References:
    * Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017 (SELU, AlphaDropout,
      LeCun-normal init).
    * Chen et al., "Multimodal Co-Attention Transformer for Survival Prediction in Gigapixel
      Whole Slide Images" (MCAT), ICCV 2021, and "Pan-cancer integrative histology-genomic
      analysis via multimodal deep learning" (PORPOISE), Cancer Cell 2022: their "SNN" omics
      baseline is Linear -> ELU -> AlphaDropout(0.25) blocks with weights drawn from
      N(0, 1/fan_in) and zero biases.
    * Tolstikhin et al., "MLP-Mixer", NeurIPS 2021 (token- and channel-mixing blocks).
    * Ramanathan et al., "ModalTune", ICCV 2025 (per-pathway SNNs + MLP-Mixer, "Gene Mixer").
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from modaltune.errors import ConfigError, InputError

__all__ = ["MLPEncoder", "SNNEncoder", "GeneMixer", "MixerBlock", "snn_init_"]


def _activation(name: str) -> nn.Module:
    acts = {"relu": nn.ReLU, "elu": nn.ELU, "selu": nn.SELU, "gelu": nn.GELU}
    if name not in acts:
        raise ConfigError(f"unknown activation '{name}'", where="method.params.activation", fix=f"use one of {sorted(acts)}")
    return acts[name]()


def snn_init_(module: nn.Module) -> nn.Module:
    """LeCun-normal init of every Linear in ``module``: ``W ~ N(0, 1/fan_in)``, ``b = 0``.

    This is the initialisation self-normalising networks need (Klambauer et al. 2017) and the one
    MCAT/PORPOISE use for their SNN (``init_max_weights``).
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=1.0 / math.sqrt(m.in_features))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def _check_input(x: torch.Tensor, in_dim: int, name: str) -> None:
    if x.ndim != 2 or x.shape[1] != in_dim:
        raise InputError(f"{name} expects omics of shape (B, {in_dim}), got {tuple(x.shape)}", where="batch.omics")


class MLPEncoder(nn.Module):
    """Plain MLP: ``[Linear -> act -> Dropout] x len(hidden)``.

    Args:
        in_dim: number of input features G.
        hidden: widths of the hidden layers; the last one is ``out_dim``.
        dropout: dropout after each activation.
        activation: ``relu`` (default), ``gelu``, ``elu`` or ``selu``.
        layer_norm: add a LayerNorm before each activation (helps on wide, noisy RNA inputs).

    Shapes: ``(B, G) -> (B, hidden[-1])``.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.25, activation: str = "relu", layer_norm: bool = False):
        super().__init__()
        if not hidden:
            raise ConfigError("MLP needs at least one hidden layer", where="method.params.hidden", fix="e.g. hidden: [256, 256]")
        self.in_dim = int(in_dim)
        layers: list[nn.Module] = []
        d = self.in_dim
        for h in hidden:
            layers.append(nn.Linear(d, int(h)))
            if layer_norm:
                layers.append(nn.LayerNorm(int(h)))
            layers += [_activation(activation), nn.Dropout(dropout)]
            d = int(h)
        self.net = nn.Sequential(*layers)
        self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_dim, "MLPEncoder")
        return self.net(x)


class SNNEncoder(nn.Module):
    """Self-normalising network: ``[Linear -> act -> AlphaDropout] x len(hidden)``, LeCun-normal init.

    Args:
        in_dim: number of input features G.
        hidden: hidden widths (MCAT/PORPOISE: ``[256, 256]``).
        dropout: AlphaDropout probability (MCAT/PORPOISE: 0.25).
        activation: ``"elu"`` reproduces the MCAT/PORPOISE baseline exactly; ``"selu"`` is the
            activation of Klambauer et al., for which activations provably keep zero mean and unit
            variance through the layers at initialisation (ELU does not have that fixed point: its
            outputs have mean ~0.160 and variance ~0.619 for standard-normal inputs).

    Shapes: ``(B, G) -> (B, hidden[-1])``.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.25, activation: str = "elu"):
        super().__init__()
        if not hidden:
            raise ConfigError("SNN needs at least one hidden layer", where="method.params.hidden", fix="e.g. hidden: [256, 256]")
        if activation not in ("elu", "selu"):
            raise ConfigError(f"SNN activation must be 'elu' or 'selu', got '{activation}'", where="method.params.activation")
        self.in_dim = int(in_dim)
        layers: list[nn.Module] = []
        d = self.in_dim
        for h in hidden:
            layers += [nn.Linear(d, int(h)), _activation(activation), nn.AlphaDropout(dropout)]
            d = int(h)
        self.net = nn.Sequential(*layers)
        self.out_dim = d
        snn_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_dim, "SNNEncoder")
        return self.net(x)


class MixerBlock(nn.Module):
    """One MLP-Mixer block on ``(B, P, C)`` tokens (pre-norm, residual).

    ``x = x + TokenMLP(LN(x)^T)^T`` mixes across the P tokens (``P -> token_hidden -> P``), then
    ``x = x + ChannelMLP(LN(x))`` mixes across the C channels (``C -> channel_hidden -> C``);
    both MLPs are Linear -> GELU -> Dropout -> Linear -> Dropout.
    """

    def __init__(self, n_tokens: int, dim: int, token_hidden: int, channel_hidden: int, dropout: float = 0.25):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(
            nn.Linear(n_tokens, token_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(token_hidden, n_tokens), nn.Dropout(dropout)
        )
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = nn.Sequential(
            nn.Linear(dim, channel_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(channel_hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class _PathwayBucket(nn.Module):
    """Per-pathway two-layer SNNs for pathways of similar size, run as one batched einsum.

    Pathway ``p`` of the bucket reads genes ``index[p, :n_p]``; the rest of its row points at a
    zero column appended to the input, so padded weights see zero input, receive zero gradient and
    never change the output. Each pathway's first layer is initialised with its true fan-in
    ``n_p`` (N(0, 1/n_p)), exactly like an individual ``nn.Linear(n_p, hidden)``.
    """

    def __init__(self, index: torch.Tensor, sizes: torch.Tensor, hidden: int, dropout: float):
        super().__init__()
        n_path, max_n = index.shape
        self.register_buffer("index", index, persistent=False)
        self.w1 = nn.Parameter(torch.randn(n_path, max_n, hidden) / sizes.float().sqrt()[:, None, None])
        self.b1 = nn.Parameter(torch.zeros(n_path, hidden))
        self.w2 = nn.Parameter(torch.randn(n_path, hidden, hidden) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.zeros(n_path, hidden))
        self.act = nn.ELU()
        self.drop = nn.AlphaDropout(dropout)

    def forward(self, x_padded: torch.Tensor) -> torch.Tensor:
        """``x_padded (B, G + 1)`` (last column zero) -> ``(B, P_bucket, hidden)``."""
        g = x_padded[:, self.index]  # (B, P_b, max_n)
        h = self.drop(self.act(torch.einsum("bpn,pnh->bph", g, self.w1) + self.b1))
        return self.drop(self.act(torch.einsum("bph,phk->bpk", h, self.w2) + self.b2))


class GeneMixer(nn.Module):
    """Pathway-token omics encoder (ModalTune's "Gene Mixer").

    ``x (B, G)`` -> one SNN per pathway (Linear(n_i -> token_dim), ELU, AlphaDropout, Linear(token_dim
    -> token_dim), ELU, AlphaDropout) -> ``(B, P, token_dim)`` pathway tokens -> ``n_blocks``
    MLP-Mixer blocks (token mixing ``P -> P/2 -> P``, channel mixing ``token_dim -> channel_hidden
    -> token_dim``, GELU, dropout) -> LayerNorm -> mean over tokens -> ``(B, token_dim)``.

    With ``n_compress=K`` the P tokens are first compressed to K by a learned linear map over the
    token axis (as in ModalTune) before the mean; that mixes pathways, so the default keeps them.

    Efficiency: pathways are grouped in buckets of similar size (sizes up to a power of two), and
    each bucket runs its per-pathway networks as one batched ``einsum`` over a padded
    ``(P_b, max_n, token_dim)`` weight; padding wastes at most 2x the first-layer weights and there
    is no Python loop over pathways at forward time (a handful of buckets only).

    Args:
        in_dim: number of genes G in the omics block.
        gene_index: one integer array of gene indices (into the G columns) per pathway. A gene in
            k pathways appears in k of them.
        pathway_names: optional names (for interpretation); default ``pathway_<i>``.
        token_dim: per-pathway network width and token width (256).
        n_blocks: MLP-Mixer blocks (ModalTune: 3).
        token_hidden: hidden width of token mixing (default ``max(1, P // 2)``).
        channel_hidden: hidden width of channel mixing (128).
        dropout: AlphaDropout of the pathway networks and dropout of the Mixer (0.25).
        n_compress: optional K for a learned P -> K token compression.
    """

    def __init__(
        self,
        in_dim: int,
        gene_index: Sequence[np.ndarray | Sequence[int] | torch.Tensor],
        pathway_names: Sequence[str] | None = None,
        *,
        token_dim: int = 256,
        n_blocks: int = 3,
        token_hidden: int | None = None,
        channel_hidden: int = 128,
        dropout: float = 0.25,
        n_compress: int | None = None,
    ):
        super().__init__()
        self.in_dim = int(in_dim)
        idx_list = [np.asarray(torch.as_tensor(i).cpu().numpy() if isinstance(i, torch.Tensor) else i, dtype=np.int64).reshape(-1) for i in gene_index]
        if not idx_list:
            raise InputError("Gene Mixer got no pathways", where="info.pathways", fix="check the pathway file matches the omics gene names")
        for p, idx in enumerate(idx_list):
            if idx.size == 0:
                raise InputError(f"pathway {p} has no genes in the omics block", where="info.pathways", fix="drop empty pathways when tokenising")
            if idx.min() < 0 or idx.max() >= self.in_dim:
                raise InputError(f"pathway {p} indexes gene {int(idx.max())} but the omics block has {self.in_dim} genes", where="info.pathways")
        self.n_pathways = len(idx_list)
        self.pathway_names = list(pathway_names) if pathway_names is not None else [f"pathway_{i}" for i in range(self.n_pathways)]
        if len(self.pathway_names) != self.n_pathways:
            raise InputError(f"{len(self.pathway_names)} pathway names for {self.n_pathways} pathways", where="info.pathways")
        self.token_dim = int(token_dim)

        # Bucket pathways by size: bucket k holds sizes in (2^(k-1), 2^k].
        sizes = np.array([i.size for i in idx_list])
        bucket_of = np.ceil(np.log2(sizes)).astype(int)
        order: list[int] = []
        buckets = []
        for b in sorted(set(bucket_of.tolist())):
            members = np.flatnonzero(bucket_of == b)
            max_n = int(sizes[members].max())
            index = torch.full((len(members), max_n), self.in_dim, dtype=torch.long)  # pad -> zero column
            for r, p in enumerate(members):
                index[r, : sizes[p]] = torch.from_numpy(idx_list[p])
            buckets.append(_PathwayBucket(index, torch.from_numpy(sizes[members]), self.token_dim, dropout))
            order.extend(members.tolist())
        self.buckets = nn.ModuleList(buckets)
        #: original pathway indices held by each bucket, in the bucket's row order
        self.bucket_members: list[list[int]] = []
        start = 0
        for b in buckets:
            self.bucket_members.append(order[start : start + b.index.shape[0]])
            start += b.index.shape[0]
        # Bucketed order -> original pathway order.
        self.register_buffer("restore", torch.from_numpy(np.argsort(np.array(order))), persistent=False)

        th = int(token_hidden) if token_hidden else max(1, self.n_pathways // 2)
        self.blocks = nn.Sequential(*[MixerBlock(self.n_pathways, self.token_dim, th, channel_hidden, dropout) for _ in range(n_blocks)])
        self.norm = nn.LayerNorm(self.token_dim)
        self.compress = nn.Linear(self.n_pathways, int(n_compress)) if n_compress else None
        self.out_dim = self.token_dim

    def pathway_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs of the per-pathway SNNs, before any mixing: ``(B, G) -> (B, P, token_dim)``.

        Token ``p`` depends only on the genes of pathway ``p``.
        """
        _check_input(x, self.in_dim, "GeneMixer")
        x = x.to(self.buckets[0].w1.dtype)
        x_padded = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1)
        tokens = torch.cat([b(x_padded) for b in self.buckets], dim=1)
        return tokens[:, self.restore]

    def pathway_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed, normalised pathway tokens ``(B, P, token_dim)`` (what ModalTune projects to its width)."""
        return self.norm(self.blocks(self.pathway_embeddings(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.pathway_tokens(x)
        if self.compress is not None:
            tokens = self.compress(tokens.transpose(1, 2)).transpose(1, 2)
        return tokens.mean(dim=1)
