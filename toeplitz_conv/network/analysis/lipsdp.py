"""LipSDP (Fazlyab et al., 2019) on the compiled network's sparse matrices: the tightest
certified Lipschitz bound here, for small chains (``method='lipsdp'`` / ``'lipsdp-layer'``).

The network must be a chain ``f(x) = W_L phi(W_{L-1} ... phi(W_0 x + b_0) ...) + b_L`` of linear
runs ``W_k`` (convolutions, batch norms, poolings, reshapes, linear layers: each run's product
of sparse matrices) and elementwise activations with secant slopes in ``[alpha, beta]``.

The inequality (LipSDP-Neuron, Theorem 2 of Fazlyab et al.). Stack ``z = (x_0, x_1, ..., x_L)``
(the input and each activation's output, ``N = n_0 + n_1 + ... + n_L`` entries) and let
``A = [blkdiag(W_0, ..., W_{L-1}) | 0]``, ``B = [0 | I]``, so that ``x_{k+1} = phi(A_k z)``.
For two inputs, ``dv = A dz`` and ``dw = B dz`` (the differences before and after the
activations) satisfy, neuron by neuron, ``(dw_j - alpha_j dv_j)(beta_j dv_j - dw_j) >= 0``: the
secant slope ``dw_j / dv_j`` lies in ``[alpha_j, beta_j]``. For any ``t >= 0`` the weighted sum of these
is ``>= 0``, i.e. ``[dv; dw]^T Q(t) [dv; dw] >= 0`` with
``Q(t) = [[-2 alpha beta T, (alpha + beta) T], [(alpha + beta) T, -2 T]]``, ``T = diag(t)``.
If

    M(rho, t) = [A; B]^T Q(t) [A; B] + diag(-rho I_{n_0}, 0, ..., 0, W_L^T W_L)  <=  0,

then ``0 >= dz^T M dz = [dv; dw]^T Q [dv; dw] - rho ||dx_0||^2 + ||W_L dx_L||^2 >=
||df||^2 - rho ||dx||^2``, so ``sqrt(rho)`` bounds the Lipschitz constant. The smallest
``rho`` over ``t >= 0`` is a semidefinite programme; LipSDP-Layer takes one ``t`` per layer.

Solved with cvxpy (the ``bounds`` extra: Clarabel for small programmes, else SCS), then
**verified** independently of the solver's accuracy: for the solver's ``t`` (clipped to
``>= 0``) the smallest valid ``rho`` is computed in float64 from a dense eigendecomposition
(the Schur complement of the hidden block, which must be negative definite), rounded up, and
``M(rho, t) <= 0`` is checked again. What is returned is therefore a certificate even when the
solver stopped early; only its tightness depends on the solver.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from ..affine import Affine, Reshape
from ..layers import Activation, Layer
from ..nodes import Combine
from .lipschitz import matrix_norm

if TYPE_CHECKING:
    from ..model import Network

#: Largest ``N = n_0 + n_1 + ... + n_L`` accepted: the programme holds an ``N x N`` semidefinite
#: block, which SCS decomposes at each of its iterations (``N^3`` flops each): about 11 minutes
#: at this size here (:func:`estimate_seconds`).
MAX_SIZE = 1200
#: Past this ``N`` SCS solves it (first order); below, Clarabel (interior point, accurate).
CLARABEL_MAX = 120
#: SCS's settings. The certificate is verified afterwards, so these set its tightness only:
#: at 1e-4 the verified bound of a 272-neuron CNN was within 0.08% of the optimum (found at
#: 1e-6) in 1/8 of the time.
SCS_SETTINGS = {"eps_abs": 1e-4, "eps_rel": 1e-4, "max_iters": 20000}


_MISSING = ("method='lipsdp' needs cvxpy: pip install 'toeplitz-conv[bounds]' (cvxpy with the "
            "Clarabel and SCS solvers).")


def available() -> bool:
    """Whether cvxpy is installed (``pip install toeplitz-conv[bounds]``)."""
    return importlib.util.find_spec("cvxpy") is not None


@dataclass
class Chain:
    """``f = W_L phi_{L-1}(... phi_0(W_0 x))``: the runs' matrices and each activation's slopes."""

    weights: list[sp.csr_array]
    slopes: list[tuple[float, float]]

    @property
    def size(self) -> int:
        return int(self.weights[0].shape[1]) + sum(int(W.shape[0]) for W in self.weights[:-1])


def _layers(net: Network) -> list[Layer]:
    """The nodes from the input to the output, or a ValueError saying why they are not a chain
    of linear nodes and activations with bounded slopes."""
    pos, nodes = net.output, list[Layer]()
    while pos > 0:  # walk back from the output: a chain reads only the position before
        layer = net.layers[pos - 1]
        if len(layer.inputs) != 1:
            raise ValueError(f"method='lipsdp' needs a chain of linear nodes and activations; node "
                             f"{pos - 1} ({layer.node!r}, {layer.kind}) reads {len(layer.inputs)} inputs; "
                             f"use method='windowed' for graphs.")
        if isinstance(layer, Activation):
            if not np.isfinite(layer.function.slope_range).all():
                raise ValueError(f"method='lipsdp': node {layer.node!r} ({layer.kind}) has no bounded "
                                 f"slopes; use method='windowed'.")
        elif not isinstance(layer, (Affine, Combine)):
            raise ValueError(f"method='lipsdp' needs a chain of linear nodes and activations with bounded "
                             f"slopes; node {layer.node!r} is {layer.kind}; use method='windowed'.")
        nodes.append(layer)
        pos = layer.inputs[0]
    return nodes[::-1]


def chain_size(net: Network) -> int:
    """``N``: the input's entries plus every activation's, without building a matrix."""
    sizes = [int(np.prod(layer.out_shape)) for layer in _layers(net) if isinstance(layer, Activation)]
    return int(np.prod(net.input_shape)) + sum(sizes)


def chain_of(net: Network) -> Chain:
    """The network as linear runs (products of the nodes' sparse matrices) and activations."""
    runs: list[list[sp.sparray]] = []
    slopes: list[tuple[float, float]] = []
    current: list[sp.sparray] = []
    for layer in _layers(net):
        if isinstance(layer, Activation):
            alpha, beta = layer.function.slope_range
            runs.append(current)
            slopes.append((float(alpha), float(beta)))
            current = []
        elif not isinstance(layer, Reshape):
            current.append(layer.exact_matrix() if isinstance(layer, Affine)  # derived constants unrounded
                           else sp.csr_array(layer.matrix, dtype=np.float64))
    runs.append(current)
    weights, width = [], int(np.prod(net.input_shape))
    for run in runs:
        W = reduce(lambda inner, outer: outer @ inner, run, sp.eye_array(width, format="csr"))
        weights.append(sp.csr_array(W))
        width = W.shape[0]
    return Chain(weights, slopes)


def _blocks(chain: Chain) -> tuple[sp.csr_array, sp.csr_array, np.ndarray, np.ndarray, int]:
    """``A``, ``B``, per-neuron ``alpha`` and ``beta``, and ``n_0``."""
    Ws = chain.weights
    n0, hidden = Ws[0].shape[1], sum(W.shape[0] for W in Ws[:-1])
    A = sp.hstack([sp.block_diag(Ws[:-1], format="csr"), sp.csr_array((hidden, Ws[-1].shape[1]))], format="csr")
    B = sp.hstack([sp.csr_array((hidden, n0)), sp.eye_array(hidden)], format="csr")
    alpha = np.concatenate([np.full(W.shape[0], a) for W, (a, _) in zip(Ws[:-1], chain.slopes)])
    beta = np.concatenate([np.full(W.shape[0], b) for W, (_, b) in zip(Ws[:-1], chain.slopes)])
    return A, B, alpha, beta, n0


def _constant(chain: Chain) -> np.ndarray:
    """``diag(0, ..., 0, W_L^T W_L)``, dense ``N x N``."""
    N, WL = chain.size, chain.weights[-1]
    C = np.zeros((N, N))
    C[N - WL.shape[1]:, N - WL.shape[1]:] = (WL.T @ WL).toarray()
    return C


def coefficients(chain: Chain) -> sp.csc_array:
    """The ``(N*N, hidden)`` matrix whose column ``j`` is ``vec(M_j)`` (column-major), ``M_j`` the
    part of ``[A; B]^T Q(t) [A; B]`` multiplying ``t_j``: the programme's only large constant,
    built from the sparse rows (``nnz(row)^2`` entries per neuron)."""
    A, B, alpha, beta, n0 = _blocks(chain)
    N = A.shape[1]
    rows, cols, vals = [], [], []
    for j in range(A.shape[0]):
        a0, a1 = A.indptr[j], A.indptr[j + 1]
        idx = np.append(A.indices[a0:a1], n0 + j)
        # u^T [[-2ab, a+b], [a+b, -2]] u over (a_j . z, z_{n0+j}): the weights of the outer products
        w = np.append(A.data[a0:a1], 0.0)
        e = np.zeros_like(w)
        e[-1] = 1.0
        block = (-2 * alpha[j] * beta[j] * np.outer(w, w) + (alpha[j] + beta[j]) * (np.outer(w, e) + np.outer(e, w))
                 - 2 * np.outer(e, e))
        r, c = np.meshgrid(idx, idx, indexing="ij")
        rows.append((r + N * c).ravel())
        cols.append(np.full(block.size, j))
        vals.append(block.ravel())
    return sp.csc_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(N * N, A.shape[0]))


def certify(chain: Chain, t: np.ndarray, K: sp.csc_array | None = None) -> float:
    """The certified bound for multipliers ``t``: ``sqrt`` of the smallest ``rho`` with
    ``M(rho, t) <= 0``, from a dense eigendecomposition, rounded up; ``inf`` when no ``rho``
    works (the hidden block is not negative definite)."""
    K = coefficients(chain) if K is None else K
    N, n0 = chain.size, chain.weights[0].shape[1]
    M = (K @ np.maximum(t, 0)).reshape(N, N, order="F") + _constant(chain)
    M = (M + M.T) / 2
    X, Y, Z = M[:n0, :n0], M[:n0, n0:], M[n0:, n0:]
    zmax = float(np.linalg.eigvalsh(Z)[-1]) if Z.size else -1.0
    scale = max(float(np.abs(M).max()), 1e-300)
    if zmax >= -1e-10 * scale:
        return float("inf")
    S = X - Y @ np.linalg.solve(Z, Y.T)
    rho = float(np.linalg.eigvalsh((S + S.T) / 2)[-1])
    rho = max(rho, 0.0) + 1e-9 * (scale + float(np.abs(S).max()))
    E = np.zeros(N)
    E[:n0] = rho
    if float(np.linalg.eigvalsh(M - np.diag(E))[-1]) > 0:  # pragma: no cover - the margin covers rounding
        rho *= 1 + 1e-6
    return float(np.sqrt(rho))


def estimate_seconds(N: int) -> float:
    """The time LipSDP takes for an ``N``-neuron chain: ``N^3``, from 8 s at ``N = 272`` here
    (2 cores; ``benchmarks/RESULTS.md``)."""
    return 8.0 * (N / 272) ** 3


def _check_size(N: int) -> None:
    if N > MAX_SIZE:
        raise ValueError(f"method='lipsdp': the programme's semidefinite block is N x N with N = {N} "
                         f"(the input and every activation), over the limit {MAX_SIZE}: about "
                         f"{N * N * 8 * 6 / 2**30:.2f} GiB and an estimated {estimate_seconds(N):.0f} s; "
                         f"use method='windowed'.")


def solve(chain: Chain, layer: bool = False) -> tuple[float, np.ndarray]:
    """``(bound, t)``: the programme solved by cvxpy, then :func:`certify`."""
    if not available():
        raise ImportError(_MISSING)
    cp: Any = importlib.import_module("cvxpy")  # untyped
    N = chain.size
    _check_size(N)
    K = coefficients(chain)
    hidden = K.shape[1]
    n0 = chain.weights[0].shape[1]
    if layer:
        sizes = [W.shape[0] for W in chain.weights[:-1]]
        P = sp.csc_array(sp.block_diag([np.ones((s, 1)) for s in sizes]))
        lam = cp.Variable(len(sizes), nonneg=True)
        t_expr = P @ lam
    else:
        tv = cp.Variable(hidden, nonneg=True)
        t_expr = tv
    rho = cp.Variable(nonneg=True)
    E = sp.diags_array(np.r_[np.ones(n0), np.zeros(N - n0)])
    M = cp.reshape(K @ t_expr, (N, N), order="F") + _constant(chain) - rho * E
    problem = cp.Problem(cp.Minimize(rho), [-(M + M.T) / 2 >> 0])
    solver = cp.CLARABEL if N <= CLARABEL_MAX else cp.SCS
    problem.solve(solver=solver, **(SCS_SETTINGS if solver == cp.SCS else {}))
    t = np.asarray(t_expr.value if not layer else P @ lam.value, dtype=np.float64).ravel()
    bound = certify(chain, t, K)
    for grow in (1.001, 1.01, 1.1):  # a solver's t can sit on the boundary: a little more slack
        if np.isfinite(bound):
            break
        bound = certify(chain, t * grow, K)
    return bound, t


def lipsdp_bound(net: Network, layer: bool = False) -> float:
    """:meth:`Network.lipschitz_bound` with ``method='lipsdp'`` (``'lipsdp-layer'``: ``layer``)."""
    net.check_batch(1)
    if not available():
        raise ImportError(_MISSING)
    _check_size(chain_size(net))  # before any matrix is built
    chain = chain_of(net)
    if not chain.slopes:  # a linear chain: its exact norm
        return matrix_norm(chain.weights[0])
    bound, _ = solve(chain, layer)
    if not np.isfinite(bound):
        raise ValueError("method='lipsdp': the solver's multipliers could not be certified (the hidden "
                         "block of M is not negative definite); use method='windowed'.")
    return bound
