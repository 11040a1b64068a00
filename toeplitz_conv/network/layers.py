"""The layers of a compiled network: affine maps ``z = W x + b`` and elementwise functions.

Every layer works on activations in column form, ``(features, N)``, one sample per column
(``X = x.reshape(N, -1).T``), and has its backward right beside its forward:

- :class:`Affine` and its subclasses: ``Z = W @ X + b`` with ``W`` a ``scipy.sparse`` matrix
  (``.matrix``) built from the parameters; backward ``dX = W.T @ delta`` and the parameter
  gradients read from ``delta`` and the layer's input through ``W``'s structure.
- :class:`MaxPool`: a 0/1 selection matrix that depends on the input, rebuilt at every forward.
- :class:`Activation`: ``a = sigma(z)``, backward ``delta * sigma'(z)``; the functions are
  the rows of one table, :data:`ACTIVATIONS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ..conv import conv_matrix, conv_transpose_matrix, conv_transpose_weight_grad, conv_weight_grad
from ..pool_geometry import PoolGeometry
from ..pool import max_pool_indices, selection_matrix
from .activations import Elementwise


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

    def clear(self) -> None:
        """Forget what the last forward kept (max pooling's argmax)."""

    def local(self, Xs: Sequence[np.ndarray], Y: np.ndarray) -> list[sp.sparray | None]:
        """Per-sample Jacobians ``dY/dX_i`` (sparse, or None for the identity), at the last
        forward of one sample."""
        raise NotImplementedError  # pragma: no cover - every layer defines it

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}: {self.kind}, {self.in_shape} -> {self.out_shape})"


def _batch(A: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Column form ``(features, N)`` -> ``(N, *shape)``."""
    return A.T.reshape(A.shape[1], *shape)


def _channel_sums(delta: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``dL/db`` of a per-channel bias: ``delta`` summed over the batch and positions."""
    d = _batch(delta, shape)
    # numpy's stubs: .sum is Any
    return cast(np.ndarray, d.reshape(d.shape[0], d.shape[1], -1).sum(axis=(0, 2)))


# --------------------------------------------------------------------------- affine maps


class Affine(Layer):
    """``Z = W @ X + b[:, None]`` with a fixed sparse ``W`` (``.matrix``) and bias ``.bias``.

    Subclasses build ``W`` and ``b`` from the parameters (``build``) and give the parameter
    gradients from ``delta`` and the layer input (``param_grads``).
    """

    linear = True
    matrix: sp.sparray

    def __init__(self, name: str, module: Any, in_shape: Sequence[int], out_shape: Sequence[int],
                 params: dict[str, np.ndarray], param_names: dict[str, str] | None = None,
                 kind: str | None = None) -> None:
        super().__init__(name, module, in_shape, out_shape, kind)
        self.params = params  # the network's dict: full name -> ndarray
        self.param_names = param_names or {}  # local name ('weight') -> full name ('0.weight')
        self.build()

    def p(self, local: str) -> np.ndarray | None:
        return self.params[self.param_names[local]] if local in self.param_names else None

    def build(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, X: np.ndarray) -> np.ndarray:
        Z: np.ndarray = self.matrix @ X
        if self.bias is not None:
            Z += self.bias[:, None]
        return Z

    def backward(self, delta: np.ndarray, X: np.ndarray,
                 Y: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``dX = W.T @ delta`` and the parameter gradients."""
        return self.matrix.T @ delta, self.param_grads(delta, X)

    def local(self, Xs: Sequence[np.ndarray], Y: np.ndarray) -> list[sp.sparray | None]:
        return [self.matrix]

    def param_grads(self, delta: np.ndarray, X: np.ndarray) -> dict[str, np.ndarray]:
        return {}


class Conv(Affine):
    """``nn.ConvNd``: ``W`` is :func:`~toeplitz_conv.conv_matrix`, ``dW`` its weight gradient."""

    _matrix: Callable[..., sp.sparray] = staticmethod(conv_matrix)
    _weight_grad: Callable[..., np.ndarray] = staticmethod(conv_weight_grad)

    def _options(self) -> dict[str, Any]:
        m = self.module
        return dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups,
                    padding_mode=m.padding_mode)

    def build(self) -> None:
        self.kw = self._options()
        self.matrix = self._matrix(self.p("weight"), self.in_shape, **self.kw)
        bias = self.p("bias")
        self.bias = None if bias is None else np.repeat(bias, prod(self.out_shape[1:]))

    def param_grads(self, delta: np.ndarray, X: np.ndarray) -> dict[str, np.ndarray]:
        weight = cast(np.ndarray, self.p("weight"))  # a convolution has one
        grads = {"weight": self._weight_grad(_batch(X, self.in_shape), _batch(delta, self.out_shape),
                                              weight.shape, **self.kw)}
        if "bias" in self.param_names:
            grads["bias"] = _channel_sums(delta, self.out_shape)
        return grads


class ConvTranspose(Conv):
    """``nn.ConvTransposeNd``: ``W`` is :func:`~toeplitz_conv.conv_transpose_matrix`."""

    _matrix = staticmethod(conv_transpose_matrix)
    _weight_grad = staticmethod(conv_transpose_weight_grad)

    def _options(self) -> dict[str, Any]:
        m = self.module
        return dict(stride=m.stride, padding=m.padding, output_padding=m.output_padding,
                    dilation=m.dilation, groups=m.groups)


class Linear(Affine):
    """``nn.Linear`` acts on the last axis: ``W = kron(I, weight)`` over the leading axes."""

    def build(self) -> None:
        w, rest = cast(np.ndarray, self.p("weight")), prod(self.in_shape[:-1])  # it has one
        self.matrix = sp.csr_array(w) if rest == 1 else sp.kron(sp.eye_array(rest, dtype=w.dtype), w, format="csr")
        self.bias = (None if self.p("bias") is None
                     else np.tile(cast(np.ndarray, self.p("bias")), rest))

    def param_grads(self, delta: np.ndarray, X: np.ndarray) -> dict[str, np.ndarray]:
        n_in, n_out = self.in_shape[-1], self.out_shape[-1]
        A = _batch(X, self.in_shape).reshape(-1, n_in)
        D = _batch(delta, self.out_shape).reshape(-1, n_out)
        grads = {"weight": D.T @ A}
        if "bias" in self.param_names:
            grads["bias"] = D.sum(axis=0)
        return grads


class BatchNorm(Affine):
    """Eval-mode batch norm: ``W = diag(gamma / sqrt(var + eps))`` per channel, plus a bias."""

    def __init__(self, name: str, module: Any, shape: Sequence[int], params: dict[str, np.ndarray],
                 param_names: dict[str, str], dtype: npt.DTypeLike) -> None:
        self.dtype = dtype
        super().__init__(name, module, shape, shape, params, param_names)

    def build(self) -> None:
        m = self.module
        mean = m.running_mean.detach().cpu().numpy().astype(self.dtype)
        var = m.running_var.detach().cpu().numpy().astype(self.dtype)
        self.invstd = 1.0 / np.sqrt(var + m.eps)
        self.mean = mean
        gamma = cast(np.ndarray,
                     self.p("weight") if self.p("weight") is not None else np.ones_like(mean))
        beta = cast(np.ndarray,
                    self.p("bias") if self.p("bias") is not None else np.zeros_like(mean))
        scale = gamma * self.invstd
        positions = prod(self.in_shape[1:])
        self.matrix = sp.diags_array(np.repeat(scale, positions), format="csr")
        self.bias = np.repeat(beta - mean * scale, positions)

    def param_grads(self, delta: np.ndarray, X: np.ndarray) -> dict[str, np.ndarray]:
        c = self.in_shape[0]
        d = _batch(delta, self.in_shape).reshape(delta.shape[1], c, -1)
        x = _batch(X, self.in_shape).reshape(X.shape[1], c, -1)
        xhat = (x - self.mean[None, :, None]) * self.invstd[None, :, None]
        grads = {}
        if "weight" in self.param_names:
            grads["weight"] = (d * xhat).sum(axis=(0, 2))
        if "bias" in self.param_names:
            grads["bias"] = d.sum(axis=(0, 2))
        return grads


class Fixed(Affine):
    """A parameter-free affine map: pooling, padding, upsampling, a permutation, a sum over axes."""

    def __init__(self, name: str, module: Any, in_shape: Sequence[int], out_shape: Sequence[int],
                 matrix: sp.sparray, bias: np.ndarray | None = None,
                 kind: str | None = None) -> None:
        self._fixed = matrix, bias
        super().__init__(name, module, in_shape, out_shape, {}, {}, kind)

    def build(self) -> None:
        self.matrix, self.bias = self._fixed


class Reshape(Fixed):
    """Flatten, Identity, eval-mode Dropout: the identity on the flattened sample."""

    def __init__(self, name: str, module: Any, in_shape: Sequence[int], out_shape: Sequence[int],
                 dtype: npt.DTypeLike, kind: str | None = None) -> None:
        super().__init__(name, module, in_shape, out_shape,
                         sp.eye_array(prod(in_shape), dtype=dtype, format="csr"), kind=kind)

    def forward(self, X: np.ndarray) -> np.ndarray:
        return X

    def backward(self, delta: np.ndarray, X: np.ndarray,
                 Y: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return delta, {}

    def local(self, Xs: Sequence[np.ndarray], Y: np.ndarray) -> list[sp.sparray | None]:
        return [None]


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
