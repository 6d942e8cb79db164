"""ModalTune's omics token plan: which omics block becomes which modal tokens, from which pathway lists.

One function, :func:`plan_omics_tokens`, decides the plan and refuses the plans that cannot be built.
Both places that need it call it, so they cannot disagree:

- at config load, :func:`~modaltune.methods.requirements.modaltune_omics_tokens` (the method's
  ``check_data``) plans per cohort from the manifest, then reads every planned pathway source
  against the block's table genes (zero overlap: :class:`~modaltune.errors.InputError`);
- at fit time, :func:`~modaltune.methods.modaltune.build_modaltune` plans from the preprocessed
  :class:`~modaltune.data.dataset.CohortInfo` and builds one token set per planned block.

The rules, per selected omics block ``b`` (in the cohort's order):

- its pathway lists come from ``data.pathways`` (source ``"data"``) or from ``params.pathways`` when
  ``b == params.pathway_omics`` (source ``"params"``), never both;
- its mode is ``params.omics_tokens[b]`` (``pathways`` | ``block`` | ``none``), by default ``pathways``
  when it has pathway lists, else ``block``; ``pathways`` mode needs pathway lists;
- a planned source is read whatever the mode (the preprocessor tokenises every ``data.pathways``
  block, and the builder has always read ``params.pathways``), so a bad source is refused at load
  rather than failing at fit.

And for the whole run: every mode is one of :data:`TOKEN_MODES`; ``params.pathways`` is refused when
the cohort lacks ``params.pathway_omics`` (it would be ignored silently); a ``params.pathways`` file
(other than ``builtin``) must exist (a relative path is read from the working directory, as at fit).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modaltune.methods.requirements import DataProblem

__all__ = ["TOKEN_MODES", "BlockTokens", "OmicsTokenPlan", "plan_omics_tokens"]

#: the token modes of one omics block: pathway tokens (Gene Mixer), a few block tokens, or no tokens
TOKEN_MODES = ("pathways", "block", "none")


@dataclass(frozen=True)
class BlockTokens:
    """The plan of one omics block.

    Attributes:
        block: the omics block (modality name).
        mode: ``pathways`` | ``block`` | ``none``.
        source: where its pathway lists come from: ``"data"`` (``data.pathways``), ``"params"``
            (``params.pathways``) or None (it has none; then ``mode`` is not ``pathways``).
    """

    block: str
    mode: Literal["pathways", "block", "none"]
    source: Literal["data", "params"] | None


@dataclass(frozen=True)
class OmicsTokenPlan:
    """The omics token plan of one run: one :class:`BlockTokens` per selected omics block, in order.

    Attributes:
        blocks: per block, its mode and pathway source.
        params_pathways: ``params.pathways`` as the plan reads it: ``"builtin"``, an existing file, or
            None (not given).
    """

    blocks: tuple[BlockTokens, ...]
    params_pathways: Literal["builtin"] | Path | None = None

    def params_membership(self) -> Any:
        """The pathway membership ``params.pathways`` names, for :func:`~modaltune.data.omics.tokenize_pathways`:
        the built-in simulation matrix (genes x pathways DataFrame) or the file's path."""
        if self.params_pathways == "builtin":
            from modaltune.data.simulate import builtin_pathways

            return builtin_pathways()
        return self.params_pathways


def _cohort(name: str | None) -> str:
    return f"cohort {name}" if name else "the cohort"


def plan_omics_tokens(params: Any, blocks: Sequence[str], data_pathways: Mapping[str, str], cohort: str | None = None) -> OmicsTokenPlan:
    """The omics token plan of ModalTune ``params`` (reads ``omics_tokens``, ``pathways``, ``pathway_omics``)
    on a cohort whose selected omics blocks are ``blocks``.

    Args:
        params: ModalTune's params (:class:`~modaltune.methods.modaltune.ModalTuneParams`).
        blocks: the selected omics blocks, in the cohort's order.
        data_pathways: block -> the name of its ``data.pathways`` file, for messages ('' where only its
            tokens are known, at fit time); blocks not in ``blocks`` are ignored.
        cohort: the cohort's name, for messages (None: "the cohort").

    Raises:
        DataProblem: one line (``problem`` after ``method 'modaltune' ``, and a ``fix``) for an unknown
            token mode, ``params.pathways`` for a block the cohort lacks, pathway lists given twice, a
            ``pathways``-mode block without pathway lists, or a ``params.pathways`` file that does not exist.

    Example: ``blocks=["rna", "cnv"]``, ``data_pathways={"rna": "p.csv"}``, default params ->
    ``rna``: pathways from data, ``cnv``: block tokens, no source.
    """
    source = params.pathways
    pw_omics = params.pathway_omics
    modes = dict(params.omics_tokens or {})
    bad = {b: m for b, m in modes.items() if m not in TOKEN_MODES}
    if bad:
        b, m = next(iter(bad.items()))
        raise DataProblem(f"has unknown omics token mode '{m}' for block '{b}'", fix=f"set omics_tokens.{b} to one of {', '.join(TOKEN_MODES)}")
    if source is not None and pw_omics not in blocks:
        raise DataProblem(
            f"sets pathways={str(source)!r} for omics block '{pw_omics}' and {_cohort(cohort)} has no such block "
            f"(its omics blocks: {', '.join(blocks) or 'none'}), so they would be ignored",
            fix=f"restrict modaltune to the cohorts with '{pw_omics}' (methods[].cohorts), drop params.pathways, or set params.pathway_omics to a block it has",
        )
    plan, params_pathways = [], None
    for b in blocks:
        own = source if b == pw_omics else None
        if b in data_pathways and own is not None:
            shown = f" ({data_pathways[b]})" if data_pathways[b] else ""
            raise DataProblem(f"gets pathway lists for '{b}' twice: data.pathways{shown} and params.pathways={str(own)!r} (given twice, one would be ignored)",
                              fix="keep data.pathways (resolved relative to the config file) and drop the method's pathways")
        kind = "data" if b in data_pathways else "params" if own is not None else None
        mode = modes.get(b, "pathways" if kind else "block")
        if mode == "pathways" and kind is None:
            raise DataProblem(f"asks for pathway tokens of omics block '{b}' of {_cohort(cohort)} and has no pathway lists for it",
                              fix=f"set data.pathways: {{{b}: <pathway CSV/GMT>}} (or params.pathways: builtin for simulated cohorts), or omics_tokens.{b}: block")
        if kind == "params":
            params_pathways = _params_source(own, b)
        plan.append(BlockTokens(b, mode, kind))
    return OmicsTokenPlan(tuple(plan), params_pathways)


def _params_source(own: str | Path, block: str) -> Literal["builtin"] | Path:
    """``params.pathways`` as ``"builtin"`` or an existing file (a relative path from the working directory)."""
    if str(own) == "builtin":
        return "builtin"
    path = Path(own).expanduser()
    if not path.is_file():
        raise DataProblem(f"reads pathway file {str(own)!r}, which does not exist (file not found; a relative path is read from the working directory {Path.cwd()})",
                          fix=f"give an absolute path, or set data.pathways: {{{block}: <file>}} (relative to the config file), or 'builtin'")
    return path
