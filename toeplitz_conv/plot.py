"""Figures that show the structure: spy plots, receptive fields, gradients, networks, symbols.

matplotlib (and sympy, for the symbolic view) is imported inside the functions that draw, so
``import toeplitz_conv`` never loads it. Every drawing function returns its matplotlib
``Axes`` or ``Figure``; nothing is written to disk here (call ``fig.savefig``).

- :func:`spy`: the sparsity pattern of a matrix with the lines a reader should see (between
  channel blocks and between image rows: the doubly block Toeplitz pattern); values as colour
  for small matrices, markers for medium ones, a 2D histogram of the nonzeros for large ones.
- :func:`field_figure`: a row of ``C`` on the input (the receptive field of one output) and a
  column of ``C`` on the output (the projective field of one input).
- :func:`gradient_figure`: input, kernel, weight gradient and input gradient of a layer.
- :func:`network_figure`: each layer's matrix of a network, side by side.
- :func:`symbolic_conv_matrix`, :func:`symbolic_conv_transpose_matrix`: the matrix with the
  kernel's entries as sympy symbols (``w_00``, ``w_01``, ...), printable as LaTeX.
"""

from __future__ import annotations

import itertools
from math import ceil, prod

import numpy as np
import scipy.sparse as sp

from . import _validate as v
from .conv import conv_matrix, conv_weight_grad
from .geometry import conv_geometry, conv_transpose_geometry
from .pattern import conv_pattern

_DIVERGING = "RdBu_r"


def _new_axes(ax, figsize=(6.4, 4.8)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, layout="constrained")[1]


def _new_figure(figsize):
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize, layout="constrained")


# --------------------------------------------------------------------------- spy


def _index_label(shape, what: str, letter: str) -> str:
    """'output index: y[c, h, w] in C order' style axis label."""
    if shape is None:
        return f"{what} index"
    pos = ", ".join("dhw"[3 - (len(shape) - 1):]) if len(shape) > 1 else ""
    return f"{what} index: {letter}[c{', ' + pos if pos else ''}] in C order"


def _block_lines(ax, shape, n_other: int, axis: str) -> None:
    """Lines between channel blocks (dark) and between image rows / planes (light)."""
    channels, spatial = shape[0], shape[1:]
    p = prod(spatial)
    levels = []  # (step, colour, width): channel blocks, planes (3D), image rows (2D, 3D)
    if len(spatial) >= 2:
        levels.append((spatial[-1], "0.8", 0.4))
    if len(spatial) == 3:
        levels.append((spatial[-1] * spatial[-2], "0.55", 0.6))
    levels.append((p, "0.15", 1.0))
    total = channels * p
    lines = {}
    for step, colour, width in levels:
        count = total // step - 1
        if count <= 0 or count > (256 if step == p else 64):  # too many hide the pattern
            continue
        for k in range(1, total // step):
            lines[k * step] = (colour, width)  # coarser levels overwrite finer ones
    segments = {}
    for pos, style in lines.items():
        segments.setdefault(style, []).append(pos - 0.5)
    for (colour, width), positions in segments.items():
        if axis == "y":
            ax.hlines(positions, -0.5, n_other - 0.5, colors=colour, linewidth=width, zorder=3)
        else:
            ax.vlines(positions, -0.5, n_other - 0.5, colors=colour, linewidth=width, zorder=3)


def _channel_ticks(ax, shape, axis: str, letter: str) -> None:
    """Ticks at the first index of each channel block with labels 'c0', 'c1', ... between
    them; one channel: ticks at the first index of each image row."""
    channels, spatial = shape[0], shape[1:]
    p = prod(spatial)
    set_ticks = ax.set_yticks if axis == "y" else ax.set_xticks
    if channels == 1:
        if len(spatial) >= 2 and p // spatial[-1] <= 8:
            set_ticks(list(range(0, p, spatial[-1])) + [p - 1])
        return
    if channels > 24:
        return
    set_ticks([c * p for c in range(channels)] + [channels * p - 1])
    centres = [c * p + (p - 1) / 2 for c in range(channels)]
    set_ticks(centres, [f"{letter}{c}" for c in range(channels)], minor=True)
    which = ax.yaxis if axis == "y" else ax.xaxis
    for t in which.get_minor_ticks():
        t.tick1line.set_visible(False)
        t.tick2line.set_visible(False)
    ax.tick_params(axis=axis, which="minor", pad=14 if axis == "x" else 24,
                   labelsize="small", labelcolor="0.3")


def spy(C, *, ax=None, input_shape=None, output_shape=None, mode="auto", max_bins=400,
        title=None, colorbar=True, annotate="auto", cmap=None):
    """Spy plot of a matrix, drawn to show the structure of a convolution matrix.

    Parameters
    ----------
    C : (M, N) scipy.sparse array or matrix, or 2D array_like
    ax : matplotlib Axes, optional
        Drawn into; a new figure when omitted.
    input_shape : (C_in, *spatial) tuple of int, optional
        What a column indexes (one input sample); ``prod(input_shape)`` must be ``N``. Adds
        lines between input channels and between image rows, and channel ticks.
    output_shape : (C_out, *out_spatial) tuple of int, optional
        What a row indexes; ``prod(output_shape)`` must be ``M``.
    mode : {'auto', 'values', 'markers', 'density'}, default 'auto'
        ``'values'``: every stored entry coloured by its value (diverging colormap, white
        where nothing is stored); ``'markers'``: one marker per nonzero; ``'density'``: a 2D
        histogram of the nonzeros on at most ``max_bins x max_bins`` cells (log colour), which
        draws a 100k x 100k matrix in about the time of counting its nonzeros. ``'auto'``
        picks values up to 250k entries, markers up to 20k nonzeros, density beyond.
    max_bins : int, default 400
        Cells along the longer side in ``'density'`` mode.
    title : str, optional
        Default: shape, nonzeros and density.
    colorbar : bool, default True
    annotate : bool or 'auto', default 'auto'
        Write each value in its cell (``'values'`` mode; 'auto': up to 400 entries).
    cmap : str or Colormap, optional

    Returns
    -------
    ax : matplotlib Axes

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
    A = v.check_matrix(C, "C")
    m, n = A.shape
    in_shape = v.check_index_shape("input_shape", input_shape, n, "columns")
    out_shape = v.check_index_shape("output_shape", output_shape, m, "rows")
    mode = v.check_choice("mode", mode, ("auto", "values", "markers", "density"))
    max_bins = v.positive_int("max_bins", max_bins)
    if not A.has_canonical_format:  # sort and merge on a copy, never the caller's arrays
        A = A.copy()
        A.sum_duplicates()
    nnz = A.nnz
    if mode == "auto":
        mode = "values" if m * n <= 250_000 else "markers" if nnz <= 20_000 else "density"
    ax = _new_axes(ax)
    rows = np.repeat(np.arange(m), np.diff(A.indptr))
    cols = A.indices
    extent = (-0.5, n - 0.5, m - 0.5, -0.5)
    if mode == "values":
        dense = np.ma.masked_array(np.zeros((m, n), dtype=np.float64), mask=True)
        vals = A.data.real if np.iscomplexobj(A.data) else A.data
        dense[rows, cols] = vals
        vmax = float(np.abs(vals).max()) if nnz else 1.0
        vmax = vmax or 1.0
        im = ax.imshow(dense, cmap=cmap or _DIVERGING, vmin=-vmax, vmax=vmax,
                       interpolation="nearest", extent=extent,
                       aspect="equal" if max(m, n) <= 8 * min(m, n) else "auto")
        if annotate == "auto":
            annotate = m * n <= 400
        if annotate:
            for r, c, val in zip(rows, cols, vals):
                ax.text(c, r, f"{val:.3g}", ha="center", va="center", fontsize="x-small",
                        color="white" if abs(val) > 0.6 * vmax else "black")
        if colorbar:
            ax.figure.colorbar(im, ax=ax, shrink=0.8, label="value")
    elif mode == "markers":
        size = max(0.5, min(6.0, 300.0 / max(m, n)))
        ax.plot(cols, rows, linestyle="none", marker="s", markersize=size,
                markeredgewidth=0, color="tab:blue")
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
        ax.set_aspect("equal" if max(m, n) <= 8 * min(m, n) else "auto")
    else:
        from matplotlib.colors import LogNorm

        b = max(1, ceil(max(m, n) / max_bins))  # square cells of b x b entries
        nr, nc = ceil(m / b), ceil(n / b)
        counts = np.bincount((rows // b) * nc + cols // b, minlength=nr * nc).reshape(nr, nc)
        img = np.ma.masked_equal(counts, 0)
        im = ax.imshow(img, cmap=cmap or "viridis", norm=LogNorm(vmin=1, vmax=max(2, counts.max())),
                       interpolation="nearest", extent=(-0.5, nc * b - 0.5, nr * b - 0.5, -0.5),
                       aspect="equal" if max(m, n) <= 8 * min(m, n) else "auto")
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
        if colorbar:
            ax.figure.colorbar(im, ax=ax, shrink=0.8, label=f"nonzeros per {b}x{b} cell")
    if out_shape is not None:
        _block_lines(ax, out_shape, n, "y")
        _channel_ticks(ax, out_shape, "y", "c")
    if in_shape is not None:
        _block_lines(ax, in_shape, m, "x")
        _channel_ticks(ax, in_shape, "x", "c")
    ax.set_ylabel(_index_label(out_shape, "output", "y"))
    ax.set_xlabel(_index_label(in_shape, "input", "x"))
    if title is None:
        title = f"{m:,} x {n:,}, {nnz:,} nonzeros (density {100 * nnz / (m * n):.3g}%)"
    ax.set_title(title)
    return ax


# --------------------------------------------------------------------------- fields


def _flat_index(name, index, shape) -> int:
    """A flat C-order index from an int or a (channel, *position) tuple, checked."""
    if index is None:
        return int(np.ravel_multi_index((0, *(s // 2 for s in shape[1:])), shape))
    return v.check_flat_index(name, index, shape)


def _show_maps(fig, gs_row, maps, kind: str, letter: str, vmax, cmap):
    """One image per channel of ``maps`` (C, *spatial); returns the last image."""
    im = None
    for c, img in enumerate(maps):
        ax = fig.add_subplot(gs_row[c])
        if img.ndim == 1:
            img = img[None, :]
        elif img.ndim == 3:  # 3D: the depth slice with the most weight
            d = int(np.abs(img).sum(axis=(1, 2)).argmax())
            img = img[d]
            ax.set_xlabel(f"depth slice {d}")
        im = ax.imshow(img, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{kind} channel {c}", fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    return im


def field_figure(C, input_shape, output_shape, *, output_index=None, input_index=None,
                 max_channels=4, cmap=None):
    """Receptive field (a row of C on the input) and projective field (a column on the output).

    Row ``r`` of ``C`` holds the weights with which output ``y.flat[r]`` reads the input: put
    back into the input's shape, it is that output's receptive field (the kernel, placed,
    clipped or wrapped by padding). Column ``j`` holds where input ``x.flat[j]`` is sent: put
    back into the output's shape, it is that input's projective field (the flipped kernel,
    thinned by the stride) -- the transposed convolution of a unit impulse.

    Parameters
    ----------
    C : (M, N) scipy.sparse array, e.g. from :func:`toeplitz_conv.conv_matrix`
    input_shape : (C_in, *spatial) tuple of int
    output_shape : (C_out, *out_spatial) tuple of int
    output_index, input_index : int or tuple (channel, *position), optional
        The output whose row and the input whose column are shown (flat index or
        multi-index); default: the centre of channel 0.
    max_channels : int, default 4
        Channels shown per row of panels.
    cmap : str or Colormap, optional

    Returns
    -------
    fig : matplotlib Figure

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, toeplitz_conv as tc
    >>> C = tc.conv_matrix(np.random.rand(2, 1, 3, 3), (1, 6, 6), stride=2, padding=1)
    >>> fig = field_figure(C, (1, 6, 6), (2, 3, 3), output_index=(1, 0, 0))
    >>> len(fig.axes)  # one input channel, two output channels, the colour bar
    4
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    A = v.check_matrix(C, "C").tocsr()
    m, n = A.shape
    in_shape = v.check_index_shape("input_shape", input_shape, n, "columns")
    out_shape = v.check_index_shape("output_shape", output_shape, m, "rows")
    if in_shape is None or out_shape is None:
        raise TypeError("field_figure needs input_shape and output_shape; got None.")
    max_channels = v.positive_int("max_channels", max_channels)
    r = _flat_index("output_index", output_index, out_shape)
    j = _flat_index("input_index", input_index, in_shape)
    row = A[[r], :].toarray().reshape(in_shape)[:max_channels]
    col = A[:, [j]].toarray().reshape(out_shape)[:max_channels]
    cols = max(len(row), len(col))
    fig = _new_figure((2.4 * cols + 1.2, 5.4))
    gs = fig.add_gridspec(2, cols)
    cmap = cmap or _DIVERGING
    vmax = float(max(np.abs(row).max(), np.abs(col).max())) or 1.0
    _show_maps(fig, [gs[0, c] for c in range(len(row))], row, "input", "x", vmax, cmap)
    im = _show_maps(fig, [gs[1, c] for c in range(len(col))], col, "output", "y", vmax, cmap)
    ro = tuple(int(i) for i in np.unravel_index(r, out_shape))
    jo = tuple(int(i) for i in np.unravel_index(j, in_shape))
    fig.suptitle(f"top: receptive field of y{list(ro)} = row {r} of C on the input\n"
                 f"bottom: projective field of x{list(jo)} = column {j} of C on the output",
                 fontsize="medium")
    fig.colorbar(im, ax=fig.axes, shrink=0.7, label="weight")
    return fig


# --------------------------------------------------------------------------- gradients


def gradient_figure(x, weight, *, grad_output=None, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", out_channel=0, in_channel=0, cmap=None):
    """Four panels: input image, kernel, weight gradient and input gradient of a conv layer.

    The layer is ``y = C(W) @ x``; the loss is ``L = ||y||^2 / 2`` (so ``dL/dy = y``) unless
    ``grad_output`` gives ``dL/dy``. The input gradient is ``C.T @ dL/dy`` (the transposed
    convolution); the weight gradient comes from the same triples,
    ``dL/dW.flat[tap] = sum dL/dy[row] * x[col]``.

    Parameters
    ----------
    x : (C_in, H, W) or (H, W) array_like, or (C_in, L) for a 1D layer
    weight : (C_out, C_in/groups, kH, kW) or (kH, kW) array_like, or (C_out, C_in/groups, k)
        A 1D layer is drawn as images of height 1.
    grad_output : (C_out, *out_spatial) array_like, optional
    stride, padding, dilation, groups, padding_mode : as :func:`toeplitz_conv.conv_matrix`
    out_channel, in_channel : int, default 0
        The kernel ``W[out_channel, in_channel]`` shown, with its input channel (within the
        group of ``out_channel``).
    cmap : str or Colormap, optional

    Returns
    -------
    fig : matplotlib Figure
        ``fig.arrays`` holds the drawn arrays (``x``, ``weight``, ``dW``, ``dx``, ``y``,
        ``grad_output``) for checking.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np
    >>> fig = gradient_figure(np.random.rand(6, 6), np.random.rand(3, 3), padding=1)
    >>> [ax.get_title().split(" ")[0] for ax in fig.axes[:4]]
    ['input', 'kernel', 'weight', 'input']
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    xa = v.as_array(x, "x").astype(np.float64, copy=False)
    wa = v.as_array(weight, "weight").astype(np.float64, copy=False)
    given = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    if wa.ndim == 2 and xa.ndim == 2:
        xa, wa = xa[None], wa[None, None]
    if wa.ndim == 3:  # 1D: images of height 1
        v.check_gradient_figure_shapes(xa, wa, 2)
        xa, wa = xa[:, None, :], wa[:, :, None, :]
        stride, padding, dilation = _as_2d(stride, 1), _as_2d(padding, 0), _as_2d(dilation, 1)
    v.check_gradient_figure_shapes(xa, wa, 3)
    C = conv_matrix(wa, xa.shape, stride=stride, padding=padding, dilation=dilation,
                    groups=groups, padding_mode=padding_mode)
    g = conv_geometry(wa.shape, xa.shape, stride=stride, padding=padding, dilation=dilation,
                      groups=groups, padding_mode=padding_mode)
    y = (C @ xa.ravel()).reshape(g.out_shape)
    if grad_output is None:
        delta, loss = y, "loss L = ||y||²/2, so dL/dy = y"
    else:
        delta = v.as_array(grad_output, "grad_output").astype(np.float64, copy=False)
        delta = v.batched(delta.reshape(g.out_shape) if delta.size == prod(g.out_shape) else delta,
                          "grad_output", g.out_channels, g.out_spatial)[0]
        loss = "dL/dy given"
    dx = (C.T @ delta.ravel()).reshape(xa.shape)
    dW = conv_weight_grad(xa, delta, wa.shape, stride=stride, padding=padding, dilation=dilation,
                          groups=groups, padding_mode=padding_mode)
    co = v.check_channel("out_channel", out_channel, wa.shape[0])
    ci_local = v.check_channel("in_channel", in_channel, wa.shape[1])
    ci = (co // (wa.shape[0] // g.groups)) * wa.shape[1] + ci_local
    panels = [
        (xa[ci], f"input x[{ci}]"),
        (wa[co, ci_local], f"kernel W[{co}, {ci_local}]"),
        (dW[co, ci_local], f"weight gradient dL/dW[{co}, {ci_local}]"),
        (dx[ci], f"input gradient (Cᵀδ)[{ci}]"),
    ]
    fig = _new_figure((13.0, 3.6))
    axes = fig.subplots(1, 4)
    for ax, (img, label) in zip(axes, panels):
        vmax = float(np.abs(img).max()) or 1.0
        im = ax.imshow(img, cmap=cmap or _DIVERGING, vmin=-vmax, vmax=vmax,
                       interpolation="nearest", aspect="equal" if img.shape[0] > 1 else "auto")
        ax.set_title(label, fontsize="medium")
        if img.shape[0] * img.shape[1] <= 49:
            for (r, c), val in np.ndenumerate(img):
                val = 0.0 if abs(val) < 1e-9 * vmax else val  # rounding noise reads as 0
                ax.text(c, r, f"{val:.3g}", ha="center", va="center", fontsize="x-small",
                        color="white" if abs(val) > 0.6 * vmax else "black")
        ax.set_xticks(range(0, img.shape[1], max(1, img.shape[1] // 4)))
        ax.set_yticks(range(0, img.shape[0], max(1, img.shape[0] // 4)))
        fig.colorbar(im, ax=ax, shrink=0.75)
    opts = [f"{k}={val!r}" for k, val in given.items()
            if not (val == 0 and k == "padding") and val != 1]
    if padding_mode != "zeros":
        opts.append(f"padding_mode={padding_mode!r}")
    fig.suptitle(f"conv layer y = C x, kernel {tuple(wa.shape)}, input {tuple(xa.shape)}"
                 f"{', ' + ', '.join(opts) if opts else ''}; {loss}", fontsize="medium")
    fig.arrays = {"x": xa, "weight": wa, "y": y, "grad_output": delta, "dW": dW, "dx": dx}
    return fig


def _as_2d(value, pad: int):
    """A 1D stride/padding/dilation as the 2D one of a height-1 image (``pad`` for the height)."""
    if isinstance(value, str):
        return value
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return (pad, *items) if len(items) == 1 else value


# --------------------------------------------------------------------------- networks


def _network_layers(network, names):
    """[(name, matrix, in_shape, out_shape)] from a Network or a sequence of matrices."""
    items = getattr(network, "layers", network)
    try:
        items = list(items)
    except TypeError:
        raise TypeError(
            f"network must be a compiled Network (with .layers) or a sequence of sparse "
            f"matrices; got {type(network).__name__}."
        ) from None
    out = []
    for k, item in enumerate(items):
        name, in_shape, out_shape = None, None, None
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, mat = item
        elif sp.issparse(item) or isinstance(item, np.ndarray):
            mat = item
        else:
            if getattr(item, "kind", None) == "Flatten" or type(item).__name__ == "Reshape":
                continue  # a reshape: an identity matrix, nothing to see
            mat = getattr(item, "matrix", None)
            if mat is None:
                continue  # a nonlinearity: no matrix to draw
            kind = getattr(item, "kind", type(item).__name__)
            name = f"{item.name}: {kind}" if getattr(item, "name", "") else kind
            if isinstance(mat, tuple):  # max pooling: one selection matrix per sample
                mat, name = mat[0], f"{name} (sample 0)"
            in_shape = getattr(item, "in_shape", None)
            out_shape = getattr(item, "out_shape", None)
        out.append([name or f"layer {k}", mat, in_shape, out_shape])
    if names is not None:
        names = list(names)
        if len(names) != len(out):
            raise ValueError(
                f"names must give one name per drawn layer ({len(out)}); got {len(names)} names."
            )
        for item, nm in zip(out, names):
            item[0] = str(nm)
    if not out:
        raise ValueError("network has no layer with a matrix to draw.")
    return out


def network_figure(network, *, names=None, mode="auto", max_bins=200):
    """Each layer's matrix side by side, with its shape: a CNN read as a chain of matrices.

    Parameters
    ----------
    network : Network (from :func:`toeplitz_conv.compile`) or sequence
        A compiled network (its layers with a ``.matrix``; nonlinearities are skipped), or a
        sequence of sparse matrices or ``(name, matrix)`` pairs.
    names : sequence of str, optional
        Panel titles, one per drawn layer.
    mode, max_bins : as :func:`spy`

    Returns
    -------
    fig : matplotlib Figure

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, toeplitz_conv as tc
    >>> C1 = tc.conv_matrix(np.random.rand(2, 1, 3, 3), (1, 8, 8), padding=1)
    >>> C2 = tc.conv_matrix(np.random.rand(4, 2, 3, 3), (2, 8, 8), stride=2, padding=1)
    >>> fig = network_figure([("conv1", C1), ("conv2", C2)])
    >>> [ax.get_title().splitlines()[0] for ax in fig.axes if ax.get_title()]
    ['conv1', 'conv2']
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    layers = _network_layers(network, names)
    mats = [v.check_matrix(mat, f"matrix of {name}") for name, mat, _, _ in layers]
    widths = [min(2.5, max(0.5, A.shape[1] / max(A.shape[0], 1))) for A in mats]
    fig = _new_figure((min(4.0 * len(layers), 22.0), 4.6))
    axes = fig.subplots(1, len(layers), width_ratios=widths, squeeze=False)[0]
    for ax, (name, _, in_shape, out_shape), A in zip(axes, layers, mats):
        try:
            in_shape = v.check_index_shape("input_shape", in_shape, A.shape[1], "columns")
            out_shape = v.check_index_shape("output_shape", out_shape, A.shape[0], "rows")
        except (TypeError, ValueError):
            in_shape = out_shape = None
        spy(A, ax=ax, mode=mode, max_bins=max_bins, colorbar=False, annotate=False,
            title=f"{name}\n{A.shape[0]:,} x {A.shape[1]:,}, {A.nnz if sp.issparse(A) else np.count_nonzero(A):,} nnz",
            input_shape=in_shape, output_shape=out_shape)
        ax.set_xlabel("in" if in_shape is None else f"in {tuple(in_shape)}")
        ax.set_ylabel("out" if out_shape is None else f"out {tuple(out_shape)}")
        ax.tick_params(labelsize="x-small")
    fig.suptitle("the network as a chain of matrices (read right to left: y = ... C2 σ(C1 x))",
                 fontsize="medium")
    return fig


# --------------------------------------------------------------------------- symbols


def weight_symbols(weight_shape, name="w"):
    """An object array of sympy symbols shaped like the weight: ``w_00``, ``w_01``, ...

    A single-channel kernel is indexed by position only (``w_00`` .. ``w_22`` for 3x3, as in
    the convolution-arithmetic guide); otherwise by ``(c_out, c_in, *position)``. Indices are
    written together while they are single digits (``w_0121``), with commas past.

    Examples
    --------
    >>> weight_symbols((1, 1, 2, 2))
    array([[[[w_00, w_01],
             [w_10, w_11]]]], dtype=object)
    """
    import sympy

    shape = v.check_weight_shape(weight_shape, "(C_out, C_in/groups, *kernel)")
    single = shape[0] == 1 and shape[1] == 1
    sep = "" if max(shape[2:] if single else shape) <= 10 else ","
    out = np.empty(shape, dtype=object)
    for idx in itertools.product(*(range(s) for s in shape)):
        sub = idx[2:] if single else idx
        out[idx] = sympy.Symbol(f"{name}_{sep.join(map(str, sub))}")
    return out


def symbolic_conv_matrix(weight_shape, input_shape, *, stride=1, padding=0, dilation=1, groups=1,
                         padding_mode="zeros", name="w"):
    """The convolution matrix with the kernel's entries as symbols (sympy), for small layers.

    Read off the same ``(row, col, tap)`` triples as :func:`toeplitz_conv.conv_matrix`:
    ``C[row, col] += w.flat[tap]``. The 4x16 matrix of a 3x3 kernel on a 4x4 input is the
    example drawn in Dumoulin & Visin's convolution-arithmetic guide. In a notebook the result
    displays as LaTeX; ``sympy.latex(M)`` gives the source.

    Parameters
    ----------
    weight_shape : (C_out, C_in/groups, *kernel) tuple of int
    input_shape : (C_in, *spatial) tuple of int
    stride, padding, dilation, groups, padding_mode : as :func:`toeplitz_conv.conv_matrix`
    name : str, default 'w'

    Returns
    -------
    M : sympy.Matrix, (C_out * prod(out_spatial), C_in * prod(in_spatial))

    Examples
    --------
    >>> M = symbolic_conv_matrix((1, 1, 3, 3), (1, 4, 4))
    >>> M.shape
    (4, 16)
    >>> M[0, :6]
    Matrix([[w_00, w_01, w_02, 0, w_10, w_11]])
    >>> symbolic_conv_matrix((1, 1, 2), (1, 3), padding=1, padding_mode="circular")
    Matrix([
    [w_1,   0, w_0],
    [w_0, w_1,   0],
    [  0, w_0, w_1],
    [w_1,   0, w_0]])
    """
    import sympy

    g = conv_geometry(weight_shape, input_shape, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, padding_mode=padding_mode)
    m, n = g.shape
    v.check_symbolic_size(m, n)
    symbols = weight_symbols(g.weight_shape, name).reshape(-1)
    M = sympy.zeros(m, n)
    for r, c, t in zip(*conv_pattern(g).triples()):
        M[int(r), int(c)] += symbols[int(t)]
    return M


def symbolic_conv_transpose_matrix(weight_shape, input_shape, *, stride=1, padding=0,
                                   output_padding=0, dilation=1, groups=1, name="w"):
    """The transposed convolution's matrix with symbols, from its own definition (a scatter).

    Written independently of the triples, as the transposed convolution is usually defined:
    each input entry ``x[ci, o]`` adds ``w[ci, co, k] * x[ci, o]`` to the output at
    ``o * stride - padding + k * dilation``. So
    ``symbolic_conv_matrix(w.shape, out_shape, ...).T == symbolic_conv_transpose_matrix(...)``
    is the statement "the transposed convolution is the transpose", entry by entry.

    Parameters
    ----------
    weight_shape : (C_in, C_out/groups, *kernel) tuple of int
        torch's transposed-convolution layout.
    input_shape : (C_in, *spatial) tuple of int
    stride, padding, output_padding, dilation, groups : as ``conv_transpose2d``
    name : str, default 'w'

    Returns
    -------
    M : sympy.Matrix, (C_out * prod(out_spatial), C_in * prod(in_spatial))

    Examples
    --------
    >>> T = symbolic_conv_transpose_matrix((1, 1, 3, 3), (1, 2, 2))
    >>> T == symbolic_conv_matrix((1, 1, 3, 3), (1, 4, 4)).T
    True
    """
    import sympy

    g = conv_transpose_geometry(weight_shape, input_shape, stride=stride, padding=padding,
                                output_padding=output_padding, dilation=dilation, groups=groups)
    # g is the convolution whose transpose this is: its input is our output
    out_shape, in_shape = g.in_shape, g.out_shape
    m, n = prod(out_shape), prod(in_shape)
    v.check_symbolic_size(m, n)
    w = weight_symbols(g.weight_shape, name)
    cin_g, cout_g = in_shape[0] // g.groups, out_shape[0] // g.groups
    M = sympy.zeros(m, n)
    for ci, o in itertools.product(range(in_shape[0]), itertools.product(*map(range, in_shape[1:]))):
        j = int(np.ravel_multi_index((ci, *o), in_shape))
        grp = ci // cin_g
        for co_local, k in itertools.product(range(cout_g), itertools.product(*map(range, g.kernel))):
            pos = tuple(oi * s - p + ki * d for oi, s, p, ki, d in
                        zip(o, g.stride, g.pad_lo, k, g.dilation))
            if all(0 <= q < size for q, size in zip(pos, out_shape[1:])):
                i = int(np.ravel_multi_index((grp * cout_g + co_local, *pos), out_shape))
                M[i, j] += w[(ci, co_local, *k)]
    return M


def symbolic_figure(M, *, ax=None, title=None):
    """Draw a (small) symbolic matrix as a grid of cells, each entry typeset (mathtext).

    Parameters
    ----------
    M : sympy.Matrix
        E.g. from :func:`symbolic_conv_matrix`.
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> ax = symbolic_figure(symbolic_conv_matrix((1, 1, 3, 3), (1, 4, 4)))
    >>> len(ax.texts)  # the 36 stored entries
    36
    >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    import sympy

    m, n = M.shape
    v.check_symbolic_size(m, n)
    ax = _new_axes(ax, figsize=(0.62 * n + 0.6, 0.5 * m + 0.8))
    filled = np.zeros((m, n))
    for (r, c), entry in np.ndenumerate(np.array(M.tolist(), dtype=object)):
        if entry != 0:
            filled[r, c] = 1
            ax.text(c, r, f"${sympy.latex(entry)}$", ha="center", va="center", fontsize="small")
    ax.imshow(filled, cmap="Blues", vmin=0, vmax=4, interpolation="nearest", aspect="equal")
    ax.set_xticks(np.arange(-0.5, n), minor=True)
    ax.set_yticks(np.arange(-0.5, m), minor=True)
    ax.grid(which="minor", color="0.75", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xticks(range(n))
    ax.set_yticks(range(m))
    ax.tick_params(labelsize="x-small")
    ax.set_xlabel("column = input index")
    ax.set_ylabel("row = output index")
    if title:
        ax.set_title(title)
    return ax

