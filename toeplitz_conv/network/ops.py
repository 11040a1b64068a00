"""The functions and tensor methods a traced model may call, each turned into a node.

One registry per kind of call, ``{display name: (target, builder)}``: :func:`functions`
(``F.relu``, ``torch.cat``, ``+``, ...) and :func:`methods` (``.view``, ``.mean``, ...). A
builder takes a :class:`~.call.Call` and returns a layer (:mod:`.layers`) or a graph node
(:mod:`.nodes`). The kinds of builder, from the simplest:

- copies (reshape, permute, slicing, padding, ``torch.cat``, nearest upsampling, ...): the
  matrix is read off one call of the op (:func:`~.linear_ops.gather_matrices`);
- weighted linear ops (interpolation, functional pooling, sums and means over axes);
- arithmetic: ``x + y``, ``x - y``, ``x * c``, ``x / c``, ``x * y`` (a product node);
- activations and softmax; functional convolutions, linear layers and max pooling
  (:mod:`.functional`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from functools import partial
from math import prod
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ..pool import adaptive_avg_pool_matrix, avg_pool_matrix
from .activations import ACTIVATIONS, Elementwise, celu, elu, hardtanh, leaky_relu, shrink, softplus, threshold
from .call import ModuleStateError, Operand, UnsupportedModuleError
from .functional import (extreme, functional_conv, functional_conv_transpose, functional_group_norm, functional_instance_norm,
                         functional_layer_norm, functional_linear, functional_max_pool, functional_prelu)
from .layers import Activation, Fixed, Layer, Reshape
from .linear_ops import (SampleMixingError, gather_matrices, is_identity, sample_axes,
                         reduce_matrix, separable_matrix)
from .matmul import einsum, matmul
from .nodes import Combine, Product, Softmax

if TYPE_CHECKING:
    import torch

    from .call import Call

    Builder = Callable[[Call], Layer]  # a builder: one traced call -> its node


# --------------------------------------------------------------------------- linear maps


def affine(call: Call, matrix: sp.sparray, bias: np.ndarray | None, out_shape: Sequence[int],
           kind: str | None = None, exact: Callable[[], sp.sparray] | None = None) -> Fixed:
    """A one-input linear node: a reshape when ``matrix`` is the identity and there is no bias
    (``exact``: the matrix in float64 from its formula, :class:`~.affine.Fixed`)."""
    if bias is None and is_identity(matrix):
        return Reshape(call.label, call.module, call.shape, out_shape, call.dtype, kind=kind or call.kind)
    return Fixed(call.label, call.module, call.shape, out_shape, matrix, bias, kind=kind or call.kind, exact=exact)


def exact_pooling(build: Callable[..., sp.sparray], dtype: npt.DTypeLike) -> Callable[[], sp.sparray] | None:
    """For a network not in float64, ``build(dtype=float64)``: a pooling's weights ``1 / k``
    unrounded for the certified analyses; None in float64 (the matrix is already that)."""
    return None if np.dtype(dtype) == np.float64 else partial(build, dtype=np.float64)


def gather(call: Call) -> Fixed | Combine:
    """An op that copies entries (or writes constants): ``y = sum_i W_i x_i + b``."""
    mats, bias, out_shape = gather_matrices(call.apply, [o.shape for o in call.operands], call.dtype,
                                            f"{call.kind} {call.title!r}{call.where}")
    if len(mats) == 1:
        return affine(call, mats[0], bias, out_shape)
    return Combine(call.label, [o.shape for o in call.operands], out_shape, mats, bias, call.kind)


def reduction(mean: bool) -> Builder:
    def build(call: Call) -> Fixed:
        dims = call.arg(1, "dim")
        if dims is None:
            raise SampleMixingError(f"{call.kind} {call.title!r}{call.where} without dim reduces over "
                                    f"the batch axis too; give the sample axes, e.g. x.mean((2, 3)).")
        axes = sample_axes(call, dims, "reduces")
        M = reduce_matrix(call.shape, axes, mean, call.dtype)
        return affine(call, M, None, tuple(call.value.shape[1:]))
    return build


def interpolate(call: Call, size: int | Sequence[int] | None,
                scale_factor: float | Sequence[float] | None, mode: str, align_corners: bool | None,
                recompute_scale_factor: bool | None, antialias: bool) -> Fixed:
    """Upsampling/interpolation: separable, one small probe per spatial axis."""
    import torch.nn.functional as F

    nsp = len(call.shape) - 1

    def per_axis(v: Any, d: int, one: float) -> tuple[Any, ...] | None:  # a size or a scale
        if v is None:
            return None
        v = tuple(v) if isinstance(v, (tuple, list)) else (v,) * nsp
        return tuple(v[d] if e == d else one for e in range(nsp))

    def apply_axis(d: int, probe: torch.Tensor) -> torch.Tensor:
        return F.interpolate(probe, size=per_axis(size, d, 1), scale_factor=per_axis(scale_factor, d, 1.0),
                             mode=mode, align_corners=align_corners,
                             recompute_scale_factor=recompute_scale_factor, antialias=antialias)

    M, out_shape = separable_matrix(apply_axis, call.shape, call.dtype)
    return affine(call, M, None, out_shape)


def functional_interpolate(call: Call) -> Fixed:
    return interpolate(call, call.arg(1, "size"), call.arg(2, "scale_factor"), call.arg(3, "mode", "nearest"),
                       call.arg(4, "align_corners"), call.arg(5, "recompute_scale_factor"),
                       call.arg(6, "antialias", False))


def functional_avg_pool(call: Call) -> Fixed:
    """``F.avg_pool1d/2d/3d``: the pooling matrix from its geometry (:func:`~toeplitz_conv.avg_pool_matrix`)."""
    kernel = call.arg(1, "kernel_size")
    P = partial(avg_pool_matrix, call.shape, kernel, stride=call.arg(2, "stride") or kernel,
                padding=call.arg(3, "padding", 0), ceil_mode=call.arg(4, "ceil_mode", False),
                count_include_pad=call.arg(5, "count_include_pad", True), divisor_override=call.arg(6, "divisor_override"))
    return affine(call, P(dtype=call.dtype), None, tuple(call.value.shape[1:]), exact=exact_pooling(P, call.dtype))


def functional_adaptive_avg_pool(call: Call) -> Fixed:
    """``F.adaptive_avg_pool1d/2d/3d``: :func:`~toeplitz_conv.adaptive_avg_pool_matrix`."""
    P = partial(adaptive_avg_pool_matrix, call.shape, call.arg(1, "output_size"))
    return affine(call, P(dtype=call.dtype), None, tuple(call.value.shape[1:]), exact=exact_pooling(P, call.dtype))


# --------------------------------------------------------------------------- arithmetic


def _broadcast(call: Call, operand: Operand) -> sp.csr_array:
    """The 0/1 matrix that broadcasts ``operand`` to the call's output shape."""
    full = tuple(call.value.shape)
    mats, _, _ = gather_matrices(lambda t: t.broadcast_to(full), [operand.shape], call.dtype,
                                 f"{call.kind} {call.title!r}")
    return mats[0]


def _constant(call: Call, c: object) -> np.ndarray:
    """A constant operand as a per-sample vector over the output. (A parameter here is refused
    by the compiler, which checks every call's arguments against the node's parameters.)"""
    import torch

    t = torch.as_tensor(c, dtype=torch.float64).detach().broadcast_to(tuple(call.value.shape))
    if (t[0] != t[1]).any():
        raise SampleMixingError(f"{call.kind} {call.title!r}{call.where}: a constant operand differs "
                                f"between the samples of a batch.")
    return t[0].reshape(-1).numpy().astype(call.dtype)


def _no_division(call: Call) -> UnsupportedModuleError:
    return UnsupportedModuleError(f"{call.kind} {call.title!r}{call.where} divides by a tensor that "
                                  f"depends on the input, which compile does not support.")


def arithmetic(op: str) -> Builder:
    """``+``, ``-``, ``*``, ``/`` (and their in-place and torch forms), ``alpha`` included."""
    def build(call: Call) -> Fixed | Combine | Product:
        a, b = call.arg(0, "input"), call.arg(1, "other")
        alpha = call.kwargs.get("alpha", 1)
        if not isinstance(a, Operand):  # c + x, c * x, c - x, c / x
            if op == "div":
                raise _no_division(call)
            W, c = _broadcast(call, b), _constant(call, a)
            if op == "mul":
                return affine(call, (sp.diags_array(c) @ W).tocsr(), None, tuple(call.value.shape[1:]))
            sign = -alpha if op == "sub" else alpha
            return affine(call, (sign * W).tocsr(), c, tuple(call.value.shape[1:]))
        out_shape, Wa = tuple(call.value.shape[1:]), _broadcast(call, a)
        if isinstance(b, Operand):
            Wb = _broadcast(call, b)
            if op == "mul":
                return Product(call.label, [a.shape, b.shape], out_shape, [Wa, Wb], call.kind)
            if op == "div":
                raise _no_division(call)
            return Combine(call.label, [a.shape, b.shape], out_shape,
                           [Wa, ((-alpha if op == "sub" else alpha) * Wb).tocsr()], None, call.kind)
        c = _constant(call, b)
        if op in ("mul", "div"):
            return affine(call, (sp.diags_array(c if op == "mul" else 1 / c) @ Wa).tocsr(), None, out_shape)
        return affine(call, Wa, (-alpha if op == "sub" else alpha) * c, out_shape)
    return build


def negate(call: Call) -> Fixed:
    n = prod(call.shape)
    return affine(call, -sp.eye_array(n, dtype=call.dtype, format="csr"), None, call.shape)


# --------------------------------------------------------------------------- activations, softmax


def activation(function_of: Callable[[Call], Elementwise]) -> Builder:
    """The builder of an elementwise function ``function_of(call) -> Elementwise``."""
    def build(call: Call) -> Activation:
        return Activation(call.label, call.module, call.shape, function_of(call), kind=call.kind)
    return build


def functional_rrelu(call: Call) -> Activation:
    """``F.rrelu(x, lower, upper, training=False)``: a leaky ReLU of the mean slope."""
    if call.arg(3, "training", False):
        raise ModuleStateError(f"{call.kind} {call.title!r}{call.where} must be called with training=False "
                               f"to be compiled: in training mode its slopes are random.")
    lower, upper = call.arg(1, "lower", 1 / 8), call.arg(2, "upper", 1 / 3)
    return Activation(call.label, call.module, call.shape, leaky_relu((lower + upper) / 2), kind=call.kind)


def gelu_function(approximate: str) -> Elementwise:
    if approximate not in ("none", "tanh"):  # pragma: no cover - torch refuses it too
        raise ValueError(f"GELU approximate must be 'none' or 'tanh'; got {approximate!r}.")
    return ACTIVATIONS["gelu_tanh" if approximate == "tanh" else "gelu"]


def softmax_node(call: Call, dim: int | None, log: bool) -> Softmax:
    """Softmax (or log-softmax) along tensor dim ``dim``, which must be given and not the batch's."""
    if dim is None:  # it names the call itself: passed on as it is
        raise ModuleStateError(f"{call.kind} {call.title!r}{call.where} needs an explicit dim (the axis "
                         f"of the softmax); got dim=None.")
    axis = sample_axes(call, dim, "normalises")[0]
    return Softmax(call.label, call.module, call.shape, axis, log, call.kind)


def softmax(log: bool, dim_at: int = 1) -> Builder:
    def build(call: Call) -> Softmax:
        return softmax_node(call, call.arg(dim_at, "dim"), log)
    return build


def identity_in_eval(training_arg: int) -> Builder:
    """Stochastic depth and its kin: the identity once ``training`` (argument
    ``training_arg``) is False; refused in training mode."""
    def build(call: Call) -> Fixed | Combine:
        if call.arg(training_arg, "training", True):
            raise ModuleStateError(f"{call.kind} {call.title!r}{call.where} must be called with training=False "
                                   f"to be compiled: in training mode it drops random samples or paths "
                                   f"(pass training=self.training and call model.eval()).")
        return gather(call)
    return build


def dropout(call: Call) -> Fixed | Combine:
    if call.arg(2, "training", True):
        raise ModuleStateError(f"{call.kind} {call.title!r}{call.where} must be called with "
                               f"training=False to be compiled: in training mode dropout zeroes random "
                               f"entries (pass training=self.training and call model.eval()).")
    return gather(call)


# --------------------------------------------------------------------------- the registries

_FUNCTIONS: dict[str, tuple[Callable[..., Any], Builder]] | None = None
_METHODS: dict[str, tuple[str, Builder]] | None = None


def functions() -> dict[str, tuple[Callable[..., Any], Builder]]:
    """``{display name: (target, builder)}`` of the supported functions (needs torch)."""
    global _FUNCTIONS
    if _FUNCTIONS is None:
        import torch
        import torch.nn.functional as F

        ar = arithmetic
        fixed = {name: ACTIVATIONS[name] for name in ("relu", "relu6", "silu", "mish", "hardswish", "sigmoid",
                                                      "tanh", "hardsigmoid", "logsigmoid", "softsign",
                                                      "tanhshrink", "selu")}

        def act(name: str) -> Builder:
            return activation(lambda call: fixed[name])

        table = {
            "+": (operator.add, ar("add")), "+=": (operator.iadd, ar("add")),
            "-": (operator.sub, ar("sub")), "-=": (operator.isub, ar("sub")),
            "*": (operator.mul, ar("mul")), "*=": (operator.imul, ar("mul")),
            "/": (operator.truediv, ar("div")), "/=": (operator.itruediv, ar("div")),
            "unary -": (operator.neg, negate), "torch.neg": (torch.neg, negate),
            "torch.add": (torch.add, ar("add")), "torch.sub": (torch.sub, ar("sub")),
            "torch.mul": (torch.mul, ar("mul")), "torch.div": (torch.div, ar("div")),
            "[] (indexing)": (operator.getitem, gather),
            **{f"torch.{n}": (getattr(torch, n), gather) for n in (
                "flatten", "reshape", "permute", "transpose", "swapaxes", "movedim", "squeeze", "unsqueeze",
                "flip", "roll", "cat", "concat", "stack", "channel_shuffle", "pixel_shuffle", "pixel_unshuffle",
                "narrow", "chunk", "split", "unbind", "tensor_split", "where")},
            **{f"F.{n}": (getattr(F, n), gather) for n in ("pad", "pixel_shuffle", "pixel_unshuffle", "unfold")},
            "F.fold": (F.fold, functional_fold),
            **{f"F.{n}": (getattr(F, n), dropout) for n in ("dropout", "dropout1d", "dropout2d", "dropout3d",
                                                            "alpha_dropout", "feature_alpha_dropout")},
            "F.interpolate": (F.interpolate, functional_interpolate),
            "@": (operator.matmul, matmul), "torch.matmul": (torch.matmul, matmul), "torch.bmm": (torch.bmm, matmul),
            "torch.einsum": (torch.einsum, einsum),
            "torch.mean": (torch.mean, reduction(True)), "torch.sum": (torch.sum, reduction(False)),
            "torch.amax": (torch.amax, extreme(True, True)), "torch.amin": (torch.amin, extreme(False, True)),
            "torch.max": (torch.max, extreme(True, False)), "torch.min": (torch.min, extreme(False, False)),
            **{f"F.avg_pool{n}d": (getattr(F, f"avg_pool{n}d"), functional_avg_pool) for n in (1, 2, 3)},
            **{f"F.adaptive_avg_pool{n}d": (getattr(F, f"adaptive_avg_pool{n}d"), functional_adaptive_avg_pool)
               for n in (1, 2, 3)},
            **{f"F.max_pool{n}d": (getattr(F, f"max_pool{n}d"), functional_max_pool) for n in (1, 2, 3)},
            **{f"F.adaptive_max_pool{n}d": (getattr(F, f"adaptive_max_pool{n}d"), functional_max_pool)
               for n in (1, 2, 3)},
            **{f"F.conv{n}d": (getattr(F, f"conv{n}d"), functional_conv) for n in (1, 2, 3)},
            **{f"F.conv_transpose{n}d": (getattr(F, f"conv_transpose{n}d"), functional_conv_transpose)
               for n in (1, 2, 3)},
            "F.linear": (F.linear, functional_linear),
            **{f"F.{n}": (getattr(F, n), act(n)) for n in ("relu", "relu6", "silu", "mish", "hardswish",
                                                           "sigmoid", "tanh")},
            **{f"torch.{n}": (getattr(torch, n), act(n)) for n in ("relu", "sigmoid", "tanh")},
            "F.leaky_relu": (F.leaky_relu, activation(lambda c: leaky_relu(c.arg(1, "negative_slope", 0.01)))),
            "F.hardtanh": (F.hardtanh, activation(lambda c: hardtanh(c.arg(1, "min_val", -1.0),
                                                                     c.arg(2, "max_val", 1.0)))),
            "F.elu": (F.elu, activation(lambda c: elu(c.arg(1, "alpha", 1.0)))),
            "F.softplus": (F.softplus, activation(lambda c: softplus(c.arg(1, "beta", 1.0),
                                                                     c.arg(2, "threshold", 20.0)))),
            "F.gelu": (F.gelu, activation(lambda c: gelu_function(c.arg(1, "approximate", "none")))),
            **{f"F.{n}": (getattr(F, n), act(n)) for n in ("hardsigmoid", "logsigmoid", "softsign", "tanhshrink",
                                                           "selu")},
            "torch.selu": (torch.selu, act("selu")),
            "F.celu": (F.celu, activation(lambda c: celu(c.arg(1, "alpha", 1.0)))),
            "F.threshold": (F.threshold, activation(lambda c: threshold(c.arg(1, "threshold"), c.arg(2, "value")))),
            "F.softshrink": (F.softshrink, activation(lambda c: shrink(c.arg(1, "lambd", 0.5), False))),
            "F.hardshrink": (F.hardshrink, activation(lambda c: shrink(c.arg(1, "lambd", 0.5), True))),
            "F.rrelu": (F.rrelu, functional_rrelu), "F.prelu": (F.prelu, functional_prelu),
            "F.layer_norm": (F.layer_norm, functional_layer_norm), "F.group_norm": (F.group_norm, functional_group_norm),
            "F.instance_norm": (F.instance_norm, functional_instance_norm),
            "F.softmax": (F.softmax, softmax(False)), "F.log_softmax": (F.log_softmax, softmax(True)),
            "torch.softmax": (torch.softmax, softmax(False)), "torch.log_softmax": (torch.log_softmax, softmax(True)),
        }
        try:  # torchvision's stochastic depth (EfficientNet, ConvNeXt): fx keeps it as one call
            from torchvision.ops import stochastic_depth  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            pass
        else:
            table["torchvision.ops.stochastic_depth"] = (stochastic_depth, identity_in_eval(3))
        _FUNCTIONS = table
    return _FUNCTIONS


def fold(call: Call, output_size: int | tuple[int, ...], kernel_size: int | tuple[int, ...],
         dilation: int | tuple[int, ...] = 1, padding: int | tuple[int, ...] = 0,
         stride: int | tuple[int, ...] = 1) -> Fixed:
    """``F.fold`` is the transpose of ``F.unfold`` with the same arguments."""
    import torch.nn.functional as F

    kw = dict(kernel_size=kernel_size, dilation=dilation, padding=padding, stride=stride)
    size = _pair(output_size)
    c = call.shape[0] // prod(_pair(kernel_size, len(size)))
    out_shape = (c, *size)
    mats, _, in_shape = gather_matrices(lambda t: F.unfold(t, **kw), [out_shape], call.dtype,
                                        f"{call.kind} {call.title!r}")
    if in_shape != tuple(call.shape):
        raise ValueError(f"{call.kind} {call.title!r}: input shape {call.shape} does not match the "
                         f"{in_shape} its arguments unfold to.")
    return affine(call, mats[0].T.tocsr(), None, out_shape)


def functional_fold(call: Call) -> Fixed:
    return fold(call, call.arg(1, "output_size"), call.arg(2, "kernel_size"), call.arg(3, "dilation", 1),
                call.arg(4, "padding", 0), call.arg(5, "stride", 1))


def _pair(v: int | tuple[int, ...] | list[int], n: int = 2) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def methods() -> dict[str, tuple[str, Builder]]:
    """``{display name: (method name, builder)}`` of the supported tensor methods."""
    global _METHODS
    if _METHODS is None:
        fns = functions()
        ar = arithmetic
        table: dict[str, tuple[str, Builder]] = {f".{n}": (n, gather) for n in (
            "view", "reshape", "flatten", "permute", "transpose", "swapaxes", "movedim", "squeeze",
            "unsqueeze", "contiguous", "clone", "flip", "roll", "expand", "repeat", "unflatten", "narrow",
            "expand_as", "view_as", "reshape_as", "chunk", "split", "unbind", "tensor_split", "masked_fill")}
        table.update({
            ".add": ("add", ar("add")), ".add_": ("add_", ar("add")), ".sub": ("sub", ar("sub")),
            ".mul": ("mul", ar("mul")), ".mul_": ("mul_", ar("mul")), ".div": ("div", ar("div")),
            ".neg": ("neg", negate),
            ".mean": ("mean", reduction(True)), ".sum": ("sum", reduction(False)),
            ".matmul": ("matmul", matmul), ".bmm": ("bmm", matmul),
            ".amax": ("amax", extreme(True, True)), ".amin": ("amin", extreme(False, True)),
            ".max": ("max", extreme(True, False)), ".min": ("min", extreme(False, False)),
            ".softmax": ("softmax", softmax(False, 1)), ".log_softmax": ("log_softmax", softmax(True, 1)),
            ".relu": ("relu", fns["F.relu"][1]), ".relu_": ("relu_", fns["F.relu"][1]),
            ".sigmoid": ("sigmoid", fns["F.sigmoid"][1]), ".tanh": ("tanh", fns["F.tanh"][1]),
        })
        _METHODS = table
    return _METHODS


def supported_ops() -> tuple[str, ...]:
    """The functions and tensor methods :func:`compile` accepts inside ``forward``."""
    return tuple(functions()) + tuple(methods())


def returns_parts(build: Builder) -> bool:
    """True for the builders whose op may return several tensors, each then read by index:
    copies (``chunk``, ``split``, ``unbind``) and extremes (``torch.max(x, dim)``)."""
    return build is gather or getattr(build, "__qualname__", "").startswith("extreme.")
