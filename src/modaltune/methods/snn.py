"""``snn``: self-normalising network on omics (the MCAT/PORPOISE omics baseline).

Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017; as used by MCAT (Chen et al.
ICCV 2021) and PORPOISE (Chen et al. Cancer Cell 2022): ``[Linear -> ELU -> AlphaDropout(0.25)]``
blocks of width 256, 256, weights N(0, 1/fan_in), zero biases. ``activation: selu`` switches to the
exact self-normalising activation of Klambauer et al.

Several omics blocks (e.g. rna, cnv, mut) are concatenated; a missing block is zeroed and flagged
by an indicator column; a patient with no omics at all gets the learned missing embedding.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field

from modaltune.encoders.fusion import omics_branch
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.registry import register_method

__all__ = ["SNNParams", "build_snn"]


class SNNParams(HeadParams):
    """Parameters of ``snn`` (+ the head/loss parameters of :class:`HeadParams`)."""

    omics: str | list[str] | None = Field(None, description="omics block name(s) to read (None: every block, concatenated)")
    hidden: tuple[int, ...] = Field((256, 256), description="widths of the Linear -> ELU -> AlphaDropout blocks")
    dropout: float = Field(0.25, description="alpha-dropout rate of each block")
    activation: str = Field("elu", description="elu (MCAT/PORPOISE) or selu (Klambauer et al.)")


@register_method("snn", kind="torch", modalities=("omics",), requires=("omics",), params=SNNParams,
                 description="self-normalising network on omics (MCAT/PORPOISE SNN baseline)")
def build_snn(info: Any, **params: Any):
    """Params: :class:`SNNParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    omics = enc.pop("omics", None)
    return wrap(info, omics_branch(info, "snn", omics=omics, **enc), model_params, "snn")
