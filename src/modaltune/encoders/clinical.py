"""Clinical encoder: a small MLP on the encoded declared clinical fields.

The input is ``batch["clinical"]`` ``(B, F)``: numeric fields standardised on the training fold and
categorical/ordinal fields one-hot encoded with an explicit 'missing' level (see
``modaltune.data.clinical``), so there are no NaNs to handle here.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from modaltune.errors import ConfigError, InputError

__all__ = ["ClinicalMLP"]


class ClinicalMLP(nn.Module):
    """``[Linear -> ReLU -> Dropout] x len(hidden)`` with an optional final LayerNorm.

    Args:
        in_dim: number of encoded clinical features F.
        hidden: hidden widths; ``out_dim = hidden[-1]``. The default ``(64, 64)`` suits the
            handful of fields TCGA provides (age, stage, T, N, M).
        dropout: dropout after each activation.
        layer_norm: LayerNorm on the output (as ModalTune's clinical token).

    Shapes: ``(B, F) -> (B, hidden[-1])``.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (64, 64), dropout: float = 0.1, layer_norm: bool = False):
        super().__init__()
        if in_dim <= 0:
            raise ConfigError("the cohort has no encoded clinical fields", where="cohort.yaml clinical_fields", fix="declare clinical fields or drop the clinical modality")
        if not hidden:
            raise ConfigError("clinical MLP needs at least one hidden layer", where="method.params.clinical_hidden")
        self.in_dim = int(in_dim)
        layers: list[nn.Module] = []
        d = self.in_dim
        for h in hidden:
            layers += [nn.Linear(d, int(h)), nn.ReLU(), nn.Dropout(dropout)]
            d = int(h)
        if layer_norm:
            layers.append(nn.LayerNorm(d))
        self.net = nn.Sequential(*layers)
        self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise InputError(f"ClinicalMLP expects clinical features of shape (B, {self.in_dim}), got {tuple(x.shape)}", where="batch.clinical")
        return self.net(x)
