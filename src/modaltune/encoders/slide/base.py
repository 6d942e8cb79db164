"""Common interface of every slide encoder, including the layer-group API used by adapters.

A slide encoder maps a bag of patch features with level-0 coordinates to one slide embedding:

``forward(features (B, N, D_in), coords (B, N, 2), mask=None) -> (B, embed_dim)``

where ``mask`` is ``(B, N)`` bool, True = valid patch (the convention of ``batch["slide"]["mask"]``
and of the whole internal API; None = every patch valid). It is inverted only where a kernel wants
True = padding (``nn.MultiheadAttention(key_padding_mask=~mask)``) or an additive -inf bias is
built. The old keyword ``padding_mask=`` (True = padding) is still accepted by ``forward`` and
``embed`` for one release: it is converted to ``mask=~padding_mask`` with a DeprecationWarning.

and is always computed as three stages that adapters may interleave with their own modules::

    state = enc.embed(features, coords, mask=mask)           # patch embedding + positions (+ CLS)
    for start, stop in [(0, 4), (4, 8), (8, 12)]:            # any split of range(enc.num_layers)
        state = state.with_tokens(my_injector(state))        # e.g. modify the patch tokens
        state = enc.run_layers(state, start, stop)           # blocks start .. stop-1
    slide = enc.pool(state)                                  # final norms + pooling -> (B, embed_dim)

Layer indices follow Python's ``range``: ``run_layers(state, start, stop)`` runs blocks
``start, start+1, ..., stop-1`` (half-open, 0-based), so ``run_layers(s, 0, enc.num_layers)`` runs
them all and consecutive groups chain as ``(0, 4), (4, 8), (8, 12)``. An inclusive group ``[a, b]``
(as written in the ModalTune paper) is ``run_layers(s, a, b + 1)``.

``embed -> run_layers(0, num_layers) -> pool`` is exactly ``forward`` (tested for every encoder).

Token layout of :class:`TokenState`: ``tokens[:, :num_prefix]`` are prefix tokens (CLS) and
``tokens[:, num_prefix:]`` are patch tokens. Patch token ``j`` of sample ``b`` is valid iff
``mask[b, num_prefix + j]``; valid tokens always come first (right padding). The order of
patch tokens is encoder-specific (GigaPath keeps the input order; TITAN sorts the tokens row-major
over its patch grid and drops background cells), so use ``state.context`` for token positions
instead of assuming the input order.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from modaltune.errors import InputError

__all__ = ["TokenState", "SlideEncoder"]


@dataclass(init=False)
class TokenState:
    """The token sequence between encoder stages, plus the per-sample context the blocks need.

    Attributes:
        tokens: ``(B, T, D)`` token features, ``T = num_prefix + number of patch tokens``.
        num_prefix: number of leading non-patch tokens (1 for a CLS token, 0 if none).
        mask: ``(B, T)`` bool, True marks a valid token (always True on prefix tokens); None = all valid.
        context: encoder-specific tensors that stay fixed through the blocks, e.g. TITAN's
            ``"grid"`` ``(B, T, 2)`` integer cell of each token (ALiBi positions) or GigaPath's
            ``"lengths"``. Adapters must pass it through unchanged.

    The deprecated constructor keyword ``padding_mask=`` (True = padding) is converted to
    ``mask=~padding_mask`` with a DeprecationWarning (encoders written against the old field).
    """

    tokens: torch.Tensor
    num_prefix: int = 1
    mask: torch.Tensor | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def __init__(self, tokens: torch.Tensor, num_prefix: int = 1, mask: torch.Tensor | None = None,
                 context: dict[str, Any] | None = None, *, padding_mask: torch.Tensor | None = None) -> None:
        if padding_mask is not None:
            _warn_padding_field("padding_mask", "mask")
            if mask is not None:
                raise InputError("TokenState got both mask and the deprecated padding_mask", where="padding_mask",
                                 fix="pass only mask= (True = valid token)")
            mask = ~padding_mask
        self.tokens, self.num_prefix, self.mask = tokens, num_prefix, mask
        self.context = {} if context is None else context

    @property
    def patch_tokens(self) -> torch.Tensor:
        """``(B, T - num_prefix, D)`` view of the patch tokens (what the ModalTune injector updates)."""
        return self.tokens[:, self.num_prefix :]

    @property
    def patch_mask(self) -> torch.Tensor | None:
        """``(B, T - num_prefix)`` bool valid mask of the patch tokens (True = valid), or None."""
        return None if self.mask is None else self.mask[:, self.num_prefix :]

    @property
    def padding_mask(self) -> torch.Tensor | None:
        """Deprecated: ``~mask`` (True = padding), for adapters written against the old field."""
        _warn_padding_field("padding_mask", "mask")
        return None if self.mask is None else ~self.mask

    @property
    def patch_padding_mask(self) -> torch.Tensor | None:
        """Deprecated: ``~patch_mask`` (True = padding), for adapters written against the old field."""
        _warn_padding_field("patch_padding_mask", "patch_mask")
        pm = self.patch_mask
        return None if pm is None else ~pm

    @property
    def patch_index(self) -> slice:
        """Slice selecting the patch tokens along the token axis."""
        return slice(self.num_prefix, None)

    @property
    def prefix_index(self) -> slice:
        """Slice selecting the prefix (CLS) tokens along the token axis."""
        return slice(0, self.num_prefix)

    def with_tokens(self, tokens: torch.Tensor) -> TokenState:
        """A copy with new ``(B, T, D)`` tokens (same layout, mask and context)."""
        if tokens.shape[:2] != self.tokens.shape[:2]:
            raise ValueError(f"token layout changed: {tuple(self.tokens.shape)} -> {tuple(tokens.shape)}")
        return dataclasses.replace(self, tokens=tokens)

    def with_patch_tokens(self, patch_tokens: torch.Tensor) -> TokenState:
        """A copy whose patch tokens are replaced by ``(B, T - num_prefix, D)`` (prefix kept)."""
        return self.with_tokens(torch.cat([self.tokens[:, : self.num_prefix], patch_tokens], dim=1))


def _warn_padding_field(old: str, new: str) -> None:
    warnings.warn(f"TokenState.{old} (True = padding) is deprecated and will be removed in the next release; "
                  f"read TokenState.{new} (True = valid token)", DeprecationWarning, stacklevel=3)


class SlideEncoder(nn.Module):
    """Base class: subclasses implement :meth:`embed`, :meth:`_run_layer`, :meth:`pool`.

    Class/instance attributes:
        embed_dim: width of tokens and of the slide embedding.
        in_dim: expected patch-feature width ``D_in``.
        num_layers: number of blocks addressable by :meth:`run_layers` (0 for pooling-only MIL).
        weights_source: where the weights came from (checkpoint path or ``"random_init"``); set by
            the registry and recorded in results.
        grad_checkpointing: recompute each block in backward instead of storing activations.
    """

    embed_dim: int
    in_dim: int
    num_layers: int = 0
    requires_pretrained: bool = False  # True for frozen foundation models (no silent random weights)

    def __init__(self) -> None:
        super().__init__()
        self.weights_source: str = "random_init"
        self.grad_checkpointing: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Keep subclasses written against the old ``embed(..., padding_mask=)`` working for one release.

        Their ``embed`` is wrapped so that the ``mask=`` keyword every caller now passes is handed
        over as ``padding_mask=~mask`` (a DeprecationWarning is raised when the class is defined);
        otherwise ``mask`` would vanish into their ``**kw`` and padding would count as patches.
        """
        super().__init_subclass__(**kwargs)
        embed = cls.__dict__.get("embed")
        if embed is None:
            return
        params = inspect.signature(embed).parameters
        if "padding_mask" not in params or "mask" in params:
            return
        warnings.warn(f"{cls.__name__}.embed takes padding_mask (True = padding), which is deprecated and will be removed "
                      "in the next release; rename it to mask (True = valid patch)", DeprecationWarning, stacklevel=2)

        @functools.wraps(embed)
        def embed_with_mask(self: SlideEncoder, features: torch.Tensor, coords: torch.Tensor | None = None, *args: Any,
                            mask: torch.Tensor | None = None, **kw: Any) -> TokenState:
            if mask is not None:
                if kw.get("padding_mask") is not None or args:
                    raise InputError(f"{cls.__name__}.embed got both mask and padding_mask", where="padding_mask",
                                     fix="pass only mask= (True = valid patch)")
                kw["padding_mask"] = ~mask
            return embed(self, features, coords, *args, **kw)

        cls.embed = embed_with_mask

    # -- stages -------------------------------------------------------------------------------
    def embed(self, features: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None, *,
              padding_mask: torch.Tensor | None = None, **kw: Any) -> TokenState:
        """Patch embedding + positions (+ CLS): ``(B, N, D_in), (B, N, 2), mask (B, N) -> TokenState``.

        ``mask`` is True for valid patches; ``padding_mask`` is the deprecated inverse (see the module
        docstring), resolved by :func:`~modaltune.encoders.slide._contracts.check_mask`.
        """
        raise NotImplementedError

    def _run_layer(self, index: int, state: TokenState) -> torch.Tensor:
        """Run block ``index`` on ``state`` and return the new ``(B, T, D)`` tokens."""
        raise NotImplementedError

    def pool(self, state: TokenState) -> torch.Tensor:
        """Final norms and pooling: ``TokenState -> (B, embed_dim)`` slide embedding."""
        raise NotImplementedError

    def run_layers(self, state: TokenState, start: int = 0, stop: int | None = None) -> TokenState:
        """Run blocks ``start .. stop-1`` (half-open like ``range``; ``stop=None`` means all).

        With ``grad_checkpointing`` on and gradients enabled, each block is recomputed in the
        backward pass (torch.utils.checkpoint, non-reentrant), trading compute for memory.
        """
        stop = self.num_layers if stop is None else stop
        if not (0 <= start <= stop <= self.num_layers):
            raise ValueError(f"layer range [{start}, {stop}) is outside [0, {self.num_layers}) of {type(self).__name__}")
        for i in range(start, stop):
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(self._checkpointed_layer, i, state.tokens, state, use_reentrant=False)
            else:
                tokens = self._run_layer(i, state)
            state = state.with_tokens(tokens)
        return state

    def _checkpointed_layer(self, index: int, tokens: torch.Tensor, state: TokenState) -> torch.Tensor:
        return self._run_layer(index, state.with_tokens(tokens))

    def set_grad_checkpointing(self, enable: bool = True) -> SlideEncoder:
        """Turn per-block gradient checkpointing on or off; returns self."""
        self.grad_checkpointing = bool(enable)
        return self

    def forward(self, features: torch.Tensor, coords: torch.Tensor | None = None, mask: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:
        """``embed -> run_layers(0, num_layers) -> pool``; returns ``(B, embed_dim)``.

        ``mask (B, N)`` bool, True = valid patch; the deprecated ``padding_mask=`` travels in ``kw``
        to :meth:`embed`, which converts it.
        """
        state = self.embed(features, coords, mask=mask, **kw)
        state = self.run_layers(state, 0, self.num_layers)
        return self.pool(state)
