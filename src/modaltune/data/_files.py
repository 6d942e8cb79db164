"""File checks shared by every reader: missing and unreadable files get their own messages
(an unreadable file is a permission problem, never reported as "corrupt")."""
from __future__ import annotations

import os
from pathlib import Path

from modaltune.errors import InputError

__all__ = ["UNREADABLE", "UNREADABLE_FIX", "is_unreadable", "ensure_readable"]

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
