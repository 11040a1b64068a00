"""The modules a model may hold, each turned into a node: one registry maps each supported
module type to its builder, and the list of supported modules is read off that registry.

A builder takes the traced :class:`~.call.Call` of the module (its input shape, parameters,
dtype) and returns a layer. Parameter-free linear modules (padding, pixel shuffle,
upsampling, ...) reuse the function builders of :mod:`.ops`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from math import prod
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ..arithmetic import conv_transpose_output_size
from ..geometry import conv_geometry
from ..pool_geometry import PoolGeometry, adaptive_output_size
from ..pool import adaptive_avg_pool_matrix, avg_pool_matrix
from .activations import ACTIVATIONS, Elementwise, celu, elu, hardtanh, leaky_relu, shrink, softplus, threshold
from .call import Call, ModuleStateError
from .functional import adaptive_windows, normalise, torch_argmax
from .layers import BatchNorm, Conv, ConvTranspose, Fixed, Layer, Linear, MaxPool, PReLU, Reshape
from .linear_ops import SampleMixingError
from .nodes import Normalise
from .ops import activation, exact_pooling, fold, gather, gelu_function, interpolate, softmax_node

if TYPE_CHECKING:
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.instancenorm import _InstanceNorm
    from torch.nn.modules.conv import _ConvNd
    from torch.nn.modules.pooling import _AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd, _MaxPoolNd

    from .ops import Builder


def _in_training(call: Call, why: str) -> ModuleStateError:
    return ModuleStateError(
        f"module {call.title!r} ({type(call.module).__name__}) must be in eval mode to be compiled: "
        f"{why}. Call model.eval() first."
    )


def _conv(call: Call) -> Conv:
    m = cast("_ConvNd", call.module)
    geom = conv_geometry(tuple(m.weight.shape), call.shape, stride=m.stride, padding=m.padding,
                         dilation=m.dilation, groups=m.groups, padding_mode=m.padding_mode)
    return Conv(call.label, m, call.shape, geom.out_shape, call.params, call.pnames)


def _conv_transpose(call: Call) -> ConvTranspose:
    m = cast("_ConvNd", call.module)
    padding = cast("tuple[int, ...]", m.padding)  # never a string for a transposed convolution
    out = conv_transpose_output_size(tuple(call.shape[1:]), m.kernel_size, stride=m.stride, padding=padding,
                                     output_padding=m.output_padding, dilation=m.dilation)
    return ConvTranspose(call.label, m, call.shape, (m.out_channels, *out), call.params, call.pnames)


def _linear(call: Call) -> Linear:
    m, shape = cast("nn.Linear", call.module), call.shape
    if shape[-1] != m.in_features:
        raise ValueError(
            f"the input's last axis must equal in_features={m.in_features}; got input "
            f"shape {shape} (add a Flatten before it?)."
        )
    return Linear(call.label, m, shape, shape[:-1] + (m.out_features,), call.params, call.pnames)


def _batch_norm(call: Call) -> BatchNorm:
    m, shape = cast("_BatchNorm", call.module), call.shape
    if m.training:
        raise _in_training(call, "in training mode batch norm normalises by the batch statistics, "
                                 "which is not a fixed linear map")
    if m.running_mean is None:
        raise ModuleStateError(
            f"module {call.title!r} ({type(m).__name__}) must track running statistics "
            f"(track_running_stats=True) to be compiled: without them it normalises by the "
            f"batch statistics even in eval mode, which is not a fixed linear map; got "
            f"track_running_stats=False."
        )
    if shape[0] != m.num_features:
        raise ValueError(f"the input's channel axis must equal num_features={m.num_features}; got input shape {shape}.")
    return BatchNorm(call.label, m, shape, call.params, call.pnames, call.dtype)


def _avg_pool(call: Call) -> Fixed:
    m, shape = cast("nn.AvgPool1d | nn.AvgPool2d | nn.AvgPool3d", call.module), call.shape
    P = partial(avg_pool_matrix, shape, m.kernel_size, stride=m.stride, padding=m.padding,
                ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                divisor_override=getattr(m, "divisor_override", None))
    geom = PoolGeometry(shape, m.kernel_size, m.stride, m.padding, 1, m.ceil_mode, type(m).__name__)
    return Fixed(call.label, m, shape, geom.out_shape, P(dtype=call.dtype), exact=exact_pooling(P, call.dtype))


def _adaptive_avg_pool(call: Call) -> Fixed:
    m, shape = cast("_AdaptiveAvgPoolNd", call.module), call.shape
    out = adaptive_output_size(m.output_size, shape[1:])
    P = partial(adaptive_avg_pool_matrix, shape, m.output_size)
    return Fixed(call.label, m, shape, (shape[0], *out), P(dtype=call.dtype), exact=exact_pooling(P, call.dtype))


def _layer_norm(call: Call) -> Normalise:
    m = cast("nn.LayerNorm", call.module)
    ns = tuple(m.normalized_shape)
    if tuple(call.shape[len(call.shape) - len(ns):]) != ns:
        raise ValueError(f"normalized_shape {ns} must be the end of the sample shape {call.shape} "
                         f"(a LayerNorm over channels wants them last: x.permute(0, 2, 3, 1)).")
    return normalise(call, len(ns), None, m.eps, call.pnames)


def _group_norm(call: Call) -> Normalise:
    m = cast("nn.GroupNorm", call.module)
    return normalise(call, None, m.num_groups, m.eps, call.pnames)


def _instance_norm(call: Call) -> Layer:
    """Instance norm: per sample and channel; with running statistics in eval, an affine map
    (read as a batch norm is)."""
    m = cast("_InstanceNorm", call.module)
    if m.track_running_stats and not m.training:
        return BatchNorm(call.label, m, call.shape, call.params, call.pnames, call.dtype)
    return normalise(call, None, call.shape[0], m.eps, call.pnames)


def _rrelu(m: nn.RReLU) -> Elementwise:
    """RReLU in eval: a leaky ReLU of slope ``(lower + upper) / 2``; random in training."""
    if m.training:
        raise ModuleStateError("RReLU must be in eval mode to be compiled: in training mode its slopes "
                               "are random (call model.eval()).")
    return leaky_relu((m.lower + m.upper) / 2)


def _prelu(call: Call) -> PReLU:
    return PReLU(call.label, call.module, call.shape, call.params, call.pnames)


def _no_indices(call: Call) -> None:
    """Max pooling modules must return one tensor."""
    if cast("_MaxPoolNd | _AdaptiveMaxPoolNd", call.module).return_indices:
        raise ModuleStateError(f"module {call.title!r} ({type(call.module).__name__}) must have "
                               f"return_indices=False: a layer of the network passes on one tensor; got "
                               f"return_indices=True.")


def _max_pool(call: Call) -> MaxPool:
    m = call.module
    _no_indices(call)
    return MaxPool(call.label, m, call.shape, call.dtype)


def _adaptive_max_pool(call: Call) -> MaxPool:
    import torch.nn.functional as F

    m = cast("_AdaptiveMaxPoolNd", call.module)
    _no_indices(call)
    pool = getattr(F, f"adaptive_max_pool{len(call.shape) - 1}d")
    return torch_argmax(call, lambda t: pool(t, m.output_size, return_indices=True)[1],
                        adaptive_windows(call.shape, m.output_size))


def _dropout(call: Call) -> Reshape:
    if cast("nn.Module", call.module).training:
        raise _in_training(call, "in training mode dropout zeroes random entries")
    return Reshape(call.label, call.module, call.shape, call.shape, call.dtype)


def _identity(call: Call) -> Reshape:
    return Reshape(call.label, call.module, call.shape, call.shape, call.dtype)


def _flatten(call: Call) -> Reshape:
    m, shape = cast("nn.Flatten", call.module), call.shape
    nd = len(shape) + 1
    s, e = m.start_dim % nd, m.end_dim % nd
    if s == 0:
        raise SampleMixingError(
            f"Flatten {call.title!r} must keep the batch axis (start_dim >= 1); got "
            f"start_dim={m.start_dim}."
        )
    return Reshape(call.label, m, shape, shape[: s - 1] + (prod(shape[s - 1: e]),) + shape[e:], call.dtype)


def _upsample(call: Call) -> Layer:
    m = cast("nn.Upsample", call.module)
    return interpolate(call, m.size, m.scale_factor, m.mode, m.align_corners,
                       getattr(m, "recompute_scale_factor", None), False)


def _softmax(log: bool) -> Builder:
    def build(call: Call) -> Layer:
        return softmax_node(call, cast("nn.Softmax | nn.LogSoftmax", call.module).dim, log)
    return build


def _fold(call: Call) -> Layer:
    m = cast("nn.Fold", call.module)
    return fold(call, m.output_size, m.kernel_size, m.dilation, m.padding, m.stride)


# --------------------------------------------------------------------------- the registry


class Entry(NamedTuple):
    """How one module type compiles: its builder, the names it stands for in the list of
    supported modules, and whether subclasses compile the same way (activations: only the
    torch class itself, since a subclass may change the function)."""

    build: Builder
    names: tuple[str, ...]
    subclasses: bool = True


_REGISTRY: dict[type[nn.Module], Entry] | None = None


def registry() -> dict[type[nn.Module], Entry]:
    """``{module type: Entry}``, in the order of the supported list (needs torch)."""
    global _REGISTRY
    if _REGISTRY is None:
        from torch import nn

        def family(base: str, builder: Builder,  # nn.X1d, nn.X2d, nn.X3d
                   dims: tuple[int, ...] = (1, 2, 3)) -> dict[type[nn.Module], Entry]:
            return {getattr(nn, f"{base}{n}d"): Entry(builder, (f"{base}{n}d",)) for n in dims}

        def function(module_type: type[nn.Module],
                     function_of: Callable[[Any], Elementwise]) -> dict[type[nn.Module], Entry]:
            return {module_type: Entry(activation(lambda call: function_of(call.module)),
                                       (module_type.__name__,), False)}

        def copies(*types: type[nn.Module]) -> dict[type[nn.Module], Entry]:
            return {t: Entry(gather, (t.__name__,)) for t in types}

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
            **function(nn.GELU, lambda m: gelu_function(m.approximate)),
            **function(nn.ReLU6, lambda m: ACTIVATIONS["relu6"]),
            **function(nn.Hardtanh, lambda m: hardtanh(m.min_val, m.max_val)),
            **function(nn.SiLU, lambda m: ACTIVATIONS["silu"]),
            **function(nn.ELU, lambda m: elu(m.alpha)),
            **function(nn.Softplus, lambda m: softplus(m.beta, m.threshold)),
            **function(nn.Hardswish, lambda m: ACTIVATIONS["hardswish"]),
            **function(nn.Mish, lambda m: ACTIVATIONS["mish"]),
            **function(nn.Hardsigmoid, lambda m: ACTIVATIONS["hardsigmoid"]),
            **function(nn.LogSigmoid, lambda m: ACTIVATIONS["logsigmoid"]),
            **function(nn.Softsign, lambda m: ACTIVATIONS["softsign"]),
            **function(nn.Tanhshrink, lambda m: ACTIVATIONS["tanhshrink"]),
            **function(nn.SELU, lambda m: ACTIVATIONS["selu"]),
            **function(nn.CELU, lambda m: celu(m.alpha)),
            **function(nn.Threshold, lambda m: threshold(m.threshold, m.value)),
            **function(nn.Softshrink, lambda m: shrink(m.lambd, False)),
            **function(nn.Hardshrink, lambda m: shrink(m.lambd, True)),
            **function(nn.RReLU, lambda m: _rrelu(m)),
            nn.PReLU: Entry(_prelu, ("PReLU",)),
            nn.LayerNorm: Entry(_layer_norm, ("LayerNorm",)),
            nn.GroupNorm: Entry(_group_norm, ("GroupNorm",)),
            **family("InstanceNorm", _instance_norm),
            nn.Softmax: Entry(_softmax(False), ("Softmax",)),
            nn.LogSoftmax: Entry(_softmax(True), ("LogSoftmax",)),
            **family("AdaptiveMaxPool", _adaptive_max_pool),
            **{t: Entry(gather, (t.__name__,)) for base in ("ZeroPad", "ConstantPad", "ReflectionPad",
                                                            "ReplicationPad", "CircularPad")
               for t in (getattr(nn, f"{base}{n}d") for n in (1, 2, 3))},
            nn.Upsample: Entry(_upsample, ("Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d")),
            **copies(nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle, nn.Unfold, nn.Unflatten),
            nn.Fold: Entry(_fold, ("Fold",)),
        }
    return _REGISTRY


def entry_of(module: nn.Module) -> Entry | None:
    """The registry entry of ``module``: its own type's, or its nearest registered base's.

    A subclass whose ``forward`` is its own (not torch's, nor this package's drop-in
    modules') has none: it may compute something else (a clamp, a causal crop, a weight
    standardisation), so it is traced through, its ``super().forward`` included."""
    reg = registry()
    for cls in type(module).__mro__:
        entry = reg.get(cls)
        if entry is not None and (entry.subclasses or cls is type(module)):
            return entry if _forward_is_torchs(type(module)) else None
    return None


def _forward_is_torchs(cls: type) -> bool:
    """True when the ``forward`` that ``cls`` runs is defined by torch or by this package."""
    for c in cls.__mro__:
        if "forward" in c.__dict__:
            return c.__module__.split(".")[0] in ("torch", __name__.split(".")[0])
    return False


def supported_modules() -> tuple[str, ...]:
    """The module names :func:`compile` accepts, read off the registry."""
    return ("Sequential",) + tuple(name for entry in registry().values() for name in entry.names)
