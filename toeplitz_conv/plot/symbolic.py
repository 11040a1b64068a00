"""The convolution matrix with the kernel's entries as symbols (sympy), for small layers,
typeset as LaTeX in notebooks or drawn cell by cell. sympy is imported only when asked for."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from math import prod
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from .._args import as_array, check_bool, positive_int
from ..conv import conv_matrix
from ..geometry import check_weight_shape, conv_geometry, conv_transpose_geometry
from ..pattern import conv_pattern
from .style import new_axes

if TYPE_CHECKING:
    import sympy
    from matplotlib.axes import Axes

SYMBOLIC_MAX_ENTRIES = 65536


def _check_size(rows: int, cols: int) -> None:
    if rows * cols > SYMBOLIC_MAX_ENTRIES:
        raise ValueError(
            f"the symbolic matrix is for small layers (at most {SYMBOLIC_MAX_ENTRIES:,} entries); "
            f"got {rows:,} x {cols:,}. Use conv_matrix for the numbers and spy to see them."
        )


def _check_name(name: object) -> str:
    """The symbols' stem: a non-empty str."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a non-empty str; got {name!r}.")
    if not name:
        raise ValueError(f"name must be a non-empty str; got {name!r}.")
    return name


def weight_symbols(weight_shape: Sequence[int], name: str = "w") -> npt.NDArray[np.object_]:
    """An object array of sympy symbols shaped like the weight: ``w_00``, ``w_01``, ...

    A single-channel kernel is indexed by position only (``w_00`` .. ``w_22`` for 3x3, as in
    the convolution-arithmetic guide); otherwise by ``(c_out, c_in, *position)``. Indices are
    written together while they are single digits (``w_0121``), with commas past.

    Parameters
    ----------
    weight_shape : (C_out, C_in/groups, *kernel) tuple of int
    name : str, default 'w'
        The symbols' stem.

    Returns
    -------
    ndarray of sympy.Symbol
        ``dtype=object``, shaped ``weight_shape``.

    Examples
    --------
    >>> weight_symbols((1, 1, 2, 2))
    array([[[[w_00, w_01],
             [w_10, w_11]]]], dtype=object)
    """
    import sympy

    name = _check_name(name)
    shape = check_weight_shape(weight_shape, "(C_out, C_in/groups, *kernel)", "weight_shape")
    if prod(shape) > SYMBOLIC_MAX_ENTRIES:
        raise ValueError(
            f"weight_symbols is for small kernels (at most {SYMBOLIC_MAX_ENTRIES:,} symbols, one "
            f"sympy object each); got weight_shape={shape} ({prod(shape):,} weights)."
        )
    single = shape[0] == 1 and shape[1] == 1
    sep = "" if max(shape[2:] if single else shape) <= 10 else ","
    out = np.empty(shape, dtype=object)
    for idx in itertools.product(*(range(s) for s in shape)):
        sub = idx[2:] if single else idx
        out[idx] = sympy.Symbol(f"{name}_{sep.join(map(str, sub))}")
    return out


def symbolic_conv_matrix(weight_shape: Sequence[int], input_shape: Sequence[int], *,
                         stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                         dilation: int | Sequence[int] = 1, groups: int = 1,
                         padding_mode: str = "zeros", name: str = "w") -> sympy.Matrix:
    """The convolution matrix with the kernel's entries as symbols (sympy), for small layers.

    Read off the same ``(row, col, tap)`` triples as :func:`toeplitz_conv.conv_matrix`:
    ``C[row, col] += w.flat[tap]``. The 4x16 matrix of a 3x3 kernel on a 4x4 input is the
    example drawn in Dumoulin & Visin's convolution-arithmetic guide. In a notebook the result
    displays as LaTeX; ``sympy.latex(M)`` gives the source.

    Parameters
    ----------
    weight_shape : (C_out, C_in/groups, *kernel) tuple of int
    input_shape : (C_in, *spatial) tuple of int
    stride, padding, dilation, groups, padding_mode
        As in :func:`toeplitz_conv.conv_matrix`.
    name : str, default 'w'

    Returns
    -------
    M : sympy.Matrix, (C_out * prod(out_spatial), C_in * prod(in_spatial))
        Entry ``(row, col)``: the sum of the weight symbols of the triples that land on it.

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

    geom = conv_geometry(weight_shape, input_shape, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, padding_mode=padding_mode)
    m, n = geom.shape
    _check_size(m, n)
    symbols = weight_symbols(geom.weight_shape, name).reshape(-1)
    M = sympy.zeros(m, n)
    for r, c, t in zip(*conv_pattern(geom).triples()):
        M[int(r), int(c)] += symbols[int(t)]
    return M


def symbolic_conv_transpose_matrix(weight_shape: Sequence[int], input_shape: Sequence[int], *,
                                   stride: int | Sequence[int] = 1,
                                   padding: int | Sequence[int] = 0,
                                   output_padding: int | Sequence[int] = 0,
                                   dilation: int | Sequence[int] = 1, groups: int = 1,
                                   name: str = "w") -> sympy.Matrix:
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
    stride, padding, output_padding, dilation, groups
        As in ``conv_transpose2d``.
    name : str, default 'w'

    Returns
    -------
    M : sympy.Matrix, (C_out * prod(out_spatial), C_in * prod(in_spatial))
        Column ``j`` holds where input entry ``j`` is scattered, times which weight.

    Examples
    --------
    >>> T = symbolic_conv_transpose_matrix((1, 1, 3, 3), (1, 2, 2))
    >>> T == symbolic_conv_matrix((1, 1, 3, 3), (1, 4, 4)).T
    True
    """
    import sympy

    geom = conv_transpose_geometry(weight_shape, input_shape, stride=stride, padding=padding,
                                output_padding=output_padding, dilation=dilation, groups=groups)
    # geom is the convolution whose transpose this is: its input is our output
    out_shape, in_shape = geom.in_shape, geom.out_shape
    m, n = prod(out_shape), prod(in_shape)
    _check_size(m, n)
    w = weight_symbols(geom.weight_shape, name)
    cin_g, cout_g = in_shape[0] // geom.groups, out_shape[0] // geom.groups  # of the transposed conv
    M = sympy.zeros(m, n)
    for ci, o in itertools.product(range(in_shape[0]), itertools.product(*map(range, in_shape[1:]))):
        j = int(np.ravel_multi_index((ci, *o), in_shape))
        grp = ci // cin_g
        for co_local, k in itertools.product(range(cout_g), itertools.product(*map(range, geom.kernel))):
            pos = tuple(oi * s - p + ki * d for oi, s, p, ki, d in
                        zip(o, geom.stride, geom.pad_lo, k, geom.dilation))
            if all(0 <= q < size for q, size in zip(pos, out_shape[1:])):
                i = int(np.ravel_multi_index((grp * cout_g + co_local, *pos), out_shape))
                M[i, j] += w[(ci, co_local, *k)]
    return M


def to_latex(weight: Sequence[int] | npt.ArrayLike, input_shape: Sequence[int], *,
             stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
             dilation: int | Sequence[int] = 1, groups: int = 1, padding_mode: str = "zeros",
             transpose: bool = False, name: str = "w", digits: int = 4) -> str:
    r"""A small layer's matrix as a LaTeX ``bmatrix``, ready for a slide.

    Parameters
    ----------
    weight : (C_out, C_in/groups, *kernel) tuple of int, or array_like / torch.Tensor
        A weight *shape* gives the symbolic matrix (entries ``w_{00}``, ``w_{01}``, ... as
        :func:`symbolic_conv_matrix`); a weight gives its numbers (``digits`` significant).
    input_shape : (C_in, *spatial) tuple of int
    stride, padding, dilation, groups, padding_mode
        As in :func:`toeplitz_conv.conv_matrix`.
    transpose : bool, default False
        ``C.T`` instead of ``C``: the transposed convolution's matrix.
    name : str, default 'w'
    digits : int, default 4
        Significant digits of each number (at least 1).

    Returns
    -------
    str
        ``\begin{bmatrix} ... \end{bmatrix}``, rows separated by ``\\``, entries by ``&``.
        amsmath shows 10 columns by default: put ``\setcounter{MaxMatrixCols}{16}`` (the
        number of columns) before a wider matrix.

    Examples
    --------
    The 4x16 matrix of Dumoulin & Visin's guide (a 3x3 kernel on a 4x4 input), first row:

    >>> tex = to_latex((1, 1, 3, 3), (1, 4, 4))
    >>> print(tex.splitlines()[1])
    w_{00} & w_{01} & w_{02} & 0 & w_{10} & w_{11} & w_{12} & 0 & w_{20} & w_{21} & w_{22} & 0 & 0 & 0 & 0 & 0 \\
    >>> print(to_latex([[[1.0, -2.0]]], (1, 3)))
    \begin{bmatrix}
    1 & -2 & 0 \\
    0 & 1 & -2
    \end{bmatrix}
    >>> print(to_latex((1, 1, 2), (1, 3), transpose=True))
    \begin{bmatrix}
    w_{0} & 0 \\
    w_{1} & w_{0} \\
    0 & w_{1}
    \end{bmatrix}
    """
    transpose = check_bool("transpose", transpose)
    digits = positive_int("digits", digits)
    name = _check_name(name)
    kw: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                              padding_mode=padding_mode)
    symbolic = isinstance(weight, (tuple, list)) and all(isinstance(v, (int, np.integer)) for v in weight)
    if symbolic:
        import sympy

        M = symbolic_conv_matrix(tuple(cast("Sequence[int]", weight)),  # symbolic: ints
                                 input_shape, name=name, **kw)
        cells = [[sympy.latex(M[i, j]) for j in range(M.shape[1])] for i in range(M.shape[0])]
    else:
        w = as_array(weight, "weight")
        geom = conv_geometry(w.shape, input_shape, **kw)
        _check_size(*geom.shape)
        A = conv_matrix(w, input_shape, **kw).toarray()
        cells = [[_number(v, digits) for v in row] for row in A]
    if transpose:
        cells = [list(col) for col in zip(*cells)]
    body = " \\\\\n".join(" & ".join(row) for row in cells)
    return "\\begin{bmatrix}\n" + body + "\n\\end{bmatrix}"


def _number(v: complex | np.number[Any], digits: int) -> str:
    if np.iscomplexobj(v):
        return f"({v.real:.{digits}g}{v.imag:+.{digits}g}i)"
    return "0" if v == 0 else f"{v:.{digits}g}"


def symbolic_figure(M: sympy.Matrix, *, ax: Axes | None = None, title: str | None = None) -> Axes:
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
        A grid of the matrix's cells, each stored entry typeset in its cell.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> ax = symbolic_figure(symbolic_conv_matrix((1, 1, 3, 3), (1, 4, 4)))
    >>> len(ax.texts)  # the 36 stored entries
    36
    >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    import sympy

    shape = getattr(M, "shape", None)
    if not isinstance(shape, tuple) or len(shape) != 2:
        raise TypeError(f"M must be a 2D sympy.Matrix (e.g. from symbolic_conv_matrix); got {type(M).__name__}.")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None; got {type(title).__name__}.")
    m, n = shape
    _check_size(m, n)
    ax = new_axes(ax, figsize=(0.62 * n + 0.6, 0.5 * m + 0.8))
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
