"""The pretraining config (``modaltune pretrain CONFIG``): cohort, fold, modalities, objective, sizes."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from modaltune.config import CohortDir, StrictModel
from modaltune.training.experiment_config import SplitConfig

__all__ = ["EncoderSizes", "MirrorWeights", "PretrainConfig", "PretrainTrainer"]


class EncoderSizes(StrictModel):
    """One encoder per modality, each ending in an ``embed_dim`` vector.

    ``slide``: ``abmil`` (Linear(D, hidden) -> ReLU -> gated attention pooling -> Linear) or ``mean``
    (masked mean of the patches -> MLP). Omics and clinical vectors: MLP(in, hidden, embed_dim).
    """

    slide: Literal["abmil", "mean"] = "abmil"
    embed_dim: int = Field(32, ge=2)
    hidden: int = Field(64, ge=2)
    max_patches: int | None = Field(512, ge=1, description="patches sampled per bag and epoch (None: all)")


class PretrainTrainer(StrictModel):
    """The optimisation: AdamW, fixed learning rate, ``epochs`` passes over the training patients."""

    epochs: int = Field(20, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(32, ge=2)
    seed: int = 0


class MirrorWeights(StrictModel):
    """MIRROR: L = L_align + retention * L_retention + style * L_style (see docs/methods.md)."""

    retention: float = Field(1.0, ge=0)
    style: float = Field(1.0, ge=0)
    mask_ratio: float = Field(0.5, gt=0, lt=1, description="fraction of features / patches hidden for the retention reconstruction")
    n_prototypes: int = Field(8, ge=2, description="style-clustering prototypes K")
    temperature: float = Field(0.1, gt=0, description="softmax temperature of the prototype scores")


class PretrainConfig(StrictModel):
    """What ``modaltune pretrain`` trains.

    ``split`` is the benchmark's split section (give the same ``split.file`` / seed / stratify as the
    benchmark so ``fold`` names the same patients). Only ``fold``'s ``train`` patients are read.
    ``objective``: ``symile`` (``negative_sampling``: ``n`` or ``n_squared``, the latter for exactly
    three modalities), ``clip`` (pairwise), ``mirror``.
    """

    name: str = "pretrain"
    cohort: CohortDir
    split: SplitConfig = Field(default_factory=SplitConfig)
    fold: int = Field(0, ge=0)
    modalities: list[str] = Field(..., min_length=2)
    objective: Literal["symile", "clip", "mirror"] = "symile"
    negative_sampling: Literal["n", "n_squared"] = "n"
    omics_scaling: Literal["zscore", "minmax", "none"] = "zscore"
    encoder: EncoderSizes = Field(default_factory=EncoderSizes)
    trainer: PretrainTrainer = Field(default_factory=PretrainTrainer)
    mirror: MirrorWeights = Field(default_factory=MirrorWeights)

    @model_validator(mode="after")
    def _consistent(self) -> PretrainConfig:
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities lists a modality twice: {self.modalities}")
        if self.objective == "symile" and self.negative_sampling == "n_squared" and len(self.modalities) != 3:
            raise ValueError(f"negative_sampling 'n_squared' needs exactly 3 modalities, got {len(self.modalities)} (use 'n')")
        return self
