"""Singular values by Lanczos: the top or the bottom ``k`` of a layer, one distinct group at
a time (:func:`svds_values`).

The top comes from Lanczos on the normal operator (:func:`~toeplitz_conv.lanczos.lanczos_values`);
the bottom (:func:`smallest_values`) from the first affordable route: Lanczos on ``C^-1 C^-H``
where a square layer's LU by nested dissection of its grid is affordable
(:mod:`toeplitz_conv.dissection`), else shift-invert Lanczos on a sparse LU of ``N + delta I``
or of ``C``, else Lanczos on ``c I - N`` with a budget. Every value comes with the certificate
of its singular triplet (:func:`~toeplitz_conv.lanczos.certify`), and a route whose
certificates do not resolve its values is not taken at its word.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from math import ceil
from typing import Any, Literal, cast

import numpy as np
from scipy.sparse import csc_array as sp_csc
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator

from .conv import conv_matrix
from .dissection import affordable_lu, lu_applies, polish
from .geometry import ConvGeometry
from .lanczos import (LANCZOS_BLAS_THREADS, NoConvergence, blas_threads, certify, dense_bytes, dense_values,
                      distinct_groups, lanczos_values, normal_operator, start_vector, top_eigenpairs)
from .memory import check_size, human_bytes, memory_limit
from .operator import ConvOperator


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

#: Lanczos on an inverse (the grid LU's ``C^-1 C^-H``, shift-invert's ``(N + delta I)^-1``,
#: SuperLU's ``C^-1 C^-H``) meets a well separated top in tens to a few thousand products (300
#: fuzzed square layers: at most 6,700 on the grid LU's inverse, 1,100 by shift-invert). Where
#: the bottom clusters below what a route resolves (a numerically singular layer) it does not
#: converge, and ARPACK's own limit (ten restarts a column) let a 1,344-column layer run 242,000
#: products, 222 s, before it gave up: each run on an inverse gets at most these many products
#: (the grid LU's solves cost least), then the next route, or ``'auto'``'s dense SVD, takes over.
GRID_LANCZOS_MAX_PRODUCTS = 20_000
INVERSE_LANCZOS_MAX_PRODUCTS = 5_000


def _restarts(products: int, k: int, ncv: int) -> int:
    """ARPACK's ``maxiter`` (restarts, each about ``ncv - k`` products) for a budget of products."""
    return max(1, products // max(1, ncv - k))


def smallest_values(w: np.ndarray, geom: ConvGeometry, k: int, tol: float,
                    kw: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, float, str]:
    """``(values, residuals, sigma_max, route)``: the bottom ``k`` singular values (descending)
    with their residuals (:func:`~toeplitz_conv.lanczos.certify`), the top one to 1e-6 (the shift needs it; the
    caller's rank tolerance reuses it), and which route gave them. The first affordable of:
    Lanczos on ``N^-1 = C^-1 C^-H`` from the nested-dissection LU of a square layer on one
    grid (:func:`~toeplitz_conv.dissection.affordable_lu`; its vectors polished by refined
    inverse iteration, :meth:`~toeplitz_conv.dissection.GridLU.polish`);
    shift-invert Lanczos on the explicit normal matrix (the bottom eigenvalues become the top
    ones of ``(N + delta I)^-1``, well separated); Lanczos on ``C^-1 C^-H`` from SuperLU's LU
    of any other square ``C``; plain Lanczos on ``c I - N`` (with a budget). All are checked
    for missed copies (:func:`~toeplitz_conv.lanczos.top_eigenpairs`). Each value comes from its vectors with the
    residual of its singular triplet (:func:`~toeplitz_conv.lanczos.certify`): a value within it of 0 is reported as
    0 (a rank-deficient layer), not as a solver failure. The grid route's values stand only
    with certificates within ``GRID_RESOLVED`` of ``sigma_max`` (else the routes after it
    run); any route's, within ``UNRESOLVED`` (else :class:`~toeplitz_conv.lanczos.NoConvergence`)."""
    w = w.astype(np.result_type(w.dtype, np.float64), copy=False)
    A = ConvOperator(w, geom)
    N, size = normal_operator(A)
    top2 = lanczos_values(w, geom, 1, 1e-6)[0][0] ** 2
    if top2 == 0:  # the zero matrix
        return np.zeros(k), np.zeros(k), 0.0, "the zero matrix"
    v0 = start_vector(w.dtype, size)
    trans: Literal["T", "H"] = "H" if np.iscomplexobj(w) else "T"
    grid, grid_says = affordable_lu(w, geom)
    no_grid = "" if lu_applies(geom) is not None else grid_says  # why not, for a square layer
    values, route = None, ""  # (sigma, residual) of a route's vectors
    singular = False  # the grid LU found C numerically singular
    if grid is not None:
        g = grid
        inv = LinearOperator((size, size), matvec=lambda x: g.solve(g.solve(x, trans)), dtype=w.dtype)
        try:
            with blas_threads(None):  # the solves are BLAS alone
                # a product is two solves that read every factor: the smallest Krylov spaces that
                # resolve the inverse's well separated top (10 products at 56x56 where 20 took 22)
                ncv = max(2 * k + 1, 8)
                V = top_eigenpairs(inv, k, tol, v0, ncv, _restarts(GRID_LANCZOS_MAX_PRODUCTS, k, ncv),
                                   check_ncv=12)[1]
                values = certify(A, *g.polish(V, trans))
            route = f"Lanczos on C^-1 C^-H ({grid_says}), polished by refined inverse iteration"
            worst = float(np.max(values[1])) / np.sqrt(top2)
            if worst > GRID_RESOLVED:  # the inverse's top is a (numerical) null space whose
                # 1 / eps swamps the rest: only the null vectors were resolved
                values, singular = None, True
                no_grid = (f"the inverse from its LU by nested dissection left a value unresolved (a "
                           f"certificate of {worst:.1e} sigma_max: a numerically singular layer)")
        except ArpackNoConvergence:  # C numerically singular: the inverse's top is rounding noise
            singular = True
            no_grid = "Lanczos on the inverse from its LU by nested dissection did not converge"
    if values is None:
        V, U, route = _bottom_past_the_grid(w, geom, A, N, size, k, tol, v0, top2, kw, trans, no_grid, singular)
        route += f" ({no_grid})" if no_grid else ""
        values = certify(A, V, U)
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
                          trans: Literal["T", "H"], no_grid: str,
                          singular: bool = False) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(V, U, route)``: the bottom right singular vectors of a layer without (or past) the
    grid LU (``no_grid`` says why not, for a square layer), their left partners where the route
    polished them (else None), and the route, by the first affordable of the routes after it
    (:func:`smallest_values`). SuperLU's LU of a square ``C`` (past shift-invert's size) has
    its vectors polished as the grid LU's are (:func:`_polish`); it is not tried on a ``C``
    the grid LU found ``singular`` (numerically)."""
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
    if Nm is None and square and C is not None and not singular:  # the LU of C itself: N^-1 = C^-1 C^-H
        # (not on a numerically singular C: scipy's SuperLU has been seen to write out of bounds
        # on one, BLAS "illegal value" errors then a crash; on N + delta I it has not)
        try:
            lu_c = splu(sp_csc(C))
        except RuntimeError:  # exactly singular: Lanczos below finds the zeros
            lu_c = None

    def inverse_top(inv: LinearOperator) -> np.ndarray:
        """The top ``k`` eigenvectors of an inverse of ``N`` by Lanczos, within its budget of products."""
        ncv = max(2 * k + 1, 20)
        return top_eigenpairs(inv, k, tol, v0, ncv, _restarts(INVERSE_LANCZOS_MAX_PRODUCTS, k, ncv))[1]

    tried = "shift-invert Lanczos (SuperLU's LU of the normal matrix N + delta I)"
    given = f" in {INVERSE_LANCZOS_MAX_PRODUCTS:,} products"  # the budget, where ``tried`` does not say it
    try:
        with blas_threads(LANCZOS_BLAS_THREADS):
            if Nm is not None and Nm.nnz <= SHIFT_INVERT_MAX_NNZ:
                delta = 1e-9 * top2
                check_size("the sparse LU of the normal matrix", 40 * Nm.nnz * 16,
                           f"N is {size:,} x {size:,} with {Nm.nnz:,} nonzeros; its LU fills in")
                lu = splu(sp_csc(Nm + delta * eye_array(size, dtype=Nm.dtype)))
                inv = LinearOperator((size, size), matvec=lu.solve, dtype=Nm.dtype)
                return inverse_top(inv), None, tried
            tried = "Lanczos on C^-1 C^-H (SuperLU's LU of C)"
            if lu_c is not None and C is not None:
                solver = cast(Any, lu_c)
                inv = LinearOperator((size, size), matvec=lambda x: solver.solve(solver.solve(x, trans=trans)),
                                     dtype=C.dtype)  # (C^H C)^-1 = C^-1 C^-H
                V, U = _polish(solver, C, inverse_top(inv), trans)
                return V, U, tried + ", polished by refined inverse iteration"
            c = 1.01 * top2
            shifted = LinearOperator((size, size), matvec=lambda x: c * x - N @ x, dtype=N.dtype)
            ncv = max(4 * k, k + 96)
            products = max(SMALLEST_LANCZOS_MIN_PRODUCTS, int(SMALLEST_LANCZOS_MACS / (2 * m * geom.taps)))
            tried = (f"Lanczos on c I - N (its normal matrix is too large for a sparse LU, and it was given "
                     f"about {SMALLEST_LANCZOS_MACS:.0e} multiply-adds of products with it)")
            given = ""
            V = top_eigenpairs(shifted, k, tol, v0, ncv, _restarts(products, k, ncv))[1]
            return V, None, "Lanczos on c I - N"
    except ArpackNoConvergence as e:
        raise NoConvergence(
            f"Lanczos did not converge to the {k} smallest singular values of this {m:,} x {n:,} "
            f"layer by {tried}{given}{'; ' + no_grid if no_grid else ''}: the bottom of its spectrum is "
            f"clustered, or numerically null. Use method='dense' if it fits in "
            f"memory ({human_bytes(dense_bytes(w, geom))}), or a larger tol; got tol={tol}.") from e


def _polish(lu: Any, C: Any, V: np.ndarray, trans: Literal["T", "H"]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~toeplitz_conv.dissection.polish` with SuperLU's LU of a square ``C``, each solve
    refined once by ``C`` itself."""
    def solve(B: np.ndarray, t: Literal["N", "T", "H"]) -> np.ndarray:
        X = lu.solve(B, trans=t)
        M = C if t == "N" else (C.T if t == "T" else C.conj().T)
        return cast(np.ndarray, X + lu.solve(B - M @ X, trans=t))

    return polish(solve, lambda X: cast(np.ndarray, C @ X), V, trans)


def svds_values(w: np.ndarray, geom: ConvGeometry, k: int, which: Literal["largest", "smallest"],
                tol: float, kw: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, float, str]:
    """``(values, residuals, sigma_max, route)``: at least the top (or bottom) ``k`` singular
    values by Lanczos, unsorted, the residual of each singular triplet (:func:`~toeplitz_conv.lanczos.certify`; 0 for
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
