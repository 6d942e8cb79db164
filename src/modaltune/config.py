"""Configuration: YAML files validated by pydantic models, with ``--set key.sub=value`` overrides.

Configs are data, not code. Every run saves its resolved config. Errors name the key and say what
is expected, e.g. ``config.yaml: trainer.max_epochs: expected an integer, got 'ten'``.

Typical use::

    cfg = load_config("configs/demo.yaml", ExperimentConfig, overrides=["trainer.max_epochs=3"])
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from modaltune.errors import ConfigError

__all__ = [
    "StrictModel",
    "load_config",
    "load_yaml",
    "apply_overrides",
    "parse_override",
    "format_validation_error",
    "dump_config",
]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def format_validation_error(exc: ValidationError) -> str:
    """One line listing every problem: ``key: what is wrong; key2: ...``."""
    parts = []
    for err in exc.errors():
        loc = _loc(err.get("loc", ())) or "(top level)"
        typ = err.get("type", "")
        if typ == "extra_forbidden":
            parts.append(f"{loc}: unknown key (check the spelling; allowed keys are documented in docs/config.md)")
        elif typ == "missing":
            parts.append(f"{loc}: required key is missing")
        else:
            msg = err.get("msg", "invalid value")
            inp = err.get("input")
            got = f", got {inp!r}" if inp is not None and not isinstance(inp, (dict, list)) else ""
            parts.append(f"{loc}: {msg}{got}")
    return "; ".join(parts)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=3"`` -> (["a", "b", "c"], 3). The value is parsed as YAML (numbers, bools, lists)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' has no '='", fix="write overrides as key.sub=value")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key", fix="write overrides as key.sub=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.split("."), parsed


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a nested dict (returns a new dict)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides or []:
        keys, value = parse_override(text)
        node = out
        for k in keys[:-1]:
            if isinstance(node, list):
                try:
                    node = node[int(k)]
                    continue
                except (ValueError, IndexError) as exc:
                    raise ConfigError(f"override '{text}': '{k}' is not a valid list index") from exc
            if k not in node or node[k] is None:
                node[k] = {}
            if not isinstance(node[k], (dict, list)):
                raise ConfigError(f"override '{text}': '{k}' is a value, not a section")
            node = node[k]
        if isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors for a missing file or bad syntax."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("config file not found", where=path, fix="check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"invalid YAML{line}: {getattr(exc, 'problem', exc)}", where=path, fix="fix the YAML syntax") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of keys to values", where=path)
    return data


def load_config(path: str | Path | None, model: type[M], overrides: list[str] | None = None, base: dict | None = None) -> M:
    """Load YAML (or ``base``), apply overrides and validate against ``model``."""
    data = load_yaml(path) if path is not None else dict(base or {})
    data = apply_overrides(data, overrides)
    try:
        cfg = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc), where=path or "config") from exc
    if path is not None and hasattr(cfg, "_resolve_paths"):
        cfg._resolve_paths(Path(path).parent)  # type: ignore[attr-defined]
    return cfg


def dump_config(cfg: BaseModel, path: str | Path) -> Path:
    """Write the resolved config as YAML (what a run actually used)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path
