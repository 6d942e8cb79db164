"""Method registry: a config string picks a method recipe (timm-style ``register_model``).

A recipe is a builder function registered under a name::

    @register_method("abmil", kind="torch", modalities=("slide",), description="gated-attention MIL")
    def build_abmil(info: CohortInfo, **params) -> MultiTaskModel: ...

``kind="torch"`` builders return a :class:`~modaltune.methods.base.MultiTaskModel` trained by the
Lightning engine; ``kind="tabular"`` builders return a :class:`~modaltune.methods.base.TabularMethod`
(scikit-learn / scikit-survival estimators with ``fit``/``predict``).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from modaltune.errors import InputError

__all__ = ["MethodEntry", "register_method", "get_method", "list_methods", "method_table", "build_method"]


@dataclass(frozen=True)
class MethodEntry:
    name: str
    builder: Callable[..., Any]
    kind: str = "torch"
    modalities: tuple[str, ...] = ()
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, MethodEntry] = {}
_LOADED = False


def register_method(name: str, *, kind: str = "torch", modalities: tuple[str, ...] = (), description: str = "", defaults: dict | None = None):
    """Decorator registering ``builder(info, **params)`` under ``name``."""
    if kind not in ("torch", "tabular"):
        raise ValueError(f"method kind must be 'torch' or 'tabular', got {kind!r}")

    def deco(fn):
        if name in _REGISTRY and _REGISTRY[name].builder is not fn:
            raise ValueError(f"method '{name}' is registered twice")
        _REGISTRY[name] = MethodEntry(name, fn, kind, tuple(modalities), description or (fn.__doc__ or "").strip().split("\n")[0], dict(defaults or {}))
        return fn

    return deco


def _load_all() -> None:
    """Import every module in ``modaltune.methods`` so their decorators run (once)."""
    global _LOADED
    if _LOADED:
        return
    import modaltune.methods as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in ("registry", "base"):
            importlib.import_module(f"modaltune.methods.{mod.name}")
    _LOADED = True


def list_methods() -> dict[str, MethodEntry]:
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def method_table() -> str:
    """The registry as aligned text lines: name, kind (torch | tabular), modalities, description."""
    entries = sorted(list_methods().values(), key=lambda e: e.name)
    mods = {e.name: ",".join(e.modalities) or "-" for e in entries}
    w, wm = max(len(e.name) for e in entries), max(len(m) for m in mods.values())
    return "\n".join(f"{e.name:<{w}}  {e.kind:<7}  {mods[e.name]:<{wm}}  {e.description}" for e in entries)


def get_method(name: str) -> MethodEntry:
    _load_all()
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise InputError(f"unknown method '{name}'", where="method.name", fix=f"{hint}known methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_method(name: str, info, **params):
    """Build method ``name`` for a cohort described by ``info`` (a ``CohortInfo``)."""
    entry = get_method(name)
    merged = {**entry.defaults, **params}
    return entry.builder(info, **merged)
