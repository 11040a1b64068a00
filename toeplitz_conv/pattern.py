"""Geometry -> ``(row, col, tap)`` triples: the index core of the library (pure numpy).

A convolution matrix ``C(W)`` has one stored entry per triple::

    C(W)[row, col] += W.flat[tap]

Every output channel ``co`` of a group sees the same input positions, so the triples of the
whole matrix are those of one *block* (the rows of one output channel, the columns of its
group) shifted by ``co * P_out`` rows, ``group * C_in/groups * P_in`` columns and
``co * taps`` taps, where ``P_out``/``P_in`` count output/input positions and
``taps = C_in/groups * prod(kernel)``. The block is held as one table:

    ``src[r, t]``: the column (within the group) that tap ``t`` of output position ``r`` reads,
    or ``P_group = C_in/groups * P_in`` -- one past the last column -- where it reads padding.

Each reading of the library is a few vectorised lines over this table: the values of the CSR
matrix (:meth:`ConvPattern.values`), the explicit triples (:meth:`ConvPattern.triples`), and,
through the one :func:`~toeplitz_conv.indexing.im2col` gather, the weight gradient
(:meth:`ConvPattern.weight_grad`) and the im2col Jacobian
(:meth:`ConvPattern.weight_jacobian_arrays`). The table itself is built by
:func:`~toeplitz_conv.indexing.window_table`, which pooling shares. Padding modes other than zeros only change which column a padded tap reads,
so several taps may land on one column: they add.
"""

from __future__ import annotations

from functools import lru_cache
from math import prod
from typing import Any

import numpy as np
import numpy.typing as npt

from ._args import as_array
from .geometry import ConvGeometry
from .indexing import axis_positions, im2col, row_pointers, stacked_indices, window_table
from .memory import check_size

#: bytes per entry of the ``(P_out, taps)`` table while it is built (int64 columns and a
#: mask), the int32/int64 table kept: what a size estimate counts for it
TABLE_BYTES_PER_ENTRY = 24


def _axis_reads(o: int, k: int, s: int, d: int, lo: int, n: int) -> int:
    """Taps of one axis that read the input under zero padding, over all ``o`` outputs:
    for tap ``t``, the outputs with ``0 <= out * s - lo + t * d < n`` (integer arithmetic,
    no array: the estimate must not cost what it estimates)."""
    if k > 4096:  # a long 1D kernel: the same arithmetic on int64 arrays of k (the weight's size)
        offsets = np.arange(k, dtype=np.int64) * d
        firsts = np.maximum(0, -((offsets - lo) // s))
        lasts = np.minimum(o - 1, (n - 1 + lo - offsets) // s)
        return int(np.maximum(0, lasts - firsts + 1).sum())
    total = 0
    for tap in range(k):
        first = max(0, -((tap * d - lo) // s))  # ceil((lo - t d) / s)
        last = min(o - 1, (n - 1 + lo - tap * d) // s)
        total += max(0, last - first + 1)
    return total


def estimate_nnz(geom: ConvGeometry) -> int:
    """Stored entries of the matrix, exact for zero padding, an upper bound otherwise (every
    tap reads a real input, some of them the same one)."""
    axes = zip(geom.out_spatial, geom.kernel, geom.stride, geom.dilation, geom.pad_lo, geom.in_spatial)
    if geom.padding_mode == "zeros":
        per_axis = [_axis_reads(*a) for a in axes]
    else:
        per_axis = [o * k for o, k, *_ in axes]
    return geom.out_channels * geom.cin_per_group * prod(per_axis)


def _matching_weight(weight: object, shape: tuple[int, ...], name: str = "weight") -> np.ndarray:
    """A numeric array of exactly ``shape`` (the geometry's weight shape)."""
    w = as_array(weight, name)
    if tuple(w.shape) != tuple(shape):
        raise ValueError(
            f"{name} must have this layer's weight shape {tuple(shape)}; got "
            f"{name}.shape={tuple(w.shape)}."
        )
    return w


def _check_out_array(out: object, size: int, dtype: npt.DTypeLike) -> None:
    """``out`` of ``ConvPattern.values``: written in place, so it must be a writeable,
    contiguous array of a dtype that holds the weight's values (no float -> int truncation)."""
    if not isinstance(out, np.ndarray) or not out.flags.c_contiguous or out.size != size:
        got = (f"shape {out.shape}, C-contiguous={out.flags.c_contiguous}"
               if isinstance(out, np.ndarray) else type(out).__name__)
        raise ValueError(
            f"out must be a C-contiguous numpy array of {size:,} entries (C.data of this "
            f"layer's matrix); got {got}."
        )
    if not out.flags.writeable:
        raise ValueError("out must be writeable (the values are written into it); got a read-only array.")
    if not np.can_cast(dtype, out.dtype, casting="same_kind"):
        raise TypeError(
            f"out must have a dtype that holds the weight's {np.dtype(dtype)} values without "
            f"truncation (same kind: float for a float weight); got out.dtype={out.dtype}."
        )


# --------------------------------------------------------------------------- the pattern


class ConvPattern:
    """The triples of one convolution geometry, computed once, read many ways.

    Attributes
    ----------
    geometry : ConvGeometry
    src : (P_out, taps) int ndarray
        Column within the group read by each tap of each output position of one output
        channel; ``pad_col`` where the tap reads zero padding.
    p_in, p_out, pad_col : int
        Input and output positions, and ``C_in/groups * P_in``: one past the group's last
        column, where padding taps point.
    indptr, cols : CSR of one block, columns sorted and unique in each row
    taps, starts : the taps summed into each block entry: entry ``e`` is the sum of
        ``W[co].flat[taps[starts[e]:starts[e + 1]]]`` (``starts is None``: one tap each,
        ``taps[e]``; always so for zero padding).
    """

    def __init__(self, geometry: ConvGeometry) -> None:
        geom = self.geometry = geometry
        self.p_in, self.p_out = prod(geom.in_spatial), prod(geom.out_spatial)
        self.pad_col = geom.cin_per_group * self.p_in
        entries = self.p_out * geom.taps
        check_size("the index table of this layer", entries * TABLE_BYTES_PER_ENTRY,
                   f"{self.p_out:,} output positions x {geom.taps:,} taps")
        self.src = self._source_table()
        self._block_csr()
        for arr in (self.src, self.indptr, self.cols, self._taps, self.starts, getattr(self, "_keep", None)):
            if arr is not None:
                arr.flags.writeable = False
        self._runs: list[tuple[int, int]] | None = None

    # ------------------------------------------------------------------ geometry -> table
    def _source_table(self) -> np.ndarray:
        geom = self.geometry
        axes = [axis_positions(geom.out_spatial[j], geom.kernel[j], geom.stride[j], geom.dilation[j],
                               geom.pad_lo[j], geom.in_spatial[j], geom.padding_mode)
                for j in range(geom.ndim)]
        return window_table(axes, geom.in_spatial, channels=geom.cin_per_group)

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
        self.indptr = row_pointers(counts)

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

    def column_offsets(self) -> np.ndarray:
        """``(C_out,)``: the first column of each output channel's group, ``group * P_group``;
        the columns of output channel ``co``'s rows are ``cols + column_offsets()[co]``."""
        geom = self.geometry
        return (np.arange(geom.out_channels) // geom.cout_per_group) * self.pad_col

    # ------------------------------------------------------------------ reading: values
    def _row_runs(self) -> list[tuple[int, int]]:
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

    def values(self, weight: npt.ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
        """``C.data`` for ``weight``, in CSR order: the one gather that rebuilds C.

        Rows that sum the same taps (all interior positions of an image row, say) share
        their values, so runs of them are written as broadcast copies.

        Parameters
        ----------
        weight : (C_out, C_in/groups, *kernel) array_like or torch.Tensor
            This geometry's weight shape.
        out : (nnz,) ndarray, optional
            An existing matrix's ``C.data``, refreshed in place (no new sort, no new indices).

        Returns
        -------
        (nnz,) ndarray
            ``out`` itself when given.
        """
        geom = self.geometry
        groups, cout_g = geom.groups, geom.cout_per_group
        weight = _matching_weight(weight, geom.weight_shape)
        w3 = np.ascontiguousarray(weight).reshape(groups, cout_g, geom.taps)
        L = self.cols.size
        if out is None:
            out = np.empty(groups * cout_g * L, dtype=weight.dtype)
        given = out
        _check_out_array(out, self.nnz, weight.dtype)
        out = out.reshape(groups, cout_g, L)  # a view: out is contiguous
        runs = self._row_runs()
        if len(runs) > max(64, self.p_out // 8):  # too irregular: one plain gather
            out[...] = self._row_values(w3, 0, self.p_out)
            return given
        for r0, n in runs:
            e0, e1 = int(self.indptr[r0]), int(self.indptr[r0 + n])
            width = int(self.indptr[r0 + 1]) - e0
            if width == 0:
                continue
            view = out[:, :, e0:e1]
            view.shape = (groups, cout_g, n, width)  # raises rather than copies
            view[...] = self._row_values(w3, r0, r0 + 1)[:, :, None, :]
        return given

    # ------------------------------------------------------------------ reading: matrix
    def matrix_arrays(self, weight: npt.ArrayLike
                      ) -> tuple[np.ndarray, npt.NDArray[np.signedinteger[Any]], np.ndarray]:
        """``(data, indices, indptr)`` of the CSR matrix ``C(weight)``.

        Parameters
        ----------
        weight : (C_out, C_in/groups, *kernel) array_like or torch.Tensor
        """
        geom = self.geometry
        indices, indptr = stacked_indices(np.diff(self.indptr), self.cols, self.column_offsets(),
                                          geom.shape)
        return self.values(weight).reshape(-1), indices, indptr

    # ------------------------------------------------------------------ reading: triples
    def triples(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The explicit ``(row, col, tap)`` triples of the whole matrix (int64, CSR order).

        Repeated ``(row, col)`` pairs (non-zero padding modes) are kept: they add.
        """
        geom = self.geometry
        if self.starts is None:
            brow = np.repeat(np.arange(self.p_out), np.diff(self.indptr))
            bcol, btap = self.cols, self.taps
        else:
            brow = np.repeat(np.arange(self.p_out), geom.taps)
            btap = self.taps.astype(np.int64)
            bcol = np.take_along_axis(self.src, self.taps.reshape(self.p_out, geom.taps), axis=1).reshape(-1)
        co = np.arange(geom.out_channels)[:, None]
        row = co * self.p_out + brow[None, :]
        col = self.column_offsets()[:, None] + bcol[None, :]
        tap = co * geom.taps + btap[None, :]
        return row.reshape(-1), col.reshape(-1), tap.reshape(-1)

    # ------------------------------------------------------------------ reading: gradients
    def weight_grad(self, x: np.ndarray, delta: np.ndarray, *, chunk_bytes: int = 2**25) -> np.ndarray:
        """``dL/dW`` summed over the batch, from the triples.

        For each sample the triples give the im2col matrix ``U[r, t] = x[src[r, t]]`` (one
        gather); ``dW[co, t] = sum_r delta[co, r] U[r, t]`` is then a matrix product per
        group. For complex data it is ``sum delta * conj(x)``, torch's convention for complex
        gradients.

        Parameters
        ----------
        x : (N, C_in, *in_spatial) ndarray
        delta : (N, C_out, *out_spatial) ndarray
            ``dL/dy``.
        chunk_bytes : int, default 2**25
            Bytes of im2col rows gathered at a time.

        Returns
        -------
        (C_out, C_in/groups, *kernel) ndarray
        """
        geom = self.geometry
        groups, cout_g, taps = geom.groups, geom.cout_per_group, geom.taps
        n = x.shape[0]
        dtype = np.result_type(x, delta)
        xg = (np.conj(x) if np.iscomplexobj(x) else x).reshape(n, groups, self.pad_col).transpose(1, 0, 2)
        d = np.ascontiguousarray(
            delta.astype(dtype, copy=False).reshape(n, groups, cout_g, self.p_out).transpose(1, 2, 0, 3)
        )
        # accumulate dW^T = U^T D^T: a short inner dimension per chunk keeps BLAS efficient
        # (the long D @ U product stalls when its threads share the cores)
        dwt = np.zeros((groups, taps, cout_g), dtype=dtype)
        per_sample = groups * self.src.size * dtype.itemsize
        step = max(1, chunk_bytes // max(per_sample, 1))
        for a in range(0, n, step):
            b = min(n, a + step)
            k = (b - a) * self.p_out
            u = im2col(xg[:, a:b], self.src, axis=2, dtype=dtype)  # (G, nb, P_out, taps)
            dwt += np.matmul(u.reshape(groups, k, taps).transpose(0, 2, 1),
                             d[:, :, a:b].reshape(groups, cout_g, k).transpose(0, 2, 1))
        return dwt.transpose(0, 2, 1).reshape(geom.weight_shape)

    def weight_jacobian_arrays(self, x: np.ndarray
                               ) -> tuple[np.ndarray, npt.NDArray[np.signedinteger[Any]], np.ndarray]:
        """``(data, indices, indptr)`` of the CSR Jacobian ``J[row, co * taps + t] = x[src]``.

        ``J @ W.ravel() == conv(x, W).ravel()``. Block diagonal: output channel ``co``'s block
        is shifted by ``co * taps`` columns.

        Parameters
        ----------
        x : (C_in, *in_spatial) ndarray
            One sample.
        """
        geom = self.geometry
        keep = self.src != self.pad_col
        jtap = np.broadcast_to(np.arange(geom.taps), self.src.shape)[keep]
        vals = im2col(x.reshape(geom.groups, self.pad_col), self.src[keep], axis=1)  # (G, L)
        data = np.broadcast_to(vals[:, None, :], (geom.groups, geom.cout_per_group, jtap.size))
        offsets = np.arange(geom.out_channels) * geom.taps
        indices, indptr = stacked_indices(keep.sum(axis=1), jtap, offsets,
                                          (geom.shape[0], geom.out_channels * geom.taps))
        return data.reshape(-1), indices, indptr


@lru_cache(maxsize=16)
def conv_pattern(geometry: ConvGeometry) -> ConvPattern:
    """The (cached) :class:`ConvPattern` of a geometry; its arrays are read-only.

    Parameters
    ----------
    geometry : ConvGeometry
        From :func:`conv_geometry` or :func:`conv_transpose_geometry`.

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
    if not isinstance(geometry, ConvGeometry):
        raise TypeError(
            f"geometry must be a ConvGeometry (from toeplitz_conv.conv_geometry(weight_shape, "
            f"input_shape, ...)); got {type(geometry).__name__}."
        )
    return ConvPattern(geometry)
