"""Fix hints must point at things that exist: every ```modaltune ...``` command named in a message
of the data layer / config / CLI is a real command, and every ``docs/*.md`` it names is a real file."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from modaltune.cli import app

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "modaltune"
#: the files whose messages these tests own (data layer, config, errors, CLI)
FILES = sorted([*(SRC / "data").rglob("*.py"), SRC / "config.py", SRC / "errors.py", SRC / "cli.py"])


def _commands() -> set[str]:
    """Every command path of the CLI, e.g. ``data import porpoise``."""
    out: set[str] = set()

    def walk(cmd, prefix: str) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            path = f"{prefix} {name}".strip()
            out.add(path)
            walk(sub, path)

    walk(typer.main.get_command(app), "")
    return out


def _named_commands(text: str) -> list[str]:
    """```modaltune data import/simulate``` -> ["data import", "data simulate"] (first two words)."""
    found = []
    for m in re.finditer(r"`modaltune ((?:[a-z][a-z-]*(?:/[a-z-]+)*)(?: [a-z][a-z-]*(?:/[a-z-]+)*)?)", text):
        words = m.group(1).split()
        heads = words[0].split("/")
        tails = words[1].split("/") if len(words) > 1 else [None]
        for h in heads:
            for t in tails:
                found.append(f"{h} {t}" if t else h)
    return found


def test_command_parser():
    assert _named_commands("run `modaltune data import/simulate` or `modaltune extract --slides x`") == ["data import", "data simulate", "extract"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_hints_name_real_commands_and_docs(path):
    text = path.read_text()
    commands = _commands()
    for name in _named_commands(text):
        # a second word that is an option value or argument (`modaltune extract --slides`) is not a command
        ok = name in commands or (name.split()[0] in commands and not any(c.startswith(name.split()[0] + " ") for c in commands))
        assert ok, f"{path.name} names `modaltune {name}`, which is not a command"
    for doc in re.findall(r"\bdocs/[A-Za-z_]+\.md", text):
        assert (REPO / doc).exists(), f"{path.name} names {doc}, which does not exist"
