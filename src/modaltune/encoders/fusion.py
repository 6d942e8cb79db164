"""Modality branches and concatenation ("cat") late fusion, with missing modalities kept.

A :class:`ModalityBranch` reads one modality from the batch (see the batch contract in
docs/ARCHITECTURE.md), runs its encoder **only on the patients that have the modality**, and
gives every other patient a learned "missing" embedding
(:class:`modaltune.layers.missing.MissingModalityEmbedding`). So:

* a patient lacking a modality is kept (never dropped) and gets the same learned vector;
* the encoder never reads a missing patient's (zero-filled) inputs, and that patient's loss sends
  no gradient into the encoder (only into the missing embedding and later layers);
* a batch in which nobody has the modality does not run the encoder at all.

:class:`ConcatFusion` concatenates the branch embeddings (any subset of modalities) and applies an
optional ``Linear -> ReLU -> Dropout`` fusion layer, as the "concat" baselines of MCAT/PORPOISE.

Helpers :func:`slide_branch`, :func:`omics_branch`, :func:`clinical_branch` build branches from a
``CohortInfo`` with an encoder chosen by name.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from modaltune.errors import ConfigError, InputError

__all__ = [
    "ModalityBranch",
    "ConcatFusion",
    "MaskedMeanPool",
    "SlideInput",
    "slide_branch",
    "omics_branch",
    "clinical_branch",
    "resolve_modalities",
    "SLIDE_ENCODERS",
    "OMICS_ENCODERS",
    "CLINICAL_ENCODERS",
]

SLIDE_ENCODERS = ("abmil", "transmil", "mean")
OMICS_ENCODERS = ("snn", "mlp", "gene_mixer")
CLINICAL_ENCODERS = ("mlp",)


def _missing_embedding(dim: int) -> nn.Module:
    from modaltune.layers.missing import MissingModalityEmbedding

    return MissingModalityEmbedding(dim)


def _take_rows(x: Any, rows: torch.Tensor) -> Any:
    """Index the batch axis of a tensor or of every tensor in a dict."""
    if isinstance(x, dict):
        return {k: _take_rows(v, rows) for k, v in x.items()}
    if isinstance(x, torch.Tensor):
        return x[rows]
    return x


def _present(batch: dict, key: str, n: int, device: torch.device) -> torch.Tensor:
    """``(B,)`` bool: patients that have modality ``key`` (all True when the batch has no mask for it)."""
    mm = batch.get("modality_mask") or {}
    if key not in mm:
        return torch.ones(n, dtype=torch.bool, device=device)
    p = torch.as_tensor(mm[key], device=device).bool()
    if p.shape != (n,):
        raise InputError(f"modality_mask['{key}'] has shape {tuple(p.shape)}, expected ({n},)", where="batch.modality_mask")
    return p


class ModalityBranch(nn.Module):
    """One modality: ``reader(batch) -> (inputs, present)``, ``encoder(inputs) -> (B', E)``, missing embedding.

    Args:
        name: modality name (for messages and for :attr:`ConcatFusion.branches`).
        encoder: module mapping the reader's inputs (a tensor or dict of tensors with batch axis
            first) to ``(B', out_dim)``; it is only called on present patients.
        reader: function ``batch -> (inputs, present (B,) bool)``.
        out_dim: embedding width (default ``encoder.out_dim``).

    Shapes: ``forward(batch) -> (B, out_dim)``.
    """

    def __init__(self, name: str, encoder: nn.Module, reader: Callable[[dict], tuple[Any, torch.Tensor]], out_dim: int | None = None):
        super().__init__()
        self.name = name
        self.encoder = encoder
        self.reader = reader
        self.out_dim = int(out_dim if out_dim is not None else encoder.out_dim)
        self.missing = _missing_embedding(self.out_dim)

    def present(self, batch: dict) -> torch.Tensor:
        """``(B,)`` bool: patients for whom this branch runs its encoder."""
        return self.reader(batch)[1]

    def forward(self, batch: dict) -> torch.Tensor:
        inputs, present = self.reader(batch)
        B = present.shape[0]
        ref = self.missing_reference()
        if bool(present.all()):
            emb = self.encoder(inputs)
        else:
            emb = ref.new_zeros(B, self.out_dim)
            if bool(present.any()):
                rows = present.nonzero(as_tuple=True)[0]
                emb = emb.index_put((rows,), self.encoder(_take_rows(inputs, rows)).to(emb.dtype))
        return self.missing(emb, present)

    def missing_reference(self) -> torch.Tensor:
        """A parameter of this branch (device/dtype reference)."""
        return next(self.parameters())


class MaskedMeanPool(nn.Module):
    """Mean of the valid patch features: ``{features (B, N, D), mask (B, N)} -> (B, D)``.

    The "mean pooling" slide encoder of late fusion (no parameters; a head or the fusion layer
    does the learning).
    """

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = int(in_dim)

    def forward(self, inputs: dict) -> torch.Tensor:
        f, m = inputs["features"], inputs["mask"].to(inputs["features"].dtype)
        return (f * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)


class SlideInput(nn.Module):
    """Adapts a :class:`~modaltune.encoders.slide.base.SlideEncoder` to the batch's slide dict.

    The batch marks real patches with ``mask`` True, and so do slide encoders, which also need the
    valid patches first. Valid patches are moved to the front (order kept) and the bag is trimmed to
    the longest bag of the (sub)batch, so extra padding never changes the output.
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.out_dim = int(encoder.embed_dim)

    def forward(self, inputs: dict) -> torch.Tensor:
        f, m = inputs["features"], inputs["mask"]
        order = torch.argsort((~m).to(torch.int8), dim=1, stable=True)  # valid first, input order kept
        n_max = int(m.sum(1).max())
        order = order[:, :n_max]
        f = torch.gather(f, 1, order[..., None].expand(-1, -1, f.shape[-1]))
        valid = torch.gather(m, 1, order)
        coords = inputs.get("coords")
        if coords is not None:
            coords = torch.gather(coords, 1, order[..., None].expand(-1, -1, coords.shape[-1]))
        return self.encoder(f, coords, mask=None if bool(valid.all()) else valid)


def _slide_reader(modality_key: str) -> Callable[[dict], tuple[dict, torch.Tensor]]:
    def read(batch: dict) -> tuple[dict, torch.Tensor]:
        if "slide" not in batch:
            raise InputError("the method uses the slide modality but the batch has no 'slide' entry", where="batch", fix="add the slide modality to the cohort / run config")
        s = batch["slide"]
        mask = s["mask"].bool()
        # A patient whose bag has no real patch has no usable slide, whatever the flag says.
        present = _present(batch, modality_key, mask.shape[0], mask.device) & mask.any(1)
        inputs = {"features": s["features"].float(), "mask": mask}
        if s.get("coords") is not None:
            inputs["coords"] = s["coords"]
        return inputs, present

    return read


def _omics_reader(names: Sequence[str]) -> Callable[[dict], tuple[torch.Tensor, torch.Tensor]]:
    """Reader for one or several omics blocks.

    One block: its values, present where the block is present. Several blocks: concatenation in
    which each missing block is zeroed (never read) and followed by one indicator column per block
    saying it is missing; the patient counts as present if any block is.
    """
    names = list(names)

    def read(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        omics = batch.get("omics") or {}
        for n in names:
            if n not in omics:
                raise InputError(f"the method uses omics block '{n}' but the batch has none", where="batch.omics", fix=f"available: {sorted(omics)}")
        xs = [omics[n].float() for n in names]
        B = xs[0].shape[0]
        pres = [_present(batch, n, B, xs[0].device) for n in names]
        if len(names) == 1:
            return xs[0], pres[0]
        parts = [x * p[:, None].to(x.dtype) for x, p in zip(xs, pres)]
        indicators = torch.stack([(~p).to(xs[0].dtype) for p in pres], dim=1)
        present = torch.stack(pres, 1).any(1)
        return torch.cat(parts + [indicators], dim=1), present

    return read


def _clinical_reader(modality_key: str) -> Callable[[dict], tuple[torch.Tensor, torch.Tensor]]:
    def read(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.get("clinical") is None:
            raise InputError("the method uses clinical fields but the batch has no 'clinical' entry", where="batch", fix="declare clinical fields in cohort.yaml")
        x = batch["clinical"].float()
        return x, _present(batch, modality_key, x.shape[0], x.device)

    return read


# -- branch builders ---------------------------------------------------------------------------


def slide_modality_name(info: Any) -> str:
    return getattr(info, "slide_modality", None) or "slide"


def clinical_modality_name(info: Any) -> str:
    """Key of the clinical modality in ``modality_mask``.

    ``info.clinical_modality`` when the CohortInfo has it; otherwise ``clinical`` if that is a
    modality name, else the only modality that is neither slide, omics nor text.
    """
    name = getattr(info, "clinical_modality", None)
    if name:
        return str(name)
    mods = list(getattr(info, "modalities", None) or [])
    if "clinical" in mods or not mods:
        return "clinical"
    omics = set(getattr(info, "omics_dims", None) or {})
    rest = [m for m in mods if m != getattr(info, "slide_modality", None) and m not in omics]
    if len(rest) == 1 and not getattr(info, "text", False):
        return rest[0]
    clin = [m for m in rest if "clin" in m.lower()]
    return clin[0] if len(clin) == 1 else "clinical"


def slide_branch(info: Any, encoder: str = "abmil", **params: Any) -> ModalityBranch:
    """Slide branch: ``abmil`` (gated attention), ``transmil`` or ``mean`` (masked mean pooling).

    ``params`` go to the slide encoder (e.g. ``embed_dim``, ``attn_dim``, ``dropout``, ``num_heads``).
    """
    in_dim = getattr(info, "slide_dim", None)
    if not in_dim:
        raise ConfigError("the method needs the slide modality but the cohort has none", where="method.params.modalities", fix="drop 'slide' or add slide features to the cohort")
    if encoder == "mean":
        if params:
            raise ConfigError(f"mean pooling takes no parameters, got {sorted(params)}", where="method.params.slide_params")
        enc: nn.Module = MaskedMeanPool(in_dim)
    elif encoder in ("abmil", "transmil"):
        from modaltune.encoders.slide import create_slide_encoder

        enc = SlideInput(create_slide_encoder(encoder, in_dim=int(in_dim), **params))
    else:
        raise ConfigError(f"unknown slide encoder '{encoder}'", where="method.params.slide_encoder", fix=f"use one of {list(SLIDE_ENCODERS)}")
    return ModalityBranch(slide_modality_name(info), enc, _slide_reader(slide_modality_name(info)))


def _omics_names(info: Any, omics: str | Sequence[str] | None) -> list[str]:
    dims = dict(getattr(info, "omics_dims", None) or {})
    if not dims:
        raise ConfigError("the method needs omics but the cohort has no omics block", where="method.params.modalities")
    names = list(dims) if omics is None else ([omics] if isinstance(omics, str) else list(omics))
    for n in names:
        if n not in dims:
            raise ConfigError(f"unknown omics block '{n}'", where="method.params.omics", fix=f"use one of {sorted(dims)}")
    return names


def omics_branch(info: Any, encoder: str = "snn", omics: str | Sequence[str] | None = None, **params: Any) -> ModalityBranch:
    """Omics branch over one block or several blocks (``snn``/``mlp``) or one block (``gene_mixer``).

    ``params`` go to the encoder (``hidden``, ``dropout``, ``activation``; for ``gene_mixer``:
    ``token_dim``, ``n_blocks``, ``channel_hidden``, ``n_compress``).
    """
    from modaltune.encoders.omics import GeneMixer, MLPEncoder, SNNEncoder

    names = _omics_names(info, omics)
    dims = dict(info.omics_dims)
    in_dim = sum(int(dims[n]) for n in names) + (len(names) if len(names) > 1 else 0)
    if encoder == "snn":
        enc: nn.Module = SNNEncoder(in_dim, **params)
    elif encoder == "mlp":
        enc = MLPEncoder(in_dim, **params)
    elif encoder == "gene_mixer":
        if len(names) != 1:
            raise ConfigError(f"gene_mixer encodes one omics block, got {names}", where="method.params.omics", fix="set omics: <the RNA block name>")
        pw = (getattr(info, "pathways", None) or {}).get(names[0])
        if pw is None:
            raise ConfigError(
                f"gene_mixer needs pathways for omics block '{names[0]}' but the cohort has none",
                where="cohort.yaml pathways",
                fix="declare a pathway file (e.g. shared/data/pathways/combine_comps.csv) for this omics block",
            )
        enc = GeneMixer(int(dims[names[0]]), pw.gene_index, getattr(pw, "names", None), **params)
    else:
        raise ConfigError(f"unknown omics encoder '{encoder}'", where="method.params.omics_encoder", fix=f"use one of {list(OMICS_ENCODERS)}")
    label = names[0] if len(names) == 1 else "+".join(names)
    return ModalityBranch(label, enc, _omics_reader(names))


def clinical_branch(info: Any, encoder: str = "mlp", **params: Any) -> ModalityBranch:
    """Clinical branch: ``mlp`` (:class:`~modaltune.encoders.clinical.ClinicalMLP`)."""
    from modaltune.encoders.clinical import ClinicalMLP

    if encoder != "mlp":
        raise ConfigError(f"unknown clinical encoder '{encoder}'", where="method.params.clinical_encoder", fix=f"use one of {list(CLINICAL_ENCODERS)}")
    dim = int(getattr(info, "clinical_dim", 0) or 0)
    return ModalityBranch(clinical_modality_name(info), ClinicalMLP(dim, **params), _clinical_reader(clinical_modality_name(info)))


def resolve_modalities(info: Any, modalities: Sequence[str] | None) -> list[tuple[str, str]]:
    """Map user modality names to ``(kind, name)`` with kind ``slide``/``omics``/``clinical``.

    ``None`` means every modality the cohort has. ``"omics"`` means all omics blocks in one branch.
    """
    slide = slide_modality_name(info) if getattr(info, "slide_dim", None) else None
    omics = list(getattr(info, "omics_dims", None) or {})
    clinical = clinical_modality_name(info) if getattr(info, "clinical_dim", 0) else None
    if modalities is None:
        out = [("slide", slide)] if slide else []
        out += [("omics", n) for n in omics]
        out += [("clinical", clinical)] if clinical else []
        if not out:
            raise ConfigError("the cohort has no slide, omics or clinical modality to fuse", where="method.params.modalities")
        return out
    if isinstance(modalities, str):
        modalities = [modalities]
    out = []
    known = ([slide, "slide"] if slide else []) + omics + (["omics"] if omics else []) + ([clinical, "clinical"] if clinical else [])
    for m in modalities:
        if slide and m in (slide, "slide"):
            out.append(("slide", slide))
        elif m in omics:
            out.append(("omics", m))
        elif m == "omics" and omics:
            out.append(("omics", "omics"))
        elif clinical and m in (clinical, "clinical"):
            out.append(("clinical", clinical))
        else:
            raise ConfigError(f"unknown or absent modality '{m}'", where="method.params.modalities", fix=f"use some of {sorted(set(known))}")
    if len(set(out)) != len(out):
        raise ConfigError(f"a modality is listed twice in {list(modalities)}", where="method.params.modalities")
    return out


class ConcatFusion(nn.Module):
    """Late fusion by concatenation of modality-branch embeddings.

    ``cat([branch(batch) for branch in branches])`` -> optional ``Linear(sum E_m -> fusion_dim) ->
    ReLU -> Dropout`` -> ``(B, out_dim)``. Each branch already substitutes its learned missing
    embedding for absent patients, so every patient keeps a full-width vector.

    Args:
        branches: mapping name -> :class:`ModalityBranch` (order is kept).
        fusion_dim: width of the fusion layer, or None for the plain concatenation.
        dropout: dropout of the fusion layer.
    """

    def __init__(self, branches: dict[str, ModalityBranch], fusion_dim: int | None = 256, dropout: float = 0.25):
        super().__init__()
        if not branches:
            raise ConfigError("late fusion needs at least one modality", where="method.params.modalities")
        self.branches = nn.ModuleDict(branches)
        cat_dim = sum(b.out_dim for b in self.branches.values())
        if fusion_dim:
            self.fuse: nn.Module = nn.Sequential(nn.Linear(cat_dim, int(fusion_dim)), nn.ReLU(), nn.Dropout(dropout))
            self.out_dim = int(fusion_dim)
        else:
            self.fuse = nn.Identity()
            self.out_dim = cat_dim

    def modality_branches(self) -> dict[str, nn.Module]:
        """``{modality: branch}``: the modules whose (B, E_m) outputs are concatenated (the branch
        protocol of :mod:`modaltune.training.modulation`)."""
        return dict(self.branches)

    def modality_embeddings(self, batch: dict) -> dict[str, torch.Tensor]:
        """``{modality: (B, E_m)}`` per-branch embeddings (missing embedding where absent)."""
        return {name: b(batch) for name, b in self.branches.items()}

    def forward(self, batch: dict) -> torch.Tensor:
        return self.fuse(torch.cat(list(self.modality_embeddings(batch).values()), dim=1))
