"""The index arithmetic every reading shares: window tables and the one im2col gather.

A convolution, a pooling and the matrix-free operator all read their input through a
*window table*: entry ``[r, t]`` is the input column that tap ``t`` of output position ``r``
reads, built per spatial axis (:func:`axis_positions`, where the padding mode maps a padded
position back into the input) and combined by broadcasting (:func:`window_table`). A tap that
reads zero padding points one past the last column, so the :func:`im2col` gather reads it from
one appended entry. The compressed matrices of the library are one block of rows stacked
with shifted columns (:func:`stacked_indices`), with int32 indices while they fit
(:func:`index_dtype`). Pure numpy: no scipy, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import Any

import numpy as np
import numpy.typing as npt

_INT32_MAX = np.iinfo(np.int32).max


def index_dtype(*maxima: int) -> type[np.signedinteger[Any]]:
    """int32 while every index (and the nonzero count) fits, int64 past."""
    return np.int32 if max(maxima) <= _INT32_MAX else np.int64


def row_pointers(counts: np.ndarray, repeats: int = 1, dtype: npt.DTypeLike = np.int64) -> np.ndarray:
    """``indptr`` of a compressed matrix whose rows hold ``counts`` entries, the block of rows
    repeated ``repeats`` times: ``[0, cumsum(tile(counts, repeats))]``."""
    indptr = np.zeros(counts.size * repeats + 1, dtype=dtype)
    np.cumsum(np.tile(counts.astype(dtype, copy=False), repeats), out=indptr[1:])
    return indptr


def stacked_indices(counts: np.ndarray, cols: np.ndarray, offsets: np.ndarray,
                    shape: Sequence[int]) -> tuple[npt.NDArray[np.signedinteger[Any]], np.ndarray]:
    """``(indices, indptr)`` of a CSR matrix of ``shape`` made of one block of rows stacked
    ``len(offsets)`` times: each copy's rows hold ``counts`` entries, copy ``i`` has the
    columns ``cols + offsets[i]`` (``cols`` one list for every copy, or one per copy,
    ``(len(offsets), L)``). Indices are int32 while they fit.

    A convolution stacks its block once per output channel (shifted to the group's columns),
    pooling and the Jacobian once per channel (block diagonal).
    """
    reps, width = len(offsets), cols.shape[-1]
    idx = index_dtype(reps * width, *shape)
    indices = np.empty((reps, width), dtype=idx)
    np.add(cols.astype(idx, copy=False), np.asarray(offsets).astype(idx)[:, None], out=indices)
    return indices.reshape(-1), row_pointers(counts, reps, idx)


# --------------------------------------------------------------------------- windows


def axis_positions(n_out: int, k: int, stride: int, dilation: int, pad_lo: int, n_in: int,
                   mode: str) -> npt.NDArray[np.intp]:
    """Input position read by tap ``k`` of output ``o`` along one axis; -1 for zero padding.

    ``i = o * stride - pad_lo + k * dilation``, then mapped into ``[0, n_in)`` by the padding
    mode exactly as ``torch.nn.functional.pad`` does.
    """
    i: npt.NDArray[np.intp] = np.arange(n_out)[:, None] * stride - pad_lo + np.arange(k)[None, :] * dilation
    if mode == "zeros":
        return np.where((i >= 0) & (i < n_in), i, -1)
    if mode == "replicate":
        return np.clip(i, 0, n_in - 1)
    if mode == "circular":
        return np.mod(i, n_in)
    if mode == "symmetric":  # edge repeated (numpy's 'symmetric', TF's MirrorPad SYMMETRIC): -1 -> 0
        i = np.where(i < 0, -i - 1, i)
        return np.where(i >= n_in, 2 * n_in - 1 - i, i)
    # reflect (edge not repeated): -1 -> 1, n_in -> n_in - 2; padding < n_in reflects once
    i = np.abs(i)
    return np.where(i >= n_in, 2 * (n_in - 1) - i, i)


def window_table(axes: Sequence[np.ndarray], in_spatial: Sequence[int], *,
                 channels: int = 1) -> npt.NDArray[np.signedinteger[Any]]:
    """Per-axis positions ``(O_j, K_j)`` -> the table ``(prod O, channels * prod K)``.

    Entry ``[r, t]`` is the flat input column (C order: channel, then spatial) read by tap
    ``t = (c, k_1, ..., k_n)`` of output position ``r = (o_1, ..., o_n)``, or
    ``channels * P_in`` (one past the last column) where any axis reads padding (position
    ``-1``). The spatial part is built by broadcasting over ``(o_1, ..., o_n, k_1, ..., k_n)``;
    the channels add one offset each, so a row scans its taps in C order.
    """
    n = len(axes)
    p_in = prod(in_spatial)
    out_sp, ker = tuple(p.shape[0] for p in axes), tuple(p.shape[1] for p in axes)
    end = channels * p_in
    dtype = index_dtype(end + (channels - 1) * p_in)
    spatial = np.zeros((1,) * (2 * n), dtype=dtype)
    invalid = np.zeros((1,) * (2 * n), dtype=bool)
    for j, pos in enumerate(axes):
        shape = [1] * (2 * n)
        shape[j], shape[n + j] = pos.shape
        pos = pos.reshape(shape)
        spatial = spatial + (pos * prod(in_spatial[j + 1:])).astype(dtype)
        invalid = invalid | (pos < 0)
    spatial = np.where(invalid, end, spatial).astype(dtype, copy=False)
    spatial = np.broadcast_to(spatial, out_sp + ker).reshape(prod(out_sp), 1, prod(ker))
    if channels == 1:
        return np.ascontiguousarray(spatial[:, 0])
    table = np.empty((prod(out_sp), channels, prod(ker)), dtype=dtype)
    np.add(spatial, (np.arange(channels, dtype=dtype) * p_in)[None, :, None], out=table)
    np.minimum(table, end, out=table)  # padding read from any channel -> the one fill column
    return table.reshape(prod(out_sp), channels * prod(ker))


def im2col(x: np.ndarray, table: np.ndarray, *, axis: int = -1, fill: float = 0,
           dtype: npt.DTypeLike | None = None) -> np.ndarray:
    """The im2col gather, the one every reading of a window table uses.

    ``x`` holds, along ``axis``, the columns a table indexes (one group's input features, or
    one channel's positions); the table points one past the last of them where a tap reads
    padding, which reads ``fill``. Returns ``x`` with ``axis`` replaced by the table's axes:
    ``U[..., r, t, ...] = x[..., table[r, t], ...]``, in ``dtype`` (default ``x.dtype``).
    """
    axis = axis % x.ndim
    shape = list(x.shape)
    shape[axis] += 1
    xp = np.empty(shape, dtype=x.dtype if dtype is None else dtype)
    head = (slice(None),) * axis
    xp[head + (slice(0, -1),)] = x
    xp[head + (-1,)] = fill
    return np.take(xp, table, axis=axis)
