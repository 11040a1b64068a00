"""Convolution in motion: the kernel sliding over the input and the matrix row that it is.

Each frame of :func:`animate` shows the same numbers in three places, in the same colours:
the (padded) input grids, one panel per channel, with the kernel's window filled with its
weights; the output grids with the pixel being computed; and the matrix ``C`` with that
pixel's **row** lit. For the transposed convolution each frame takes one input pixel and
scatters the kernel into the output: one **column** of its matrix at a time. Every grid and
``C``'s rows and columns carry the same 0-based ``(c, i, j)`` indices; padded cells are grey,
cells that reflect, replicate or wrap an input pixel (``padding_mode``) are tinted and name
that pixel in italics where the cells are large enough.

The static parts (grids, ticks, the matrix and its colour bar) are drawn once; a frame only
moves a few patches and changes one title; a GIF is written by blitting them over the
static figure rendered once (:mod:`.blit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import numpy.typing as npt

from .._args import as_array, check_bool, int_tuple, positive_int, real_number
from ..conv import conv_matrix, conv_transpose_matrix
from ..geometry import ConvGeometry, conv_geometry, conv_transpose_geometry
from ..memory import check_size
from .blit import layer_animation
from .layout import draw_grid, draw_matrix, grid_layout, index_labels
from .matrices import check_real
from .style import DIVERGING, HIGHLIGHT, MIN_FONT, MIN_WIDTH, OUTLINE, OUTLINE_WIDTH, TITLE_FONT, new_figure, \
    readable, text_fits

if TYPE_CHECKING:
    from matplotlib.animation import FuncAnimation
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

#: An animation is for a layer a viewer can follow: at most this many frames (one per pixel,
#: 0.7 s each: a GIF of a few minutes), and cells in each grid; the command line's limits.
ANIMATE_MAX_FRAMES = 256
ANIMATE_MAX_CELLS = 1024
#: Channels drawn, one panel each, on either side (input and output).
ANIMATE_MAX_CHANNELS = 4

_NUMPY_MODE: dict[str, Literal["reflect", "edge", "wrap"]] = {
    "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
#: Grid cells: inside the input, zero padding, a copy of an input pixel (padding_mode).
_INSIDE, _ZERO, _COPY = "white", "0.78", "#cfe0f3"


def _two(shape: Sequence[int]) -> tuple[int, int]:
    """A 1D shape as the 2D one of a height-1 grid."""
    return (1, int(shape[0])) if len(shape) == 1 else (int(shape[0]), int(shape[1]))


def _source(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Input index read at each padded position along one axis (-1: a zero)."""
    idx = np.arange(n)
    if mode in _NUMPY_MODE and (lo or hi):
        return np.pad(idx, (lo, hi), mode=_NUMPY_MODE[mode])
    return np.pad(idx, (lo, hi), constant_values=-1)


def _grid_text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _check_animation_size(grid_in: tuple[int, ...], padded_in: tuple[int, ...],
                          grid_out: tuple[int, ...], transposed: bool) -> tuple[float, float]:
    """Refuse a layer too large to watch, or whose frames would not fit in memory, before
    anything is built: one frame per output entry (per input entry when transposed), each
    channel a panel. Returns the figure's size in inches."""
    from matplotlib import rcParams

    frames = prod(grid_in) if transposed else prod(grid_out)
    if frames > ANIMATE_MAX_FRAMES or max(prod(padded_in), prod(grid_out[1:])) > ANIMATE_MAX_CELLS:
        padded = f" padded to {_grid_text(padded_in)}" if tuple(padded_in) != tuple(grid_in[1:]) else ""
        raise ValueError(
            f"animate is for small layers (at most {ANIMATE_MAX_FRAMES:,} frames and {ANIMATE_MAX_CELLS:,} "
            f"cells in each grid); got {frames:,} frames (one per {'input' if transposed else 'output'} "
            f"pixel), input {_grid_text(grid_in)}{padded} ({prod(padded_in):,} cells), output "
            f"{_grid_text(grid_out)} ({prod(grid_out[1:]):,} cells). Draw its matrix with spy, or animate "
            f"a smaller layer."
        )
    size = grid_layout(grid_in[0], _two(padded_in), grid_out[0], _two(grid_out[1:]), prod(grid_out),
                       prod(grid_in), MIN_WIDTH).size
    dpi = float(rcParams["figure.dpi"])
    width, height = round(size[0] * dpi), round(size[1] * dpi)
    m, n = prod(grid_out), prod(grid_in)
    check_size("animate", frames * width * height * 4 + m * n * 8,
               f"{frames:,} frames of {width} x {height} pixels, RGBA, as the GIF writer holds them, "
               f"and the {m:,} x {n:,} matrix as an image")
    return size


def _transposed_name(geom: ConvGeometry, output_padding: tuple[int, ...]) -> str:
    """``ConvTranspose2d(1, 1, 3, stride=2, ...)``: the layer whose transpose ``geom`` is."""
    def short(t: Sequence[object]) -> str:
        return str(t[0]) if len(set(t)) == 1 else str(tuple(t))

    parts = [str(geom.out_channels), str(geom.in_channels), short(geom.kernel)]
    parts += [f"stride={short(geom.stride)}"] if any(s != 1 for s in geom.stride) else []
    parts += [f"padding={short(geom.pad_lo)}"] if any(geom.pad_lo) else []
    parts += [f"output_padding={short(output_padding)}"] if any(output_padding) else []
    parts += [f"dilation={short(geom.dilation)}"] if any(d != 1 for d in geom.dilation) else []
    parts += [f"groups={geom.groups}"] if geom.groups != 1 else []
    return f"ConvTranspose{geom.ndim}d({', '.join(parts)})"


def animate(weight: npt.ArrayLike, input_shape: Sequence[int], *, stride: int | Sequence[int] = 1,
            padding: int | Sequence[int] | str = 0, dilation: int | Sequence[int] = 1,
            padding_mode: str = "zeros", transposed: bool = False,
            output_padding: int | Sequence[int] = 0, interval: float = 700,
            groups: int = 1) -> FuncAnimation:
    """The convolution (or the transposed convolution) of a small layer, in motion.

    Parameters
    ----------
    weight : (C_out, C_in/groups, kH, kW) or (C_out, C_in/groups, k) array_like or torch.Tensor
        When transposed, torch's ConvTranspose layout ``(C_in, C_out/groups, *kernel)``. At most
        :data:`ANIMATE_MAX_CHANNELS` (4) channels on either side, one panel each.
    input_shape : (C_in, H, W) or (C_in, L) tuple of int
        At most :data:`ANIMATE_MAX_FRAMES` (256) frames (one per output entry, all channels;
        per input entry when transposed) and :data:`ANIMATE_MAX_CELLS` (1024) cells in the
        (padded) input grid and in the output grid; larger layers are refused.
    stride, padding, dilation, padding_mode
        As in :func:`toeplitz_conv.conv_matrix`; ``padding_mode`` must be ``'zeros'`` when
        transposed (as torch's ConvTranspose).
    transposed : bool, default False
        The transposed convolution (``conv_transpose2d`` with these arguments and
        ``output_padding``): one frame per *input* entry, its column lit.
    output_padding : int or tuple, default 0
        Transposed only (else it must be 0); the extra output rows/columns are outlined with
        dashes.
    interval : float, default 700
        Milliseconds per frame (positive).
    groups : int, default 1
        As in :func:`toeplitz_conv.conv_matrix`: an output channel's window covers only the
        input channels of its group.

    Returns
    -------
    matplotlib.animation.FuncAnimation
        One frame per output entry (per input entry when transposed), in C order: frame
        ``f`` lights row ``f`` of ``C`` (column ``f`` when transposed). Save it as a GIF with
        ``anim.save("conv.gif", writer="pillow")`` (no ffmpeg needed); its figure is at least
        1280 pixels wide at the default 100 dpi. ``anim.update(f)`` draws frame ``f`` into
        the figure (a still for a slide: then ``fig.savefig``), returning the artists it
        changed; ``anim.highlights`` names them: ``'window'`` (a list per input channel, one
        patch per tap, or the input pixel's patch when transposed), ``'output'`` (per output
        channel), ``'row'`` (the outline on ``C``'s row or column).

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> anim = animate(np.ones((1, 1, 3, 3)), (1, 4, 4), padding=1, stride=2)
    >>> anim.save(os.path.join(tempfile.mkdtemp(), "conv.gif"), writer="pillow")  # 4 frames
    >>> two = animate(np.ones((2, 3, 3, 3)), (3, 4, 4), padding=1, stride=2)  # 3 -> 2 channels
    >>> len(two._fig.axes)  # 3 input panels, 2 output panels, C and its colour bar
    7
    >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    w = as_array(weight, "weight")
    if w.ndim not in (3, 4):
        raise ValueError(f"animate draws 1D or 2D layers: weight must be (C_out, C_in/groups, k) or "
                         f"(C_out, C_in/groups, kH, kW); got weight.shape={tuple(w.shape)}.")
    check_real(w, "weight", "animated")
    w = w.astype(np.float64)
    transposed = check_bool("transposed", transposed)
    interval = real_number("interval", interval, "a positive, finite number of milliseconds",
                           lambda v: np.isfinite(v) and v > 0)
    groups = positive_int("groups", groups)
    if transposed:
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros' when transposed=True (torch's ConvTranspose pads "
                             f"with zeros only); got {padding_mode!r}. The transpose of a padded convolution, "
                             f"conv_matrix(..., padding_mode=...).T, can be drawn with spy.")
        # a str padding: conv_transpose_geometry raises its ValueError
        geom = conv_transpose_geometry(w.shape, input_shape, stride=stride,
                                       padding=cast("int | Sequence[int]", padding),
                                       output_padding=output_padding, dilation=dilation, groups=groups)
        grid_in, grid_out = geom.out_shape, geom.in_shape  # the transposed conv reads geom's output
        padded_in = grid_in[1:]
    else:
        if any(int_tuple("output_padding", output_padding, w.ndim - 2, minimum=0)):
            raise ValueError(f"output_padding must be 0 unless transposed=True (it only resolves the output "
                             f"size of a transposed convolution); got output_padding={output_padding!r}.")
        geom = conv_geometry(w.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
                             groups=groups, padding_mode=padding_mode)
        grid_in, grid_out = geom.in_shape, geom.out_shape
        padded_in = tuple(i + a + b for i, a, b in zip(geom.in_spatial, geom.pad_lo, geom.pad_hi))
    for side, shape in (("input", grid_in), ("output", grid_out)):
        if shape[0] > ANIMATE_MAX_CHANNELS:
            raise ValueError(
                f"animate draws a panel per channel, at most {ANIMATE_MAX_CHANNELS} {side} channels; got "
                f"{shape[0]} {side} channels (weight.shape={tuple(w.shape)}, input_shape="
                f"{tuple(input_shape)}). Animate a slice of the channels, or draw the matrix with spy.")
    _check_animation_size(grid_in, padded_in, grid_out, transposed)
    if transposed:
        op = int_tuple("output_padding", output_padding, w.ndim - 2, minimum=0)
        M = conv_transpose_matrix(w, input_shape, stride=stride,
                                  padding=cast("int | Sequence[int]", padding),
                                  output_padding=output_padding, dilation=dilation, groups=groups)
        name = _transposed_name(geom, op)
        base = conv_transpose_geometry(w.shape, input_shape, stride=stride,
                                       padding=cast("int | Sequence[int]", padding), dilation=dilation,
                                       groups=groups).in_shape[1:]
        return _build(M.tocsc(), geom, w, grid_in, grid_out, transposed=True, interval=interval,
                      title=name, base_out=base)
    C = conv_matrix(w, input_shape, stride=stride, padding=padding, dilation=dilation, groups=groups,
                    padding_mode=padding_mode)
    return _build(C.tocsr(), geom, w, grid_in, grid_out, transposed=False, interval=interval,
                  title=geom.describe(), base_out=grid_out[1:])


def _build(M: Any, geom: ConvGeometry, w: np.ndarray, grid_in: tuple[int, ...], grid_out: tuple[int, ...],
           *, transposed: bool, interval: float, title: str, base_out: Sequence[int]) -> FuncAnimation:
    """The figure, its static parts drawn once, and the frames that move its highlights.

    ``M`` is CSR (a row per frame) or, ``transposed``, CSC (a column per frame)."""
    from matplotlib import colormaps
    from matplotlib.animation import FuncAnimation
    from matplotlib.colors import Normalize, to_rgba
    from matplotlib.patches import Rectangle
    from matplotlib.text import Text

    one_d = w.ndim == 3
    c_in, sp_in = grid_in[0], _two(grid_in[1:])
    c_out, sp_out = grid_out[0], _two(grid_out[1:])
    kern = w.reshape(*w.shape[:2], *_two(w.shape[2:]))
    kh, kw = kern.shape[2:]
    lo = (0, 0) if transposed else _two(geom.pad_lo)
    hi = (0, 0) if transposed else _two(geom.pad_hi)
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
        for axis, e in enumerate(p - q for p, q in zip(sp_out, _two(base_out))):  # output_padding
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
    if any(p > q for p, q in zip(sp_out, _two(base_out))):
        legend = "dashed: the rows/columns output_padding adds"
    fig.suptitle(f"{title}: {_grid_text(grid_in)} -> {_grid_text(grid_out)}" + (f"\n{legend}" if legend else ""),
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
    s, d = _two(geom.stride), _two(geom.dilation)
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
