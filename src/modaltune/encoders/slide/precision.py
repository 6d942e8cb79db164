"""Storage precision of a frozen slide encoder: ``"fp32"`` (default) or ``"bf16-weights"`` (fast path).

``"bf16-weights"`` casts the floating parameters and buffers to bfloat16 **once**, so every forward runs
its GEMMs, norms and attention on bfloat16 tensors with no per-call casts (``torch.autocast`` instead
re-casts every weight on every call and keeps the residual stream in float32). Float32 inputs are
cast at ``embed`` (the encoders cast features to their parameter dtype), float32 tokens handed to
``run_layers`` / ``pool`` (the Modal Adapter's injections) are cast by pre-hooks on the modules that own bf16
weights; ``forward`` returns float32.
Buffers named in the encoder's ``fp32_buffers`` stay float32 (TITAN's ALiBi ``slopes``: the bias is
built in float32 and rounded once per tile, as on the float32 path).

It is a separate, labelled inference path with its own error bound (tests/encoders/test_slide_precision.py:
``4 * eps_bf16 * max|ref|`` against the float32 path on the reduced reference models). The encoder is
frozen (``requires_grad=False``): optimiser updates to bfloat16 weights would be lost to rounding.
"""
from __future__ import annotations

import types
from typing import Literal, get_args

import torch
from torch import nn

from modaltune.errors import ConfigError

__all__ = ["SlidePrecision", "SLIDE_PRECISIONS", "apply_precision", "check_precision"]

SlidePrecision = Literal["fp32", "bf16-weights"]
SLIDE_PRECISIONS: tuple[str, ...] = get_args(SlidePrecision)


def _float32_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: embeddings leave a bf16-weights encoder as float32 (what every caller stores)."""
    return output.float() if torch.is_tensor(output) and output.dtype == torch.bfloat16 else output


_CAST_INPUTS = (nn.Linear, nn.LayerNorm, nn.MultiheadAttention)


def _inputs_to_bf16(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: float inputs of a bf16-weights module become bf16. Callers such as the Modal Adapter
    add float32 tokens between the stages (``run_layers`` / ``pool``); bf16 LayerNorm and Linear refuse them."""
    return tuple(a.to(torch.bfloat16) if torch.is_tensor(a) and a.is_floating_point() and a.dtype != torch.bfloat16 else a
                 for a in args)


def _pool_float32(self: nn.Module, *args, **kwargs):
    """``pool`` of a bf16-weights encoder, bound per instance: the slide embedding leaves as float32 also when a
    caller runs the stages itself (the Modal Adapter: ``embed`` -> ``run_layers`` -> ``pool``)."""
    out = type(self).pool(self, *args, **kwargs)
    return out.float() if torch.is_tensor(out) and out.dtype == torch.bfloat16 else out


def check_precision(precision: object) -> str:
    """``precision`` if it is one of :data:`SLIDE_PRECISIONS`; ConfigError (one line) otherwise."""
    if precision not in SLIDE_PRECISIONS:
        raise ConfigError(
            f"unknown slide-encoder precision {precision!r}",
            where="slide_encoder.precision",
            fix=f"use one of {', '.join(SLIDE_PRECISIONS)} ('bf16-weights' is the frozen-inference fast path)",
        )
    return str(precision)


def apply_precision(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """Set ``model``'s storage precision in place and return it; records ``model.precision``.

    Args:
        model: a slide encoder (float32 as built and loaded).
        precision: one of :data:`SLIDE_PRECISIONS`.

    Raises:
        ConfigError: unknown precision.
    """
    model.precision = check_precision(precision)
    if precision == "fp32":
        return model
    keep = set(getattr(model, "fp32_buffers", ()))
    saved = {name: b.detach().clone() for name, b in model.named_buffers() if name in keep}
    model.to(torch.bfloat16)  # floating parameters and buffers only; int buffers are untouched
    for name, b in saved.items():  # restore the float32 buffers the encoder asked to keep
        owner, _, attr = name.rpartition(".")
        (model.get_submodule(owner) if owner else model)._buffers[attr] = b
    model.requires_grad_(False)
    for m in model.modules():  # the weight-owning layers accept float32 inputs (cast, not an error); not the
        if isinstance(m, _CAST_INPUTS):  # encoder itself, whose float coords must not be rounded to bf16
            m.register_forward_pre_hook(_inputs_to_bf16)
    model.register_forward_hook(_float32_output)
    if hasattr(type(model), "pool"):  # a bound method (deepcopy rebinds it to the copy)
        model.pool = types.MethodType(_pool_float32, model)
    return model
