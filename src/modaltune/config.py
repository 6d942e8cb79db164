"""Configuration: YAML files validated by pydantic models, with ``--set key.sub=value`` overrides.

Configs are data, not code. Every run saves its resolved config. Errors name the key and say what
is expected, e.g. ``config.yaml: trainer.max_epochs: expected an integer, got 'ten'``.

Typical use::

    cfg = load_config("configs/demo.yaml", ExperimentConfig, overrides=["trainer.max_epochs=3"])

Path fields use :func:`existing_path` types (``ExistingPath``, ``ExistingFile``, ``ExistingDir``,
``CohortDir``, ``PathwayFile``). When a config is read with :func:`load_config`, they are resolved against the
directory of the YAML file and must exist, so a typo fails at load time with the key's name::

    config.yaml: data.cohorts[0]: /nonexistent/cohort does not exist (expected a cohort directory
    written by `modaltune data import/simulate`)

Models built in Python (``model_validate`` without a ``context``) skip the file-system check, so
placeholders and paths created later stay possible.
"""
from __future__ import annotations

import difflib
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

from modaltune.errors import ConfigError

__all__ = [
    "StrictModel",
    "existing_path",
    "ExistingPath",
    "ExistingFile",
    "ExistingDir",
    "CohortDir",
    "PathwayFile",
    "PATH_CHECK_CONTEXT",
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


# ---------------------------------------------------------------------------------------- path types
#: ``model_validate(data, context=...)`` key that turns the file-system check of path fields on;
#: ``"base_dir"`` in the same context is the directory relative paths are resolved against.
PATH_CHECK_CONTEXT = "check_paths"


def existing_path(kind: Literal["any", "file", "dir"] = "any", expected: str = "an existing file or directory"):
    """A ``str`` field type that, when validated with ``context={"check_paths": True, "base_dir": D}``
    (what :func:`load_config` does), resolves a relative path against ``D`` and raises a precise
    error if it does not exist, is the wrong kind, or cannot be read. The validated value is the
    absolute path. Without that context the value is kept as given.

    ``expected`` completes the message: ``<path> does not exist (expected <expected>)``.
    """

    def check(value: str, info: ValidationInfo) -> str:
        ctx = info.context or {}
        if not ctx.get(PATH_CHECK_CONTEXT):
            return value
        p = Path(value).expanduser()
        if not p.is_absolute() and ctx.get("base_dir") is not None:
            p = Path(ctx["base_dir"]) / p
        p = p.resolve()
        info_ = {"path": str(p), "expected": expected}
        if not p.exists():
            raise PydanticCustomError("path_missing", "{path} does not exist (expected {expected})", info_)
        if kind == "file" and p.is_dir():
            raise PydanticCustomError("path_kind", "{path} is a directory (expected {expected})", info_)
        if kind == "dir" and not p.is_dir():
            raise PydanticCustomError("path_kind", "{path} is not a directory (expected {expected})", info_)
        if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)):
            raise PydanticCustomError("path_unreadable", "{path} is not readable (permission denied; expected {expected})", info_)
        return str(p)

    return Annotated[str, AfterValidator(check)]


ExistingPath = existing_path("any")
ExistingFile = existing_path("file", "an existing file")
ExistingDir = existing_path("dir", "an existing directory")
PathwayFile = existing_path("file", "a gene x pathway 0/1 CSV (shared/data/pathways) or a GMT file")
#: a cohort directory (``cohort.yaml`` inside is checked by ``Cohort.load``, with its own message)
CohortDir = existing_path("dir", "a cohort directory written by `modaltune data import/simulate`")


# ---------------------------------------------------------------------------------------- messages
def _loc(loc: tuple) -> str:
    """``("data", "cohorts", 0)`` -> ``data.cohorts[0]``."""
    out = ""
    for p in loc:
        if isinstance(p, str) and p.startswith("function-"):
            continue
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _unwrap(t: Any) -> list[Any]:
    """Concrete types of an annotation: ``Annotated``/``Optional``/unions flattened."""
    origin = typing.get_origin(t)
    if origin is Annotated:
        return _unwrap(typing.get_args(t)[0])
    if origin is Union or origin is types.UnionType:
        return [x for a in typing.get_args(t) for x in _unwrap(a)]
    return [t]


def _model_at(model: type[BaseModel] | None, path: tuple) -> type[BaseModel] | None:
    """The pydantic model class found by walking ``path`` (field names, list indices, dict keys)."""
    t: Any = model
    for elem in path:
        if isinstance(elem, str) and elem.startswith("function-"):
            continue
        nxt = None
        for c in _unwrap(t):
            if isinstance(c, type) and issubclass(c, BaseModel):
                if isinstance(elem, str) and elem in c.model_fields:
                    nxt = c.model_fields[elem].annotation
                    break
                if elem == c.__name__:  # union member tag in the location
                    nxt = c
                    break
                continue
            origin, args = typing.get_origin(c), typing.get_args(c)
            if origin in (list, tuple, set, frozenset) and isinstance(elem, int) and args:
                nxt = args[0]
                break
            if origin is dict and isinstance(elem, str) and len(args) == 2:
                nxt = args[1]
                break
        if nxt is None:
            return None
        t = nxt
    models = [c for c in _unwrap(t) if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def _unknown_key_message(key: Any, parent: type[BaseModel] | None) -> str:
    if parent is None:
        return "unknown key (check the spelling)"
    allowed = list(parent.model_fields)
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown key ({hint}allowed: {', '.join(allowed)})"


def format_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line listing every problem: ``key: what is wrong; key2: ...``.

    With ``model`` (the validated class), an unknown key lists the keys allowed at that place and
    the closest one (difflib), e.g. ``trainer.epochs: unknown key (did you mean 'max_epochs'?
    allowed: max_epochs, lr, ...)``.
    """
    parts = []
    for err in exc.errors():
        raw_loc = tuple(err.get("loc", ()))
        loc = _loc(raw_loc) or "(top level)"
        typ = err.get("type", "")
        if typ == "extra_forbidden":
            parent = _model_at(model, raw_loc[:-1]) if model is not None else None
            parts.append(f"{loc}: {_unknown_key_message(raw_loc[-1] if raw_loc else '', parent)}")
        elif typ == "method_params":  # problems inside method.params, each already named by its key
            parts.extend(f"{loc}.{p}" for p in err.get("ctx", {}).get("problems", ()))
        elif typ.startswith("path_"):
            parts.append(f"{loc}: {err.get('msg')}")
        elif typ == "missing":
            parts.append(f"{loc}: required key is missing")
        elif typ == "method_modality":
            parts.append(f"{loc}: {err.get('msg')}" if raw_loc else str(err.get("msg")))
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
    """Load YAML (or ``base``), apply overrides and validate against ``model``.

    Path fields (:func:`existing_path` types) are resolved against the YAML file's directory (the
    current directory for ``base``) and must exist; every error names its key.
    """
    data = load_yaml(path) if path is not None else dict(base or {})
    data = apply_overrides(data, overrides)
    base_dir = Path(path).parent if path is not None else Path.cwd()
    try:
        cfg = model.model_validate(data, context={PATH_CHECK_CONTEXT: True, "base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model), where=path or "config") from exc
    if path is not None and hasattr(cfg, "_resolve_paths"):
        cfg._resolve_paths(Path(path).parent)  # type: ignore[attr-defined]
    return cfg


def dump_config(cfg: BaseModel, path: str | Path) -> Path:
    """Write the resolved config as YAML (what a run actually used)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path
