"""A compiled network back in torch as a plain MLP: every linear node an ``nn.Linear``.

A chain becomes an ``nn.Sequential``; a graph a ``torch.fx.GraphModule`` with the same
nodes and skip connections, whose linear nodes are ``nn.Linear`` on flattened samples
(a sum or concatenation of several inputs is one ``nn.Linear`` on their concatenation: its
stacked matrix ``[W_1 | W_2]``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt

from ..memory import check_size
from .layers import Activation, Layer, MaxPool, Reshape
from .nodes import Combine, Contraction, Product

if TYPE_CHECKING:
    import scipy.sparse as sp
    import torch
    from torch import fx, nn

    from .model import Network


def _linear(i: int, M: sp.sparray, bias: np.ndarray | None, dtype: npt.DTypeLike) -> nn.Linear:
    import torch
    from torch import nn

    check_size("to_mlp's dense weight", M.shape[0] * M.shape[1] * M.dtype.itemsize,
               f"layer {i}, {M.shape[0]:,} x {M.shape[1]:,} dense")
    tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    lin = nn.Linear(M.shape[1], M.shape[0], bias=bias is not None, dtype=tdtype)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(M.toarray()))
        if bias is not None:
            lin.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=dtype)))
    return lin


def _on_samples(layer: Layer) -> nn.Module:
    """The layer's own torch call, on flattened samples (``(N, features)`` in and out)."""
    from torch import nn

    class OnSamples(nn.Module):
        def __init__(self, fn: Callable[..., torch.Tensor], shape: tuple[int, ...],
                     kind: str) -> None:
            super().__init__()
            self.fn, self.shape, self.kind = fn, shape, kind

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fn(x.reshape(x.shape[0], *self.shape)).reshape(x.shape[0], -1)

        def extra_repr(self) -> str:
            return f"{self.kind} on samples of shape {self.shape}"

    return OnSamples(layer.torch_call, layer.in_shape, layer.kind)


def _refuse_max_pool(i: int, layer: Layer) -> None:
    if isinstance(layer, MaxPool):
        raise ValueError(
            f"to_mlp needs input-independent linear layers; layer {i} ({layer.name!r}, "
            f"{layer.kind}) is max pooling, linear only per input (its selection matrix "
            f"depends on x). Use forward/backward, or average pooling."
        )


def _pointwise(layer: Layer) -> nn.Module:
    """An activation or softmax as a module: a copy of the model's own, else its call."""
    if isinstance(layer, Activation) and layer.module is not None:
        return cast("nn.Module", copy.deepcopy(layer.module))
    return _on_samples(layer)


def to_mlp(net: Network) -> nn.Sequential | fx.GraphModule:
    """:meth:`Network.to_mlp`."""
    import torch
    from torch import fx, nn

    for i, layer in enumerate(net.layers):
        _refuse_max_pool(i, layer)
    unflatten = [nn.Unflatten(1, net.output_shape)] if len(net.output_shape) > 1 else []
    if net.is_chain:
        mods: list[nn.Module] = [nn.Flatten()]
        for i, layer in enumerate(net.layers):
            if isinstance(layer, Reshape):
                continue
            mods.append(_linear(i, layer.matrix, layer.bias, net.dtype) if layer.linear else _pointwise(layer))
        return nn.Sequential(*mods, *unflatten)
    root, graph = nn.Module(), fx.Graph()
    x = graph.placeholder("x")
    values: dict[int, fx.Node] = {0: graph.call_function(torch.flatten, (x, 1))}
    for i, layer in enumerate(net.layers):
        ins = [values[p] for p in layer.inputs]
        name = f"n{i}_{layer.node}".replace(".", "_")
        if isinstance(layer, Reshape):
            values[i + 1] = ins[0]
            continue
        if isinstance(layer, Product):  # a matrix product: gather, multiply, sum the inner index
            for k, B in enumerate(layer.gathers if isinstance(layer, Contraction) else layer.broadcasts):
                root.add_module(f"{name}_{k}", _linear(i, B, None, net.dtype))
            a, b = (graph.call_module(f"{name}_{k}", (v,)) for k, v in enumerate(ins))
            values[i + 1] = graph.call_function(torch.mul, (a, b))
            if isinstance(layer, Contraction):
                root.add_module(f"{name}_sum", _linear(i, layer.summed, None, net.dtype))
                values[i + 1] = graph.call_module(f"{name}_sum", (values[i + 1],))
            continue
        if layer.linear:
            root.add_module(name, _linear(i, layer.matrix, layer.bias, net.dtype))
            arg = ins[0] if not isinstance(layer, Combine) else graph.call_function(torch.cat, (ins, 1))
        else:
            root.add_module(name, _pointwise(layer))
            arg = ins[0]
        values[i + 1] = graph.call_module(name, (arg,))
    out = values[net.output]
    if unflatten:
        root.add_module("unflatten", unflatten[0])
        out = graph.call_module("unflatten", (out,))
    graph.output(out)
    return fx.GraphModule(root, graph)
