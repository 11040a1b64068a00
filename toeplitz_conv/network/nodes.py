"""The nodes that make a network a graph: they combine several inputs, or act across a sample.

- :class:`Combine`: ``y = sum_i W_i x_i + b``, a linear node with several inputs: a residual
  sum ``x + F(x)`` (``W_i`` identities, or broadcasts), a difference, ``torch.cat`` (``W_i``
  place each input in its rows: ``.matrix`` is the stacked ``[W_1 | W_2]``).
- :class:`Product`: ``y = (B_a a) * (B_b b)``, the elementwise product of two inputs after
  broadcasting (gating, squeeze-and-excitation); bilinear, so its Jacobian has two diagonal
  blocks, one per input.
- :class:`Softmax`: ``softmax`` / ``log_softmax`` along one axis of the sample: not
  elementwise, its Jacobian is a dense block per softmax group.

Each keeps the single-input layers' contract (:class:`~.layers.Layer`): column form
``(features, N)``, ``run``/``back`` beside each other, ``local`` for the Jacobian.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .layers import Layer

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


class Softmax(Layer):
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
        idx = np.moveaxis(np.arange(n).reshape(self.in_shape), self.axis, -1)
        idx = idx.reshape(-1, idx.shape[-1])  # (groups, K): the entries of one softmax
        s = Y[idx, 0]
        if self.log:
            s = np.exp(s)
            vals = np.eye(idx.shape[1])[None] - s[:, None, :]
        else:
            vals = s[:, :, None] * (np.eye(idx.shape[1])[None] - s[:, None, :])
        rows = np.broadcast_to(idx[:, :, None], vals.shape)
        cols = np.broadcast_to(idx[:, None, :], vals.shape)
        return [sp.csr_array((vals.ravel().astype(Y.dtype), (rows.ravel(), cols.ravel())), shape=(n, n))]
