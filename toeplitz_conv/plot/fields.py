"""Receptive and projective fields: a row of ``C`` put back on the input (what one output
reads) and a column of ``C`` put back on the output (where one input goes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from .._args import as_tuple, is_int, positive_int
from .matrices import check_index_shape, check_matrix, check_real
from .style import DIVERGING, MIN_FONT, MIN_WIDTH, TITLE_FONT, new_figure, readable

if TYPE_CHECKING:
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure
    from matplotlib.gridspec import SubplotSpec
    from matplotlib.image import AxesImage


def _check_flat_index(name: str, index: object, shape: tuple[int, ...]) -> int:
    """A flat C-order index from an int or a (channel, *position) tuple inside ``shape``."""
    size = int(np.prod(shape))
    if is_int(index):
        if not 0 <= index < size:
            raise ValueError(f"{name} must be in [0, {size}) for shape {tuple(shape)}; got {index}.")
        return int(index)
    items = as_tuple(index, name, "an int or a tuple (channel, *position)")
    if len(items) != len(shape) or not all(is_int(i) and 0 <= i < s for i, s in zip(items, shape)):
        raise ValueError(
            f"{name} must be a flat index or a tuple of {len(shape)} indices inside shape "
            f"{tuple(shape)}; got {index!r}."
        )
    return int(np.ravel_multi_index(items, shape))


def _flat_index(name: str, index: object, shape: tuple[int, ...]) -> int:
    """A flat C-order index from an int or a (channel, *position) tuple, checked."""
    if index is None:
        return int(np.ravel_multi_index((0, *(s // 2 for s in shape[1:])), shape))
    return _check_flat_index(name, index, shape)


def _show_maps(fig: Figure, gs_row: Sequence[SubplotSpec], maps: np.ndarray, kind: str,
               letter: str, vmax: float, cmap: str | Colormap) -> AxesImage | None:
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
        ax.set_title(f"{letter}({c}, ·)" if img.shape[0] == 1 else f"{letter}({c}, i, j)", fontsize=MIN_FONT)
        ax.set_xticks([])
        ax.set_yticks([])
    return im


def field_figure(C: npt.ArrayLike | sp.sparray | sp.spmatrix, input_shape: Sequence[int],
                 output_shape: Sequence[int], *, output_index: int | Sequence[int] | None = None,
                 input_index: int | Sequence[int] | None = None, max_channels: int = 4,
                 cmap: str | Colormap | None = None) -> Figure:
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
        Top row: the row of ``C`` per input channel; bottom row: the column of ``C`` per
        output channel; one colour bar for both (the same weights, the same colours).

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
    A = check_matrix(C, "C").tocsr()
    check_real(A, "C", "drawn as values")
    m, n = A.shape
    in_shape = check_index_shape("input_shape", input_shape, n, "columns")
    out_shape = check_index_shape("output_shape", output_shape, m, "rows")
    if in_shape is None or out_shape is None:
        raise TypeError("field_figure needs input_shape and output_shape; got None.")
    max_channels = positive_int("max_channels", max_channels)
    r = _flat_index("output_index", output_index, out_shape)
    j = _flat_index("input_index", input_index, in_shape)
    row = A[[r], :].toarray().reshape(in_shape)[:max_channels]
    col = A[:, [j]].toarray().reshape(out_shape)[:max_channels]
    cols = max(len(row), len(col))
    fig = new_figure((max(MIN_WIDTH, 2.8 * cols + 1.6), 7.6))
    gs = fig.add_gridspec(2, cols)
    cmap = cmap or DIVERGING
    vmax = float(max(np.abs(row).max(), np.abs(col).max())) or 1.0
    _show_maps(fig, [gs[0, c] for c in range(len(row))], row, "input", "x", vmax, cmap)
    im = _show_maps(fig, [gs[1, c] for c in range(len(col))], col, "output", "y", vmax, cmap)
    ro = tuple(int(i) for i in np.unravel_index(r, out_shape))
    jo = tuple(int(i) for i in np.unravel_index(j, in_shape))
    def idx(t: tuple[int, ...]) -> str:
        return "(" + ", ".join(map(str, t)) + ")"

    fig.suptitle(f"top: receptive field of y{idx(ro)} = row {r} of C on the input\n"
                 f"bottom: projective field of x{idx(jo)} = column {j} of C on the output",
                 fontsize=TITLE_FONT)
    bar = fig.colorbar(cast("AxesImage", im), ax=fig.axes, shrink=0.7)  # a map was drawn
    bar.set_label("weight (the same colours in both rows)", fontsize=MIN_FONT)
    readable(fig)
    return fig
