"""A certified Lipschitz bound tighter than the product of norms: activations averaged about the
middle of their slopes, over windows of the graph (``method='windowed'``).

Why the product is loose, and what is kept here
-----------------------------------------------
For two points ``x, y``, every elementwise activation with secant slopes in ``[alpha, beta]``
(``(sigma(a) - sigma(b)) / (a - b)`` in that range: ReLU ``[0, 1]``, sigmoid ``[0, 1/4]``, GELU
``[-0.129, 1.129]``) maps the difference of its inputs to that of its outputs by a diagonal
``D`` with entries in ``[alpha, beta]``. A network of linear nodes (convolutions, batch norms,
sums, concatenations, reshapes) and such activations therefore has::

    f(x) - f(y) = F(D_1, ..., D_K) (x - y),

where ``F`` is the sum over the graph's paths of products of matrices and ``D``'s: affine in
each ``D_k`` separately. Its Lipschitz constant is at most ``sup ||F||`` over the box of
``D``'s. Write ``D_k = m I + r S`` with ``m = (alpha + beta) / 2``, ``r = (beta - alpha) / 2``
and ``S`` diagonal with entries in ``[-1, 1]`` (so ``||S|| <= 1``). Splitting the paths
through node ``k`` from the others::

    F = P + Q D_k R = (P + m Q R) + r Q S R,     so
    ||F|| <= ||F(D_k = m I)|| + r ||Q|| ||R||                                       (*)

``P + m Q R`` is the network with ``k`` replaced by the linear map ``m I`` (its neighbours'
matrices are then composed into one map and normed together: ``||W_2 W_1||``, not
``||W_2|| ||W_1||``); ``R`` is the map from the segment's input to ``k``'s input, ``Q`` from
``k``'s output to the segment's output (other inputs held fixed). For a chain
``W_2 D W_1`` with ReLU this is Combettes and Pesquet's averaged bound
``||W_2 D W_1|| <= 1/2 ||W_2 W_1|| + 1/2 ||W_2|| ||W_1||``; in a residual block,
``||I + W_2 D W_1|| <= ||I + 1/2 W_2 W_1|| + 1/2 ||W_2|| ||W_1||``. (*) applies again to the
activations left in each of its three terms; what is not expanded is bounded by the product
rule (:func:`~toeplitz_conv.network.analysis.lipschitz.product_bound`), here with every
linear region between nonlinear nodes composed into one map, sums included.

Windows and the best partition
------------------------------
A *cut* is a position every later node reads at or after: the network is the composition of
the maps between consecutive cuts (block boundaries of a ResNet, every position of a chain),
and the Lipschitz constant of a composition is at most the product of theirs. Each segment
``(a, b]`` between two cuts holding at most ``window`` activations not adjacent to its ends
gets the bound of (*) expanded over them (capped by the product rule: never looser); a
dynamic programme picks the partition of the network into segments with the smallest
product. One-step segments are always allowed, so the result is never above the product
bound. Segments holding another nonlinear node (max pooling, softmax, a normalisation) are
not expanded: (*) needs the difference to be linear in everything but the ``D``'s.

Every norm is exact (the dense SVD when small, else Lanczos rounded up by its tolerance,
:func:`~toeplitz_conv.network.analysis.lipschitz.operator_norm`), matrix-free: each linear
region is a composed ``LinearOperator`` of the nodes' operators, and identical regions are
normed once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce
from math import prod, sqrt
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from ..affine import Affine, Conv, Reshape
from ..layers import Activation
from ..nodes import Combine
from .lipschitz import node_constant, operator_norm, reaching, unbounded

if TYPE_CHECKING:
    from ..model import Network

#: Activations expanded per segment by default (each doubles the terms of a segment's bound).
WINDOW = 2
#: A segment spans at most this many cuts.
SPAN = 12
#: Lanczos' relative tolerance on each ``sigma^2`` (each norm is rounded up by it).
TOL = 1e-5


class Expr(NamedTuple):
    """``y = op @ frontier``: a linear region, keyed by how it was composed (equal keys, equal maps)."""

    key: tuple[Any, ...]
    op: LinearOperator


def _identity(n: int) -> LinearOperator:
    return LinearOperator((n, n), matvec=lambda x: x, rmatvec=lambda y: y,
                          matmat=lambda X: X, rmatmat=lambda Y: Y, dtype=np.float64)


def _stack(ops: Sequence[LinearOperator]) -> LinearOperator:
    """``[A_1 | A_2 | ...]``."""
    widths = np.cumsum([0] + [A.shape[1] for A in ops])

    def apply(x: np.ndarray) -> np.ndarray:
        return sum((A @ x[widths[j]:widths[j + 1]] for j, A in enumerate(ops)), np.zeros(ops[0].shape[0]))

    def adjoint(y: np.ndarray) -> np.ndarray:
        return np.concatenate([np.ravel(A.H @ y) for A in ops])
    return LinearOperator((ops[0].shape[0], int(widths[-1])), matvec=lambda x: apply(np.ravel(x)),
                          rmatvec=lambda y: adjoint(np.ravel(y)), dtype=np.float64)


def torch_conv(layer: Conv) -> LinearOperator | None:
    """A zero-padded convolution node in float64 through torch's own kernels (forward, and the
    exact adjoint ``torch.nn.grad.convNd_input``): the same map as its pattern-table
    operator, about 1.5x faster for the many products Lanczos takes; None for the others."""
    g = layer.geometry
    if layer.transposed or g.padding_mode != "zeros":
        return None
    import torch
    from torch.nn import functional as F
    from torch.nn import grad

    conv = cast(Callable[..., Any], (F.conv1d, F.conv2d, F.conv3d)[g.ndim - 1])
    back = cast(Callable[..., Any], (grad.conv1d_input, grad.conv2d_input, grad.conv3d_input)[g.ndim - 1])
    w = torch.from_numpy(np.ascontiguousarray(layer.weight, dtype=np.float64))
    pad = [p for lo, hi in zip(g.pad_lo[::-1], g.pad_hi[::-1]) for p in (lo, hi)]
    padded = (1, g.in_channels) + tuple(n + lo + hi for n, lo, hi in zip(g.in_spatial, g.pad_lo, g.pad_hi))
    crop = (slice(None), slice(None)) + tuple(slice(lo, lo + n) for n, lo in zip(g.in_spatial, g.pad_lo))
    opts = dict(stride=g.stride, dilation=g.dilation, groups=g.groups)

    def apply(X: np.ndarray) -> np.ndarray:  # (n, k) columns -> a batch of k samples
        T = torch.from_numpy(np.ascontiguousarray(X.T, dtype=np.float64).reshape(-1, g.in_channels, *g.in_spatial))
        out: np.ndarray = conv(F.pad(T, pad), w, **opts).reshape(T.shape[0], -1).numpy().T
        return out

    def adjoint(Y: np.ndarray) -> np.ndarray:
        T = torch.from_numpy(np.ascontiguousarray(Y.T, dtype=np.float64).reshape(-1, g.out_channels, *g.out_spatial))
        out: np.ndarray = back((T.shape[0],) + padded[1:], w, T, **opts)[crop].reshape(T.shape[0], -1).numpy().T
        return out
    return LinearOperator(g.shape, matvec=lambda x: apply(np.reshape(x, (-1, 1)))[:, 0],
                          rmatvec=lambda y: adjoint(np.reshape(y, (-1, 1)))[:, 0],
                          matmat=apply, rmatmat=adjoint, dtype=np.float64)


def slopes(layer: Activation) -> tuple[float, float]:
    """``(m, r)``: the middle and half-width of the activation's secant slopes."""
    alpha, beta = layer.function.slope_range
    return (alpha + beta) / 2, (beta - alpha) / 2


class Windowed:
    """The bounds of segments of one network, with every linear region's norm computed once."""

    def __init__(self, net: Network, tol: float = TOL) -> None:
        self.net, self.layers, self.tol = net, net.layers, tol
        self.live = reaching(net)
        self.norms: dict[tuple[Any, ...], float] = {}
        self.ops: dict[int, LinearOperator] = {}
        self.bounds: dict[tuple[Any, ...], float] = {}
        self.identities: dict[tuple[int, int], bool] = {}
        self.size = [prod(net.shape_at(p)) for p in range(len(net.layers) + 1)]

    # ---------------------------------------------------------------- one segment, composed
    def norm(self, e: Expr) -> float:
        if e.key[0] == "id":
            return 1.0
        if e.key not in self.norms:
            self.norms[e.key] = operator_norm(e.op, self.tol)
        return self.norms[e.key]

    def op(self, i: int) -> LinearOperator:
        if i not in self.ops:
            layer = self.layers[i]
            assert isinstance(layer, Affine)
            fast = torch_conv(layer) if isinstance(layer, Conv) else None
            self.ops[i] = fast if fast is not None else layer.operator(np.float64)
        return self.ops[i]

    def summed(self, i: int, terms: list[tuple[int, Expr]]) -> Expr:
        """``sum_k W_k e_k`` of a sum node ``i``; one term through an identity ``W_k`` is ``e_k``."""
        Ws = self.layers[i].matrices  # type: ignore[attr-defined]  # a Combine's
        if len(terms) == 1 and self.is_identity(i, terms[0][0]):
            return terms[0][1]
        ops = [aslinearoperator(Ws[k]) @ e.op for k, e in terms]
        return Expr(("sum", i, tuple((k, e.key) for k, e in terms)), reduce(lambda a, b: a + b, ops))

    def is_identity(self, i: int, k: int) -> bool:
        if (i, k) not in self.identities:
            W = self.layers[i].matrices[k]  # type: ignore[attr-defined]  # a Combine's
            self.identities[(i, k)] = bool(W.shape[0] == W.shape[1] and abs(W - sp.eye_array(W.shape[0])).sum() == 0)
        return self.identities[(i, k)]

    def bound_of(self, exprs: dict[int, Expr], bound: dict[int, float], cap: float = np.inf) -> float:
        """Lipschitz bound of ``y = sum_f A_f y_f`` where ``y_f`` has bound ``L_f``: ``||A|| L``
        for one frontier, else the smaller of ``sum_f ||A_f|| L_f`` and
        ``||[A_1 | A_2 | ...]|| sqrt(sum_f L_f^2)``; the latter is not computed when its lower
        bound ``max_f ||A_f|| sqrt(sum_f L_f^2)`` already reaches ``cap`` (a bound the caller
        holds: the result is then only used through ``min(result, cap)``, which is unchanged)."""
        if not exprs:
            return 0.0
        items = sorted(exprs.items())
        summed = sum(self.norm(e) * bound[f] for f, e in items)
        if len(items) == 1 or (len(items) == 2 and any(e.key[0] == "id" for _, e in items)):
            return summed  # [I | A]: ||.||^2 = 1 + ||A||^2, and the stacked bound is never smaller
        root = sqrt(sum(bound[f] ** 2 for f, _ in items))
        if max(self.norm(e) for _, e in items) * root >= min(summed, cap):
            return summed
        stacked = Expr(("stack", tuple(e.key for _, e in items)), _stack([e.op for _, e in items]))
        return min(summed, self.norm(stacked) * root)

    def compose(self, src: int, dst: int, linear: frozenset[int], cap: float = np.inf) -> float:
        """Bound of the map from position ``src`` to ``dst`` (what does not depend on ``src``
        held fixed), the activations in ``linear`` replaced by ``m I``, every other nonlinear
        node bounded by its constant (``cap``: as in :meth:`bound_of`, for the last step)."""
        key = ("compose", src, dst, linear)
        if key in self.bounds:
            return self.bounds[key]
        state: dict[int, dict[int, Expr]] = {src: {src: Expr(("id", src), _identity(self.size[src]))}}
        bound = {src: 1.0}
        for i in range(src, dst):
            layer, p = self.layers[i], i + 1
            if not self.live[p] or not any(q in state for q in layer.inputs):
                continue
            if isinstance(layer, Combine):
                parts: dict[int, list[tuple[int, Expr]]] = {}
                for k, q in enumerate(layer.inputs):
                    for f, e in state.get(q, {}).items():
                        parts.setdefault(f, []).append((k, e))
                state[p] = {f: self.summed(i, terms) for f, terms in parts.items()}
            elif isinstance(layer, Reshape):
                state[p] = state[layer.inputs[0]]
            elif isinstance(layer, Affine):
                state[p] = {f: Expr(("lin", i, e.key), self.op(i) @ e.op)
                            for f, e in state[layer.inputs[0]].items()}
            elif isinstance(layer, Activation) and i in linear:
                m = slopes(layer)[0]
                state[p] = {f: Expr(("scale", m, e.key), m * e.op) for f, e in state[layer.inputs[0]].items()}
            else:
                c = float(layer.function.lipschitz) if isinstance(layer, Activation) else node_constant(layer)[0]
                if c is None:
                    raise unbounded(i, layer)
                bound[p] = c * self.bound_of(state[layer.inputs[0]], bound)
                state[p] = {p: Expr(("id", p), _identity(self.size[p]))}
        result = self.bound_of(state.get(dst, {}), bound, cap)
        self.bounds[key] = result
        return result

    # ---------------------------------------------------------------- expanded over activations
    def between(self, src: int, dst: int) -> list[bool]:
        """Per node, whether it lies on a path from position ``src`` to position ``dst``."""
        down = [False] * (len(self.layers) + 1)
        down[src] = True
        for i in range(src, dst):
            down[i + 1] = self.live[i + 1] and any(down[q] for q in self.layers[i].inputs)
        up = [False] * (len(self.layers) + 1)
        up[dst] = True
        for i in range(dst - 1, src - 1, -1):
            if up[i + 1] and down[i + 1]:
                for q in self.layers[i].inputs:
                    up[q] = True
        return [down[i + 1] and up[i + 1] for i in range(len(self.layers))]

    def expandable(self, src: int, dst: int) -> list[int]:
        """The activations of segment ``(src, dst]`` worth expanding by (*): on a path, neither
        reading ``src`` nor writing ``dst`` (there (*) gains nothing); none when another
        nonlinear node lies on a path (the difference is then not linear in the rest)."""
        on = self.between(src, dst)
        acts = []
        for i in range(src, dst):
            layer = self.layers[i]
            if not on[i] or layer.linear:
                continue
            if not isinstance(layer, Activation) or not np.isfinite(layer.function.slope_range).all():
                return []
            if layer.inputs[0] != src and i + 1 != dst:
                acts.append(i)
        return acts

    def expanded(self, src: int, dst: int, acts: Sequence[int], linear: frozenset[int] = frozenset()) -> float:
        """(*) over ``acts`` (in order) for the map from ``src`` to ``dst``, capped by :meth:`compose`."""
        key = ("expanded", src, dst, tuple(acts), linear)
        if key in self.bounds:
            return self.bounds[key]
        on = self.between(src, dst)
        acts = [k for k in acts if on[k]]
        result = np.inf
        if acts:
            k, rest = acts[0], acts[1:]
            m, r = slopes(self.layers[k])  # type: ignore[arg-type]  # expandable: activations only
            t1 = self.expanded(src, dst, rest, linear | {k})
            t2 = 0.0
            if r > 0 and t1 < np.inf:
                t2 = r * self.expanded(k + 1, dst, rest, linear) * self.expanded(src, self.layers[k].inputs[0], rest, linear)
            result = t1 + t2
        result = min(result, self.compose(src, dst, linear, cap=result))
        self.bounds[key] = result
        return result

    # ---------------------------------------------------------------- the partition
    def cuts(self) -> list[int]:
        """Positions ``0 <= p <= output`` that every later live node reads at or after."""
        out, live = self.net.output, self.live
        lowest, cuts = out, []
        for p in range(out, -1, -1):
            if p < out and live[p + 1]:
                lowest = min(lowest, *self.layers[p].inputs)
            if (p == 0 or live[p]) and lowest >= p:
                cuts.append(p)
        return cuts[::-1]

    def opaque_step(self, p: int, cut: set[int]) -> bool:
        """Whether the map from cut ``p`` to cut ``p + 1`` is one nonlinear node: a segment that
        starts or ends with it is bounded by its constant times the rest, which the partition
        already holds (so such segments are skipped: no bound is lost)."""
        layer = self.layers[p] if p < len(self.layers) else None
        return p + 1 in cut and layer is not None and not layer.linear and layer.inputs == (p,)

    def bound(self, window: int = WINDOW, span: int = SPAN) -> float:
        cuts = self.cuts()
        cut = set(cuts)
        best = {cuts[0]: 1.0}
        for j in range(1, len(cuts)):
            b, options = cuts[j], []
            for a in cuts[max(0, j - span):j][::-1]:
                if a != cuts[j - 1] and (self.opaque_step(a, cut) or self.opaque_step(b - 1, cut)):
                    continue
                acts = self.expandable(a, b)
                if len(acts) > window and a != cuts[j - 1]:
                    break
                options.append(best[a] * self.expanded(a, b, acts[:window]))
            best[b] = min(options)
        return float(best[cuts[-1]])


def windowed_bound(net: Network, window: int = WINDOW) -> float:
    """:meth:`Network.lipschitz_bound` with ``method='windowed'``."""
    if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 0:
        raise ValueError(f"window must be an integer >= 0 (activations expanded per segment); got {window!r}.")
    net.check_batch(1)
    if net.output == 0:
        return 1.0
    live = reaching(net)
    linear = all(layer.linear for i, layer in enumerate(net.layers) if live[i + 1])
    # a linear network is one linear region: its exact norm, to the product's 1e-10
    return Windowed(net, tol=1e-10 if linear else TOL).bound(int(window))
