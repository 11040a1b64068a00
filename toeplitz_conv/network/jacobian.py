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

import numpy as np
import scipy.sparse as sp

from ..memory import check_size
from .layers import Activation, MaxPool


def _times(L, J):
    return J if L is None else (L @ J).tocsr()


def _last_uses(layers, n_positions):
    """For each position, the index of the last layer that reads it (-1 if none)."""
    last = np.full(n_positions, -1)
    for i, layer in enumerate(layers):
        for p in layer.inputs:
            last[p] = i
    return last


def linear_map(layers, start, stop, n_in, dtype):
    """``(M, b)`` from position ``start`` to position ``stop``: every node between must be linear
    and read only what comes from ``start``."""
    if stop < start:
        raise ValueError(f"linear_map needs start before stop; got positions start={start}, stop={stop}.")
    J = {start: sp.eye_array(n_in, dtype=dtype, format="csr")}
    b = {start: np.zeros(n_in, dtype=dtype)}
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
        mats = layer.local(None, None)
        J[i + 1] = sum(_times(L, J[p]) for L, p in zip(mats, layer.inputs))
        b[i + 1] = sum(b[p] if L is None else L @ b[p] for L, p in zip(mats, layer.inputs))
        if layer.bias is not None:
            b[i + 1] = b[i + 1] + layer.bias
    if stop not in J:
        raise ValueError(f"linear_map: position {stop} is not computed from position {start}.")
    return sp.csr_array(J[stop]), np.asarray(b[stop])


def _estimate(layers, acts, output, dtype, n_in, n_out, rows=48):
    """Bytes of the Jacobian's CSR, from a sample of its rows (computed backward)."""
    itemsize = np.dtype(dtype).itemsize
    if n_out <= rows:
        return n_out * n_in * (itemsize + 8) + 8 * (n_out + 1)
    pick = np.sort(np.random.default_rng(0).choice(n_out, rows, replace=False))
    seed = sp.csr_array((np.ones(rows, dtype=dtype), (np.arange(rows), pick)), shape=(rows, n_out))
    nnz = _backward(layers, acts, output, seed).nnz * n_out / rows
    return int(nnz * (itemsize + 8) + 8 * (n_out + 1))


def _forward(layers, acts, output, n_in, dtype):
    last = _last_uses(layers, len(acts))
    J = {0: sp.eye_array(n_in, dtype=dtype, format="csr")}
    for i, layer in enumerate(layers):
        if i + 1 > output:
            break
        locs = layer.local([acts[p] for p in layer.inputs], acts[i + 1])
        total = None
        for L, p in zip(locs, layer.inputs):
            term = _times(L, J[p])
            total = term if total is None else total + term
        total = sp.csr_array(total)
        total.eliminate_zeros()
        J[i + 1] = total
        for p in set(layer.inputs):
            if last[p] <= i and p != output:
                del J[p]
    return J[output]


def _backward(layers, acts, output, seed):
    G = {output: seed}
    for i in range(output - 1, -1, -1):
        g = G.pop(i + 1, None)
        if g is None:
            continue
        layer = layers[i]
        locs = layer.local([acts[p] for p in layer.inputs], acts[i + 1])
        for L, p in zip(locs, layer.inputs):
            term = g if L is None else sp.csr_array(g @ L)
            G[p] = term if p not in G else G[p] + term
    result = sp.csr_array(G.get(0, sp.csr_array(seed.shape[:1] + (acts[0].shape[0],), dtype=seed.dtype)))
    result.eliminate_zeros()
    return result


def jacobian(layers, acts, output, dtype):
    """The Jacobian of position ``output`` w.r.t. the input, at the one sample in ``acts``."""
    n_in, n_out = acts[0].shape[0], acts[output].shape[0]
    check_size("the network's Jacobian", _estimate(layers, acts, output, dtype, n_in, n_out),
               f"{n_out:,} x {n_in:,}, nonzeros estimated from a sample of its rows")
    if n_out < n_in:
        J = _backward(layers, acts, output, sp.eye_array(n_out, dtype=dtype, format="csr"))
    else:
        J = _forward(layers, acts, output, n_in, dtype)
    J = sp.csr_array(J)
    J.sort_indices()
    return J
