"""Operator norms of a compiled network's nodes, and a certified Lipschitz bound of the whole.

The 2-norm Lipschitz constant of a network is at most the bound composed along its graph:

- a linear node ``y = W x + b``: ``||W||_2`` times its input's bound; consecutive linear
  nodes are first composed into one map (``||W_2 W_1|| <= ||W_2|| ||W_1||``: merging never
  loosens the bound, and conv -> batch norm -> conv gets the norm of the composed map);
- an activation: ``sup |sigma'|`` times its input's (``ACTIVATIONS``' ``lipschitz``);
- max pooling: ``sqrt(windows)`` (each input entry in at most ``windows`` windows);
- softmax: 1; log-softmax: ``1 + sqrt(K)``;
- a normalisation: ``max |gamma| / sqrt(eps)`` (certified, and loose: its bound as the variance
  of a group goes to 0);
- a sum or concatenation ``y = sum_i W_i x_i``: the smaller of ``sum_i ||W_i|| L_i`` (a
  residual ``x + F(x)`` gets ``1 + L_F``) and ``||[W_1 | W_2 | ...]|| sqrt(sum_i L_i^2)`` (a
  concatenation gets ``sqrt(L_1^2 + L_2^2)``).

An elementwise product of two tensors that both depend on the input has no global Lipschitz
constant: the bound is refused, naming the node.

Each norm is exact: the dense SVD for small maps, else Lanczos on ``W^T W`` to a relative
tolerance of 1e-10 on ``sigma^2``, rounded up by that tolerance (Lanczos approaches the top
of the spectrum from below). Nothing here builds a layer's matrix: each node is applied
matrix-free (:meth:`~toeplitz_conv.network.affine.Affine.operator`: a convolution from its
pattern table, a run of nodes as the composition of theirs, forward through each node and
back through each adjoint), in float64, one run at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator, eigsh

from ...lanczos import blas_threads
from ..layers import Activation, Affine, Layer, MaxPool, Reshape
from ..nodes import Combine, Normalise, Product, Softmax

if TYPE_CHECKING:
    from ..model import Network

#: Maps with at most this many entries get the dense SVD (past it Lanczos is faster); so does
#: a map with at most :data:`DENSE_SIDE` rows or columns (its dense block is that thin).
DENSE_MAX = 2**18
DENSE_SIDE = 8

#: BLAS threads while Lanczos runs (through threadpoolctl when installed; None leaves them):
#: each product alternates a small BLAS matmul with single-threaded gathers.
BLAS_THREADS = 1

_TOL = 1e-10


def operator_norm(A: LinearOperator, tol: float = _TOL) -> float:
    """``||A||_2`` of a linear map given by its products (``A @ X`` and ``A.H @ Y``): the dense
    SVD when small (``A`` applied to the identity of its smaller side), else Lanczos on the
    smaller of ``A^T A`` and ``A A^T`` to a relative tolerance of ``tol`` (1e-10) on ``sigma^2``,
    rounded up by it (Lanczos approaches the top of the spectrum from below).

    Parameters
    ----------
    A : (m, n) scipy.sparse.linalg.LinearOperator
        Real. Computed in float64 whatever its dtype: a float32 matrix's norm is that of its
        entries, exactly as stored (in float32, ARPACK cannot reach the tolerance, and fails
        outright on a map whose singular values are all equal, such as a residual sum's
        ``[I | I]``).
    tol : float
        Lanczos' relative tolerance on ``sigma^2``.

    Returns
    -------
    float
    """
    m, n = A.shape
    if m == 0 or n == 0:
        return 0.0
    f64 = np.float64
    if m * n <= DENSE_MAX or min(m, n) <= DENSE_SIDE:
        D = A @ np.eye(n, dtype=f64) if n <= m else (A.H @ np.eye(m, dtype=f64)).T
        return float(np.linalg.norm(np.asarray(D, dtype=f64), 2))
    if n <= m:
        op = LinearOperator((n, n), matvec=lambda x: np.asarray(A.rmatvec(A.matvec(x)), dtype=f64), dtype=f64)
    else:
        op = LinearOperator((m, m), matvec=lambda x: np.asarray(A.matvec(A.rmatvec(x)), dtype=f64), dtype=f64)
    v0 = np.random.default_rng(0).standard_normal(op.shape[0])
    with blas_threads(BLAS_THREADS):
        lam = eigsh(op, k=1, which="LA", tol=tol, v0=v0, ncv=min(op.shape[0], 24),
                    return_eigenvectors=False)[0]
    return float(np.sqrt(max(lam, 0.0) * (1 + 2 * tol)))


def matrix_norm(M: sp.sparray | np.ndarray) -> float:
    """``||M||_2`` of a sparse (or dense) matrix, as :func:`operator_norm`."""
    return operator_norm(aslinearoperator(sp.csr_array(M) if sp.issparse(M) else np.asarray(M)))


def run_norm(nodes: Sequence[Layer]) -> float:
    """``||W_k ... W_2 W_1||_2`` of a run of linear one-input nodes (``nodes[0]`` applied first),
    matrix-free: the composition of the nodes' operators in float64 (a reshape is the identity
    and drops out), whose product with a vector runs forward through each node and whose
    adjoint runs back through each one's adjoint. No matrix is built (or kept)."""
    ops = [node.operator(np.float64) for node in nodes
           if isinstance(node, Affine) and not isinstance(node, Reshape)]
    if not ops:
        return 1.0
    return operator_norm(reduce(lambda inner, outer: outer @ inner, ops))


class NormRow(NamedTuple):
    """One node of :meth:`Network.layer_norms`: its position (0: the input, so node ``[i]`` of
    ``print(net)`` is at ``i + 1``), traced node name, kind, constant, and the name
    ``print(net)`` shows (the module's)."""

    position: int
    node: str
    kind: str
    constant: float | None
    what: str
    label: str = ""


class NormTable(list[NormRow]):
    """Rows of :class:`NormRow`; prints as a table."""

    def __str__(self) -> str:
        lines = [f"{'[i]':>5}  {'node':<28} {'kind':<18} {'constant':>12}  what"]  # numbered as print(net)
        for r in self:
            c = "-" if r.constant is None else f"{r.constant:.6g}"
            lines.append(f"{f'[{r.position - 1}]':>5}  {r.label or r.node:<28} {r.kind:<18} {c:>12}  {r.what}")
        return "\n".join(lines)

    __repr__ = __str__


def unbounded(i: int, layer: Layer, why: str = "") -> ValueError:
    """The refusal for node ``i``, which has no global Lipschitz constant."""
    why = why or ("multiplies two tensors that both depend on the input (x * y grows without "
                  "bound with x and y)" if isinstance(layer, Product) else "has no known Lipschitz constant")
    return ValueError(f"the network's Lipschitz constant is not bounded here: node {i} "
                      f"({layer.node!r}, {layer.kind}) {why}.")


def node_constant(layer: Layer) -> tuple[float | None, str]:
    """``(constant, what)`` of one node: the norm of a linear node's matrix, the Lipschitz
    constant of a nonlinear one, None for a product."""
    if isinstance(layer, Reshape):
        return 1.0, "reshape: norm 1"
    if isinstance(layer, Combine):
        return matrix_norm(layer.matrix), "||W||_2 of [W_1 | W_2 | ...]"
    if layer.linear:
        return run_norm([layer]), "||W||_2"
    if isinstance(layer, Activation):
        return float(layer.function.lipschitz), "sup |sigma'|"
    if isinstance(layer, MaxPool):
        return layer.lipschitz, f"sqrt(windows per input = {layer.windows})"
    if isinstance(layer, Softmax):
        return layer.lipschitz, "log-softmax: 1 + sqrt(K)" if layer.log else "softmax: 1"
    if isinstance(layer, Normalise):
        return layer.lipschitz, f"normalisation: max|gamma| / sqrt(eps = {layer.eps:g}), as the variance goes to 0"
    return None, "product of two inputs: no global constant"


def layer_norms(net: Network) -> NormTable:
    """:meth:`Network.layer_norms`."""
    rows = NormTable()
    for i, layer in enumerate(net.layers):
        c, what = node_constant(layer)
        rows.append(NormRow(i + 1, layer.node, layer.kind, c, what, layer.name or layer.node))
    return rows


def reaching(net: Network) -> list[bool]:
    """Per position (0: the input), whether the network's output reads it, directly or not."""
    live = [False] * (len(net.layers) + 1)
    live[net.output] = True
    for i in range(len(net.layers) - 1, -1, -1):
        if live[i + 1]:
            for p in net.layers[i].inputs:
                live[p] = True
    return live


def product_bound(net: Network) -> float:
    """:meth:`Network.lipschitz_bound` with ``method='product'``: the rules above."""
    net.check_batch(1)  # a model that reads its batch size is another map at each batch
    layers = net.layers
    live = reaching(net)  # a branch computed but never read by the output bounds nothing
    readers = [0] * (len(layers) + 1)
    for i, layer in enumerate(layers):
        for p in layer.inputs if live[i + 1] else ():
            readers[p] += 1
    bound: dict[int, float] = {0: 1.0}
    # position -> (nodes, q): y_p = W_k ... W_1 y_q + c through linear one-input nodes, not yet normed
    chain: dict[int, tuple[list[Layer], int]] = {}

    def at(p: int) -> float:
        if p not in bound:
            nodes, q = chain.pop(p)
            bound[p] = run_norm(nodes) * at(q)
        return bound[p]

    for i, layer in enumerate(layers):
        p = i + 1
        if not live[p]:
            continue
        if isinstance(layer, Product):
            raise unbounded(i, layer)
        if layer.linear and not isinstance(layer, Combine):
            r = layer.inputs[0]
            if r in chain and readers[r] == 1 and r != net.output:  # compose with the run before
                nodes, q = chain.pop(r)
                chain[p] = (nodes + [layer], q)
            else:
                chain[p] = ([layer], r)
            continue
        if isinstance(layer, Combine):
            L = [at(q) for q in layer.inputs]
            summed = sum(matrix_norm(W) * l for W, l in zip(layer.matrices, L))
            stacked = matrix_norm(layer.matrix) * float(np.sqrt(sum(l * l for l in L)))
            bound[p] = min(summed, stacked)
            continue
        c, _ = node_constant(layer)
        if c is None:  # pragma: no cover - every other node has a constant
            raise unbounded(i, layer)
        bound[p] = c * at(layer.inputs[0])
    return float(at(net.output))


def local_lipschitz(net: Network, x: npt.ArrayLike) -> float:
    """:meth:`Network.local_lipschitz`."""
    return matrix_norm(net.jacobian(x))
