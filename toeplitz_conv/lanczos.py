"""Lanczos on a layer's normal operator: the top of its spectrum, and the machinery the
bottom's routes share (:mod:`toeplitz_conv.svds`).

``N = A^H A`` (or ``A A^H``, whichever is smaller: its eigenvalues are exactly the
``min(C.shape)`` squared singular values) is applied matrix-free through the operator of
:mod:`toeplitz_conv.operator`. The top values come from ARPACK's Lanczos on ``N`` from a
random start.

Repeated values are the rule, not the exception (equal groups, symmetric kernels, circular
layers, a rank-deficient layer's zeros), and one Lanczos run meets each eigenspace in one
direction only: so a grouped layer whose groups repeat, block diagonal, is split into its
distinct groups (each solved once, its values repeated), and every run with ``k > 1`` is
checked by a second run on the operator deflated of the vectors found
(:func:`top_eigenpairs`). Every value is read off its vector, with the residual that
certifies it (:func:`certify`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from .conv import conv_matrix
from .geometry import ConvGeometry
from .memory import check_size
from .operator import ConvOperator

#: BLAS threads while Lanczos runs (set through threadpoolctl when it is installed; ``None``
#: leaves them alone). One thread: the products alternate a BLAS matmul with single-threaded
#: numpy gathers, and multithreaded OpenBLAS on a busy machine made them 3-30x slower.
LANCZOS_BLAS_THREADS = 1

#: Tolerances of the deflated runs that look for missed copies of repeated eigenvalues (or
#: the caller's, if looser): a quick one, then, only when its value comes within twice its
#: tolerance of ``lam_k`` (a missed copy or a close neighbour), a tighter one from its vector.
#: A missed copy of a value ``>= lam_k`` shows as a Ritz value within the tolerance of it; only
#: then does a run at the caller's tolerance fetch it. (On a 64 x 56 x 56 layer the quick check
#: takes about 120 products with ``N``, 19% of the ~620 for its top 6; 221 at 1e-6.)
CHECK_TOLS = (1e-4, 1e-6)


class NoConvergence(ValueError):
    """Lanczos did not converge to the asked singular values (a ``ValueError``: the message says
    which way out there is)."""


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit BLAS to ``n`` threads inside the block (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        threadpool_limits = None
    with (threadpool_limits(n, user_api="blas") if n and threadpool_limits else nullcontext()):
        yield


def normal_operator(A: ConvOperator) -> tuple[LinearOperator, int]:
    """``(N, size)``: the smaller normal operator (``A^H A`` if ``C`` is tall, ``A A^H`` if
    wide: its eigenvalues are exactly the ``min(C.shape)`` squared singular values)."""
    m, n = A.shape
    if n <= m:
        def normal(x: np.ndarray) -> np.ndarray:
            return cast(np.ndarray, A.rmatvec(A.matvec(x)))  # scipy is untyped
    else:
        def normal(x: np.ndarray) -> np.ndarray:
            return cast(np.ndarray, A.matvec(A.rmatvec(x)))
    return LinearOperator((min(m, n),) * 2, matvec=normal, dtype=A.dtype), min(m, n)


def start_vector(dtype: npt.DTypeLike, size: int, seed: int = 0) -> np.ndarray:
    """A unit random vector of ``size`` entries, complex for a complex ``dtype``, the same for
    the same ``seed``: Lanczos's start (every route starts from ``seed`` 0).

    Examples
    --------
    >>> import numpy as np
    >>> v = start_vector(np.complex128, 5)
    >>> v.dtype, bool(np.isclose(np.linalg.norm(v), 1)), bool(np.array_equal(v, start_vector(complex, 5)))
    (dtype('complex128'), True, True)
    """
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(size)
    if np.dtype(dtype).kind == "c":
        v0 = v0 + 1j * rng.standard_normal(size)
    return v0 / np.linalg.norm(v0)


# --------------------------------------------------------------------------- eigenpairs


def _eigsh(op: LinearOperator, k: int, tol: float, v0: np.ndarray, ncv: int,
           maxiter: int | None) -> tuple[np.ndarray, np.ndarray]:
    """ARPACK's top ``k`` eigenpairs of ``op``, descending; an operator that maps the random
    ``v0`` to exactly 0 is the zero operator (ARPACK refuses it): eigenvalues 0, any vectors."""
    size = op.shape[0]
    if not np.any(op @ v0):
        basis = np.linalg.qr(np.column_stack([v0] + [start_vector(op.dtype, size, j) for j in range(1, k)]))[0]
        return np.zeros(k), basis
    lam, V = eigsh(op, k=k, which="LA", tol=tol, v0=v0, ncv=min(size, ncv), maxiter=maxiter)
    order = np.argsort(lam)[::-1]
    return lam[order], V[:, order]


def top_eigenpairs(op: LinearOperator, k: int, tol: float, v0: np.ndarray, ncv: int,
                   maxiter: int | None = None, check_ncv: int = 33) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenvalues (descending) of a Hermitian ``op`` and their vectors,
    each eigenvalue as often as it repeats.

    Lanczos grows one Krylov space from ``v0``, which meets each eigenspace in one direction:
    a repeated eigenvalue is found once (rounding sometimes supplies the other copies, often
    not). So for ``k > 1`` the vectors found ``Q`` are deflated, ``D = P op P`` with ``P = I -
    Q Q^H``, and Lanczos runs again from a fresh start: a top eigenvalue of ``D`` at least the
    ``k``-th found (to ``CHECK_TOLS``) is a missed copy, and as many more pairs of ``D`` as
    there are found values it could displace join at the caller's ``tol``; repeated until the
    check finds nothing. Values of ``D`` below its rounding level (``size * eps * lam_max``)
    are not chased. The checks' Krylov spaces have ``check_ncv`` vectors (fewer where a
    product is dear and the top well separated, as for an inverse).
    """
    size = op.shape[0]
    lam, V = _eigsh(op, k, tol, v0, ncv, maxiter)
    if k == 1:
        return lam, V
    check_tols = sorted({max(tol, t) for t in CHECK_TOLS}, reverse=True)
    floor = size * np.finfo(np.float64).eps * abs(lam[0])
    for seed in range(1, k + 1):  # each round adds at least one pair
        q = V.shape[1]
        if q + 2 > size:
            break
        Q = np.linalg.qr(V)[0]

        def deflated(x: np.ndarray, Q: np.ndarray = Q) -> np.ndarray:
            x = x - Q @ (Q.conj().T @ x)
            y = op @ x
            return cast(np.ndarray, y - Q @ (Q.conj().T @ y))  # op is scipy's: untyped

        D = LinearOperator(op.shape, matvec=deflated, dtype=op.dtype)
        u0 = u = start_vector(op.dtype, size, seed)
        for check_tol in check_tols:  # quick, then tighter only if it is not clear
            u = u - Q @ (Q.conj().T @ u)
            th, U = _eigsh(D, 1, check_tol, u, check_ncv, maxiter)
            theta, u = float(th[0]), U[:, 0]
            missed = theta > floor and theta >= lam[k - 1] - 2 * check_tol * abs(theta)
            if not missed:
                break
        if not missed:
            break
        # the missed values (about theta or above) can displace only the found ones below them
        slots = int(np.count_nonzero(lam[:k] <= theta + 2 * check_tol * abs(theta)))
        lam2, V2 = _eigsh(D, min(slots, size - q - 1), tol, u0 - Q @ (Q.conj().T @ u0), ncv, maxiter)
        lam, V = np.concatenate([lam, lam2]), np.column_stack([V, V2])
        order = np.argsort(lam)[::-1]
        lam, V = lam[order], V[:, order]
    return lam[:k], V[:, :k]


# --------------------------------------------------------------------------- one group


def certify(A: ConvOperator, V: np.ndarray, U: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(sigma, residual)`` for the columns ``v`` of ``V`` (vectors of the smaller normal
    operator ``N``) and, where given, their partners ``u`` in ``U`` (else ``u = A v / ||A v||``,
    ``A`` read as the map from ``v``'s side to ``u``'s).

    ``sigma = Re(u^H A v)`` for the unit vectors (``||A v||`` without ``U``: a Rayleigh
    quotient, its error second order in the vectors'), and the residual of the singular
    triplet, ``sqrt(||A v - sigma u||^2 + ||A^H u - sigma v||^2) / sqrt(2)``: the residual of
    the unit vector ``(u, v) / sqrt(2)`` of the Hermitian ``[[0, A], [A^H, 0]]``, whose
    eigenvalues are the singular values, their negatives and zeros, so a singular value (or 0)
    lies within the residual of ``sigma``; a ``sigma`` within it of 0 is reported as 0.
    Without ``U`` the residual is the smaller of that and ``sqrt(||N v - sigma^2 v||)`` (a
    squared singular value lies within ``||N v - sigma^2 v||`` of ``sigma^2``): for a null
    vector ``v``, ``A v / ||A v||`` is rounding and only the second is small.

    Its rounding is about ``eps * sigma_max``, so a small value is certified down to the dense
    SVD's resolution. (The residual ``||N v - sigma^2 v||`` of the normal operator cannot go
    below ``eps * sigma_max^2``, and would take any value under ``sqrt(eps) * sigma_max`` for
    0.) The partner ``u`` matters there: ``A v / ||A v||`` carries the rounding of ``A v``
    (``eps * sigma_max``) relative to ``sigma``, so a bottom value from an LU comes with its
    own ``u`` (:meth:`~toeplitz_conv.dissection.GridLU.polish`)."""
    m, n = A.shape
    op, back = (A.matmat, A.rmatmat) if n <= m else (A.rmatmat, A.matmat)
    V = V / np.linalg.norm(V, axis=0)
    AV = op(V)
    if U is None:
        sigma = np.linalg.norm(AV, axis=0)
        U = AV / np.where(sigma > 0, sigma, 1.0)
        r_right = np.linalg.norm(back(U) - V * sigma, axis=0)
        # r_left is 0; and ||N v - sigma^2 v|| = sigma r_right bounds |s - sigma| by its square
        # root too: the better bound for a (near-)null v, whose u = A v / ||A v|| is rounding
        residual = np.minimum(r_right / np.sqrt(2), np.sqrt(sigma * r_right))
    else:
        U = U / np.linalg.norm(U, axis=0)
        proj = np.sum(U.conj() * AV, axis=0)
        sigma = np.abs(proj)
        U = U * (proj / np.where(sigma > 0, sigma, 1.0))  # the phase that makes u^H A v = sigma >= 0
        r_left = np.linalg.norm(AV - U * sigma, axis=0)
        r_right = np.linalg.norm(back(U) - V * sigma, axis=0)
        residual = np.hypot(r_left, r_right) / np.sqrt(2)
    return np.where(sigma <= residual, 0.0, sigma), residual


def lanczos_values(w: np.ndarray, geom: ConvGeometry, k: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """``(values, residuals)``: the top ``k`` singular values (descending) from ARPACK's
    Lanczos on the smaller normal operator, each as often as it repeats
    (:func:`top_eigenpairs`), and the residual of each (:func:`certify`)."""
    w = w.astype(np.result_type(w.dtype, np.float64), copy=False)
    A = ConvOperator(w, geom)
    N, size = normal_operator(A)
    # A random start: the circular counterpart's top vector saved at most a tenth of the
    # products at these tolerances (the top of a layer's spectrum clusters, and Lanczos must
    # resolve the cluster from any start) and cost more than it saved on large layers.
    v0 = start_vector(w.dtype, size)
    ncv = max(2 * k + 1, k + 32)
    maxiter = max(1000, 50 * size // min(size, ncv))
    try:
        with blas_threads(LANCZOS_BLAS_THREADS):
            V = top_eigenpairs(N, k, tol, v0, ncv, maxiter)[1]
            sigma, residual = certify(A, V)
    except ArpackNoConvergence as e:
        raise NoConvergence(
            f"Lanczos did not converge to the {k} largest singular values of this "
            f"{A.shape[0]:,} x {A.shape[1]:,} layer in {maxiter} restarts: use a larger tol "
            f"(got tol={tol}), or method='dense' if it fits in memory.") from e
    order = np.argsort(sigma)[::-1]
    return sigma[order], residual[order]


# --------------------------------------------------------------------------- the layer


def dense_bytes(w: np.ndarray, geom: ConvGeometry) -> int:
    """Memory of the dense SVD: the matrix and its workspace, three copies."""
    m, n = geom.shape
    return 3 * m * n * (16 if np.iscomplexobj(w) else 8)


def dense_values(w: np.ndarray, geom: ConvGeometry, kw: Mapping[str, Any]) -> np.ndarray:
    """All singular values (descending) of the explicit dense matrix, if it fits in memory."""
    m, n = geom.shape
    check_size("the dense SVD of the convolution matrix", dense_bytes(w, geom),
               f"a dense {m:,} x {n:,} matrix and its SVD workspace; ask for the top k values "
               f"(k=...) to use method='svds' instead")
    C = conv_matrix(w.astype(np.result_type(w.dtype, np.float64), copy=False), geom.in_shape, **kw)
    return np.linalg.svd(C.toarray(), compute_uv=False)


def distinct_groups(w: np.ndarray, geom: ConvGeometry) -> list[tuple[np.ndarray, int]]:
    """``[(weight, count)]``: the distinct groups of a grouped layer's weight, with how many
    groups have each. The matrix is block diagonal with one ``C_out/G x C_in/G`` block per
    group, so its singular values are those of the blocks, each group's ``count`` times."""
    seen: dict[bytes, list[Any]] = {}  # [part, count]
    for part in np.split(w, geom.groups):
        entry = seen.setdefault(np.ascontiguousarray(part).tobytes(), [part, 0])
        entry[1] += 1
    return [(part, count) for part, count in seen.values()]
