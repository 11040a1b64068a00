"""The layers of a compiled network: affine maps ``z = W x + b`` and elementwise functions.

Every layer works on activations in column form, ``(features, N)``, one sample per column
(``X = x.reshape(N, -1).T``), and has its backward right beside its forward:

- :class:`Layer` (:mod:`.base`): the contract every node keeps.
- :class:`Affine` and its subclasses (:mod:`.affine`): ``Z = W @ X + b`` with ``W`` a
  ``scipy.sparse`` matrix (``.matrix``), built from the parameters on first use and kept until
  ``release()``; backward ``dX = W.T @ delta`` and the parameter gradients.
- :class:`MaxPool`: a 0/1 selection matrix that depends on the input, rebuilt at every forward.
- :class:`Activation`: ``a = sigma(z)``, backward ``delta * sigma'(z)``; the functions are
  the rows of one table, :data:`ACTIVATIONS`. :class:`PReLU` is one whose slopes are
  parameters (with their gradient).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ..pool import max_pool_indices, selection_matrix
from ..pool_geometry import PoolGeometry
from .activations import Elementwise, prelu
from .affine import Affine, BatchNorm, Conv, ConvTranspose, Fixed, Linear, Reshape
from .base import Layer, batch_form

__all__ = ["Layer", "Affine", "Conv", "ConvTranspose", "Linear", "BatchNorm", "Fixed", "Reshape",
           "MaxPool", "Selection", "Activation", "PReLU", "max_windows"]


# --------------------------------------------------------------------------- max pooling


def max_windows(src: npt.ArrayLike, p_in: int) -> int:
    """The most windows any input entry lies in, from a window table (``p_in``: padding)."""
    src = np.asarray(src)
    return int(np.bincount(src[src < p_in].ravel(), minlength=1).max())


class MaxPool(Layer):
    """Max pooling: per sample a 0/1 selection matrix ``S`` (one 1 per row, at the argmax).

    Forward stacks the selection matrices of the batch block-diagonally; backward is
    ``S.T @ delta`` (the gradient scattered back to the argmax). ``.matrix`` is the tuple of
    per-sample selection matrices of the last forward. The argmax comes from the pooling
    geometry (``nn.MaxPoolNd``), or from ``indices``: a function of the input ``(N, C, P_in)``
    giving the flat argmax ``(N, C, P_out)`` (adaptive and functional max pooling, read off
    torch's ``return_indices``).
    """

    bias = None

    def __init__(self, name: str, module: Any, in_shape: Sequence[int], dtype: npt.DTypeLike,
                 kind: str | None = None, indices: Callable[[np.ndarray], np.ndarray] | None = None,
                 out_shape: Sequence[int] | None = None, windows: int | None = None) -> None:
        if indices is None:
            m = module
            self.geometry = geometry = PoolGeometry(in_shape, m.kernel_size, m.stride, m.padding, m.dilation,
                                                    m.ceil_mode, "MaxPool")
            src, out_shape = geometry.table(), geometry.out_shape
            windows = max_windows(src, prod(in_shape[1:]))

            def indices(Xb: np.ndarray) -> np.ndarray:
                return max_pool_indices(Xb, geometry, src)
        # out_shape: the geometry's, else the caller's (given with indices)
        super().__init__(name, module, in_shape, cast("Sequence[int]", out_shape), kind)
        self.indices_of, self.dtype = indices, dtype
        self.windows = windows  # the most windows one input entry lies in (None: unknown)
        self.idx: np.ndarray | None = None

    @property
    def lipschitz(self) -> float | None:
        """``sqrt(windows)``: a change ``dx`` moves each output by at most ``|dx|`` of its window,
        and each input entry lies in at most ``windows`` windows (1 when they do not overlap)."""
        return None if self.windows is None else float(np.sqrt(self.windows))

    def forward(self, X: np.ndarray) -> np.ndarray:
        n, c, p_in = X.shape[1], self.in_shape[0], prod(self.in_shape[1:])
        self.idx = self.indices_of(X.T.reshape(n, c, p_in))  # (N, C, P_out)
        self._S = selection_matrix(self.idx.reshape(n * c, -1), p_in, X.dtype)  # N * C blocks
        return cast(np.ndarray, (self._S @ X.T.reshape(-1)).reshape(n, -1).T)  # scipy is untyped

    def backward(self, delta: np.ndarray, X: np.ndarray,
                 Y: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = delta.shape[1]
        return (self._S.T @ delta.T.reshape(-1)).reshape(n, -1).T, {}

    def local(self, Xs: Sequence[np.ndarray], Y: np.ndarray) -> list[sp.sparray | None]:
        return [self._S]

    def clear(self) -> None:
        self.idx = self._S = None

    @property
    def matrix(self) -> tuple[sp.sparray, ...] | None:
        if self.idx is None:
            return None
        p_in = prod(self.in_shape[1:])
        return tuple(selection_matrix(i, p_in, self.dtype) for i in self.idx)


class Selection(MaxPool):
    """The largest (or smallest) entry of each group along some axes of the sample:
    ``torch.amax/amin(x, dim)``, ``torch.max/min(x, dim).values``. Per sample a selection
    matrix: one 1 per row at the extreme; tied extremes share the row equally (``amax``'s
    gradient, ``split_ties``) or the first of them takes it (``max(dim)``'s index). Each input
    entry is in one group: Lipschitz constant 1."""

    def __init__(self, name: str, module: Any, in_shape: Sequence[int], out_shape: Sequence[int],
                 dtype: npt.DTypeLike, axes: Sequence[int], largest: bool, split_ties: bool,
                 kind: str | None = None) -> None:
        super().__init__(name, module, in_shape, dtype, kind=kind, indices=lambda X: X, out_shape=out_shape,
                         windows=1)
        moved = np.moveaxis(np.arange(prod(in_shape)).reshape(in_shape), list(axes), list(range(-len(axes), 0)))
        self.groups = moved.reshape(prod(out_shape), -1)  # (outputs, K): the entries each output reads
        self.largest, self.split_ties = largest, split_ties

    def forward(self, X: np.ndarray) -> np.ndarray:
        (G, K), n, f = self.groups.shape, X.shape[1], X.shape[0]
        V = X[self.groups]  # (G, K, N)
        best = V.max(axis=1, keepdims=True) if self.largest else V.min(axis=1, keepdims=True)
        if self.split_ties:
            hit = (V == best)
            w = hit / hit.sum(axis=1, keepdims=True)
        else:
            first = (V.argmax if self.largest else V.argmin)(axis=1)
            w = (np.arange(K)[None, :, None] == first[:, None, :]).astype(X.dtype)
        g, k, s = np.nonzero(w)  # per (output, tap, sample) with a weight
        self._S = sp.csr_array((w[g, k, s].astype(X.dtype), (s * G + g, s * f + self.groups[g, k])),
                               shape=(n * G, n * f))
        self.idx = self.groups  # marks a forward done
        return cast(np.ndarray, (self._S @ X.T.reshape(-1)).reshape(n, -1).T)  # scipy is untyped

    @property
    def matrix(self) -> tuple[sp.sparray, ...] | None:
        if self.idx is None:
            return None
        G, f = self.groups.shape[0], prod(self.in_shape)
        S = sp.csr_array(self._S)
        return tuple(S[i * G:(i + 1) * G, i * f:(i + 1) * f] for i in range(S.shape[0] // G))


# --------------------------------------------------------------------------- activations


class Activation(Layer):
    """Elementwise ``a = sigma(z)``; backward ``delta * sigma'(z)``; its Jacobian ``diag(sigma'(z))``."""

    matrix = bias = None

    def __init__(self, name: str, module: Any, shape: Sequence[int], function: Elementwise,
                 kind: str | None = None) -> None:
        super().__init__(name, module, shape, shape, kind)
        self.function = function

    def forward(self, X: np.ndarray) -> np.ndarray:
        return self.function.forward(X)

    def backward(self, delta: np.ndarray, X: np.ndarray,
                 Y: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.function.backward(delta, X, Y), {}

    def local(self, Xs: Sequence[np.ndarray], Y: np.ndarray) -> list[sp.sparray | None]:
        return [sp.diags_array(self.function.backward(np.ones_like(Y), Xs[0], Y)[:, 0])]  # DIA: a diagonal


class PReLU(Activation):
    """``a = z`` where ``z > 0``, else ``w_c z``: one learned slope per channel (or one for
    all), read from the network's parameters at every use; ``dL/dw_c`` sums ``delta * z`` over
    the entries of channel ``c`` where ``z <= 0`` (torch's rule at 0)."""

    def __init__(self, name: str, module: Any, shape: Sequence[int], params: dict[str, np.ndarray],
                 param_names: dict[str, str], kind: str | None = None) -> None:
        self.params, self.param_names = params, param_names
        super().__init__(name, module, shape, prelu(np.zeros((1, 1))), kind)
        self.build()

    def _slopes(self) -> np.ndarray:
        """The slope of each feature, as a column ``(features, 1)``."""
        w = self.params[self.param_names["weight"]].reshape(-1)
        per = prod(self.in_shape[1:]) if len(self.in_shape) > 1 else 1
        column = np.repeat(w, per) if w.size > 1 else np.full(prod(self.in_shape), w[0])
        return column[:, None]

    def _function(self) -> Elementwise:
        return prelu(self._slopes())

    def build(self) -> None:
        """Read the slopes again (after :meth:`Network.update`)."""
        self.function = self._function()

    def backward(self, delta: np.ndarray, X: np.ndarray,
                 Y: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        dX, _ = super().backward(delta, X, Y)
        g = batch_form(np.where(X > 0, 0.0, delta * X), self.in_shape)
        w = self.params[self.param_names["weight"]]
        if w.size == 1:
            return dX, {"weight": g.sum().reshape(w.shape)}
        channels = g.reshape(g.shape[0], self.in_shape[0], -1).sum(axis=(0, 2))
        return dX, {"weight": channels.reshape(w.shape)}
