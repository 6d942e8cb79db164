"""One small name -> object registry, shared by methods, slide encoders, patch encoders and metrics.

A :class:`Registry` is a read-only mapping ``name -> object`` (so ``name in reg``, ``reg[name]``,
``reg.items()`` work like the dicts it replaces) with three additions:

- :meth:`Registry.register` (also a decorator) refuses a second object under a taken name unless
  ``replace=True``, so two modules cannot silently overwrite each other;
- :meth:`Registry.get` raises a one-line error (the registry's own error class, e.g. ConfigError)
  with a did-you-mean and the list of known names;
- keyword metadata per entry (``register(name, obj, kind="torch")`` -> :meth:`Registry.meta`).

Example::

    ENCODERS = Registry("slide encoder", where="slide_encoder")

    @ENCODERS.register("abmil", description="gated-attention MIL")
    class ABMIL(nn.Module): ...

    ENCODERS.get("abmli")  # ConfigError: slide_encoder: unknown slide encoder 'abmli' (fix: did you mean 'abmil'? known: abmil)
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from modaltune.errors import ConfigError, ModaltuneError

__all__ = ["Registry", "did_you_mean"]

T = TypeVar("T")


def did_you_mean(name: str, known: list[str]) -> str:
    """``"did you mean 'x'? "`` for the closest of ``known`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(name), known, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


class Registry(Mapping[str, T], Generic[T]):
    """Named objects of one ``kind`` (used in messages: ``unknown <kind> 'x'``).

    Args:
        kind: what the entries are, e.g. ``"method"``.
        error: exception class raised by :meth:`get` for an unknown name (a :class:`ModaltuneError`).
        where: the ``where=`` of that error (the config key that names an entry), if any.
        normalize: maps a looked-up name to its key (e.g. lower-case), applied by :meth:`get` and ``in``.
    """

    def __init__(self, kind: str, *, error: type[ModaltuneError] = ConfigError, where: str | None = None,
                 normalize: Callable[[str], str] | None = None):
        self.kind = kind
        self.error = error
        self.where = where
        self._normalize = normalize or (lambda s: s)
        self._objs: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    # ----------------------------------------------------------------------------- registering
    def register(self, name: str, obj: Any = None, *, replace: bool = False, **meta: Any) -> Any:
        """Add ``obj`` under ``name`` with keyword ``meta``; without ``obj`` it is a decorator.

        Raises ``ValueError`` (a programming error, not a user one) when ``name`` is taken by another
        object and ``replace`` is False; registering the same object again is a no-op.
        """
        if obj is None:
            def deco(o: Any) -> Any:
                self.register(name, o, replace=replace, **meta)
                return o

            return deco
        if name in self._objs and self._objs[name] is not obj and not replace:
            raise ValueError(f"{self.kind} '{name}' is registered twice (pass replace=True to overwrite it)")
        self._objs[name] = obj
        self._meta[name] = dict(meta)
        return obj

    # ----------------------------------------------------------------------------- looking up
    def get(self, name: str, default: Any = ...) -> T:  # type: ignore[override]
        """The object registered as ``name``; one-line ``error`` with a did-you-mean otherwise
        (or ``default`` when one is given, like ``dict.get``)."""
        key = self._normalize(name)
        if key in self._objs:
            return self._objs[key]
        if default is not ...:
            return default
        known = self.names()
        raise self.error(f"unknown {self.kind} '{name}'", where=self.where,
                         fix=f"{did_you_mean(key, known)}known: {', '.join(known)}")

    def meta(self, name: str) -> dict[str, Any]:
        """The keyword metadata given at registration (a copy)."""
        self.get(name)
        return dict(self._meta[self._normalize(name)])

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._objs)

    # ----------------------------------------------------------------------------- Mapping
    def __setitem__(self, name: str, obj: T) -> None:
        """``reg[name] = obj`` is ``register(name, obj, replace=True)`` (e.g. ``monkeypatch.setitem``)."""
        self.register(name, obj, replace=True)

    def __delitem__(self, name: str) -> None:
        del self._objs[name]
        del self._meta[name]

    def __getitem__(self, name: str) -> T:
        return self._objs[self._normalize(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._normalize(name) in self._objs

    def __iter__(self) -> Iterator[str]:
        return iter(self._objs)

    def __len__(self) -> int:
        return len(self._objs)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
