"""A self-contained HTML page: PNGs embedded as base64 data URIs, tables as HTML, no external links,
so the file opens offline and can be mailed as one attachment."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["Section", "render_html"]

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em}.label{color:#b00020;font-weight:bold}.protocol{color:#555;font-size:.9em}
figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#555}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"""


@dataclass
class Section:
    """A titled part of the page: figures (PNG paths with captions), tables (caption, frame), notes."""

    title: str
    figures: list[tuple[Path, str]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(caption or Path(path).stem)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'


def render_html(title: str, sections: list[Section], *, protocol: str = "", label: str = "") -> str:
    """The page as a string: title, SIMULATED label and protocol line at the top, then each section."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if label:
        parts.append(f"<p class='label'>{html.escape(label)}</p>")
    if protocol:
        parts.append(f"<p class='protocol'>{html.escape(protocol)}</p>")
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(n)}</p>" for n in s.notes]
        parts += [_img(p, c) for p, c in s.figures]
        for caption, df in s.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3>")
            parts.append(df.to_html(index=False, escape=True, border=0, na_rep="-") if len(df) else "<p>(none)</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
