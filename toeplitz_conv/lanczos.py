"""Lanczos on a layer's normal operator: the top and the bottom of its spectrum.

``N = A^H A`` (or ``A A^H``, whichever is smaller: its eigenvalues are exactly the
``min(C.shape)`` squared singular values) is applied matrix-free through the operator of
:mod:`toeplitz_conv.operator`. The top values come from ARPACK's Lanczos on ``N`` (started
near the top singular vector of the circular counterpart when there is one); the bottom ones
from shift-invert Lanczos on a sparse LU of ``N + delta I`` while that is affordable, else
from Lanczos on ``c I - N``.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import numpy as np
from scipy.sparse import csc_array as sp_csc
from scipy.sparse.linalg import LinearOperator, eigsh

from .circulant import warm_start
from .conv import conv_matrix
from .geometry import ConvGeometry
from .memory import check_size
from .operator import ConvOperator

#: BLAS threads while Lanczos runs (set through threadpoolctl when it is installed; ``None``
#: leaves them alone). One thread: the products alternate a BLAS matmul with single-threaded
#: numpy gathers, and multithreaded OpenBLAS on a busy machine made them 3-30x slower.
LANCZOS_BLAS_THREADS = 1


@contextmanager
def _blas_threads(n: int | None):
    """Limit BLAS to ``n`` threads inside the block (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        threadpool_limits = None
    with (threadpool_limits(n, user_api="blas") if n and threadpool_limits else nullcontext()):
        yield


def _normal_operator(A):
    """``(N, size)``: the smaller normal operator (``A^H A`` if ``C`` is tall, ``A A^H`` if
    wide: its eigenvalues are exactly the ``min(C.shape)`` squared singular values)."""
    m, n = A.shape
    if n <= m:
        def normal(x):
            return A.rmatvec(A.matvec(x))
    else:
        def normal(x):
            return A.matvec(A.rmatvec(x))
    return LinearOperator((min(m, n),) * 2, matvec=normal, dtype=A.dtype), min(m, n)


def _start(w, size):
    rng = np.random.default_rng(0)
    v0 = rng.standard_normal(size)
    if np.iscomplexobj(w):
        v0 = v0 + 1j * rng.standard_normal(size)
    return v0 / np.linalg.norm(v0)


def lanczos_values(w, geom: ConvGeometry, k: int, tol: float) -> np.ndarray:
    """Top ``k`` singular values from ARPACK's Lanczos on the smaller normal operator."""
    w = w.astype(np.result_type(w.dtype, np.float64), copy=False)
    A = ConvOperator(w, geom)
    N, size = _normal_operator(A)
    v0 = _start(w, size)
    x = warm_start(w, geom) if k == 1 else None
    if x is not None:  # a little noise keeps every direction in the Krylov space
        v0 = (x if A.shape[1] <= A.shape[0] else A.matvec(x)) + 1e-2 * v0
    ncv = min(size, max(2 * k + 1, k + 32))
    with _blas_threads(LANCZOS_BLAS_THREADS):
        lam = eigsh(N, k=k, which="LA", tol=tol, v0=v0, ncv=ncv,
                    maxiter=max(1000, 50 * size // ncv), return_eigenvectors=False)
    return np.sqrt(np.clip(np.sort(lam)[::-1], 0, None))


#: The bottom of a layer's spectrum by shift-invert Lanczos (a sparse LU of ``N + delta I``)
#: while the normal matrix ``N`` has at most this many nonzeros; past it, Lanczos on
#: ``c I - N`` (matrix-free, but slow where the smallest values cluster).
SHIFT_INVERT_MAX_NNZ = 5_000_000


def smallest_values(w, geom: ConvGeometry, k: int, tol: float, kw):
    """``(values, sigma_max)``: the bottom ``k`` singular values, and the top one to 1e-6 (the
    shift needs it; the caller's rank tolerance reuses it). Shift-invert Lanczos on the
    explicit normal matrix while its LU is affordable (the bottom eigenvalues become the top
    ones of ``(N + delta I)^-1``, well separated), else plain Lanczos on ``c I - N``. Each value comes from its
    vector: ``mu = ||A v||^2`` (the Rayleigh quotient, error second order in the vector's);
    an eigenvalue lies within ``||N v - mu v||`` of ``mu``, so a ``mu`` within that of 0 is
    reported as 0 (a rank-deficient layer), not as a solver failure."""
    from scipy.sparse import eye_array
    from scipy.sparse.linalg import ArpackNoConvergence, splu

    w = w.astype(np.result_type(w.dtype, np.float64), copy=False)
    A = ConvOperator(w, geom)
    m, n = A.shape
    N, size = _normal_operator(A)
    top2 = lanczos_values(w, geom, 1, 1e-6)[0] ** 2
    v0 = _start(w, size)
    C = conv_matrix(w, geom.in_shape, **kw) if m * geom.taps <= SHIFT_INVERT_MAX_NNZ else None
    Nm = None if C is None else sp_csc(C.conj().T @ C if n <= m else C @ C.conj().T)
    try:
        with _blas_threads(LANCZOS_BLAS_THREADS):
            if Nm is not None and Nm.nnz <= SHIFT_INVERT_MAX_NNZ:
                delta = 1e-9 * top2
                check_size("the sparse LU of the normal matrix", 40 * Nm.nnz * 16,
                           f"N is {size:,} x {size:,} with {Nm.nnz:,} nonzeros; its LU fills in")
                lu = splu(sp_csc(Nm + delta * eye_array(size, dtype=Nm.dtype)))
                inv = LinearOperator((size, size), matvec=lu.solve, dtype=Nm.dtype)
                _, V = eigsh(LinearOperator((size, size), matvec=Nm.__matmul__, dtype=Nm.dtype), k=k,
                             sigma=-delta, which="LM", OPinv=inv, tol=tol, v0=v0, ncv=min(size, max(2 * k + 1, 20)))
            else:
                c = 1.01 * top2
                _, V = eigsh(LinearOperator((size, size), matvec=lambda x: c * x - N @ x, dtype=N.dtype), k=k,
                             which="LA", tol=tol, v0=v0, ncv=min(size, max(4 * k, k + 96)),
                             maxiter=max(3000, 50 * size // 96))
    except ArpackNoConvergence as e:
        raise ValueError(
            f"Lanczos did not converge to the {k} smallest singular values of this {m:,} x {n:,} "
            f"layer (its normal matrix is too large for a sparse LU, and the bottom of its spectrum "
            f"is clustered): use method='dense' if it fits in memory, or a larger tol; got "
            f"tol={tol}.") from e
    op, back = (A.matvec, A.rmatvec) if n <= m else (A.rmatvec, A.matvec)
    sigma = np.zeros(k)
    for j in range(k):
        v = V[:, j] / np.linalg.norm(V[:, j])
        Av = op(v)
        mu = float(np.vdot(Av, Av).real)
        residual = float(np.linalg.norm(back(Av) - mu * v))
        sigma[j] = 0.0 if mu <= residual else np.sqrt(mu)
    return np.sort(sigma)[::-1], float(np.sqrt(top2))
