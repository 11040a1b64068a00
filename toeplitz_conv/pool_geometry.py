"""Normalised geometry of a fixed-window or adaptive pooling layer, with torch's rules.

A :class:`PoolGeometry` is to pooling what :class:`~toeplitz_conv.geometry.ConvGeometry` is
to convolution: everything that fixes the pattern of the pooling matrix (shapes, kernel,
stride, padding, dilation, ``ceil_mode``) and no values; every rule torch applies to these
arguments is checked here, with its message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ._args import as_tuple, check_bool, check_int_range, int_tuple, is_int
from .indexing import axis_positions, window_table


def pool_input_shape(value: object, name: str) -> tuple[int, ...]:
    """The shape of one sample ``(C, *spatial)`` with 1, 2 or 3 spatial axes."""
    items = as_tuple(value, name, "a tuple (C, *spatial) of one sample with 1, 2 or 3 spatial axes")
    if len(items) not in (2, 3, 4) or not all(is_int(s) for s in items):
        raise ValueError(
            f"{name} must be a tuple of 2, 3 or 4 ints (C, *spatial) of one sample for 1D, 2D "
            f"or 3D pooling; got {name}={items!r}."
        )
    if any(s < 1 for s in items):
        raise ValueError(f"{name} must contain positive sizes; got {name}={items!r}.")
    check_int_range(name, *items)
    return tuple(int(s) for s in items)


def _pool_out_size(i: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's ``pooling_output_shape`` for one axis."""
    num = i + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    o = num // s + 1
    if ceil_mode and (o - 1) * s >= i + p:  # the last window must start inside input or left pad
        o -= 1
    return o


class PoolGeometry:
    """Normalised arguments of a fixed-window pooling of one sample ``(C, *in_spatial)``,
    checked as torch checks them; ``what`` names the caller in the messages."""

    def __init__(self, input_shape: Sequence[int], kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] | None, padding: int | Sequence[int],
                 dilation: int | Sequence[int], ceil_mode: bool, what: str) -> None:
        shape = pool_input_shape(input_shape, "input_shape")
        n = len(shape) - 1
        self.channels, self.in_spatial = shape[0], shape[1:]
        self.kernel = int_tuple("kernel_size", kernel_size, n, minimum=1)
        # torch's default: stride=None (or an empty tuple) means stride=kernel_size
        empty = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
        self.stride = self.kernel if empty else int_tuple("stride", stride, n, minimum=1)
        self.padding = int_tuple("padding", padding, n, minimum=0)
        self.dilation = int_tuple("dilation", dilation, n, minimum=1)
        self.ceil_mode = check_bool("ceil_mode", ceil_mode)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel)):
            raise ValueError(
                f"padding must be at most half of kernel_size in every dimension (as in torch); "
                f"got padding={self.padding} for kernel_size={self.kernel}."
            )
        self.out_spatial = tuple(
            _pool_out_size(i, k, s, p, d, self.ceil_mode)
            for i, k, s, p, d in zip(self.in_spatial, self.kernel, self.stride, self.padding, self.dilation)
        )
        if any(o < 1 for o in self.out_spatial):
            raise ValueError(
                f"{what}: the output would be empty, the kernel (kernel_size={self.kernel}, "
                f"dilation={self.dilation}) is larger than the padded input; got input_shape="
                f"{shape}, padding={self.padding}, stride={self.stride} (output size "
                f"{self.out_spatial})."
            )

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.channels, *self.in_spatial)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.channels, *self.out_spatial)

    def axis_tables(self) -> list[npt.NDArray[np.intp]]:
        return [
            axis_positions(o, k, s, d, p, i, "zeros")
            for o, k, s, d, p, i in zip(self.out_spatial, self.kernel, self.stride, self.dilation,
                                        self.padding, self.in_spatial)
        ]

    def table(self) -> npt.NDArray[np.signedinteger[Any]]:
        """``src``: ``(P_out, prod(kernel))`` flat input positions, ``P_in`` for padding."""
        return window_table(self.axis_tables(), self.in_spatial)


def adaptive_output_size(output_size: object, in_spatial: Sequence[int]) -> tuple[int, ...]:
    """torch's ``output_size`` of adaptive pooling: an int, or per axis an int or ``None``
    (keep the input's size)."""
    n = len(in_spatial)
    rule = f"an int or a tuple of {n} ints (or None to keep an axis)"
    one = is_int(output_size) or output_size is None
    items = (output_size,) * n if one else as_tuple(output_size, "output_size", rule)
    if len(items) != n or not all(o is None or is_int(o) for o in items):
        raise ValueError(
            f"output_size must be an int or a tuple of {n} ints (or None to keep an axis), one "
            f"per spatial axis of the input; got output_size={output_size!r}."
        )
    out = tuple(i if o is None else int(o) for o, i in zip(items, in_spatial))
    if any(o < 1 for o in out):
        raise ValueError(f"output_size must contain positive sizes; got output_size={output_size!r}.")
    check_int_range("output_size", *out)
    return out
