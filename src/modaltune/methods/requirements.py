"""What a method needs of a cohort beyond modality kinds, checked when the config loads.

The registry's ``requires`` names modality *kinds* (slide, omics, ...). Some methods need more:

- pathway-token methods (``survpath``, ``gene_mixer``) need one omics block, ``params.omics``
  (default ``rna``, or the only block given pathways), that the cohort has **and** that
  ``data.pathways`` gives a pathway file for, with at least one pathway gene in the table;
- signature methods (``mcat``, ``motcat``, ``cmta``) need ``params.signatures``, a file whose genes
  overlap the omics blocks they read;
- ``modaltune`` needs its omics token plan to be buildable: one pathway source per block (``data.pathways``
  or ``params.pathways``, not both), a source for every block asked for pathway tokens, a pathway
  file that exists and overlaps the block's genes, and ``params.pathways`` only where its block exists
  (the plan is :mod:`modaltune.methods.omics_token_plan`'s, the one the builder uses).

Such a method registers ``check_data=<function>``; ``load_config`` (``modaltune fit`` / ``benchmark``)
calls it per cohort with a :class:`CohortData` view read from the manifest and the omics tables'
column names (no values are loaded), so a config that cannot run is refused in one line before any
run folder exists. The gene matching is the one the model builders use at fit time
(:func:`~modaltune.data.omics.tokenize_pathways`, :func:`~modaltune.encoders.signatures.signature_groups`),
so the load-time and fit-time answers cannot disagree. Partial overlap is not an error: the coverage
is logged here and written to the run folder at fit time (``pathway_coverage_<block>.csv``,
``signature_coverage.csv``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

__all__ = ["DataProblem", "CohortData", "DataCheck", "pathway_block", "signature_overlap", "modaltune_omics_tokens", "check_method_data"]


class DataProblem(Exception):
    """What a cohort lacks for a method: ``problem`` (a clause after ``method 'x' ``) and ``fix``."""

    def __init__(self, problem: str, fix: str = ""):
        super().__init__(problem)
        self.problem, self.fix = problem, fix


@dataclass(frozen=True)
class CohortData:
    """One cohort as a method's data check sees it: only the modalities the method selected.

    Attributes:
        name: the cohort as the config names it (its folder name), for messages.
        modalities: selected modality name -> kind, in manifest order.
        omics_files: selected omics block -> its table file.
        pathways: selected omics block -> pathway file (``data.pathways``, absolute path).
    """

    name: str
    modalities: dict[str, str]
    omics_files: dict[str, Path] = field(default_factory=dict)
    pathways: dict[str, str] = field(default_factory=dict)

    @property
    def omics_blocks(self) -> list[str]:
        return [n for n, k in self.modalities.items() if k == "omics"]

    def genes(self, block: str) -> list[str]:
        """Gene names of omics block ``block`` (its table's columns, read once per file version)."""
        p = Path(self.omics_files[block])
        return list(_genes(str(p), p.stat().st_mtime_ns))


@lru_cache(maxsize=64)
def _genes(path: str, mtime_ns: int) -> tuple[str, ...]:
    from modaltune.data.omics import table_genes

    return tuple(table_genes(path))


#: ``check(method name, validated params, cohort view)``; raises :class:`DataProblem` (or a
#: ModaltuneError naming a file) when the method cannot run on that cohort
DataCheck = Callable[[str, BaseModel, CohortData], None]


def pathway_block(method: str, params: BaseModel, data: CohortData) -> None:
    """Check of a pathway-token method: its ``params.omics`` block (None: ``rna``, or the only block
    given pathways) is among the cohort's selected omics blocks, ``data.pathways`` lists it, and at
    least one pathway gene is in its table (else :class:`InputError` naming the pathway file)."""
    from modaltune.data.omics import tokenize_pathways

    blocks = data.omics_blocks
    pw = {k: v for k, v in data.pathways.items() if k in blocks}
    omics = getattr(params, "omics", None)
    if omics is None:
        if len(pw) > 1 and "rna" not in pw:
            raise DataProblem(f"finds pathway lists for several omics blocks of cohort {data.name} ({sorted(pw)})", fix="set method.params.omics: <block name>")
        omics = "rna" if "rna" in pw or not pw else next(iter(pw))
    if omics not in blocks:
        raise DataProblem(
            f"needs omics block '{omics}' (pathway tokens) and cohort {data.name} has none (its omics blocks: {', '.join(blocks) or 'none'})",
            fix=f"drop {method} from methods (or this cohort), or give the cohort an {omics.upper()} table, or set method.params.omics "
                "to a block it has and list that block in data.pathways",
        )
    if omics not in pw:
        raise DataProblem(
            f"needs pathway gene lists for omics block '{omics}' of cohort {data.name} and data.pathways has none for it",
            fix=f"set data.pathways: {{{omics}: shared/data/pathways/combine_comps.csv}}",
        )
    tokenize_pathways(pw[omics], data.genes(omics))  # no pathway gene in the table: InputError naming the file


def signature_overlap(method: str, params: BaseModel, data: CohortData) -> None:
    """Check of a signature-token method: ``params.signatures`` is given and readable, its blocks
    (``params.omics``, None: every selected omics block) exist, and every signature group has a gene
    among their features (else :class:`InputError` naming the file and the overlap ``0/N``)."""
    from modaltune.encoders.signatures import signature_groups

    source = getattr(params, "signatures", None)
    if not source:
        raise DataProblem("needs the genomic signature groups (method.params.signatures is not set)",
                          fix="set signatures: shared/data/tcga/porpoise/signatures.csv (MCAT's groups)")
    blocks = list(getattr(params, "omics", None) or data.omics_blocks)
    lacking = [b for b in blocks if b not in data.omics_blocks]
    if lacking:
        raise DataProblem(f"maps its signatures onto omics block(s) {lacking} and cohort {data.name} has none of them "
                          f"(its omics blocks: {', '.join(data.omics_blocks) or 'none'})", fix="set method.params.omics to blocks the cohort has")
    signature_groups(Path(source), {b: data.genes(b) for b in blocks})  # logs the coverage of each group


def modaltune_omics_tokens(method: str, params: BaseModel, data: CohortData) -> None:
    """Check of ModalTune's omics token plan, the one ``build_modaltune`` makes at fit time: the plan of
    :func:`~modaltune.methods.omics_token_plan.plan_omics_tokens` (its refusals: unknown token mode,
    ``params.pathways`` for a block the cohort lacks, pathway lists given twice, a pathway-token block
    without lists, a missing ``params.pathways`` file), then every planned pathway source read against
    its block's table genes (no pathway gene in the table: :class:`InputError` naming the file)."""
    from modaltune.data.omics import tokenize_pathways
    from modaltune.methods.omics_token_plan import plan_omics_tokens

    plan = plan_omics_tokens(params, data.omics_blocks, {b: Path(p).name for b, p in data.pathways.items()}, cohort=data.name)
    for bt in plan.blocks:
        if bt.source is not None:
            tokenize_pathways(data.pathways[bt.block] if bt.source == "data" else plan.params_membership(), data.genes(bt.block))


def describe(problem: BaseException) -> str:
    """One line of a :class:`DataProblem` or ModaltuneError for the config error (``where: detail (fix: ...)``)."""
    return str(problem).replace("\n", " ") if not isinstance(problem, DataProblem) else problem.problem + (f" (fix: {problem.fix})" if problem.fix else "")


def check_method_data(name: str, check: DataCheck | None, params: dict[str, Any], model: type[BaseModel], data: CohortData) -> str | None:
    """The one-line problem of method ``name`` on ``data`` (None: it can run, or its params contain
    per-fold ``{fold}`` placeholders that only the benchmark resolves)."""
    from modaltune.errors import ModaltuneError

    if check is None or any("{fold}" in str(v) for v in params.values()):
        return None
    from pydantic import ValidationError

    try:
        validated = model.model_validate(dict(params))
    except ValidationError:  # reported by MethodConfig's own params check
        return None
    try:
        check(name, validated, data)
    except DataProblem as exc:
        return f"method '{name}' {describe(exc)}"
    except ModaltuneError as exc:
        return f"method '{name}' cannot map its genes onto cohort {data.name}: {describe(exc)}"
    except OSError:  # a declared omics table is missing: the cohort loader reports it, with its own message
        return None
    return None
