"""Normalised geometry of a convolution layer and torch's rules on its arguments.

A :class:`ConvGeometry` is everything that fixes the sparsity pattern of a convolution matrix
(shapes, stride, padding, dilation, groups, padding mode) and nothing else: no weights (a
pooling layer's is :class:`~toeplitz_conv.pool_geometry.PoolGeometry`). Every rule torch
applies to these arguments is checked here, with its message; the convolution's output sizes
come from the convolution arithmetic (:mod:`toeplitz_conv.arithmetic`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import prod
from typing import Any, Literal, TypeVar, get_args

import numpy as np

from ._args import (as_array, as_tuple, check_choice, check_int_range, int_tuple, is_int,
                    positive_int, shape_tuple)
from .arithmetic import (INPUT_SHAPE, InputLabel, Padding, check_output_padding, conv_out, conv_transpose_out,
                         padding_pairs, padding_sides, padding_text, same_sides)

_F = TypeVar("_F", bound=Callable[..., Any])

#: torch's padding modes (``nn.ConvNd(padding_mode=...)``), as a type and as the tuple of them.
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
PADDING_MODES: tuple[str, ...] = get_args(PaddingMode)
#: Those and ``'symmetric'`` (the edge repeated: ``numpy.pad``'s, TensorFlow's MirrorPad
#: SYMMETRIC; torch has none): what the matrices take.
ALL_PADDING_MODES: tuple[str, ...] = PADDING_MODES + ("symmetric",)

#: The parameter text shared by every function that takes a convolution's geometry.
GEOMETRY_PARAMETERS = """stride : int or tuple of int, default 1
    padding : int, tuple of int, (low, high) pairs, or a name, default 0
        As in torch: an int pads every side by it; ``'same'`` (stride 1) pads
        ``dilation * (kernel - 1)`` in total, the odd extra on the high side; ``'valid'``
        none. Per side: ``((top, bottom), (left, right))``. TensorFlow's and ONNX's
        ``'SAME'`` = ``'SAME_UPPER'`` (any stride: ``ceil(i / s)`` outputs, the odd extra at
        the end), ``'SAME_LOWER'`` (at the start), ``'VALID'``.
    dilation : int or tuple of int, default 1
    groups : int, default 1
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular', 'symmetric'}, default 'zeros'
        Exactly as ``torch.nn.ConvNd(padding_mode=...)``; ``'symmetric'`` repeats the edge
        (``numpy.pad``'s, TensorFlow's MirrorPad SYMMETRIC)."""


def with_geometry_doc(f: _F) -> _F:
    """Put :data:`GEOMETRY_PARAMETERS` in place of ``GEOMETRY_PARAMETERS`` in a docstring."""
    if f.__doc__:  # None under python -OO
        f.__doc__ = f.__doc__.replace("GEOMETRY_PARAMETERS", GEOMETRY_PARAMETERS)
    return f


@dataclass(frozen=True)
class ConvGeometry:
    """The geometry of ``y = conv(x, W)`` for one sample, all tuples per spatial dimension.

    ``out_spatial`` is normally the convolution arithmetic's output size; the geometry of a
    transposed convolution may keep fewer output positions (see
    :func:`conv_transpose_geometry`).
    """

    in_channels: int
    out_channels: int
    groups: int
    kernel: tuple[int, ...]
    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_lo: tuple[int, ...]
    pad_hi: tuple[int, ...]
    padding_mode: str = "zeros"

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (1, 2 or 3)."""
        return len(self.kernel)

    @property
    def cin_per_group(self) -> int:
        """Input channels each output channel reads: ``C_in / groups``."""
        return self.in_channels // self.groups

    @property
    def cout_per_group(self) -> int:
        """Output channels of each group: ``C_out / groups``."""
        return self.out_channels // self.groups

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.cin_per_group, *self.kernel)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.in_channels, *self.in_spatial)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.out_channels, *self.out_spatial)

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the convolution matrix: ``(out_features, in_features)``."""
        return prod(self.out_shape), prod(self.in_shape)

    @property
    def taps(self) -> int:
        """Weights seen by one output entry: ``C_in/groups * prod(kernel)``."""
        return self.cin_per_group * prod(self.kernel)

    def describe(self) -> str:
        """The layer as a torch constructor call, defaults left out: the title of its figures.

        Examples
        --------
        >>> conv_geometry((16, 3, 3, 3), (3, 32, 32), padding=1).describe()
        'Conv2d(3, 16, 3, padding=1)'
        >>> conv_geometry((4, 1, 3, 5), (2, 9, 9), stride=(2, 1), groups=2, padding_mode="reflect").describe()
        "Conv2d(2, 4, (3, 5), stride=(2, 1), groups=2, padding_mode='reflect')"
        """

        def short(t: Sequence[object]) -> str:
            return str(t[0]) if len(set(t)) == 1 else str(tuple(t))

        parts = [str(self.in_channels), str(self.out_channels), short(self.kernel)]
        if any(s != 1 for s in self.stride):
            parts.append(f"stride={short(self.stride)}")
        if self.pad_lo != self.pad_hi:  # 'same' with an even extent: the extra on the high side
            parts.append("padding=" + short(tuple(f"{lo}|{hi}" for lo, hi in zip(self.pad_lo, self.pad_hi))))
        elif any(self.pad_lo):
            parts.append(f"padding={short(self.pad_lo)}")
        if any(d != 1 for d in self.dilation):
            parts.append(f"dilation={short(self.dilation)}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.padding_mode != "zeros":
            parts.append(f"padding_mode={self.padding_mode!r}")
        return f"Conv{self.ndim}d({', '.join(parts)})"


# --------------------------------------------------------------------------- checks


def check_padding_mode(padding_mode: object) -> str:
    return check_choice("padding_mode", padding_mode, ALL_PADDING_MODES)


def check_weight_shape(weight_shape: object, layout: str, name: str = "weight shape") -> tuple[int, ...]:
    """A weight shape of 3, 4 or 5 positive ints; ``layout`` names its axes for the message,
    ``name`` the argument (``'weight_shape'`` where the caller passed a shape)."""
    if isinstance(weight_shape, (str, bytes)):
        raise TypeError(f"{name} must be a tuple of ints {layout}; got {weight_shape!r}.")
    wshape = as_tuple(weight_shape, name, f"a tuple of ints {layout}")
    if len(wshape) not in (3, 4, 5):
        what = "weight must have 3, 4 or 5 dimensions" if name == "weight shape" else f"{name} must have 3, 4 or 5 entries"
        raise ValueError(
            f"{what}, {layout} for a 1D, 2D or 3D convolution; got {name} {wshape}."
        )
    if not all(is_int(s) for s in wshape) or any(s < 1 for s in wshape):
        raise ValueError(f"{name} must contain positive ints {layout}; got {wshape}.")
    check_int_range(name, *wshape)
    return tuple(int(s) for s in wshape)


def check_weight(weight: object, name: str = "weight") -> np.ndarray:
    """A convolution weight as a numeric array of 3, 4 or 5 dimensions."""
    w = as_array(weight, name)
    if w.ndim not in (3, 4, 5):
        raise ValueError(
            f"{name} must have 3, 4 or 5 dimensions, (C_out, C_in/groups, *kernel) for a "
            f"1D, 2D or 3D convolution; got {name}.ndim={w.ndim} (shape {tuple(w.shape)})."
        )
    if w.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {tuple(w.shape)}.")
    return w


def _input_shape(input_shape: object, n: int, label: InputLabel = INPUT_SHAPE) -> tuple[int, ...]:
    """One sample's shape; an empty axis is reported on what the caller passed (``x``)."""
    items = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if label.value is not None and items is not None and any(is_int(v) and v == 0 for v in items):
        raise ValueError(
            f"{label.shape} must not have an empty axis (every size at least 1); got "
            f"{label.shape}={tuple(label.value)}."
        )
    return shape_tuple("input_shape", input_shape, n + 1,
                       f"(C_in, {', '.join('DHW'[3 - n:])}) of one sample for a {n}D kernel")


def _groups(groups: object, in_channels: int, out_channels: int, weight_shape: tuple[int, ...],
            label: InputLabel) -> int:
    groups = positive_int("groups", groups)
    if out_channels % groups:
        raise ValueError(
            f"groups must divide the output channels weight.shape[0]={out_channels}; "
            f"got groups={groups} (weight shape {tuple(weight_shape)})."
        )
    if in_channels != weight_shape[1] * groups:
        raise ValueError(
            f"{label.channels} must equal weight.shape[1] * groups "
            f"({weight_shape[1]} * {groups} = {weight_shape[1] * groups}); "
            f"got {label.channels}={in_channels}."
        )
    return groups


def _transpose_groups(groups: object, weight_shape: tuple[int, ...], in_channels: int,
                      label: InputLabel) -> int:
    groups = positive_int("groups", groups)
    if in_channels != weight_shape[0]:
        raise ValueError(
            f"{label.channels} must equal weight.shape[0] ({weight_shape[0]}) for a transposed "
            f"convolution (weight layout (C_in, C_out/groups, *kernel)); got "
            f"{label.channels}={in_channels}."
        )
    if weight_shape[0] % groups:
        raise ValueError(
            f"groups must divide the input channels weight.shape[0]={weight_shape[0]} of a "
            f"transposed convolution; got groups={groups}."
        )
    return groups


def _check_padding_fits(mode: str, lo: tuple[int, ...], hi: tuple[int, ...],
                        in_spatial: tuple[int, ...]) -> None:
    """torch's limits on padding for the non-zero padding modes."""
    sizes = tuple(in_spatial) * 2
    if mode == "reflect" and any(p >= n for p, n in zip(lo + hi, sizes)):
        raise ValueError(
            f"padding must be smaller than the input size in every dimension for "
            f"padding_mode='reflect' (as in torch); got padding {padding_text(lo, hi)} for input "
            f"size {tuple(in_spatial)}."
        )
    if mode == "symmetric" and any(p > n for p, n in zip(lo + hi, sizes)):
        raise ValueError(
            f"padding must not exceed the input size in any dimension for "
            f"padding_mode='symmetric' (it mirrors the input once, edge included); got padding "
            f"{padding_text(lo, hi)} for input size {tuple(in_spatial)}."
        )
    if mode == "circular" and any(p > n for p, n in zip(lo + hi, sizes)):
        raise ValueError(
            f"padding must not exceed the input size in any dimension for "
            f"padding_mode='circular' (it would wrap around more than once, which torch "
            f"refuses); got padding {padding_text(lo, hi)} for input size {tuple(in_spatial)}."
        )


# --------------------------------------------------------------------------- geometries


@with_geometry_doc
def conv_geometry(weight_shape: Sequence[int], input_shape: Sequence[int], *,
                  stride: int | Sequence[int] = 1, padding: Padding = 0,
                  dilation: int | Sequence[int] = 1, groups: int = 1, padding_mode: str = "zeros",
                  _label: InputLabel = INPUT_SHAPE) -> ConvGeometry:
    """Validate a convolution's arguments (torch's rules) and normalise them.

    Parameters
    ----------
    weight_shape : (C_out, C_in/groups, *kernel) tuple of int
        The weight's shape (the arguments of :func:`~toeplitz_conv.conv_matrix`, no weight).
    input_shape : (C_in, *spatial) tuple of int
    GEOMETRY_PARAMETERS

    Returns
    -------
    ConvGeometry
        ``_label`` is internal: how messages name the input when it came from ``x``.

    Examples
    --------
    >>> geom = conv_geometry((16, 3, 3, 3), (3, 32, 32), stride=2, padding=1)
    >>> geom.out_shape, geom.shape, geom.taps
    ((16, 16, 16), (4096, 3072), 27)
    >>> conv_geometry((4, 1, 4), (1, 10), padding="same").pad_lo   # odd extra goes high
    (1,)
    """
    wshape = check_weight_shape(weight_shape, "(C_out, C_in/groups, *kernel)")
    n = len(wshape) - 2
    _label = _label if isinstance(_label, InputLabel) else InputLabel(*_label)
    in_shape = _input_shape(input_shape, n, _label)
    mode = check_padding_mode(padding_mode)
    s = int_tuple("stride", stride, n, minimum=1)
    d = int_tuple("dilation", dilation, n, minimum=1)
    k = wshape[2:]
    groups = _groups(groups, in_shape[0], wshape[0], wshape, _label)
    lo, hi = padding_sides(padding, n, k, d, s, in_shape[1:])
    _check_padding_fits(mode, lo, hi, in_shape[1:])
    out = conv_out(in_shape, k, s, d, lo, hi, _label)
    return ConvGeometry(in_shape[0], wshape[0], groups, k, in_shape[1:], out, s, d, lo, hi, mode)


def conv_transpose_geometry(weight_shape: Sequence[int], input_shape: Sequence[int], *,
                            stride: int | Sequence[int] = 1, padding: Padding = 0,
                            output_padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                            groups: int = 1, _label: InputLabel = INPUT_SHAPE) -> ConvGeometry:
    """Geometry of the convolution whose matrix transposed is ``conv_transposeNd``'s matrix.

    The transposed convolution with weight ``(C_in, C_out/groups, *kernel)`` maps
    ``(C_in, *i')`` to ``(C_out, *o')``. The same weight, read as a convolution weight
    ``(C_out_conv = C_in, C_in_conv/groups = C_out/groups, *kernel)``, maps ``(C_out, *o')``
    back to ``(C_in, *i')``: the returned geometry is that convolution, with its output
    limited to ``i'`` positions (``output_padding`` >= stride, allowed when smaller than the
    dilation, would otherwise add one).

    Parameters
    ----------
    weight_shape : (C_in, C_out/groups, *kernel) tuple of int
    input_shape : (C_in, *i') tuple of int
        The transposed convolution's input.
    stride, padding, output_padding, dilation, groups
        As in :func:`~toeplitz_conv.conv_transpose_matrix`.

    Returns
    -------
    ConvGeometry
        Of the convolution ``(C_out, *o') -> (C_in, *i')``.

    Examples
    --------
    >>> geom = conv_transpose_geometry((8, 4, 3, 3), (8, 14, 14), stride=2, padding=1, output_padding=1)
    >>> geom.in_shape, geom.out_shape     # the convolution maps the 4x28x28 output back to 8x14x14
    ((4, 28, 28), (8, 14, 14))
    """
    wshape = check_weight_shape(weight_shape, "(C_in, C_out/groups, *kernel)")
    n = len(wshape) - 2
    _label = _label if isinstance(_label, InputLabel) else InputLabel(*_label)
    in_shape = _input_shape(input_shape, n, _label)
    s = int_tuple("stride", stride, n, minimum=1)
    d = int_tuple("dilation", dilation, n, minimum=1)
    k = wshape[2:]
    if isinstance(padding, str):
        lo, hi, a = _transpose_framework_padding(padding, n, in_shape[1:], k, s, d, output_padding)
    else:
        pairs = padding_pairs(padding, n)
        lo, hi = pairs if pairs is not None else (int_tuple("padding", padding, n, minimum=0),) * 2
        a = int_tuple("output_padding", output_padding, n, minimum=0)
    check_output_padding(a, s, d)
    groups = _transpose_groups(groups, wshape, in_shape[0], _label)
    if lo == hi:
        out = conv_transpose_out(in_shape, k, s, lo, d, a)
    else:  # the full output, less lo at the start and hi at the end
        out = tuple((i - 1) * s_ + d_ * (k_ - 1) + 1 - l_ - h_ + a_
                    for i, k_, s_, d_, l_, h_, a_ in zip(in_shape[1:], k, s, d, lo, hi, a))
        if any(o < 1 for o in out):
            raise ValueError(f"the output of the transposed convolution would be empty: {out}; got "
                             f"input_shape={tuple(in_shape)}, kernel {tuple(k)}, stride={s}, padding "
                             f"{padding_text(lo, hi)}, dilation={d}, output_padding={a}.")
    conv = conv_geometry(wshape, (wshape[1] * groups, *out), stride=s, padding=tuple(zip(lo, hi)),
                         dilation=d, groups=groups)
    return ConvGeometry(conv.in_channels, conv.out_channels, groups, k, conv.in_spatial,
                        in_shape[1:], s, d, lo, hi, "zeros")


def _transpose_framework_padding(padding: str, n: int, in_spatial: tuple[int, ...], k: tuple[int, ...],
                                 s: tuple[int, ...], d: tuple[int, ...], output_padding: object
                                 ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """TensorFlow's / ONNX's transposed padding: the adjoint of the forward convolution with
    that padding on the output size ``i * s`` (``'SAME'``, ``'SAME_UPPER'``, ``'SAME_LOWER'``)
    or ``i * s + max(d (k - 1) + 1 - s, 0)`` (``'VALID'``, as Keras): ``(lo, hi, output_padding)``."""
    if padding not in ("SAME", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ValueError(
            f"padding of a transposed convolution must be an int, a tuple of {n} ints, {n} (low, high) "
            f"pairs, or TensorFlow's / ONNX's 'SAME', 'SAME_UPPER', 'SAME_LOWER' or 'VALID' (torch has "
            f"no 'same'/'valid' for it); got {padding!r}."
        )
    if output_padding not in (0, (0,) * n, [0] * n):
        raise ValueError(f"output_padding is set by padding={padding!r} (the output has i * stride "
                         f"positions); pass padding as (low, high) pairs to choose it; got "
                         f"output_padding={output_padding!r}.")
    eff = tuple(d_ * (k_ - 1) + 1 for k_, d_ in zip(k, d))
    if padding == "VALID":
        out = tuple(i * s_ + max(e - s_, 0) for i, s_, e in zip(in_spatial, s, eff))
        lo = hi = (0,) * n
    else:
        out = tuple(i * s_ for i, s_ in zip(in_spatial, s))
        lo, hi = same_sides(padding, out, k, d, s)
    a = tuple(o - ((i - 1) * s_ + e - l_ - h_) for o, i, s_, e, l_, h_ in zip(out, in_spatial, s, eff, lo, hi))
    return lo, hi, a
