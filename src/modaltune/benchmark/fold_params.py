"""Per-fold method params: a string param containing ``{fold}`` is formatted with the unit's fold
index before the method is built (e.g. ``checkpoint: runs/pre/fold{fold}`` for the folders of
``modaltune pretrain --folds all``), so one benchmark config evaluates a per-fold artefact on
every fold.

Only ``{fold}`` is a placeholder; any other ``{...}`` in a string param is a one-line ConfigError
(write ``{{`` / ``}}`` for literal braces). The unit's config hash uses the resolved params and the
content hash of a resolved folder's ``pretrain.json`` (when it exists), so re-pretraining a fold
re-runs that fold's units on resume.
"""
from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from modaltune.errors import ConfigError

__all__ = ["check_placeholders", "resolve_method", "resolved_params", "artefact_hashes"]


def _fields(text: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]


def check_placeholders(method: Any) -> None:
    """Raise ConfigError naming the param if a string param has a placeholder other than ``{fold}``."""
    for key, value in method.params.items():
        if not isinstance(value, str):
            continue
        try:
            bad = [f for f in _fields(value) if f != "fold"]
        except ValueError as e:  # unbalanced braces
            raise ConfigError(f"method {method.display}: params.{key} '{value}' is not a valid template ({e})",
                              where=f"methods.{method.display}.params.{key}", fix="use {fold} for the fold index, {{ and }} for literal braces") from None
        if bad:
            raise ConfigError(f"method {method.display}: params.{key} '{value}' has the placeholder '{{{bad[0]}}}'; only {{fold}} is known",
                              where=f"methods.{method.display}.params.{key}", fix="write {fold} (the unit's fold index), or {{ }} for literal braces")


def resolved_params(params: dict[str, Any], fold: int) -> dict[str, Any]:
    """``params`` with every string containing a brace formatted with ``fold=fold``."""
    return {k: v.format(fold=fold) if isinstance(v, str) and ("{" in v or "}" in v) else v for k, v in params.items()}


def resolve_method(method: Any, fold: int) -> Any:
    """A copy of the MethodConfig whose params are resolved for ``fold`` (the same object if nothing changes)."""
    check_placeholders(method)
    params = resolved_params(method.params, fold)
    return method if params == method.params else method.model_copy(update={"params": params})


def artefact_hashes(params: dict[str, Any]) -> dict[str, str]:
    """``{param: sha256[:16] of <folder>/pretrain.json}`` for string params naming a pretraining folder."""
    from modaltune.benchmark.run_folder import sha256_file

    out = {}
    for k, v in params.items():
        if isinstance(v, str) and v and (Path(v) / "pretrain.json").is_file():
            out[k] = sha256_file(Path(v) / "pretrain.json")[:16]
    return out
