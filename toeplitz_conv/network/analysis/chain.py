"""Exact Jacobians and linear maps of a compiled network, as sparse matrices.

Each node gives its per-sample Jacobians ``L_i = dy/dx_i`` (``layer.local``): ``W`` for an
affine node, ``diag(sigma'(z))`` for an activation, the selection ``S`` for max pooling, one
matrix per input for a sum, concatenation or product. The network's Jacobian is their
product along the graph (the chain rule with matrices), accumulated either

- forward, from the input: ``J_y = sum_i L_i J_{x_i}`` in topological order, or
- backward, from the output: ``G_{x_i} += G_y L_i`` in reverse order,

whichever starts at the smaller end (the intermediate matrices have that many columns, or
rows). Only nonzeros are stored: the receptive fields of the outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ...indexing import index_dtype
from ...memory import check_size, memory_limit
from ..layers import Activation, Layer, MaxPool

if TYPE_CHECKING:
    import torch


# torch's product (two threads) for mid-sized operands: below the floor scipy is as fast,
# above the ceiling the int64 index copies torch needs cost more memory than the threads save
_TORCH_NNZ = (200_000, 20_000_000)


def compact(M: sp.sparray) -> sp.csr_array:
    """``M`` as CSR with int32 indices where they fit: scipy multiplies in the wider index
    type of its two operands, so one int64 operand would copy a whole conv matrix's indices."""
    M = sp.csr_array(M)
    dtype = index_dtype(M.nnz, *M.shape)
    if M.indices.dtype != dtype or M.indptr.dtype != dtype:
        M = sp.csr_array((M.data, M.indices.astype(dtype), M.indptr.astype(dtype)), shape=M.shape)
    return M


def _nonzeros(M: sp.csr_array, data: np.ndarray) -> sp.csr_array:
    """``M``'s structure with new ``data``, the entries that became zero dropped."""
    keep = data != 0
    kept = np.concatenate([[0], np.cumsum(keep)]).astype(M.indptr.dtype)
    return sp.csr_array((data[keep], M.indices[keep], kept[M.indptr]), shape=M.shape)


def product_bytes(nnz: float, itemsize: int, idx: int) -> float:
    """Bytes one :func:`product` of operands of about ``nnz`` entries holds at once: an operand
    and its result, and where torch runs it their int64 index copies and torch's result."""
    lo, hi = _TORCH_NNZ
    return 2 * nnz * (itemsize + idx + (16 if lo <= nnz <= hi else 0))


def product(A: sp.sparray, B: sp.sparray) -> sp.csr_array:
    """``A @ B`` of two sparse matrices as CSR. A diagonal factor scales rows or columns;
    mid-sized products run in torch's sparse CSR product (multithreaded on the CPU; the same
    sums), the others in scipy."""
    if A.format == "dia" and A.offsets.tolist() == [0]:  # diag(d) @ B: scale B's rows
        B = compact(B)
        return _nonzeros(B, B.data * np.repeat(A.data[0][: B.shape[0]], np.diff(B.indptr)))
    if B.format == "dia" and B.offsets.tolist() == [0]:  # A @ diag(d): scale A's columns
        A = compact(A)
        return _nonzeros(A, A.data * B.data[0][A.indices])
    A, B = compact(A), compact(B)
    lo, hi = _TORCH_NNZ
    if min(A.nnz, B.nnz) < lo or max(A.nnz, B.nnz) > hi or A.dtype != B.dtype:
        return compact(A @ B)
    import torch

    def to_torch(M: sp.csr_array) -> torch.Tensor:
        return torch.sparse_csr_tensor(torch.from_numpy(M.indptr.astype(np.int64)),
                                       torch.from_numpy(M.indices.astype(np.int64)),
                                       torch.from_numpy(M.data), size=M.shape, check_invariants=False)

    C = torch.sparse.mm(to_torch(A), to_torch(B))
    return compact(sp.csr_array((C.values().numpy(), C.col_indices().numpy(), C.crow_indices().numpy()),
                                shape=(A.shape[0], B.shape[1])))


def _times(L: sp.sparray | None, J: sp.sparray) -> sp.sparray:
    return J if L is None else product(L, J)


def last_uses(layers: Sequence[Layer], n_positions: int) -> np.ndarray:
    """For each position, the index of the last layer that reads it (-1 if none)."""
    last = np.full(n_positions, -1)
    for i, layer in enumerate(layers):
        for p in layer.inputs:
            last[p] = i
    return last


def linear_map(layers: Sequence[Layer], start: int, stop: int, n_in: int,
               dtype: npt.DTypeLike) -> tuple[sp.csr_array, np.ndarray]:
    """``(M, b)`` from position ``start`` to position ``stop``: every node between must be linear
    and read only what comes from ``start``."""
    if stop < start:
        raise ValueError(f"linear_map needs start before stop; got positions start={start}, stop={stop}.")
    J = {start: sp.eye_array(n_in, dtype=dtype, format="csr")}
    b: dict[int, np.ndarray] = {start: np.zeros(n_in, dtype=dtype)}
    for i in range(start, stop):
        layer = layers[i]
        reached = [p for p in layer.inputs if p in J]
        if not reached:
            continue
        if not layer.linear:
            why = ("max pooling is linear only per input (its selection matrix depends on x)"
                   if isinstance(layer, MaxPool) else "an elementwise nonlinear activation"
                   if isinstance(layer, Activation) else f"{layer.kind} is not linear")
            raise ValueError(
                f"linear_map needs linear layers only; layer {i} ({layer.name!r}, {layer.kind}) "
                f"in range({start}, {stop}) is not: {why}."
            )
        if len(reached) < len(layer.inputs):
            other = next(p for p in layer.inputs if p not in J)
            raise ValueError(
                f"linear_map from position {start} to {stop}: layer {i} ({layer.node!r}) also reads "
                f"position {other}, which does not come from position {start}; the map would depend on it."
            )
        mats = layer.local(None, None)  # type: ignore[arg-type]  # a linear node reads neither
        J[i + 1] = sum(_times(L, J[p]) for L, p in zip(mats, layer.inputs))
        b[i + 1] = cast("np.ndarray",  # a sum of at least one vector: never the start 0
                        sum(b[p] if L is None else L @ b[p] for L, p in zip(mats, layer.inputs)))
        if layer.bias is not None:
            b[i + 1] = b[i + 1] + layer.bias
    if stop not in J:
        raise ValueError(f"linear_map: position {stop} is not computed from position {start}.")
    return sp.csr_array(J[stop]), np.asarray(b[stop])


def _backward(layers: Sequence[Layer], acts: Sequence[np.ndarray], output: int,
              seed: sp.csr_array) -> dict[int, sp.csr_array]:
    """``{0: dy_output/dx}`` (the rows of ``seed``), accumulated from the output alone."""
    G = {output: seed}
    for i in range(output - 1, -1, -1):
        g = G.pop(i + 1, None)
        if g is not None:
            _pull(layers[i], acts, i, g, G)
    return G


def _pull(layer: Layer, acts: Sequence[np.ndarray], i: int, g: sp.csr_array,
          G: dict[int, sp.csr_array]) -> None:
    """One backward step: ``G_p += g L_p`` for each input ``p`` of layer ``i``."""
    for L, p in zip(_local(layer, acts, i), layer.inputs):
        term = g if L is None else product(g, L)
        G[p] = term if p not in G else compact(G[p] + term)


def _estimate(layers: Sequence[Layer], acts: Sequence[np.ndarray], output: int,
              dtype: npt.DTypeLike, n_in: int, n_out: int, rows: int = 48) -> tuple[int, str]:
    """Bytes of the Jacobian's CSR: its dense size when that fits the memory limit, else
    estimated from a sample of its rows (computed backward)."""
    itemsize = np.dtype(dtype).itemsize
    dense = n_out * n_in * (itemsize + 8) + 8 * (n_out + 1)
    if n_out <= rows or dense <= memory_limit()[0]:
        return dense, "at most, its dense size"
    pick = np.sort(np.random.default_rng(0).choice(n_out, rows, replace=False))
    seed = _rows(pick, n_out, dtype)
    G = _backward(layers, acts, output, seed)
    nnz = G[0].nnz * n_out / rows if 0 in G else 0
    return int(nnz * (itemsize + 8) + 8 * (n_out + 1)), "nonzeros estimated from a sample of its rows"


def _local(layer: Layer, acts: Sequence[np.ndarray], i: int) -> list[sp.sparray | None]:
    return layer.local([acts[p] for p in layer.inputs], acts[i + 1])


def _row_nnz(M: sp.sparray | None) -> float:
    return M.nnz / max(M.shape[0], 1) if M is not None else 1.0


CHUNK_ROWS = 8192  # output rows accumulated backward at a time: bounds the backward side's memory


def jacobian(layers: Sequence[Layer], acts: Sequence[np.ndarray], output: int,
             dtype: npt.DTypeLike) -> sp.csr_array:
    """The Jacobian of position ``output`` w.r.t. the input, at the one sample in ``acts``.

    Accumulated from both ends: forward ``J_y = sum_i L_i J_{x_i}`` from the input and
    backward ``G_{x_i} += G_y L_i`` from the output, each step taken at the end whose next
    product is cheaper (nonzeros of the accumulated matrix times nonzeros per row of the
    local one), until the two meet at a cut; then ``J = sum_p G_p J_p`` over the positions
    where they meet. A classifier is thus accumulated from its few outputs, a denoiser from
    both ends (each end multiplies the thin matrices of its own side). The backward side
    runs on blocks of :data:`CHUNK_ROWS` output rows, so only one block of ``G`` is held.
    """
    n_in, n_out = acts[0].shape[0], acts[output].shape[0]
    nbytes, how = _estimate(layers, acts, output, dtype, n_in, n_out)
    check_size("the network's Jacobian", nbytes, f"{n_out:,} x {n_in:,}, {how}")
    blocks = [np.arange(a, min(a + CHUNK_ROWS, n_out)) for a in range(0, n_out, CHUNK_ROWS)] or [np.arange(0)]
    last = last_uses(layers, len(acts))
    J = {0: compact(sp.eye_array(n_in, dtype=dtype, format="csr"))}
    G = {output: _rows(blocks[0], n_out, dtype)}
    scale = n_out / max(len(blocks[0]), 1)  # the backward side's cost is paid once per block
    f, b = 0, output  # layers [0, f) ran forward, layers [b, output) backward (first block)
    while f < b:
        if G.get(b) is None:  # layer b - 1 does not reach the output: nothing to pull
            b -= 1
            continue
        lf = _local(layers[f], acts, f)
        cost_f = sum(J[p].nnz * _row_nnz(L) for L, p in zip(lf, layers[f].inputs))
        lb = _local(layers[b - 1], acts, b - 1)
        cost_b = scale * G[b].nnz * max((_row_nnz(L) for L in lb), default=1.0)
        if cost_f <= cost_b:
            total = None
            for L, p in zip(lf, layers[f].inputs):
                term = _times(L, J[p])
                total = term if total is None else total + term
            J[f + 1] = compact(total)
            J[f + 1].eliminate_zeros()
            for p in set(layers[f].inputs):
                if last[p] <= f:  # its last reader ran forward
                    del J[p]
            f += 1
        else:
            _pull(layers[b - 1], acts, b - 1, G.pop(b), G)
            b -= 1
    parts = [_meet(G, J, len(blocks[0]), n_in, dtype)]
    for rows in blocks[1:]:
        G = {output: _rows(rows, n_out, dtype)}
        for i in range(output - 1, f - 1, -1):
            g = G.pop(i + 1, None)
            if g is not None:
                _pull(layers[i], acts, i, g, G)
        parts.append(_meet(G, J, len(rows), n_in, dtype))
    total = parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")
    total.sort_indices()
    return sp.csr_array(total)


def _rows(rows: np.ndarray, n: int, dtype: npt.DTypeLike) -> sp.csr_array:
    """The rows ``rows`` of the identity ``I_n``: the seed of a block of the backward side."""
    return compact(sp.csr_array((np.ones(rows.size, dtype=dtype), (np.arange(rows.size), rows)), shape=(rows.size, n)))


def _meet(G: dict[int, sp.csr_array], J: dict[int, sp.csr_array], rows: int, n_in: int,
          dtype: npt.DTypeLike) -> sp.csr_array:
    """``sum_p G_p J_p``: one block of rows of the Jacobian."""
    total = sum(product(G[p], J[p]) for p in G)
    total = sp.csr_array(total) if sp.issparse(total) else sp.csr_array((rows, n_in), dtype=dtype)
    total.eliminate_zeros()
    return total
