"""Geometry -> ``(row, col, tap)`` triples: the index core of the library (pure numpy).

A convolution matrix ``C(W)`` has one stored entry per triple::

    C(W)[row, col] += W.flat[tap]

Every output channel ``co`` of a group sees the same input positions, so the triples of the
whole matrix are those of one *block* (the rows of one output channel, the columns of its
group) shifted by ``co * P_out`` rows, ``group * C_in/groups * P_in`` columns and
``co * taps`` taps, where ``P_out``/``P_in`` count output/input positions and
``taps = C_in/groups * prod(kernel)``. The block is held as one table:

    ``src[r, t]``: the column (within the group) that tap ``t`` of output position ``r`` reads,
    or ``P_group = C_in/groups * P_in`` where it reads zero padding.

Each reading of the library is a few vectorised lines over this table: the CSR matrix
(:meth:`ConvPattern.matrix`), the weight gradient (:meth:`ConvPattern.weight_grad`), the
im2col Jacobian (:meth:`ConvPattern.weight_jacobian`) and the explicit triples
(:meth:`ConvPattern.triples`). Padding modes other than zeros only change which column a
padded tap reads, so several taps may land on one column: they add.
"""

from __future__ import annotations

from functools import lru_cache
from math import prod

import numpy as np

from ._validate import check_out_array, check_size, matching_weight
from .geometry import ConvGeometry

_INT32_MAX = np.iinfo(np.int32).max
_TABLE_BYTES_PER_ENTRY = 24  # int64 columns + mask while building, int32/int64 table kept


def index_dtype(*maxima: int) -> type:
    """int32 while every index (and the nonzero count) fits, int64 past."""
    return np.int32 if max(maxima) <= _INT32_MAX else np.int64


def _axis_positions(n_out, k, stride, dilation, pad_lo, n_in, mode) -> np.ndarray:
    """Input position read by tap ``k`` of output ``o`` along one axis; -1 for zero padding.

    ``i = o * stride - pad_lo + k * dilation``, then mapped into ``[0, n_in)`` by the padding
    mode exactly as ``torch.nn.functional.pad`` does.
    """
    i = np.arange(n_out)[:, None] * stride - pad_lo + np.arange(k)[None, :] * dilation
    if mode == "zeros":
        return np.where((i >= 0) & (i < n_in), i, -1)
    if mode == "replicate":
        return np.clip(i, 0, n_in - 1)
    if mode == "circular":
        return np.mod(i, n_in)
    # reflect (edge not repeated): -1 -> 1, n_in -> n_in - 2; padding < n_in reflects once
    i = np.abs(i)
    return np.where(i >= n_in, 2 * (n_in - 1) - i, i)


def window_table(axes, in_spatial, *, channels: int = 1, fill: int = -1) -> np.ndarray:
    """Per-axis positions ``(O_j, K_j)`` -> the table ``(prod O, channels * prod K)``.

    Entry ``[r, t]`` is the flat input column (C order: channel, then spatial) read by tap
    ``t = (c, k_1, ..., k_n)`` of output position ``r = (o_1, ..., o_n)``, or ``fill`` where
    any axis reads padding (position ``-1``); with several channels ``fill`` must be
    ``channels * P_in`` (one past the last column). The spatial part is built by
    broadcasting over ``(o_1, ..., o_n, k_1, ..., k_n)``; the channels add one offset each,
    so a row scans its taps in C order.
    """
    n = len(axes)
    p_in = prod(in_spatial)
    out_sp, ker = tuple(p.shape[0] for p in axes), tuple(p.shape[1] for p in axes)
    end = channels * p_in
    dtype = index_dtype(end + (channels - 1) * p_in, abs(fill))
    spatial = np.zeros((1,) * (2 * n), dtype=dtype)
    invalid = np.zeros((1,) * (2 * n), dtype=bool)
    for j, pos in enumerate(axes):
        shape = [1] * (2 * n)
        shape[j], shape[n + j] = pos.shape
        pos = pos.reshape(shape)
        spatial = spatial + (pos * prod(in_spatial[j + 1:])).astype(dtype)
        invalid = invalid | (pos < 0)
    spatial = np.where(invalid, fill if channels == 1 else end, spatial).astype(dtype, copy=False)
    spatial = np.broadcast_to(spatial, out_sp + ker).reshape(prod(out_sp), 1, prod(ker))
    if channels == 1:
        return np.ascontiguousarray(spatial[:, 0])
    if fill != end:
        raise ValueError(f"fill must be channels * P_in = {end} with several channels; got {fill}.")
    table = np.empty((prod(out_sp), channels, prod(ker)), dtype=dtype)
    np.add(spatial, (np.arange(channels, dtype=dtype) * p_in)[None, :, None], out=table)
    np.minimum(table, end, out=table)  # padding read from any channel -> the one fill column
    return table.reshape(prod(out_sp), channels * prod(ker))


def estimate_nnz(g: ConvGeometry) -> int:
    """Stored entries of the matrix, exact for zero padding, an upper bound otherwise."""
    per_axis = [
        int((_axis_positions(o, k, s, d, lo, n, g.padding_mode) >= 0).sum())
        for o, k, s, d, lo, n in zip(g.out_spatial, g.kernel, g.stride, g.dilation, g.pad_lo, g.in_spatial)
    ]
    return g.out_channels * (g.in_channels // g.groups) * prod(per_axis)


class ConvPattern:
    """The triples of one convolution geometry, computed once, read many ways.

    Attributes
    ----------
    geometry : ConvGeometry
    src : (P_out, taps) int ndarray
        Column within the group read by each tap of each output position of one output
        channel; ``pad_col`` where the tap reads zero padding.
    indptr, cols : CSR of one block, columns sorted and unique in each row
    taps, starts : the taps summed into each block entry: entry ``e`` is the sum of
        ``W[co].flat[taps[starts[e]:starts[e + 1]]]`` (``starts is None``: one tap each,
        ``taps[e]``; always so for zero padding).
    """

    def __init__(self, geometry: ConvGeometry):
        g = self.geometry = geometry
        self.cin_g = g.in_channels // g.groups
        self.cout_g = g.out_channels // g.groups
        self.p_in, self.p_out = prod(g.in_spatial), prod(g.out_spatial)
        self.pad_col = self.cin_g * self.p_in
        entries = self.p_out * g.taps
        check_size("the index table of this layer", entries * _TABLE_BYTES_PER_ENTRY,
                   f"{self.p_out:,} output positions x {g.taps:,} taps")
        self.src = self._source_table()
        self._block_csr()
        for arr in (self.src, self.indptr, self.cols, self._taps, self.starts, getattr(self, "_keep", None)):
            if arr is not None:
                arr.flags.writeable = False
        self._runs = None

    # ------------------------------------------------------------------ geometry -> table
    def _source_table(self) -> np.ndarray:
        g = self.geometry
        axes = [_axis_positions(g.out_spatial[j], g.kernel[j], g.stride[j], g.dilation[j],
                                g.pad_lo[j], g.in_spatial[j], g.padding_mode) for j in range(g.ndim)]
        return window_table(axes, g.in_spatial, channels=self.cin_g, fill=self.pad_col)

    # ------------------------------------------------------------------ table -> block CSR
    def _block_csr(self) -> None:
        src = self.src
        if self.geometry.padding_mode == "zeros":
            # along a row, taps run over (c_in, k_1, ..., k_n) and the positions they read
            # grow with each index: the valid columns are already sorted and unique
            keep = self._keep = src != self.pad_col
            counts = np.count_nonzero(keep, axis=1)
            self.cols = src[keep]
            self._taps = None  # the tap of each entry: np.nonzero(keep)[1], made when asked
            self.starts = None
            self._program = keep
        else:
            # every tap reads a real column; sort each row and merge repeated columns
            order = np.argsort(src, axis=1, kind="stable").astype(src.dtype)
            ssrc = np.take_along_axis(src, order, axis=1)
            new = np.ones(src.shape, dtype=bool)
            new[:, 1:] = ssrc[:, 1:] != ssrc[:, :-1]
            counts = new.sum(axis=1)
            self.cols = ssrc[new]
            self._taps = order.reshape(-1)
            self.starts = np.flatnonzero(new).astype(src.dtype)
            self._program = np.concatenate([order, new], axis=1)
        self.indptr = _cumsum0(counts)

    @property
    def taps(self) -> np.ndarray:
        """The weight tap of each triple of one block, in CSR order (read-only)."""
        if self._taps is None:
            self._taps = np.nonzero(self._keep)[1].astype(self.src.dtype)
            self._taps.flags.writeable = False
        return self._taps

    @property
    def nnz(self) -> int:
        """Stored entries of the full matrix."""
        return self.geometry.out_channels * int(self.cols.size)

    # ------------------------------------------------------------------ reading: values
    def _row_runs(self):
        """Maximal runs ``(first_row, n_rows)`` of block rows that sum the same taps."""
        if self._runs is None:
            prog = self._program
            same = np.all(prog[1:] == prog[:-1], axis=1) if prog.shape[1] else np.ones(len(prog) - 1, bool)
            first = np.flatnonzero(np.concatenate([[True], ~same]))
            self._runs = list(zip(first.tolist(), np.diff(np.append(first, len(prog))).tolist()))
            self._program = None  # (zero padding keeps it as self._keep)
        return self._runs

    def _row_values(self, w3: np.ndarray, r0: int, r1: int) -> np.ndarray:
        """Values of block rows ``r0:r1`` for all channels: ``(G, C_out/G, entries)``."""
        if self.starts is None:  # zero padding: the valid taps of these rows, in order
            return np.take(w3, np.nonzero(self._keep[r0:r1])[1], axis=2)
        e0, e1 = int(self.indptr[r0]), int(self.indptr[r1])
        t0, t1 = r0 * self.geometry.taps, r1 * self.geometry.taps  # every tap of every row
        return np.add.reduceat(np.take(w3, self.taps[t0:t1], axis=2), self.starts[e0:e1] - t0, axis=2)

    def values(self, weight, out: np.ndarray | None = None) -> np.ndarray:
        """``C.data`` for ``weight``, in CSR order: the one gather that rebuilds C.

        ``weight`` (numpy or torch) must have this geometry's weight shape; ``out`` may be
        an existing matrix's ``C.data`` to refresh it in place (no new sort, no new indices).

        Rows that sum the same taps (all interior positions of an image row, say) share
        their values, so runs of them are written as broadcast copies.
        """
        g = self.geometry
        weight = matching_weight(weight, g.weight_shape)
        w3 = np.ascontiguousarray(weight).reshape(g.groups, self.cout_g, g.taps)
        L = self.cols.size
        if out is None:
            out = np.empty((g.groups, self.cout_g, L), dtype=weight.dtype)
        check_out_array(out, self.nnz)
        out = out.reshape(g.groups, self.cout_g, L)  # a view: out is contiguous
        runs = self._row_runs()
        if len(runs) > max(64, self.p_out // 8):  # too irregular: one plain gather
            out[...] = self._row_values(w3, 0, self.p_out)
            return out
        for r0, n in runs:
            e0, e1 = int(self.indptr[r0]), int(self.indptr[r0 + n])
            width = int(self.indptr[r0 + 1]) - e0
            if width == 0:
                continue
            view = out[:, :, e0:e1]
            view.shape = (g.groups, self.cout_g, n, width)  # raises rather than copies
            view[...] = self._row_values(w3, r0, r0 + 1)[:, :, None, :]
        return out

    # ------------------------------------------------------------------ reading: matrix
    def matrix_arrays(self, weight):
        """``(data, indices, indptr)`` of the CSR matrix ``C(weight)``."""
        g = self.geometry
        nnz = self.nnz
        idx = index_dtype(nnz, g.shape[1], g.shape[0])
        group_offset = (np.arange(g.groups, dtype=idx) * self.pad_col)[:, None, None]
        indices = np.empty((g.groups, self.cout_g, self.cols.size), dtype=idx)
        np.add(self.cols.astype(idx, copy=False)[None, None, :], group_offset, out=indices)
        counts = np.diff(self.indptr).astype(idx)
        indptr = np.zeros(g.shape[0] + 1, dtype=idx)
        np.cumsum(np.tile(counts, g.out_channels), out=indptr[1:])
        return self.values(weight).reshape(-1), indices.reshape(-1), indptr

    # ------------------------------------------------------------------ reading: triples
    def triples(self):
        """The explicit ``(row, col, tap)`` triples of the whole matrix (int64, CSR order).

        Repeated ``(row, col)`` pairs (non-zero padding modes) are kept: they add.
        """
        g = self.geometry
        if self.starts is None:
            brow = np.repeat(np.arange(self.p_out), np.diff(self.indptr))
            bcol, btap = self.cols, self.taps
        else:
            brow = np.repeat(np.arange(self.p_out), g.taps)
            btap = self.taps.astype(np.int64)
            bcol = np.take_along_axis(self.src, self.taps.reshape(self.p_out, g.taps), axis=1).reshape(-1)
        co = np.arange(g.out_channels)[:, None]
        row = co * self.p_out + brow[None, :]
        col = (co // self.cout_g) * self.pad_col + bcol[None, :]
        tap = co * g.taps + btap[None, :]
        return row.reshape(-1), col.reshape(-1), tap.reshape(-1)

    # ------------------------------------------------------------------ reading: gradients
    def _padded_groups(self, x: np.ndarray) -> np.ndarray:
        """``x`` of shape ``(N, C_in, *in)`` as ``(G, N, C_in/G * P_in + 1)``, a zero appended."""
        g, n = self.geometry, x.shape[0]
        xp = np.zeros((g.groups, n, self.pad_col + 1), dtype=x.dtype)
        xp[:, :, :-1] = x.reshape(n, g.groups, self.pad_col).transpose(1, 0, 2)
        return xp

    def weight_grad(self, x: np.ndarray, delta: np.ndarray, *, chunk_bytes: int = 2**25) -> np.ndarray:
        """``dL/dW`` summed over the batch, from the triples.

        For each sample the triples give the im2col matrix ``U[r, t] = x[src[r, t]]`` (one
        gather); ``dW[co, t] = sum_r delta[co, r] U[r, t]`` is then a matrix product per
        group. ``x`` is ``(N, C_in, *in)``, ``delta`` is ``(N, C_out, *out)``. For complex
        data it is ``sum delta * conj(x)``, torch's convention for complex gradients.
        """
        g = self.geometry
        n = x.shape[0]
        dtype = np.result_type(x, delta)
        xp = self._padded_groups(np.conj(x).astype(dtype, copy=False) if np.iscomplexobj(x) else x.astype(dtype, copy=False))
        d = np.ascontiguousarray(
            delta.astype(dtype, copy=False).reshape(n, g.groups, self.cout_g, self.p_out).transpose(1, 2, 0, 3)
        )
        # accumulate dW^T = U^T D^T: a short inner dimension per chunk keeps BLAS efficient
        # (the long D @ U product stalls when its threads share the cores)
        dwt = np.zeros((g.groups, g.taps, self.cout_g), dtype=dtype)
        per_sample = g.groups * self.src.size * dtype.itemsize
        step = max(1, chunk_bytes // max(per_sample, 1))
        for a in range(0, n, step):
            b = min(n, a + step)
            k = (b - a) * self.p_out
            u = np.take(xp[:, a:b], self.src, axis=2)  # (G, nb, P_out, taps): im2col
            dwt += np.matmul(u.reshape(g.groups, k, g.taps).transpose(0, 2, 1),
                             d[:, :, a:b].reshape(g.groups, self.cout_g, k).transpose(0, 2, 1))
        return dwt.transpose(0, 2, 1).reshape(g.weight_shape)

    def weight_jacobian_arrays(self, x: np.ndarray):
        """``(data, indices, indptr)`` of the CSR Jacobian ``J[row, co * taps + t] = x[src]``.

        ``x`` is one sample ``(C_in, *in)``; ``J @ W.ravel() == conv(x, W).ravel()``.
        """
        g = self.geometry
        keep = self.src != self.pad_col
        counts = keep.sum(axis=1)
        jtap = np.broadcast_to(np.arange(g.taps), self.src.shape)[keep]
        xg = x.reshape(g.groups, self.pad_col)
        vals = np.take(xg, self.src[keep], axis=1)  # (G, L)
        idx = index_dtype(g.out_channels * jtap.size, g.out_channels * g.taps)
        co = np.arange(g.out_channels, dtype=idx).reshape(g.groups, self.cout_g, 1)
        indices = (co * g.taps + jtap.astype(idx)[None, None, :]).reshape(-1)
        data = np.broadcast_to(vals[:, None, :], (g.groups, self.cout_g, jtap.size)).reshape(-1)
        indptr = np.zeros(g.shape[0] + 1, dtype=idx)
        np.cumsum(np.tile(counts.astype(idx), g.out_channels), out=indptr[1:])
        return data, indices, indptr


def _cumsum0(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


@lru_cache(maxsize=16)
def conv_pattern(geometry: ConvGeometry) -> ConvPattern:
    """The (cached) :class:`ConvPattern` of a geometry; its arrays are read-only.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, toeplitz_conv as tc
    >>> w = np.random.rand(4, 3, 3, 3)
    >>> p = tc.conv_pattern(tc.conv_geometry(w.shape, (3, 6, 6), padding=1, padding_mode="reflect"))
    >>> row, col, tap = p.triples()              # C[row, col] += W.flat[tap]
    >>> C = tc.conv_matrix(w, (3, 6, 6), padding=1, padding_mode="reflect")
    >>> T = sp.coo_array((w.ravel()[tap], (row, col)), shape=C.shape)   # duplicates add
    >>> np.allclose(T.toarray(), C.toarray())
    True
    >>> _ = p.values(2 * w, out=C.data)  # new weights: one gather into the same structure
    >>> np.allclose(C.toarray(), 2 * T.toarray())
    True
    """
    return ConvPattern(geometry)
