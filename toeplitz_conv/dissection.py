"""The exact LU of a stride-1 square layer by nested dissection of its grid.

A layer whose input and output have the same channels and positions (stride 1, ``'same'``
padding of any mode) has a square matrix ``C`` whose position graph is the grid itself: an
output position reads only the input positions its taps reach. Cut the grid in two by a
separator (the positions of one half that a tap of the other half reaches), cut each half
again, and so on: numbering the separators after the halves they split, the LU of ``C`` fills
in only within *fronts*, one dense block per separator (its own positions and the not yet
eliminated positions its subdomain touches). This is the multifrontal method (George 1973;
Duff & Reid 1983) on a tree read from the geometry, not from a graph partitioner:

- **geometry -> triples**: the single-channel pattern of the layer gives, for each output
  position and spatial tap, the input position it reads
  (:class:`~toeplitz_conv.pattern.ConvPattern`).
- **triples -> fronts**: each triple lands in the front of whichever of its two positions is
  eliminated first, as one ``C_out x C_in`` block of the kernel's tap (block diagonal over
  groups); the fronts of the children add their Schur complements (extend-add).
- **fronts -> factors**: each front's own block gets a dense LU with partial pivoting
  (LAPACK), ``X = F_ss^-1 F_sb`` and the Schur complement ``F_bb - F_bs X`` for its parent.

A solve is one pass up the tree and one down, a dense triangular solve and a matrix-vector
product per front (:meth:`GridLU.solve`, also with ``C^T`` and ``C^H``). The work is dominated
by the largest fronts, about ``(C * sqrt(P))^3`` for ``P`` positions of ``C`` channels in 2D,
where a general sparse LU (SuperLU's column ordering) fills in much faster: on a 64 -> 64 3x3
layer at 56x56 this is about ``1e12`` multiply-adds, dense BLAS, against SuperLU's estimated
half hour. :func:`lu_cost` counts the multiply-adds and bytes from the tree before anything
is built.

Pivoting stays inside each front's own block (static pivoting across fronts, as in
multifrontal codes without delayed pivots): a layer whose own blocks are singular while ``C``
is not is caught (:attr:`GridLU.singular`), and one whose pivots grew shows in the backward
error of a random solve (:attr:`GridLU.backward_error`); the caller then takes another route.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import scipy.linalg as sla
from scipy.linalg.blas import get_blas_funcs
from scipy.sparse import csr_array

from .geometry import ConvGeometry
from .memory import human_bytes, memory_limit
from .operator import ConvOperator
from .pattern import conv_pattern

#: The LU is used (:func:`affordable_lu`) while it costs at most this many multiply-adds of
#: dense work (a 64 -> 64 3x3 layer on 56x56: 7.7e11, 18 s on 2 cores) and its factors fit in
#: memory; a factorization whose random solve has a backward error above
#: ``MAX_BACKWARD_ERROR`` (its pivots, kept inside each front, grew) is not.
MAX_MACS = 5e12
MAX_BACKWARD_ERROR = 1e-10

#: Steps of inverse iteration, each solve refined once, that polish the bottom vectors found
#: through an LU (:func:`polish`): Lanczos's vectors carry the solves' error (about
#: ``eps * cond(C)``) in every direction, and along the top of the spectrum that error dominates
#: the residual (a 64 -> 64 layer on 56x56: ``||N v - mu v||`` was 2e-11 against ``sigma^2`` =
#: 1.7e-14, so the certificate could not tell the value from 0). Polished, the residual is
#: rounding.
POLISH_STEPS = 2

#: Positions x channels at most in a leaf of the dissection tree (a leaf's LU is one dense
#: block): small enough that a leaf's front stays small, large enough that Python's loop over
#: the fronts does not dominate.
LEAF_VARS = 512


def lu_applies(geom: ConvGeometry) -> str | None:
    """``None`` if the layer's matrix is square on one grid (same channels and positions in and
    out); otherwise why not."""
    if geom.in_channels != geom.out_channels:
        return f"{geom.in_channels} input channels but {geom.out_channels} output channels"
    if geom.in_spatial != geom.out_spatial:
        return f"input positions {geom.in_spatial} but output positions {geom.out_spatial}"
    return None


@dataclass(frozen=True)
class _Node:
    own: np.ndarray          # positions eliminated here
    children: tuple[int, ...]


class _Tree:
    """The dissection of the position graph: nodes in postorder (children before parents)."""

    def __init__(self, geom: ConvGeometry, channels: int) -> None:
        single = replace(geom, in_channels=1, out_channels=1, groups=1)
        src = conv_pattern(single).src  # (P, taps): the input position read, P where padding
        P = src.shape[0]
        rows = np.repeat(np.arange(P), src.shape[1])
        cols = src.reshape(-1)
        taps = np.tile(np.arange(src.shape[1]), P)
        valid = cols < P
        self.tp, self.tq, self.tt = rows[valid], cols[valid], taps[valid]
        adj = csr_array((np.ones(self.tp.size, dtype=np.int8), (self.tp, self.tq)), shape=(P, P))
        adj = ((adj + adj.T) != 0).astype(np.int8)
        adj.sort_indices()
        self.adj = adj
        self.coords = np.stack(np.unravel_index(np.arange(P), geom.in_spatial), axis=1)
        self.leaf = max(1, LEAF_VARS // channels)
        self.nodes: list[_Node] = []
        self._mark = np.zeros(P, dtype=bool)
        self._split(np.arange(P))
        self.rank = np.empty(P, dtype=np.int64)  # the node that eliminates each position
        for k, node in enumerate(self.nodes):
            self.rank[node.own] = k
        order = np.concatenate([n.own for n in self.nodes])
        self.new_pos = np.empty(P, dtype=np.int64)
        self.new_pos[order] = np.arange(P)
        self.bnd = self._boundaries()

    def _split(self, S: np.ndarray) -> int:
        """Dissect the positions ``S``; returns the index of its (last appended) node."""
        if S.size <= self.leaf:
            return self._append(S, ())
        c = self.coords[S]
        extent = c.max(axis=0) - c.min(axis=0)
        axis = int(np.argmax(extent))  # > 0: more than one position
        t = (int(c[:, axis].min()) + int(c[:, axis].max()) + 1) // 2
        in_a = c[:, axis] < t
        A, B = S[in_a], S[~in_a]
        self._mark[A] = True  # (one array for all splits: a split costs its own part, not the grid)
        sub = self.adj[B]
        touches = np.zeros(B.size, dtype=bool)
        touches[np.repeat(np.arange(B.size), np.diff(sub.indptr))[self._mark[sub.indices]]] = True
        self._mark[A] = False
        sep, rest = B[touches], B[~touches]
        kids = [self._split(part) for part in (A, rest) if part.size]
        return self._append(sep, tuple(kids))  # (sep is empty where the halves never meet)

    def _append(self, own: np.ndarray, children: tuple[int, ...]) -> int:
        self.nodes.append(_Node(np.sort(own), children))
        return len(self.nodes) - 1

    def _boundaries(self) -> list[np.ndarray]:
        """Per node, the positions of later nodes its subdomain reaches, in elimination order."""
        out: list[np.ndarray] = []
        adj = self.adj
        for k, node in enumerate(self.nodes):
            parts = [adj[node.own].indices if node.own.size else np.empty(0, np.int64)]
            parts += [out[c] for c in node.children]
            cand = np.unique(np.concatenate(parts))
            cand = cand[self.rank[cand] > k]
            out.append(cand[np.argsort(self.new_pos[cand])])
        return out

    def sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """Own and boundary positions of every node."""
        return (np.array([n.own.size for n in self.nodes]), np.array([b.size for b in self.bnd]))


def lu_cost(geom: ConvGeometry, itemsize: int = 8, tree: _Tree | None = None) -> tuple[float, int, int]:
    """``(multiply_adds, factor_bytes, front_bytes)`` of :class:`GridLU` for this geometry (and
    its dissection ``tree``, built here if not given): the dense work of all fronts, the bytes
    the factors keep, and the largest front (with its children's Schur complements waiting)."""
    m = geom.in_channels
    s, b = (tree or _Tree(geom, m)).sizes()
    s, b = s * m, b * m
    macs = float(np.sum(s ** 3 / 3 + s * s * b + b * b * s))
    factors = int(np.sum(s * s + 2 * s * b)) * itemsize
    front = int(np.max((s + b) ** 2)) * itemsize * 2
    return macs, factors, front


class GridLU:
    """The LU of a square layer's matrix ``C`` in the layer's own variables (C order).

    Parameters
    ----------
    w : weight, float64 or complex128
    geom : a geometry for which :func:`lu_applies` is ``None``
    tree : its dissection, if already built (by :func:`affordable_lu` for the estimate)

    Attributes
    ----------
    backward_error : float
        ``||C x - b|| / (||C|| ||x|| + ||b||)`` for a random ``b`` and ``x = solve(b)``, with a
        bound on ``||C||_2``: about machine epsilon when the factorization is sound, however
        ill-conditioned ``C`` is; large where the pivots kept inside the fronts grew.
    singular : bool
        A pivot was exactly zero (``C`` is singular, or its own blocks are).
    """

    def __init__(self, w: np.ndarray, geom: ConvGeometry, tree: _Tree | None = None) -> None:
        m = geom.in_channels
        _gemm = get_blas_funcs("gemm", dtype=w.dtype)
        self.shape = geom.shape
        self.dtype = w.dtype
        tree = tree or _Tree(geom, m)
        P = tree.coords.shape[0]
        G, cpg, opg = geom.groups, geom.cin_per_group, geom.cout_per_group
        taps = int(np.prod(geom.kernel))
        wfull = np.zeros((m, m, taps), dtype=w.dtype)  # (C_out, C_in, tap), block diagonal over groups
        w3 = w.reshape(m, cpg, taps)
        for g in range(G):
            wfull[g * opg:(g + 1) * opg, g * cpg:(g + 1) * cpg] = w3[g * opg:(g + 1) * opg]
        # each triple belongs to the front of the first-eliminated of its two positions
        owner = np.minimum(tree.rank[tree.tp], tree.rank[tree.tq])
        by_owner = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[by_owner], np.arange(len(tree.nodes) + 1))
        local = np.full(P, -1, dtype=np.int64)
        ar = np.arange(m)
        self._fronts: list[tuple[Any, ...]] = []
        schur: dict[int, np.ndarray] = {}
        self.singular = False
        for k, node in enumerate(tree.nodes):
            own, bnd = node.own, tree.bnd[k]
            front = np.concatenate([own, bnd])
            nf, s = front.size, own.size * m
            local[front] = np.arange(nf)
            F = np.zeros((nf, m, nf, m), dtype=w.dtype)
            sel = by_owner[bounds[k]:bounds[k + 1]]
            i, j, t = local[tree.tp[sel]], local[tree.tq[sel]], tree.tt[sel]
            for tap in np.unique(t):  # within one tap a pair of positions occurs once
                hit = t == tap
                F[i[hit], :, j[hit], :] += wfull[:, :, tap]
            for c in node.children:  # extend-add: one C x C block per pair of positions
                if not tree.bnd[c].size:  # a part of the grid no tap of the rest reaches
                    continue
                li = local[tree.bnd[c]]
                sc = schur.pop(c).reshape(li.size, m, li.size, m)
                F[li[:, None], :, li[None, :], :] += sc.transpose(0, 2, 1, 3)
            F2 = F.reshape(nf * m, nf * m)
            local[front] = -1
            lo = int(tree.new_pos[own[0]]) * m if own.size else 0
            bvars = (tree.new_pos[bnd][:, None] * m + ar).reshape(-1)
            if s:
                with warnings.catch_warnings():  # an exactly zero pivot is checked just below
                    warnings.simplefilter("ignore", sla.LinAlgWarning)
                    lu, piv = sla.lu_factor(F2[:s, :s], check_finite=False)
                if not np.all(np.diagonal(lu)):
                    self.singular = True
                    return
                X = sla.lu_solve((lu, piv), F2[:s, s:], check_finite=False)
                Fbs = np.ascontiguousarray(F2[s:, :s])
                if bvars.size:  # F_bb - F_bs X, by scipy's BLAS as LAPACK (not numpy's: two pools fight)
                    schur[k] = _gemm(-1.0, X, Fbs.T, trans_a=1, beta=1.0, c=F2[s:, s:].T).T
                self._fronts.append((lo, lo + s, bvars, lu, piv, X, Fbs))
            elif bvars.size:
                schur[k] = F2
        # C-order variable (c * P + p) -> position-major elimination order (new_pos(p) * m + c)
        self._perm = (tree.new_pos[None, :] * m + ar[:, None]).reshape(-1)
        self._op = ConvOperator(w, geom)
        # ||C||_2 <= sqrt(||C||_1 ||C||_inf): rows sum each tap once, a column is read at most
        # 2**ndim times by one tap (reflect padding reads a position from both sides)
        absw = np.abs(wfull).sum(axis=2)
        norm_c = float(np.sqrt(absw.sum(axis=1).max() * absw.sum(axis=0).max() * 2 ** geom.ndim))
        b = np.random.default_rng(0).standard_normal(self.shape[0]).astype(w.dtype)
        x = self.solve(b)
        self.backward_error = float(np.linalg.norm(self._apply(x, "N") - b)
                                    / (norm_c * np.linalg.norm(x) + np.linalg.norm(b)))

    def _apply(self, x: np.ndarray, trans: Literal["N", "T", "H"]) -> np.ndarray:
        """``C x`` (``C^T x``, ``C^H x``) by the matrix-free operator."""
        x2 = x.reshape(x.shape[0], -1)
        if trans == "N":
            y = self._op.matmat(x2)
        elif trans == "H" or not np.iscomplexobj(self._op.weight):
            y = self._op.rmatmat(x2)
        else:
            y = self._op.rmatmat(x2.conj()).conj()
        return np.asarray(y).reshape(x.shape)

    def solve(self, b: np.ndarray, trans: Literal["N", "T", "H"] = "N", refine: int = 0) -> np.ndarray:
        """``C^-1 b`` (``C^-T b``, ``C^-H b``) for ``b`` of shape ``(n,)`` or ``(n, r)``, then
        ``refine`` steps of iterative refinement (the residual by the layer's own operator):
        each brings the error from about ``eps * cond(C)`` towards ``eps``."""
        x = self._solve(b, trans)
        for _ in range(refine):
            x = x + self._solve(b - self._apply(x, trans), trans)
        return x

    def polish(self, V: np.ndarray, trans: Literal["T", "H"]) -> tuple[np.ndarray, np.ndarray]:
        """:func:`polish` with this LU's solves, each refined once."""
        return polish(lambda b, t: self.solve(b, t, refine=1), self._op.matmat, V, trans)

    def _solve(self, b: np.ndarray, trans: Literal["N", "T", "H"]) -> np.ndarray:
        r = np.empty(b.shape, dtype=np.result_type(b, self.dtype))
        r[self._perm] = b  # into elimination order
        fronts = self._fronts
        r2 = r.reshape(r.shape[0], -1)
        gemm = get_blas_funcs("gemm", dtype=r.dtype)

        def sub(a: np.ndarray, x: np.ndarray, out: np.ndarray, op: str) -> None:
            """``out -= op(a) @ x``, ``a`` handed to BLAS in its own order (Fortran, or C as the
            transpose) so that nothing is copied."""
            flip = not a.flags.f_contiguous
            if op == "H":
                out -= gemm(1.0, a.T if flip else a, x.conj(), trans_a=0 if flip else 1).conj()
            else:
                out -= gemm(1.0, a.T if flip else a, x, trans_a=int((op == "N") == flip))

        if trans == "N":
            ts = []
            for lo, hi, bvars, lu, piv, X, Fbs in fronts:  # up: eliminate each front's own part
                t = sla.lu_solve((lu, piv), r2[lo:hi], check_finite=False)
                if bvars.size:
                    rb = r2[bvars]
                    sub(Fbs, t, rb, "N")
                    r2[bvars] = rb
                ts.append(t)
            for (lo, hi, bvars, lu, piv, X, Fbs), t in zip(reversed(fronts), reversed(ts)):  # down
                if bvars.size:
                    sub(X, r2[bvars], t, "N")
                r2[lo:hi] = t
        else:
            for lo, hi, bvars, lu, piv, X, Fbs in fronts:
                if bvars.size:
                    rb = r2[bvars]
                    sub(X, r2[lo:hi], rb, trans)
                    r2[bvars] = rb
            code = 2 if trans == "H" else 1
            for lo, hi, bvars, lu, piv, X, Fbs in reversed(fronts):
                rhs = r2[lo:hi].copy()
                if bvars.size:
                    sub(Fbs, r2[bvars], rhs, trans)
                r2[lo:hi] = sla.lu_solve((lu, piv), rhs, trans=code, check_finite=False)
        out: np.ndarray = r[self._perm]
        return out


def polish(solve: Callable[[np.ndarray, Literal["N", "T", "H"]], np.ndarray],
           matmat: Callable[[np.ndarray], np.ndarray], V: np.ndarray,
           trans: Literal["T", "H"]) -> tuple[np.ndarray, np.ndarray]:
    """``(V, U)``: the bottom right singular vectors ``V`` of a square ``C`` (eigenvectors of
    ``N = C^H C``; ``trans`` is ``C^H``'s: ``'T'`` for a real layer) after ``POLISH_STEPS`` of
    inverse iteration on their span and Rayleigh-Ritz with ``N`` itself, and their left
    partners ``U = C^-H V`` (``C^H u = sigma v``). ``solve(b, t)`` is ``C^-1 b`` (``t`` =
    ``'N'``) or ``C^-T b`` / ``C^-H b`` from an LU, refined; ``matmat(X)`` is ``C X``."""
    Q = np.linalg.qr(V)[0]
    for _ in range(POLISH_STEPS):
        Q = np.linalg.qr(solve(solve(Q, trans), "N"))[0]
    AQ = matmat(Q)
    V = Q @ np.linalg.eigh(AQ.conj().T @ AQ)[1]
    return V, solve(V, trans)


def affordable_lu(w: np.ndarray, geom: ConvGeometry) -> tuple[GridLU | None, str]:
    """``(lu, what)``: the LU of a square layer's matrix where it applies (:func:`lu_applies`),
    is affordable (``MAX_MACS``; factors and the largest front within the memory limit, both
    estimated by :func:`lu_cost` before anything is built) and sound, with what it cost;
    otherwise ``None`` and why not."""
    if (why := lu_applies(geom)) is not None:
        return None, why
    tree = _Tree(geom, geom.in_channels)  # once, for the estimate and the LU
    macs, factors, front = lu_cost(geom, np.dtype(w.dtype).itemsize, tree)
    limit, source = memory_limit()
    if macs > MAX_MACS or factors + front > limit:
        return None, (f"its LU by nested dissection would take {macs:.1e} multiply-adds (at most "
                      f"{MAX_MACS:.0e}) and {human_bytes(factors + front)} ({source} limit "
                      f"{human_bytes(limit)})")
    lu = GridLU(w, geom, tree)
    if lu.singular:
        return None, "its LU by nested dissection met an exactly zero pivot"
    if not lu.backward_error <= MAX_BACKWARD_ERROR:
        return None, f"its LU by nested dissection solved with a backward error of {lu.backward_error:.0e}"
    return lu, f"LU by nested dissection: {macs:.1e} multiply-adds, {human_bytes(factors)} of factors"
