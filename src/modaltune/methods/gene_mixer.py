"""``gene_mixer``: pathway-token omics encoder (per-pathway SNNs + MLP-Mixer), ModalTune's genomics branch.

Ramanathan et al., ICCV 2025 (see shared/docs/MODALTUNE.md section 3): one small SNN per pathway
(Linear(n_i -> 256), ELU, AlphaDropout 0.25, Linear(256 -> 256), ELU, AlphaDropout) gives P
pathway tokens; 3 MLP-Mixer blocks (Tolstikhin et al. 2021; token mixing P -> P/2 -> P, channel
mixing 256 -> 128 -> 256, GELU, dropout 0.25); LayerNorm; mean over tokens -> 256-d embedding.
Optional ``n_compress=K``: learned P -> K token compression before the mean (mixes pathways).

Pathway gene-index lists come from ``info.pathways[omics]`` (fitted on the omics block's gene
names; the coverage report is the data layer's). Patients without the omics block get the learned
missing embedding (kept, not dropped).
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from modaltune.encoders.fusion import ModalityBranch, omics_branch
from modaltune.errors import ConfigError
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.registry import register_method
from modaltune.methods.requirements import pathway_block

__all__ = ["GeneMixerParams", "build_gene_mixer", "GeneMixerEncoder", "default_pathway_omics"]


class GeneMixerParams(HeadParams):
    """Parameters of ``gene_mixer`` (+ the head/loss parameters of :class:`HeadParams`)."""

    omics: str | None = Field(None, description="omics block with pathway lists (None: rna, or the only block with pathways)")
    token_dim: int = Field(256, description="width of each pathway token")
    n_blocks: int = Field(3, description="MLP-Mixer blocks")
    token_hidden: int | None = Field(None, description="hidden width of token mixing (None: P // 2)")
    channel_hidden: int = Field(128, description="hidden width of channel mixing")
    dropout: float = Field(0.25, description="dropout of the pathway SNNs and the mixer")
    n_compress: int | None = Field(None, description="learned P -> K token compression before the mean (None: off; paper 64)")


def default_pathway_omics(info: Any) -> str:
    """The omics block Gene Mixer uses by default: ``rna`` if it has pathways, else the only one that has."""
    pw = dict(getattr(info, "pathways", None) or {})
    if not pw:
        raise ConfigError(
            "gene_mixer needs pathway gene lists but the cohort has none",
            where="cohort.yaml pathways",
            fix="declare a pathway file (e.g. shared/data/pathways/combine_comps.csv) for the RNA block",
        )
    if "rna" in pw:
        return "rna"
    if len(pw) > 1:
        raise ConfigError(f"several omics blocks have pathways ({sorted(pw)})", where="method.params.omics", fix="set omics: <block name>")
    return next(iter(pw))


class GeneMixerEncoder(nn.Module):
    """The Gene Mixer omics branch as a batch encoder (``forward(batch) -> (B, 256)``).

    :meth:`pathway_tokens` exposes the mixed, normalised tokens for reuse (ModalTune, attribution).
    """

    def __init__(self, branch: ModalityBranch, omics: str):
        super().__init__()
        self.branch = branch
        self.omics = omics
        self.out_dim = branch.out_dim

    @property
    def mixer(self):
        """The underlying :class:`~modaltune.encoders.omics.GeneMixer`."""
        return self.branch.encoder

    @property
    def pathway_names(self) -> list[str]:
        return list(self.mixer.pathway_names)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.branch(batch)

    def pathway_tokens(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (B, P, 256), present (B,) bool)``; rows of absent patients are zeros (never computed)."""
        x, present = self.branch.reader(batch)
        tokens = x.new_zeros(x.shape[0], self.mixer.n_pathways, self.mixer.token_dim)
        if bool(present.any()):
            rows = present.nonzero(as_tuple=True)[0]
            tokens = tokens.index_put((rows,), self.mixer.pathway_tokens(x[rows]))
        return tokens, present


@register_method("gene_mixer", kind="torch", modalities=("omics",), requires=("omics",), params=GeneMixerParams, check_data=pathway_block,
                 description="per-pathway SNNs + MLP-Mixer over pathway tokens (ModalTune Gene Mixer)")
def build_gene_mixer(info: Any, **params: Any):
    """Params: :class:`GeneMixerParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    omics = enc.pop("omics", None) or default_pathway_omics(info)
    branch = omics_branch(info, "gene_mixer", omics=omics, **enc)
    return wrap(info, GeneMixerEncoder(branch, omics), model_params, "gene_mixer")
