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

from math import prod
from typing import Callable, NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.special import erf, expit

from ..conv import conv_matrix, conv_transpose_matrix, conv_transpose_weight_grad, conv_weight_grad
from ..geometry import PoolGeometry
from ..pool import max_pool_indices, selection_matrix


class Layer:
    """One layer: ``forward(X)`` and ``backward(delta, X, Y)`` on ``(features, N)`` arrays.

    Attributes
    ----------
    name : str
        The module's name in ``model.named_modules()`` (``''`` for the model itself).
    module : torch.nn.Module
        The module it was compiled from.
    in_shape, out_shape : tuple of int
        Shape of one sample before and after the layer.
    linear : bool
        True for an input-independent affine map ``W x + b`` (it has ``.matrix``, ``.bias``).
    """

    linear = False
    param_names: dict = {}

    def __init__(self, name, module, in_shape, out_shape):
        self.name, self.module = name, module
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)

    @property
    def kind(self) -> str:
        """The class name of the module it was compiled from, e.g. ``'Conv2d'`` (for display)."""
        return type(self.module).__name__

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}: {self.kind}, {self.in_shape} -> {self.out_shape})"


def _batch(A, shape):
    """Column form ``(features, N)`` -> ``(N, *shape)``."""
    return A.T.reshape(A.shape[1], *shape)


def _channel_sums(delta, shape):
    """``dL/db`` of a per-channel bias: ``delta`` summed over the batch and positions."""
    d = _batch(delta, shape)
    return d.reshape(d.shape[0], d.shape[1], -1).sum(axis=(0, 2))


# --------------------------------------------------------------------------- affine maps


class Affine(Layer):
    """``Z = W @ X + b[:, None]`` with a fixed sparse ``W`` (``.matrix``) and bias ``.bias``.

    Subclasses build ``W`` and ``b`` from the parameters (``build``) and give the parameter
    gradients from ``delta`` and the layer input (``param_grads``).
    """

    linear = True

    def __init__(self, name, module, in_shape, out_shape, params, param_names=None):
        super().__init__(name, module, in_shape, out_shape)
        self.params = params  # the network's dict: full name -> ndarray
        self.param_names = param_names or {}  # local name ('weight') -> full name ('0.weight')
        self.build()

    def p(self, local):
        return self.params[self.param_names[local]] if local in self.param_names else None

    def build(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, X):
        Z = self.matrix @ X
        if self.bias is not None:
            Z += self.bias[:, None]
        return Z

    def backward(self, delta, X, Y):
        """``dX = W.T @ delta`` and the parameter gradients."""
        return self.matrix.T @ delta, self.param_grads(delta, X)

    def param_grads(self, delta, X):
        return {}


class Conv(Affine):
    """``nn.ConvNd``: ``W`` is :func:`~toeplitz_conv.conv_matrix`, ``dW`` its weight gradient."""

    _matrix = staticmethod(conv_matrix)
    _weight_grad = staticmethod(conv_weight_grad)

    def _options(self):
        m = self.module
        return dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups,
                    padding_mode=m.padding_mode)

    def build(self):
        self.kw = self._options()
        self.matrix = self._matrix(self.p("weight"), self.in_shape, **self.kw)
        bias = self.p("bias")
        self.bias = None if bias is None else np.repeat(bias, prod(self.out_shape[1:]))

    def param_grads(self, delta, X):
        grads = {"weight": self._weight_grad(_batch(X, self.in_shape), _batch(delta, self.out_shape),
                                              self.p("weight").shape, **self.kw)}
        if "bias" in self.param_names:
            grads["bias"] = _channel_sums(delta, self.out_shape)
        return grads


class ConvTranspose(Conv):
    """``nn.ConvTransposeNd``: ``W`` is :func:`~toeplitz_conv.conv_transpose_matrix`."""

    _matrix = staticmethod(conv_transpose_matrix)
    _weight_grad = staticmethod(conv_transpose_weight_grad)

    def _options(self):
        m = self.module
        return dict(stride=m.stride, padding=m.padding, output_padding=m.output_padding,
                    dilation=m.dilation, groups=m.groups)


class Linear(Affine):
    """``nn.Linear`` acts on the last axis: ``W = kron(I, weight)`` over the leading axes."""

    def build(self):
        w, rest = self.p("weight"), prod(self.in_shape[:-1])
        self.matrix = sp.csr_array(w) if rest == 1 else sp.kron(sp.eye_array(rest, dtype=w.dtype), w, format="csr")
        self.bias = None if self.p("bias") is None else np.tile(self.p("bias"), rest)

    def param_grads(self, delta, X):
        n_in, n_out = self.in_shape[-1], self.out_shape[-1]
        A = _batch(X, self.in_shape).reshape(-1, n_in)
        D = _batch(delta, self.out_shape).reshape(-1, n_out)
        grads = {"weight": D.T @ A}
        if "bias" in self.param_names:
            grads["bias"] = D.sum(axis=0)
        return grads


class BatchNorm(Affine):
    """Eval-mode batch norm: ``W = diag(gamma / sqrt(var + eps))`` per channel, plus a bias."""

    def __init__(self, name, module, shape, params, param_names, dtype):
        self.dtype = dtype
        super().__init__(name, module, shape, shape, params, param_names)

    def build(self):
        m = self.module
        mean = m.running_mean.detach().cpu().numpy().astype(self.dtype)
        var = m.running_var.detach().cpu().numpy().astype(self.dtype)
        self.invstd = 1.0 / np.sqrt(var + m.eps)
        self.mean = mean
        gamma = self.p("weight") if self.p("weight") is not None else np.ones_like(mean)
        beta = self.p("bias") if self.p("bias") is not None else np.zeros_like(mean)
        scale = gamma * self.invstd
        positions = prod(self.in_shape[1:])
        self.matrix = sp.diags_array(np.repeat(scale, positions), format="csr")
        self.bias = np.repeat(beta - mean * scale, positions)

    def param_grads(self, delta, X):
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
    """A parameter-free linear map: average pooling, flatten, identity, eval dropout."""

    def __init__(self, name, module, in_shape, out_shape, matrix):
        self._fixed = matrix
        super().__init__(name, module, in_shape, out_shape, {}, {})

    def build(self):
        self.matrix, self.bias = self._fixed, None


class Reshape(Fixed):
    """Flatten, Identity, eval-mode Dropout: the identity on the flattened sample."""

    def __init__(self, name, module, in_shape, out_shape, dtype):
        super().__init__(name, module, in_shape, out_shape,
                         sp.eye_array(prod(in_shape), dtype=dtype, format="csr"))

    def forward(self, X):
        return X

    def backward(self, delta, X, Y):
        return delta, {}


# --------------------------------------------------------------------------- max pooling


class MaxPool(Layer):
    """Max pooling: per sample a 0/1 selection matrix ``S`` (one 1 per row, at the argmax).

    Forward stacks the selection matrices of the batch block-diagonally; backward is
    ``S.T @ delta`` (the gradient scattered back to the argmax). ``.matrix`` is the tuple of
    per-sample selection matrices of the last forward.
    """

    bias = None

    def __init__(self, name, module, in_shape, dtype):
        m = module
        self.geometry = PoolGeometry(in_shape, m.kernel_size, m.stride, m.padding, m.dilation,
                                     m.ceil_mode, "MaxPool")
        super().__init__(name, module, in_shape, self.geometry.out_shape)
        self.src, self.dtype = self.geometry.table(), dtype
        self.idx = None

    def forward(self, X):
        n, c, p_in = X.shape[1], self.geometry.channels, prod(self.geometry.in_spatial)
        self.idx = max_pool_indices(X.T.reshape(n, c, p_in), self.geometry, self.src)  # (N, C, P_out)
        self._S = selection_matrix(self.idx.reshape(n * c, -1), p_in, X.dtype)  # N * C blocks
        return (self._S @ X.T.reshape(-1)).reshape(n, -1).T

    def backward(self, delta, X, Y):
        n = delta.shape[1]
        return (self._S.T @ delta.T.reshape(-1)).reshape(n, -1).T, {}

    @property
    def matrix(self):
        if self.idx is None:
            return None
        p_in = prod(self.geometry.in_spatial)
        return tuple(selection_matrix(i, p_in, self.dtype) for i in self.idx)


# --------------------------------------------------------------------------- activations


class Elementwise(NamedTuple):
    """An activation ``a = sigma(z)``: ``forward(Z)`` and ``backward(delta, Z, A)`` =
    ``delta * sigma'(Z)`` (``A = sigma(Z)``, kept from the forward), torch's formulas."""

    forward: Callable
    backward: Callable


_BETA, _KAPPA = np.sqrt(2 / np.pi), 0.044715


def _gelu_tanh_grad(delta, X, Y):
    t = np.tanh(_BETA * (X + _KAPPA * X ** 3))
    return delta * (0.5 * (1 + t) + 0.5 * X * (1 - t * t) * _BETA * (1 + 3 * _KAPPA * X * X))


def _gelu_grad(delta, X, Y):
    cdf = 0.5 * (1 + erf(X * np.sqrt(0.5)))
    pdf = np.exp(-0.5 * X * X) / np.sqrt(2 * np.pi)
    return delta * (cdf + X * pdf)


def leaky_relu(slope: float) -> Elementwise:
    return Elementwise(lambda X: np.where(X > 0, X, X * slope),
                       lambda delta, X, Y: np.where(X > 0, delta, delta * slope))


#: The activations with fixed formulas; LeakyReLU's depends on its slope (:func:`leaky_relu`).
ACTIVATIONS = {
    "relu": Elementwise(lambda X: np.maximum(X, 0), lambda delta, X, Y: delta * (Y > 0)),
    "sigmoid": Elementwise(expit, lambda delta, X, Y: delta * (1 - Y) * Y),
    "tanh": Elementwise(np.tanh, lambda delta, X, Y: delta * (1 - Y * Y)),
    "gelu": Elementwise(lambda X: 0.5 * X * (1 + erf(X * np.sqrt(0.5))), _gelu_grad),
    "gelu_tanh": Elementwise(lambda X: 0.5 * X * (1 + np.tanh(_BETA * (X + _KAPPA * X ** 3))),
                             _gelu_tanh_grad),
}


class Activation(Layer):
    """Elementwise ``a = sigma(z)``; backward ``delta * sigma'(z)``."""

    matrix = bias = None

    def __init__(self, name, module, shape, function: Elementwise):
        super().__init__(name, module, shape, shape)
        self.function = function

    def forward(self, X):
        return self.function.forward(X)

    def backward(self, delta, X, Y):
        return self.function.backward(delta, X, Y), {}
