"""Functional calls that are layers: ``F.conv2d(x, self.weight, self.bias, ...)``,
``F.conv_transpose2d``, ``F.linear``, ``F.prelu``, the extremes over axes (``torch.amax``,
``torch.max(x, dim)``: selections like max pooling), the normalisations (``F.layer_norm``,
``F.group_norm``, ``F.instance_norm``, and their modules' builders), and max pooling (functional and adaptive) whose argmax
comes from torch's ``return_indices``.

A functional layer's weight and bias must be parameters of the model read directly
(``self.weight``): the network returns their gradients under their names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from math import prod
from typing import TYPE_CHECKING, Any

import numpy as np

from ..arithmetic import conv_transpose_output_size
from ..geometry import conv_geometry
from ..pool_geometry import PoolGeometry
from ..pool import adaptive_avg_pool_matrix
from .call import ModuleStateError, Operand, UnsupportedModuleError
from .layers import Conv, ConvTranspose, Linear, MaxPool, PReLU, Selection, max_windows
from .linear_ops import SampleMixingError, sample_axes
from .nodes import Normalise

if TYPE_CHECKING:
    import torch

    from .call import Call
    from .ops import Builder


# --------------------------------------------------------------------------- max pooling


def torch_argmax(call: Call, pool: Callable[[torch.Tensor], torch.Tensor],
                 windows: int | None) -> MaxPool:
    """A max pooling node whose argmax comes from torch (``return_indices=True``);
    ``windows``: the most windows an input entry lies in."""
    import torch

    shape = call.shape

    def indices(Xb: np.ndarray) -> np.ndarray:
        n = Xb.shape[0]
        with torch.no_grad():
            idx = pool(torch.from_numpy(np.ascontiguousarray(Xb).reshape(n, *shape)))
        return idx.reshape(n, shape[0], -1).numpy()
    return MaxPool(call.label, call.module, shape, call.dtype, kind=call.kind, indices=indices,
                   out_shape=tuple(call.value.shape[1:]), windows=windows)


def adaptive_windows(shape: Sequence[int], output_size: int | None | Sequence[int | None]) -> int:
    """The most adaptive pooling windows an input entry lies in (they are the average's)."""
    P = adaptive_avg_pool_matrix((1, *shape[1:]), output_size)
    return int(np.diff(P.tocsc().indptr).max())


def functional_max_pool(call: Call) -> MaxPool:
    adaptive = call.kind.startswith("F.adaptive")
    if call.arg(2 if adaptive else 6, "return_indices", False):
        raise ModuleStateError(f"{call.kind} {call.title!r}{call.where} must have return_indices=False: "
                               f"a node of the network passes on one tensor.")
    if adaptive:
        windows = adaptive_windows(call.shape, call.arg(1, "output_size"))
    else:
        kernel = call.arg(1, "kernel_size")
        geom = PoolGeometry(call.shape, kernel, call.arg(2, "stride") or kernel, call.arg(3, "padding", 0),
                            call.arg(4, "dilation", 1), call.arg(5, "ceil_mode", False), "MaxPool")
        windows = max_windows(geom.table(), prod(call.shape[1:]))
    return torch_argmax(call, lambda t: call.apply(t, return_indices=True)[1], windows)


def extreme(largest: bool, split_ties: bool) -> Builder:
    """``torch.amax/amin(x, dim)`` (ties share the gradient) and ``torch.max/min(x, dim)``
    (the values; the first extreme takes it): a data-dependent selection, like max pooling."""
    import torch

    def build(call: Call) -> Selection:
        dims = call.arg(1, "dim")
        if isinstance(dims, Operand):
            raise UnsupportedModuleError(f"{call.kind} {call.title!r}{call.where} of two tensors (the elementwise "
                                         f"extreme) is not supported; torch.maximum(a, b) = b + relu(a - b) is.")
        if dims is None or (isinstance(dims, (tuple, list)) and not dims):
            raise SampleMixingError(f"{call.kind} {call.title!r}{call.where} without dim reduces over the batch "
                                    f"axis too; give the sample axes, e.g. x.amax((2, 3)).")
        values = call.value
        if not (isinstance(values, torch.Tensor) and values.is_floating_point()):
            raise UnsupportedModuleError(f"{call.kind} {call.title!r}{call.where}: the indices of the extremes are "
                                         f"integers, with no derivative; compile reads the values (.values, [0]).")
        axes = sample_axes(call, dims, "reduces")
        return Selection(call.label, call.module, call.shape, tuple(values.shape[1:]), call.dtype, axes, largest,
                         split_ties, kind=call.kind)
    return build


# --------------------------------------------------------------------------- conv and linear layers


def _weights(call: Call, names: Iterable[tuple[int, str]]) -> dict[str, str]:
    """``{local name: full parameter name}`` of a functional layer's weight and bias."""
    out = {}
    for i, local in names:
        t = call.arg(i, local)
        if t is None:
            continue
        full = call.param_name(t)
        if full is None:
            raise UnsupportedModuleError(
                f"{call.kind} {call.title!r}{call.where}: its {local} must be a parameter of the model "
                f"(read as self.<name>); got a tensor computed in forward, whose gradient compile "
                f"could not return.")
        out[local] = full
    return out


class _Options:
    """The attributes a conv layer reads from its module, for a functional call."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def functional_conv(call: Call) -> Conv:
    g = dict(stride=call.arg(3, "stride", 1), padding=call.arg(4, "padding", 0),
             dilation=call.arg(5, "dilation", 1), groups=call.arg(6, "groups", 1), padding_mode="zeros")
    pnames = _weights(call, [(1, "weight"), (2, "bias")])
    w = call.params[pnames["weight"]]
    geom = conv_geometry(w.shape, call.shape, **g)
    return Conv(call.label, _Options(**g), call.shape, geom.out_shape, call.params, pnames, kind=call.kind)


def functional_conv_transpose(call: Call) -> ConvTranspose:
    g = dict(stride=call.arg(3, "stride", 1), padding=call.arg(4, "padding", 0),
             output_padding=call.arg(5, "output_padding", 0), groups=call.arg(6, "groups", 1),
             dilation=call.arg(7, "dilation", 1))
    pnames = _weights(call, [(1, "weight"), (2, "bias")])
    w = call.params[pnames["weight"]]
    out = conv_transpose_output_size(call.shape[1:], w.shape[2:], stride=g["stride"], padding=g["padding"],
                                     output_padding=g["output_padding"], dilation=g["dilation"])
    return ConvTranspose(call.label, _Options(**g), call.shape, (w.shape[1] * g["groups"], *out),
                         call.params, pnames, kind=call.kind)


def functional_linear(call: Call) -> Linear:
    pnames = _weights(call, [(1, "weight"), (2, "bias")])
    w = call.params[pnames["weight"]]
    return Linear(call.label, None, call.shape, call.shape[:-1] + (w.shape[0],), call.params, pnames,
                  kind=call.kind)


def functional_prelu(call: Call) -> PReLU:
    """``F.prelu(x, self.weight)``: the slopes a parameter of the model."""
    return PReLU(call.label, None, call.shape, call.params, _weights(call, [(1, "weight")]), kind=call.kind)


# --------------------------------------------------------------------------- normalisation


def normalise(call: Call, trailing: int | None, groups: int | None, eps: float,
              pnames: dict[str, str]) -> Normalise:
    """A normalisation node over the sample's last ``trailing`` axes (layer norm: its
    parameters have those axes' shape) or over ``groups`` groups of channels (group norm; one
    group per channel: instance norm; parameters per channel)."""
    shape, n = call.shape, prod(call.shape)
    if trailing is not None:
        size = prod(shape[len(shape) - trailing:])
        index, param_index = np.arange(n).reshape(-1, size), np.arange(n) % size
    else:
        c = shape[0]
        if groups is None or groups < 1 or c % groups:
            raise ValueError(f"{call.kind} {call.title!r}{call.where}: {c} channels do not split into "
                             f"{groups} groups.")
        index, param_index = np.arange(n).reshape(groups, -1), np.arange(n) // prod(shape[1:])
    if index.shape[1] < 2:
        raise UnsupportedModuleError(f"{call.kind} {call.title!r}{call.where} normalises groups of one entry "
                                     f"(its output is beta, whatever the input): nothing to compile.")
    return Normalise(call.label, call.module, shape, index, eps, call.params, pnames,
                     param_index if pnames else None, kind=call.kind)


def functional_layer_norm(call: Call) -> Normalise:
    ns = call.arg(1, "normalized_shape")
    ns = (ns,) if isinstance(ns, int) else tuple(ns)
    if tuple(call.shape[len(call.shape) - len(ns):]) != ns:
        raise ValueError(f"{call.kind} {call.title!r}{call.where}: normalized_shape {ns} is not the end of "
                         f"the sample shape {call.shape}.")
    return normalise(call, len(ns), None, call.arg(4, "eps", 1e-5), _weights(call, [(2, "weight"), (3, "bias")]))


def functional_group_norm(call: Call) -> Normalise:
    return normalise(call, None, call.arg(1, "num_groups"), call.arg(4, "eps", 1e-5),
                     _weights(call, [(2, "weight"), (3, "bias")]))


def functional_instance_norm(call: Call) -> Normalise:
    if not call.arg(5, "use_input_stats", True):
        raise UnsupportedModuleError(f"{call.kind} {call.title!r}{call.where} with use_input_stats=False "
                                     f"normalises with running statistics passed in forward: use an "
                                     f"InstanceNorm module (its buffers are read), or BatchNorm.")
    return normalise(call, None, call.shape[0], call.arg(7, "eps", 1e-5),
                     _weights(call, [(3, "weight"), (4, "bias")]))
