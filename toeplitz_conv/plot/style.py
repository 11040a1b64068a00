"""What every figure shares: the diverging colormap of values, the sizes that keep a figure
readable on a projector, the highlight of what a frame or a panel points at, and new axes or
figures with constrained layout. matplotlib is imported only when a figure is drawn.

The projector rules (a slide is about 16 inches wide when projected at 100 %):

- figures made here are at least :data:`MIN_WIDTH` inches wide (1280 px at the default
  100 dpi);
- no text is smaller than :data:`MIN_FONT` points, nor than 1.2 % of the figure's width
  (:func:`min_font`): 14 pt on a 16-inch slide;
- what is pointed at (the kernel's window, the output pixel, the lit row or column of ``C``)
  is outlined in :data:`OUTLINE` and filled, never only tinted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

#: Values are drawn in one diverging colormap, white at zero, in every figure.
DIVERGING = "RdBu_r"
#: The smallest text, in points: readable from the back of a classroom.
MIN_FONT = 14.0
#: Titles, in points.
TITLE_FONT = 16.0
#: The narrowest figure made here, in inches: 1280 px at the default dpi of 100.
MIN_WIDTH = 12.8
#: The fill of what is pointed at: an amber that is in no diverging colormap.
HIGHLIGHT = "#FFC20A"
#: Its outline, and the outline's width in points.
OUTLINE = "black"
OUTLINE_WIDTH = 3.0


def min_font(fig: Figure | SubFigure) -> float:
    """The smallest font size (points) allowed on ``fig``: :data:`MIN_FONT`, or 1.2 % of the
    figure's width when that is larger (a figure wider than 16.2 inches)."""
    root: Any = fig.get_figure(root=True)
    width_pt = float(root.get_size_inches()[0]) * 72 if root is not None else 0.0
    return max(MIN_FONT, 0.012 * width_pt)


def text_fits(cell_pt: float, text: str, fontsize: float = MIN_FONT) -> bool:
    """Whether ``text`` at ``fontsize`` fits across a cell ``cell_pt`` points wide (DejaVu
    Sans digits are about 0.64 em wide)."""
    return len(text) * 0.64 * fontsize + 4 <= cell_pt


def readable(fig: Figure, axes: list[Axes] | None = None) -> None:
    """Raise every text of ``fig`` (tick labels included, also those made later) to at least
    :func:`min_font`; ``axes``: only these axes' texts, else the whole figure's."""
    from matplotlib.text import Text

    size = min_font(fig)
    for ax in (axes if axes is not None else fig.axes):
        for which in ("major", "minor"):
            for axis in (ax.xaxis, ax.yaxis):
                labels = axis.get_majorticklabels() if which == "major" else axis.get_minorticklabels()
                current = min((float(t.get_fontsize()) for t in labels), default=0.0)
                ax.tick_params(axis="x" if axis is ax.xaxis else "y", which=which,
                               labelsize=max(size, current))
        for t in ax.findobj(Text):
            if float(t.get_fontsize()) < size:
                t.set_fontsize(size)
    if axes is None:
        for t in fig.findobj(Text):
            if float(t.get_fontsize()) < size:
                t.set_fontsize(size)


def new_axes(ax: Axes | None, figsize: tuple[float, float] = (6.4, 4.8)) -> Axes:
    """``ax``, or the axes of a new figure with constrained layout."""
    if ax is not None:
        if not hasattr(ax, "imshow"):
            raise TypeError(f"ax must be a matplotlib Axes or None; got {type(ax).__name__}.")
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, layout="constrained")[1]


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A new figure with constrained layout, ``figsize`` inches."""
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize, layout="constrained")
