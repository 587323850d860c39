"""The house plotting style: every advqa figure is a ``matplotlib.figure.Figure``.

Library code never calls ``matplotlib.use`` and never imports ``matplotlib.pyplot``:
both change process-wide state under the caller's feet (the backend a notebook or
GUI chose, pyplot's list of open figures). A figure made here is drawn on its own
Agg canvas, so plotting works headless, in worker threads and inside Jupyter
without touching any of that. The style is stated explicitly, never through
``matplotlib.rcParams`` (changing them, even inside ``rc_context``, is global):

- :data:`DPI` dots per inch, constrained layout, white background;
- a light grid on every axes made by :func:`subplots` (:data:`GRID`);
- small legends (:data:`LEGEND_FONT_SIZE`), matplotlib's default fonts and colours.

:func:`save_figure` writes a figure atomically as PNG, or SVG for a ``.svg`` path;
:func:`figure_png` returns PNG bytes (for HTML data URIs). Neither embeds the
matplotlib version or a date, so the same figure gives the same bytes.

This module sits beside ``norms``: plotting code in ``evaluate``, ``robustness``,
``detect`` and ``report`` imports it; it imports only ``advqa.data``'s atomic writer.
"""

from __future__ import annotations

import io
from pathlib import Path

DPI = 110
GRID = {"alpha": 0.3}
LEGEND_FONT_SIZE = "small"
# No "Software" (matplotlib version) in PNGs, no date in SVGs: same figure, same bytes.
_METADATA = {"png": {"Software": None}, "svg": {"Date": None}}


def new_figure(width: float, height: float, *, dpi: float = DPI):
    """An empty ``Figure`` of ``width`` × ``height`` inches in the house style.

    Parameters
    ----------
    width, height : float
        Size in inches.
    dpi : float
        Dots per inch of the saved image.

    Returns
    -------
    matplotlib.figure.Figure
        With an Agg canvas of its own; pyplot never knows about it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not (width > 0 and height > 0):
        raise ValueError(f"figure size must be positive, got {width} × {height} inches")
    figure = Figure(figsize=(width, height), dpi=dpi, layout="constrained",
                    facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def subplots(figure, rows: int = 1, columns: int = 1, *, grid: bool = True, **options):
    """A ``rows`` × ``columns`` array of axes on ``figure``, with the house grid.

    ``options`` go to ``Figure.subplots`` (``sharey=True``, ...); the result is
    always 2-D (``squeeze=False``).
    """
    axes = figure.subplots(rows, columns, squeeze=False, **options)
    if grid:
        for ax in axes.ravel():
            ax.grid(True, **GRID)
            ax.set_axisbelow(True)
    return axes


def legend(ax, **options):
    """``ax.legend`` in the house font size; nothing when the axes has no labelled artist."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    return ax.legend(handles, labels, **{"fontsize": LEGEND_FONT_SIZE, **options})


def figure_bytes(figure, kind: str = "png") -> bytes:
    """The figure as PNG (``kind="png"``) or SVG (``kind="svg"``) bytes."""
    if kind not in _METADATA:
        raise ValueError(f"figure format must be 'png' or 'svg', got {kind!r}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=kind, metadata=_METADATA[kind])
    return buffer.getvalue()


def figure_png(figure) -> bytes:
    """The figure as PNG bytes."""
    return figure_bytes(figure, "png")


def save_figure(figure, path: str | Path) -> Path:
    """Write the figure to ``path`` atomically: SVG for a ``.svg`` path, else PNG.

    The image goes through :func:`advqa.data.io.atomic_write_bytes` (a temporary file
    in the same folder, renamed over ``path``), so a reader never sees half a file.
    """
    from advqa.data.io import atomic_write_bytes

    path = Path(path)
    return atomic_write_bytes(path, figure_bytes(figure, "svg" if path.suffix.lower() == ".svg"
                                                 else "png"))
