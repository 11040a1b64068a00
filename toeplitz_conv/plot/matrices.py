"""Spy plots: a convolution matrix drawn so that its structure shows.

:func:`spy` draws the sparsity pattern of a matrix with the lines a reader should see
(between channel blocks and between image rows: the doubly block Toeplitz pattern); values as
colour for small matrices, markers for medium ones, a 2D histogram of the nonzeros for large
ones. :func:`check_matrix`, :func:`check_real` and :func:`check_index_shape` are the checks every
matrix figure shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import ceil, prod
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from .._args import as_array, as_tuple, check_bool, check_choice, is_int, positive_int
from ..memory import check_size
from .layout import axes_points, line_spacing_ok, matrix_figure, thin_ticks, wrap_title
from .style import DIVERGING, MIN_FONT, TITLE_FONT, text_fits

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap

SpyMode = Literal["auto", "values", "markers", "density"]


def check_matrix(C: npt.ArrayLike | sp.sparray | sp.spmatrix, name: str = "C") -> sp.csr_array:
    """A 2D scipy.sparse array from a sparse matrix/array or a 2D array_like, in canonical
    format and without stored zeros, so that its ``nnz`` counts its true nonzeros (merged on a
    copy when needed: the caller's arrays are never changed)."""
    if sp.issparse(C):
        ndim = cast("sp.sparray", C).ndim  # scipy is untyped: issparse does not narrow C
        if ndim != 2:
            raise ValueError(f"{name} must be a 2D matrix; got {ndim} dimensions.")
        A = sp.csr_array(C)
    else:
        arr = as_array(C, name)
        if arr.ndim != 2:
            raise ValueError(
                f"{name} must be a 2D matrix (scipy.sparse or array_like); got {name}.shape={tuple(arr.shape)}."
            )
        A = sp.csr_array(arr)
    if not A.has_canonical_format or not A.data.all():  # duplicates, or zeros stored (or summed)
        A = A.copy()
        A.sum_duplicates()
        A.eliminate_zeros()
    return A


def check_real(arr: np.ndarray | sp.sparray, name: str, what: str = "drawn") -> None:
    """Refuse a complex array, whose imaginary part a figure of values would drop."""
    if np.iscomplexobj(arr):
        raise TypeError(
            f"{name} must be real to be {what}; got dtype {arr.dtype}. "
            f"Pass {name}.real, {name}.imag or abs({name})."
        )


def check_index_shape(name: str, shape: object, size: int, what: str) -> tuple[int, ...] | None:
    """``None``, or the shape of what the ``size`` rows/columns index, checked against it."""
    if shape is None:
        return None
    items = as_tuple(shape, name, "a tuple (channels, *spatial)")
    if not items or not all(is_int(s) and s >= 1 for s in items):
        raise ValueError(f"{name} must be a tuple of positive ints (channels, *spatial); got {shape!r}.")
    if int(np.prod(items)) != size:
        raise ValueError(
            f"{name} must describe the {size} {what} of the matrix (its product must be {size}); "
            f"got {name}={items} (product {int(np.prod(items))})."
        )
    return tuple(int(s) for s in items)


# --------------------------------------------------------------------------- spy


def _index_label(shape: tuple[int, ...] | None, what: str, letter: str) -> str:
    """'output index: y(c, i, j) in C order' style axis label (0-based, as every figure's)."""
    if shape is None:
        return f"{what} index"
    pos = ", ".join("dij"[3 - (len(shape) - 1):]) if len(shape) > 1 else ""
    return f"{what} index: {letter}(c{', ' + pos if pos else ''}) in C order"


def _shown_channels(channels: int, p: int, span: float, length_pt: float, axis: Literal["x", "y"],
                    cell: float) -> int:
    """Every how many channels a channel line (and its tick) is drawn: 1, or a power of 2
    when the blocks are too thin on the drawn axis to be told apart."""
    k = 1
    while k < channels and not (line_spacing_ok(k * p, span, length_pt, cell)
                                and k * p * length_pt / span >= (14 if axis == "y" else 22)):
        k *= 2
    return k


def _block_lines(ax: Axes, shape: tuple[int, ...], n_other: int, axis: Literal["x", "y"],
                 cell: float = 1.0) -> int:
    """Lines between channel blocks (dark) and between image rows / planes (light), each level
    only where its lines are far enough apart to read (channels thinned to every k-th);
    returns k."""
    channels, spatial = shape[0], shape[1:]
    p = prod(spatial)
    total = channels * p
    w_pt, h_pt = axes_points(ax)
    length = h_pt if axis == "y" else w_pt
    k = _shown_channels(channels, p, total, length, axis, cell)
    levels = []  # (step, colour, width): image rows (2D, 3D), planes (3D), channel blocks
    if len(spatial) >= 2:
        levels.append((spatial[-1], "0.8", 0.4))
    if len(spatial) == 3:
        levels.append((spatial[-1] * spatial[-2], "0.55", 0.6))
    levels.append((k * p, "0.15", 1.0 if cell == 1 else 0.7))
    lines = {}
    for step, colour, width in levels:
        if total // step <= 1 or not line_spacing_ok(step, total, length, cell):
            continue
        for pos in range(step, total, step):
            lines[pos] = (colour, width)  # coarser levels overwrite finer ones
    segments: dict[tuple[str, float], list[float]] = {}
    for pos, style in lines.items():
        segments.setdefault(style, []).append(pos - 0.5)
    for (colour, width), positions in segments.items():
        if axis == "y":
            ax.hlines(positions, -0.5, n_other - 0.5, colors=colour, linewidth=width, zorder=3)
        else:
            ax.vlines(positions, -0.5, n_other - 0.5, colors=colour, linewidth=width, zorder=3)
    return k


def _channel_ticks(ax: Axes, shape: tuple[int, ...], axis: Literal["x", "y"], letter: str,
                   k: int) -> None:
    """Ticks at the first index of each (k-th) channel block, labels 'c0', 'c1', ... between
    them, thinned until none collide; one channel: every index of a small sample (at most
    16), else the first index of each image row."""
    channels, spatial = shape[0], shape[1:]
    p = prod(spatial)
    total = channels * p
    set_ticks = ax.set_yticks if axis == "y" else ax.set_xticks
    w_pt, h_pt = axes_points(ax)
    length = h_pt if axis == "y" else w_pt

    def place(positions: Sequence[float], labels: Sequence[str], minor: bool = False) -> None:
        positions, labels = thin_ticks(positions, labels, length, total, axis, fontsize=MIN_FONT)
        set_ticks(positions, labels, minor=minor)

    if channels == 1:
        if p <= 16:
            place(list(range(p)), [str(i) for i in range(p)])
        elif len(spatial) >= 2 and p // spatial[-1] <= 8:
            starts = list(range(0, p, spatial[-1])) + [p - 1]
            place(starts, [str(i) for i in starts])
        return
    if k > 1:  # blocks too thin for two labels each: the k-th channels, named
        starts = list(range(0, total, k * p))
        place(starts, [f"{letter}{c}" for c in range(0, channels, k)])
        return
    starts = [c * p for c in range(channels)] + [total - 1]
    place(starts, [str(i) for i in starts])
    place([c * p + (p - 1) / 2 for c in range(channels)], [f"{letter}{c}" for c in range(channels)],
          minor=True)
    which = ax.yaxis if axis == "y" else ax.xaxis
    for t in which.get_minor_ticks():
        t.tick1line.set_visible(False)
        t.tick2line.set_visible(False)
    ax.tick_params(axis=axis, which="minor", pad=20 if axis == "x" else 30,
                   labelsize=MIN_FONT, labelcolor="0.3")


def spy(C: npt.ArrayLike | sp.sparray | sp.spmatrix, *, ax: Axes | None = None,
        input_shape: Sequence[int] | None = None, output_shape: Sequence[int] | None = None,
        mode: SpyMode = "auto", max_bins: int = 400, title: str | None = None,
        layer: str | None = None, colorbar: bool = True, annotate: bool | Literal["auto"] = "auto",
        cmap: str | Colormap | None = None, row_label: str | None = None,
        col_label: str | None = None, aspect: Literal["equal", "auto"] | None = None,
        vmax: float | None = None) -> Axes:
    """Spy plot of a matrix, drawn to show the structure of a convolution matrix.

    Parameters
    ----------
    C : (M, N) scipy.sparse array or matrix, or 2D array_like
        Stored zeros are not drawn or counted (only true nonzeros are). A complex matrix is
        drawn as its pattern (markers or density); for its values pass ``C.real``,
        ``C.imag`` or ``abs(C)``.
    ax : matplotlib Axes, optional
        Drawn into. When omitted, a new figure shaped for the matrix: its axes keep the
        matrix's aspect ratio up to 4:1 either way (beyond that the image is stretched), with
        a slim colour bar, so that the matrix fills the canvas.
    input_shape : (C_in, *spatial) tuple of int, optional
        What a column indexes (one input sample); ``prod(input_shape)`` must be ``N``. Adds
        lines between input channels and between image rows, and channel ticks. Lines and
        ticks closer than a reader can tell apart are thinned (every k-th channel).
    output_shape : (C_out, *out_spatial) tuple of int, optional
        What a row indexes; ``prod(output_shape)`` must be ``M``.
    mode : {'auto', 'values', 'markers', 'density'}, default 'auto'
        ``'values'``: every stored entry coloured by its value (diverging colormap, white
        where nothing is stored); ``'markers'``: one marker per nonzero; ``'density'``: a 2D
        histogram of the nonzeros on at most ``max_bins x max_bins`` cells (log colour), which
        draws a 100k x 100k matrix in about the time of counting its nonzeros. ``'auto'``
        picks values up to 250k entries, markers up to 20k nonzeros, density beyond. A small
        matrix asked for a density gets one: cells of ``1x1`` entries count 0 or 1 (its
        pattern), said in the colour bar's label.
    max_bins : int, default 400
        Cells along the longer side in ``'density'`` mode.
    title : str, optional
        Default: shape, nonzeros and density, after ``layer`` when given. Long titles are
        wrapped to the axes' width.
    layer : str, optional
        What the matrix is, as the first line of the default title, e.g.
        ``ConvGeometry.describe()``: ``'Conv2d(3, 16, 3, padding=1)'``.
    colorbar : bool, default True
    annotate : bool or 'auto', default 'auto'
        Write each value in its cell (``'values'`` mode; 'auto': up to 400 entries, when the
        numbers fit their cells at 14 pt).
    cmap : str or Colormap, optional
    row_label, col_label : str, optional
        Axis labels; default: what the rows and columns of a convolution matrix index,
        ``'output index: y(c, i, j) in C order'`` and ``'input index: x(...)'``. Pass them
        for any other matrix (``C.T``: its rows index the input).
    aspect : {'equal', 'auto'}, optional
        Of the entries as drawn. Default: ``'auto'`` in a figure made for the matrix (its axes
        have the matrix's shape), else square entries unless the matrix is more than 8 times
        longer one way than the other.
    vmax : float > 0, optional
        ``'values'`` mode: the colour scale runs from ``-vmax`` to ``vmax`` (default: the
        largest ``|entry|``); larger entries saturate. Shows the band of ``I + C`` beside its
        dominant diagonal, or several matrices on one scale.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn into, titled with the matrix's shape, nonzeros and density.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, toeplitz_conv as tc
    >>> C = tc.conv_matrix(np.random.rand(4, 3, 3, 3), (3, 8, 8), stride=2, padding=1)
    >>> ax = spy(C, input_shape=(3, 8, 8), output_shape=(4, 4, 4))
    >>> ax.get_title()
    '64 x 192, 1,452 nonzeros (density 11.8%)'
    >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    A = check_matrix(C, "C")
    m, n = A.shape
    if m == 0 or n == 0:
        raise ValueError(f"C must have at least one row and one column to draw; got shape {A.shape}.")
    if ax is not None and not hasattr(ax, "imshow"):
        raise TypeError(f"ax must be a matplotlib Axes or None; got {type(ax).__name__}.")
    in_shape = check_index_shape("input_shape", input_shape, n, "columns")
    out_shape = check_index_shape("output_shape", output_shape, m, "rows")
    mode = cast(SpyMode, check_choice("mode", mode, get_args(SpyMode)))
    pattern_only = np.iscomplexobj(A)  # a complex matrix: its pattern, never its real part
    if mode == "values":
        check_real(A, "C", "drawn as values")
    colorbar = check_bool("colorbar", colorbar)
    if vmax is not None:
        if isinstance(vmax, bool) or not isinstance(vmax, (int, float, np.floating, np.integer)):
            raise TypeError(f"vmax must be a finite number > 0 or None; got {type(vmax).__name__} {vmax!r}.")
        if not (np.isfinite(vmax) and vmax > 0):
            raise ValueError(f"vmax must be a finite number > 0 or None; got {vmax!r}.")
    if annotate != "auto":
        annotate = check_bool("annotate", annotate)
    if mode == "values":  # a dense masked image of the whole matrix (value, mask)
        check_size("spy(mode='values')", 9 * m * n,
                   f"a dense {m:,} x {n:,} image; mode='density' draws any size")
    max_bins = positive_int("max_bins", max_bins)
    for name, value in (("title", title), ("layer", layer), ("row_label", row_label),
                        ("col_label", col_label)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str or None; got {type(value).__name__}.")
    nnz = A.nnz
    if mode == "auto":
        mode = ("values" if m * n <= 250_000 and not pattern_only
                else "markers" if nnz <= 20_000 else "density")
    if title is None:
        title = f"{m:,} x {n:,}, {nnz:,} nonzeros (density {100 * nnz / (m * n):.3g}%)"
        if layer:
            title = f"{layer}\n{title}"
    if aspect is not None:
        aspect = cast(Literal["equal", "auto"], check_choice("aspect", aspect, ("equal", "auto")))
    alone = ax is None
    if ax is None:  # alone; tested on ax itself, which mypy narrows
        ax = matrix_figure(m, n, colorbar=colorbar and mode != "markers",
                           title_lines=title.count("\n") + 2)[1]
        aspect = aspect or "auto"  # the axes were shaped for the matrix
    elif aspect is None:
        aspect = "equal" if max(m, n) <= 8 * min(m, n) else "auto"
    # density cells: at most max_bins along the longer drawn side, about square as drawn
    w_pt, h_pt = axes_points(ax)
    longer = max(w_pt, h_pt)
    br = max(1, ceil(m / max(1.0, max_bins * h_pt / longer)))
    bc = max(1, ceil(n / max(1.0, max_bins * w_pt / longer)))
    if aspect == "equal":
        br = bc = max(br, bc)
    rows = np.repeat(np.arange(m), np.diff(A.indptr))
    cols = A.indices
    extent = (-0.5, n - 0.5, m - 0.5, -0.5)
    bar: dict[str, Any] = dict(shrink=0.8, fraction=0.04, pad=0.02, aspect=30)
    if mode == "values":
        dense = np.ma.masked_array(np.zeros((m, n), dtype=np.float64), mask=True)
        vals = A.data
        dense[rows, cols] = vals
        if vmax is None:
            vmax = float(np.abs(vals).max()) if nnz else 1.0
            vmax = vmax or 1.0
        vmax = float(vmax)
        im = ax.imshow(dense, cmap=cmap or DIVERGING, vmin=-vmax, vmax=vmax,
                       interpolation="nearest", extent=extent, aspect=aspect)
        if annotate == "auto":
            longest = max((len(f"{v:.2g}") for v in vals), default=1)
            annotate = m * n <= 400 and text_fits(min(w_pt / n, 2.2 * h_pt / m), "0" * longest)
        if annotate:
            for r, c, val in zip(rows, cols, vals):
                ax.text(c, r, f"{val:.2g}", ha="center", va="center", fontsize=MIN_FONT,
                        color="white" if abs(val) > 0.6 * vmax else "black")
        if colorbar:
            _colorbar(ax, im, "value", bar)
    elif mode == "markers":
        size = max(0.5, min(6.0, 0.8 * min(w_pt / n, h_pt / m)))  # about one entry wide
        ax.plot(cols, rows, linestyle="none", marker="s", markersize=size,
                markeredgewidth=0, color="tab:blue")
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
        ax.set_aspect(aspect)
    else:
        from matplotlib.colors import LogNorm

        nr, nc = ceil(m / br), ceil(n / bc)
        counts = np.bincount((rows // br) * nc + cols // bc, minlength=nr * nc).reshape(nr, nc)
        img = np.ma.masked_equal(counts, 0)
        im = ax.imshow(img, cmap=cmap or "viridis", norm=LogNorm(vmin=1, vmax=max(2, counts.max())),
                       interpolation="nearest", extent=(-0.5, nc * bc - 0.5, nr * br - 0.5, -0.5),
                       aspect=aspect)
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
        if colorbar:
            _colorbar(ax, im, f"nonzeros per {br}x{bc} cell" + (" (the pattern)" if br * bc == 1 else ""), bar)
    if mode != "density":
        br = bc = 1
    if out_shape is not None:
        k = _block_lines(ax, out_shape, n, "y", br)
        _channel_ticks(ax, out_shape, "y", "c", k)
    if in_shape is not None:
        k = _block_lines(ax, in_shape, m, "x", bc)
        _channel_ticks(ax, in_shape, "x", "c", k)
    ax.set_ylabel(row_label if row_label is not None else _index_label(out_shape, "output", "y"),
                  fontsize=MIN_FONT)
    ax.set_xlabel(col_label if col_label is not None else _index_label(in_shape, "input", "x"),
                  fontsize=MIN_FONT)
    ax.tick_params(which="major", labelsize=MIN_FONT)
    ax.set_title(wrap_title(title, ax, fontsize=TITLE_FONT, alone=alone), fontsize=TITLE_FONT)
    return ax


def _colorbar(ax: Axes, im: Any, label: str, kw: dict[str, Any]) -> None:
    """The colour bar of ``im`` beside ``ax``, its label and ticks at 14 pt."""
    bar = ax.figure.colorbar(im, ax=ax, **kw)
    bar.set_label(label, fontsize=MIN_FONT)
    bar.ax.tick_params(labelsize=MIN_FONT)
