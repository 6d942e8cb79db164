"""The ModalTune Modal Adapter: extra-modal tokens exchange information with a frozen slide encoder.

ViT-Adapter-style interaction at groups of backbone layers (Ramanathan et al., ICCV 2025)::

    state = backbone.embed(features, coords)                      # frozen
    state = backbone.run_layers(state, 0, k)                      # frozen prefix before the first group (k = groups[0][0])
    for g, (a, b) in enumerate(groups):                           # inclusive layer groups, e.g. [[0,3],[4,7],[8,11]]
        if g > 0:  c = c + SelfAttn(c)                            # prompt self-attention over modal tokens
        x = x + gamma_g * CrossAttn(x -> c)                       # injector: patch tokens query modal tokens
        state = backbone.run_layers(state, a, b + 1)              # frozen blocks on [CLS; x]
        c = c + CrossAttn(c -> x);  c = c + DropPath(FFN(c))      # extractor: modal tokens query patch tokens
    (last group: ``extra_extractors`` more extractors)
    slide = backbone.pool(state)                                  # frozen final norm / pooler

The first group may start at a layer ``k > 0``: layers ``[0, k)`` see no modal token, so they are
part of the frozen *prefix* computed by :meth:`ModalAdapter.embed` without autograd (no activation
is stored for backward) and, being a pure function of the patch selection, can be cached per
patient at evaluation (``ModalTuneModel``'s bounded embed cache).

``gamma_g`` is a per-channel gate initialised to zero, so the adapted model starts *exactly* as the
frozen backbone (tested). The backbone's parameters never receive gradients and the backbone is
kept in eval mode (no dropout / drop-path), so its weights stay bit-identical through training.

Design decisions (deliberate departures from the authors' release, see docs/methods.md):
- each cross-attention adds its residual once (the release added it twice);
- positional embeddings of the modal tokens are added to queries/keys only, never to values;
- a missing modality's tokens are masked out of every attention (``modal_mask`` False); a patient
  with no modal token at all gets a zero injection, i.e. exactly the frozen backbone output.

Shapes: patch tokens ``x`` (B, N, d); modal tokens ``c`` (B, M, d); ``modal_mask`` (B, M) bool,
True = present; patch ``mask`` (B, N) bool, True = valid patch (right padding). Every mask here is
True = valid; only ``nn.MultiheadAttention``'s ``key_padding_mask`` gets the inverse.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modaltune.layers.mlp import DropPath

__all__ = ["CrossAttention", "Injector", "Extractor", "ModalSelfAttention", "CompressedSelfAttention", "ModalAdapter", "PAPER_GROUPS",
           "GATE_INITS", "init_gates", "gate_diagnostics"]

#: injector gate initialisations: ``zero`` (paper; the adapted model starts as the frozen backbone),
#: ``constant`` (every channel = ``value``), ``normal`` (N(0, ``value``^2) per channel)
GATE_INITS = ("zero", "constant", "normal")

#: Interaction groups of the paper (inclusive layer indices).
PAPER_GROUPS = {
    "gigapath": [[0, 3], [4, 7], [8, 11]],
    "titan": [[0, 1], [2, 3], [4, 5]],
}


class CrossAttention(nn.Module):
    """Pre-norm multi-head cross-attention with compressed queries.

    ``queries (B, Nq, dim)`` attend ``keys (B, Nk, dim)``; q/k/v are projected to ``attn_dim``
    (192 in the paper) split over ``heads`` heads, then projected back to ``dim``.
    ``key_mask (B, Nk)`` bool, True = key may be attended. Query rows with no valid key return 0.
    ``query_pos`` / ``key_pos`` (broadcastable to the inputs) are added to q / k only.
    """

    def __init__(self, dim: int, attn_dim: int = 192, heads: int = 12, dropout: float = 0.0):
        super().__init__()
        if attn_dim % heads:
            raise ValueError(f"attn_dim {attn_dim} must be divisible by heads {heads}")
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, attn_dim)
        self.k = nn.Linear(dim, attn_dim)
        self.v = nn.Linear(dim, attn_dim)
        self.out = nn.Linear(attn_dim, dim)
        self.dropout = dropout
        #: set True to keep the last attention weights in ``last_attn`` (B, heads, Nq, Nk) for
        #: interpretation (explicit softmax instead of the fused kernel; same output)
        self.record = False
        self.last_attn: torch.Tensor | None = None

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
        key_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, Nq, _ = queries.shape
        Nk = keys.shape[1]
        qn, kn = self.norm_q(queries), self.norm_kv(keys)
        q = self.q(qn if query_pos is None else qn + query_pos)
        k = self.k(kn if key_pos is None else kn + key_pos)
        v = self.v(kn)
        h = self.heads
        q = q.view(B, Nq, h, -1).transpose(1, 2)
        k = k.view(B, Nk, h, -1).transpose(1, 2)
        v = v.view(B, Nk, h, -1).transpose(1, 2)
        attn_mask = None
        empty = None
        if key_mask is not None:
            key_mask = key_mask.to(torch.bool)
            empty = ~key_mask.any(dim=1)  # (B,) samples without any valid key
            if empty.any():
                # SDPA returns NaN for fully masked rows; let them attend to key 0 and zero them below
                key_mask = key_mask.clone()
                key_mask[empty, 0] = True
            attn_mask = key_mask[:, None, None, :]
        if self.record:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            w = scores.softmax(dim=-1)
            if empty is not None and empty.any():
                w = w.masked_fill(empty[:, None, None, None], 0.0)
            self.last_attn = w.detach()
            o = w @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        o = self.out(o.transpose(1, 2).reshape(B, Nq, -1))
        if empty is not None and empty.any():
            o = o.masked_fill(empty[:, None, None], 0.0)
        return o


class Injector(nn.Module):
    """Patch tokens query the modal tokens: ``x + gamma * CrossAttn(x, c)``, gamma (dim,) init 0."""

    def __init__(self, dim: int, attn_dim: int = 192, heads: int = 12, init_gate: float = 0.0):
        super().__init__()
        self.attn = CrossAttention(dim, attn_dim, heads)
        self.gamma = nn.Parameter(torch.full((dim,), float(init_gate)))
        #: ``||gamma * CrossAttn(x, c)|| / ||x||`` of the last forward (mean over patients, norms over
        #: the valid patch tokens); a float, detached, for the per-epoch diagnostic
        self.last_update_ratio: float | None = None

    def forward(self, x: torch.Tensor, c: torch.Tensor, modal_mask: torch.Tensor | None, c_pos: torch.Tensor | None = None) -> torch.Tensor:
        upd = self.gamma * self.attn(x, c, key_mask=modal_mask, key_pos=c_pos)
        with torch.no_grad():
            # Frobenius norms per patient over (N, d): how far the injection moves the patch stream
            ratio = upd.detach().flatten(1).norm(dim=1) / x.detach().flatten(1).norm(dim=1).clamp_min(1e-12)
            self.last_update_ratio = float(ratio.mean())
        return x + upd


class Extractor(nn.Module):
    """Modal tokens query the patch tokens, then a small FFN (dim -> ffn_dim -> dim, ReLU), drop-path."""

    def __init__(self, dim: int, attn_dim: int = 192, heads: int = 12, ffn_dim: int = 192, drop_path: float = 0.0):
        super().__init__()
        self.attn = CrossAttention(dim, attn_dim, heads)
        self.norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, c: torch.Tensor, x: torch.Tensor, patch_valid: torch.Tensor | None, c_pos: torch.Tensor | None = None) -> torch.Tensor:
        c = c + self.drop_path(self.attn(c, x, key_mask=patch_valid, query_pos=c_pos))
        return c + self.drop_path(self.ffn(self.norm(c)))


class CompressedSelfAttention(nn.Module):
    """Pre-norm self-attention over the modal tokens with q/k/v compressed to ``attn_dim`` (the
    paper's 768 -> 192-d prompt attention): ``c + CrossAttn(c -> c)``; missing tokens are neither
    attended nor updated."""

    def __init__(self, dim: int, attn_dim: int = 192, heads: int = 12):
        super().__init__()
        self.attn = CrossAttention(dim, attn_dim, heads)

    def forward(self, c: torch.Tensor, modal_mask: torch.Tensor | None, c_pos: torch.Tensor | None = None) -> torch.Tensor:
        out = self.attn(c, c, key_mask=modal_mask, query_pos=c_pos, key_pos=c_pos)
        if modal_mask is not None:
            out = out * modal_mask[..., None].to(out.dtype)
        return c + out


def init_gates(injectors: Sequence[Injector], how: str = "zero", value: float = 0.0, seed: int = 0) -> None:
    """Set every injector gate: ``zero``, ``constant`` (= ``value``) or ``normal`` (std ``value``, seeded)."""
    if how not in GATE_INITS:
        raise ValueError(f"unknown gate initialisation '{how}' (use one of {GATE_INITS})")
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for inj in injectors:
            if how == "zero":
                inj.gamma.zero_()
            elif how == "constant":
                inj.gamma.fill_(float(value))
            else:
                inj.gamma.copy_(torch.randn(inj.gamma.shape, generator=g) * float(value))


def gate_diagnostics(adapter: ModalAdapter) -> dict[str, float]:
    """Per interaction group ``g``: ``gate_abs_mean/g<g>`` = mean |gamma_g| over channels and
    ``update_ratio/g<g>`` = ||gamma_g * CrossAttn(x, c)|| / ||x|| of the last forward (patch tokens
    entering group g, mean over patients; absent before any forward)."""
    out: dict[str, float] = {}
    for i, inj in enumerate(adapter.injectors):
        out[f"gate_abs_mean/g{i}"] = float(inj.gamma.detach().abs().mean())
        if inj.last_update_ratio is not None:
            out[f"update_ratio/g{i}"] = float(inj.last_update_ratio)
    return out


class ModalSelfAttention(nn.Module):
    """Pre-norm self-attention over the modal tokens (missing modalities masked out)."""

    def __init__(self, dim: int, heads: int = 12):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, c: torch.Tensor, modal_mask: torch.Tensor | None, c_pos: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(c)
        qk = h if c_pos is None else h + c_pos
        kpm = None
        if modal_mask is not None:
            kpm = ~modal_mask.to(torch.bool)
            none = kpm.all(dim=1)
            if none.any():
                kpm = kpm.clone()
                kpm[none, 0] = False
        out, _ = self.attn(qk, qk, h, key_padding_mask=kpm, need_weights=False)
        if modal_mask is not None:
            out = out * modal_mask[..., None].to(out.dtype)
        return c + out


class ModalAdapter(nn.Module):
    """Interleave injector/extractor blocks with a frozen :class:`~modaltune.encoders.slide.base.SlideEncoder`.

    Args:
        backbone: a slide encoder with the layer-group API (``embed``/``run_layers``/``pool``).
        groups: inclusive layer-index groups, e.g. ``[[0, 3], [4, 7], [8, 11]]``; contiguous, in
            order, ending at the last layer. The first may start at ``k > 0`` (e.g. ``[[6, 8],
            [9, 11]]``): layers ``0 .. k-1`` are then the frozen prefix run by :meth:`embed`.
        attn_dim, heads: cross-attention width and heads (paper: 192, 12).
        ffn_dim: extractor FFN width (paper: 192).
        extra_extractors: extra extractors after the last group (paper: 2).
        drop_path: drop-path rate of the extractors (stochastic depth on both the attention and the
            FFN branch of every extractor; 0 turns it off).
        prompt_attn_dim: width of the prompt self-attention over modal tokens before groups 2..G:
            None = full width (``nn.MultiheadAttention`` at ``dim``, the previous default); an int
            (paper: 192) = :class:`CompressedSelfAttention` at that width.
        gate_init, gate_value, gate_seed: injector gate initialisation (:func:`init_gates`).
        freeze_backbone: freeze the backbone (the method's premise; default True).
    """

    def __init__(
        self,
        backbone: nn.Module,
        groups: Sequence[Sequence[int]],
        *,
        attn_dim: int = 192,
        heads: int = 12,
        ffn_dim: int = 192,
        extra_extractors: int = 2,
        drop_path: float = 0.1,
        prompt_attn_dim: int | None = None,
        gate_init: str = "zero",
        gate_value: float = 0.0,
        gate_seed: int = 0,
        freeze_backbone: bool = True,
        use_extractors: bool = True,
    ):
        super().__init__()
        self.backbone = backbone
        self.groups = [list(map(int, g)) for g in groups]
        n = int(backbone.num_layers)
        if not self.groups:
            raise ValueError("at least one interaction group is needed")
        expect = self.groups[0][0]
        if not 0 <= expect < n:
            raise ValueError(f"interaction groups {self.groups}: the first group starts at layer {expect}, outside 0..{n - 1}")
        for a, b in self.groups:
            if a != expect or b < a:
                raise ValueError(f"interaction groups {self.groups} must be contiguous and in order (got [{a}, {b}] after layer {expect - 1})")
            expect = b + 1
        if expect != n:
            raise ValueError(f"interaction groups {self.groups} end at layer {expect - 1} but the backbone has {n} layers (the last group must end at {n - 1})")
        #: layers ``[0, prefix_layers)`` run before the first injection point (frozen prefix)
        self.prefix_layers = self.groups[0][0]
        dim = int(backbone.embed_dim)
        self.dim = dim
        g = len(self.groups)
        self.injectors = nn.ModuleList([Injector(dim, attn_dim, heads) for _ in range(g)])
        # use_extractors=False (ablation): the modal tokens never read the patch tokens
        self.extractors = nn.ModuleList([Extractor(dim, attn_dim, heads, ffn_dim, drop_path) for _ in range(g if use_extractors else 0)])
        self.extra_extractors = nn.ModuleList([Extractor(dim, attn_dim, heads, ffn_dim, drop_path) for _ in range(extra_extractors if use_extractors else 0)])
        if prompt_attn_dim is None:
            self.self_attn = nn.ModuleList([ModalSelfAttention(dim, heads) for _ in range(max(g - 1, 0))])
        else:
            self.self_attn = nn.ModuleList([CompressedSelfAttention(dim, int(prompt_attn_dim), heads) for _ in range(max(g - 1, 0))])
        init_gates(self.injectors, gate_init, gate_value, gate_seed)
        self.freeze_backbone = freeze_backbone
        if self.prefix_layers and not freeze_backbone:
            raise ValueError(f"groups start at layer {self.prefix_layers}: a frozen prefix needs freeze_backbone=True")
        if freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> ModalAdapter:
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # frozen backbone: no dropout / drop-path, ever
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("backbone.")]

    def embed(self, features: torch.Tensor, coords: torch.Tensor | None, mask: torch.Tensor | None = None, **kw):
        """The frozen prefix: ``backbone.embed`` then layers ``[0, prefix_layers)``.

        ``mask (B, N)`` bool, True = valid patch (the deprecated ``padding_mask=`` travels in ``kw``
        to ``backbone.embed``, which converts it).

        Runs without autograd when the backbone is frozen (nothing before the first injector needs
        a gradient, so no activation is kept); returns the ``TokenState`` the first injector reads.
        """
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_backbone):
            state = self.backbone.embed(features, coords, mask=mask, **kw)
            if self.prefix_layers:
                state = self.backbone.run_layers(state, 0, self.prefix_layers)
            return state

    def forward(
        self,
        features: torch.Tensor,
        coords: torch.Tensor | None,
        modal_tokens: torch.Tensor,
        modal_mask: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        modal_pos: torch.Tensor | None = None,
        state=None,
        **embed_kw,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the adapted backbone.

        Args:
            features: (B, N, D_in) patch features; coords: (B, N, 2) level-0 px.
            modal_tokens: (B, M, dim) modal tokens (genomic pathways, clinical, text, task ...).
            modal_mask: (B, M) bool, True = token present (missing modalities False).
            mask: (B, N) bool, True = valid patch (right padding; None = all valid). The deprecated
                ``padding_mask=`` (True = padded patch) is still accepted through ``embed_kw``.
            modal_pos: (1 or B, M, dim) positional embedding of the modal-token sequence.
            state: a precomputed :meth:`embed` output (frozen prefix) to reuse, e.g. from a cache.

        Returns:
            slide: (B, dim) pooled slide output of the adapted backbone;
            modal_tokens: (B, M, dim) updated modal tokens.
        """
        if state is None:
            state = self.embed(features, coords, mask=mask, **embed_kw)
        c = modal_tokens
        patch_valid = state.patch_mask
        # The adapter computes in its own (trainable, float32) dtype. A bf16-weights backbone
        # (precision="bf16-weights") hands out bf16 tokens: they are read in the adapter's dtype here, and
        # the float32 stream handed back is cast to bf16 by the backbone's own layers (precision.py).
        dt = self.injectors[0].gamma.dtype
        for gi, (a, b) in enumerate(self.groups):
            if gi > 0:
                c = self.self_attn[gi - 1](c, modal_mask, modal_pos)
            x = self.injectors[gi](state.patch_tokens.to(dt), c, modal_mask, modal_pos)
            state = state.with_patch_tokens(x)
            state = self.backbone.run_layers(state, a, b + 1)
            if self.extractors:
                c = self.extractors[gi](c, state.patch_tokens.to(dt), patch_valid, modal_pos)
        for ex in self.extra_extractors:
            c = ex(c, state.patch_tokens.to(dt), patch_valid, modal_pos)
        return self.backbone.pool(state).to(dt), c
