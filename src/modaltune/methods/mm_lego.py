"""``mm_lego``: MM-Lego LegoBlock / LegoMerge / LegoFuse (Hemker, Simidjievski & Jamnik, "Multimodal
Lego: Model Merging and Fine-Tuning Across Topologies and Modalities in Biomedicine", ICLR 2025;
official code konst-int-i/mm-lego, ``mm_lego/models/lego.py``; written anew here).

Three modes (``method.params.mode``):

* ``block``: one modality. Any registered branch encoder (slide ``abmil|transmil|mean``, omics
  ``snn|mlp|gene_mixer``, clinical ``mlp``) gives a token ``x (B, 1, E)``; a learned latent
  ``L (C, D)`` is updated ``depth`` times by cross-attention from the latent to ``x``, each update in
  the frequency domain (FFT over the latent channels, see :func:`modaltune.layers.lego.frequency_step`);
  the head reads ``LayerNorm(mean_C Re L)``. This is a unimodal model trained by ``modaltune fit``.
* ``merge`` (LegoMerge): ``blocks: [DIR, ...]`` name model folders of trained blocks. Their complex
  latents are merged per patient by a weighted harmonic mean of magnitudes and a mean of phases,
  their readout LayerNorms and task heads by slerp. No gradient step and no batch is read: the model
  declares ``needs_training = False`` and the engine saves it as built.
* ``fuse`` (LegoFuse): the blocks' layers interleaved (``weave``: layer s of block 1, layer s of
  block 2, ..., then layer s + 1) on one latent started at the blocks' mean latent, heads and
  readout started from the merge; then fine-tuned for ``trainer.max_epochs`` (set it small).

Missing modalities: a patient without a block's modality skips that block's updates (its latent
stays the block's learned prior latent), and LegoMerge leaves that block out of the patient's mean.
The official code has no such path: every block is run on every sample (its forward takes no mask).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from modaltune.encoders.fusion import ModalityBranch, clinical_branch, omics_branch, resolve_modalities, slide_branch
from modaltune.errors import ConfigError
from modaltune.layers.lego import LatentUpdate, frequency_step, harmonic_merge, merge_tensors, readout
from modaltune.methods._torch_common import HeadParams, split_params, wrap
from modaltune.methods.registry import register_method, validate_params

__all__ = ["MMLegoParams", "LegoBlockEncoder", "LegoMergeEncoder", "LegoFuseEncoder", "build_mm_lego", "merge_blocks"]

_DEFAULT_ENCODER = {"slide": "abmil", "omics": "snn", "clinical": "mlp"}
_BLOCK_KEYS = ("latent_channels", "latent_dim", "depth", "heads", "ff_mult", "attn_dropout", "ff_dropout",
               "frequency_domain", "normalise", "track_imaginary", "share_weights")


class MMLegoParams(HeadParams):
    """Parameters of ``mm_lego`` (+ the head/loss parameters of :class:`HeadParams`)."""

    mode: Literal["block", "merge", "fuse"] = Field("block", description="block: one modality (unimodal model); merge: LegoMerge of trained blocks (no training); fuse: LegoFuse (interleaved blocks, fine-tuned)")
    modality: str | None = Field(None, description="block mode: the modality of the block (slide, an omics block name, clinical)")
    encoder: str | None = Field(None, description="block mode: branch encoder (slide abmil|transmil|mean, omics snn|mlp|gene_mixer, clinical mlp; None: abmil / snn / mlp)")
    encoder_params: dict[str, Any] = Field(default_factory=dict, description="block mode: keyword arguments of the encoder")
    latent_channels: int = Field(64, ge=1, description="C, number of latent channels (official l_c)")
    latent_dim: int = Field(64, ge=1, description="D, width of each latent channel (official l_d)")
    depth: int = Field(2, ge=1, description="number of latent updates")
    heads: int = Field(8, ge=1, description="cross-attention heads (must divide latent_dim)")
    ff_mult: int = Field(4, ge=1, description="width multiplier of the gated-SELU feed-forward")
    attn_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout of the cross-attention")
    ff_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout of the feed-forward")
    frequency_domain: bool = Field(True, description="update the latent in the frequency domain (FFT over the latent channels)")
    normalise: bool = Field(True, description="L2-normalise the latent over its channels before each FFT")
    track_imaginary: bool = Field(True, description="keep the imaginary part of the FFT through the inverse transform")
    share_weights: bool = Field(False, description="one cross-attention/feed-forward for all depth steps (official default: separate, weight_sharing=True means unshared there)")
    blocks: list[str] = Field(default_factory=list, description="merge/fuse: model folders of trained mm_lego blocks (the OUT/model folders of `modaltune fit`)")
    block_weights: list[float] | None = Field(None, description="merge/fuse: weight of each block in the harmonic mean and head merge (None: equal)")
    head_merge: Literal["slerp", "linear"] = Field("slerp", description="merge/fuse: how trained heads and readout norms are combined")


class LegoBlockEncoder(nn.Module):
    """LegoBlock: a modality branch wrapped with a frequency-domain latent. ``forward(batch) -> (B, D)``.

    :meth:`latent` gives the complex frequency-domain latent ``(B, C, D)`` and presence ``(B,)``
    that LegoMerge combines.
    """

    def __init__(self, branch: ModalityBranch, *, latent_channels: int, latent_dim: int, depth: int, heads: int, ff_mult: int,
                 attn_dropout: float, ff_dropout: float, frequency_domain: bool, normalise: bool, track_imaginary: bool, share_weights: bool):
        super().__init__()
        self.branch = branch
        self.depth = int(depth)
        self.opts = {"frequency_domain": frequency_domain, "normalise": normalise, "track_imaginary": track_imaginary}
        self.latent_init = nn.Parameter(torch.randn(latent_channels, latent_dim))
        n = 1 if share_weights else self.depth
        self.updates = nn.ModuleList([LatentUpdate(latent_dim, branch.out_dim, heads, ff_mult, attn_dropout, ff_dropout) for _ in range(n)])
        self.readout_norm = nn.LayerNorm(latent_dim)
        self.out_dim = int(latent_dim)

    def update(self, s: int) -> nn.Module:
        return self.updates[min(s, len(self.updates) - 1)]

    def tokens(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x (B, 1, E), present (B,))``: the encoder runs once per batch (the official block reruns
        the same encoder at every depth step, which gives the same tokens in eval mode)."""
        return self.branch(batch)[:, None, :], self.branch.present(batch)

    def latent(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x, present = self.tokens(batch)
        lat = self.latent_init.expand(x.shape[0], -1, -1)
        for s in range(self.depth):
            lat, im = frequency_step(self.update(s), lat, x, present, last=s == self.depth - 1, **self.opts)
        return torch.complex(lat, im), present

    def forward(self, batch: dict) -> torch.Tensor:
        return readout(self.readout_norm, self.latent(batch)[0].real)


class LegoMergeEncoder(nn.Module):
    """LegoMerge: every block computes its latent, the latents are merged by :func:`harmonic_merge`,
    the merged readout norm reads the real part. ``forward(batch) -> (B, D)``."""

    def __init__(self, blocks: list[LegoBlockEncoder], weights: torch.Tensor, readout_norm: nn.LayerNorm):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.register_buffer("block_weights", weights.float())
        self.readout_norm = readout_norm
        self.out_dim = blocks[0].out_dim

    def forward(self, batch: dict) -> torch.Tensor:
        latents, present = zip(*(b.latent(batch) for b in self.blocks))
        return readout(self.readout_norm, harmonic_merge(latents, self.block_weights, present).real)


class LegoFuseEncoder(nn.Module):
    """LegoFuse ("weave"): one latent passes layer s of every block in turn, s = 0 .. depth - 1; a
    patient skips the layers of blocks whose modality it lacks. ``forward(batch) -> (B, D)``."""

    def __init__(self, blocks: list[LegoBlockEncoder], latent_init: torch.Tensor, readout_norm: nn.LayerNorm):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.latent_init = nn.Parameter(latent_init.clone())
        self.readout_norm = readout_norm
        self.out_dim = blocks[0].out_dim

    def forward(self, batch: dict) -> torch.Tensor:
        tokens = [b.tokens(batch) for b in self.blocks]
        steps = [(s, i) for s in range(max(b.depth for b in self.blocks)) for i, b in enumerate(self.blocks) if s < b.depth]
        lat = self.latent_init.expand(tokens[0][0].shape[0], -1, -1)
        for k, (s, i) in enumerate(steps):
            b, (x, present) = self.blocks[i], tokens[i]
            lat, _ = frequency_step(b.update(s), lat, x, present, last=k == len(steps) - 1, **b.opts)
        return readout(self.readout_norm, lat)


def _branch(info: Any, modality: str | None, encoder: str | None, encoder_params: dict) -> ModalityBranch:
    if not modality:
        raise ConfigError("mm_lego mode 'block' needs the block's modality", where="method.params.modality",
                          fix="set modality: slide, an omics block name (e.g. rna) or clinical")
    ((kind, name),) = resolve_modalities(info, [modality])
    enc = encoder or _DEFAULT_ENCODER[kind]
    if kind == "slide":
        return slide_branch(info, enc, **encoder_params)
    if kind == "omics":
        return omics_branch(info, enc, omics=None if name == "omics" else name, **encoder_params)
    return clinical_branch(info, enc, **encoder_params)


def _block(info: Any, enc: dict) -> LegoBlockEncoder:
    return LegoBlockEncoder(_branch(info, enc.get("modality"), enc.get("encoder"), dict(enc.get("encoder_params") or {})), **{k: enc[k] for k in _BLOCK_KEYS})


def _load_block(info: Any, folder: str) -> tuple[nn.Module, dict]:
    """A trained block (``MultiTaskModel`` in eval mode) rebuilt for ``info`` from its model folder,
    and its validated parameters. Reads only ``fitted.json`` and ``model.safetensors``."""
    from safetensors.torch import load_file

    path = Path(folder)
    where = f"method.params.blocks: {path}"
    fix = "name the OUT/model folder of a `modaltune fit` run of mm_lego with mode: block"
    if not (path / "fitted.json").is_file() or not (path / "model.safetensors").is_file():
        raise ConfigError("not a saved model folder (no fitted.json / model.safetensors)", where=where, fix=fix)
    try:
        meta = json.loads((path / "fitted.json").read_text())
        method = meta["method"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError("fitted.json does not parse as a model record", where=where, fix=fix) from None
    if method.get("name") != "mm_lego" or (method.get("params") or {}).get("mode", "block") != "block":
        raise ConfigError(f"holds method '{method.get('name')}' (mode {(method.get('params') or {}).get('mode')!r}), not an mm_lego block", where=where, fix=fix)
    params = validate_params("mm_lego", method.get("params"), where=f"{path}/fitted.json method.params").model_dump()
    model_params, enc = split_params(params)
    model = wrap(info, _block(info, enc), model_params, "mm_lego")
    try:
        model.load_state_dict(load_file(str(path / "model.safetensors")))
    except RuntimeError as exc:
        raise ConfigError(f"its weights do not fit this cohort ({str(exc).splitlines()[0][:200]})", where=where,
                          fix="merge blocks trained on the same tasks and input features (same omics genes, clinical fields, patch encoder)") from None
    return model.eval(), params


def merge_blocks(info: Any, blocks: list[nn.Module], *, weights: list[float] | None = None, head_merge: str = "slerp",
                 fuse: bool = False, model_params: dict | None = None) -> nn.Module:
    """LegoMerge (``fuse=False``) or LegoFuse initialisation of trained block models: a pure
    function of their weights (no data, no optimiser). ``blocks`` are ``MultiTaskModel`` s whose
    encoders are :class:`LegoBlockEncoder` (they become submodules of the result)."""
    if not blocks:
        raise ConfigError("mm_lego merge/fuse needs at least one block", where="method.params.blocks", fix="list the model folders of trained blocks")
    w = [1.0] * len(blocks) if weights is None else [float(x) for x in weights]
    if len(w) != len(blocks) or min(w) < 0 or sum(w) <= 0:
        raise ConfigError(f"block_weights {weights} must be {len(blocks)} non-negative numbers, not all 0", where="method.params.block_weights")
    encs = [b.encoder for b in blocks]
    shapes = {tuple(e.latent_init.shape) for e in encs}
    if len(shapes) != 1:
        raise ConfigError(f"blocks have different latent shapes {sorted(shapes)}", where="method.params.blocks", fix="train every block with the same latent_channels and latent_dim")
    norm = nn.LayerNorm(encs[0].out_dim)
    norm.load_state_dict({k: merge_tensors([e.readout_norm.state_dict()[k] for e in encs], w, head_merge) for k in norm.state_dict()})
    if fuse:
        total = sum(w)
        init = sum(wi / total * e.latent_init.detach() for wi, e in zip(w, encs))
        encoder: nn.Module = LegoFuseEncoder(encs, init, norm)
    else:
        encoder = LegoMergeEncoder(encs, torch.tensor(w), norm)
    mp = dict(model_params or {})
    model = wrap(info, encoder, mp, "mm_lego")
    heads = model.heads.state_dict()
    try:
        merged = {k: merge_tensors([b.heads.state_dict()[k] for b in blocks], w, head_merge) for k in heads}
    except KeyError as exc:
        raise ConfigError(f"a block has no head weight {exc}", where="method.params.blocks", fix="merge blocks trained on the same tasks with the same survival_head and head_hidden") from None
    model.heads.load_state_dict(merged)
    if fuse:
        model.train()  # the blocks were loaded in eval mode; fine-tuning runs their dropout again
    else:
        # LegoMerge is done: nothing to learn, and the engine must not run an optimiser or read a batch
        model.requires_grad_(False)
        model.needs_training = False
    return model


@register_method("mm_lego", kind="torch", modalities=("slide", "omics", "clinical"), params=MMLegoParams,
                 description="MM-Lego: frequency-domain LegoBlocks, LegoMerge (no training) and LegoFuse (Hemker et al. 2025)")
def build_mm_lego(info: Any, **params: Any):
    """Params: :class:`MMLegoParams` (validated, defaults filled)."""
    model_params, enc = split_params(params)
    if enc["mode"] == "block":
        if enc["blocks"]:
            raise ConfigError("mode 'block' trains one block; 'blocks' is for merge/fuse", where="method.params.blocks", fix="drop blocks, or set mode: merge")
        return wrap(info, _block(info, enc), model_params, "mm_lego")
    if not enc["blocks"]:
        raise ConfigError(f"mode '{enc['mode']}' needs trained blocks", where="method.params.blocks", fix="list the OUT/model folders of `modaltune fit` runs of mm_lego with mode: block")
    loaded = [_load_block(info, d) for d in enc["blocks"]]
    for key in ("survival_head", "head_hidden"):
        seen = {repr(p[key]) for _, p in loaded} | {repr(model_params[key])}
        if len(seen) != 1:
            raise ConfigError(f"{key} differs between the blocks and this model ({sorted(seen)})", where=f"method.params.{key}",
                              fix=f"set {key} as the blocks were trained")
    return merge_blocks(info, [m for m, _ in loaded], weights=enc["block_weights"], head_merge=enc["head_merge"], fuse=enc["mode"] == "fuse", model_params=model_params)
