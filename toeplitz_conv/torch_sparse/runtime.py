"""How a call runs on a device: the data movement around the sparse products, and every
difference between CPU and CUDA as one field of :class:`Policy`.

Activations travel as *rows*: ``X`` is ``(features, N)`` with the batch innermost, so every
stored entry multiplies a contiguous row of ``N`` numbers and the weight gradient's gather
copies whole rows. Each function takes the :class:`~.structure.Structure` ``s`` of the layer
(its layout, positions, gather index and policy).

On the CPU the intermediates that die within a call (delta's rows, the reordered operand, the
product, the weight gradient's gather) live in per-thread buffers kept between calls (at most
16 MiB each), because fresh multi-MiB buffers cost more in page faults than the work done in
them.
"""

from __future__ import annotations

import threading
from math import prod
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch

if TYPE_CHECKING:
    from .structure import Structure

_GATHER_CHUNK_BYTES = 2**22  # CPU: gathered input rows per chunk of the weight gradient (4 MiB best)
_GATHER_CHUNK_BYTES_GPU = 2**26  # CUDA: fewer, larger chunks (each chunk is two kernel launches)
_TRANSPOSE_BLOCK = 2048  # CPU: columns per block when rows go back to (N, C, P)
_SCRATCH_MAX_BYTES = 2**24  # CPU: intermediates kept between calls up to 16 MiB each

#: The intermediates that have a scratch buffer of their own (one each per thread).
_Role = Literal["input", "rows", "operand", "product", "gather"]


class Policy(NamedTuple):
    """How the products run on one kind of device: every CPU/CUDA difference, in one place
    (so that the CUDA choices can be exercised on CPU tensors by the tests)."""

    bsr: bool  # 'auto' may store BSR (MKL's square-tile kernel; on CUDA, CSR via cuSPARSE)
    addmm: bool  # products as addmm into a given buffer, the bias as its start; else M @ X + b
    gather_chunk_bytes: int  # gathered input rows per chunk of the weight gradient
    transpose_block: int | None  # columns per block of a rows -> (N, C, P) copy; None: one copy
    keep_scratch: bool  # keep the intermediates' buffers between calls (scratch)


def policy(device: torch.device) -> Policy:
    if device.type == "cpu":
        return Policy(True, True, _GATHER_CHUNK_BYTES, _TRANSPOSE_BLOCK, True)
    # CUDA: one kernel per copy, fewer and larger chunks (each is two kernel launches), and
    # the caching allocator instead of kept buffers
    return Policy(False, False, _GATHER_CHUNK_BYTES_GPU, None, False)


class _ScratchPool(threading.local):
    """Per-thread CPU buffers for the intermediates that die within one call, one per role.

    On the machines this was measured on, a fresh 4 MiB buffer costs ~1.5 ms of page faults,
    25x filling a warm one (3x32x32 -> 16@3x3 at batch 64 has four such intermediates per
    forward+backward). Kept up to ``_SCRATCH_MAX_BYTES`` each, so at most a few tens of MiB
    per thread; larger ones are allocated per call (transparent huge pages make those cheap).
    """

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}


_POOL = _ScratchPool()


def scratch(role: _Role, shape: tuple[int, ...], like: torch.Tensor,
            policy: Policy) -> torch.Tensor:
    """An uninitialised ``shape`` buffer of ``like``'s dtype and device for role ``role``
    ('input', 'rows', 'operand', 'product', 'gather'): the thread's kept buffer where the
    policy keeps them and it is small enough, else a new one. Never returned to the caller."""
    numel = prod(shape)
    if not policy.keep_scratch or numel * like.element_size() > _SCRATCH_MAX_BYTES:
        return like.new_empty(shape)
    buf = _POOL.buffers.get(role)
    if buf is None or buf.dtype != like.dtype or buf.device != like.device or buf.numel() < numel:
        buf = _POOL.buffers[role] = like.new_empty(numel)
    return buf[:numel].view(shape)


# --------------------------------------------------------------------------- activations <-> rows


def rows(s: Structure, t: torch.Tensor, *, role: _Role, zero_row: bool = False) -> torch.Tensor:
    """``(N, C, *spatial)`` as channel-first rows ``(C * P (+ 1), N)``: one 2D transpose, into
    the scratch buffer of ``role`` ('input' for the input's rows, 'rows' for delta's).

    ``zero_row`` appends a row of zeros (the input rows: padding taps read it).
    """
    n = t.shape[0]
    f = t[0].numel()
    shape = (f + zero_row, n)
    buf = scratch(role, shape, t, s.policy)
    if zero_row:
        buf[f].zero_()
    buf[:f].copy_(t.reshape(n, f).t())
    return buf


def _reorder(s: Structure, rows: torch.Tensor, channels: int,
             inverse: bool = False) -> torch.Tensor:
    """``(C, P, N)`` rows as ``(P, C, N)`` (or back): one copy of contiguous runs of ``N``,
    into the 'operand' scratch buffer."""
    n = rows.shape[1]
    a, b = (-1, channels) if inverse else (channels, -1)  # the source's two leading axes
    buf = scratch("operand", rows.shape, rows, s.policy)
    buf.view(b, a, n).copy_(rows.view(a, b, n).transpose(0, 1))
    return buf


def operand(s: Structure, rows: torch.Tensor, channels: int) -> torch.Tensor:
    """The rows in the structure's order: channel-first as they are, or channels-last
    ``(P, C, N)`` (BSR)."""
    return _reorder(s, rows, channels) if s.channels_last else rows


def _transpose_into(dst: torch.Tensor, src: torch.Tensor, block: int | None) -> None:
    """``dst[:] = src.T`` for a wide ``(n, F)`` destination, ``block`` columns at a time (on
    the CPU a plain strided copy measured up to ~1.7x slower on the 64 x 200,704
    activations), or in one copy (``block=None``: one kernel on CUDA)."""
    if block is None:
        dst.copy_(src.t())
        return
    for a in range(0, src.shape[0], block):
        dst[:, a:a + block].copy_(src[a:a + block].t())


def unrows(s: Structure, Y: torch.Tensor, channels: int, out: torch.Tensor) -> torch.Tensor:
    """Product rows ``Y`` (the structure's order) into ``out``, an ``(N, C, P)`` view."""
    n = out.shape[0]
    if s.channels_last:  # (P, C, N) -> (C, P, N)
        Y = _reorder(s, Y, channels, inverse=True)
    _transpose_into(out.view(n, -1), Y, s.policy.transpose_block)
    return out


# --------------------------------------------------------------------------- products


def bias_rows(s: Structure, bias: torch.Tensor, n: int) -> torch.Tensor:
    """``bias`` per output row, broadcast over the batch: the ``input`` of ``addmm``."""
    per_row = bias.repeat(s.p_out) if s.channels_last else bias.repeat_interleave(s.p_out)
    return per_row[:, None].expand(-1, n)


def product(s: Structure, M: torch.Tensor, dense: torch.Tensor,
            bias_rows: torch.Tensor | None = None) -> torch.Tensor:
    """``M @ dense (+ bias_rows)``: on the CPU an ``addmm`` into the 'product' scratch
    buffer, the bias as its start (``beta=0`` without one; ``M @ dense`` measured ~2x
    slower on CSR), on CUDA ``M @ dense`` then ``+= bias_rows``."""
    if not s.policy.addmm:
        Y = M @ dense
        return Y if bias_rows is None else Y.add_(bias_rows)
    out = scratch("product", (M.shape[0], dense.shape[1]), dense, s.policy)
    if bias_rows is None:
        return torch.addmm(out, M, dense, beta=0, out=out)
    return torch.addmm(bias_rows, M, dense, out=out)


def weight_grad(s: Structure, X: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """``dW.flat[tap] = sum delta[row] * x[col]`` over the triples, grouped by tap.

    ``X``: the input rows with their zero row, ``D``: the rows of delta, both channel-first
    whatever the storage of C. For a chunk of output positions, one gather of whole rows of
    ``X`` along the pattern's table gives ``U[g, t, (p, n)]`` (the im2col matrix,
    transposed), and ``dW[g].T += U[g] @ D[g].T`` with ``D[g]`` viewed as
    ``(C_out/G, (p, n))`` (no copy).
    """
    G = s.geometry.groups
    n, taps, P = X.shape[1], s.gather.shape[1], s.p_out
    Dv = D.view(G, s.cout_g, P, n)
    dwt = X.new_zeros((G, taps, s.cout_g))  # dW^T = U @ D^T: MKL's faster orientation
    step = max(1, s.policy.gather_chunk_bytes // max(G * taps * n * X.element_size(), 1))
    buf = scratch("gather", (G * taps * min(step, P) * n,), X, s.policy)  # one for every chunk
    for a, idx in s.gather_chunks(step):
        b = a + idx.numel() // (G * taps)
        U = torch.index_select(X, 0, idx, out=buf[:idx.numel() * n].view(-1, n))
        U = U.view(G, taps, (b - a) * n)
        Dc = Dv[:, :, a:b].reshape(G, s.cout_g, (b - a) * n)
        if G == 1:
            dwt[0].addmm_(U[0], Dc[0].t())
        else:
            dwt.baddbmm_(U, Dc.transpose(1, 2))
    return dwt.transpose(1, 2).reshape(s.geometry.weight_shape)
