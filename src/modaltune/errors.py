"""Errors that modaltune raises for user mistakes.

Every error here renders as **one line** that names the file, patient or field at fault and says
how to fix it. The CLI prints ``error: <message>`` and exits with status 2 for these; anything else
is a bug and keeps its traceback.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ModaltuneError", "InputError", "ConfigError", "Problem", "ValidationReport", "MissingExtraError"]


class ModaltuneError(Exception):
    """Base class of every error caused by user input or environment, not by a bug."""

    def __init__(self, message: str, *, where: str | Path | None = None, fix: str | None = None):
        self.where = str(where) if where is not None else None
        self.fix = fix
        self.detail = message
        parts = []
        if self.where:
            parts.append(f"{self.where}: ")
        parts.append(message)
        if fix:
            parts.append(f" (fix: {fix})")
        super().__init__("".join(parts).replace("\n", " "))


class InputError(ModaltuneError):
    """A data file, table or value is missing, malformed or inconsistent."""


class ConfigError(ModaltuneError):
    """A configuration key is unknown, mistyped, missing or points at a missing file."""


class MissingExtraError(ModaltuneError, ImportError):
    """An optional dependency is needed; the message says which extra to install."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"the optional package '{package}' is needed{what} but is not installed",
            fix=f"pip install 'modaltune[{extra}]'",
        )


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional dependency or raise :class:`MissingExtraError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(module.split(".")[0], extra, purpose) from exc


@dataclass(frozen=True)
class Problem:
    """One problem found by validation. ``severity`` is ``error`` or ``warning``."""

    where: str
    message: str
    fix: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{self.severity}: {self.where}: {self.message}{fix}"


@dataclass
class ValidationReport:
    """All problems found at once, so a user can fix everything in one pass."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, where, message, fix: str = "", severity: str = "error") -> None:
        self.problems.append(Problem(str(where), message, fix, severity))

    def extend(self, other: ValidationReport) -> None:
        self.problems.extend(other.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_if_errors(self) -> None:
        if self.errors:
            first = self.errors[0]
            more = f" (+{len(self.errors) - 1} more problems; run `modaltune data validate` to list all)" if len(self.errors) > 1 else ""
            raise InputError(first.message + more, where=first.where, fix=first.fix or None)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems) or "no problems"
