"""The run of a compiled network: forward and backward along its graph.

Forward and backward are the equations of an MLP, one sample per column of ``X``
(``X = x.reshape(N, -1).T``), run along the graph: forward in topological order, backward
in reverse, each node with its transpose::

    forward:   z^l = W^l a^(l-1) + b^l,      a^l = sigma(z^l)
    backward:  delta^l = (W^(l+1))^T delta^(l+1) * sigma'(z^l)
               (a node read by several others gets the sum of their deltas; a sum node
               passes delta to each input, a concatenation splits it)
               dL/db^l = sum over samples (and positions) of delta^l
               dL/dW^l = delta^l (a^(l-1))^T, read through W's structure: for a
               convolution only the entries of the kernel exist, so the sum runs over the
               (row, col, tap) triples (:func:`toeplitz_conv.conv_weight_grad`).

The exact Jacobian at one sample is the same chain with matrices in place of vectors
(:mod:`.analysis.jacobian`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .._args import as_array
from . import params as setting

if TYPE_CHECKING:
    from .model import Network


def network_input(x: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """``x`` itself when it is a batch of ``input_shape`` samples; else a ValueError that
    says which shape was expected (and to add the batch axis, when that is what is missing)."""
    shape = tuple(input_shape)
    if x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape:
        return x
    hint = " (add a batch axis: x[None])" if tuple(x.shape) == shape else ""
    raise ValueError(
        f"x must be a batch of shape (N, {', '.join(map(str, shape))}) for this network "
        f"(compiled for input_shape={shape}); got x.shape={tuple(x.shape)}{hint}."
    )


def forward(net: Network, x: npt.ArrayLike) -> list[np.ndarray]:
    """The input and every node's output for a batch ``x`` of shape ``(N, *input_shape)``,
    each ``(features, N)``: position 0 is the input, ``i + 1`` the output of ``layers[i]``."""
    xa = network_input(setting.real(as_array(x, "x"), "x", net.dtype), net.input_shape)
    n = xa.shape[0]
    net.check_batch(n)
    acts = [np.ascontiguousarray(xa.reshape(n, -1).T, dtype=net.dtype)]
    for layer in net.layers:
        acts.append(layer.run([acts[p] for p in layer.inputs]))
    return acts


def backward(net: Network, acts: Sequence[np.ndarray],
             grad_output: npt.ArrayLike) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every parameter's gradient (summed over the batch) and the input's, for
    ``dL/dy = grad_output``, from the activations ``acts`` of :func:`forward`."""
    n = acts[0].shape[1]
    d = setting.real(as_array(grad_output, "grad_output"), "grad_output", net.dtype)
    if tuple(d.shape) != (n, *net.output_shape):
        raise ValueError(
            f"grad_output must have the shape of the last forward's output "
            f"{(n, *net.output_shape)}; got grad_output.shape={tuple(d.shape)}."
        )
    deltas: list[np.ndarray | None] = [None] * len(acts)
    deltas[net.output] = np.ascontiguousarray(d.reshape(n, -1).T, dtype=net.dtype)
    grads = {name: np.zeros_like(p) for name, p in net.params.items()}
    for i in range(len(net.layers) - 1, -1, -1):
        delta, deltas[i + 1] = deltas[i + 1], None
        if delta is None:  # the node does not reach the output
            continue
        layer = net.layers[i]
        d_inputs, layer_grads = layer.back(delta, [acts[p] for p in layer.inputs], acts[i + 1])
        if layer.param_reads is not None:  # parameters an affine op reads: torch's gradient
            layer_grads = layer.param_reads.gradients(delta, [acts[p] for p in layer.inputs], layer.in_shapes,
                                                      layer.out_shape, net.params)
        for p, dX in zip(layer.inputs, d_inputs):
            deltas[p] = dX if deltas[p] is None else deltas[p] + dX
        for local, arr in layer_grads.items():
            grads[layer.param_names[local]] += arr.reshape(grads[layer.param_names[local]].shape)
    dx = deltas[0] if deltas[0] is not None else np.zeros_like(acts[0])
    return grads, dx.T.reshape(n, *net.input_shape)
