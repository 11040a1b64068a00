"""Where two matrices differ: the spy plot of ``A - B`` with the mismatches circled, on the
same channel and image-row grid as :func:`~toeplitz_conv.plot.spy` (for failure reports of
:func:`toeplitz_conv.testing.assert_conv_equal` and for notebooks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from .._args import real_number
from .matrices import check_index_shape, check_matrix, spy

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def diff_figure(A: npt.ArrayLike | sp.sparray | sp.spmatrix,
                B: npt.ArrayLike | sp.sparray | sp.spmatrix,
                input_shape: Sequence[int] | None = None, output_shape: Sequence[int] | None = None,
                *, rtol: float = 1e-7, atol: float = 1e-12, ax: Axes | None = None,
                title: str | None = None) -> Axes:
    """Spy plot of ``A - B``: the differences as values, the mismatching entries circled.

    Parameters
    ----------
    A, B : (M, N) scipy.sparse or 2D array_like
        E.g. the expected matrix and a probed one (:func:`toeplitz_conv.probe_matrix`).
        Complex matrices: the pattern of ``A - B`` is drawn, not its values.
    input_shape, output_shape : tuple of int, optional
        What the columns and rows index: the grid of :func:`~toeplitz_conv.plot.spy`.
    rtol, atol : float
        An entry mismatches when ``|A - B| > atol + rtol * |A|``.
    ax : matplotlib Axes, optional
    title : str, optional
        Default: how many entries mismatch.

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, toeplitz_conv as tc
    >>> w = np.random.rand(1, 1, 3, 3)
    >>> C, F = tc.conv_matrix(w, (1, 5, 5)), tc.conv_matrix(w[..., ::-1, ::-1], (1, 5, 5))
    >>> ax = tc.diff_figure(C, F, (1, 5, 5), (1, 3, 3))
    >>> ax.get_title().split(":")[0]
    'A - B'
    >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    A, B = check_matrix(A, "A"), check_matrix(B, "B")
    if A.shape != B.shape:
        raise ValueError(f"A and B must have the same shape; got A.shape={A.shape} and B.shape={B.shape}.")
    rtol = real_number("rtol", rtol, "a finite number >= 0", lambda v: np.isfinite(v) and v >= 0)
    atol = real_number("atol", atol, "a finite number >= 0", lambda v: np.isfinite(v) and v >= 0)
    check_index_shape("input_shape", input_shape, A.shape[1], "columns")
    check_index_shape("output_shape", output_shape, A.shape[0], "rows")
    D = sp.csr_array(A - B)
    D.eliminate_zeros()
    coo = D.tocoo()
    a = np.asarray(A[coo.row, coo.col]).ravel() if coo.nnz else np.zeros(0)
    bad = np.abs(coo.data) > atol + rtol * np.abs(a)
    rows, cols = coo.row[bad], coo.col[bad]
    if title is None:
        title = (f"A - B: {rows.size:,} of {A.shape[0] * A.shape[1]:,} entries mismatch (circled)"
                 if rows.size else "A - B: no entry mismatches")
    if D.nnz == 0:  # nothing to draw as values: an empty pattern on the same grid
        D = sp.csr_array(A.shape, dtype=np.float64)
    ax = spy(D, ax=ax, input_shape=input_shape, output_shape=output_shape, title=title,
             mode="values" if A.shape[0] * A.shape[1] <= 250_000 and not np.iscomplexobj(D) else "auto")
    if rows.size:
        ax.plot(cols, rows, "o", markersize=max(3.0, min(9.0, 400.0 / max(A.shape))),
                markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.0, zorder=4)
    return ax
