"""The model of ``modaltune pretrain`` (:mod:`modaltune.pretrain`): one encoder per modality into a shared ``embed_dim`` space, plus the
objective's extra parts (learned logit scale; MIRROR's decoders and prototypes).

``spec`` (a JSON-able dict, saved in ``pretrain.json``) rebuilds the module exactly::

    {"objective": "symile" | "clip" | "mirror", "negative_sampling": "n" | "n_squared",
     "embed_dim": E, "hidden": H, "slide": "abmil" | "mean",
     "modalities": [{"name": "wsi", "kind": "slide" | "omics" | "clinical", "in_dim": D}, ...],
     "mirror": {"retention", "style", "mask_ratio", "n_prototypes", "temperature"}}

Missing modalities (Symile's handling): a patient without modality m gets a learned per-modality
vector in place of m's embedding (:class:`~modaltune.layers.missing.MissingModalityEmbedding`), so
every patient of the fold trains the other encoders and the missing vector is fitted like any
parameter. Embeddings are L2-normalised before any objective, as in Symile's and CLIP's code.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modaltune.errors import InputError
from modaltune.layers.gated_attention import GatedAttention
from modaltune.layers.missing import MissingModalityEmbedding, masked_mean
from modaltune.layers.mlp import Mlp
from modaltune.losses.contrastive import (
    LogitScale,
    masked_reconstruction_loss,
    pairwise_clip_loss,
    swapped_prediction_loss,
    symile_loss,
)

__all__ = ["FORMAT", "MultimodalPretrainModel", "load_pretrained", "modality_input"]


class _SlideEncoder(nn.Module):
    """(B, N, D) bag + (B, N) mask -> (B, E): gated-attention MIL (``abmil``) or masked mean + MLP (``mean``)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, kind: str):
        super().__init__()
        self.kind = kind
        if kind == "abmil":
            self.proj = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
            self.attn = GatedAttention(hidden, max(hidden // 2, 1))
            self.out = nn.Linear(hidden, out_dim)
        else:
            self.mlp = Mlp(in_dim, hidden, out_dim)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "abmil":
            h = self.proj(feats)
            # a bag without any patch would give NaN weights: give it one dummy valid token (its row is replaced as missing)
            safe = mask | ~mask.any(dim=1, keepdim=True)
            pooled, _ = self.attn(h, safe)
            return self.out(pooled)
        return self.mlp(masked_mean(feats, mask))


def modality_input(batch: dict, name: str, kind: str) -> tuple[Any, torch.Tensor]:
    """``(input, present (B,) bool)`` of modality ``name`` in a collated batch: the bag dict of a
    slide modality, the (B, G) omics tensor, or the (B, F) clinical matrix."""
    mm = batch["modality_mask"][name]
    if kind == "slide":
        slide = batch["slide"]
        return slide, mm & slide["mask"].any(dim=1)
    if kind == "omics":
        return batch["omics"][name], mm
    return batch["clinical"], mm


class MultimodalPretrainModel(nn.Module):
    """Per-modality encoders + objective. ``forward(batch) -> (loss, parts)``; :meth:`embed` gives
    the (B, M * E) concatenation of the normalised modality embeddings (what probes read)."""

    def __init__(self, spec: dict):
        super().__init__()
        self.spec = spec
        E, H = int(spec["embed_dim"]), int(spec["hidden"])
        self.mods = [(m["name"], m["kind"], int(m["in_dim"])) for m in spec["modalities"]]
        self.encoders = nn.ModuleDict()
        self.missing = nn.ModuleDict()
        for name, kind, d in self.mods:
            self.encoders[name] = _SlideEncoder(d, H, E, spec["slide"]) if kind == "slide" else Mlp(d, H, E)
            self.missing[name] = MissingModalityEmbedding(E)
        self.logit_scale = LogitScale()
        self.out_dim = E * len(self.mods)
        if spec["objective"] == "mirror":
            mw = spec["mirror"]
            # retention decoders: modality embedding -> the modality's own input (slides: the mean patch feature)
            self.decoders = nn.ModuleDict({name: Mlp(E, H, d) for name, _, d in self.mods})
            self.prototypes = nn.Parameter(torch.randn(int(mw["n_prototypes"]), E) * 0.1)

    # ------------------------------------------------------------------ embeddings
    def _encode(self, name: str, kind: str, x: Any, present: torch.Tensor, hide: torch.Tensor | None = None) -> torch.Tensor:
        """(B, E) normalised embedding; ``hide``: (B, F) or (B, N) bool of inputs hidden from the encoder."""
        if kind == "slide":
            feats, mask = x["features"].float(), x["mask"]
            if hide is not None:
                mask = mask & ~hide
            emb = self.encoders[name](feats, mask)
        else:
            v = x.float()
            if hide is not None:
                v = v.masked_fill(hide, 0.0)
            emb = self.encoders[name](v)
        # torch.where inside MissingModalityEmbedding: NaN / garbage of a missing row never leaks
        return F.normalize(self.missing[name](emb, present), dim=-1)

    def modality_embeddings(self, batch: dict) -> dict[str, torch.Tensor]:
        """``{modality: (B, E)}`` L2-normalised (missing rows: the learned missing vector, normalised)."""
        out = {}
        for name, kind, _ in self.mods:
            x, present = modality_input(batch, name, kind)
            out[name] = self._encode(name, kind, x, present)
        return out

    def embed(self, batch: dict) -> torch.Tensor:
        """(B, M * E): the modality embeddings side by side, in ``spec['modalities']`` order."""
        return torch.cat(list(self.modality_embeddings(batch).values()), dim=1)

    # ------------------------------------------------------------------ objectives
    def forward(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        obj = self.spec["objective"]
        scale = self.logit_scale()
        if obj != "mirror":
            reps = list(self.modality_embeddings(batch).values())
            if obj == "symile":
                loss = symile_loss(reps, scale, negative_sampling=self.spec["negative_sampling"], generator=generator)
            else:
                loss = pairwise_clip_loss(reps, scale)
            return loss, {obj: float(loss.detach())}
        return self._mirror(batch, scale, generator)

    def _mirror(self, batch: dict, scale: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, dict[str, float]]:
        """Alignment (pairwise InfoNCE of the full-input embeddings) + retention (reconstruct what a
        random mask hid, from the masked input's embedding) + style clustering (swapped Sinkhorn
        assignments over shared prototypes, on patients having both modalities of a pair)."""
        mw = self.spec["mirror"]
        full, retention, present_of = {}, [], {}
        for name, kind, _ in self.mods:
            x, present = modality_input(batch, name, kind)
            present_of[name] = present
            full[name] = self._encode(name, kind, x, present)
            if mw["retention"] > 0 and present.any():
                if kind == "slide":
                    valid = x["mask"]
                    hide = (torch.rand(valid.shape, generator=generator) < mw["mask_ratio"]).to(valid.device) & valid
                    # keep at least one visible patch per bag so the masked embedding exists
                    hide = hide & ~(hide.sum(1, keepdim=True) == valid.sum(1, keepdim=True))
                    target = masked_mean(x["features"].float(), hide)
                    rows = present & hide.any(dim=1)
                    loss_mask = rows.unsqueeze(1).expand_as(target)
                else:
                    hide = (torch.rand(x.shape, generator=generator) < mw["mask_ratio"]).to(x.device)
                    target, loss_mask = x.float(), hide & present.unsqueeze(1)
                z = self._encode(name, kind, x, present, hide=hide)
                retention.append(masked_reconstruction_loss(self.decoders[name](z), target, loss_mask))
        align = pairwise_clip_loss(list(full.values()), scale)
        ret = torch.stack(retention).mean() if retention else align.new_zeros(())
        protos = F.normalize(self.prototypes, dim=-1)
        styles = []
        names = [n for n, _, _ in self.mods]
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                both = present_of[names[i]] & present_of[names[j]]
                if int(both.sum()) >= 2:
                    sa, sb = full[names[i]][both] @ protos.T, full[names[j]][both] @ protos.T
                    styles.append(swapped_prediction_loss(sa, sb, temperature=mw["temperature"]))
        style = torch.stack(styles).mean() if styles else align.new_zeros(())
        loss = align + mw["retention"] * ret + mw["style"] * style
        return loss, {"align": float(align.detach()), "retention": float(ret.detach()), "style": float(style.detach())}


#: ``format`` of ``pretrain.json`` (the folder written by ``modaltune pretrain``)
FORMAT = "modaltune-pretrain-1"


def load_pretrained(path: str | Path) -> tuple[MultimodalPretrainModel, dict]:
    """``(model in eval mode, pretrain.json)`` of a ``modaltune pretrain`` folder (JSON + safetensors; no pickle).

    Raises:
        InputError: not a pretraining folder, or its files do not parse / fit together.
    """
    from safetensors.torch import load

    path = Path(path)
    fix = "point at the --out folder of `modaltune pretrain`"
    if not (path / "pretrain.json").exists():
        raise InputError("no pretrain.json here: not a `modaltune pretrain` output folder", where=path, fix=fix)
    try:
        meta = json.loads((path / "pretrain.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        model = MultimodalPretrainModel(meta["spec"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"pretrain.json is not a pretraining description ({type(exc).__name__}: {exc})", where=path / "pretrain.json", fix=fix) from None
    st = path / "encoders.safetensors"
    try:
        model.load_state_dict(load(st.read_bytes()))
    except FileNotFoundError:
        raise InputError("encoders.safetensors is missing", where=path, fix="re-run `modaltune pretrain`") from None
    except Exception as exc:  # noqa: BLE001 - an untrusted file: one line, never a traceback
        raise InputError(f"encoders.safetensors does not fit pretrain.json ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                         where=st, fix="re-run `modaltune pretrain`") from None
    model.eval()
    return model, meta
