"""Convolution layers executed as torch.sparse matrix products, on CPU and CUDA.

The same triples as the scipy core, read by torch::

    forward         Y = C(W) @ X          (a stored sparse matrix, values refreshed by one gather)
    input gradient  dX = C(W).T @ D       (its own stored matrix: a row-wise product again)
    weight grad     dW.flat[tap] = sum over triples of D[row] * X[col]
                    (grouped by tap: a gather of whole rows of X along the pattern, then a matmul)

Activations travel as *rows*: ``X`` is ``(features, N)`` with the batch innermost, so every
stored entry multiplies a contiguous row of ``N`` numbers and the weight gradient's gather
copies whole rows. CSR stores the public matrix of :func:`toeplitz_conv.conv_matrix` as it is
(channel-first features). On the CPU, when ``gcd(C_out/G, C_in/G) >= 4``, the matrix is
stored as BSR instead, with features ordered *channels-last* (position, then channel) so that
it is block sparse with dense ``C_out/G x C_in/G`` blocks, one per kernel tap and group, cut
into square tiles of up to 8 x 8 (MKL takes no other shape; 8 x 8 measured fastest).
:func:`to_torch_sparse` converts any scipy matrix as it is.

Every difference between CPU and CUDA is one field of ``_Policy``. On the CPU the
intermediates that die within a call (delta's rows, the reordered operand, the product, the
weight gradient's gather) live in per-thread buffers kept between calls (at most 16 MiB each),
because fresh multi-MiB buffers cost more in page faults than the work done in them.

Conventions follow PyTorch: cross-correlation, weight ``(C_out, C_in/groups, *kernel)``,
``ToeplitzConvNd`` takes the constructor of ``nn.ConvNd`` (it *is* an ``nn.ConvNd`` subclass,
so its parameters, ``state_dict``, ``.to(device)`` and initialisation are torch's own).
"""

from __future__ import annotations

import threading
import warnings
from functools import lru_cache
from math import gcd, prod
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from . import _validate as v
from .geometry import ConvGeometry, conv_geometry
from .pattern import conv_pattern

__all__ = ["to_torch_sparse", "sparse_conv", "ToeplitzConv1d", "ToeplitzConv2d",
           "ToeplitzConv3d", "convert"]

_MATMUL_DTYPES = (torch.float32, torch.float64)
_LAYOUT_NOTE = "torch.sparse layouts supported here"
_DEVICES = ("cpu", "cuda")
_MIN_BSR_TILE = 4  # below it, CSR
_MAX_BSR_TILE = 8  # MKL's BSR kernel measured ~1.8x faster on 8x8 tiles than on 64x64
_GATHER_CHUNK_BYTES = 2**22  # CPU: gathered input rows per chunk of the weight gradient (4 MiB best)
_GATHER_CHUNK_BYTES_GPU = 2**26  # CUDA: fewer, larger chunks (each chunk is two kernel launches)
_TRANSPOSE_BLOCK = 2048  # CPU: columns per block when rows go back to (N, C, P)
_SCRATCH_MAX_BYTES = 2**24  # CPU: intermediates kept between calls up to 16 MiB each


class _Policy(NamedTuple):
    """How the products run on one kind of device: every CPU/CUDA difference, in one place
    (so that the CUDA choices can be exercised on CPU tensors by the tests)."""

    bsr: bool  # 'auto' may store BSR (MKL's square-tile kernel; on CUDA, CSR via cuSPARSE)
    addmm: bool  # products as addmm into a given buffer, the bias as its start; else M @ X + b
    gather_chunk_bytes: int  # gathered input rows per chunk of the weight gradient
    transpose_block: Optional[int]  # columns per block of a rows -> (N, C, P) copy; None: one copy
    keep_scratch: bool  # keep the intermediates' buffers between calls (_scratch)


def _policy(device: torch.device) -> _Policy:
    if device.type == "cpu":
        return _Policy(True, True, _GATHER_CHUNK_BYTES, _TRANSPOSE_BLOCK, True)
    # CUDA: one kernel per copy, fewer and larger chunks (each is two kernel launches), and
    # the caching allocator instead of kept buffers
    return _Policy(False, False, _GATHER_CHUNK_BYTES_GPU, None, False)


class _ScratchPool(threading.local):
    """Per-thread CPU buffers for the intermediates that die within one call, one per role.

    On the machines this was measured on, a fresh 4 MiB buffer costs ~1.5 ms of page faults,
    25x filling a warm one (3x32x32 -> 16@3x3 at batch 64 has four such intermediates per
    forward+backward). Kept up to ``_SCRATCH_MAX_BYTES`` each, so at most a few tens of MiB
    per thread; larger ones are allocated per call (transparent huge pages make those cheap).
    """

    def __init__(self):
        self.buffers = {}


_POOL = _ScratchPool()


def _scratch(role, shape, like, policy):
    """An uninitialised ``shape`` buffer of ``like``'s dtype and device for role ``role``
    ('rows', 'operand', 'product', 'gather'): the thread's kept buffer where the policy keeps
    them and it is small enough, else a new one. Never returned to the caller."""
    numel = prod(shape)
    if not policy.keep_scratch or numel * like.element_size() > _SCRATCH_MAX_BYTES:
        return like.new_empty(shape)
    buf = _POOL.buffers.get(role)
    if buf is None or buf.dtype != like.dtype or buf.device != like.device or buf.numel() < numel:
        buf = _POOL.buffers[role] = like.new_empty(numel)
    return buf[:numel].view(shape)


def _compressed(crow, col, values, size, layout):
    """A CSR or BSR tensor from trusted arrays (no invariant check, no beta warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse (BSR|CSR) tensor support is in beta")
        make = torch.sparse_bsr_tensor if layout == "bsr" else torch.sparse_csr_tensor
        return make(crow, col, values, size=size, check_invariants=False)


# --------------------------------------------------------------------------- scipy -> torch


def to_torch_sparse(C, *, device=None, dtype=None, layout="csr"):
    """A scipy sparse matrix as a torch sparse tensor (CSR or COO) on ``device``.

    Parameters
    ----------
    C : (m, n) scipy.sparse array or matrix
        E.g. :func:`toeplitz_conv.conv_matrix`. Duplicates are summed.
    device : torch.device or str, optional
        Default: the CPU.
    dtype : torch.dtype, optional
        Default: ``C``'s dtype (float32 stays float32).
    layout : {'csr', 'coo'}, default 'csr'

    Returns
    -------
    torch.Tensor
        ``torch.sparse_csr`` (indices int64, as torch's kernels prefer) or a coalesced
        ``torch.sparse_coo`` tensor of shape ``C.shape``: ``T @ x`` equals ``C @ x``.

    Examples
    --------
    >>> import torch, torch.nn.functional as F, toeplitz_conv as tc
    >>> w, x = torch.randn(4, 3, 3, 3), torch.randn(3, 8, 8)
    >>> T = tc.to_torch_sparse(tc.conv_matrix(w, x.shape, padding=1))
    >>> T.layout, T.shape
    (torch.sparse_csr, torch.Size([256, 192]))
    >>> torch.allclose(T @ x.reshape(-1), F.conv2d(x[None], w, padding=1).reshape(-1), atol=1e-5)
    True
    """
    import scipy.sparse as sp

    if not sp.issparse(C):
        raise TypeError(
            f"C must be a scipy.sparse array or matrix (e.g. toeplitz_conv.conv_matrix(...)); "
            f"got {type(C).__name__}."
        )
    layout = v.check_choice("layout", layout, ("csr", "coo"), _LAYOUT_NOTE)
    device = torch.device("cpu") if device is None else torch.device(device)
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float32; got {dtype!r}.")
    csr = sp.csr_array(C)
    csr.sum_duplicates()
    csr.sort_indices()
    data = torch.from_numpy(np.ascontiguousarray(csr.data))
    data = data.to(device=device, dtype=dtype or data.dtype)
    crow = torch.from_numpy(csr.indptr.astype(np.int64)).to(device)
    col = torch.from_numpy(csr.indices.astype(np.int64)).to(device)
    if layout == "csr":
        return _compressed(crow, col, data, tuple(csr.shape), "csr")
    rows = torch.repeat_interleave(torch.arange(csr.shape[0], device=device), crow.diff())
    return torch.sparse_coo_tensor(torch.stack([rows, col]), data, tuple(csr.shape),
                                   is_coalesced=True, check_invariants=False)


# --------------------------------------------------------------------------- structure


def _bsr_pattern(brow, bcol, n_brows, tap_start, tap_k, G, K):
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
    p, g = rid // G, rid % G
    s = srow[p] + (np.arange(nb) - crow[rid])  # spatial block of each block
    col = bcol[s] * G + g
    ntaps = np.diff(tap_start)
    if np.all(ntaps == 1):
        return crow, col, tap_k[tap_start[s]] * G + g, None
    owner = np.repeat(np.arange(nb), ntaps[s])
    t = tap_start[s][owner] + (np.arange(owner.size) - np.repeat(np.cumsum(ntaps[s]) - ntaps[s], ntaps[s]))
    return crow, col, tap_k[t] * G + g[owner], owner


def _split_blocks(crow, col, src, owner, bo, bi):
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


class _Operator:
    """One stored matrix (C or its transpose): index tensors and how to fill its values.

    ``values`` gathers entry ``e`` from ``source[src[e]]`` (or, with ``owner``, sums
    ``source[src[t]]`` into entry ``owner[t]``): ``source`` is the flat weight (CSR) or the
    weight cut into square tiles (BSR).
    """

    def __init__(self, crow, col, src, owner, shape, layout, device, block=None, tile=1):
        t = lambda a, dt=np.int64: None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=dt)).to(device)
        # int32 indices while they fit: MKL (LP64) takes them as they are, int64 is converted per call
        idx = np.int32 if max(int(crow[-1]), *shape) < 2**31 else np.int64
        self.crow, self.col, self.src, self.owner = t(crow, idx), t(col, idx), t(src), t(owner)
        self.shape, self.layout, self.block, self.tile = shape, layout, block, tile
        self.nvals = int(crow[-1])

    def values(self, source, out=None):
        """The stored values from ``source``: one gather (an index_add where taps merge)."""
        if self.layout == "bsr":
            (bo, bi), t = self.block, self.tile
            if (bo, bi) != (t, t):  # (K * G, bo, bi) blocks -> their t x t tiles
                source = source.reshape(-1, bo // t, t, bi // t, t).transpose(2, 3).reshape(-1, t, t)
        else:
            source = source.reshape(-1)
        if self.owner is None:
            return torch.index_select(source, 0, self.src, out=out)
        if out is None:
            out = source.new_empty((self.nvals, *source.shape[1:]))
        return out.zero_().index_add_(0, self.owner, source.index_select(0, self.src))

    def matrix(self, source):
        return _compressed(self.crow, self.col, self.values(source), self.shape, self.layout)


def _csr_pair(pat, g: ConvGeometry):
    """The CSR arrays of C and C.T in the public (channel-first) order, with value sources.

    C is the scipy matrix of :func:`toeplitz_conv.conv_matrix`: block ``pat`` repeated per
    output channel, entry ``e`` = ``W.flat[src[e]]`` (summed over ``owner`` where taps
    merge). C.T is its counting-sort transpose; ``perm`` says where each entry came from.
    """
    import scipy.sparse as sp

    co = np.arange(g.out_channels, dtype=np.int64)[:, None]
    L = pat.cols.size
    crow = _cumsum0(np.tile(np.diff(pat.indptr), g.out_channels))
    col = (pat.cols.astype(np.int64)[None, :] + (co // g.cout_per_group) * pat.pad_col).reshape(-1)
    src = (pat.taps.astype(np.int64)[None, :] + co * g.taps).reshape(-1)
    owner = None
    if pat.starts is not None:  # entry e sums taps[starts[e]:starts[e + 1]]
        seg = np.diff(np.append(pat.starts, pat.taps.size))
        owner = (np.repeat(np.arange(L, dtype=np.int64), seg)[None, :] + co * L).reshape(-1)
    nnz = int(crow[-1])
    E = sp.csr_array((np.arange(nnz, dtype=np.int64), col, crow), shape=g.shape)
    ET = E.T.tocsr()  # a counting sort by column: rows of C.T with sorted columns
    perm = ET.data  # entry j of C.T is entry perm[j] of C
    if owner is None:
        src_t, owner_t = src[perm], None
    else:
        inv = np.empty(nnz, np.int64)
        inv[perm] = np.arange(nnz, dtype=np.int64)
        src_t, owner_t = src, inv[owner]
    return (crow, col, src, owner), (ET.indptr, ET.indices, src_t, owner_t)


def _cumsum0(counts):
    out = np.zeros(counts.size + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


class _Structure:
    """Everything of one geometry on one device that does not depend on the weights.

    Activations travel as *rows*: ``(features, N)`` tensors, batch innermost, so that each
    stored entry multiplies a contiguous row of ``N`` numbers. CSR keeps the public
    channel-first order of features; BSR orders them channels-last (position, then channel),
    which makes the matrix block sparse with dense ``C_out/G x C_in/G`` blocks per tap.
    """

    def __init__(self, g: ConvGeometry, device: torch.device, layout: str):
        pat = conv_pattern(g)
        G, K = g.groups, prod(g.kernel)
        self.geometry, self.layout, self.device = g, layout, device
        self.policy = _policy(device)
        self.channels_last = layout == "bsr"
        # MKL's BSR kernel takes square blocks only: tiles of gcd(C_out/G, C_in/G)
        self.tile = _bsr_tile(g.cout_per_group, g.cin_per_group) if layout == "bsr" else 1
        self.cin_g, self.cout_g, self.K = g.cin_per_group, g.cout_per_group, K
        self.p_in, self.p_out = pat.p_in, pat.p_out
        f_in = g.shape[1]  # the zero row appended to the input rows (padding reads it)
        src = np.asarray(pat.src, dtype=np.int64)  # (P_out, taps): ci * P_in + q, or pad_col
        pad = src == pat.pad_col
        if self.channels_last:
            self.C, self.CT = self._bsr_pair(pat, g, device)
        else:
            (c, ct) = _csr_pair(pat, g)
            self.C = _Operator(*c, g.shape, "csr", device)
            self.CT = _Operator(*ct, g.shape[::-1], "csr", device)
        # the weight gradient's gather: (channel-first) input row read by tap t at output
        # position p in group g -- the pattern's table shifted per group
        rows = np.where(pad[None], f_in, src[None] + np.arange(G)[:, None, None] * pat.pad_col)
        self.gather = torch.from_numpy(np.ascontiguousarray(rows.transpose(0, 2, 1))).to(device)
        self._chunks = {}

    def _bsr_pair(self, pat, g, device):
        """C and C.T as BSR in channels-last order, from the spatial (position, tap) table."""
        G, K = g.groups, self.K
        sp = np.asarray(pat.src[:, :K], dtype=np.int64)  # input position of tap k, or p_in
        sp = np.where(sp == pat.pad_col, self.p_in, sp)
        p, k = np.nonzero(sp < self.p_in)
        q = sp[p, k]
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
            shape = g.shape[::-1] if transpose else g.shape
            ops.append(_Operator(*arrays, shape, "bsr", device, (bo, bi), t))
        return ops

    # ------------------------------------------------------------------ weights -> values
    def source(self, weight, transpose=False):
        """What the values are gathered from: the flat weight (CSR), or ``(K * G, bo, bi)``
        blocks, tap ``k`` of group ``g`` (BSR)."""
        if not self.channels_last:
            return weight.reshape(-1)
        w = weight.reshape(self.geometry.groups, self.cout_g, self.cin_g, self.K)
        w = w.permute(3, 0, 2, 1) if transpose else w.permute(3, 0, 1, 2)
        return w.reshape(-1, *w.shape[2:])

    def matrix(self, weight, transpose=False):
        op = self.CT if transpose else self.C
        return op.matrix(self.source(weight, transpose))

    def refill(self, M, weight, transpose=False):
        """Write the values of ``weight`` into the matrix ``M`` in place (no allocation)."""
        op = self.CT if transpose else self.C
        op.values(self.source(weight, transpose), out=M.values())
        return M

    # ------------------------------------------------------------------ activations <-> rows
    def scratch(self, role, shape, like):
        """A buffer for an intermediate that dies within the call (see ``_scratch``)."""
        return _scratch(role, shape, like, self.policy)

    def rows(self, t, zero_row=False, role=None):
        """``(N, C, *spatial)`` as channel-first rows ``(C * P (+ 1), N)``: one 2D transpose.

        ``zero_row`` appends a row of zeros (the input rows: padding taps read it). With a
        ``role`` the rows go to that scratch buffer (delta's rows), else to a new tensor
        (the input rows, kept for the backward).
        """
        n = t.shape[0]
        f = t[0].numel()
        shape = (f + zero_row, n)
        buf = t.new_empty(shape) if role is None else self.scratch(role, shape, t)
        if zero_row:
            buf[f].zero_()
        buf[:f].copy_(t.reshape(n, f).t())
        return buf

    def _reorder(self, rows, channels, inverse=False):
        """``(C, P, N)`` rows as ``(P, C, N)`` (or back): one copy of contiguous runs of
        ``N``, into the 'operand' scratch buffer."""
        n = rows.shape[1]
        a, b = (-1, channels) if inverse else (channels, -1)  # the source's two leading axes
        buf = self.scratch("operand", rows.shape, rows)
        buf.view(b, a, n).copy_(rows.view(a, b, n).transpose(0, 1))
        return buf

    def operand(self, rows, channels):
        """The rows in this structure's order: channel-first as they are, or channels-last
        ``(P, C, N)`` (BSR)."""
        return self._reorder(rows, channels) if self.channels_last else rows

    def product(self, M, dense, bias_rows=None):
        """``M @ dense (+ bias_rows)``: on the CPU an ``addmm`` into the 'product' scratch
        buffer, the bias as its start (``beta=0`` without one; ``M @ dense`` measured ~2x
        slower on CSR), on CUDA ``M @ dense`` then ``+= bias_rows``."""
        if not self.policy.addmm:
            Y = M @ dense
            return Y if bias_rows is None else Y.add_(bias_rows)
        out = self.scratch("product", (M.shape[0], dense.shape[1]), dense)
        if bias_rows is None:
            return torch.addmm(out, M, dense, beta=0, out=out)
        return torch.addmm(bias_rows, M, dense, out=out)

    def unrows(self, Y, channels, out):
        """Product rows ``Y`` (this structure's order) into ``out``, an ``(N, C, P)`` view."""
        n = out.shape[0]
        if self.channels_last:  # (P, C, N) -> (C, P, N)
            Y = self._reorder(Y, channels, inverse=True)
        _transpose_into(out.view(n, -1), Y, self.policy.transpose_block)
        return out

    def bias_rows(self, bias, n):
        """``bias`` per output row, broadcast over the batch: the ``input`` of ``addmm``."""
        per_row = bias.repeat(self.p_out) if self.channels_last else bias.repeat_interleave(self.p_out)
        return per_row[:, None].expand(-1, n)

    # ------------------------------------------------------------------ weight gradient
    def _gather_chunks(self, step):
        """``(first position, contiguous gather index)`` per chunk of ``step`` positions."""
        chunks = self._chunks.get(step)
        if chunks is None:
            P = self.p_out
            chunks = self._chunks[step] = [(a, self.gather[:, :, a:a + step].reshape(-1))
                                           for a in range(0, P, step)]
        return chunks

    def weight_grad(self, X, D):
        """``dW.flat[tap] = sum delta[row] * x[col]`` over the triples, grouped by tap.

        ``X``: the input rows with their zero row, ``D``: the rows of delta, both
        channel-first whatever the storage of C. For a chunk of output positions, one
        gather of whole rows of ``X`` along the pattern's table gives ``U[g, t, (p, n)]``
        (the im2col matrix, transposed), and ``dW[g].T += U[g] @ D[g].T`` with ``D[g]``
        viewed as ``(C_out/G, (p, n))`` (no copy).
        """
        g, G = self.geometry, self.geometry.groups
        n, taps, P = X.shape[1], self.gather.shape[1], self.p_out
        Dv = D.view(G, self.cout_g, P, n)
        dwt = X.new_zeros((G, taps, self.cout_g))  # dW^T = U @ D^T: MKL's faster orientation
        step = max(1, self.policy.gather_chunk_bytes // max(G * taps * n * X.element_size(), 1))
        buf = self.scratch("gather", (G * taps * min(step, P) * n,), X)  # one for every chunk
        for a, idx in self._gather_chunks(step):
            b = a + idx.numel() // (G * taps)
            U = torch.index_select(X, 0, idx, out=buf[:idx.numel() * n].view(-1, n))
            U = U.view(G, taps, (b - a) * n)
            Dc = Dv[:, :, a:b].reshape(G, self.cout_g, (b - a) * n)
            if G == 1:
                dwt[0].addmm_(U[0], Dc[0].t())
            else:
                dwt.baddbmm_(U, Dc.transpose(1, 2))
        return dwt.transpose(1, 2).reshape(g.weight_shape)


def _transpose_into(dst, src, block):
    """``dst[:] = src.T`` for a wide ``(n, F)`` destination, ``block`` columns at a time (on
    the CPU a plain strided copy measured up to ~1.7x slower on the 64 x 200,704
    activations), or in one copy (``block=None``: one kernel on CUDA)."""
    if block is None:
        dst.copy_(src.t())
        return
    for a in range(0, src.shape[0], block):
        dst[:, a:a + block].copy_(src[a:a + block].t())


def _bsr_tile(bo: int, bi: int) -> int:
    """Side of the square BSR tiles: the largest divisor of gcd(bo, bi) up to _MAX_BSR_TILE."""
    t = gcd(bo, bi)
    return max(d for d in range(1, min(t, _MAX_BSR_TILE) + 1) if t % d == 0)


@lru_cache(maxsize=32)
def _structure(g: ConvGeometry, device: torch.device, layout: str) -> _Structure:
    nnz = conv_pattern(g).nnz
    # CSR: an int32 column and an int64 gather index per entry, and the transposition's
    # int64 scratch while it is built; BSR indices are per block (small)
    per_entry = 8 + (0 if layout == "bsr" else 12)
    scratch = 0 if layout == "bsr" else 32 * nnz
    table = 8 * g.in_channels * prod(g.kernel) * prod(g.out_spatial)  # the weight-grad gather
    v.check_size(f"the torch.sparse matrices of this {g.ndim}D convolution",
                 2 * nnz * per_entry + scratch + table + 16 * sum(g.shape),
                 f"C and C.T, 2 x {nnz:,} nonzeros")
    return _Structure(g, device, layout)


def _auto_layout(g: ConvGeometry, device: torch.device) -> str:
    """BSR on the CPU when the square tiles (gcd of the channel blocks) are big enough."""
    tile = _bsr_tile(g.in_channels // g.groups, g.out_channels // g.groups)
    return "bsr" if _policy(device).bsr and tile >= _MIN_BSR_TILE else "csr"


# --------------------------------------------------------------------------- autograd


class _Values:
    """The values of C and C.T for one structure, cached per weight version (or not at all)."""

    def __init__(self, structure: _Structure, cache: bool):
        self.structure, self.cache = structure, cache
        self._mats = {}

    def matrix(self, weight, transpose=False):
        if not self.cache:
            return self.structure.matrix(weight, transpose)
        key = (id(weight), weight.data_ptr(), weight._version, weight.dtype)
        hit = self._mats.get(transpose)
        if hit is None or hit[1].dtype != weight.dtype:
            self._mats[transpose] = (key, self.structure.matrix(weight, transpose))
        elif hit[0] != key:  # new weight values: one gather into the same buffer
            self._mats[transpose] = (key, self.structure.refill(hit[1], weight, transpose))
        return self._mats[transpose][1]


class _ToeplitzConvFunction(torch.autograd.Function):
    """``y = C(W) x + b`` with the backward read from the same structure.

    forward:  ``Y = C @ X`` (stored C; ``X`` the input rows, kept for the weight gradient).
    backward: ``dX = C.T @ D`` (stored C.T), ``dW`` from a gather of ``X`` along the
    pattern times ``D``, ``db = sum D``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, values):
        s = values.structure
        g = s.geometry
        n = x.shape[0]
        X = s.rows(x, zero_row=True)  # a new tensor: kept for the weight gradient
        C = values.matrix(weight)
        Y = s.product(C, s.operand(X[:-1], g.in_channels),
                      None if bias is None else s.bias_rows(bias, n))
        out = torch.empty((n, *g.out_shape), dtype=x.dtype, device=x.device)
        s.unrows(Y, g.out_channels, out.view(n, g.out_channels, s.p_out))
        ctx.save_for_backward(X, weight)
        ctx.values = values
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        X, weight = ctx.saved_tensors
        values = ctx.values
        s, g = values.structure, values.structure.geometry
        n = grad.shape[0]
        gx = gw = gb = None
        D = s.rows(grad, role="rows")
        if ctx.needs_input_grad[0]:
            dX = s.product(values.matrix(weight, transpose=True), s.operand(D, g.out_channels))
            gx = grad.new_empty((n, *g.in_shape))
            s.unrows(dX, g.in_channels, gx.view(n, g.in_channels, s.p_in))
        if ctx.needs_input_grad[1]:
            gw = s.weight_grad(X, D)
        if ctx.needs_input_grad[2]:
            gb = grad.sum(dim=[d for d in range(grad.dim()) if d != 1])
        return gx, gw, gb, None


def _check_call(input, weight, bias, ndim: int, in_channels: int, what: str):
    """The checks of one call; returns the input with a batch axis and whether it was added."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input of {what} must be a torch.Tensor; got {type(input).__name__}.")
    spatial = "DHW"[3 - ndim:]
    if input.dim() not in (ndim + 1, ndim + 2):
        raise ValueError(
            f"input of {what} must have shape (N, C_in, {', '.join(spatial)}) or "
            f"(C_in, {', '.join(spatial)}) ({ndim + 2}D or {ndim + 1}D); got input.shape="
            f"{tuple(input.shape)} ({input.dim()}D)."
        )
    unbatched = input.dim() == ndim + 1
    x = input.unsqueeze(0) if unbatched else input
    if x.shape[1] != in_channels:
        raise ValueError(
            f"input of {what} must have {in_channels} channels (in_channels), on axis "
            f"{0 if unbatched else 1}; got input.shape={tuple(input.shape)}."
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.device != x.device:
            raise ValueError(
                f"input and {name} of {what} must be on the same device; got input on "
                f"{x.device} and {name} on {t.device}. Move one with .to(device)."
            )
    if x.device.type not in _DEVICES:
        raise ValueError(
            f"{what} runs on 'cpu' or 'cuda' (torch.sparse products); got tensors on {x.device}."
        )
    if weight.dtype not in _MATMUL_DTYPES:
        raise TypeError(
            f"weight of {what} must be float32 or float64, the dtypes torch.sparse can "
            f"multiply on {x.device.type}; got {weight.dtype}. Cast the module with "
            f".float() or .double()."
        )
    for name, t in (("input", x), ("bias", bias)):
        if t is not None and t.dtype != weight.dtype:
            raise TypeError(
                f"{name} of {what} must have the weight's dtype {weight.dtype}; got {t.dtype}."
            )
    return x, unbatched


def sparse_conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                  padding_mode="zeros", *, sparse_layout="auto"):
    """Functional convolution through the sparse matrix, like ``F.conv1d/2d/3d``.

    Parameters
    ----------
    input : (N, C_in, *spatial) or (C_in, *spatial) torch.Tensor
    weight : (C_out, C_in/groups, *kernel) torch.Tensor
    bias : (C_out,) torch.Tensor, optional
    stride, padding, dilation, groups : as ``torch.nn.functional.conv2d``
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
        As ``nn.Conv2d(padding_mode=...)`` (the functional torch API has zeros only).
    sparse_layout : {'auto', 'csr', 'bsr'}, default 'auto'
        Storage of the matrix: BSR (dense ``C_out/groups x C_in/groups`` blocks, one per tap;
        the CPU default for wide layers) or CSR.

    Returns
    -------
    torch.Tensor
        ``(N, C_out, *out_spatial)``, differentiable in ``input``, ``weight`` and ``bias``.
        The structure is cached per geometry and device; the values are gathered on every
        call (the modules cache them per weight version).

    Examples
    --------
    >>> import torch, torch.nn.functional as F, toeplitz_conv as tc
    >>> x = torch.randn(2, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    >>> w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    >>> y = tc.sparse_conv(x, w, stride=2, padding=1)
    >>> torch.allclose(y, F.conv2d(x, w, stride=2, padding=1))
    True
    >>> x, w = x[:1, :2, :4, :4].detach().requires_grad_(), w[:2, :2].detach().requires_grad_()
    >>> f = lambda x, w: tc.sparse_conv(x, w, padding=1)
    >>> torch.autograd.gradcheck(f, (x, w), fast_mode=True)
    True
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor; got {type(weight).__name__}.")
    n = weight.dim() - 2
    if n not in (1, 2, 3):
        raise ValueError(
            f"weight must have 3, 4 or 5 dimensions, (C_out, C_in/groups, *kernel); got "
            f"weight.shape={tuple(weight.shape)}."
        )
    what = f"sparse_conv ({n}D)"
    x, unbatched = _check_call(input, weight, bias, n, weight.shape[1] * groups, what)
    values = _Values(_plan(weight, x, stride, padding, dilation, groups, padding_mode,
                           sparse_layout), cache=False)
    y = _ToeplitzConvFunction.apply(x, weight, bias, values)
    return y.squeeze(0) if unbatched else y


def _plan(weight, x, stride, padding, dilation, groups, padding_mode, sparse_layout):
    g = conv_geometry(tuple(weight.shape), tuple(x.shape[1:]), stride=stride, padding=padding,
                      dilation=dilation, groups=groups, padding_mode=padding_mode)
    layout = v.check_choice("sparse_layout", sparse_layout, ("auto", "csr", "bsr"), _LAYOUT_NOTE)
    if layout == "auto":
        layout = _auto_layout(g, x.device)
    return _structure(g, x.device, layout)


# --------------------------------------------------------------------------- modules


class _ToeplitzConvNd:
    """Mixin: ``nn.ConvNd`` whose forward is the sparse matrix product."""

    _ndim: int
    _torch_conv: type

    def __init__(self, *args, sparse_layout="auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.sparse_layout = v.check_choice("sparse_layout", sparse_layout, ("auto", "csr", "bsr"), _LAYOUT_NOTE)
        self._values = {}

    @classmethod
    def from_conv(cls, conv, *, sparse_layout="auto"):
        """A Toeplitz copy of ``conv`` (an ``nn.ConvNd`` of the same rank): same arguments,
        device, dtype and weights (copied)."""
        if not isinstance(conv, cls._torch_conv):
            raise TypeError(
                f"{cls.__name__}.from_conv needs an nn.{cls._torch_conv.__name__}; got "
                f"{type(conv).__name__}."
            )
        w = conv.weight
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                  bias=conv.bias is not None, padding_mode=conv.padding_mode,
                  device=w.device, dtype=w.dtype, sparse_layout=sparse_layout)
        with torch.no_grad():
            new.weight.copy_(w)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        new.train(conv.training)
        return new

    def _apply(self, fn, *args, **kwargs):
        self._values = {}  # new device or dtype: structures and values are rebuilt lazily
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        return {**state, "_values": {}}  # copies and pickles rebuild their matrices lazily

    def refresh(self):
        """Forget the cached matrix values (needed only after writing to ``weight.data``)."""
        self._values = {}

    def forward(self, input):
        what = type(self).__name__
        x, unbatched = _check_call(input, self.weight, self.bias, self._ndim, self.in_channels, what)
        key = (tuple(x.shape[2:]), x.device)
        vals = self._values.get(key)
        if vals is None:
            plan = _plan(self.weight, x, self.stride, self.padding, self.dilation, self.groups,
                         self.padding_mode, self.sparse_layout)
            vals = self._values[key] = _Values(plan, cache=True)
        y = _ToeplitzConvFunction.apply(x, self.weight, self.bias, vals)
        return y.squeeze(0) if unbatched else y

    def extra_repr(self):
        return super().extra_repr() + f", sparse_layout={self.sparse_layout!r}"


_MODULE_DOC = """A drop-in ``nn.Conv{n}d`` whose forward is one torch.sparse matrix product.

    Takes the constructor of ``torch.nn.Conv{n}d`` (``in_channels, out_channels, kernel_size,
    stride, padding, dilation, groups, bias, padding_mode, device, dtype``) plus
    ``sparse_layout`` ({{'auto', 'csr', 'bsr'}}); ``weight`` and ``bias`` are the same
    parameters (it subclasses ``nn.Conv{n}d``), so optimizers, ``state_dict`` and
    ``.to(device)`` work unchanged.

    The sparsity structure is built once per input spatial size and device; the matrix values
    (and those of its transpose, for the input gradient) are refreshed by one gather when the
    weight's version changes, e.g. after an optimizer step. Writing through ``weight.data``
    bypasses the version counter: call :meth:`refresh` after it. Backward: ``dx = C.T @ delta``
    from a stored transpose, ``dW`` from a gather of input rows along the pattern and a matmul.

    Examples
    --------
    >>> import torch, toeplitz_conv as tc
    >>> conv = torch.nn.Conv{n}d(3, 4, 3, padding=1, padding_mode="circular").double()
    >>> tconv = tc.ToeplitzConv{n}d.from_conv(conv)
    >>> x = torch.randn({shape}, dtype=torch.float64)
    >>> torch.allclose(tconv(x), conv(x))
    True
    >>> tconv(x).sum().backward(); conv(x).sum().backward()
    >>> torch.allclose(tconv.weight.grad, conv.weight.grad)
    True
    """


def _module(n: int, base: type) -> type:
    shape = ", ".join(["2", "3"] + ["6"] * n)
    cls = type(f"ToeplitzConv{n}d", (_ToeplitzConvNd, base),
               {"_ndim": n, "_torch_conv": base, "__doc__": _MODULE_DOC.format(n=n, shape=shape),
                "__module__": __name__})
    return cls


ToeplitzConv1d = _module(1, nn.Conv1d)
ToeplitzConv2d = _module(2, nn.Conv2d)
ToeplitzConv3d = _module(3, nn.Conv3d)
_TWINS = {nn.Conv1d: ToeplitzConv1d, nn.Conv2d: ToeplitzConv2d, nn.Conv3d: ToeplitzConv3d}


def convert(model, *, sparse_layout="auto"):
    """Swap every ``nn.Conv1d/2d/3d`` of ``model`` for its Toeplitz twin, keeping the weights.

    Parameters
    ----------
    model : torch.nn.Module
        Converted in place (a bare ``nn.ConvNd`` is returned converted). Only modules of the
        exact types ``nn.Conv1d/2d/3d`` are swapped: subclasses may override ``forward``.
    sparse_layout : {'auto', 'csr', 'bsr'}, default 'auto'

    Returns
    -------
    torch.nn.Module
        ``model``. The twins hold *copies* of the weights: build the optimizer afterwards.

    Examples
    --------
    >>> import torch, toeplitz_conv as tc
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3))
    >>> x = torch.randn(5, 1, 10, 10)
    >>> ref = net(x)
    >>> net = tc.convert(net)
    >>> type(net[0]).__name__, torch.allclose(net(x), ref, atol=1e-5)
    ('ToeplitzConv2d', True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    v.check_choice("sparse_layout", sparse_layout, ("auto", "csr", "bsr"), _LAYOUT_NOTE)
    if type(model) in _TWINS:
        return _TWINS[type(model)].from_conv(model, sparse_layout=sparse_layout)
    for name, child in list(model.named_children()):
        if type(child) in _TWINS:
            setattr(model, name, _TWINS[type(child)].from_conv(child, sparse_layout=sparse_layout))
        else:
            convert(child, sparse_layout=sparse_layout)
    return model
