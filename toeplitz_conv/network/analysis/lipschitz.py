"""Operator norms of a compiled network's nodes, and a certified Lipschitz bound of the whole.

The 2-norm Lipschitz constant of a network is at most the bound composed along its graph:

- a linear node ``y = W x + b``: ``||W||_2`` times its input's bound; consecutive linear
  nodes are first multiplied into one matrix (``||W_2 W_1|| <= ||W_2|| ||W_1||``: merging
  never loosens the bound, and conv -> batch norm -> conv gets the norm of the composed map),
  as long as the product is cheap (at most :data:`MERGE_BUDGET` multiply-adds);
- an activation: ``sup |sigma'|`` times its input's (``ACTIVATIONS``' ``lipschitz``);
- max pooling: ``sqrt(windows)`` (each input entry in at most ``windows`` windows);
- softmax: 1; log-softmax: ``1 + sqrt(K)``;
- a sum or concatenation ``y = sum_i W_i x_i``: the smaller of ``sum_i ||W_i|| L_i`` (a
  residual ``x + F(x)`` gets ``1 + L_F``) and ``||[W_1 | W_2 | ...]|| sqrt(sum_i L_i^2)`` (a
  concatenation gets ``sqrt(L_1^2 + L_2^2)``).

An elementwise product of two tensors that both depend on the input has no global Lipschitz
constant: the bound is refused, naming the node.

Each norm is exact: the dense SVD for small matrices, else Lanczos on ``W^T W`` to a relative
tolerance of 1e-10 on ``sigma^2``, rounded up by that tolerance (Lanczos approaches the top
of the spectrum from below).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh

from .chain import product
from ..layers import Activation, Layer, MaxPool, Reshape
from ..nodes import Combine, Product, Softmax

if TYPE_CHECKING:
    from ..model import Network

#: Consecutive linear nodes are multiplied into one matrix when the product costs at most this
#: many multiply-adds (``nnz(W_2)`` times the mean nonzeros per row of ``W_1``).
MERGE_BUDGET = 5 * 10**8

#: Matrices with at most this many entries get the dense SVD (past it Lanczos is faster).
DENSE_MAX = 2**18

_TOL = 1e-10


def matrix_norm(M: sp.sparray | np.ndarray) -> float:
    """``||M||_2`` of a sparse (or dense) matrix: dense SVD when small, else Lanczos on the
    smaller of ``M^T M`` and ``M M^T``, rounded up by its tolerance."""
    m, n = M.shape
    if m == 0 or n == 0:
        return 0.0
    if m * n <= DENSE_MAX:
        A = (M.toarray()  # type: ignore[union-attr]  # issparse is no TypeGuard: scipy is untyped
             if sp.issparse(M) else np.asarray(M))
        return float(np.linalg.norm(A, 2))
    M = sp.csr_array(M)
    MT = sp.csr_array(M.T)
    if n <= m:
        op = LinearOperator((n, n), matvec=lambda x: MT @ (M @ x), dtype=M.dtype)
    else:
        op = LinearOperator((m, m), matvec=lambda x: M @ (MT @ x), dtype=M.dtype)
    v0 = np.random.default_rng(0).standard_normal(op.shape[0])
    lam = eigsh(op, k=1, which="LA", tol=_TOL, v0=v0, ncv=min(op.shape[0], 24),
                return_eigenvectors=False)[0]
    return float(np.sqrt(max(lam, 0.0) * (1 + 2 * _TOL)))


class NormRow(NamedTuple):
    """One node of :meth:`Network.layer_norms`: its position, name, kind, and constant."""

    position: int
    node: str
    kind: str
    constant: float | None
    what: str


class NormTable(list[NormRow]):
    """Rows of :class:`NormRow`; prints as a table."""

    def __str__(self) -> str:
        lines = [f"{'#':>3}  {'node':<28} {'kind':<18} {'constant':>12}  what"]
        for r in self:
            c = "-" if r.constant is None else f"{r.constant:.6g}"
            lines.append(f"{r.position:>3}  {r.node:<28} {r.kind:<18} {c:>12}  {r.what}")
        return "\n".join(lines)

    __repr__ = __str__


def _unknown(i: int, layer: Layer, why: str) -> ValueError:
    return ValueError(f"the network's Lipschitz constant is not bounded here: node {i} "
                      f"({layer.node!r}, {layer.kind}) {why}.")


def node_constant(layer: Layer) -> tuple[float | None, str]:
    """``(constant, what)`` of one node: the norm of a linear node's matrix, the Lipschitz
    constant of a nonlinear one, None for a product."""
    if isinstance(layer, Reshape):
        return 1.0, "reshape: norm 1"
    if layer.linear:
        return matrix_norm(layer.matrix), "||W||_2" + (" of [W_1 | W_2 | ...]" if isinstance(layer, Combine) else "")
    if isinstance(layer, Activation):
        return float(layer.function.lipschitz), "sup |sigma'|"
    if isinstance(layer, MaxPool):
        return layer.lipschitz, f"sqrt(windows per input = {layer.windows})"
    if isinstance(layer, Softmax):
        return layer.lipschitz, "log-softmax: 1 + sqrt(K)" if layer.log else "softmax: 1"
    return None, "product of two inputs: no global constant"


def layer_norms(net: Network) -> NormTable:
    """:meth:`Network.layer_norms`."""
    rows = NormTable()
    for i, layer in enumerate(net.layers):
        c, what = node_constant(layer)
        rows.append(NormRow(i + 1, layer.node, layer.kind, c, what))
    return rows


def lipschitz_bound(net: Network) -> float:
    """:meth:`Network.lipschitz_bound`."""
    layers = net.layers
    readers = [0] * (len(layers) + 1)
    for layer in layers:
        for p in layer.inputs:
            readers[p] += 1
    bound: dict[int, float] = {0: 1.0}
    # position -> (M, q): y_p = M y_q + c through linear one-input nodes, not yet normed
    chain: dict[int, tuple[sp.sparray, int]] = {}

    def at(p: int) -> float:
        if p not in bound:
            M, q = chain.pop(p)
            bound[p] = matrix_norm(M) * at(q)
        return bound[p]

    for i, layer in enumerate(layers):
        p = i + 1
        if isinstance(layer, Product):
            raise _unknown(i, layer, "multiplies two tensors that both depend on the input (x * y "
                                     "grows without bound with x and y)")
        if isinstance(layer, Reshape):
            r = layer.inputs[0]
            if r in chain and readers[r] == 1 and r != net.output:
                chain[p] = chain.pop(r)
            else:
                bound[p] = at(r)
            continue
        if layer.linear and not isinstance(layer, Combine):
            r, W = layer.inputs[0], layer.matrix
            if r in chain and readers[r] == 1 and r != net.output:
                M, q = chain[r]
                if W.nnz * (M.nnz / max(M.shape[0], 1)) <= MERGE_BUDGET:
                    del chain[r]
                    chain[p] = (product(W, M), q)
                    continue
            chain[p] = (W, r)
            continue
        if isinstance(layer, Combine):
            L = [at(q) for q in layer.inputs]
            summed = sum(matrix_norm(W) * l for W, l in zip(layer.matrices, L))
            stacked = matrix_norm(layer.matrix) * float(np.sqrt(sum(l * l for l in L)))
            bound[p] = min(summed, stacked)
            continue
        c, _ = node_constant(layer)
        if c is None:  # pragma: no cover - every other node has a constant
            raise _unknown(i, layer, "has no known Lipschitz constant")
        bound[p] = c * at(layer.inputs[0])
    return float(at(net.output))


def local_lipschitz(net: Network, x: npt.ArrayLike) -> float:
    """:meth:`Network.local_lipschitz`."""
    return matrix_norm(net.jacobian(x))
