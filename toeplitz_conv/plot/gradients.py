"""The gradients of a convolution layer in one figure: input, kernel, weight gradient and
input gradient, all read from the same ``(row, col, tap)`` triples."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import numpy.typing as npt

from .._args import as_array, batched, is_int
from ..conv import conv_matrix, conv_weight_grad
from ..geometry import conv_geometry
from .matrices import check_real
from .style import DIVERGING, MIN_FONT, MIN_WIDTH, TITLE_FONT, new_figure, text_fits

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

_V = TypeVar("_V")


def _check_channel(name: str, value: object, count: int) -> int:
    if not is_int(value):
        raise TypeError(f"{name} must be an int in [0, {count}); got {value!r}.")
    if not 0 <= value < count:
        raise ValueError(f"{name} must be an int in [0, {count}); got {value!r}.")
    return int(value)


def _check_shapes(x: np.ndarray, weight: np.ndarray, ndim: int) -> None:
    """gradient_figure draws 1D or 2D layers: ``x`` has ``ndim`` axes, the weight ``ndim + 1``."""
    if weight.ndim != ndim + 1 or x.ndim != ndim:
        raise ValueError(
            "gradient_figure draws a 2D layer (x (C_in, H, W) or (H, W), weight "
            "(C_out, C_in/groups, kH, kW) or (kH, kW)) or a 1D one (x (C_in, L), weight "
            f"(C_out, C_in/groups, k)); got x.shape={tuple(x.shape)}, weight.shape={tuple(weight.shape)}."
        )


def gradient_figure(x: npt.ArrayLike, weight: npt.ArrayLike, *,
                    grad_output: npt.ArrayLike | None = None, stride: int | Sequence[int] = 1,
                    padding: int | Sequence[int] | str = 0, dilation: int | Sequence[int] = 1,
                    groups: int = 1, padding_mode: str = "zeros", out_channel: int = 0,
                    in_channel: int = 0, cmap: str | Colormap | None = None) -> Figure:
    """Six panels: input, kernel, output; under each, its gradient (dL/dx, dL/dW, δ = dL/dy).

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
    stride, padding, dilation, groups, padding_mode
        As in :func:`toeplitz_conv.conv_matrix`.
    out_channel, in_channel : int, default 0
        The kernel ``W[out_channel, in_channel]`` shown, with its input channel (within the
        group of ``out_channel``).
    cmap : str or Colormap, optional

    Returns
    -------
    fig : matplotlib Figure
        Top row: ``x[in_channel]``, ``W[out_channel, in_channel]``, ``y[out_channel]``;
        bottom row, each under its own: ``dL/dx``, ``dL/dW`` and ``δ = dL/dy``, every value
        written in its cell where it fits at 14 pt (the colour bars give the rest); the
        axes in ``fig.axes`` are x, W, dW, dx, y, δ, then the colour bars. ``fig.arrays`` holds the drawn arrays (``x``, ``weight``, ``dW``, ``dx``, ``y``,
        ``grad_output``) for checking.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np
    >>> fig = gradient_figure(np.random.rand(6, 6), np.random.rand(3, 3), padding=1)
    >>> [ax.get_title().split()[0] for ax in fig.axes[:6]]
    ['input', 'kernel', 'weight', 'input', 'output', 'δ']
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    xa, wa = as_array(x, "x"), as_array(weight, "weight")
    check_real(xa, "x")
    check_real(wa, "weight")
    xa, wa = xa.astype(np.float64, copy=False), wa.astype(np.float64, copy=False)
    given = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    if wa.ndim == 2 and xa.ndim == 2:
        xa, wa = xa[None], wa[None, None]
    if wa.ndim == 3:  # 1D: images of height 1
        _check_shapes(xa, wa, 2)
        xa, wa = xa[:, None, :], wa[:, :, None, :]
        stride, padding, dilation = _as_2d(stride, 1), _as_2d(padding, 0), _as_2d(dilation, 1)
    _check_shapes(xa, wa, 3)
    C = conv_matrix(wa, xa.shape, stride=stride, padding=padding, dilation=dilation,
                    groups=groups, padding_mode=padding_mode)
    geom = conv_geometry(wa.shape, xa.shape, stride=stride, padding=padding, dilation=dilation,
                      groups=groups, padding_mode=padding_mode)
    y = (C @ xa.ravel()).reshape(geom.out_shape)
    if grad_output is None:
        delta, loss = y, "loss L = ||y||²/2, so dL/dy = y"
    else:
        delta = as_array(grad_output, "grad_output")
        check_real(delta, "grad_output")
        delta = delta.astype(np.float64, copy=False)
        delta = batched(delta.reshape(geom.out_shape) if delta.size == prod(geom.out_shape) else delta,
                          "grad_output", geom.out_channels, geom.out_spatial)[0]
        loss = "dL/dy given"
    dx = (C.T @ delta.ravel()).reshape(xa.shape)
    dW = conv_weight_grad(xa, delta, wa.shape, stride=stride, padding=padding, dilation=dilation,
                          groups=groups, padding_mode=padding_mode)
    co = _check_channel("out_channel", out_channel, wa.shape[0])
    ci_local = _check_channel("in_channel", in_channel, wa.shape[1])
    ci = (co // geom.cout_per_group) * wa.shape[1] + ci_local
    yo = y[co]
    panels = [  # (array, title, grid cell): each gradient under what it is the gradient of
        (xa[ci], f"input\nx({ci}, i, j)", (0, 0)),
        (wa[co, ci_local], f"kernel\nW({co}, {ci_local}, i, j)", (0, 1)),
        (dW[co, ci_local], f"weight gradient\ndL/dW({co}, {ci_local}, i, j)", (1, 1)),
        (dx[ci], f"input gradient\ndL/dx({ci}, i, j) = Cᵀδ", (1, 0)),
        (yo, f"output\ny({co}, i, j) = C x", (0, 2)),
        (delta[co], f"δ = dL/dy\n({co}, i, j)", (1, 2)),
    ]
    cols = [max(xa.shape[2], 3), max(wa.shape[3], 3), max(yo.shape[1], 3)]  # cells across
    rows = [max(xa.shape[1], 1), max(wa.shape[2], 1), max(yo.shape[0], 1)]
    width, cells = _cell_sizes(cols, rows)
    fig = new_figure((width, max(2 * max(r * c for r, c in zip(rows, cells)) + 2 * 1.7 + 1.1, 5.0)))
    gs = fig.add_gridspec(2, 3, width_ratios=[n * c + _PANEL_EXTRA for n, c in zip(cols, cells)])
    axes = [fig.add_subplot(gs[pos]) for _, _, pos in panels]
    for ax, (img, label, pos) in zip(axes, panels):
        _panel(fig, ax, img, label, cells[pos[1]] * 72, cmap or DIVERGING)
    opts = [f"{k}={val!r}" for k, val in given.items()
            if not (val == 0 and k == "padding") and val != 1]
    if padding_mode != "zeros":
        opts.append(f"padding_mode={padding_mode!r}")
    fig.suptitle(f"conv layer y = C x, kernel {tuple(wa.shape)}, input {tuple(xa.shape)}"
                 f"{', ' + ', '.join(opts) if opts else ''};\n{loss}", fontsize=TITLE_FONT)
    fig.arrays = {  # type: ignore[attr-defined]  # an extra attribute of this figure, documented
        "x": xa, "weight": wa, "y": y, "grad_output": delta, "dW": dW, "dx": dx}
    return fig


#: Inches a panel needs besides its image: the colour bar, its ticks, the y labels.
_PANEL_EXTRA = 1.8


def _cell_sizes(cols: list[int], rows: list[int]) -> tuple[float, list[float]]:
    """The figure's width and the inches per cell in each column of panels: small arrays (a
    kernel) get cells that hold a number at 14 pt (0.8 inch), large ones share the rest; the
    figure grows from 12.8 up to 16 inches (where 14 pt is still 1.2 % of its width)."""
    extra = 0.4 + _PANEL_EXTRA * len(cols)
    small = [n <= 6 for n in cols]
    fixed = sum(0.8 * n for n, sm in zip(cols, small) if sm)
    big = sum(n for n, sm in zip(cols, small) if not sm)
    width = min(max(MIN_WIDTH, extra + fixed + 0.3 * big), 16.0)
    share = (width - extra - fixed) / big if big else 0.8
    if share < 0.1:  # too little left for the large arrays: every column proportional
        share = (width - extra) / sum(cols)
        return width, [min(share, 4.5 / r) for r in rows]
    return width, [min(0.8 if sm else share, 0.8, 4.5 / r) for sm, r in zip(small, rows)]


def _panel(fig: Figure, ax: Axes, img: np.ndarray, label: str, cell_pt: float, cmap: str | Colormap) -> None:
    """One array as an image in its own symmetric colour scale (white at 0), with its colour
    bar, 0-based (i, j) ticks, and each value written in its cell when it fits at 14 pt."""
    from matplotlib.ticker import MaxNLocator

    vmax = float(np.abs(img).max()) or 1.0
    im = ax.imshow(img, cmap=cmap, vmin=-vmax, vmax=vmax, interpolation="nearest", aspect="equal")
    ax.set_title(label, fontsize=MIN_FONT)
    shown = np.where(np.abs(img) < 1e-9 * vmax, 0.0, img)  # rounding noise reads as 0
    texts = [f"{v:.2g}" for v in shown.ravel()]
    if img.size <= 100 and text_fits(0.9 * cell_pt, max(texts, key=len)):
        for (r, c), val in np.ndenumerate(shown):
            ax.text(c, r, f"{val:.2g}", ha="center", va="center", fontsize=MIN_FONT,
                    color="white" if abs(val) > 0.6 * vmax else "black")
    h, w = img.shape
    for n, setter in ((w, ax.set_xticks), (h, ax.set_yticks)):
        step = max(1, -(-n // 5))
        setter(range(0, n, step))
    ax.set_xlabel("j", fontsize=MIN_FONT, labelpad=1)
    if h > 1:
        ax.set_ylabel("i", fontsize=MIN_FONT, labelpad=4)
    else:
        ax.set_yticks([])
    ax.tick_params(labelsize=MIN_FONT)
    bar = fig.colorbar(im, ax=ax, shrink=0.85, aspect=15, fraction=0.12)
    bar.ax.tick_params(labelsize=MIN_FONT)
    bar.locator = MaxNLocator(4)
    bar.update_ticks()


def _as_2d(value: _V, pad: int) -> _V | tuple[int, ...]:
    """A 1D stride/padding/dilation as the 2D one of a height-1 image (``pad`` for the height)."""
    if isinstance(value, str):
        return value
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return (pad, *items) if len(items) == 1 else value
