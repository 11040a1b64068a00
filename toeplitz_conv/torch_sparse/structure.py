"""The structure of one convolution on one device: every index tensor that does not depend
on the weights, built once from the pattern's triples.

CSR stores the public matrix of :func:`toeplitz_conv.conv_matrix` as it is (channel-first
features). On the CPU, when ``gcd(C_out/G, C_in/G) >= 4``, the matrix is stored as BSR
instead, with features ordered *channels-last* (position, then channel) so that it is block
sparse with dense ``C_out/G x C_in/G`` blocks, one per kernel tap and group, cut into square
tiles of up to 8 x 8 (MKL takes no other shape; 8 x 8 measured fastest). C.T is stored too
(the input gradient is a row-wise product again), and the weight gradient's gather index:
for each tap and output position, the input row it reads.

New weights refill the stored values by one gather (:meth:`StoredMatrix.values`).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from math import gcd, prod
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt
import torch

from .._sparse import csr
from ..geometry import ConvGeometry
from ..memory import check_size
from ..indexing import index_dtype, stacked_indices
from ..pattern import TABLE_BYTES_PER_ENTRY, ConvPattern, conv_pattern, estimate_nnz
from . import runtime
from .tensors import compressed

if TYPE_CHECKING:
    # a compressed pattern and its value sources: crow, col, src, owner (None: one each)
    _Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]

MIN_BSR_TILE = 4  # below it, CSR
MAX_BSR_TILE = 8  # MKL's BSR kernel measured ~1.8x faster on 8x8 tiles than on 64x64


# --------------------------------------------------------------------------- BSR index arrays


def _bsr_pattern(brow: np.ndarray, bcol: np.ndarray, n_brows: int, tap_start: np.ndarray,
                 tap_k: np.ndarray, G: int, K: int) -> _Arrays:
    """Block CSR of a (spatial block x group) matrix from spatial blocks sorted by (row, col).

    Spatial block ``s`` joins spatial rows/cols ``brow[s]``, ``bcol[s]`` and sums kernel taps
    ``tap_k[tap_start[s]:tap_start[s + 1]]``. Every group repeats it on its own channels:
    block row ``brow * G + g``, block column ``bcol * G + g``, value ``sum_k Wk[k * G + g]``.
    Returns ``crow, col, src, owner``: block ``owner[t]`` adds arranged weight block
    ``src[t]`` (``owner is None``: one tap per block, ``src[b]`` is block ``b``'s).
    """
    cnt = np.bincount(brow, minlength=n_brows)
    srow = np.zeros(n_brows + 1, np.int64)
    np.cumsum(cnt, out=srow[1:])
    crow = np.zeros(n_brows * G + 1, np.int64)
    np.cumsum(np.repeat(cnt, G), out=crow[1:])
    nb = int(crow[-1])
    rid = np.repeat(np.arange(n_brows * G), np.repeat(cnt, G))  # block row of each block
    p, grp = rid // G, rid % G
    s = srow[p] + (np.arange(nb) - crow[rid])  # spatial block of each block
    col = bcol[s] * G + grp
    ntaps = np.diff(tap_start)
    if np.all(ntaps == 1):
        return crow, col, tap_k[tap_start[s]] * G + grp, None
    owner = np.repeat(np.arange(nb), ntaps[s])
    t = tap_start[s][owner] + (np.arange(owner.size) - np.repeat(np.cumsum(ntaps[s]) - ntaps[s], ntaps[s]))
    return crow, col, tap_k[t] * G + grp[owner], owner


def _split_blocks(crow: np.ndarray, col: np.ndarray, src: np.ndarray, owner: np.ndarray | None,
                  bo: int, bi: int) -> _Arrays:
    """Split each block of a BSR pattern into ``bo x bi`` tiles: a BSR of the tiles.

    Tile ``(i, j)`` of block ``b`` reads tile ``src[b] * bo * bi + i * bi + j`` of the
    arranged weight cut into tiles; with 1 x 1 tiles (``bo x bi`` = the block) it is the CSR.
    """
    nbr = crow.size - 1
    cnt = np.diff(crow)
    nb = int(crow[-1])
    rid = np.repeat(np.arange(nbr), cnt)
    jb = np.arange(nb) - crow[rid]  # position of the block within its block row
    i = np.arange(bo)[None, :, None]
    j = np.arange(bi)[None, None, :]
    dest = (crow[rid] * bo * bi)[:, None, None] + i * (cnt[rid] * bi)[:, None, None] + (jb * bi)[:, None, None] + j
    dest = dest.reshape(-1)
    ecol = np.empty(nb * bo * bi, np.int64)
    ecol[dest] = np.broadcast_to((col * bi)[:, None, None] + j, (nb, bo, bi)).reshape(-1)
    within = (i * bi + j).reshape(1, -1)
    if owner is None:
        esrc = np.empty_like(ecol)
        esrc[dest] = ((src * bo * bi)[:, None] + within).reshape(-1)
        eowner = None
    else:
        esrc = ((src * bo * bi)[:, None] + within).reshape(-1)
        eowner = dest.reshape(nb, bo * bi)[owner].reshape(-1)
    ecrow = np.zeros(nbr * bo + 1, np.int64)
    np.cumsum(np.repeat(cnt * bi, bo), out=ecrow[1:])
    return ecrow, ecol, esrc, eowner


# --------------------------------------------------------------------------- CSR index arrays


def _csr_arrays(pat: ConvPattern, geom: ConvGeometry) -> _Arrays:
    """The CSR arrays of C in the public (channel-first) order, with value sources: the
    scipy matrix of :func:`toeplitz_conv.conv_matrix`, block ``pat`` stacked per output
    channel, entry ``e`` = ``W.flat[src[e]]`` (summed over ``owner`` where taps merge).
    Every array is int32 while the counts fit."""
    L = pat.cols.size
    col, crow = stacked_indices(np.diff(pat.indptr), pat.cols, pat.column_offsets(), geom.shape)
    idx = index_dtype(int(crow[-1]), pat.taps.size * geom.out_channels, geom.out_channels * geom.taps)
    co = np.arange(geom.out_channels, dtype=idx)[:, None]
    src = np.empty((geom.out_channels, pat.taps.size), dtype=idx)
    np.add(pat.taps.astype(idx)[None, :], co * idx(geom.taps), out=src)
    owner = None
    if pat.starts is not None:  # entry e sums taps[starts[e]:starts[e + 1]]
        seg = np.diff(np.append(pat.starts, pat.taps.size))
        owner = (np.repeat(np.arange(L, dtype=idx), seg)[None, :] + co * idx(L)).reshape(-1)
    return crow, col, src.reshape(-1), owner


def _csr_transposed(crow: np.ndarray, col: np.ndarray, src: np.ndarray, owner: np.ndarray | None,
                    shape: tuple[int, int]) -> _Arrays:
    """C.T's CSR arrays from C's: a counting sort (scipy's), the sources carried along as
    its data, or, where taps merge, the entries' positions, to move ``owner``."""
    if owner is None:
        ET = csr(src, col, crow, shape).T.tocsr()
        return ET.indptr, ET.indices, ET.data, None
    nnz = int(crow[-1])
    ET = csr(np.arange(nnz, dtype=src.dtype), col, crow, shape).T.tocsr()
    inv = np.empty(nnz, src.dtype)
    inv[ET.data] = np.arange(nnz, dtype=src.dtype)  # entry perm[j] of C is entry j of C.T
    return ET.indptr, ET.indices, src, inv[owner]


class StoredMatrix:
    """One stored matrix (C or its transpose): index tensors and how to fill its values.

    ``values`` gathers entry ``e`` from ``source[src[e]]`` (or, with ``owner``, sums
    ``source[src[t]]`` into entry ``owner[t]``): ``source`` is the flat weight (CSR) or the
    weight cut into square tiles (BSR).
    """

    def __init__(self, crow: np.ndarray, col: np.ndarray, src: np.ndarray, owner: np.ndarray | None,
                 shape: tuple[int, int], layout: str, device: torch.device,
                 block: tuple[int, int] | None = None, tile: int = 1) -> None:
        def t(a: np.ndarray, dt: npt.DTypeLike) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=dt)).to(device)

        # int32 indices while they fit: MKL (LP64) takes them as they are, int64 is converted
        # per call; the value sources likewise (index_select and index_add_ take int32)
        idx = np.int32 if max(int(crow[-1]), *shape) < 2**31 else np.int64
        self.crow, self.col = t(crow, idx), t(col, idx)
        self.src = t(src, src.dtype if src.dtype in (np.int32, np.int64) else np.int64)
        self.owner = None if owner is None else t(owner, owner.dtype if owner.dtype in (np.int32, np.int64) else np.int64)
        self.shape, self.layout, self.block, self.tile = shape, layout, block, tile
        self.nvals = int(crow[-1])

    def values(self, source: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The stored values from ``source``: one gather (an index_add where taps merge)."""
        if self.layout == "bsr":
            (bo, bi), t = cast("tuple[int, int]", self.block), self.tile  # set for BSR
            if (bo, bi) != (t, t):  # (K * G, bo, bi) blocks -> their t x t tiles
                source = source.reshape(-1, bo // t, t, bi // t, t).transpose(2, 3).reshape(-1, t, t)
        else:
            source = source.reshape(-1)
        if self.owner is None:
            return torch.index_select(source, 0, self.src, out=out)
        if out is None:
            out = source.new_empty((self.nvals, *source.shape[1:]))
        return out.zero_().index_add_(0, self.owner, source.index_select(0, self.src))

    def matrix(self, source: torch.Tensor) -> torch.Tensor:
        return compressed(self.crow, self.col, self.values(source), self.shape, self.layout)


class Structure:
    """Everything of one geometry on one device that does not depend on the weights.

    Activations travel as *rows*: ``(features, N)`` tensors, batch innermost, so that each
    stored entry multiplies a contiguous row of ``N`` numbers. CSR keeps the public
    channel-first order of features; BSR orders them channels-last (position, then channel),
    which makes the matrix block sparse with dense ``C_out/G x C_in/G`` blocks per tap.
    """

    _CT: StoredMatrix | None  # C.T, built on first use (CSR)

    def __init__(self, geom: ConvGeometry, device: torch.device, layout: str) -> None:
        pat = conv_pattern(geom)
        G, K = geom.groups, prod(geom.kernel)
        self.geometry, self.layout, self.device = geom, layout, device
        self.policy = runtime.policy(device)
        self.channels_last = layout == "bsr"
        # MKL's BSR kernel takes square blocks only: tiles of gcd(C_out/G, C_in/G)
        self.tile = bsr_tile(geom.cout_per_group, geom.cin_per_group) if layout == "bsr" else 1
        self.cin_g, self.cout_g, self.K = geom.cin_per_group, geom.cout_per_group, K
        self.p_in, self.p_out = pat.p_in, pat.p_out
        f_in = geom.shape[1]  # the zero row appended to the input rows (padding reads it)
        src = np.asarray(pat.src, dtype=np.int64)  # (P_out, taps): ci * P_in + q, or pad_col
        pad = src == pat.pad_col
        self._pattern, self._CT, self._lock = pat, None, threading.Lock()
        if self.channels_last:
            self.C, self._CT = self._bsr_pair(pat, geom, device)
        else:  # C.T waits for the first backward: inference never builds it
            self.C = StoredMatrix(*_csr_arrays(pat, geom), geom.shape, "csr", device)
        # the weight gradient's gather: (channel-first) input row read by tap t at output
        # position p in each group -- the pattern's table shifted per group
        rows = np.where(pad[None], f_in, src[None] + np.arange(G)[:, None, None] * pat.pad_col)
        self.gather = torch.from_numpy(np.ascontiguousarray(rows.transpose(0, 2, 1))).to(device)
        self._chunks: dict[int, list[tuple[int, torch.Tensor]]] = {}

    def _bsr_pair(self, pat: ConvPattern, geom: ConvGeometry,
                  device: torch.device) -> list[StoredMatrix]:
        """C and C.T as BSR in channels-last order, from the spatial (position, tap) table."""
        G, K = geom.groups, self.K
        positions = np.asarray(pat.src[:, :K], dtype=np.int64)  # input position of tap k, or p_in
        positions = np.where(positions == pat.pad_col, self.p_in, positions)
        p, k = np.nonzero(positions < self.p_in)
        q = positions[p, k]
        ops = []
        for transpose, (r, c, nr) in ((False, (p, q, self.p_out)), (True, (q, p, self.p_in))):
            order = np.lexsort((k, c, r))
            r_, c_, k_ = r[order], c[order], k[order]
            new = np.ones(r_.size, bool)
            new[1:] = (r_[1:] != r_[:-1]) | (c_[1:] != c_[:-1])
            tap_start = np.append(np.flatnonzero(new), r_.size)
            arrays = _bsr_pattern(r_[new], c_[new], nr, tap_start, k_, G, K)
            bo, bi = (self.cin_g, self.cout_g) if transpose else (self.cout_g, self.cin_g)
            t = self.tile
            if (bo, bi) != (t, t):
                arrays = _split_blocks(*arrays, bo // t, bi // t)
            shape = geom.shape[::-1] if transpose else geom.shape
            ops.append(StoredMatrix(*arrays, shape, "bsr", device, (bo, bi), t))
        return ops

    @property
    def CT(self) -> StoredMatrix:
        """The stored C.T (CSR: built on first use, from C's arrays on the CPU)."""
        with self._lock:
            if self._CT is None:
                geom = self.geometry
                if self.device.type == "cpu":  # C's index tensors share numpy's memory
                    C = self.C
                    arrays = (C.crow.numpy(), C.col.numpy(), C.src.numpy(),
                              None if C.owner is None else C.owner.numpy())
                else:
                    arrays = _csr_arrays(self._pattern, geom)
                self._CT = StoredMatrix(*_csr_transposed(*arrays, geom.shape), geom.shape[::-1],
                                        "csr", self.device)
            return self._CT

    # ------------------------------------------------------------------ weights -> values
    def source(self, weight: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """What the values are gathered from: the flat weight (CSR), or ``(K * G, bo, bi)``
        blocks, tap ``k`` of group ``g`` (BSR)."""
        if not self.channels_last:
            return weight.reshape(-1)
        w = weight.reshape(self.geometry.groups, self.cout_g, self.cin_g, self.K)
        w = w.permute(3, 0, 2, 1) if transpose else w.permute(3, 0, 1, 2)
        return w.reshape(-1, *w.shape[2:])

    def matrix(self, weight: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        op = self.CT if transpose else self.C
        return op.matrix(self.source(weight, transpose))

    def refill(self, M: torch.Tensor, weight: torch.Tensor,
               transpose: bool = False) -> torch.Tensor:
        """Write the values of ``weight`` into the matrix ``M`` in place (no allocation)."""
        op = self.CT if transpose else self.C
        op.values(self.source(weight, transpose), out=M.values())
        return M

    def gather_chunks(self, step: int) -> list[tuple[int, torch.Tensor]]:
        """``(first position, contiguous gather index)`` per chunk of ``step`` positions."""
        chunks = self._chunks.get(step)
        if chunks is None:
            P = self.p_out
            chunks = self._chunks[step] = [(a, self.gather[:, :, a:a + step].reshape(-1))
                                           for a in range(0, P, step)]
        return chunks


def bsr_tile(bo: int, bi: int) -> int:
    """Side of the square BSR tiles: the largest divisor of gcd(bo, bi) up to MAX_BSR_TILE."""
    t = gcd(bo, bi)
    return max(d for d in range(1, min(t, MAX_BSR_TILE) + 1) if t % d == 0)


@lru_cache(maxsize=32)
def cached_structure(geom: ConvGeometry, device: torch.device, layout: str) -> Structure:
    """The :class:`Structure` of a geometry on a device (cached), refused up front when its
    index tensors would exceed the memory limit."""
    nnz = estimate_nnz(geom)  # arithmetic: nothing is built before the check
    # CSR: an int32 column and value source per entry, and the transposition's scratch
    # while it is built; BSR indices are per block (small); the pattern's table and the
    # weight gradient's gather table
    per_entry = 8 + (0 if layout == "bsr" else 8)
    scratch = 0 if layout == "bsr" else 8 * nnz
    table = (8 * geom.groups + TABLE_BYTES_PER_ENTRY) * geom.taps * prod(geom.out_spatial)
    check_size(f"the torch.sparse matrices of this {geom.ndim}D convolution",
               2 * nnz * per_entry + scratch + table + 16 * sum(geom.shape),
               f"C and C.T, 2 x {nnz:,} nonzeros")
    return Structure(geom, device, layout)


def auto_layout(geom: ConvGeometry, device: torch.device) -> str:
    """BSR on the CPU when the square tiles (gcd of the channel blocks) are big enough."""
    tile = bsr_tile(geom.cin_per_group, geom.cout_per_group)
    return "bsr" if runtime.policy(device).bsr and tile >= MIN_BSR_TILE else "csr"
