"""Similarity head over label-sentence embeddings (ModalTune-style zero-shot-capable scoring)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from modaltune.errors import ConfigError, InputError

__all__ = ["TextSimilarityHead"]


class TextSimilarityHead(nn.Module):
    r"""Scores patients against one text embedding per class: ``logits = cos(x, t_c) / T``.

    Because classes are text embeddings (e.g. of "Cancer diagnosis: infiltrating lobular
    carcinoma;") rather than learned rows, the head can score label names never seen in training:
    call :meth:`set_class_embeddings` with their embeddings.

    Args:
        class_text_embeddings: (C, E) float, one embedding per class (stored as a buffer, not trained).
        temperature: T > 0; cosine similarities in [-1, 1] are divided by it (CLIP-like 0.07 is sharp).
        in_dim: input size; when given and != E, a learned linear projection maps (B, in_dim) -> (B, E).
        learn_temperature: make log(1/T) a trainable parameter.

    Shapes: (B, in_dim or E) -> (B, C).
    """

    def __init__(self, class_text_embeddings: torch.Tensor, temperature: float = 0.07, *, in_dim: int | None = None,
                 learn_temperature: bool = False):
        super().__init__()
        emb = self._check(class_text_embeddings)
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.embed_dim = emb.shape[1]
        self.register_buffer("class_embeddings", F.normalize(emb.float(), dim=1))
        self.proj = nn.Linear(in_dim, self.embed_dim) if in_dim is not None and in_dim != self.embed_dim else None
        self.in_dim = in_dim if in_dim is not None else self.embed_dim
        logit_scale = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.logit_scale = nn.Parameter(logit_scale)
        else:
            self.register_buffer("logit_scale", logit_scale)

    @staticmethod
    def _check(emb) -> torch.Tensor:
        emb = torch.as_tensor(emb)
        if emb.ndim != 2 or emb.shape[0] < 1:
            raise InputError(f"class text embeddings must be (C, E) with C >= 1, got {tuple(emb.shape)}")
        if not torch.isfinite(emb).all() or bool((emb.norm(dim=1) == 0).any()):
            raise InputError("class text embeddings contain NaN/inf or all-zero rows", fix="re-embed the label sentences")
        return emb

    def set_class_embeddings(self, class_text_embeddings: torch.Tensor) -> None:
        """Replace the classes (any number C') with new label-sentence embeddings of the same size E."""
        emb = self._check(class_text_embeddings)
        if emb.shape[1] != self.embed_dim:
            raise InputError(f"new class embeddings have dim {emb.shape[1]}, the head uses {self.embed_dim}",
                             fix="embed the label sentences with the same text encoder/projection")
        self.class_embeddings = F.normalize(emb.float(), dim=1).to(self.class_embeddings.device)

    @property
    def n_classes(self) -> int:
        return int(self.class_embeddings.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise InputError(f"text similarity head expects (B, {self.in_dim}) input, got {tuple(x.shape)}")
        if self.proj is not None:
            x = self.proj(x)
        sim = F.normalize(x, dim=1) @ self.class_embeddings.to(x.dtype).T
        return sim * self.logit_scale.exp().to(x.dtype)
