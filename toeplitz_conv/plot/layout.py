"""Layout of a matrix figure: a figure shaped like its matrix, titles that fit, ticks and grid
lines no denser than a reader can see.

Everything here works in points (1/72 inch) of the figure as it will be drawn, so the same
rules hold at any dpi:

- :func:`matrix_figure` (of :func:`figure_size`): a figure whose axes have the matrix's aspect ratio (clamped to 1:4 ..
  4:1, beyond which the image is stretched), room for the labels and a slim colour bar, so
  that no large blank band is left beside the matrix.
- :func:`wrap_title`: a title broken into lines no wider than its axes.
- :func:`thin_ticks`: tick labels dropped until neighbours no longer collide.
- :func:`line_spacing_ok`: whether grid lines ``step`` entries apart would still be visible
  as lines rather than a mesh.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar, cast

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_L = TypeVar("_L")

#: Longest side of a matrix's axes in a figure made for it, in inches.
AXES_INCHES = 6.0
#: The most a matrix's aspect ratio is kept before the image is stretched.
MAX_ASPECT = 4.0
#: Grid lines closer than this (points) are thinned.
MIN_LINE_SPACING = 9.0


def figure_size(m: int, n: int, *, colorbar: bool = True, title_lines: int = 2) -> tuple[float, float]:
    """``(width, height)`` in inches of the figure :func:`matrix_figure` makes for an
    ``m x n`` matrix (known before any figure exists: the command checks its pixels)."""
    ratio = m / n
    shown = min(max(ratio, 1 / MAX_ASPECT), MAX_ASPECT)
    if shown >= 1:
        h = AXES_INCHES
        w = max(AXES_INCHES / shown, 1.2)
    else:
        w = AXES_INCHES * min(1.4, 1 / shown)  # wide matrices get a wider canvas: slides are wide
        h = max(w * shown, 1.2)
    left, right = 1.5, (1.2 if colorbar else 0.25)  # y labels and channel ticks; colour bar
    bottom, top = 1.0, 0.35 + 0.25 * title_lines
    fig_w = max(w + left + right, 5.5)  # a title of a few words must fit above a thin matrix
    return fig_w, h + bottom + top


def matrix_figure(m: int, n: int, *, colorbar: bool = True,
                  title_lines: int = 2) -> tuple[Figure, Axes]:
    """``(fig, ax)``: a new constrained-layout figure of :func:`figure_size` for an ``m x n``
    matrix.

    The axes have about the matrix's aspect ratio, clamped to ``1:MAX_ASPECT .. MAX_ASPECT:1``;
    draw into them with ``aspect='auto'`` so that the matrix fills them (an ``'equal'`` aspect
    would leave bands of the canvas blank wherever the labels' room was estimated wrong).
    """
    import matplotlib.pyplot as plt

    size = figure_size(m, n, colorbar=colorbar, title_lines=title_lines)
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    return fig, ax


def axes_points(ax: Axes) -> tuple[float, float]:
    """Width and height of ``ax`` in points as the figure lays it out now (from its box in
    pixels: an Axes of a SubFigure has a position relative to the subfigure)."""
    box, dpi = ax.bbox, cast("Figure", ax.figure).dpi
    return box.width / dpi * 72, box.height / dpi * 72


def wrap_title(text: str, ax: Axes, *, fontsize: float = 12.0, alone: bool = False) -> str:
    """``text`` with each line broken at spaces to fit over ``ax`` (at least 24 characters);
    ``alone``: the axes are the figure's only panel, and the title may span the figure."""
    width, _ = axes_points(ax)
    panel = cast("Figure", ax.figure)  # or the SubFigure that holds ax: the title's room
    fig_width = panel.bbox.width / panel.dpi * 72
    if alone:
        room = 0.92 * fig_width
    else:  # a title may overhang its panel a little
        room = max(width * 1.15, min(fig_width * 0.9, width * 1.6))
    chars = max(24, int(room / (0.58 * fontsize)))
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) for line in text.splitlines())


def thin_ticks(positions: Sequence[float], labels: Sequence[_L], length_pt: float, span: float,
               axis: str, fontsize: float = 10.0) -> tuple[list[float], list[_L]]:
    """Keep ticks, first and last preferred, so that no two labels overlap.

    ``positions`` in data units along an axis of ``span`` data units drawn on ``length_pt``
    points; x labels need their text width apart, y labels their height.
    """
    if not positions:
        return [], []
    scale = length_pt / max(span, 1e-12)

    def size(label: object) -> float:
        return (len(str(label)) * 0.7 * fontsize if axis == "x" else 1.25 * fontsize)

    order = sorted(range(len(positions)), key=lambda i: positions[i])
    keep = [order[0]]
    for i in order[1:]:
        gap = (positions[i] - positions[keep[-1]]) * scale
        if gap >= (size(labels[i]) + size(labels[keep[-1]])) / 2 + 3:
            keep.append(i)
    last = order[-1]
    if keep[-1] != last:  # prefer the last tick (the matrix's size) over the one before it
        keep[-1] = last
        if len(keep) > 1:
            gap = (positions[keep[-1]] - positions[keep[-2]]) * scale
            if gap < (size(labels[keep[-1]]) + size(labels[keep[-2]])) / 2 + 3:
                del keep[-2]
    return [positions[i] for i in keep], [labels[i] for i in keep]


def line_spacing_ok(step: float, span: float, length_pt: float, cell: float = 1.0) -> bool:
    """Whether lines every ``step`` data units read as lines: at least ``MIN_LINE_SPACING``
    points apart and at least four image cells of ``cell`` data units apart."""
    return step * length_pt / max(span, 1e-12) >= MIN_LINE_SPACING and step >= 4 * cell
