"""Convolution layers as scipy.sparse matrices: forward, transpose, weight gradient, im2col.

Conventions (PyTorch's): cross-correlation as ``torch.nn.functional.conv{1,2,3}d`` (no
kernel flip); weight ``(C_out, C_in/groups, *kernel)``, transposed-convolution weight
``(C_in, C_out/groups, *kernel)``; one sample is flattened in C order (channel, then
spatial), so row ``r`` of C indexes ``y.reshape(-1)`` and column ``c`` indexes
``x.reshape(-1)``.

Each function here is a thin reading of the triples built in :mod:`toeplitz_conv.pattern`.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ._args import as_array, batched, same_batch
from ._sparse import check_format, csr
from .arithmetic import InputLabel, Padding
from .layouts import kernel_to_torch
from .geometry import (ConvGeometry, check_weight, check_weight_shape, conv_geometry,
                       conv_transpose_geometry, with_geometry_doc)
from .memory import check_size
from .indexing import index_dtype
from .pattern import TABLE_BYTES_PER_ENTRY, conv_pattern, estimate_nnz

_CONV_LAYOUT = "(C_out, C_in/groups, *kernel)"
_TRANSPOSE_LAYOUT = "(C_in, C_out/groups, *kernel)"


def csr_size(geom: ConvGeometry, itemsize: int, *, transpose: bool = False) -> tuple[int, int]:
    """``(nnz, bytes)`` of the CSR matrix of a convolution, from its geometry alone.

    Arithmetic only: nothing is built and nothing scales with the output.

    Parameters
    ----------
    geom : ConvGeometry
        The convolution's geometry (:func:`~toeplitz_conv.conv_geometry`).
    itemsize : int
        Bytes per value (8 for float64).
    transpose : bool, default False
        The CSR of ``C.T`` (the transposed convolution's matrix): its row pointers run over
        the convolution's columns.

    Returns
    -------
    nnz : int
        :func:`~toeplitz_conv.pattern.estimate_nnz`: exact for zero padding, an upper bound
        for the other padding modes (taps that land on one column add into one entry).
    nbytes : int
        Values and column indices per entry (int32 while they fit, int64 past), plus the row
        pointers.
    """
    nnz = estimate_nnz(geom)
    idx = np.dtype(index_dtype(nnz, *geom.shape, geom.shape[1] + 1)).itemsize
    rows = geom.shape[1] if transpose else geom.shape[0]
    return nnz, nnz * (itemsize + idx) + (rows + 1) * idx


def _check_matrix_size(what: str, geom: ConvGeometry, itemsize: int, copies: int = 1) -> None:
    """Refuse a matrix too large for memory before allocating it (estimate in the message).
    ``copies=2``: the matrix and its transpose (whose row pointers run over the columns)."""
    block = prod(geom.out_spatial) * geom.taps * TABLE_BYTES_PER_ENTRY  # the index table
    nnz, nbytes = csr_size(geom, itemsize)
    if copies > 1:
        nbytes += csr_size(geom, itemsize, transpose=True)[1]
    check_size(what, nbytes + block, f"{nnz:,} nonzeros, shape {geom.shape[0]:,} x {geom.shape[1]:,}")


def _sample_shape(x: object, weight_shape: tuple[int, ...],
                  name: str = "x") -> tuple[tuple[int, ...], InputLabel]:
    """One sample's shape of ``x`` (a sample or a batch) and how messages name it.

    Returns ``(shape, label)``; the :class:`~toeplitz_conv.arithmetic.InputLabel` lets the
    geometry's checks name ``x`` rather than an ``input_shape`` the user never passed.
    """
    shape = tuple(x.shape) if hasattr(x, "shape") else tuple(as_array(x, name).shape)
    n = len(weight_shape) - 1  # channels + spatial axes
    if len(shape) == n:
        return shape, InputLabel(f"{name}.shape[0]", f"{name}.shape", shape)
    if len(shape) == n + 1:
        return shape[1:], InputLabel(f"{name}.shape[1]", f"{name}.shape", shape)
    raise ValueError(
        f"{name} must have shape (N, C_in, *spatial) or (C_in, *spatial) with {n - 1} spatial axes "
        f"for weight shape {tuple(weight_shape)}; got {name}.shape={shape}."
    )


def _batch_pair(x: object, grad_output: object, geom: ConvGeometry, x_name: str,
                d_name: str) -> tuple[np.ndarray, np.ndarray]:
    xa = batched(as_array(x, x_name), x_name, geom.in_channels, geom.in_spatial)
    da = batched(as_array(grad_output, d_name), d_name, geom.out_channels, geom.out_spatial)
    same_batch(xa, da, x_name, d_name)
    return xa, da


# --------------------------------------------------------------------------- C and C.T


@with_geometry_doc
def conv_matrix(weight: npt.ArrayLike, input_shape: Sequence[int], *,
                stride: int | Sequence[int] = 1, padding: Padding = 0,
                dilation: int | Sequence[int] = 1, groups: int = 1, padding_mode: str = "zeros",
                format: str = "csr", kernel_layout: str | None = None) -> sp.sparray:
    """The sparse matrix C of a convolution layer: ``y.ravel() = C @ x.ravel()``.

    Parameters
    ----------
    weight : (C_out, C_in/groups, *kernel) array_like or torch.Tensor
        1D, 2D or 3D convolution by ``weight.ndim`` (3, 4 or 5). The matrix has its dtype.
    input_shape : (C_in, *spatial) tuple of int
        Shape of one sample, no batch dimension.
    GEOMETRY_PARAMETERS
    format : {'csr', 'csc', 'coo', 'bsr', 'dia', 'dok', 'lil'}, default 'csr'
    kernel_layout : str, optional
        The axis order of ``weight`` as given, e.g. ``'HWIO'`` (TensorFlow's, JAX's); default
        torch's ``'OIHW'`` (:mod:`toeplitz_conv.layouts`). The matrix is the same.

    Returns
    -------
    C : (C_out * prod(out_spatial), C_in * prod(in_spatial)) scipy.sparse array
        Canonical CSR by default: indices sorted, no duplicates, int32 while they fit.

    Notes
    -----
    Cross-correlation, as ``torch.nn.functional.conv2d``. For zero padding one entry is::

        C[(co, o), (ci, i)] = W[co, ci - g * C_in/groups, k]    where  i = o * s - p + k * d

    (per spatial axis, ``g = co // (C_out/groups)``). Other padding modes map the padded
    position ``i`` back into the input; taps that land on the same column add.
    The input gradient is ``C.T @ delta``, which is ``conv_transposeNd``.

    Examples
    --------
    >>> import numpy as np, torch, torch.nn.functional as F
    >>> w, x = np.random.rand(4, 3, 3, 3), np.random.rand(3, 8, 8)
    >>> C = conv_matrix(w, x.shape, stride=2, padding=1)
    >>> C.shape, C.nnz
    ((64, 192), 1452)
    >>> ref = F.conv2d(torch.from_numpy(x)[None], torch.from_numpy(w), stride=2, padding=1)
    >>> np.allclose(C @ x.ravel(), ref.numpy().ravel())
    True
    """
    w = kernel_to_torch(check_weight(weight), kernel_layout)
    fmt = check_format(format)
    geom = conv_geometry(w.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, padding_mode=padding_mode)
    _check_matrix_size("conv_matrix", geom, w.dtype.itemsize)
    return csr(*conv_pattern(geom).matrix_arrays(w), geom.shape, fmt)


def conv_transpose_matrix(weight: npt.ArrayLike, input_shape: Sequence[int], *,
                          stride: int | Sequence[int] = 1, padding: Padding = 0,
                          output_padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                          groups: int = 1, format: str = "csr", kernel_layout: str | None = None) -> sp.sparray:
    """The sparse matrix of a transposed convolution (``conv_transposeNd``).

    Parameters
    ----------
    weight : (C_in, C_out/groups, *kernel) array_like or torch.Tensor
        torch's transposed-convolution layout.
    input_shape : (C_in, *spatial) tuple of int
        Shape of one input sample of the transposed convolution.
    stride, padding, output_padding, dilation, groups : int or tuple of int
        As ``torch.nn.functional.conv_transpose2d``; ``output_padding`` must be smaller than
        the stride or the dilation. ``padding`` also takes ``(low, high)`` pairs per axis
        (cropped from the start and the end of the full output) and TensorFlow's / ONNX's
        ``'SAME'``, ``'SAME_UPPER'``, ``'SAME_LOWER'`` (``i * stride`` outputs: the adjoint of
        that forward padding) and ``'VALID'`` (``i * stride + max(d (k - 1) + 1 - stride, 0)``).
    format : {'csr', 'csc', 'coo', 'bsr', 'dia', 'dok', 'lil'}, default 'csr'
    kernel_layout : str, optional
        The axis order of ``weight`` as given, ``I`` the channels the transposed convolution
        reads: ``'HWOI'`` (TensorFlow's ``conv2d_transpose``); default torch's ``'IOHW'``.

    Returns
    -------
    T : (C_out * prod(out_spatial), C_in * prod(in_spatial)) scipy.sparse array
        ``T == conv_matrix(weight, (C_out, *out_spatial), ...).T``: the transposed
        convolution is the adjoint of the convolution with the same weight, and the input
        gradient of that convolution. Output size per axis:
        ``(i - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``.

    Examples
    --------
    >>> import numpy as np, torch, torch.nn.functional as F
    >>> w, x = np.random.rand(2, 3, 3, 3), np.random.rand(2, 4, 4)
    >>> T = conv_transpose_matrix(w, x.shape, stride=2, padding=1, output_padding=1)
    >>> T.shape
    (192, 32)
    >>> ref = F.conv_transpose2d(torch.from_numpy(x)[None], torch.from_numpy(w), stride=2,
    ...                          padding=1, output_padding=1)
    >>> np.allclose(T @ x.ravel(), ref.numpy().ravel())
    True
    """
    w = kernel_to_torch(check_weight(weight), kernel_layout, transposed=True)
    fmt = check_format(format)
    geom = conv_transpose_geometry(w.shape, input_shape, stride=stride, padding=padding,
                                   output_padding=output_padding, dilation=dilation, groups=groups)
    _check_matrix_size("conv_transpose_matrix", geom, w.dtype.itemsize, copies=2)
    C = csr(*conv_pattern(geom).matrix_arrays(w), geom.shape)
    return C.T.asformat(fmt)  # the CSC of C is the CSR of C.T: one linear pass, no sort


# --------------------------------------------------------------------------- weight gradients


@with_geometry_doc
def conv_weight_grad(x: npt.ArrayLike, grad_output: npt.ArrayLike, weight_shape: Sequence[int], *,
                     stride: int | Sequence[int] = 1, padding: Padding = 0,
                     dilation: int | Sequence[int] = 1, groups: int = 1,
                     padding_mode: str = "zeros") -> np.ndarray:
    """``dL/dW`` of a convolution, summed over the batch, from the matrix's triples.

    Parameters
    ----------
    x : (N, C_in, *spatial) or (C_in, *spatial) array_like or torch.Tensor
        The layer's input.
    grad_output : (N, C_out, *out_spatial) or (C_out, *out_spatial) array_like
        ``dL/dy``, with the same number of samples as ``x``.
    weight_shape : (C_out, C_in/groups, *kernel) tuple of int
    GEOMETRY_PARAMETERS

    Returns
    -------
    dW : (C_out, C_in/groups, *kernel) ndarray
        Equal to autograd's ``weight.grad``. Since ``C(W)[row, col] += W.flat[tap]`` for each
        triple, ``dW.flat[tap] = sum over triples and samples of delta[row] * x[col]``; it is
        computed as one gather (the im2col matrix of each sample) and a matrix product,
        never by calling a convolution routine.

    Examples
    --------
    >>> import numpy as np, torch, torch.nn.functional as F
    >>> x, w = torch.rand(5, 3, 8, 8, dtype=torch.float64), torch.rand(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    >>> y = F.conv2d(x, w, stride=2, padding=1)
    >>> delta = torch.rand_like(y)
    >>> y.backward(delta)
    >>> dW = conv_weight_grad(x, delta, w.shape, stride=2, padding=1)
    >>> np.allclose(dW, w.grad.numpy())
    True
    """
    shape, label = _sample_shape(x, check_weight_shape(weight_shape, _CONV_LAYOUT, "weight_shape"))
    geom = conv_geometry(weight_shape, shape, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, padding_mode=padding_mode, _label=label)
    xa, da = _batch_pair(x, grad_output, geom, "x", "grad_output")
    return conv_pattern(geom).weight_grad(xa, da)


def conv_transpose_weight_grad(x: npt.ArrayLike, grad_output: npt.ArrayLike,
                               weight_shape: Sequence[int], *, stride: int | Sequence[int] = 1,
                               padding: int | Sequence[int] = 0, output_padding: int | Sequence[int] = 0,
                               dilation: int | Sequence[int] = 1, groups: int = 1) -> np.ndarray:
    """``dL/dW`` of a transposed convolution, summed over the batch.

    The transposed convolution is ``y = C(W).T @ x``, so with rows and columns of the same
    triples swapped, ``dW.flat[tap] = sum x[row] * grad_output[col]``: the weight gradient of
    the matching convolution with input ``grad_output`` and output gradient ``x``.

    Parameters
    ----------
    x : (N, C_in, *spatial) or (C_in, *spatial) array_like
        Input of the transposed convolution.
    grad_output : (N, C_out, *out_spatial) or (C_out, *out_spatial) array_like
    weight_shape : (C_in, C_out/groups, *kernel) tuple of int
    stride, padding, output_padding, dilation, groups
        As in :func:`conv_transpose_matrix`.

    Returns
    -------
    dW : (C_in, C_out/groups, *kernel) ndarray, equal to autograd's ``weight.grad``.

    Examples
    --------
    >>> import numpy as np, torch, torch.nn.functional as F
    >>> x = torch.rand(2, 4, 5, 5, dtype=torch.float64)
    >>> w = torch.rand(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    >>> y = F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    >>> y.backward(torch.ones_like(y))
    >>> dW = conv_transpose_weight_grad(x, torch.ones_like(y), w.shape, stride=2, padding=1,
    ...                                 output_padding=1)
    >>> np.allclose(dW, w.grad.numpy())
    True
    """
    shape, label = _sample_shape(x, check_weight_shape(weight_shape, _TRANSPOSE_LAYOUT, "weight_shape"))
    geom = conv_transpose_geometry(weight_shape, shape, stride=stride, padding=padding,
                                   output_padding=output_padding, dilation=dilation, groups=groups,
                                   _label=label)
    # the convolution of this geometry maps grad_output's space to x's space
    da, xa = _batch_pair(grad_output, x, geom, "grad_output", "x")
    return conv_pattern(geom).weight_grad(da, xa)


@with_geometry_doc
def conv_weight_jacobian(x: npt.ArrayLike, weight_shape: Sequence[int], *,
                         stride: int | Sequence[int] = 1, padding: Padding = 0,
                         dilation: int | Sequence[int] = 1, groups: int = 1, padding_mode: str = "zeros",
                         format: str = "csr") -> sp.sparray:
    """Sparse Jacobian of the output w.r.t. the weights for one sample (the im2col matrix).

    Parameters
    ----------
    x : (C_in, *spatial) array_like or torch.Tensor
        One sample (a leading batch axis of size 1 is accepted).
    weight_shape : (C_out, C_in/groups, *kernel) tuple of int
    GEOMETRY_PARAMETERS
    format : {'csr', 'csc', 'coo', 'bsr', 'dia', 'dok', 'lil'}, default 'csr'

    Returns
    -------
    J : (C_out * prod(out_spatial), prod(weight_shape)) scipy.sparse array
        ``J[row, tap] = x[col]`` for each triple (the same triples as :func:`conv_matrix`,
        read with ``tap`` as the column), so ``J @ W.ravel() == conv(x, W).ravel()`` and
        ``J.T @ delta.ravel()`` is the weight gradient. Block diagonal over output channels.

    Examples
    --------
    >>> import numpy as np, torch, torch.nn.functional as F
    >>> x, w = np.random.rand(3, 6, 6), np.random.rand(2, 3, 3, 3)
    >>> J = conv_weight_jacobian(x, w.shape, padding=1)
    >>> ref = F.conv2d(torch.from_numpy(x)[None], torch.from_numpy(w), padding=1)
    >>> np.allclose(J @ w.ravel(), ref.numpy().ravel())
    True
    """
    fmt = check_format(format)
    shape, label = _sample_shape(x, check_weight_shape(weight_shape, _CONV_LAYOUT, "weight_shape"))
    geom = conv_geometry(weight_shape, shape, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, padding_mode=padding_mode, _label=label)
    xa = batched(as_array(x, "x"), "x", geom.in_channels, geom.in_spatial)
    if xa.shape[0] != 1:
        raise ValueError(
            f"x must be one sample (C_in, *spatial) for the Jacobian; got "
            f"x.shape={tuple(xa.shape)}."
        )
    nnz = geom.out_channels * prod(geom.out_spatial) * geom.taps
    check_size("conv_weight_jacobian", nnz * (xa.dtype.itemsize + 8),
               f"at most {nnz:,} nonzeros, shape {geom.shape[0]:,} x {prod(geom.weight_shape):,}")
    data, indices, indptr = conv_pattern(geom).weight_jacobian_arrays(xa[0])
    return csr(data, indices, indptr, (geom.shape[0], prod(geom.weight_shape)), fmt)
