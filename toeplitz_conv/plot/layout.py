"""Layout of a matrix figure: a figure shaped like its matrix, titles that fit, ticks and grid
lines no denser than a reader can see.

Everything here works in points (1/72 inch) of the figure as it will be drawn, so the same
rules hold at any dpi:

- :func:`matrix_figure` (of :func:`figure_size`): a figure at least 1280 px wide whose axes
  have the matrix's aspect ratio (clamped to 1:4 .. 4:1, beyond which the image is
  stretched), room for the labels and a slim colour bar, so that no large blank band is left
  beside the matrix.
- :func:`grid_layout`, :func:`draw_grid`, :func:`index_labels`: the grids of an animation.
- :func:`wrap_title`: a title broken into lines no wider than its axes.
- :func:`thin_ticks`: tick labels dropped until neighbours no longer collide.
- :func:`line_spacing_ok`: whether grid lines ``step`` entries apart would still be visible
  as lines rather than a mesh.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from math import prod
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import numpy as np

from .style import MIN_FONT, MIN_WIDTH

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_L = TypeVar("_L")

#: The most a matrix's aspect ratio is kept before the image is stretched.
MAX_ASPECT = 4.0
#: Grid lines closer than this (points) are thinned.
MIN_LINE_SPACING = 9.0


def figure_size(m: int, n: int, *, colorbar: bool = True, title_lines: int = 2) -> tuple[float, float]:
    """``(width, height)`` in inches of the figure :func:`matrix_figure` makes for an
    ``m x n`` matrix (known before any figure exists: the command checks its pixels).

    :data:`MIN_WIDTH` wide (1280 px at 100 dpi, for a projector), as tall as the matrix's
    aspect ratio asks (clamped to ``1:MAX_ASPECT .. MAX_ASPECT:1``, and to 1.3 times the
    width: a tall matrix gets a tall figure, stretched beyond that)."""
    left, right = 2.1, (1.8 if colorbar else 0.3)  # y labels and channel ticks at 14 pt; colour bar
    bottom, top = 1.5, 0.45 + 0.32 * title_lines
    w = MIN_WIDTH - left - right
    shown = min(max(m / n, 1 / MAX_ASPECT), MAX_ASPECT)
    h = min(max(w * shown, 2.4), 1.3 * w)
    return MIN_WIDTH, h + bottom + top


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


def wrap_title(text: str, ax: Axes, *, fontsize: float = 16.0, alone: bool = False) -> str:
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
               axis: str, fontsize: float = MIN_FONT) -> tuple[list[float], list[_L]]:
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


# --------------------------------------------------------------------------- grids (animate)

#: Widest cell of an animation's grids, inches (a number at 14 pt fits in it).
GRID_CELL_INCHES = 0.7


class GridLayout(NamedTuple):
    """Where an animation's panels go: ``size`` (inches), ``cell`` (inches per grid cell),
    ``wide`` (``C`` below the grids, else beside them), ``mat`` (the matrix's axes,
    ``(width, height)`` inches, estimated)."""

    size: tuple[float, float]
    cell: float
    wide: bool
    mat: tuple[float, float]


def grid_layout(c_in: int, grid_in: tuple[int, int], c_out: int, grid_out: tuple[int, int],
                m: int, n: int, min_width: float = MIN_WIDTH) -> GridLayout:
    """The figure of an animation: a panel per input channel (``grid_in`` cells) and per
    output channel, and the ``m x n`` matrix; at least ``min_width`` inches wide.

    A wide (or square) matrix goes below the grids, across the figure; a tall one beside
    them, with the input panels over the output panels."""
    (hi, wi), (ho, wo) = grid_in, grid_out
    label, bar, panel = 2.3, 1.7, 0.95  # the matrix's (c, i, j) row labels; colour bar; per panel
    if n >= m:
        across = c_in * wi + c_out * wo
        room = min_width - panel * (c_in + c_out) - 0.3
        cell = min(GRID_CELL_INCHES, room / across, 4.8 / max(hi, ho))
        mat_w = min_width - label - bar
        mat_h = min(max(mat_w * m / n, 1.6), 5.0)
        height = max(hi, ho) * cell + 1.4 + mat_h + 2.2 + 0.9
        return GridLayout((min_width, height), cell, True, (mat_w, mat_h))
    across = max(c_in * wi, c_out * wo)
    cell = min(GRID_CELL_INCHES, 6.5 / max(across, 1), 6.5 / (hi + ho))
    grids_h = (hi + ho) * cell + 2 * 1.4
    mat_h = max(grids_h, 4.0)
    mat_w = min(max(mat_h * n / m, 2.0), 4.5)
    width = max(min_width, across * cell + panel * max(c_in, c_out) + mat_w + label + bar + 0.6)
    return GridLayout((width, mat_h + 0.9 + 1.2), cell, False, (mat_w, mat_h))


def draw_grid(ax: Axes, colours: np.ndarray, offset: tuple[int, int], title: str, cell_pt: float,
              fontsize: float = MIN_FONT, one_d: bool = False) -> None:
    """A grid of cells: ``colours`` (H, W, 4) RGBA per cell, thin lines between cells, ticks
    at the cells' 0-based indices (``offset`` added: -1 for a cell of padding before index 0),
    thinned until labels no longer collide; equal aspect."""
    h, w = colours.shape[:2]
    ax.imshow(colours, interpolation="nearest", extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ax.hlines(np.arange(h + 1) - 0.5, -0.5, w - 0.5, colors="0.6", linewidth=0.8)
    ax.vlines(np.arange(w + 1) - 0.5, -0.5, h - 0.5, colors="0.6", linewidth=0.8)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    xs, xl = thin_ticks(list(range(w)), [str(j + offset[1]) for j in range(w)], w * cell_pt, w, "x", fontsize)
    ax.set_xticks(xs, xl)
    if one_d:
        ax.set_yticks([])
    else:
        ys, yl = thin_ticks(list(range(h)), [str(i + offset[0]) for i in range(h)], h * cell_pt, h, "y",
                            fontsize)
        ax.set_yticks(ys, yl)
        ax.set_ylabel("i", fontsize=fontsize)
    ax.set_xlabel("j", fontsize=fontsize, labelpad=2)
    ax.tick_params(length=0, labelsize=fontsize, pad=3)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=fontsize, y=1.0, pad=8)  # a fixed place: frames redraw over it
    for spine in ax.spines.values():
        spine.set_color("0.4")


def index_labels(shape: Sequence[int]) -> list[str]:
    """``'(c,i,j)'`` (``'(c,j)'`` in 1D) for each flat C-order index of ``shape``."""
    idx = np.indices(tuple(shape)).reshape(len(shape), -1).T
    return ["(" + ",".join(map(str, t)) + ")" for t in idx.tolist()]


def draw_matrix(ax: Axes, M: Any, grid_in: tuple[int, ...], grid_out: tuple[int, ...], norm: Any,
                 cmap: Any, size: tuple[float, float]) -> Any:
    """``C`` (or ``C.T``, ``M`` sparse) drawn once: its values, lines between channel blocks, rows and
    columns labelled with the ``(c, i, j)`` they index (thinned to fit at 14 pt)."""
    m, n = M.shape
    dense = M.toarray()
    im = ax.imshow(np.ma.masked_equal(dense, 0.0), cmap=cmap, norm=norm, interpolation="nearest",
                   aspect="auto", extent=(-0.5, n - 0.5, m - 0.5, -0.5), zorder=1)
    for shape, lines, other in ((grid_out, ax.hlines, n), (grid_in, ax.vlines, m)):
        step = prod(shape[1:])
        if shape[0] > 1:
            lines(np.arange(step, shape[0] * step, step) - 0.5, -0.5, other - 0.5, colors="0.15",
                  linewidth=1.5, zorder=2)
    ys, yl = thin_ticks(list(range(m)), index_labels(grid_out), size[1] * 72, m, "y", MIN_FONT)
    xs, xl = thin_ticks(list(range(n)), index_labels(grid_in), size[0] * 72, n, "y", MIN_FONT)
    ax.set_yticks(ys, yl)
    ax.set_xticks(xs, xl, rotation=90)
    ax.tick_params(length=3, labelsize=MIN_FONT)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(m - 0.5, -0.5)
    return im
