"""The contract every node of a compiled network keeps: :class:`Layer`.

Activations are in column form, ``(features, N)``, one sample per column
(``X = x.reshape(N, -1).T``); :func:`batch_form` turns them back into ``(N, *shape)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from .reads import ParamReads


class Layer:
    """One node of the network: ``forward(X)`` and ``backward(delta, X, Y)`` on ``(features, N)``
    arrays, and ``local(Xs, Y)``: its per-sample Jacobian with respect to each input.

    A layer reads the outputs of the nodes listed in ``inputs`` (positions in the network's
    list of activations: 0 is the network input, ``i + 1`` the output of ``net.layers[i]``).
    Single-input layers define ``forward``/``backward``; nodes that combine several inputs
    override ``run``/``back``.

    Attributes
    ----------
    name : str
        The module's name in ``model.named_modules()`` for a module, the traced node's name
        for a function or method call.
    node : str
        The traced node's name, unique in the network (``linear_map`` takes it).
    module : torch.nn.Module or None
        The module it was compiled from (None for a function or method call).
    in_shape, out_shape : tuple of int
        Shape of one sample before and after the layer (``in_shapes`` lists every input's).
    linear : bool
        True for an input-independent affine map ``W x + b`` (it has ``.matrix``, ``.bias``).
    """

    linear = False
    param_names: dict[str, str] = {}
    inputs: tuple[int, ...] = (0,)
    bias: np.ndarray | None
    torch_call: Callable[..., Any]  # the op itself, on tensors: set by compile
    param_reads: ParamReads | None = None  # parameters an affine op reads as its constants

    if TYPE_CHECKING:  # what every node has, or a single-input layer defines (run/back call them)
        @property
        def matrix(self) -> Any: ...  # sparse (a linear node), a tuple (max pooling) or None

        def forward(self, X: np.ndarray) -> np.ndarray: ...

        def backward(self, delta: np.ndarray, X: np.ndarray,
                     Y: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...

    def __init__(self, name: str, module: Any, in_shape: Sequence[int], out_shape: Sequence[int],
                 kind: str | None = None) -> None:
        self.name, self.module, self.node = name, module, name
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.in_shapes: tuple[tuple[int, ...], ...] = (self.in_shape,)
        self._kind = kind

    @property
    def kind(self) -> str:
        """What the node computes, for display: the module's class name (``'Conv2d'``) or the
        function's name (``'torch.cat'``)."""
        return self._kind or type(self.module).__name__

    def run(self, Xs: Sequence[np.ndarray]) -> np.ndarray:
        """The output from the list of inputs (one array per entry of ``inputs``)."""
        return self.forward(Xs[0])

    def back(self, delta: np.ndarray, Xs: Sequence[np.ndarray],
             Y: np.ndarray) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        """``([dL/dX for each input], {local parameter name: gradient})``."""
        dX, grads = self.backward(delta, Xs[0], Y)
        return [dX], grads

    def rebuilt_from(self, other: Layer) -> None:  # pragma: no cover - the affine nodes define it
        """Take ``other``'s matrix and bias (the same op built with new parameter values)."""
        raise NotImplementedError

    def clear(self) -> None:
        """Forget what the last forward kept (max pooling's argmax)."""

    def release(self) -> None:
        """Drop the node's built matrix, if it keeps one (it is built again on next use)."""

    def local(self, Xs: Sequence[np.ndarray], Y: np.ndarray) -> list[sp.sparray | None]:
        """Per-sample Jacobians ``dY/dX_i`` (sparse, or None for the identity), at the last
        forward of one sample."""
        raise NotImplementedError  # pragma: no cover - every layer defines it

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}: {self.kind}, {self.in_shape} -> {self.out_shape})"


def batch_form(A: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Column form ``(features, N)`` -> ``(N, *shape)``."""
    return A.T.reshape(A.shape[1], *shape)


def channel_sums(delta: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``dL/db`` of a per-channel bias: ``delta`` summed over the batch and positions."""
    d = batch_form(delta, shape)
    # numpy's stubs: .sum is Any
    return cast(np.ndarray, d.reshape(d.shape[0], d.shape[1], -1).sum(axis=(0, 2)))
