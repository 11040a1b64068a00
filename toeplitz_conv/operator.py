"""A convolution layer as a matrix-free operator, and the dot test of any operator.

The operator is the convolution itself, read from the pattern's table ``src`` without storing
``C``: ``matvec`` is the one :func:`~toeplitz_conv.indexing.im2col` gather of the input followed
by a product with the weight; ``rmatvec`` is its adjoint, the transposed convolution (the
weight's adjoint product, then a scatter-add over the same table). Forward and adjoint sit side
by side, as in PyLops, and :func:`dot_test` checks that one is the adjoint of the other. The
operator handles every padding mode, so it is also the transposed convolution of reflect-,
replicate- and circular-padded layers, which torch does not provide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from ._args import positive_int, real_number
from .geometry import ConvGeometry, check_weight, conv_geometry, with_geometry_doc
from .indexing import im2col
from .pattern import conv_pattern


class ConvOperator(LinearOperator):  # type: ignore[misc]  # scipy is untyped: LinearOperator is Any
    """A convolution layer as a matrix-free ``scipy.sparse.linalg.LinearOperator``.

    Built by :func:`conv_operator`; ``A @ x`` is the convolution of one sample (flattened in
    C order), ``A.H @ y`` the transposed convolution. Attributes: ``geometry``
    (:class:`~toeplitz_conv.ConvGeometry`) and ``weight`` (the ndarray it applies).
    """

    #: bytes of the im2col block allowed per chunk of columns in ``matmat``/``rmatmat``
    chunk_bytes = 2**27

    def __init__(self, weight: np.ndarray, geometry: ConvGeometry) -> None:
        geom = self.geometry = geometry
        pat = conv_pattern(geom)
        dtype = np.dtype(np.float64) if weight.dtype.kind in "iu" else weight.dtype
        self.weight = weight.astype(dtype, copy=False)
        self._w3 = np.ascontiguousarray(self.weight).reshape(geom.groups, geom.cout_per_group, geom.taps)
        self._w3h = np.ascontiguousarray(self._w3.conj().transpose(0, 2, 1))
        self._srcT = np.ascontiguousarray(pat.src.T)  # (taps, P_out)
        self._pat = pat
        super().__init__(dtype=dtype, shape=geom.shape)

    def _operand(self, X: npt.ArrayLike) -> tuple[np.ndarray, np.dtype, int]:
        """``X`` as an array, the dtype of the product and the number of columns."""
        X = np.asarray(X)
        return X, np.result_type(self.dtype, X.dtype), X.shape[1]

    def _chunks(self, k: int, dtype: npt.DTypeLike) -> list[tuple[int, int]]:
        per_col = self.geometry.groups * self._srcT.size * np.dtype(dtype).itemsize
        step = max(1, self.chunk_bytes // max(per_col, 1))
        return [(a, min(k, a + step)) for a in range(0, k, step)]

    # forward: y[co, r] = sum_t W[co].flat[t] * x_group[src[r, t]]
    def _matmat(self, X: npt.ArrayLike) -> np.ndarray:
        geom, pat = self.geometry, self._pat
        groups, cout_g = geom.groups, geom.cout_per_group
        X, dtype, k = self._operand(X)
        xg = X.reshape(groups, pat.pad_col, k)
        Y = np.empty((groups, cout_g, pat.p_out, k), dtype=dtype)
        for a, b in self._chunks(k, dtype):
            u = im2col(xg[..., a:b], self._srcT, axis=1, dtype=dtype)  # (G, taps, P_out, kb)
            u = u.reshape(groups, geom.taps, pat.p_out * (b - a))
            Y[..., a:b] = np.matmul(self._w3, u).reshape(groups, cout_g, pat.p_out, b - a)
        return Y.reshape(geom.shape[0], k)

    # adjoint: the same table read backwards, a scatter-add (duplicates add)
    def _rmatmat(self, D: npt.ArrayLike) -> np.ndarray:
        geom, pat = self.geometry, self._pat
        groups, cout_g = geom.groups, geom.cout_per_group
        D, dtype, k = self._operand(D)
        d = D.reshape(groups, cout_g, pat.p_out, k)
        X = np.empty((groups, pat.pad_col, k), dtype=dtype)
        for a, b in self._chunks(k, dtype):
            kb = b - a
            db = d[..., a:b].reshape(groups, cout_g, -1)
            vt = np.matmul(self._w3h.astype(dtype, copy=False), db)  # (G, taps, P_out * kb)
            idx = self._srcT.reshape(-1) if kb == 1 else (
                self._srcT[:, :, None].astype(np.int64) * kb + np.arange(kb)).reshape(-1)
            n = (pat.pad_col + 1) * kb
            for grp in range(groups):
                w = vt[grp].reshape(-1)
                if np.iscomplexobj(w):
                    acc = np.bincount(idx, w.real, n) + 1j * np.bincount(idx, w.imag, n)
                else:
                    acc = np.bincount(idx, w, n)
                X[grp, :, a:b] = acc.reshape(pat.pad_col + 1, kb)[:-1]
        return X.reshape(geom.shape[1], k)

    def _matvec(self, x: npt.ArrayLike) -> np.ndarray:
        return self._matmat(np.asarray(x).reshape(-1, 1)).reshape(-1)

    def _rmatvec(self, y: npt.ArrayLike) -> np.ndarray:
        return self._rmatmat(np.asarray(y).reshape(-1, 1)).reshape(-1)

    def _adjoint(self) -> _Adjoint:
        return _Adjoint(self)


class _Adjoint(LinearOperator):  # type: ignore[misc]  # scipy is untyped: LinearOperator is Any
    """``A.H`` of a :class:`ConvOperator` (the transposed convolution), keeping ``matmat``."""

    def __init__(self, op: ConvOperator) -> None:
        self.op = op
        super().__init__(dtype=op.dtype, shape=(op.shape[1], op.shape[0]))

    def _matmat(self, X: npt.ArrayLike) -> np.ndarray:
        return self.op._rmatmat(X)

    def _rmatmat(self, X: npt.ArrayLike) -> np.ndarray:
        return self.op._matmat(X)

    def _matvec(self, x: npt.ArrayLike) -> np.ndarray:
        return self.op._rmatvec(x)

    def _rmatvec(self, x: npt.ArrayLike) -> np.ndarray:
        return self.op._matvec(x)

    def _adjoint(self) -> ConvOperator:
        return self.op


@with_geometry_doc
def conv_operator(weight: npt.ArrayLike, input_shape: Sequence[int], *, stride: int | Sequence[int] = 1,
                  padding: int | Sequence[int] | str = 0, dilation: int | Sequence[int] = 1, groups: int = 1,
                  padding_mode: str = "zeros") -> ConvOperator:
    """A convolution layer as a ``LinearOperator``, without storing its matrix.

    Parameters
    ----------
    weight : (C_out, C_in/groups, *kernel) array_like or torch.Tensor
        1D, 2D or 3D convolution by ``weight.ndim``. Integer weights become float64.
    input_shape : (C_in, *spatial) tuple of int
        Shape of one sample, no batch dimension.
    GEOMETRY_PARAMETERS

    Returns
    -------
    A : (C_out * prod(out_spatial), C_in * prod(in_spatial)) ConvOperator
        A ``scipy.sparse.linalg.LinearOperator`` with the weight's dtype. ``A @ x`` (a
        ``(n,)`` vector or ``(n, k)`` block, C order: channel, then spatial) is the
        convolution, equal to ``conv_matrix(...) @ x``; ``A.H @ y`` (``rmatvec``/``rmatmat``)
        is the transposed convolution, for every padding mode. Works with ``svds``, ``lsqr``,
        ``cg`` and friends. Memory: the ``(P_out, taps)`` index table, nothing per weight.

    Notes
    -----
    Cross-correlation, as ``torch.nn.functional.conv2d``. With ``src`` the pattern's table
    (the column within the group that tap ``t`` of output position ``r`` reads, or a zero
    column for zero padding)::

        y[co, r] = sum_t W[co].flat[t] * x_group[src[r, t]]            (matvec)
        x_group[c] = sum_{r, t : src[r, t] = c} sum_co W[co].flat[t] * y[co, r]   (rmatvec)

    The second is exactly the adjoint of the first: the dot test ``(A u) . v == u . (A^H v)``
    holds to rounding (:func:`dot_test`).

    Examples
    --------
    >>> import numpy as np, torch, torch.nn.functional as F
    >>> w, x = np.random.rand(4, 3, 3, 3), np.random.rand(3, 8, 8)
    >>> A = conv_operator(w, x.shape, stride=2, padding=1)
    >>> A.shape
    (64, 192)
    >>> ref = F.conv2d(torch.from_numpy(x)[None], torch.from_numpy(w), stride=2, padding=1)
    >>> np.allclose(A @ x.ravel(), ref.numpy().ravel())
    True
    >>> u, y = np.random.rand(192), np.random.rand(64)
    >>> bool(np.isclose((A @ u) @ y, u @ (A.H @ y)))             # the dot test
    True

    A deconvolution by least squares (``lsqr`` only calls ``matvec`` and ``rmatvec``):

    >>> from scipy.sparse.linalg import lsqr
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    >>> A = conv_operator(w, (3, 8, 8), padding=1)
    >>> x_hat = lsqr(A, A @ x.ravel(), atol=1e-14, btol=1e-14, iter_lim=2000)[0]
    >>> bool(np.allclose(x_hat, x.ravel(), atol=1e-8))
    True
    """
    w = check_weight(weight)
    geom = conv_geometry(w.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, padding_mode=padding_mode)
    return ConvOperator(w, geom)


def dot_test(A: Any, *, k: int = 3, rtol: float = 1e-10, complex_vectors: bool | None = None,
             seed: int | np.random.Generator = 0) -> float:
    """The dot test of a linear operator: ``(A u) . v == u . (A^H v)`` for random ``u``, ``v``.

    The standard check that a hand-written adjoint (a transposed convolution, a backward pass)
    is the adjoint of its forward (PyLops' ``dottest``). Tested on single vectors
    (``matvec``/``rmatvec``) and on a block of ``k`` columns (``matmat``/``rmatmat``).

    Parameters
    ----------
    A : (m, n) scipy.sparse array, ndarray or LinearOperator
        E.g. :func:`toeplitz_conv.conv_matrix` or :func:`conv_operator`.
    k : int, default 3
        Columns of the block test.
    rtol : float, default 1e-10
        Largest accepted gap relative to ``|A u| |v|``.
    complex_vectors : bool, optional
        Test with complex ``u`` and ``v`` (default: when ``A`` is complex).
    seed : int or numpy Generator, default 0

    Returns
    -------
    float
        The largest relative gap seen (about 1e-16 for an exact adjoint in float64).

    Raises
    ------
    AssertionError
        When a gap exceeds ``rtol``: the adjoint is not the adjoint of the forward.

    Examples
    --------
    >>> import numpy as np, toeplitz_conv as tc
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    >>> tc.dot_test(tc.conv_operator(w, (3, 8, 8), padding=1, padding_mode="reflect")) < 1e-12
    True
    >>> C = tc.conv_matrix(w, (3, 8, 8), stride=2)
    >>> tc.dot_test(C) < 1e-12
    True
    """
    try:
        op = aslinearoperator(A)
    except TypeError:
        raise TypeError(
            f"A must be a scipy.sparse array or matrix, a 2D ndarray or a LinearOperator; got "
            f"{type(A).__name__}."
        ) from None
    k = positive_int("k", k)
    rtol = real_number("rtol", rtol, "a non-negative float", lambda r: r >= 0)
    rng = np.random.default_rng(seed)
    m, n = op.shape
    if complex_vectors is None:
        complex_vectors = np.dtype(op.dtype).kind == "c"

    def draw(*shape: int) -> np.ndarray:
        r = rng.standard_normal(shape)
        return r + 1j * rng.standard_normal(shape) if complex_vectors else r

    worst = 0.0
    for cols in (None, k):
        u, v = (draw(n), draw(m)) if cols is None else (draw(n, cols), draw(m, cols))
        Au, AHv = (op.matvec(u), op.rmatvec(v)) if cols is None else (op.matmat(u), op.rmatmat(v))
        lhs, rhs = np.vdot(v, Au), np.vdot(AHv, u)  # v^H (A u) and (A^H v)^H u
        scale = np.linalg.norm(Au) * np.linalg.norm(v) or 1.0
        gap = float(abs(lhs - rhs) / scale)
        worst = max(worst, gap)
        if gap > rtol:
            raise AssertionError(
                f"dot test failed ({'vectors' if cols is None else f'blocks of {cols} columns'}): "
                f"(A u) . v = {lhs:.12g} but u . (A^H v) = {rhs:.12g}, relative gap {gap:.3g} > "
                f"rtol {rtol:g}; the adjoint is not the adjoint of the forward."
            )
    return worst
