"""Saving a figure as PNG without pyplot: the Agg canvas, the folder created, one resolution for all figures."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg

from dynsim.validation import WriteError, os_reason

DPI = 120
"""Resolution of the saved PNG files."""


def save_figure(fig, out):
    """Write ``fig`` to ``out`` (a PNG path; missing folders are created) and return the path.

    The PNG is written beside ``out`` under a temporary name and renamed, so
    a failed write (a full disk) never leaves a half-written figure in its place.

    Raises
    ------
    WriteError
        ``out`` could not be written (a read-only folder, a full disk); the message names it.
    """
    out = Path(out)
    FigureCanvasAgg(fig)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, dpi=DPI, format="png")
        os.replace(tmp, out)
    except OSError as exc:
        raise WriteError(f"cannot write the figure {out}: {os_reason(exc)}", getattr(exc, "errno", None)) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return out
