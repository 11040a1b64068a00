"""Pooling layers as scipy.sparse matrices: average, max (per sample) and adaptive average.

Pooling is a depthwise convolution with a kernel of ones: each output position reads a
window of input positions of its own channel. The windows (:class:`~toeplitz_conv.geometry.PoolGeometry`,
checked as torch checks them) of one channel are one table,

    ``src[r, t]``: the input position (within the channel) read by tap ``t`` of output
    position ``r``, or ``P_in`` (one past the last position) where the tap reads padding,

built per axis by :mod:`toeplitz_conv.indexing` exactly as a convolution's
(``i = o * stride - padding + t * dilation``) and combined by broadcasting. Each pooling is
one reading of it, with PyTorch's semantics (``ceil_mode``, ``count_include_pad``,
``divisor_override``, tie-breaking of max pooling):

- average pooling: every valid tap with coefficient ``1 / divisor(r)``;
- max pooling: one tap per row, the first maximum of the window in scan order, as torch's
  ``return_indices`` picks it (data-dependent: a selection matrix per sample);
- adaptive average pooling: windows ``[floor(o i / O), ceil((o + 1) i / O))`` per axis.

The matrix of ``C`` channels is block diagonal, the same block per channel; rows and
columns follow the library's convention (one sample flattened in C order: channel, then
spatial).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from math import prod
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ._args import as_array, check_bool, check_int_range, is_int
from ._sparse import check_format, csr
from .pool_geometry import PoolGeometry, adaptive_output_size, pool_input_shape
from .indexing import im2col, stacked_indices, window_table
from .memory import check_size

# --------------------------------------------------------------------------- matrices


def _outer(factors: Iterable[npt.ArrayLike]) -> npt.NDArray[np.float64]:
    """Product over axes of per-axis vectors, flattened in C order: ``(prod O,)``."""
    out = np.ones((), dtype=np.float64)
    for f in factors:
        out = np.multiply.outer(out, np.asarray(f, dtype=np.float64))
    return out.reshape(-1)


def _value_dtype(dtype: npt.DTypeLike) -> np.dtype:
    """The dtype of a pooling matrix: a numpy float or complex dtype (an average of
    integers or booleans would be truncated or summed)."""
    if type(dtype).__module__.startswith("torch"):
        raise TypeError(f"dtype must be a numpy dtype such as np.float64 (not a torch dtype); got {dtype}.")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a numpy float or complex dtype such as np.float64; got {dtype!r}.") from None
    if dt.kind not in "fc" or dt == np.float16:
        raise TypeError(
            f"dtype must be a float or complex dtype (float32, float64, complex64, complex128): "
            f"pooling weights are fractions; got {dt}."
        )
    return dt


def _check_pool_size(what: str, channels: int, p_out: int, taps: int, itemsize: int,
                     window_bytes: int = 0) -> None:
    """Refuse before any array: the window table and the matrix of ``channels`` blocks of
    ``p_out`` rows, at most ``taps`` entries each; ``window_bytes``: max pooling reads every
    window's values (bytes per table entry), and keeps one entry per row."""
    nnz = channels * p_out * (1 if window_bytes else taps)
    detail = (f"{channels:,} channels x {p_out:,} output positions x {taps:,} taps"
              + (" of window values read" if window_bytes else f": up to {nnz:,} nonzeros"))
    check_size(what, p_out * taps * (24 + window_bytes) + nnz * (itemsize + 8), detail)


def _block_diagonal(src: np.ndarray, coef: np.ndarray, channels: int, p_in: int, dtype: np.dtype,
                    fmt: str) -> sp.sparray:
    """The matrix ``kron(I_channels, B)`` where ``B[r, src[r, t]] = coef[r]`` (valid taps)."""
    p_out = src.shape[0]
    keep = src < p_in
    counts = keep.sum(axis=1)
    cols = src[keep]  # ascending in each row: positions grow with the tap index
    nnz = channels * cols.size
    check_size("the pooling matrix", nnz * (np.dtype(dtype).itemsize + 8),
               f"{nnz:,} nonzeros, shape {channels * p_out:,} x {channels * p_in:,}")
    shape = (channels * p_out, channels * p_in)
    indices, indptr = stacked_indices(counts, cols, np.arange(channels) * p_in, shape)
    vals = np.repeat(np.asarray(coef, dtype=dtype), counts)
    return csr(np.tile(vals, channels), indices, indptr, shape, fmt)


def selection_matrix(idx: np.ndarray, p_in: int, dtype: npt.DTypeLike, format: str = "csr") -> sp.sparray:
    """0/1 matrix with one entry per row, ``S[(c, r), (c, idx[c, r])] = 1`` for ``idx`` of shape
    ``(C, P_out)``: block diagonal, one block per channel (a batch stacks ``N * C`` blocks)."""
    c, p_out = idx.shape
    shape = (c * p_out, c * p_in)
    indices, indptr = stacked_indices(np.ones(p_out, np.int64), idx, np.arange(c) * p_in, shape)
    return csr(np.ones(c * p_out, dtype=dtype), indices, indptr, shape, format)


# --------------------------------------------------------------------------- average


def avg_pool_matrix(input_shape: Sequence[int], kernel_size: int | Sequence[int], *,
                    stride: int | Sequence[int] | None = None, padding: int | Sequence[int] = 0,
                    ceil_mode: bool = False, count_include_pad: bool = True,
                    divisor_override: int | None = None, dtype: npt.DTypeLike = np.float64,
                    format: str = "csr") -> sp.sparray:
    """The fixed sparse matrix P of average pooling: ``y.ravel() = P @ x.ravel()``.

    Parameters
    ----------
    input_shape : (C, *spatial) tuple of int
        Shape of one sample; 1, 2 or 3 spatial axes for ``avg_pool1d/2d/3d``.
    kernel_size : int or tuple of int
    stride : int or tuple of int, optional
        Default: ``kernel_size``.
    padding : int or tuple of int, default 0
        Implicit zero padding on both sides, at most half the kernel (as in torch).
    ceil_mode : bool, default False
        Use ceil instead of floor for the output size (a last, partial window is kept when
        it starts inside the input or the left padding), as torch.
    count_include_pad : bool, default True
        Count padded positions in the divisor (torch's rule: the window clipped to the
        padded input); otherwise divide by the number of input positions read.
    divisor_override : int, optional
        Divide every window by this number instead.
    dtype : numpy dtype, default float64
    format : {'csr', 'csc', 'coo', 'bsr', 'dia', 'dok', 'lil'}, default 'csr'

    Returns
    -------
    P : (C * prod(out_spatial), C * prod(spatial)) scipy.sparse array
        Block diagonal over channels. ``P.T @ delta`` is the input gradient (the average
        unpooling of ``delta``).

    Notes
    -----
    One entry, per channel, for the window of output ``o`` (per axis
    ``start = o * stride - padding``)::

        P[o, i] = 1 / divisor(o)    for start <= i < start + kernel, 0 <= i < input size

    Examples
    --------
    >>> import numpy as np, torch, torch.nn.functional as F
    >>> x = np.random.rand(2, 5, 5)
    >>> P = avg_pool_matrix(x.shape, 2, padding=1, ceil_mode=True, count_include_pad=False)
    >>> P.shape
    (18, 50)
    >>> ref = F.avg_pool2d(torch.from_numpy(x), 2, padding=1, ceil_mode=True,
    ...                    count_include_pad=False)
    >>> np.allclose(P @ x.ravel(), ref.numpy().ravel())
    True
    """
    fmt = check_format(format)
    dtype = _value_dtype(dtype)
    geom = PoolGeometry(input_shape, kernel_size, stride, padding, 1, ceil_mode, "avg_pool_matrix")
    count_include_pad = check_bool("count_include_pad", count_include_pad)
    if divisor_override is not None:
        if not is_int(divisor_override):
            raise TypeError(f"divisor_override must be a nonzero integer or None; got {divisor_override!r}.")
        if divisor_override == 0:
            raise ValueError("divisor_override must be a nonzero integer or None (as in torch); got 0.")
        check_int_range("divisor_override", divisor_override)
    _check_pool_size("avg_pool_matrix", geom.channels, prod(geom.out_spatial), prod(geom.kernel),
                     dtype.itemsize)
    if len(geom.kernel) == 3 and any(i < k for i, k in zip(geom.in_spatial, geom.kernel)):
        raise ValueError(  # torch's avg_pool3d (only it) refuses an input smaller than the kernel
            f"input_shape's spatial size must be at least kernel_size in every dimension for 3D "
            f"average pooling (as in torch's avg_pool3d, even with padding); got spatial size "
            f"{geom.in_spatial} for kernel_size={geom.kernel}."
        )
    tables = geom.axis_tables()
    if divisor_override is not None:
        divisor = np.full(prod(geom.out_spatial), float(divisor_override))
    elif count_include_pad:
        # torch: the window clipped to the padded input, [start, min(start + k, i + p))
        sizes = [np.minimum(np.arange(o) * s - p + k, i + p) - (np.arange(o) * s - p)
                 for o, k, s, p, i in zip(geom.out_spatial, geom.kernel, geom.stride,
                                          geom.padding, geom.in_spatial)]
        divisor = _outer(sizes)
    else:
        divisor = _outer([(t >= 0).sum(axis=1) for t in tables])
    with np.errstate(divide="ignore"):
        coef = np.where(divisor != 0, 1.0 / np.where(divisor != 0, divisor, 1.0), 0.0)
    return _block_diagonal(window_table(tables, geom.in_spatial), coef, geom.channels,
                           prod(geom.in_spatial), dtype, fmt)


def adaptive_avg_pool_matrix(input_shape: Sequence[int],
                             output_size: int | None | Sequence[int | None], *,
                             dtype: npt.DTypeLike = np.float64, format: str = "csr") -> sp.sparray:
    """The sparse matrix of adaptive average pooling (``adaptive_avg_pool1d/2d/3d``).

    Parameters
    ----------
    input_shape : (C, *spatial) tuple of int
        Shape of one sample; 1, 2 or 3 spatial axes.
    output_size : int or tuple of (int or None)
        Spatial output size; ``None`` keeps that axis's input size, ``1`` everywhere is
        global average pooling.
    dtype : numpy dtype, default float64
    format : {'csr', 'csc', 'coo', 'bsr', 'dia', 'dok', 'lil'}, default 'csr'

    Returns
    -------
    P : (C * prod(output_size), C * prod(spatial)) scipy.sparse array

    Notes
    -----
    Output ``o`` of an axis of input size ``i`` and output size ``O`` averages the inputs
    ``floor(o * i / O) <= j < ceil((o + 1) * i / O)``, as torch; windows may overlap.

    Examples
    --------
    >>> import numpy as np, torch, torch.nn.functional as F
    >>> x = np.random.rand(3, 7, 10)
    >>> P = adaptive_avg_pool_matrix(x.shape, (3, None))
    >>> P.shape
    (90, 210)
    >>> ref = F.adaptive_avg_pool2d(torch.from_numpy(x), (3, None))
    >>> np.allclose(P @ x.ravel(), ref.numpy().ravel())
    True
    >>> G = adaptive_avg_pool_matrix(x.shape, 1)  # global average pooling
    >>> np.allclose(G @ x.ravel(), x.mean(axis=(1, 2)))
    True
    """
    fmt = check_format(format)
    dtype = _value_dtype(dtype)
    shape = pool_input_shape(input_shape, "input_shape")
    in_sp = shape[1:]
    out_sp = adaptive_output_size(output_size, in_sp)
    widest = prod(-(-i // o) + 1 for i, o in zip(in_sp, out_sp))  # a window spans at most this
    _check_pool_size("adaptive_avg_pool_matrix", shape[0], prod(out_sp), widest, dtype.itemsize)
    tables, counts = [], []
    for i, o in zip(in_sp, out_sp):
        oo = np.arange(o)
        start = (oo * i) // o
        end = -((-(oo + 1) * i) // o)  # ceil
        width = int((end - start).max())
        pos = start[:, None] + np.arange(width)[None, :]
        tables.append(np.where(pos < end[:, None], pos, -1))
        counts.append(end - start)
    return _block_diagonal(window_table(tables, in_sp), 1.0 / _outer(counts), shape[0],
                           prod(in_sp), dtype, fmt)



def max_pool_indices(x: np.ndarray, geom: PoolGeometry,
                     src: np.ndarray | None = None) -> npt.NDArray[np.signedinteger[Any]]:
    """Flat input position (within the channel) picked by each output of max pooling.

    ``x`` is ``(N, C, P_in)``; returns ``(N, C, P_out)`` int64. torch's rule (CPU kernel):
    scan the window in C order and keep the first strict maximum; a NaN wins (the last NaN
    of the window); padding is never picked (if every input read is ``-inf``, the first
    input position of the window). A window that reads only padding (possible with
    dilation, e.g. input size 1, kernel 2, dilation 2, padding 1) is refused: torch outputs
    ``-inf`` there with an index outside the input.
    """
    src = geom.table() if src is None else src
    n, c, p_in = x.shape
    vals = im2col(x, src, axis=2, fill=-np.inf, dtype=np.result_type(x.dtype, np.float32))
    tap = np.argmax(vals, axis=3)
    nan = np.isnan(vals)
    if nan.any():
        last_nan = nan.shape[3] - 1 - np.argmax(nan[..., ::-1], axis=3)
        tap = np.where(nan.any(axis=3), last_nan, tap)
    valid = src < p_in  # (P_out, K)
    if not valid.all():
        first_valid = np.argmax(valid, axis=1)  # (P_out,)
        picked_pad = ~np.take_along_axis(valid[None, None], tap[..., None], axis=3)[..., 0]
        tap = np.where(picked_pad, first_valid, tap)
    idx = np.take_along_axis(np.broadcast_to(src, (n, c) + src.shape), tap[..., None], axis=3)[..., 0]
    if (idx >= p_in).any():
        raise ValueError(
            f"max pooling has a window that reads only padding (its dilated taps skip the "
            f"whole input), where torch outputs -inf and an index outside the input; got "
            f"input_shape={geom.in_shape}, kernel_size={geom.kernel}, padding={geom.padding}, "
            f"dilation={geom.dilation}. Use less padding or dilation."
        )
    return idx


def max_pool_matrix(x: npt.ArrayLike, kernel_size: int | Sequence[int], *,
                    stride: int | Sequence[int] | None = None, padding: int | Sequence[int] = 0,
                    dilation: int | Sequence[int] = 1, ceil_mode: bool = False, format: str = "csr",
                    spatial_dims: int | None = None) -> sp.sparray:
    """The 0/1 selection matrix S of max pooling for one sample: ``S @ x.ravel()`` is the output.

    Max pooling is linear only per input: S depends on where each window's maximum is.

    Parameters
    ----------
    x : (C, *spatial) array_like or torch.Tensor
        One sample (no batch axis); 1, 2 or 3 spatial axes for ``max_pool1d/2d/3d``.
    kernel_size : int or tuple of int
    stride : int or tuple of int, optional
        Default: ``kernel_size``.
    padding : int or tuple of int, default 0
        Implicit ``-inf`` padding, at most half the kernel (as in torch).
    dilation : int or tuple of int, default 1
    ceil_mode : bool, default False
    format : {'csr', 'csc', 'coo', 'bsr', 'dia', 'dok', 'lil'}, default 'csr'
    spatial_dims : {1, 2, 3}, optional
        Spatial axes of ``x``; default ``x.ndim - 1``, or the length of a tuple given for
        ``kernel_size``/``stride``/``padding``/``dilation``. A 4D ``x`` with only int
        arguments is refused without it: it reads as a batch of 2D samples as much as one 3D
        sample (pass ``spatial_dims=3`` for the latter, one sample at a time for the former).

    Returns
    -------
    S : (C * prod(out_spatial), C * prod(spatial)) scipy.sparse array, dtype of ``x``
        One 1 per row, in the column torch's ``return_indices`` reports (ties: the first
        maximum of the window in scan order; a NaN wins). ``S.T @ delta`` is exactly
        autograd's input gradient: ``delta`` scattered back to the argmax positions.

    Examples
    --------
    >>> import numpy as np, torch, torch.nn.functional as F
    >>> x = np.random.rand(2, 6, 6)
    >>> S = max_pool_matrix(x, 3, stride=2, padding=1)
    >>> S.shape, S.nnz
    ((18, 72), 18)
    >>> ref, ind = F.max_pool2d(torch.from_numpy(x), 3, stride=2, padding=1, return_indices=True)
    >>> np.array_equal(S @ x.ravel(), ref.numpy().ravel())
    True
    >>> np.array_equal(S.indices % 36, ind.numpy().ravel())  # column within the channel
    True
    """
    fmt = check_format(format)
    xa = as_array(x, "x")
    if xa.ndim not in (2, 3, 4):
        raise ValueError(
            f"x must be one sample (C, *spatial) with 1, 2 or 3 spatial axes (no batch "
            f"axis); got x.shape={tuple(xa.shape)}."
        )
    _check_spatial_dims(xa, spatial_dims, kernel_size, stride, padding, dilation)
    geom = PoolGeometry(xa.shape, kernel_size, stride, padding, dilation, ceil_mode, "max_pool_matrix")
    _check_pool_size("max_pool_matrix", geom.channels, prod(geom.out_spatial), prod(geom.kernel),
                     xa.dtype.itemsize, window_bytes=geom.channels * max(8, xa.dtype.itemsize))
    idx = max_pool_indices(xa.reshape(1, geom.channels, -1), geom)[0]
    return selection_matrix(idx, prod(geom.in_spatial), xa.dtype, fmt)


def _check_spatial_dims(xa: np.ndarray, spatial_dims: int | None, *args: object) -> None:
    """One sample of ``spatial_dims`` spatial axes, never a batch read as a 3D sample."""
    lengths = {len(a) for a in args if isinstance(a, (tuple, list)) and len(a) > 1}
    if spatial_dims is None:
        if lengths:  # a tuple argument says the rank; each argument's length is checked later
            return
        if xa.ndim == 4:
            raise ValueError(
                f"x of shape {tuple(xa.shape)} is ambiguous: one sample (C, D, H, W) for 3D "
                f"pooling, or a batch (N, C, H, W) of 2D samples. max_pool_matrix takes one "
                f"sample, no batch axis: pass spatial_dims=3 for a 3D sample, or x[n] for each "
                f"2D sample."
            )
        return
    if spatial_dims not in (1, 2, 3) or isinstance(spatial_dims, bool):
        raise ValueError(f"spatial_dims must be 1, 2 or 3; got {spatial_dims!r}.")
    if xa.ndim != spatial_dims + 1:
        raise ValueError(
            f"x must be one sample (C, *spatial) with {spatial_dims} spatial axes (no batch "
            f"axis) for {spatial_dims}D pooling; got x.shape={tuple(xa.shape)}."
        )
