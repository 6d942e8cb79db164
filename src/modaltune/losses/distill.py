"""Text-target distillation loss used by ModalTune (MODALTUNE.md section 4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from modaltune.errors import InputError

from ._checks import _check_finite, _check_same_len, _check_tensor

__all__ = ["kl_text_distillation"]


def kl_text_distillation(
    model_out: torch.Tensor,
    text_target: torch.Tensor,
    temperature: float = 1.0,
    *,
    normalize: bool = True,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""KL divergence from the text-target distribution to the model-output distribution.

    With :math:`z = z/\|z\|_2` (the projected text embedding) and :math:`s = s/\|s\|_2` (the model's
    task output), :math:`p = \mathrm{softmax}(z/T)` and :math:`q = \mathrm{softmax}(s/T)` over the
    **feature** dimension :math:`D`, the loss is the batch mean of
    :math:`\mathrm{KL}(p\,\|\,q) = \sum_d p_d(\log p_d - \log q_d)`. ModalTune multiplies it by
    10 and sums over tasks; the caller applies that weight.

    Args:
        model_out: (B, D) float model output for one task.
        text_target: (B, D) float target (already normalised is fine: normalising is idempotent).
        temperature: softmax temperature T > 0.
        normalize: L2-normalise both inputs along D first (ModalTune does).
        mask: optional (B,) bool, patients to include (others, e.g. without text, are ignored);
            a zero that keeps the graph is returned when none is included.

    Returns:
        scalar tensor (>= 0; 0 iff the two distributions are equal).

    Example:
        >>> x = torch.tensor([[3.0, 4.0]])
        >>> kl_text_distillation(x, 2 * x).item()   # same direction -> identical distributions
        0.0
    """
    where = "kl_text_distillation"
    _check_tensor(model_out, "model_out", 2, where)
    _check_tensor(text_target, "text_target", 2, where)
    _check_same_len(where, model_out=model_out, text_target=text_target)
    if model_out.shape[1] != text_target.shape[1]:
        raise InputError(
            f"model output dim {model_out.shape[1]} != text target dim {text_target.shape[1]}",
            where=where,
            fix="project text embeddings to the model's task-output dimension",
        )
    if temperature <= 0:
        raise InputError(f"temperature must be > 0, got {temperature}", where=where)
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=model_out.device)
        if mask.shape != (model_out.shape[0],):
            raise InputError(f"mask must have shape ({model_out.shape[0]},), got {tuple(mask.shape)}", where=where)
        if not bool(mask.any()):
            return 0.0 * model_out.sum()
        model_out, text_target = model_out[mask], text_target[mask]
    _check_finite(model_out, "model_out", where)
    _check_finite(text_target, "text_target", where)
    s, z = model_out, text_target.to(model_out.dtype)
    if normalize:
        s, z = F.normalize(s, dim=1), F.normalize(z, dim=1)
    log_q = F.log_softmax(s / temperature, dim=1)
    log_p = F.log_softmax(z / temperature, dim=1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
