"""A compiled model: layers of sparse matrices, run as a multilayer perceptron.

Forward and backward are the equations of an MLP, one sample per column of ``X``
(``X = x.reshape(N, -1).T``)::

    forward:   z^l = W^l a^(l-1) + b^l,      a^l = sigma(z^l)
    backward:  delta^l = (W^(l+1))^T delta^(l+1) * sigma'(z^l)
               dL/db^l = sum over samples (and positions) of delta^l
               dL/dW^l = delta^l (a^(l-1))^T, read through W's structure: for a
               convolution only the entries of the kernel exist, so the sum runs over the
               (row, col, tap) triples (:func:`toeplitz_conv.conv_weight_grad`).
"""

from __future__ import annotations

import copy
from math import prod

import numpy as np
import scipy.sparse as sp

from .._args import as_array
from ..memory import check_size
from .layers import Activation, MaxPool, Reshape


def _network_input(x: np.ndarray, input_shape) -> np.ndarray:
    shape = tuple(input_shape)
    if x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape:
        return x
    hint = " (add a batch axis: x[None])" if tuple(x.shape) == shape else ""
    raise ValueError(
        f"x must be a batch of shape (N, {', '.join(map(str, shape))}) for this network "
        f"(compiled for input_shape={shape}); got x.shape={tuple(x.shape)}{hint}."
    )


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
        xa = _network_input(as_array(x, "x"), self.input_shape)
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
            raise ValueError("backward needs the activations of a forward pass; call forward(x) first.")
        n = self._acts[0].shape[1]
        d = as_array(grad_output, "grad_output")
        if tuple(d.shape) != (n, *self.output_shape):
            raise ValueError(
                f"grad_output must have the shape of the last forward's output "
                f"{(n, *self.output_shape)}; got grad_output.shape={tuple(d.shape)}."
            )
        delta = np.ascontiguousarray(d.reshape(n, -1).T, dtype=self.dtype)
        grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            delta, layer_grads = layer.backward(delta, self._acts[i], self._acts[i + 1])
            for local, arr in layer_grads.items():
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
            arr = as_array(value, f"new_params[{name!r}]")
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
        self.update({name: self.params[name] - lr * grad for name, grad in grads.items()})

    # ------------------------------------------------------------------ linear maps
    def linear_map(self, start=0, stop=None):
        """``(M, b)`` with ``y = M @ x + b`` for the layers ``start:stop``, all linear.

        Consecutive convolutions, average poolings, flattens, linear layers and eval batch
        norms compose into one sparse matrix: e.g. a convolution followed by 2x2 average
        pooling is one convolution with stride 2.

        Examples
        --------
        >>> import numpy as np, toeplitz_conv as tc
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2)).double()
        >>> net = tc.compile(model, (1, 10, 10))
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
                check_size("to_mlp's dense weight", M.shape[0] * M.shape[1] * M.dtype.itemsize,
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
