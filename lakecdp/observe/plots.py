"""Plots for `lakecdp report`, drawn with matplotlib and inlined as SVG.

Why matplotlib-SVG: matplotlib is already a pinned dependency (model cards and experiment
reports draw with it), it renders offline with no JavaScript runtime, and inline SVG keeps the
page one self-contained, small file that any browser shows and a test can inspect element by
element. Altair would need the Vega/Vega-Lite JavaScript bundle (~1 MB) inlined into every page
and a JS engine to draw; the model cards' PNGs would be larger and opaque to a test.
"""

from __future__ import annotations

import io
import re

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

# matplotlib names each element figure_1, axes_1, line2d_3, ... in every SVG; nothing refers to
# these ids, so they get the plot's id as a prefix to stay unique on a page of many plots.
_ELEMENT_ID = re.compile(
    r'id="((?:figure|axes|patch|line2d|text|xtick|ytick|legend|matplotlib\.axis|PolyCollection|QuadMesh|LineCollection|PathCollection|image)_\d+)"'
)

PASS, FAIL, ACCENT, MUTED = "#2a9d8f", "#e76f51", "#457b9d", "#8d99ae"


def new_figure(title: str, xlabel: str = "", ylabel: str = "", *, width: float = 6.4, height: float = 3.2) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=10)
    axes.set(xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    return figure, axes


def new_panels(count: int, *, width: float, height: float) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    panels = list(figure.subplots(1, count))
    for axes in panels:
        axes.grid(alpha=0.3)
    return figure, panels


def time_axis(figure: Figure, axes: Axes, *, min_margin_days: float = 1 / 1440) -> None:
    """Dates on x, concise, fitted to the data (a 5% margin, at least `min_margin_days`): minutes of batches
    fill the axis, and a one-day series of daily values (min_margin_days=1) still reads as days."""
    start, end = axes.dataLim.intervalx
    margin = max((end - start) * 0.05, min_margin_days)  # matplotlib dates count days
    axes.set_xlim(start - margin, end + margin)
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    figure.autofmt_xdate()


def to_svg(figure: Figure, plot_id: str) -> str:
    """The figure as an inline <svg> element: text kept as text, ids salted by the plot id so that
    several plots on one page never share a clip-path id, and no timestamp (same data, same bytes)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": plot_id}):
        FigureCanvasSVG(figure).print_svg(buffer, metadata={"Date": None})
    text = buffer.getvalue()
    return _ELEMENT_ID.sub(rf'id="{plot_id}-\1"', text[text.index("<svg") :])
