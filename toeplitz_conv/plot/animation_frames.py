"""The frames of :func:`~toeplitz_conv.plot.animation.animate`: the figure of a checked layer,
its static parts drawn once, and the update that moves its highlights from frame to frame.

The static parts (grids, ticks, the matrix and its colour bar) are drawn once; a frame only
moves a few patches and changes one title; a GIF is written by blitting them over the
static figure rendered once (:mod:`.blit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from ..geometry import ConvGeometry
from .blit import layer_animation
from .layout import draw_grid, draw_matrix, grid_layout, index_labels
from .style import DIVERGING, HIGHLIGHT, MIN_FONT, MIN_WIDTH, OUTLINE, OUTLINE_WIDTH, TITLE_FONT, new_figure, \
    readable, text_fits

if TYPE_CHECKING:
    from matplotlib.animation import FuncAnimation
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

_NUMPY_MODE: dict[str, Literal["reflect", "edge", "wrap"]] = {
    "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
#: Grid cells: inside the input, zero padding, a copy of an input pixel (padding_mode).
_INSIDE, _ZERO, _COPY = "white", "0.78", "#cfe0f3"


def two_d(shape: Sequence[int]) -> tuple[int, int]:
    """A 1D shape as the 2D one of a height-1 grid."""
    return (1, int(shape[0])) if len(shape) == 1 else (int(shape[0]), int(shape[1]))


def _source(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Input index read at each padded position along one axis (-1: a zero)."""
    idx = np.arange(n)
    if mode in _NUMPY_MODE and (lo or hi):
        return np.pad(idx, (lo, hi), mode=_NUMPY_MODE[mode])
    return np.pad(idx, (lo, hi), constant_values=-1)


def grid_text(shape: Sequence[int]) -> str:
    """A grid's shape as the figures write it: ``4x4``."""
    return "x".join(map(str, shape))


def build_frames(M: Any, geom: ConvGeometry, w: np.ndarray, grid_in: tuple[int, ...], grid_out: tuple[int, ...],
                 *, transposed: bool, interval: float, title: str, base_out: Sequence[int]) -> FuncAnimation:
    """The figure, its static parts drawn once, and the frames that move its highlights.

    ``M`` is CSR (a row per frame) or, ``transposed``, CSC (a column per frame)."""
    from matplotlib import colormaps
    from matplotlib.animation import FuncAnimation
    from matplotlib.colors import Normalize, to_rgba
    from matplotlib.patches import Rectangle
    from matplotlib.text import Text

    one_d = w.ndim == 3
    c_in, sp_in = grid_in[0], two_d(grid_in[1:])
    c_out, sp_out = grid_out[0], two_d(grid_out[1:])
    kern = w.reshape(*w.shape[:2], *two_d(w.shape[2:]))
    kh, kw = kern.shape[2:]
    lo = (0, 0) if transposed else two_d(geom.pad_lo)
    hi = (0, 0) if transposed else two_d(geom.pad_hi)
    mode = "zeros" if transposed else geom.padding_mode
    src_r, src_c = (_source(sp_in[k], lo[k], hi[k], mode) for k in (0, 1))
    padded = (len(src_r), len(src_c))
    m, n = M.shape
    lay = grid_layout(c_in, padded, c_out, sp_out, m, n, MIN_WIDTH)
    cell_pt = lay.cell * 72
    fig = new_figure(lay.size)
    if lay.wide:
        outer = fig.add_gridspec(2, 1, height_ratios=[max(padded[0], sp_out[0]) * lay.cell + 1.4,
                                                      lay.mat[1] + 2.2])
        top = outer[0].subgridspec(1, c_in + c_out, width_ratios=[padded[1] + 1] * c_in + [sp_out[1] + 1] * c_out)
        a_in = [fig.add_subplot(top[0, k]) for k in range(c_in)]
        a_out = [fig.add_subplot(top[0, c_in + k]) for k in range(c_out)]
    else:
        outer = fig.add_gridspec(1, 2, width_ratios=[lay.size[0] - lay.mat[0] - 4.0, lay.mat[0] + 4.0])
        left = outer[0].subgridspec(2, 1, height_ratios=[padded[0] + 2, sp_out[0] + 2])
        a_in = [fig.add_subplot(left[0].subgridspec(1, c_in)[0, k]) for k in range(c_in)]
        a_out = [fig.add_subplot(left[1].subgridspec(1, c_out)[0, k]) for k in range(c_out)]
    a_mat = fig.add_subplot(outer[1])
    lim = float(np.abs(w).max()) or 1.0
    norm, cmap = Normalize(-lim, lim), colormaps[DIVERGING]

    def letter(c: int) -> str:
        return f"({c}, j)" if one_d else f"({c}, i, j)"


    # the grids: cells coloured by what they hold, 0-based indices (padding: -1, H, ...)
    inside = (src_r[:, None] >= 0) & (src_c[None, :] >= 0)
    core = np.zeros(padded, dtype=bool)
    core[lo[0]:lo[0] + sp_in[0], lo[1]:lo[1] + sp_in[1]] = True
    colours = np.where(core[..., None], to_rgba(_INSIDE), np.where(inside[..., None], to_rgba(_COPY),
                                                                    to_rgba(_ZERO)))
    two_lines = cell_pt >= 2.6 * MIN_FONT
    copies = {}  # cells that copy an input pixel: the pixel, written where the cells hold it
    for i, j in zip(*np.nonzero(inside & ~core)):
        label = f"{src_c[j]}" if one_d else f"{src_r[i]},{src_c[j]}"
        if two_lines and text_fits(cell_pt, label):
            copies[int(i), int(j)] = label
    for c, ax in enumerate(a_in):
        draw_grid(ax, colours, (-lo[0], -lo[1]), f"input x{letter(c)}", cell_pt, MIN_FONT, one_d)
        for (i, j), label in copies.items():  # in italics, under the window (which writes its own)
            ax.text(j, i - 0.22, label, ha="center", va="center", fontsize=MIN_FONT, style="italic",
                    color="0.25", zorder=2.9)
    for c, ax in enumerate(a_out):
        draw_grid(ax, np.ones((*sp_out, 4)), (0, 0), f"output y{letter(c)}", cell_pt, MIN_FONT, one_d)
        for axis, e in enumerate(p - q for p, q in zip(sp_out, two_d(base_out))):  # output_padding
            if e > 0:
                xy = (sp_out[1] - e - 0.5, -0.5) if axis == 1 else (-0.5, sp_out[0] - e - 0.5)
                extent = (e, sp_out[0]) if axis == 1 else (sp_out[1], e)
                ax.add_patch(Rectangle(xy, *extent, fill=False, linestyle="--", linewidth=2, color="0.3"))
    im = draw_matrix(a_mat, M, grid_in, grid_out, norm, cmap, lay.mat)
    what = "Cᵀ" if transposed else "C"
    a_mat.set_ylabel(f"row: output y(c, {'j' if one_d else 'i, j'})", fontsize=MIN_FONT)
    a_mat.set_xlabel(f"column: input x(c, {'j' if one_d else 'i, j'})", fontsize=MIN_FONT)
    bar = fig.colorbar(im, ax=a_mat, fraction=0.05, pad=0.02, aspect=12 if lay.wide else 25)
    bar.set_label("weight (same colours in every panel)", fontsize=MIN_FONT)
    legend = ("grey: zero padding" if mode == "zeros" else f"blue, italic: a copy of the input pixel ({mode})"
              ) if any(lo + hi) else ""
    if any(p > q for p, q in zip(sp_out, two_d(base_out))):
        legend = "dashed: the rows/columns output_padding adds"
    fig.suptitle(f"{title}: {grid_text(grid_in)} -> {grid_text(grid_out)}" + (f"\n{legend}" if legend else ""),
                 fontsize=TITLE_FONT)

    # the moving parts: fill + outline on the window (or the scattered kernel), the pixel, the row
    def box(ax: Axes, **style: Any) -> Rectangle:
        return cast(Rectangle, ax.add_patch(Rectangle((-0.5, -0.5), 1, 1, visible=False, **style)))

    def pool(ax: Axes, **style: Any) -> list[Text]:
        return [ax.text(0, 0, "", ha="center", va="center", fontsize=MIN_FONT, zorder=5, visible=False,
                        **style) for _ in range(kh * kw)]

    tap_kw: dict[str, Any] = dict(edgecolor=HIGHLIGHT, linewidth=OUTLINE_WIDTH, zorder=3)
    pix_kw: dict[str, Any] = dict(facecolor=HIGHLIGHT, edgecolor=OUTLINE, linewidth=OUTLINE_WIDTH, zorder=3)
    frame_kw: dict[str, Any] = dict(fill=False, edgecolor=OUTLINE, linewidth=OUTLINE_WIDTH + 0.5, zorder=4)
    spread, pixels = (a_out, a_in) if transposed else (a_in, a_out)
    taps = [[box(ax, **tap_kw) for _ in range(kh * kw)] for ax in spread]  # a weight per tap
    windows = [box(ax, **frame_kw) for ax in spread]  # the window's outline
    pixel = [box(ax, **pix_kw) for ax in pixels]  # the one pixel of the frame
    show_w = text_fits(cell_pt, max((f"{v:.2g}" for v in kern.ravel()), key=len)) and cell_pt >= 1.4 * MIN_FONT
    dy = 0.2 if two_lines else 0.0
    values_text = [pool(ax) if show_w else [] for ax in spread]
    copies_text = [pool(ax, style="italic", color="0.25") if copies and not transposed else [] for ax in spread]
    row_fill = a_mat.imshow(np.zeros((1, 1, 4)), extent=(-0.5, 0.5, 0.5, -0.5), interpolation="nearest",
                            aspect="auto", zorder=1.5)  # amber in the lit row's (or column's) empty cells
    a_mat.set_xlim(-0.5, n - 0.5)
    a_mat.set_ylim(m - 0.5, -0.5)
    empty = M.toarray() == 0
    amber, clear = np.array(to_rgba(HIGHLIGHT)), np.zeros(4)
    dims = [cast(Rectangle, a_mat.add_patch(Rectangle((-0.5, -0.5), 1, 1, facecolor="white", alpha=0.6, edgecolor="none",
                                      zorder=2))) for _ in range(2)]
    line = cast(Rectangle, a_mat.add_patch(Rectangle((-0.5, -0.5), 1, 1, fill=False, edgecolor=OUTLINE,
                                                     linewidth=OUTLINE_WIDTH, zorder=3)))
    s, d = two_d(geom.stride), two_d(geom.dilation)
    out_labels, in_labels = index_labels(grid_out), index_labels(grid_in)
    ki, kj = (a.ravel() for a in np.indices((kh, kw)))
    per = prod(sp_out) if transposed else prod(sp_in)

    def light(f: int) -> list[Artist]:
        """Row ``f`` of C (column ``f`` of C.T) lit: its empty cells amber, outlined, the rest dimmed."""
        if transposed:
            row_fill.set_data(np.where(empty[:, f, None, None], amber, clear))
            row_fill.set_extent((f - 0.5, f + 0.5, m - 0.5, -0.5))
            for patch, (a, b) in zip((line, *dims), ((f, 1), (0, f), (f + 1, n - f - 1))):
                patch.set_bounds(a - 0.5, -0.5, b, m)
        else:
            row_fill.set_data(np.where(empty[f, None, :, None], amber, clear))
            row_fill.set_extent((-0.5, n - 0.5, f + 0.5, f - 0.5))
            for patch, (a, b) in zip((line, *dims), ((f, 1), (0, f), (f + 1, m - f - 1))):
                patch.set_bounds(-0.5, a - 0.5, n, b)
        return [row_fill, line, *dims]

    def update(f: int) -> list[Artist]:
        """Draw frame ``f``; returns the artists it changed."""
        if transposed:  # input entry f scatters the kernel: column f of C.T
            c, p = divmod(f, prod(sp_in))
            rows, vals = M.indices[M.indptr[f]:M.indptr[f + 1]], M.data[M.indptr[f]:M.indptr[f + 1]]
            where = [rows[rows // per == k] % per for k in range(c_out)]
            values = [vals[rows // per == k] for k in range(c_out)]
            a_mat.set_title(f"{what}: {m} x {n}, column {f} = input x{in_labels[f]} scatters", fontsize=MIN_FONT, y=1.0)
        else:  # output entry f reads the window under the kernel: row f of C
            c, p = divmod(f, prod(sp_out))
            oi, oj = divmod(p, sp_out[1])
            g, cpg = c // geom.cout_per_group, geom.cin_per_group
            flat = (oi * s[0] + ki * d[0]) * padded[1] + oj * s[1] + kj * d[1]
            where = [flat if k // cpg == g else flat[:0] for k in range(c_in)]
            values = [kern[c, k - g * cpg].ravel() if k // cpg == g else np.zeros(0) for k in range(c_in)]
            a_mat.set_title(f"{what}: {m} x {n}, row {f} = output y{out_labels[f]} reads the window", y=1.0,
                            fontsize=MIN_FONT)
        changed: list[Artist] = [*light(f), a_mat.title]
        width = sp_out[1] if transposed else padded[1]
        for k, cells in enumerate(where):
            ys, xs = np.divmod(cells.astype(int), width)
            for t, patch in enumerate(taps[k]):
                if t < len(cells):
                    patch.set_xy((xs[t] - 0.5, ys[t] - 0.5))
                    patch.set_facecolor(cmap(norm(values[k][t])))
                patch.set_visible(t < len(cells))
            for t, text in enumerate(values_text[k]):
                if t < len(cells):
                    text.set_position((xs[t], ys[t] + dy))
                    text.set_text(f"{values[k][t]:.2g}")
                    text.set_color("white" if abs(values[k][t]) > 0.6 * lim else "black")
                text.set_visible(t < len(cells))
            for t, text in enumerate(copies_text[k]):  # the pixel a copy under the window reads
                label = copies.get((int(ys[t]), int(xs[t]))) if t < len(cells) else None
                if label:
                    text.set_position((xs[t], ys[t] - 0.22))
                    text.set_text(label)
                text.set_visible(label is not None)
            if len(cells):
                windows[k].set_bounds(xs.min() - 0.5, ys.min() - 0.5, xs.max() - xs.min() + 1,
                                      ys.max() - ys.min() + 1)
            windows[k].set_visible(bool(len(cells)))
            changed += [*taps[k], *values_text[k], *copies_text[k], windows[k]]
        y, x = divmod(p, sp_in[1] if transposed else sp_out[1])
        for k, patch in enumerate(pixel):
            patch.set_xy((x - 0.5, y - 0.5))
            patch.set_visible(k == c)
        return [*changed, *pixel]

    changing = set(update(0))
    readable(fig)
    anim: Any = layer_animation(fig, update, changing, (*a_in, *a_out, a_mat), frames=n if transposed else m,
                                interval=interval)
    anim.highlights = {"taps": taps, "window": windows, "pixel": pixel, "row": line}
    return cast("FuncAnimation", anim)
