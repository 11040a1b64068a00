"""Lanczos on a layer's normal operator: the top and the bottom of its spectrum.

``N = A^H A`` (or ``A A^H``, whichever is smaller: its eigenvalues are exactly the
``min(C.shape)`` squared singular values) is applied matrix-free through the operator of
:mod:`toeplitz_conv.operator`. The top values come from ARPACK's Lanczos on ``N`` from a
random start; the bottom ones
from Lanczos on ``C^-1 C^-H`` where a square layer's LU by nested dissection of its grid is
affordable (:mod:`toeplitz_conv.dissection`), else from shift-invert Lanczos on a sparse LU of
``N + delta I`` or of ``C``, else from Lanczos on ``c I - N``.

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
from dataclasses import replace
from math import ceil
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
from scipy.sparse import csc_array as sp_csc
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from .conv import conv_matrix
from .dissection import affordable_lu, lu_applies
from .geometry import ConvGeometry
from .memory import check_size, human_bytes, memory_limit
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


def _normal_operator(A: ConvOperator) -> tuple[LinearOperator, int]:
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


def _start(dtype: npt.DTypeLike, size: int, seed: int = 0) -> np.ndarray:
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
        basis = np.linalg.qr(np.column_stack([v0] + [_start(op.dtype, size, j) for j in range(1, k)]))[0]
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
        u0 = u = _start(op.dtype, size, seed)
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
    N, size = _normal_operator(A)
    # A random start: the circular counterpart's top vector saved at most a tenth of the
    # products at these tolerances (the top of a layer's spectrum clusters, and Lanczos must
    # resolve the cluster from any start) and cost more than it saved on large layers.
    v0 = _start(w.dtype, size)
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


#: The bottom of a layer's spectrum by shift-invert Lanczos (a sparse LU of ``N + delta I``)
#: while the normal matrix ``N`` has at most this many nonzeros; past it, Lanczos on
#: ``c I - N`` (matrix-free, but slow where the smallest values cluster).
SHIFT_INVERT_MAX_NNZ = 5_000_000

#: Past that, a square layer's bottom comes from the sparse LU of ``C`` itself while ``C`` has at
#: most this many nonzeros (``N^-1 = C^-1 C^-H``). SuperLU on 64 -> 64 3x3 layers here: 14x14
#: (6.6 M nonzeros) 6 s with 7x fill, then Lanczos 2 s, against the dense SVD's 5 minutes;
#: 20x20 (13.8 M) 22 s, 8x; 28x28 (27.5 M) 87 s, 11x (3.7 GB); 32x32 (37.7 M, a CIFAR
#: ResNet's first stage) 5 minutes for the whole call. The fill grows faster than the grid:
#: 56x56 would take half an hour, so it stays with Lanczos on ``c I - N``.
SHIFT_INVERT_C_MAX_NNZ = 40_000_000

#: The grid route's polished certificates are about ``eps * sigma_max`` (a null vector's
#: ``sqrt(eps) * sigma_max``); past this fraction of ``sigma_max`` a value was not resolved
#: (a numerically singular layer: the inverse's null space swamps its other eigenvalues).
GRID_RESOLVED = 1e-6

#: Any route's values are refused past this fraction of ``sigma_max`` (or ``100 sqrt(tol)``):
#: values from the wrong part of the spectrum (a route that resolved only a null space) had
#: certificates of 0.3-0.6 sigma_max; shift-invert's null vectors of non-square layers, right,
#: up to 1e-3.
UNRESOLVED = 1e-2

#: Past the sparse LU, Lanczos on ``c I - N`` may crawl for days where the bottom clusters (a
#: 64 -> 64 3x3 layer on 56x56: 16,000 products, ten minutes, unconverged): it gets this many
#: multiply-adds (about two minutes at one BLAS thread's rate here), then says so.
SMALLEST_LANCZOS_MACS = 5e11
SMALLEST_LANCZOS_MIN_PRODUCTS = 3000


def smallest_values(w: np.ndarray, geom: ConvGeometry, k: int, tol: float,
                    kw: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, float, str]:
    """``(values, residuals, sigma_max, route)``: the bottom ``k`` singular values (descending)
    with their residuals (:func:`certify`), the top one to 1e-6 (the shift needs it; the
    caller's rank tolerance reuses it), and which route gave them. The first affordable of:
    Lanczos on ``N^-1 = C^-1 C^-H`` from the nested-dissection LU of a square layer on one
    grid (:func:`~toeplitz_conv.dissection.affordable_lu`; its vectors polished by refined
    inverse iteration, :meth:`~toeplitz_conv.dissection.GridLU.polish`);
    shift-invert Lanczos on the explicit normal matrix (the bottom eigenvalues become the top
    ones of ``(N + delta I)^-1``, well separated); Lanczos on ``C^-1 C^-H`` from SuperLU's LU
    of any other square ``C``; plain Lanczos on ``c I - N`` (with a budget). All are checked
    for missed copies (:func:`top_eigenpairs`). Each value comes from its vectors with the
    residual of its singular triplet (:func:`certify`): a value within it of 0 is reported as
    0 (a rank-deficient layer), not as a solver failure. The grid route's values stand only
    with certificates within ``GRID_RESOLVED`` of ``sigma_max`` (else the routes after it
    run); any route's, within ``UNRESOLVED`` (else :class:`NoConvergence`)."""
    w = w.astype(np.result_type(w.dtype, np.float64), copy=False)
    A = ConvOperator(w, geom)
    N, size = _normal_operator(A)
    top2 = lanczos_values(w, geom, 1, 1e-6)[0][0] ** 2
    if top2 == 0:  # the zero matrix
        return np.zeros(k), np.zeros(k), 0.0, "the zero matrix"
    v0 = _start(w.dtype, size)
    trans: Literal["T", "H"] = "H" if np.iscomplexobj(w) else "T"
    grid, grid_says = affordable_lu(w, geom)
    no_grid = "" if lu_applies(geom) is not None else grid_says  # why not, for a square layer
    values, route = None, ""  # (sigma, residual) of a route's vectors
    if grid is not None:
        g = grid
        inv = LinearOperator((size, size), matvec=lambda x: g.solve(g.solve(x, trans)), dtype=w.dtype)
        try:
            with blas_threads(None):  # the solves are BLAS alone
                # a product is two solves that read every factor: the smallest Krylov spaces that
                # resolve the inverse's well separated top (10 products at 56x56 where 20 took 22)
                V = top_eigenpairs(inv, k, tol, v0, max(2 * k + 1, 8), check_ncv=12)[1]
                values = certify(A, *g.polish(V, trans))
            route = f"Lanczos on C^-1 C^-H ({grid_says}), polished by refined inverse iteration"
            worst = float(np.max(values[1])) / np.sqrt(top2)
            if worst > GRID_RESOLVED:  # the inverse's top is a (numerical) null space whose
                # 1 / eps swamps the rest: only the null vectors were resolved
                values = None
                no_grid = (f"the inverse from its LU by nested dissection left a value unresolved (a "
                           f"certificate of {worst:.1e} sigma_max: a numerically singular layer)")
        except ArpackNoConvergence:  # C numerically singular: the inverse's top is rounding noise
            no_grid = "Lanczos on the inverse from its LU by nested dissection did not converge"
    if values is None:
        V, route = _bottom_past_the_grid(w, geom, A, N, size, k, tol, v0, top2, kw, trans, no_grid)
        route += f" ({no_grid})" if no_grid else ""
        values = certify(A, V)
    sigma, residual = values
    loose = float(np.max(residual)) / np.sqrt(top2)
    if loose > max(UNRESOLVED, 100 * np.sqrt(tol)):  # values of the wrong part of the spectrum
        raise NoConvergence(
            f"the {k} smallest singular values of this {A.shape[0]:,} x {A.shape[1]:,} layer were not "
            f"resolved by {route}: a certificate of {loose:.1e} sigma_max. Use method='dense' if it "
            f"fits in memory ({human_bytes(dense_bytes(w, geom))}).")
    order = np.argsort(sigma)[::-1]
    return sigma[order], residual[order], float(np.sqrt(top2)), route


def _bottom_past_the_grid(w: np.ndarray, geom: ConvGeometry, A: ConvOperator, N: LinearOperator, size: int,
                          k: int, tol: float, v0: np.ndarray, top2: float, kw: Mapping[str, Any],
                          trans: Literal["T", "H"], no_grid: str) -> tuple[np.ndarray, str]:
    """``(V, route)``: the bottom right singular vectors of a layer without (or past) the grid
    LU (``no_grid`` says why not, for a square layer), by the first affordable of the routes
    after it (:func:`smallest_values`)."""
    from scipy.sparse import eye_array
    from scipy.sparse.linalg import splu

    m, n = A.shape
    # the LU of a square C fills in about 7-11x (values and indices: ~192 bytes a nonzero of C, a
    # margin kept); past the memory limit Lanczos on c I - N is left
    square = (m == n and m * geom.taps <= SHIFT_INVERT_C_MAX_NNZ
              and 12 * m * geom.taps * 16 <= memory_limit()[0])
    small = m * geom.taps <= SHIFT_INVERT_MAX_NNZ
    C = conv_matrix(w, geom.in_shape, **kw) if small or square else None
    Nm = None if C is None or not small else sp_csc(C.conj().T @ C if n <= m else C @ C.conj().T)
    lu_c = None
    if Nm is None and square and C is not None:  # the LU of C itself: N^-1 = C^-1 C^-H
        try:
            lu_c = splu(sp_csc(C))
        except RuntimeError:  # exactly singular: Lanczos below finds the zeros
            lu_c = None
    tried = "shift-invert Lanczos (SuperLU's LU of the normal matrix N + delta I)"
    try:
        with blas_threads(LANCZOS_BLAS_THREADS):
            if Nm is not None and Nm.nnz <= SHIFT_INVERT_MAX_NNZ:
                delta = 1e-9 * top2
                check_size("the sparse LU of the normal matrix", 40 * Nm.nnz * 16,
                           f"N is {size:,} x {size:,} with {Nm.nnz:,} nonzeros; its LU fills in")
                lu = splu(sp_csc(Nm + delta * eye_array(size, dtype=Nm.dtype)))
                inv = LinearOperator((size, size), matvec=lu.solve, dtype=Nm.dtype)
                return top_eigenpairs(inv, k, tol, v0, max(2 * k + 1, 20))[1], tried
            tried = "Lanczos on C^-1 C^-H (SuperLU's LU of C)"
            if lu_c is not None and C is not None:
                solver = cast(Any, lu_c)
                inv = LinearOperator((size, size), matvec=lambda x: solver.solve(solver.solve(x, trans=trans)),
                                     dtype=C.dtype)  # (C^H C)^-1 = C^-1 C^-H
                return top_eigenpairs(inv, k, tol, v0, max(2 * k + 1, 20))[1], tried
            c = 1.01 * top2
            shifted = LinearOperator((size, size), matvec=lambda x: c * x - N @ x, dtype=N.dtype)
            ncv = max(4 * k, k + 96)
            products = max(SMALLEST_LANCZOS_MIN_PRODUCTS, int(SMALLEST_LANCZOS_MACS / (2 * m * geom.taps)))
            tried = (f"Lanczos on c I - N (its normal matrix is too large for a sparse LU, and it was given "
                     f"about {SMALLEST_LANCZOS_MACS:.0e} multiply-adds of products with it)")
            V = top_eigenpairs(shifted, k, tol, v0, ncv, max(1, products // (ncv - k)))[1]
            return V, "Lanczos on c I - N"
    except ArpackNoConvergence as e:
        raise NoConvergence(
            f"Lanczos did not converge to the {k} smallest singular values of this {m:,} x {n:,} "
            f"layer by {tried}{'; ' + no_grid if no_grid else ''}: the bottom of its spectrum is "
            f"clustered, or numerically null. Use method='dense' if it fits in "
            f"memory ({human_bytes(dense_bytes(w, geom))}), or a larger tol; got tol={tol}.") from e


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


def svds_values(w: np.ndarray, geom: ConvGeometry, k: int, which: Literal["largest", "smallest"],
                tol: float, kw: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, float, str]:
    """``(values, residuals, sigma_max, route)``: at least the top (or bottom) ``k`` singular
    values by Lanczos, unsorted, the residual of each singular triplet (:func:`certify`; 0 for
    a group's dense SVD), the largest singular value (exact from the top, to about 1e-6 from
    the bottom), and the routes that gave them. A layer whose groups repeat is solved one
    distinct group at a time, each for ``ceil(k / count)`` values repeated ``count`` times
    (exact, and cheaper); a group with no more values than that takes its dense SVD. With all
    groups distinct one run on the whole layer is cheaper (the runs on G groups need about as
    many iterations each)."""
    parts = distinct_groups(w, geom)
    if len(parts) == geom.groups:
        parts, ggeom, gkw = [(w, 1)], geom, kw
    else:
        gkw = dict(kw, groups=1)
        ggeom = replace(geom, in_channels=geom.cin_per_group, out_channels=geom.cout_per_group, groups=1)
    values, residuals, s_max, routes = [], [], 0.0, []
    for part, count in parts:
        kg = ceil(k / count)  # enough of this group's values to fill k with its copies
        if kg >= min(ggeom.shape) - 1:  # (ARPACK's eigsh takes k < N - 1 of an operator)
            s = dense_values(part, ggeom, gkw)
            s, top = (s[:kg] if which == "largest" else s[s.size - kg:]), s[0]
            r = np.zeros(s.size)
            route = "the dense SVD of each group"
        elif which == "largest":
            s, r = lanczos_values(part, ggeom, kg, tol)
            top, route = s[0], "Lanczos on the normal operator"
        else:
            s, r, top, route = smallest_values(part, ggeom, kg, tol, gkw)
        if route not in routes:
            routes.append(route)
        values.append(np.tile(s, count))
        residuals.append(np.tile(r, count))
        s_max = max(s_max, float(top))
    return np.concatenate(values), np.concatenate(residuals), s_max, "; ".join(routes)
