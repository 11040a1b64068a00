"""The nodes that make a network a graph: they combine several inputs, or act across a sample.

- :class:`Combine`: ``y = sum_i W_i x_i + b``, a linear node with several inputs: a residual
  sum ``x + F(x)`` (``W_i`` identities, or broadcasts), a difference, ``torch.cat`` (``W_i``
  place each input in its rows: ``.matrix`` is the stacked ``[W_1 | W_2]``).
- :class:`Product`: ``y = (B_a a) * (B_b b)``, the elementwise product of two inputs after
  broadcasting (gating, squeeze-and-excitation); bilinear, so its Jacobian has two diagonal
  blocks, one per input.
- :class:`Grouped` nodes act on groups of entries of a sample together, each group alone:
  :class:`Softmax` (``softmax`` / ``log_softmax`` along one axis) and :class:`Normalise`
  (layer, group and instance normalisation). Their Jacobian is a block per group (dense for a
  softmax; a diagonal plus rank two for a normalisation), and what reaches an output is its
  whole group (:meth:`Grouped.groups`).

Each keeps the single-input layers' contract (:class:`~.layers.Layer`): column form
``(features, N)``, ``run``/``back`` beside each other, ``local`` for the Jacobian.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from ..memory import check_size
from .layers import Fixed, Layer

if TYPE_CHECKING:
    from torch import nn


class Combine(Layer):
    """``y = sum_i W_i x_i + b``: a sum, difference or concatenation of several inputs."""

    linear = True

    def __init__(self, name: str, in_shapes: Sequence[Sequence[int]], out_shape: Sequence[int],
                 matrices: Sequence[sp.sparray], bias: np.ndarray | None, kind: str) -> None:
        super().__init__(name, None, in_shapes[0], out_shape, kind)
        self.in_shapes = tuple(tuple(s) for s in in_shapes)
        self.matrices, self.bias = list(matrices), bias

    @property
    def matrix(self) -> sp.csr_array:
        """The stacked matrix ``[W_1 | W_2 | ...]``: ``y = matrix @ concat(x_1, x_2, ...) + b``."""
        return sp.hstack(self.matrices, format="csr")

    def run(self, Xs: Sequence[np.ndarray]) -> np.ndarray:
        Y: np.ndarray = sum(W @ X for W, X in zip(self.matrices, Xs))
        return Y + self.bias[:, None] if self.bias is not None else Y

    def back(self, delta: np.ndarray, Xs: Sequence[np.ndarray],
             Y: np.ndarray) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        return [W.T @ delta for W in self.matrices], {}

    def local(self, Xs: Sequence[np.ndarray] | None,
              Y: np.ndarray | None) -> list[sp.sparray | None]:
        return list(self.matrices)


    def rebuilt_from(self, other: Layer) -> None:
        """Take the matrices and bias of the same op built again (it reads parameters as constants)."""
        if not isinstance(other, Combine):  # pragma: no cover - a builder gives one kind of node
            raise RuntimeError(f"{self.kind} {self.name!r} was built again as another kind of node; please report this.")
        self.matrices, self.bias = other.matrices, other.bias

    def merged(self) -> tuple[Layer, list[int]]:
        """The same map with one matrix per distinct input (``x - x`` reads ``x`` twice: its
        matrices are summed), so that its norm is that of what it computes; with one input left,
        an affine node. Also the index of each kept input among the original ones."""
        firsts = {p: k for k, p in reversed(list(enumerate(self.inputs)))}
        kept = sorted(firsts.values())
        mats = [sp.csr_array(sum((W for W, q in zip(self.matrices, self.inputs) if q == self.inputs[k]),
                                 sp.csr_array(self.matrices[0].shape))) for k in kept]
        merged: Layer
        if len(kept) == 1:
            merged = Fixed(self.name, None, self.in_shapes[kept[0]], self.out_shape, mats[0], self.bias,
                           kind=self.kind)
        else:
            merged = Combine(self.name, [self.in_shapes[k] for k in kept], self.out_shape, mats, self.bias,
                             self.kind)
        merged.inputs, merged.node = tuple(self.inputs[k] for k in kept), self.node
        return merged, kept


class Product(Layer):
    """``y = (B_a a) * (B_b b)``: the elementwise product after broadcasting both inputs to the
    output shape (``B`` are 0/1 copy matrices). Backward: ``da = B_a.T (delta * B_b b)`` and
    ``db = B_b.T (delta * B_a a)``."""

    matrix = bias = None

    def __init__(self, name: str, in_shapes: Sequence[Sequence[int]], out_shape: Sequence[int],
                 broadcasts: Sequence[sp.sparray], kind: str) -> None:
        super().__init__(name, None, in_shapes[0], out_shape, kind)
        self.in_shapes = tuple(tuple(s) for s in in_shapes)
        self.broadcasts = list(broadcasts)

    def _expanded(self, Xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [B @ X for B, X in zip(self.broadcasts, Xs)]

    def run(self, Xs: Sequence[np.ndarray]) -> np.ndarray:
        a, b = self._expanded(Xs)
        Y: np.ndarray = a * b
        return Y

    def back(self, delta: np.ndarray, Xs: Sequence[np.ndarray],
             Y: np.ndarray) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        a, b = self._expanded(Xs)
        (Ba, Bb) = self.broadcasts
        return [Ba.T @ (delta * b), Bb.T @ (delta * a)], {}

    def local(self, Xs: Sequence[np.ndarray], Y: np.ndarray) -> list[sp.sparray | None]:
        a, b = self._expanded(Xs)
        Ba, Bb = self.broadcasts
        return [(sp.diags_array(b[:, 0]) @ Ba).tocsr(), (sp.diags_array(a[:, 0]) @ Bb).tocsr()]


class Contraction(Product):
    """``y = R ((G_a a) * (G_b b))``: a product of two inputs summed over an axis, as a matrix
    product ``a @ b`` of two tensors that depend on the input (attention's ``q @ k^T`` and
    ``p @ v``). ``G`` gather each input into the product space (one entry per output and summed
    index), ``R`` sums that index. Backward: ``d = R.T delta``, ``da = G_a.T (d * G_b b)``,
    ``db = G_b.T (d * G_a a)``. ``broadcasts`` are ``R G_a`` and ``R G_b``: which entries of
    each input reach each output (the structure the Jacobian's colouring reads)."""

    def __init__(self, name: str, in_shapes: Sequence[Sequence[int]], out_shape: Sequence[int],
                 gathers: Sequence[sp.sparray], summed: sp.sparray, kind: str) -> None:
        self.gathers, self.summed = [sp.csr_array(G) for G in gathers], sp.csr_array(summed)
        super().__init__(name, in_shapes, out_shape, [(self.summed @ G).tocsr() for G in self.gathers], kind)

    def _expanded(self, Xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [G @ X for G, X in zip(self.gathers, Xs)]

    def run(self, Xs: Sequence[np.ndarray]) -> np.ndarray:
        a, b = self._expanded(Xs)
        Y: np.ndarray = self.summed @ (a * b)
        return Y

    def back(self, delta: np.ndarray, Xs: Sequence[np.ndarray],
             Y: np.ndarray) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        a, b = self._expanded(Xs)
        d = self.summed.T @ delta
        Ga, Gb = self.gathers
        return [Ga.T @ (d * b), Gb.T @ (d * a)], {}

    def local(self, Xs: Sequence[np.ndarray], Y: np.ndarray) -> list[sp.sparray | None]:
        a, b = self._expanded(Xs)
        Ga, Gb = self.gathers
        return [(self.summed @ sp.diags_array(b[:, 0]) @ Ga).tocsr(), (self.summed @ sp.diags_array(a[:, 0]) @ Gb).tocsr()]


class Grouped(Layer):
    """A node that maps each group of a sample's entries alone (the groups are given by
    :meth:`groups`); its Jacobian is block diagonal over the groups."""

    def groups(self) -> np.ndarray:  # pragma: no cover - abstract
        """``(G, K)``: the flat indices of each group's entries in one sample."""
        raise NotImplementedError


class Softmax(Grouped):
    """``softmax`` (or ``log_softmax``) along sample axis ``axis``.

    ``s = exp(z - max) / sum``; backward ``delta_z = s * (delta - sum(delta * s))`` for softmax,
    ``delta - s * sum(delta)`` for log-softmax. The Jacobian of each group of entries that
    share a softmax is a dense ``K x K`` block (``diag(s) - s s^T``, or ``I - 1 s^T``), so the
    network's Jacobian is dense over the softmax axis.
    """

    matrix = bias = None

    def __init__(self, name: str, module: nn.Module | None, shape: Sequence[int], axis: int,
                 log: bool, kind: str | None) -> None:
        super().__init__(name, module, shape, shape, kind)
        self.axis, self.log = axis, log

    @property
    def lipschitz(self) -> float:
        """A Lipschitz constant in the 2-norm. Softmax: its Jacobian ``diag(s) - s s^T`` is
        positive semidefinite and below ``diag(s)``, so its norm is at most ``max s <= 1``.
        Log-softmax: ``||I - 1 s^T|| <= 1 + ||1|| ||s|| <= 1 + sqrt(K)``."""
        return 1.0 + float(np.sqrt(self.in_shape[self.axis])) if self.log else 1.0

    def groups(self) -> np.ndarray:
        idx = np.moveaxis(np.arange(prod(self.in_shape)).reshape(self.in_shape), self.axis, -1)
        return idx.reshape(-1, idx.shape[-1])

    def _split(self, A: np.ndarray) -> np.ndarray:
        """Column form -> ``(N, *shape)`` with the softmax axis last."""
        return np.moveaxis(A.T.reshape(A.shape[1], *self.in_shape), self.axis + 1, -1)

    def _join(self, B: np.ndarray) -> np.ndarray:
        return np.moveaxis(B, -1, self.axis + 1).reshape(B.shape[0], -1).T

    def forward(self, X: np.ndarray) -> np.ndarray:
        z = self._split(X)
        z = z - z.max(axis=-1, keepdims=True)
        logs = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        return self._join(logs if self.log else np.exp(logs))

    def backward(self, delta: np.ndarray, X: np.ndarray,
                 Y: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        d, y = self._split(delta), self._split(Y)
        if self.log:
            out = d - np.exp(y) * d.sum(axis=-1, keepdims=True)
        else:
            out = y * (d - (d * y).sum(axis=-1, keepdims=True))
        return self._join(out), {}

    def local(self, Xs: Sequence[np.ndarray], Y: np.ndarray) -> list[sp.sparray | None]:
        n = Y.shape[0]
        idx = self.groups()  # (groups, K): the entries of one softmax
        s = Y[idx, 0]
        if self.log:
            s = np.exp(s)
            vals = np.eye(idx.shape[1])[None] - s[:, None, :]
        else:
            vals = s[:, :, None] * (np.eye(idx.shape[1])[None] - s[:, None, :])
        rows = np.broadcast_to(idx[:, :, None], vals.shape)
        cols = np.broadcast_to(idx[:, None, :], vals.shape)
        return [sp.csr_array((vals.ravel().astype(Y.dtype), (rows.ravel(), cols.ravel())), shape=(n, n))]


class Normalise(Grouped):
    """Layer, group and instance normalisation of one sample, each group of ``K`` entries alone:
    ``y = gamma * (x - mean) / sigma + beta`` with ``sigma = sqrt(var + eps)`` (the biased
    variance, as torch), ``gamma`` and ``beta`` the parameters read per entry (``param_index``
    says which of their entries each feature reads; absent: 1 and 0).

    Backward, with ``g = gamma * delta`` and ``xhat = (x - mean) / sigma``:
    ``dx = (g - mean(g) - xhat * mean(g * xhat)) / sigma`` per group;
    ``dgamma = sum delta * xhat``, ``dbeta = sum delta``. The Jacobian of a group is
    ``diag(gamma) (I - 1 1^T / K - xhat xhat^T / K) / sigma``: a diagonal plus rank two (kept
    so in ``backward``; :meth:`local` writes the block out, refused past the memory limit).
    """

    matrix = bias = None

    def __init__(self, name: str, module: nn.Module | None, shape: Sequence[int], index: np.ndarray,
                 eps: float, params: dict[str, np.ndarray], param_names: dict[str, str],
                 param_index: np.ndarray | None, kind: str | None) -> None:
        super().__init__(name, module, shape, shape, kind)
        self.index, self.eps = index, float(eps)
        self.params, self.param_names, self.param_index = params, param_names, param_index

    def groups(self) -> np.ndarray:
        return self.index

    def build(self) -> None:
        """Nothing to read again: ``gamma`` and ``beta`` are read from the parameters at each use."""

    def _per_entry(self, local: str) -> np.ndarray | None:
        """Parameter ``local`` read at every feature, a column ``(features, 1)``; None if absent."""
        if local not in self.param_names or self.param_index is None:
            return None
        column: np.ndarray = self.params[self.param_names[local]].reshape(-1)[self.param_index][:, None]
        return column

    @property
    def lipschitz(self) -> float:
        """``max |gamma| / sqrt(eps)``: ``||I - 1 1^T/K - xhat xhat^T/K|| <= 1`` (a projection, as
        ``xhat`` is orthogonal to ``1`` with ``|xhat|^2 <= K``) and ``sigma >= sqrt(eps)``, reached
        as the variance goes to 0. Certified, and as loose as ``eps`` is small: a normalisation
        has no useful global constant unless its input's variance is bounded below."""
        gamma = self._per_entry("weight")
        top = 1.0 if gamma is None else float(np.abs(gamma).max(initial=0.0))
        return top / float(np.sqrt(self.eps))

    def _stats(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(xhat, sigma)`` per group: ``(G, K, N)`` and ``(G, 1, N)``."""
        Z = X[self.index]
        centred = Z - Z.mean(axis=1, keepdims=True)
        sigma = np.sqrt((centred * centred).mean(axis=1, keepdims=True) + self.eps)
        return centred / sigma, sigma

    def _scatter(self, V: np.ndarray, like: np.ndarray) -> np.ndarray:
        out = np.empty_like(like)
        out[self.index] = V
        return out

    def forward(self, X: np.ndarray) -> np.ndarray:
        xhat, _ = self._stats(X)
        Y = self._scatter(xhat, X)
        gamma, beta = self._per_entry("weight"), self._per_entry("bias")
        if gamma is not None:
            Y *= gamma
        if beta is not None:
            Y += beta
        return Y

    def backward(self, delta: np.ndarray, X: np.ndarray,
                 Y: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        xhat, sigma = self._stats(X)
        gamma = self._per_entry("weight")
        g = (delta if gamma is None else delta * gamma)[self.index]
        dZ = (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True)) / sigma
        grads = {}
        if self.param_index is not None:
            size = self.params[next(iter(self.param_names.values()))].size
            for local, per_feature in (("weight", (delta * self._scatter(xhat, X)).sum(axis=1)),
                                       ("bias", delta.sum(axis=1))):
                if local in self.param_names:
                    grads[local] = np.bincount(self.param_index, weights=per_feature, minlength=size)
        return self._scatter(dZ, X), grads

    def local(self, Xs: Sequence[np.ndarray], Y: np.ndarray) -> list[sp.sparray | None]:
        G, K = self.index.shape
        check_size(f"the Jacobian block of {self.kind} {self.name!r}", 24 * G * K * K,
                   f"{G:,} groups of {K:,} entries: a dense {K:,} x {K:,} block each")
        xhat, sigma = self._stats(Xs[0])
        xhat, sigma = xhat[:, :, 0], sigma[:, :, 0]
        gamma = self._per_entry("weight")
        vals = (np.eye(K)[None] - 1.0 / K - xhat[:, :, None] * xhat[:, None, :] / K) / sigma[:, :, None]
        if gamma is not None:
            vals = vals * gamma[self.index][:, :, :1]
        rows = np.broadcast_to(self.index[:, :, None], vals.shape)
        cols = np.broadcast_to(self.index[:, None, :], vals.shape)
        n = prod(self.in_shape)
        return [sp.csr_array((vals.ravel().astype(Xs[0].dtype), (rows.ravel(), cols.ravel())), shape=(n, n))]
