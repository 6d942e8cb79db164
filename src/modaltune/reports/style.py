"""Figure conventions shared by every report figure: Agg backend, size, the protocol/SIMULATED stamp."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are written headless (servers, CI); never open a window
import matplotlib.pyplot as plt

__all__ = ["new_figure", "save_figure", "plt"]

DPI = 100  # a 7 x 4.5 in figure is 700 x 450 px: readable in the HTML page, small in the repo


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 7.0, height: float = 4.5, **kwargs):
    """``(fig, axes)`` of ``width`` x ``height`` inches (axes squeezed as in ``plt.subplots``)."""
    return plt.subplots(nrows, ncols, figsize=(width, height), **kwargs)


def save_figure(fig, path: str | Path, *, protocol: str, label: str = "") -> Path:
    """Stamp the SIMULATED label (bottom, red) and the protocol line (below it, wrapped) and write a PNG.

    Every report figure goes through here, so no figure leaves without its protocol and label.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width_chars = int(fig.get_figwidth() * 15)
    footer = textwrap.fill(protocol or "protocol: not recorded in summary.md", width_chars)
    n = footer.count("\n") + 1 + (1.5 if label else 0)
    line = 0.11 / fig.get_figheight()  # one 7-pt line, as a fraction of the figure height
    fig.tight_layout(rect=(0, line * n + 0.015, 1, 1))
    fig.text(0.01, 0.01, footer, fontsize=7, color="0.3", va="bottom", ha="left")
    if label:  # at the bottom, so it never collides with titles
        fig.text(0.01, 0.01 + line * (n - 1), label, fontsize=9, color="crimson", fontweight="bold", va="bottom", ha="left")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
