"""A PyTorch model compiled into sparse matrices: a CNN is an MLP with structured weights.

``compile(module, input_shape)`` reads a model once and returns a :class:`Network`: an
ordered list of layers, each either an affine map ``z = W x + b`` with ``W`` a
``scipy.sparse`` matrix (convolution, transposed convolution, linear, average pooling,
eval-mode batch norm, flatten) or an elementwise function ``a = sigma(z)`` (ReLU, ...).
Max pooling is a selection matrix that depends on the input, rebuilt at every forward.

Forward and backward are the equations of a multilayer perceptron, one sample per column
of ``X`` (``X = x.reshape(N, -1).T``)::

    forward:   z^l = W^l a^(l-1) + b^l,      a^l = sigma(z^l)
    backward:  delta^l = (W^(l+1))^T delta^(l+1) * sigma'(z^l)
               dL/db^l = sum over samples (and positions) of delta^l
               dL/dW^l = delta^l (a^(l-1))^T, read through W's structure: for a
               convolution only the entries of the kernel exist, so the sum runs over the
               (row, col, tap) triples (:func:`toeplitz_conv.conv_weight_grad`).

Everything is float64 numpy with float64 models (float32 stays float32); torch is needed
only to read the module (and by :meth:`Network.to_mlp`).
"""

from __future__ import annotations

import copy
from math import prod

import numpy as np
import scipy.sparse as sp
from scipy.special import erf, expit

from . import _validate as v
from .conv import conv_matrix, conv_transpose_matrix, conv_transpose_weight_grad, conv_weight_grad
from .geometry import conv_geometry, conv_transpose_output_size
from .pool import PoolGeometry, adaptive_avg_pool_matrix, avg_pool_matrix, max_pool_indices, selection_matrix

SUPPORTED = (
    "Sequential", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
    "ConvTranspose3d", "Linear", "Flatten", "AvgPool1d", "AvgPool2d", "AvgPool3d", "MaxPool1d",
    "MaxPool2d", "MaxPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Dropout", "Dropout1d", "Dropout2d",
    "Dropout3d", "Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU",
)


# =========================================================================== layers


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
        return type(self.module).__name__

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}: {self.kind}, {self.in_shape} -> {self.out_shape})"


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

    def _batch(self, A, shape):
        """Column-form ``(features, N)`` -> ``(N, *shape)``."""
        return A.T.reshape(A.shape[1], *shape)


class Conv(Affine):
    def build(self):
        m = self.module
        self.kw = dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups,
                       padding_mode=m.padding_mode)
        self.matrix = conv_matrix(self.p("weight"), self.in_shape, **self.kw)
        self.bias = None if self.p("bias") is None else np.repeat(self.p("bias"), prod(self.out_shape[1:]))

    def param_grads(self, delta, X):
        d = self._batch(delta, self.out_shape)
        g = {"weight": conv_weight_grad(self._batch(X, self.in_shape), d, self.p("weight").shape, **self.kw)}
        if "bias" in self.param_names:
            g["bias"] = d.reshape(d.shape[0], d.shape[1], -1).sum(axis=(0, 2))
        return g


class ConvTranspose(Conv):
    def build(self):
        m = self.module
        self.kw = dict(stride=m.stride, padding=m.padding, output_padding=m.output_padding,
                       dilation=m.dilation, groups=m.groups)
        self.matrix = conv_transpose_matrix(self.p("weight"), self.in_shape, **self.kw)
        self.bias = None if self.p("bias") is None else np.repeat(self.p("bias"), prod(self.out_shape[1:]))

    def param_grads(self, delta, X):
        d = self._batch(delta, self.out_shape)
        g = {"weight": conv_transpose_weight_grad(self._batch(X, self.in_shape), d,
                                                  self.p("weight").shape, **self.kw)}
        if "bias" in self.param_names:
            g["bias"] = d.reshape(d.shape[0], d.shape[1], -1).sum(axis=(0, 2))
        return g


class Linear(Affine):
    """``nn.Linear`` acts on the last axis: ``W = kron(I, weight)`` over the leading axes."""

    def build(self):
        w, rest = self.p("weight"), prod(self.in_shape[:-1])
        self.matrix = sp.csr_array(w) if rest == 1 else sp.kron(sp.eye_array(rest, dtype=w.dtype), w, format="csr")
        self.bias = None if self.p("bias") is None else np.tile(self.p("bias"), rest)

    def param_grads(self, delta, X):
        n_in, n_out = self.in_shape[-1], self.out_shape[-1]
        A = self._batch(X, self.in_shape).reshape(-1, n_in)
        D = self._batch(delta, self.out_shape).reshape(-1, n_out)
        g = {"weight": D.T @ A}
        if "bias" in self.param_names:
            g["bias"] = D.sum(axis=0)
        return g


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
        d = self._batch(delta, self.in_shape).reshape(delta.shape[1], c, -1)
        x = self._batch(X, self.in_shape).reshape(X.shape[1], c, -1)
        xhat = (x - self.mean[None, :, None]) * self.invstd[None, :, None]
        g = {}
        if "weight" in self.param_names:
            g["weight"] = (d * xhat).sum(axis=(0, 2))
        if "bias" in self.param_names:
            g["bias"] = d.sum(axis=(0, 2))
        return g


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


class MaxPool(Layer):
    """Max pooling: per sample a 0/1 selection matrix ``S`` (one 1 per row, at the argmax).

    Forward stacks the selection matrices of the batch block-diagonally; backward is
    ``S.T @ delta`` (the gradient scattered back to the argmax). ``.matrix`` is the tuple of
    per-sample selection matrices of the last forward.
    """

    def __init__(self, name, module, in_shape, dtype):
        m = module
        self.g = PoolGeometry(in_shape, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                              "MaxPool")
        super().__init__(name, module, in_shape, self.g.out_shape)
        self.src, self.dtype = self.g.table(), dtype
        self.idx = None

    def forward(self, X):
        n, c = X.shape[1], self.g.channels
        p_in, p_out = prod(self.g.in_spatial), prod(self.g.out_spatial)
        self.idx = max_pool_indices(X.T.reshape(n, c, p_in), self.g, self.src)  # (N, C, P_out)
        offsets = np.arange(n)[:, None, None] * (c * p_in) + np.arange(c)[None, :, None] * p_in
        cols = (self.idx + offsets).reshape(-1)
        self._S = sp.csr_array((np.ones(cols.size, dtype=X.dtype), cols, np.arange(cols.size + 1)),
                               shape=(n * c * p_out, n * c * p_in))
        return (self._S @ X.T.reshape(-1)).reshape(n, -1).T

    def backward(self, delta, X, Y):
        n = delta.shape[1]
        return (self._S.T @ delta.T.reshape(-1)).reshape(n, -1).T, {}

    @property
    def matrix(self):
        if self.idx is None:
            return None
        p_in = prod(self.g.in_spatial)
        return tuple(selection_matrix(i, p_in, self.dtype) for i in self.idx)

    bias = None


class Activation(Layer):
    """Elementwise ``a = sigma(z)``; backward ``delta * sigma'(z)`` (torch's formulas)."""

    matrix = bias = None

    def __init__(self, name, module, shape):
        super().__init__(name, module, shape, shape)
        kind = type(module).__name__
        if kind == "GELU" and module.approximate not in ("none", "tanh"):  # pragma: no cover
            raise ValueError(f"GELU approximate must be 'none' or 'tanh'; got {module.approximate!r}.")
        self.slope = getattr(module, "negative_slope", None)
        self.approximate = getattr(module, "approximate", None)

    def forward(self, X):
        k = self.kind
        if k == "ReLU":
            return np.maximum(X, 0)
        if k == "LeakyReLU":
            return np.where(X > 0, X, X * self.slope)
        if k == "Sigmoid":
            return expit(X)
        if k == "Tanh":
            return np.tanh(X)
        if self.approximate == "tanh":
            return 0.5 * X * (1 + np.tanh(_BETA * (X + _KAPPA * X ** 3)))
        return 0.5 * X * (1 + erf(X * np.sqrt(0.5)))

    def backward(self, delta, X, Y):
        k = self.kind
        if k == "ReLU":
            return delta * (Y > 0), {}
        if k == "LeakyReLU":
            return np.where(X > 0, delta, delta * self.slope), {}
        if k == "Sigmoid":
            return delta * (1 - Y) * Y, {}
        if k == "Tanh":
            return delta * (1 - Y * Y), {}
        if self.approximate == "tanh":
            t = np.tanh(_BETA * (X + _KAPPA * X ** 3))
            return delta * (0.5 * (1 + t) + 0.5 * X * (1 - t * t) * _BETA * (1 + 3 * _KAPPA * X * X)), {}
        cdf = 0.5 * (1 + erf(X * np.sqrt(0.5)))
        pdf = np.exp(-0.5 * X * X) / np.sqrt(2 * np.pi)
        return delta * (cdf + X * pdf), {}


_BETA, _KAPPA = np.sqrt(2 / np.pi), 0.044715


# =========================================================================== network


class Network:
    """A compiled model: layers of sparse matrices and elementwise functions.

    Attributes
    ----------
    layers : list of Layer
        ``layer.matrix`` (scipy.sparse) and ``layer.bias`` for affine layers; for max
        pooling, ``matrix`` is the tuple of per-sample selection matrices of the last forward.
    params : dict of str -> ndarray
        The parameters, keyed as ``module.named_parameters()``; change them with
        :meth:`update` or :meth:`sgd_step` (the matrices are rebuilt).
    input_shape, output_shape : tuple of int
        Shape of one sample.
    """

    def __init__(self, layers, params, input_shape, dtype):
        self.layers, self.params = layers, params
        self.input_shape = tuple(input_shape)
        self.output_shape = layers[-1].out_shape if layers else self.input_shape
        self.dtype = dtype
        self._acts = None

    def __repr__(self):
        rows = [f"Network(input_shape={self.input_shape}, output_shape={self.output_shape}, dtype={np.dtype(self.dtype).name})"]
        for i, layer in enumerate(self.layers):
            m = layer.matrix if layer.linear else None
            extra = f"  matrix {m.shape[0]} x {m.shape[1]}, nnz {m.nnz}" if m is not None else ""
            rows.append(f"  [{i}] {layer.name or '<model>'}: {layer.kind} {layer.in_shape} -> {layer.out_shape}{extra}")
        return "\n".join(rows)

    # ------------------------------------------------------------------ forward / backward
    def forward(self, x):
        """The output for a batch ``x`` of shape ``(N, *input_shape)``; keeps the activations.

        Each affine layer is ``Z = W @ A + b`` on ``A`` of shape ``(features, N)``, each
        activation ``sigma(Z)``. Returns a numpy array ``(N, *output_shape)``.
        """
        xa = v.network_input(v.as_array(x, "x"), self.input_shape)
        n = xa.shape[0]
        A = np.ascontiguousarray(xa.reshape(n, -1).T, dtype=self.dtype)
        acts = [A]
        for layer in self.layers:
            A = layer.forward(A)
            acts.append(A)
        self._acts = acts
        return A.T.reshape(n, *self.output_shape)

    __call__ = forward

    @property
    def activations(self):
        """The input and every layer's output of the last forward, each ``(N, *shape)``."""
        if self._acts is None:
            return None
        shapes = [self.input_shape] + [layer.out_shape for layer in self.layers]
        return [A.T.reshape(A.shape[1], *s) for A, s in zip(self._acts, shapes)]

    def backward(self, grad_output):
        """Gradients of every parameter and of the input, for ``dL/dy = grad_output``.

        The backpropagation equations in matrix form, layer by layer from the top:
        ``delta = W.T @ delta`` through an affine layer, ``delta = delta * sigma'(z)`` through
        an activation; each parameter's gradient is read from ``delta`` and the layer input.

        Parameters
        ----------
        grad_output : (N, *output_shape) array_like or torch.Tensor

        Returns
        -------
        grads : dict of str -> ndarray
            Keyed as ``module.named_parameters()``, each the parameter's shape, summed over
            the batch (as autograd's ``.grad``).
        grad_input : (N, *input_shape) ndarray
        """
        if self._acts is None:
            v.backward_before_forward()
        n = self._acts[0].shape[1]
        d = v.as_array(grad_output, "grad_output")
        if tuple(d.shape) != (n, *self.output_shape):
            v.grad_output_shape(d.shape, (n, *self.output_shape))
        delta = np.ascontiguousarray(d.reshape(n, -1).T, dtype=self.dtype)
        grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            delta, g = layer.backward(delta, self._acts[i], self._acts[i + 1])
            for local, arr in g.items():
                grads[layer.param_names[local]] += arr.reshape(grads[layer.param_names[local]].shape)
        return grads, delta.T.reshape(n, *self.input_shape)

    # ------------------------------------------------------------------ parameters
    def update(self, new_params):
        """Replace parameters (a dict keyed as ``named_parameters``) and rebuild the matrices."""
        for name, value in new_params.items():
            if name not in self.params:
                raise ValueError(
                    f"new_params keys must be parameter names of the model "
                    f"({', '.join(self.params)}); got {name!r}."
                )
            arr = v.as_array(value, f"new_params[{name!r}]")
            if arr.shape != self.params[name].shape:
                raise ValueError(
                    f"new_params[{name!r}] must have shape {self.params[name].shape}; got {arr.shape}."
                )
            self.params[name] = arr.astype(self.dtype, copy=True)
        for layer in self.layers:
            if layer.param_names and any(full in new_params for full in layer.param_names.values()):
                layer.build()

    def sgd_step(self, grads, lr):
        """One plain SGD step ``p <- p - lr * grad`` for every parameter in ``grads``."""
        self.update({name: self.params[name] - lr * g for name, g in grads.items()})

    # ------------------------------------------------------------------ linear maps
    def linear_map(self, start=0, stop=None):
        """``(M, b)`` with ``y = M @ x + b`` for the layers ``start:stop``, all linear.

        Consecutive convolutions, average poolings, flattens, linear layers and eval batch
        norms compose into one sparse matrix: e.g. a convolution followed by 2x2 average
        pooling is one convolution with stride 2.

        Examples
        --------
        >>> import numpy as np
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2)).double()
        >>> net = compile(model, (1, 10, 10))
        >>> M, b = net.linear_map()  # conv 3x3 then 2x2 average: one 4x4 stride-2 map
        >>> M.shape, M.nnz // M.shape[0]
        ((32, 100), 16)
        >>> x = np.random.rand(1, 1, 10, 10)
        >>> np.allclose(M @ x.ravel() + b, net.forward(x).ravel())
        True
        """
        idx = range(len(self.layers))[slice(start, stop)]
        n_in = prod(self.layers[idx[0]].in_shape) if len(idx) else prod(self.input_shape)
        M = sp.eye_array(n_in, dtype=self.dtype, format="csr")
        b = np.zeros(n_in, dtype=self.dtype)
        for i in idx:
            layer = self.layers[i]
            if not layer.linear:
                why = ("max pooling is linear only per input (its selection matrix depends on x)"
                       if isinstance(layer, MaxPool) else "an elementwise nonlinear activation")
                raise ValueError(
                    f"linear_map needs linear layers only; layer {i} ({layer.name!r}, {layer.kind}) "
                    f"in range({idx.start}, {idx.stop}) is not: {why}."
                )
            if isinstance(layer, Reshape):
                continue
            M = (layer.matrix @ M).tocsr()
            b = layer.matrix @ b + (layer.bias if layer.bias is not None else 0)
        return M, b

    def to_mlp(self):
        """A ``torch.nn.Sequential`` of ``nn.Linear`` layers (dense copies of the matrices) and
        the same activations that computes the same function: the CNN as an MLP.

        It starts with ``nn.Flatten()`` (so it takes ``(N, *input_shape)``) and ends with
        ``nn.Unflatten`` when the output has more than one axis. Max pooling is refused.
        """
        import torch
        from torch import nn

        mods = [nn.Flatten()]
        tdtype = torch.float64 if np.dtype(self.dtype) == np.float64 else torch.float32
        for i, layer in enumerate(self.layers):
            if isinstance(layer, MaxPool):
                raise ValueError(
                    f"to_mlp needs input-independent linear layers; layer {i} ({layer.name!r}, "
                    f"{layer.kind}) is max pooling, linear only per input (its selection matrix "
                    f"depends on x). Use forward/backward, or average pooling."
                )
            if isinstance(layer, Activation):
                mods.append(copy.deepcopy(layer.module))
            elif not isinstance(layer, Reshape):
                M = layer.matrix
                v.check_size("to_mlp's dense weight", M.shape[0] * M.shape[1] * M.dtype.itemsize,
                             f"layer {i}, {M.shape[0]:,} x {M.shape[1]:,} dense")
                lin = nn.Linear(M.shape[1], M.shape[0], bias=True, dtype=tdtype)
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(M.toarray()))
                    lin.bias.copy_(torch.from_numpy(layer.bias if layer.bias is not None
                                                    else np.zeros(M.shape[0], dtype=self.dtype)))
                mods.append(lin)
        if len(self.output_shape) > 1:
            mods.append(nn.Unflatten(1, self.output_shape))
        return nn.Sequential(*mods)


# =========================================================================== compile


def _leaves(module, prefix=""):
    """``(name, module)`` of the leaf modules in execution order (nested Sequential too)."""
    from torch import nn

    if isinstance(module, nn.Sequential):
        for child_name, child in module._modules.items():  # named_children() drops repeats
            yield from _leaves(child, f"{prefix}.{child_name}" if prefix else child_name)
    else:
        yield prefix, module


def _flatten_shape(name, module, shape):
    nd = len(shape) + 1
    s, e = module.start_dim % nd, module.end_dim % nd
    if s == 0:
        raise ValueError(
            f"Flatten {name!r} must keep the batch axis (start_dim >= 1); got "
            f"start_dim={module.start_dim}."
        )
    return shape[: s - 1] + (prod(shape[s - 1: e]),) + shape[e:]


def _layer(name, m, shape, params, pnames, dtype):
    """The compiled layer of one leaf module with input sample shape ``shape``."""
    from torch import nn

    kind = type(m).__name__
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        g = conv_geometry(tuple(m.weight.shape), shape, stride=m.stride, padding=m.padding,
                          dilation=m.dilation, groups=m.groups, padding_mode=m.padding_mode)
        return Conv(name, m, shape, g.out_shape, params, pnames)
    if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        out = conv_transpose_output_size(tuple(shape[1:]), m.kernel_size, stride=m.stride, padding=m.padding,
                                         output_padding=m.output_padding, dilation=m.dilation)
        return ConvTranspose(name, m, shape, (m.out_channels, *out), params, pnames)
    if isinstance(m, nn.Linear):
        if shape[-1] != m.in_features:
            raise ValueError(
                f"the input's last axis must equal in_features={m.in_features}; got input "
                f"shape {shape} (add a Flatten before it?)."
            )
        return Linear(name, m, shape, shape[:-1] + (m.out_features,), params, pnames)
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.training:
            v.module_in_training(name, m, "in training mode batch norm normalises by the batch "
                                          "statistics, which is not a fixed linear map")
        if m.running_mean is None:
            raise ValueError(
                f"module {name!r} ({kind}) must track running statistics "
                f"(track_running_stats=True) to be compiled: without them it normalises by the "
                f"batch statistics even in eval mode, which is not a fixed linear map; got "
                f"track_running_stats=False."
            )
        if shape[0] != m.num_features:
            raise ValueError(f"the input's channel axis must equal num_features={m.num_features}; got input shape {shape}.")
        return BatchNorm(name, m, shape, params, pnames, dtype)
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        P = avg_pool_matrix(shape, m.kernel_size, stride=m.stride, padding=m.padding,
                            ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                            divisor_override=getattr(m, "divisor_override", None), dtype=dtype)
        g = PoolGeometry(shape, m.kernel_size, m.stride, m.padding, 1, m.ceil_mode, kind)
        return Fixed(name, m, shape, g.out_shape, P)
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        out = v.adaptive_output_size(m.output_size, shape[1:])
        return Fixed(name, m, shape, (shape[0], *out), adaptive_avg_pool_matrix(shape, m.output_size, dtype=dtype))
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        if m.return_indices:
            raise ValueError(f"module {name!r} ({kind}) must have return_indices=False: a layer "
                             f"of the network passes on one tensor; got return_indices=True.")
        return MaxPool(name, m, shape, dtype)
    if isinstance(m, nn.modules.dropout._DropoutNd):
        if m.training:
            v.module_in_training(name, m, "in training mode dropout zeroes random entries")
        return Reshape(name, m, shape, shape, dtype)
    if isinstance(m, nn.Identity):
        return Reshape(name, m, shape, shape, dtype)
    if isinstance(m, nn.Flatten):
        return Reshape(name, m, shape, _flatten_shape(name, m, shape), dtype)
    if kind in ("ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU") and type(m).__module__.startswith("torch.nn"):
        return Activation(name, m, shape)
    v.unsupported_module(name, m, SUPPORTED)


def compile(module, input_shape):
    """Compile a PyTorch model into a :class:`Network` of sparse matrices.

    Parameters
    ----------
    module : torch.nn.Module
        A supported layer or an ``nn.Sequential`` (nested too) of supported layers: Conv1d/2d/3d
        (every padding mode), ConvTranspose1d/2d/3d, Linear, Flatten, AvgPool, MaxPool,
        AdaptiveAvgPool, BatchNorm and Dropout in eval mode, Identity, ReLU, LeakyReLU,
        Sigmoid, Tanh, GELU.
    input_shape : tuple of int
        Shape of one input sample, e.g. ``(1, 28, 28)`` (no batch axis).

    Returns
    -------
    Network
        Parameters are copied (as numpy, the model's dtype): later changes to the model are
        not seen; compile again, or use :meth:`Network.update`.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from torch import nn
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Conv2d(1, 3, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
    ...                       nn.Linear(3 * 12 * 12, 10)).double()
    >>> net = compile(model, (1, 28, 28))
    >>> [layer.kind for layer in net.layers]
    ['Conv2d', 'ReLU', 'AvgPool2d', 'Flatten', 'Linear']
    >>> net.layers[0].matrix.shape  # the convolution as a sparse matrix
    (1728, 784)
    >>> x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    >>> np.allclose(net.forward(x), model(x).detach().numpy())
    True
    >>> grads, dx = net.backward(np.ones((4, 10)))
    >>> model(x).sum().backward()
    >>> np.allclose(grads["0.weight"], model[0].weight.grad.numpy())
    True
    >>> mlp = net.to_mlp()  # the same function as a plain MLP
    >>> np.allclose(mlp(x).detach().numpy(), model(x).detach().numpy())
    True
    """
    try:
        from torch import nn
    except ImportError as e:  # pragma: no cover
        raise ImportError("compile needs PyTorch to read the model: pip install torch") from e
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module; got {type(module).__name__}.")
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"input_shape must be a tuple of ints (one sample, no batch axis); got {input_shape!r}.") from None
    if not shape or not all(v._is_int(s) and s >= 1 for s in shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive ints (one sample, no batch axis); got input_shape={shape!r}.")
    shape = tuple(int(s) for s in shape)
    named = list(module.named_parameters())
    params = {name: v.as_array(p, name).copy() for name, p in named}
    dtype = np.result_type(*params.values()) if params else np.float64
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"the model's parameters must be floating point; got {dtype}.")
    params = {k: a.astype(dtype, copy=False) for k, a in params.items()}
    by_id = {id(p): name for name, p in named}
    layers, cur = [], shape
    for name, m in _leaves(module):
        pnames = {local: by_id[id(p)] for local, p in m.named_parameters(recurse=False)}
        try:
            layer = _layer(name, m, cur, params, pnames, dtype)
        except (ValueError, TypeError) as e:
            if str(e).startswith(("compile does not support", "module ")):
                raise
            raise type(e)(f"layer {name!r} ({type(m).__name__}) with input shape {cur}: {e}") from e
        layers.append(layer)
        cur = layer.out_shape
    return Network(layers, params, shape, dtype)


def softmax_cross_entropy(logits, target):
    """Mean softmax cross-entropy (``F.cross_entropy``) and its gradient w.r.t. ``logits``.

    Parameters
    ----------
    logits : (N, K) array_like
    target : (N,) int array_like of class indices

    Returns
    -------
    loss : float
    grad : (N, K) ndarray
        ``(softmax(logits) - onehot(target)) / N``: the ``grad_output`` for
        :meth:`Network.backward`.

    Examples
    --------
    >>> import numpy as np, torch, torch.nn.functional as F
    >>> z, t = np.random.randn(5, 3), np.array([0, 2, 1, 1, 0])
    >>> loss, grad = softmax_cross_entropy(z, t)
    >>> abs(loss - F.cross_entropy(torch.from_numpy(z), torch.from_numpy(t)).item()) < 1e-12
    True
    """
    z = v.as_array(logits, "logits")
    t = v.as_array(target, "target")
    if z.ndim != 2 or t.shape != (z.shape[0],) or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(
            f"logits must be (N, K) and target (N,) integer class indices; got "
            f"logits.shape={tuple(z.shape)}, target.shape={tuple(t.shape)} ({t.dtype})."
        )
    if t.size and (t.min() < 0 or t.max() >= z.shape[1]):
        raise ValueError(f"target must hold class indices in [0, {z.shape[1]}); got values in [{t.min()}, {t.max()}].")
    s = z - z.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    n = z.shape[0]
    loss = -logp[np.arange(n), t].mean()
    grad = np.exp(logp)
    grad[np.arange(n), t] -= 1
    return float(loss), grad / n
