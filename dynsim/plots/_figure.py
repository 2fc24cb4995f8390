"""Saving a figure as PNG without pyplot: the Agg canvas, the folder created, one resolution for all figures."""
from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg

DPI = 120
"""Resolution of the saved PNG files."""


def save_figure(fig, out):
    """Write ``fig`` to ``out`` (a PNG path; missing folders are created) and return the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=DPI, format="png")
    return out
