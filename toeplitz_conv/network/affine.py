"""Affine nodes ``Z = W @ X + b``: convolutions, linear layers, eval batch norm, fixed maps.

``W`` is a ``scipy.sparse`` matrix built from the parameters on first use (``.matrix``) and
kept until ``release()`` or a parameter update (``build()``); backward is ``dX = W.T @ delta``
beside the forward, with the parameter gradients read from ``delta`` and the layer's input
through ``W``'s structure. Before anything is built, ``matrix_size()`` gives the matrix's
nonzeros and bytes from the geometry alone, and ``operator()`` the same map matrix-free (a
convolution is applied from its pattern table, never stored): what compile's check and the
norms use on layers whose matrices are large.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from ..conv import (conv_matrix, conv_transpose_matrix, conv_transpose_weight_grad, conv_weight_grad,
                    csr_size)
from ..geometry import ConvGeometry, conv_geometry, conv_transpose_geometry
from ..indexing import index_dtype
from ..operator import ConvOperator
from .base import Layer, batch_form, channel_sums


def block_operator(shape: tuple[int, int], dtype: npt.DTypeLike, apply: Callable[[np.ndarray], np.ndarray],
                   adjoint: Callable[[np.ndarray], np.ndarray]) -> LinearOperator:
    """A ``LinearOperator`` from two functions of ``(n, k)`` blocks: ``W @ X`` and ``W.T @ Y``."""
    return LinearOperator(shape, dtype=dtype, matmat=apply, rmatmat=adjoint,
                          matvec=lambda x: apply(np.reshape(x, (-1, 1))),
                          rmatvec=lambda y: adjoint(np.reshape(y, (-1, 1))))


def csr_bytes(nnz: int, rows: int, cols: int, itemsize: int) -> int:
    """Bytes of a CSR matrix: values and column indices per entry, and the row pointers."""
    idx = np.dtype(index_dtype(nnz, rows, cols + 1)).itemsize
    return nnz * (itemsize + idx) + (rows + 1) * idx


class Affine(Layer):
    """``Z = W @ X + b[:, None]`` with a fixed sparse ``W`` (``.matrix``) and bias ``.bias``.

    Subclasses compute ``b`` and what ``W`` needs from the parameters (``build``), make ``W``
    (``make_matrix``, called on the first read of ``.matrix``; the result is kept until
    :meth:`release`), and give the parameter gradients from ``delta`` and the layer input
    (``param_grads``).
    """

    linear = True
    _cache: sp.sparray | None = None

    def __init__(self, name: str, module: Any, in_shape: Sequence[int], out_shape: Sequence[int],
                 params: dict[str, np.ndarray], param_names: dict[str, str] | None = None,
                 kind: str | None = None) -> None:
        super().__init__(name, module, in_shape, out_shape, kind)
        self.params = params  # the network's dict: full name -> ndarray
        self.param_names = param_names or {}  # local name ('weight') -> full name ('0.weight')
        self.build()

    def p(self, local: str) -> np.ndarray | None:
        return self.params[self.param_names[local]] if local in self.param_names else None

    def build(self) -> None:
        """Read the parameters again (the bias, the options): the matrix is made anew on next use."""
        self.release()

    def make_matrix(self) -> sp.sparray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def matrix(self) -> sp.sparray:
        """``W`` as a scipy.sparse matrix: built on first read, kept until :meth:`release`."""
        if self._cache is None:
            self._cache = self.make_matrix()
        return self._cache

    @property
    def built(self) -> bool:
        """True while the matrix is built and kept."""
        return self._cache is not None

    def release(self) -> None:
        self._cache = None

    @property
    def dtype(self) -> np.dtype:
        """The dtype of ``W``."""
        return np.dtype(self.params[next(iter(self.param_names.values()))].dtype)

    @property
    def shape(self) -> tuple[int, int]:
        """The shape of ``W``: ``(out features, in features)``."""
        return prod(self.out_shape), prod(self.in_shape)

    def matrix_size(self) -> tuple[int, int, bool]:
        """``(nnz, bytes, exact)`` of the CSR matrix, from the geometry alone when it is not built
        (``exact`` False: ``nnz`` is an upper bound, e.g. zero weights are not stored)."""
        if self._cache is not None:
            M = sp.csr_array(self._cache)
            return M.nnz, M.data.nbytes + M.indices.nbytes + M.indptr.nbytes, True
        nnz, exact = self.estimate_nnz()
        return nnz, csr_bytes(nnz, *self.shape, self.dtype.itemsize), exact

    def estimate_nnz(self) -> tuple[int, bool]:  # pragma: no cover - abstract
        """``(nnz, exact)`` of ``W`` without building it."""
        raise NotImplementedError

    def exact_matrix(self) -> sp.csr_array:
        """``W`` in float64 for the certified analyses (LipSDP): the entries as the network
        holds them, except constants derived from parameters (batch norm's scale), which are
        computed in float64 from them, as :meth:`operator` does in float64. The float64 copy is
        not kept; the node's own matrix is read as :attr:`matrix` reads it (built, and kept)."""
        return sp.csr_array(self.matrix, dtype=np.float64)

    def operator(self, dtype: npt.DTypeLike | None = None) -> LinearOperator:
        """``W`` as a ``scipy.sparse.linalg.LinearOperator`` in ``dtype`` (default: its own),
        without keeping a matrix: a convolution's, a linear layer's and a batch norm's are
        matrix-free (:class:`~toeplitz_conv.operator.ConvOperator`, ``weight`` per row
        block, a scaling); others wrap their matrix (the built one, else one made for it)."""
        M = self._cache if self._cache is not None else self.make_matrix()
        return aslinearoperator(M if dtype is None else M.astype(dtype))

    def forward_free(self, X: np.ndarray) -> np.ndarray:
        """:meth:`forward` through :meth:`operator`: the matrix is neither built nor kept."""
        Z: np.ndarray = self.operator() @ X
        if self.bias is not None:
            Z += self.bias[:, None]
        return Z

    def forward(self, X: np.ndarray) -> np.ndarray:
        Z: np.ndarray = self.matrix @ X
        if self.bias is not None:
            Z += self.bias[:, None]
        return Z

    def backward(self, delta: np.ndarray, X: np.ndarray,
                 Y: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``dX = W.T @ delta`` and the parameter gradients."""
        return self.matrix.T @ delta, self.param_grads(delta, X)

    def local(self, Xs: Sequence[np.ndarray], Y: np.ndarray) -> list[sp.sparray | None]:
        return [self.matrix]

    def param_grads(self, delta: np.ndarray, X: np.ndarray) -> dict[str, np.ndarray]:
        return {}


class Conv(Affine):
    """``nn.ConvNd``: ``W`` is :func:`~toeplitz_conv.conv_matrix`, ``dW`` its weight gradient."""

    _make: Callable[..., sp.sparray] = staticmethod(conv_matrix)
    _geometry: Callable[..., ConvGeometry] = staticmethod(conv_geometry)
    _weight_grad: Callable[..., np.ndarray] = staticmethod(conv_weight_grad)
    transposed = False  # True: W is the transpose of the convolution of ``geometry``

    def _options(self) -> dict[str, Any]:
        m = self.module
        return dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups,
                    padding_mode=m.padding_mode)

    @property
    def weight(self) -> np.ndarray:
        return cast(np.ndarray, self.p("weight"))  # a convolution has one

    def build(self) -> None:
        self.kw = self._options()
        self.geometry = self._geometry(self.weight.shape, self.in_shape, **self.kw)
        bias = self.p("bias")
        self.bias = None if bias is None else np.repeat(bias, prod(self.out_shape[1:]))
        self.release()

    def make_matrix(self) -> sp.sparray:
        return self._make(self.weight, self.in_shape, **self.kw)

    def estimate_nnz(self) -> tuple[int, bool]:
        return csr_size(self.geometry, self.dtype.itemsize)[0], self.geometry.padding_mode == "zeros"

    def operator(self, dtype: npt.DTypeLike | None = None) -> LinearOperator:
        """The convolution matrix-free, from its pattern table (the transposed convolution is
        the adjoint of the convolution of ``geometry``)."""
        w = self.weight if dtype is None else self.weight.astype(dtype)
        op = ConvOperator(w, self.geometry)
        return op.H if self.transposed else op

    def param_grads(self, delta: np.ndarray, X: np.ndarray) -> dict[str, np.ndarray]:
        weight = cast(np.ndarray, self.p("weight"))  # a convolution has one
        grads = {"weight": self._weight_grad(batch_form(X, self.in_shape), batch_form(delta, self.out_shape),
                                              weight.shape, **self.kw)}
        if "bias" in self.param_names:
            grads["bias"] = channel_sums(delta, self.out_shape)
        return grads


class ConvTranspose(Conv):
    """``nn.ConvTransposeNd``: ``W`` is :func:`~toeplitz_conv.conv_transpose_matrix`."""

    _make = staticmethod(conv_transpose_matrix)
    _geometry = staticmethod(conv_transpose_geometry)
    _weight_grad = staticmethod(conv_transpose_weight_grad)
    transposed = True

    def _options(self) -> dict[str, Any]:
        m = self.module
        return dict(stride=m.stride, padding=m.padding, output_padding=m.output_padding,
                    dilation=m.dilation, groups=m.groups)


class Linear(Affine):
    """``nn.Linear`` acts on the last axis: ``W = kron(I, weight)`` over the leading axes."""

    def build(self) -> None:
        rest = prod(self.in_shape[:-1])
        self.bias = (None if self.p("bias") is None
                     else np.tile(cast(np.ndarray, self.p("bias")), rest))
        self.release()

    def make_matrix(self) -> sp.sparray:
        w, rest = cast(np.ndarray, self.p("weight")), prod(self.in_shape[:-1])  # it has one
        return sp.csr_array(w) if rest == 1 else sp.kron(sp.eye_array(rest, dtype=w.dtype), w, format="csr")

    def estimate_nnz(self) -> tuple[int, bool]:
        return prod(self.in_shape[:-1]) * cast(np.ndarray, self.p("weight")).size, False

    def operator(self, dtype: npt.DTypeLike | None = None) -> LinearOperator:
        w = cast(np.ndarray, self.p("weight"))
        w = w if dtype is None else w.astype(dtype)
        rest, (n_out, n_in) = prod(self.in_shape[:-1]), w.shape

        def apply(X: np.ndarray) -> np.ndarray:  # (rest * n_in, k) -> (rest * n_out, k)
            Y: np.ndarray = np.matmul(w, X.reshape(rest, n_in, -1))
            return Y.reshape(rest * n_out, -1)

        def adjoint(Y: np.ndarray) -> np.ndarray:
            X: np.ndarray = np.matmul(w.T, Y.reshape(rest, n_out, -1))
            return X.reshape(rest * n_in, -1)
        return block_operator(self.shape, w.dtype, apply, adjoint)

    def param_grads(self, delta: np.ndarray, X: np.ndarray) -> dict[str, np.ndarray]:
        n_in, n_out = self.in_shape[-1], self.out_shape[-1]
        A = batch_form(X, self.in_shape).reshape(-1, n_in)
        D = batch_form(delta, self.out_shape).reshape(-1, n_out)
        grads = {"weight": D.T @ A}
        if "bias" in self.param_names:
            grads["bias"] = D.sum(axis=0)
        return grads


class BatchNorm(Affine):
    """Eval-mode batch norm: ``W = diag(gamma / sqrt(var + eps))`` per channel, plus a bias."""

    reads_buffers = True  # the running statistics: read again at every Network.update

    def __init__(self, name: str, module: Any, shape: Sequence[int], params: dict[str, np.ndarray],
                 param_names: dict[str, str], dtype: npt.DTypeLike) -> None:
        self._dtype = np.dtype(dtype)
        super().__init__(name, module, shape, shape, params, param_names)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def build(self) -> None:
        m = self.module
        mean = m.running_mean.detach().cpu().numpy().astype(self.dtype)
        var = m.running_var.detach().cpu().numpy().astype(self.dtype)
        self.invstd = 1.0 / np.sqrt(var + m.eps)
        self.mean = mean
        gamma = cast(np.ndarray,
                     self.p("weight") if self.p("weight") is not None else np.ones_like(mean))
        beta = cast(np.ndarray,
                    self.p("bias") if self.p("bias") is not None else np.zeros_like(mean))
        # per channel: W = diag(scale repeated). The scale is derived, so it is computed in
        # float64 and rounded once to the network's dtype; the float64 operator (the norms and
        # bounds) keeps it unrounded: a float32 network's bound is then that of the real map
        # its float32 parameters define, not of a scale rounded twice
        f64 = np.float64
        self.scale64 = gamma.astype(f64) / np.sqrt(var.astype(f64) + f64(m.eps))
        self.scale = scale = self.scale64.astype(self.dtype)
        positions = prod(self.in_shape[1:])
        self.bias = np.repeat(beta - mean * scale, positions)
        self.release()

    def make_matrix(self) -> sp.sparray:
        return sp.diags_array(np.repeat(self.scale, prod(self.in_shape[1:])), format="csr")

    def exact_matrix(self) -> sp.csr_array:
        return sp.csr_array(sp.diags_array(np.repeat(self.scale64, prod(self.in_shape[1:])), format="csr"))

    def estimate_nnz(self) -> tuple[int, bool]:
        return prod(self.in_shape), False

    def operator(self, dtype: npt.DTypeLike | None = None) -> LinearOperator:
        scale = self.scale64 if dtype is not None and np.dtype(dtype) == np.float64 else self.scale
        d = np.repeat(scale, prod(self.in_shape[1:]))[:, None]
        d = d if dtype is None else d.astype(dtype)

        def apply(X: np.ndarray) -> np.ndarray:
            Y: np.ndarray = d * X
            return Y
        return block_operator(self.shape, d.dtype, apply, apply)

    def param_grads(self, delta: np.ndarray, X: np.ndarray) -> dict[str, np.ndarray]:
        c = self.in_shape[0]
        d = batch_form(delta, self.in_shape).reshape(delta.shape[1], c, -1)
        x = batch_form(X, self.in_shape).reshape(X.shape[1], c, -1)
        xhat = (x - self.mean[None, :, None]) * self.invstd[None, :, None]
        grads = {}
        if "weight" in self.param_names:
            grads["weight"] = (d * xhat).sum(axis=(0, 2))
        if "bias" in self.param_names:
            grads["bias"] = d.sum(axis=(0, 2))
        return grads


class Fixed(Affine):
    """A parameter-free affine map: pooling, padding, upsampling, a permutation, a sum over axes.

    Its matrix is given, not built: it is held for the network's life (``release`` keeps it).
    ``exact``, where given, makes the same matrix in float64 from its formula (an average
    pooling's ``1 / k`` in a float32 network): the certified analyses read that one.
    """

    _exact: Callable[[], sp.sparray] | None = None

    def __init__(self, name: str, module: Any, in_shape: Sequence[int], out_shape: Sequence[int],
                 matrix: sp.sparray, bias: np.ndarray | None = None,
                 kind: str | None = None, exact: Callable[[], sp.sparray] | None = None) -> None:
        self._fixed, self._exact = matrix, exact
        self.bias = bias
        super().__init__(name, module, in_shape, out_shape, {}, {}, kind)

    def exact_matrix(self) -> sp.csr_array:
        return sp.csr_array(self._exact() if self._exact is not None else self.matrix, dtype=np.float64)

    def operator(self, dtype: npt.DTypeLike | None = None) -> LinearOperator:
        if self._exact is not None and dtype is not None and np.dtype(dtype) == np.float64:
            return aslinearoperator(self.exact_matrix())
        return super().operator(dtype)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(cast(np.dtype, self._fixed.dtype))  # scipy is untyped

    def make_matrix(self) -> sp.sparray:
        return self._fixed

    def estimate_nnz(self) -> tuple[int, bool]:
        return int(self._fixed.nnz), True

    def rebuilt_from(self, other: Layer) -> None:
        """Take the matrix and bias of the same op built again (it reads parameters as constants)."""
        other = cast(Affine, other)
        self._fixed, self.bias = other.matrix, other.bias
        self._exact = other._exact if isinstance(other, Fixed) else None
        self.release()


class Reshape(Fixed):
    """Flatten, Identity, eval-mode Dropout: the identity on the flattened sample (its matrix,
    the identity, is made only when read)."""

    def __init__(self, name: str, module: Any, in_shape: Sequence[int], out_shape: Sequence[int],
                 dtype: npt.DTypeLike, kind: str | None = None) -> None:
        self._dtype, self.bias = np.dtype(dtype), None
        Affine.__init__(self, name, module, in_shape, out_shape, {}, {}, kind)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def make_matrix(self) -> sp.sparray:
        return sp.eye_array(prod(self.in_shape), dtype=self._dtype, format="csr")

    def estimate_nnz(self) -> tuple[int, bool]:
        return prod(self.in_shape), True

    def forward(self, X: np.ndarray) -> np.ndarray:
        return X

    def backward(self, delta: np.ndarray, X: np.ndarray,
                 Y: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return delta, {}

    def local(self, Xs: Sequence[np.ndarray], Y: np.ndarray) -> list[sp.sparray | None]:
        return [None]
