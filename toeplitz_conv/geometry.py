"""Normalised geometry of a convolution layer and the convolution arithmetic.

Output sizes follow the relations of Dumoulin & Visin, *A guide to convolution arithmetic for
deep learning* (2016), as PyTorch implements them::

    conv:        o  = floor((i + p_lo + p_hi - d (k - 1) - 1) / s) + 1
    transposed:  o' = (i' - 1) s - 2 p + d (k - 1) + a + 1

A :class:`ConvGeometry` is everything that fixes the sparsity pattern of a convolution matrix
(shapes, stride, padding, dilation, groups, padding mode) and nothing else: no weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from . import _validate as v


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
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

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
        return self.in_channels // self.groups * prod(self.kernel)


# --------------------------------------------------------------------------- arithmetic


def _padding(padding, n: int, kernel, dilation, stride) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``padding`` (int, tuple, 'same', 'valid') -> (pad_lo, pad_hi), as torch reads it."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * n, (0,) * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"padding='same' needs stride 1 in every dimension (as in torch, which "
                    f"refuses it for strided convolutions); got stride={stride}."
                )
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            lo = tuple(t // 2 for t in total)  # torch puts the odd extra on the high side
            return lo, tuple(t - lo_ for t, lo_ in zip(total, lo))
        raise ValueError(
            f"padding must be an int, a tuple of {n} ints, 'same' or 'valid'; got {padding!r}."
        )
    pad = v.int_tuple("padding", padding, n, minimum=0)
    return pad, pad


def _conv_out(i, lo, hi, k, s, d) -> tuple[int, ...]:
    """``floor((i + p_lo + p_hi - d (k - 1) - 1) / s) + 1`` per axis."""
    return tuple((i_ + a + b - d_ * (k_ - 1) - 1) // s_ + 1 for i_, a, b, k_, s_, d_ in zip(i, lo, hi, k, s, d))


def _conv_transpose_out(i, k, s, p, d, a) -> tuple[int, ...]:
    """``(i - 1) s - 2 p + d (k - 1) + a + 1`` per axis."""
    return tuple((i_ - 1) * s_ - 2 * p_ + d_ * (k_ - 1) + a_ + 1 for i_, k_, s_, p_, d_, a_ in zip(i, k, s, p, d, a))


def conv_output_size(input_size, kernel_size, *, stride=1, padding=0, dilation=1):
    """Spatial output size of a convolution (the convolution arithmetic).

    Parameters
    ----------
    input_size : int or tuple of int
        Spatial input size ``(*spatial)`` (no channel, no batch).
    kernel_size : int or tuple of int
    stride, dilation : int or tuple of int
    padding : int, tuple of int, 'same' or 'valid'

    Returns
    -------
    int or tuple of int
        ``floor((i + p_lo + p_hi - d (k - 1) - 1) / s) + 1`` per dimension; an int when
        ``input_size`` is an int.

    Examples
    --------
    >>> conv_output_size((28, 28), 5)
    (24, 24)
    >>> conv_output_size(56, 3, stride=2, padding=1)
    28
    """
    i, scalar = v.size_tuple("input_size", input_size)
    n = len(i)
    k = v.int_tuple("kernel_size", kernel_size, n, minimum=1)
    s = v.int_tuple("stride", stride, n, minimum=1)
    d = v.int_tuple("dilation", dilation, n, minimum=1)
    lo, hi = _padding(padding, n, k, d, s)
    out = _conv_out(i, lo, hi, k, s, d)
    v.check_output_nonempty(out, (0, *i), k, d, lo, hi, ("input_size", "input_size", i))
    return out[0] if scalar else out


def conv_transpose_output_size(input_size, kernel_size, *, stride=1, padding=0, output_padding=0, dilation=1):
    """Spatial output size of a transposed convolution.

    ``o' = (i' - 1) s - 2 p + d (k - 1) + a + 1`` per dimension, where ``a`` is
    ``output_padding`` (it picks one of the ``s`` input sizes that a stride-``s`` convolution
    maps to the same output size).

    Examples
    --------
    >>> conv_transpose_output_size(28, 3, stride=2, padding=1, output_padding=1)
    56
    """
    i, scalar = v.size_tuple("input_size", input_size)
    n = len(i)
    k = v.int_tuple("kernel_size", kernel_size, n, minimum=1)
    s = v.int_tuple("stride", stride, n, minimum=1)
    d = v.int_tuple("dilation", dilation, n, minimum=1)
    p = v.int_tuple("padding", padding, n, minimum=0)
    a = v.int_tuple("output_padding", output_padding, n, minimum=0)
    v.check_output_padding(a, s, d)
    out = _conv_transpose_out(i, k, s, p, d, a)
    v.check_transpose_output_nonempty(out, (0, *i), k, s, p, d, a)
    return out[0] if scalar else out


# --------------------------------------------------------------------------- geometries


def conv_geometry(weight_shape, input_shape, *, stride=1, padding=0, dilation=1, groups=1,
                  padding_mode="zeros", _label=("input_shape[0]", "input_shape", None)) -> ConvGeometry:
    """Validate a convolution's arguments (torch's rules) and normalise them.

    Parameters are those of :func:`~toeplitz_conv.conv_matrix` (``weight_shape`` in place of
    the weight). ``_label`` is internal: how messages name the input when it came from ``x``.

    Examples
    --------
    >>> g = conv_geometry((16, 3, 3, 3), (3, 32, 32), stride=2, padding=1)
    >>> g.out_shape, g.shape, g.taps
    ((16, 16, 16), (4096, 3072), 27)
    >>> conv_geometry((4, 1, 4), (1, 10), padding="same").pad_lo   # odd extra goes high
    (1,)
    """
    wshape = v.check_weight_shape(weight_shape, "(C_out, C_in/groups, *kernel)")
    n = len(wshape) - 2
    in_shape = v.shape_tuple(
        "input_shape", input_shape, n + 1,
        f"(C_in, {', '.join('DHW'[3 - n:])}) of one sample for a {n}D kernel",
    )
    mode = v.check_padding_mode(padding_mode)
    s = v.int_tuple("stride", stride, n, minimum=1)
    d = v.int_tuple("dilation", dilation, n, minimum=1)
    k = wshape[2:]
    g = v.check_groups(groups, in_shape[0], wshape[0], wshape, _label)
    lo, hi = _padding(padding, n, k, d, s)
    i = in_shape[1:]
    v.check_padding_fits(mode, lo, hi, i)
    out = _conv_out(i, lo, hi, k, s, d)
    v.check_output_nonempty(out, in_shape, k, d, lo, hi, _label)
    return ConvGeometry(in_shape[0], wshape[0], g, k, i, out, s, d, lo, hi, mode)


def conv_transpose_geometry(weight_shape, input_shape, *, stride=1, padding=0, output_padding=0,
                            dilation=1, groups=1,
                            _label=("input_shape[0]", "input_shape", None)) -> ConvGeometry:
    """Geometry of the convolution whose matrix transposed is ``conv_transposeNd``'s matrix.

    The transposed convolution with weight ``(C_in, C_out/groups, *kernel)`` maps
    ``(C_in, *i')`` to ``(C_out, *o')``. The same weight, read as a convolution weight
    ``(C_out_conv = C_in, C_in_conv/groups = C_out/groups, *kernel)``, maps ``(C_out, *o')``
    back to ``(C_in, *i')``: the returned geometry is that convolution, with its output
    limited to ``i'`` positions (``output_padding`` >= stride, allowed when smaller than the
    dilation, would otherwise add one).

    Examples
    --------
    >>> g = conv_transpose_geometry((8, 4, 3, 3), (8, 14, 14), stride=2, padding=1, output_padding=1)
    >>> g.in_shape, g.out_shape      # the convolution maps the 4x28x28 output back to 8x14x14
    ((4, 28, 28), (8, 14, 14))
    """
    wshape = v.check_weight_shape(weight_shape, "(C_in, C_out/groups, *kernel)")
    n = len(wshape) - 2
    in_shape = v.shape_tuple(
        "input_shape", input_shape, n + 1,
        f"(C_in, {', '.join('DHW'[3 - n:])}) of one sample for a {n}D kernel",
    )
    if isinstance(padding, str):
        raise ValueError(
            f"padding of a transposed convolution must be an int or a tuple of {n} ints "
            f"(torch has no 'same'/'valid' for it); got {padding!r}."
        )
    s = v.int_tuple("stride", stride, n, minimum=1)
    d = v.int_tuple("dilation", dilation, n, minimum=1)
    p = v.int_tuple("padding", padding, n, minimum=0)
    a = v.int_tuple("output_padding", output_padding, n, minimum=0)
    v.check_output_padding(a, s, d)
    g = v.check_transpose_groups(groups, wshape, in_shape[0], _label)
    k = wshape[2:]
    out = _conv_transpose_out(in_shape[1:], k, s, p, d, a)
    v.check_transpose_output_nonempty(out, in_shape, k, s, p, d, a)
    conv = conv_geometry(wshape, (wshape[1] * g, *out), stride=s, padding=p, dilation=d, groups=g)
    return ConvGeometry(conv.in_channels, conv.out_channels, g, k, conv.in_spatial, in_shape[1:],
                        s, d, p, p, "zeros")
