"""Where two matrices differ, and on which side: every mismatching entry of ``A`` (expected)
and ``B`` (actual) drawn in the colour of its kind (only in ``A``, only in ``B``, in both with
other values) and circled, on the same channel and image-row grid as
:func:`~toeplitz_conv.plot.spy` (for failure reports of
:func:`toeplitz_conv.testing.assert_conv_equal` and for notebooks)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from .._args import real_number
from .layout import axes_points, figure_size, matrix_figure, wrap_title
from .matrices import check_index_shape, check_matrix, spy

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.lines import Line2D

#: The kinds of mismatch, in legend order: (label, colour). Okabe-Ito blue and orange and a
#: dark grey: told apart with every common colour-vision deficiency and in greyscale.
DIFF_KINDS = (
    ("only in expected (A)", "#0072B2"),
    ("only in actual (B)", "#E69F00"),
    ("in both, values differ", "#333333"),
)
_LEGEND_FONTSIZE = 10.0


def _mismatches(A: sp.csr_array, B: sp.csr_array, rtol: float,
                atol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, kind)`` of the mismatching entries in row-major order; ``kind`` indexes
    :data:`DIFF_KINDS` (0: stored only in ``A``, 1: only in ``B``, 2: in both).

    ``A`` and ``B`` are canonical CSR without stored zeros (:func:`check_matrix`), so their
    entries' flat indices come sorted and a stored entry is a nonzero.
    """
    n = int(A.shape[1])

    def flat(M: sp.csr_array) -> np.ndarray:
        rows: np.ndarray = np.repeat(np.arange(M.shape[0], dtype=np.int64), np.diff(M.indptr))
        return rows * n + np.asarray(M.indices, dtype=np.int64)

    ka, kb = flat(A), flat(B)
    keys = np.union1d(ka, kb)  # every entry stored in A or in B
    ia, ib = np.searchsorted(keys, ka), np.searchsorted(keys, kb)
    dtype = np.result_type(A.dtype, B.dtype, np.float64)  # no unsigned wrap-around, bools subtract
    a, b = np.zeros(keys.size, dtype), np.zeros(keys.size, dtype)
    a[ia], b[ib] = A.data, B.data
    in_a, in_b = np.zeros(keys.size, bool), np.zeros(keys.size, bool)
    in_a[ia], in_b[ib] = True, True
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, a mismatch
        d = a - b
        same = (a == b) | (np.isfinite(d) & (np.abs(d) <= atol + rtol * np.abs(a)))
    bad = ~same
    kind = np.where(in_a & in_b, 2, np.where(in_a, 0, 1))[bad]
    rows, cols = np.divmod(keys[bad], n)
    return rows, cols, kind


def _title_lines(text: str, width_in: float) -> int:
    """Lines ``text`` takes as a 12-point title over a figure ``width_in`` inches wide."""
    chars = max(24, int(0.92 * width_in * 72 / (0.58 * 12)))
    return sum(len(textwrap.wrap(line, chars, break_on_hyphens=False)) or 1 for line in text.splitlines())


def diff_figure(A: npt.ArrayLike | sp.sparray | sp.spmatrix,
                B: npt.ArrayLike | sp.sparray | sp.spmatrix,
                input_shape: Sequence[int] | None = None, output_shape: Sequence[int] | None = None,
                *, rtol: float = 1e-7, atol: float = 1e-12, ax: Axes | None = None,
                title: str | None = None, diagnosis: str | None = None) -> Axes:
    """Where ``A`` and ``B`` differ, and on which side: each mismatching entry in the colour
    of its kind, and circled.

    The kinds (:data:`DIFF_KINDS`), each in its own colour-blind-safe colour, named in the
    legend with its count:

    - **only in expected (A)** (blue): stored nonzero in ``A``, zero in ``B``;
    - **only in actual (B)** (orange): zero in ``A``, stored nonzero in ``B``;
    - **in both, values differ** (dark grey): nonzero in both, with other values.

    Entries that agree within the tolerance are not drawn. When nothing mismatches, the axes
    say so and the legend counts three zeros.

    Parameters
    ----------
    A, B : (M, N) scipy.sparse or 2D array_like
        The expected matrix and the actual one, e.g. a probed one
        (:func:`toeplitz_conv.probe_matrix`). Complex matrices are compared as complex numbers.
        Stored zeros count as absent.
    input_shape, output_shape : tuple of int, optional
        What the columns and rows index: the grid of :func:`~toeplitz_conv.plot.spy`.
    rtol, atol : float
        An entry mismatches when ``|A - B| > atol + rtol * |A|`` (``rtol = atol = 0``: exact
        inequality); an infinite entry matches only the same infinity, NaN matches nothing.
        This applies to all three kinds: an entry stored on one side only and smaller than
        the tolerance is not drawn.
    ax : matplotlib Axes, optional
        Drawn into; the legend goes to its right. When omitted, a new figure shaped for the
        matrix, with room for the legend.
    title : str, optional
        Default: how many entries mismatch, ``'A vs B: 12 of 24 entries mismatch (circled)'``,
        or ``'A vs B: no entry mismatches'``. Long titles are wrapped to the figure's width.
    diagnosis : str, optional
        Why they differ, shown in the title on its own line(s) after ``title``, e.g. the
        ``diagnosis: ...`` line of the ``AssertionError`` of
        :func:`toeplitz_conv.testing.assert_conv_equal`; ``'diagnosis: '`` is prefixed when
        the text does not start with it. An empty string adds nothing.

    Returns
    -------
    ax : matplotlib Axes
        With one marker line per kind, labelled as in the legend (``'only in expected (A):
        12'``), and the circles around every mismatch.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, toeplitz_conv as tc
    >>> w = np.random.rand(1, 1, 3, 3)
    >>> C, F = tc.conv_matrix(w, (1, 5, 5)), tc.conv_matrix(w[..., ::-1, ::-1], (1, 5, 5))
    >>> ax = tc.diff_figure(C, F, (1, 5, 5), (1, 3, 3), diagnosis="kernel flipped")
    >>> ax.get_title().splitlines()
    ['A vs B: 72 of 225 entries mismatch (circled)', 'diagnosis: kernel flipped']
    >>> [t.get_text() for t in ax.get_legend().get_texts()]  # the centre taps agree
    ['only in expected (A): 0', 'only in actual (B): 0', 'in both, values differ: 72']
    >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    A, B = check_matrix(A, "A"), check_matrix(B, "B")
    if A.shape != B.shape:
        raise ValueError(f"A and B must have the same shape; got A.shape={A.shape} and B.shape={B.shape}.")
    m, n = A.shape
    if m == 0 or n == 0:
        raise ValueError(f"A and B must have at least one row and one column to draw; got shape {A.shape}.")
    rtol = real_number("rtol", rtol, "a finite number >= 0", lambda v: np.isfinite(v) and v >= 0)
    atol = real_number("atol", atol, "a finite number >= 0", lambda v: np.isfinite(v) and v >= 0)
    check_index_shape("input_shape", input_shape, n, "columns")
    check_index_shape("output_shape", output_shape, m, "rows")
    for name, value in (("title", title), ("diagnosis", diagnosis)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str or None; got {type(value).__name__}.")
    if ax is not None and not hasattr(ax, "imshow"):
        raise TypeError(f"ax must be a matplotlib Axes or None; got {type(ax).__name__}.")

    rows, cols, kind = _mismatches(A, B, rtol, atol)
    counts = np.bincount(kind, minlength=len(DIFF_KINDS))
    if title is None:
        title = (f"A vs B: {rows.size:,} of {m * n:,} entries mismatch (circled)"
                 if rows.size else "A vs B: no entry mismatches")
    note = (diagnosis or "").strip()
    if note:
        title += "\n" + (note if note.startswith("diagnosis:") else f"diagnosis: {note}")
    labels = [f"{label}: {count:,}" for (label, _), count in zip(DIFF_KINDS, counts)]

    alone = ax is None
    if ax is None:  # a figure for the matrix, widened by the legend's room to its right
        legend_in = (max(map(len, labels)) * 0.6 * _LEGEND_FONTSIZE + 40) / 72
        width, _ = figure_size(m, n, colorbar=False)
        fig, ax = matrix_figure(m, n, colorbar=False, title_lines=_title_lines(title, width + legend_in) + 1)
        fig.set_size_inches(fig.get_figwidth() + legend_in, fig.get_figheight())
    before = set(ax.lines)
    spy(sp.csr_array((m, n), dtype=np.float64), ax=ax, input_shape=input_shape,
        output_shape=output_shape, mode="markers", colorbar=False, title=title,
        aspect="auto" if alone else None)
    for line in set(ax.lines) - before:  # spy's markers of the empty matrix: nothing to draw
        line.remove()
    if alone:  # the title may span the figure, not only the axes
        ax.set_title(wrap_title(title, ax, alone=True))

    handles: list[Line2D] = []
    for k, ((_, colour), label) in enumerate(zip(DIFF_KINDS, labels)):
        mine = kind == k
        handles += ax.plot(cols[mine], rows[mine], linestyle="none", marker="s", markeredgewidth=0,
                           color=colour, label=label, zorder=2.5)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              fontsize=_LEGEND_FONTSIZE, frameon=False, handlelength=1.0,
              markerscale=math.sqrt(_LEGEND_FONTSIZE) * 3 / handles[0].get_markersize())
    root = ax.figure.figure  # the figure itself, also from a SubFigure's axes
    engine = root.get_layout_engine()
    if engine is not None:  # the axes' size as drawn, the legend's room taken
        engine.execute(root)
    w_pt, h_pt = axes_points(ax)
    size = max(2.5, 0.8 * min(w_pt / n, h_pt / m))  # a square about one entry wide
    for line in handles:
        line.set_markersize(size)
    if rows.size:  # a ring inside a large square; around a small one and beneath the squares,
        ring = max(3.0, min(9.0, 400.0 / max(m, n)))  # so that dense mismatches keep their colour
        inside = size >= ring + 4
        ax.plot(cols, rows, "o", markersize=ring if inside else 1.5 * size + 2, markerfacecolor="none",
                markeredgecolor="black", markeredgewidth=1.0 if inside else 0.7, zorder=4 if inside else 2.4)
    else:
        ax.text(0.5, 0.5, "no difference:\nA and B agree", transform=ax.transAxes, ha="center",
                va="center", fontsize=14, color="0.3")
    return ax
