"""Method registry: a config string picks a method recipe (timm-style ``register_model``).

A recipe is a builder function registered under a name, with a strict pydantic parameter model
(the one place its parameters, types, defaults and meanings are written) and the modality kinds it
cannot run without::

    class ABMILParams(HeadParams):
        embed_dim: int = Field(512, description="width of the patch projection")

    @register_method("abmil", kind="torch", modalities=("slide",), requires=("slide",), params=ABMILParams,
                     description="gated-attention MIL")
    def build_abmil(info: CohortInfo, **params) -> MultiTaskModel: ...

The builder receives the validated parameters with every default filled in (``params.model_dump()``).
``kind="torch"`` builders return a :class:`~modaltune.methods.base.MultiTaskModel` trained by the
Lightning engine; ``kind="tabular"`` builders return a :class:`~modaltune.methods.base.TabularMethod`
(scikit-learn / scikit-survival estimators with ``fit``/``predict``).
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from modaltune.errors import ConfigError, InputError
from modaltune.registry import Registry

__all__ = [
    "MethodEntry",
    "OpenParams",
    "register_method",
    "get_method",
    "list_methods",
    "method_table",
    "params_table",
    "params_text",
    "validate_params",
    "params_problems",
    "build_method",
    "METHODS",
]

#: modality kinds a method may require (those of ``ModalitySpec.kind``)
MODALITY_KINDS = ("slide", "omics", "clinical", "text")


class OpenParams(BaseModel):
    """Parameter model of a method registered without one (e.g. in a test): any keys pass through."""

    model_config = ConfigDict(extra="allow")


@dataclass(frozen=True)
class MethodEntry:
    """One registered method: ``builder(info, **params)``, ``kind`` (torch | tabular), the modality
    kinds it reads (``modalities``) and cannot run without (``requires``), and its parameter model."""

    name: str
    builder: Callable[..., Any]
    kind: str = "torch"
    modalities: tuple[str, ...] = ()
    description: str = ""
    params: type[BaseModel] = OpenParams
    requires: tuple[str, ...] = ()
    #: the model fuses separate per-modality encoders (``modality_branches()``; ``trainer.modulation: agm``)
    branched: bool = False
    #: what the method needs of a cohort beyond ``requires`` (an omics block with pathway lists, signature
    #: genes in the cohort): ``check_data(name, params, CohortData)``, called when the config loads
    #: (:mod:`modaltune.methods.requirements`)
    check_data: Callable[..., None] | None = None


METHODS: Registry[MethodEntry] = Registry("method", error=InputError, where="method.name")
_LOADED = False


def register_method(name: str, *, kind: str = "torch", modalities: tuple[str, ...] = (), description: str = "",
                    params: type[BaseModel] | None = None, requires: tuple[str, ...] = (), branched: bool = False,
                    check_data: Callable[..., None] | None = None):
    """Decorator registering ``builder(info, **params)`` under ``name`` (refuses a taken name).
    ``check_data``: see :class:`MethodEntry` (e.g. :func:`modaltune.methods.requirements.pathway_block`)."""
    if kind not in ("torch", "tabular"):
        raise ValueError(f"method kind must be 'torch' or 'tabular', got {kind!r}")
    bad = sorted(set(requires) - set(MODALITY_KINDS))
    if bad:
        raise ValueError(f"method '{name}' requires unknown modality kind(s) {bad}; use some of {MODALITY_KINDS}")

    def deco(fn):
        if name in METHODS and METHODS[name].builder is fn:
            return fn
        desc = description or (fn.__doc__ or "").strip().split("\n")[0]
        METHODS.register(name, MethodEntry(name, fn, kind, tuple(modalities), desc, params or OpenParams, tuple(requires), bool(branched), check_data))
        return fn

    return deco


def _load_all() -> None:
    """Import every module in ``modaltune.methods`` so their decorators run (once)."""
    global _LOADED
    if _LOADED:
        return
    import modaltune.methods as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in ("registry", "base", "requirements"):
            importlib.import_module(f"modaltune.methods.{mod.name}")
    _LOADED = True


def list_methods() -> dict[str, MethodEntry]:
    _load_all()
    return {n: METHODS[n] for n in METHODS.names()}


def method_table() -> str:
    """The registry as aligned text lines: name, kind (torch | tabular), modalities, description."""
    entries = list(list_methods().values())
    mods = {e.name: ",".join(e.modalities) or "-" for e in entries}
    w, wm = max(len(e.name) for e in entries), max(len(m) for m in mods.values())
    return "\n".join(f"{e.name:<{w}}  {e.kind:<7}  {mods[e.name]:<{wm}}  {e.description}" for e in entries)


def get_method(name: str) -> MethodEntry:
    """The entry of method ``name``; InputError with a did-you-mean otherwise."""
    _load_all()
    return METHODS.get(name)


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    return text or str(annotation).replace("typing.", "")


def params_table(name: str) -> list[tuple[str, str, str, str]]:
    """``(parameter, type, default, meaning)`` rows of method ``name``'s parameter model."""
    model = get_method(name).params
    rows = []
    for key, f in model.model_fields.items():
        default = f.get_default(call_default_factory=True)
        rows.append((key, _type_name(f.annotation), repr(default), f.description or ""))
    return rows


def params_text(name: str) -> str:
    """Method ``name``'s parameters as aligned text: a title line, then one line per parameter with
    its name, type, default and meaning (what ``modaltune methods --params NAME`` prints)."""
    entry = get_method(name)
    rows = [("parameter", "type", "default", "meaning"), *params_table(name)]
    if len(rows) == 1:
        return f"{name}: {entry.description}\n(no parameter model registered: parameters are passed through unchecked)"
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{name} ({entry.kind}; needs: {', '.join(entry.requires) or '-'}): {entry.description}"]
    lines += [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}".rstrip() for a, b, c, d in rows]
    return "\n".join(lines)


def params_problems(name: str, params: dict[str, Any] | None) -> list[str]:
    """What is wrong with ``params`` for method ``name``, one ``key: problem`` string each (empty: valid)."""
    from modaltune.config import format_validation_error

    model = get_method(name).params
    try:
        model.model_validate(dict(params or {}))
    except ValidationError as exc:
        return format_validation_error(exc, model).split("; ")
    return []


def validate_params(name: str, params: dict[str, Any] | None, *, where: str = "method.params") -> BaseModel:
    """``params`` checked against method ``name``'s parameter model: the validated model, or a
    one-line ConfigError naming each bad key (``method.params.hiden: unknown key (did you mean
    'hidden'? allowed: ...)``)."""
    problems = params_problems(name, params)
    if problems:
        raise ConfigError("; ".join(f"{where}.{p}" for p in problems), fix=f"see `modaltune methods --params {name}`")
    return get_method(name).params.model_validate(dict(params or {}))


def build_method(name: str, info, **params):
    """Build method ``name`` for a cohort described by ``info`` (a ``CohortInfo``); ``params`` are
    validated by the method's parameter model and passed on with every default filled in."""
    entry = get_method(name)
    return entry.builder(info, **validate_params(name, params).model_dump())
