"""Reading a PyTorch model into layers: one registry maps each supported module type to the
builder of its layer, and the list of supported modules is read off that registry.

torch is imported only here and only when a model is compiled.
"""

from __future__ import annotations

from math import prod
from typing import Callable, NamedTuple

import numpy as np

from .._args import as_array, as_tuple, is_int
from ..arithmetic import conv_transpose_output_size
from ..geometry import PoolGeometry, adaptive_output_size, conv_geometry
from ..pool import adaptive_avg_pool_matrix, avg_pool_matrix
from .layers import (ACTIVATIONS, Activation, BatchNorm, Conv, ConvTranspose, Fixed, Linear, MaxPool,
                     Reshape, leaky_relu)
from .model import Network


class ModuleError(Exception):
    """Raised about a module itself; its message names the module, so :func:`compile` passes
    it on as it is (other errors get the layer's name and input shape prepended)."""


class UnsupportedModuleError(ModuleError, TypeError):
    """A module type that :func:`compile` has no layer for."""


class ModuleStateError(ModuleError, ValueError):
    """A supported module in a state that is not a fixed map (training mode, say)."""


def _in_training(name, module, why):
    return ModuleStateError(
        f"module {name!r} ({type(module).__name__}) must be in eval mode to be compiled: {why}. "
        f"Call model.eval() first."
    )


# --------------------------------------------------------------------------- builders
# Each takes (name, module, input sample shape, params, parameter names, dtype) -> a Layer.


def _conv(name, m, shape, params, pnames, dtype):
    geom = conv_geometry(tuple(m.weight.shape), shape, stride=m.stride, padding=m.padding,
                         dilation=m.dilation, groups=m.groups, padding_mode=m.padding_mode)
    return Conv(name, m, shape, geom.out_shape, params, pnames)


def _conv_transpose(name, m, shape, params, pnames, dtype):
    out = conv_transpose_output_size(tuple(shape[1:]), m.kernel_size, stride=m.stride, padding=m.padding,
                                     output_padding=m.output_padding, dilation=m.dilation)
    return ConvTranspose(name, m, shape, (m.out_channels, *out), params, pnames)


def _linear(name, m, shape, params, pnames, dtype):
    if shape[-1] != m.in_features:
        raise ValueError(
            f"the input's last axis must equal in_features={m.in_features}; got input "
            f"shape {shape} (add a Flatten before it?)."
        )
    return Linear(name, m, shape, shape[:-1] + (m.out_features,), params, pnames)


def _batch_norm(name, m, shape, params, pnames, dtype):
    if m.training:
        raise _in_training(name, m, "in training mode batch norm normalises by the batch "
                                    "statistics, which is not a fixed linear map")
    if m.running_mean is None:
        raise ModuleStateError(
            f"module {name!r} ({type(m).__name__}) must track running statistics "
            f"(track_running_stats=True) to be compiled: without them it normalises by the "
            f"batch statistics even in eval mode, which is not a fixed linear map; got "
            f"track_running_stats=False."
        )
    if shape[0] != m.num_features:
        raise ValueError(f"the input's channel axis must equal num_features={m.num_features}; got input shape {shape}.")
    return BatchNorm(name, m, shape, params, pnames, dtype)


def _avg_pool(name, m, shape, params, pnames, dtype):
    P = avg_pool_matrix(shape, m.kernel_size, stride=m.stride, padding=m.padding,
                        ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                        divisor_override=getattr(m, "divisor_override", None), dtype=dtype)
    geom = PoolGeometry(shape, m.kernel_size, m.stride, m.padding, 1, m.ceil_mode, type(m).__name__)
    return Fixed(name, m, shape, geom.out_shape, P)


def _adaptive_avg_pool(name, m, shape, params, pnames, dtype):
    out = adaptive_output_size(m.output_size, shape[1:])
    return Fixed(name, m, shape, (shape[0], *out), adaptive_avg_pool_matrix(shape, m.output_size, dtype=dtype))


def _max_pool(name, m, shape, params, pnames, dtype):
    if m.return_indices:
        raise ModuleStateError(f"module {name!r} ({type(m).__name__}) must have return_indices=False: "
                               f"a layer of the network passes on one tensor; got return_indices=True.")
    return MaxPool(name, m, shape, dtype)


def _dropout(name, m, shape, params, pnames, dtype):
    if m.training:
        raise _in_training(name, m, "in training mode dropout zeroes random entries")
    return Reshape(name, m, shape, shape, dtype)


def _identity(name, m, shape, params, pnames, dtype):
    return Reshape(name, m, shape, shape, dtype)


def _flatten(name, m, shape, params, pnames, dtype):
    nd = len(shape) + 1
    s, e = m.start_dim % nd, m.end_dim % nd
    if s == 0:
        raise ValueError(
            f"Flatten {name!r} must keep the batch axis (start_dim >= 1); got "
            f"start_dim={m.start_dim}."
        )
    return Reshape(name, m, shape, shape[: s - 1] + (prod(shape[s - 1: e]),) + shape[e:], dtype)


def _gelu(m):
    if m.approximate not in ("none", "tanh"):  # pragma: no cover - torch refuses it too
        raise ValueError(f"GELU approximate must be 'none' or 'tanh'; got {m.approximate!r}.")
    return ACTIVATIONS["gelu_tanh" if m.approximate == "tanh" else "gelu"]


def _activation(function_of):
    """The builder of an activation whose function ``function_of(module)`` gives."""
    def build(name, m, shape, params, pnames, dtype):
        return Activation(name, m, shape, function_of(m))
    return build


# --------------------------------------------------------------------------- the registry


class Entry(NamedTuple):
    """How one module type compiles: its builder, the names it stands for in the list of
    supported modules, and whether subclasses compile the same way (activations: only the
    torch class itself, since a subclass may change the function)."""

    build: Callable
    names: tuple
    subclasses: bool = True


_REGISTRY = None


def registry() -> dict:
    """``{module type: Entry}``, in the order of the supported list (needs torch)."""
    global _REGISTRY
    if _REGISTRY is None:
        from torch import nn

        def family(base, builder):  # nn.X1d, nn.X2d, nn.X3d
            return {getattr(nn, f"{base}{n}d"): Entry(builder, (f"{base}{n}d",)) for n in (1, 2, 3)}

        def function(module_type, function_of):
            return {module_type: Entry(_activation(function_of), (module_type.__name__,), False)}

        _REGISTRY = {
            **family("Conv", _conv), **family("ConvTranspose", _conv_transpose),
            nn.Linear: Entry(_linear, ("Linear",)),
            nn.Flatten: Entry(_flatten, ("Flatten",)),
            **family("AvgPool", _avg_pool), **family("MaxPool", _max_pool),
            **family("AdaptiveAvgPool", _adaptive_avg_pool),
            nn.modules.batchnorm._BatchNorm: Entry(_batch_norm, ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")),
            nn.modules.dropout._DropoutNd: Entry(_dropout, ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d")),
            nn.Identity: Entry(_identity, ("Identity",)),
            **function(nn.ReLU, lambda m: ACTIVATIONS["relu"]),
            **function(nn.LeakyReLU, lambda m: leaky_relu(m.negative_slope)),
            **function(nn.Sigmoid, lambda m: ACTIVATIONS["sigmoid"]),
            **function(nn.Tanh, lambda m: ACTIVATIONS["tanh"]),
            **function(nn.GELU, _gelu),
        }
    return _REGISTRY


def supported_modules() -> tuple:
    """The module names :func:`compile` accepts, read off the registry."""
    return ("Sequential",) + tuple(name for entry in registry().values() for name in entry.names)


def _entry(module):
    """The registry entry of ``module``: its own type's, or its nearest registered base's."""
    reg = registry()
    for cls in type(module).__mro__:
        entry = reg.get(cls)
        if entry is not None and (entry.subclasses or cls is type(module)):
            return entry
    return None


def _leaves(module, prefix=""):
    """``(name, module)`` of the leaf modules in execution order (nested Sequential too)."""
    from torch import nn

    if isinstance(module, nn.Sequential):
        for child_name, child in module._modules.items():  # named_children() drops repeats
            yield from _leaves(child, f"{prefix}.{child_name}" if prefix else child_name)
    else:
        yield prefix, module


def _layer(name, module, shape, params, pnames, dtype):
    """The compiled layer of one leaf module with input sample shape ``shape``."""
    entry = _entry(module)
    if entry is None:
        raise UnsupportedModuleError(
            f"compile does not support module {name!r} of type {type(module).__name__}; "
            f"supported: {', '.join(supported_modules())}."
        )
    try:
        return entry.build(name, module, shape, params, pnames, dtype)
    except ModuleError:
        raise
    except (ValueError, TypeError) as e:
        raise type(e)(f"layer {name!r} ({type(module).__name__}) with input shape {shape}: {e}") from e


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
    shape = as_tuple(input_shape, "input_shape", "a tuple of ints (one sample, no batch axis)")
    if not shape or not all(is_int(s) and s >= 1 for s in shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive ints (one sample, no batch axis); got input_shape={shape!r}.")
    shape = tuple(int(s) for s in shape)
    named = list(module.named_parameters())
    params = {name: as_array(p, name).copy() for name, p in named}
    dtype = np.result_type(*params.values()) if params else np.float64
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"the model's parameters must be floating point; got {dtype}.")
    params = {k: a.astype(dtype, copy=False) for k, a in params.items()}
    by_id = {id(p): name for name, p in named}
    layers, cur = [], shape
    for name, m in _leaves(module):
        pnames = {local: by_id[id(p)] for local, p in m.named_parameters(recurse=False)}
        layer = _layer(name, m, cur, params, pnames, dtype)
        layers.append(layer)
        cur = layer.out_shape
    return Network(layers, params, shape, dtype)
