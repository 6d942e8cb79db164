"""File checks shared by every reader: missing and unreadable files get their own messages
(an unreadable file is a permission problem, never reported as "corrupt")."""
from __future__ import annotations

import os
from pathlib import Path

from modaltune.errors import InputError

__all__ = ["UNREADABLE", "UNREADABLE_FIX", "check_plain_name", "ensure_readable", "is_unreadable", "name_problem"]

UNREADABLE = "file is unreadable (permission denied)"
UNREADABLE_FIX = "make the file readable (chmod u+r) or run as its owner"


def is_unreadable(path: str | Path) -> bool:
    """True when ``path`` exists but this process may not read it (``os.access``; root reads all)."""
    p = Path(path)
    return p.exists() and not os.access(p, os.R_OK)


def ensure_readable(path: str | Path) -> None:
    """Raise :class:`InputError` naming ``path`` when it exists but cannot be read."""
    if is_unreadable(path):
        raise InputError(UNREADABLE, where=path, fix=UNREADABLE_FIX)


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as one file/folder name inside a chosen folder, or None.

    Refused: empty, absolute paths, ``.``/``..`` and any path separator (``/``, ``\\``), so that
    ``<folder>/<name>`` never lands outside ``<folder>``.
    """
    if not name or not name.strip():
        return "is empty"
    if os.path.isabs(name) or name.startswith(("/", "\\")):
        return "is an absolute path"
    if name in (".", ".."):
        return f"is '{name}'"
    if "/" in name or "\\" in name or (os.sep in name) or (os.altsep and os.altsep in name):
        return "contains a path separator"
    return None


def check_plain_name(name: str, key: str) -> str:
    """``name`` unchanged, or :class:`~modaltune.errors.ConfigError` naming ``key`` when the name
    would write outside its folder (see :func:`name_problem`)."""
    from modaltune.errors import ConfigError

    why = name_problem(name)
    if why:
        raise ConfigError(f"{key} '{name}' {why}: it must name one file or folder inside the chosen folder", where=key,
                          fix="use letters, digits, '_', '-' or '.' (no '/', no '..')")
    return name
