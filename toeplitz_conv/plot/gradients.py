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
from .style import DIVERGING, new_figure

if TYPE_CHECKING:
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
    stride, padding, dilation, groups, padding_mode
        As in :func:`toeplitz_conv.conv_matrix`.
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
    panels = [
        (xa[ci], f"input x[{ci}]"),
        (wa[co, ci_local], f"kernel W[{co}, {ci_local}]"),
        (dW[co, ci_local], f"weight gradient dL/dW[{co}, {ci_local}]"),
        (dx[ci], f"input gradient (Cᵀδ)[{ci}]"),
    ]
    fig = new_figure((13.0, 3.6))
    axes = fig.subplots(1, 4)
    for ax, (img, label) in zip(axes, panels):
        vmax = float(np.abs(img).max()) or 1.0
        im = ax.imshow(img, cmap=cmap or DIVERGING, vmin=-vmax, vmax=vmax,
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
    fig.arrays = {  # type: ignore[attr-defined]  # an extra attribute of this figure, documented
        "x": xa, "weight": wa, "y": y, "grad_output": delta, "dW": dW, "dx": dx}
    return fig


def _as_2d(value: _V, pad: int) -> _V | tuple[int, ...]:
    """A 1D stride/padding/dilation as the 2D one of a height-1 image (``pad`` for the height)."""
    if isinstance(value, str):
        return value
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return (pad, *items) if len(items) == 1 else value
