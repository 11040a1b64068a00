"""Reading a PyTorch model into a graph of nodes: trace it with ``torch.fx``, then turn every
call into a node of the network.

``compile`` checks its arguments, traces the model (:mod:`.trace`: registered modules stay
single calls; other modules are traced through) and walks the traced graph once on an example
batch of two samples (:mod:`.walk`: to learn every shape and every value the code computes from
shapes, such as ``x.size(0)``, and to build and check each node). Every node is checked against
torch's output on the example as it is built, without keeping a matrix: a node's matrix is
built only when something reads it (a forward, an analysis), and a convolution whose matrix
would be large is checked matrix-free (:meth:`~.affine.Affine.forward_free`). Last, the whole
network's output is checked against the model's, and the traced code against a second batch
size (:func:`.faithful.batch_dependence`).

torch is imported only when a model is compiled (here and by the builders).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import TYPE_CHECKING

from .._args import as_tuple, check_int_range, is_int
from ..memory import check_size
from . import faithful
from .call import ModuleError, ModuleStateError, UnsupportedModuleError, UntraceableModelError
from .model import Network
from .modules import entry_of, registry, supported_modules
from .ops import supported_ops
from .reads import named_parameters, parameter_values, parametrisations
from .trace import trace
from .walk import example_batch, walk

if TYPE_CHECKING:
    from torch import nn

__all__ = ["compile", "supported_modules", "supported_ops", "registry", "trace", "ModuleError",
           "ModuleStateError", "UnsupportedModuleError", "UntraceableModelError"]


def compile(module: nn.Module, input_shape: Sequence[int]) -> Network:
    """Compile a PyTorch model into a :class:`Network` of sparse matrices.

    The model is traced with ``torch.fx``: an ``nn.Sequential`` becomes a chain, any other
    model a graph (residual sums, ``torch.cat`` skips, products, functional calls). Each call
    becomes a node: an affine map ``z = W x + b`` (``.matrix``, ``.bias``), an elementwise
    function, a max pooling selection, a softmax, or a combination of several inputs. No
    layer's matrix is built here: each is built when first read (a forward, an analysis) and
    kept until ``release()``; :meth:`Network.memory_report` tells their sizes beforehand.

    Parameters
    ----------
    module : torch.nn.Module
        Any model ``torch.fx.symbolic_trace`` can trace, built from the supported modules
        (:func:`supported_modules`) and functions and tensor methods (:func:`supported_ops`).
        BatchNorm and Dropout must be in eval mode.
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
    shape = as_tuple(input_shape, "input_shape", "a tuple of ints (one sample, no batch axis)")
    if not shape or not all(is_int(s) and s >= 1 for s in shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive ints (one sample, no batch axis); got input_shape={shape!r}.")
    check_int_range("input_shape", *shape)
    shape = tuple(int(s) for s in shape)
    features = prod(shape)
    # a floor, known before anything runs: the example batch of two samples (torch and its
    # numpy rows) and a first matrix of one entry per input feature; every layer adds more
    check_size("compile", 48 * features,
               f"at least: an example batch of 2 x {features:,} input features and one matrix "
               f"entry per feature, before any layer's own matrix")
    named = named_parameters(module)
    params, dtype = parameter_values(named)
    param_names = {id(p): name for name, p in named}
    gm = None if entry_of(module) is not None else trace(module, example_batch(shape, dtype))
    layers, output, traced = walk(gm, module, shape, dtype, params, param_names)
    net = Network(layers, params, shape, dtype, output=output, graph=gm)
    net.parametrisations = parametrisations(module)
    if gm is not None and traced is not None:
        faithful.check_output(module, traced.x, traced.output)
        net.traced_batch_only = faithful.batch_dependence(gm, module, traced.x, traced.values)
    return net
