"""Which entries of the input each entry of a node can depend on: a box of coordinates per entry.

The Jacobian's sparsity is known before any value: entry ``i`` of a node depends on input
entry ``j`` only if a path of stored entries leads from ``j`` to ``i``. Propagating the full
sets costs as much as the Jacobian itself; propagating their *bounding boxes* costs one pass
over the nodes' index structure. Each entry carries, per coordinate of the input (channel,
then each spatial axis), the least and the largest coordinate of the input entries it may
read, held as one int32 row ``[hi_0 .. hi_{d-1}, -lo_0 .. -lo_{d-1}]`` so that joining two
boxes is one elementwise ``max``; :data:`NONE` (every field) reads nothing.

A node maps boxes by its structure alone, without values:

- elementwise nodes (activations, eval batch norm, reshapes): the identity;
- a convolution: the max over the window of its pattern table (``src`` of
  :class:`~toeplitz_conv.ConvPattern`) and over the input channels of its group; max pooling
  likewise over its windows, per channel;
- softmax and normalisation: the max over each group;
- every other node: the max over the stored entries of each row of its matrices
  (``layer.local``), read in chunks of rows.

The same structures read backwards (:func:`backward_reach`) give, for each *input* entry, the
box of *output* coordinates it reaches: the rows' side, for a Jacobian coloured by rows.
A box is a superset of the true reach (a padded convolution clips it at the border exactly;
a circular one wraps, and its box spans the axis), which is all a colouring needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import scipy.sparse as sp

from ...pattern import conv_pattern
from ..layers import Activation, BatchNorm, Conv, ConvTranspose, Layer, MaxPool, Reshape
from ..nodes import Grouped, Product
from .chain import last_uses

if TYPE_CHECKING:
    from ..model import Network

#: A box that reaches nothing (every field of the ``[hi, -lo]`` row): ``max`` with it is a no-op.
NONE = np.int32(-(2**30))

#: Entries of the ``(nnz, 2d)`` gathered block read at a time through a generic matrix.
_CHUNK = 2**22

Acts = Callable[[], Sequence[np.ndarray]]


def own_boxes(shape: Sequence[int]) -> np.ndarray:
    """``(prod(shape), 2d)`` int32: each entry's box is its own coordinates."""
    coords = np.indices(tuple(shape), dtype=np.int32).reshape(len(shape), -1).T
    return np.ascontiguousarray(np.concatenate([coords, -coords], axis=1))


def bounds(M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lo, hi, reached)`` of boxes ``M``: ``reached`` is False where an entry reads nothing."""
    d = M.shape[1] // 2
    reached = M[:, 0] != NONE
    return -M[:, d:], M[:, :d], reached


def volumes(M: np.ndarray) -> np.ndarray:
    """The number of coordinates in each box (0 where it reaches nothing), float64."""
    d = M.shape[1] // 2
    vol = np.ones(M.shape[0])
    for a in range(d):  # hi - lo + 1 (lo is stored negated), axis by axis: a reduction over
        # a short axis crawls
        vol *= np.add(M[:, a], M[:, d + a], dtype=np.float64) + 1
    vol[M[:, 0] == NONE] = 0.0
    return vol


# --------------------------------------------------------------------------- generic matrices


def _rows_max(S: sp.csr_array, M: np.ndarray) -> np.ndarray:
    """``out[i] = max_{j: S[i, j] stored} M[j]``, read in chunks of rows."""
    S = sp.csr_array(S)
    out = np.full((S.shape[0], M.shape[1]), NONE, dtype=np.int32)
    indptr = S.indptr
    a = 0
    while a < S.shape[0]:
        b = int(np.searchsorted(indptr, indptr[a] + max(_CHUNK // max(M.shape[1], 1), 1), side="right")) - 1
        b = min(max(b, a + 1), S.shape[0])
        ptr = indptr[a:b + 1]
        rows = np.flatnonzero(np.diff(ptr)) + a
        if rows.size:
            block = M[S.indices[ptr[0]:ptr[-1]]]
            out[rows] = np.maximum.reduceat(block, indptr[rows] - ptr[0], axis=0)
        a = b
    return out


def _cols_max(S: sp.csr_array, M: np.ndarray, n_cols: int) -> np.ndarray:
    """``out[j] = max_{i: S[i, j] stored} M[i]``: the same structure read backwards."""
    S = sp.csr_array(S)
    out = np.full((n_cols, M.shape[1]), NONE, dtype=np.int32)
    rows = np.repeat(np.arange(S.shape[0]), np.diff(S.indptr))
    step = max(_CHUNK // max(M.shape[1], 1), 1)
    for a in range(0, S.nnz, step):
        np.maximum.at(out, S.indices[a:a + step], M[rows[a:a + step]])
    return out


# --------------------------------------------------------------------------- window tables


def _gather_max(Mg: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``(G, P_out, k)``: per group the max over each window of ``table`` (``P_in``: padding)."""
    G, p_in, k = Mg.shape
    padded = np.concatenate([Mg, np.full((G, 1, k), NONE, dtype=np.int32)], axis=1)
    table = np.minimum(table, p_in)
    out = padded[:, table[:, 0]]
    for t in range(1, table.shape[1]):
        np.maximum(out, padded[:, table[:, t]], out=out)
    return out


def _scatter_max(Mo: np.ndarray, table: np.ndarray, p_in: int) -> np.ndarray:
    """``(G, P_in, k)``: the windows of ``table`` read backwards (a scatter of maxima)."""
    G, _, k = Mo.shape
    out = np.full((p_in + 1, G, k), NONE, dtype=np.int32)
    Mo_t = np.ascontiguousarray(Mo.transpose(1, 0, 2))
    table = np.minimum(table, p_in)
    for t in range(table.shape[1]):
        idx = table[:, t]
        if np.bincount(idx, minlength=p_in + 1)[:p_in].max(initial=0) <= 1:
            # one tap of a convolution's windows reads each input once (the padding row, read
            # many times, is dropped): a plain gather and scatter, not the slow ufunc.at
            out[idx] = np.maximum(out[idx], Mo_t)
        else:
            np.maximum.at(out, idx, Mo_t)
    return np.ascontiguousarray(out[:p_in].transpose(1, 0, 2))


def _conv_table(layer: Conv) -> tuple[np.ndarray, Any]:
    """The spatial window table of a convolution (the taps of its first input channel) and
    its geometry."""
    geom = layer.geometry
    pat = conv_pattern(geom)
    K = prod(geom.kernel)
    return np.asarray(pat.src[:, :K]), geom


def _pool_table(layer: MaxPool) -> np.ndarray:
    return np.asarray(layer.geometry.table())


# --------------------------------------------------------------------------- one node


def _matrices(layer: Layer, i: int, acts: Acts) -> list[sp.sparray | None]:
    """The node's per-input matrices: a linear node's own, a product's broadcasts (its
    structure, whatever the values), else at the sample (``acts``). A matrix built here is not
    kept (:func:`_read`)."""
    if layer.linear:
        return layer.local(None, None)  # type: ignore[arg-type]  # a linear node reads neither
    if isinstance(layer, Product):
        return list(layer.broadcasts)
    a = acts()
    return layer.local([a[p] for p in layer.inputs], a[i + 1])


def _read(layer: Layer, i: int, acts: Acts, read: Callable[[list[sp.sparray | None]], Any]) -> Any:
    """``read(matrices)``, releasing the node's matrix afterwards unless it was built before."""
    kept = bool(getattr(layer, "built", True))
    try:
        return read(_matrices(layer, i, acts))
    finally:
        if not kept:
            layer.release()


def _identity(layer: Layer) -> bool:
    return isinstance(layer, (Activation, BatchNorm, Reshape))


def push(layer: Layer, i: int, Ms: Sequence[np.ndarray], acts: Acts) -> np.ndarray:
    """The boxes of the node's output from those of its inputs (the forward reading)."""
    if _identity(layer):
        return Ms[0]
    k = Ms[0].shape[1]
    if isinstance(layer, Conv) and not isinstance(layer, ConvTranspose):
        table, geom = _conv_table(layer)
        G, p_in = geom.groups, prod(geom.in_spatial)
        Mg = Ms[0].reshape(G, geom.cin_per_group, p_in, k).max(axis=1)
        out = _gather_max(Mg, table)  # (G, P_out, k)
        return np.repeat(out[:, None], geom.cout_per_group, axis=1).reshape(-1, k)
    if isinstance(layer, MaxPool) and hasattr(layer, "geometry"):
        c, p_in = layer.in_shape[0], prod(layer.in_shape[1:])
        return _gather_max(Ms[0].reshape(c, p_in, k), _pool_table(layer)).reshape(-1, k)
    if isinstance(layer, Grouped):
        groups = layer.groups()
        out = np.empty_like(Ms[0])
        out[groups] = Ms[0][groups].max(axis=1)[:, None]
        return out

    def rows(mats: list[sp.sparray | None]) -> np.ndarray:
        total: np.ndarray | None = None
        for L, M in zip(mats, Ms):
            part = M if L is None else _rows_max(cast(sp.csr_array, L), M)
            total = part if total is None else np.maximum(total, part)
        return cast(np.ndarray, total)
    return cast(np.ndarray, _read(layer, i, acts, rows))


def pull(layer: Layer, i: int, M: np.ndarray, acts: Acts) -> list[np.ndarray]:
    """The boxes of the node's inputs from those of its output (the backward reading)."""
    if _identity(layer):
        return [M]
    k = M.shape[1]
    if isinstance(layer, Conv) and not isinstance(layer, ConvTranspose):
        table, geom = _conv_table(layer)
        G, p_in = geom.groups, prod(geom.in_spatial)
        Mo = M.reshape(G, geom.cout_per_group, -1, k).max(axis=1)
        back = _scatter_max(Mo, table, p_in)  # (G, P_in, k)
        return [np.repeat(back[:, None], geom.cin_per_group, axis=1).reshape(-1, k)]
    if isinstance(layer, MaxPool) and hasattr(layer, "geometry"):
        c, p_in = layer.in_shape[0], prod(layer.in_shape[1:])
        return [_scatter_max(M.reshape(c, -1, k), _pool_table(layer), p_in).reshape(-1, k)]
    if isinstance(layer, Grouped):
        groups = layer.groups()
        out = np.empty_like(M)
        out[groups] = M[groups].max(axis=1)[:, None]
        return [out]
    return cast("list[np.ndarray]", _read(layer, i, acts, lambda mats: [
        M if L is None else _cols_max(cast(sp.csr_array, L), M, L.shape[1]) for L in mats]))


# --------------------------------------------------------------------------- the network


def forward_reach(net: Network, acts: Acts) -> tuple[np.ndarray, list[float]]:
    """``(boxes at the output, summed box volume at each position)``: for each output entry
    the box of input coordinates it may depend on; the volumes bound the nonzeros of each
    position's Jacobian (what the product chain would hold there)."""
    last = last_uses(net.layers, len(net.layers) + 1)
    M: dict[int, np.ndarray] = {0: own_boxes(net.input_shape)}
    sums = [float(volumes(M[0]).sum())]
    for i, layer in enumerate(net.layers):
        M[i + 1] = push(layer, i, [M[p] for p in layer.inputs], acts)
        sums.append(float(volumes(M[i + 1]).sum()))
        for p in set(layer.inputs):
            if last[p] <= i and p != net.output:
                del M[p]
    return M[net.output], sums


def backward_reach(net: Network, acts: Acts) -> np.ndarray:
    """For each input entry, the box of output coordinates it may reach (:data:`NONE` where
    it reaches no output)."""
    M: dict[int, np.ndarray] = {net.output: own_boxes(net.output_shape)}
    for i in range(net.output - 1, -1, -1):
        out = M.pop(i + 1, None)
        if out is None:  # the node does not reach the output
            continue
        layer = net.layers[i]
        for p, Mp in zip(layer.inputs, pull(layer, i, out, acts)):
            M[p] = Mp if p not in M else np.maximum(M[p], Mp)
    d = len(net.output_shape)
    return M.get(0, np.full((prod(net.input_shape), 2 * d), NONE, dtype=np.int32))
