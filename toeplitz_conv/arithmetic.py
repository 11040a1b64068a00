"""The convolution arithmetic: output sizes from input sizes, and torch's rules on them.

The relations of Dumoulin & Visin, *A guide to convolution arithmetic for deep learning*
(2016), as PyTorch implements them, per spatial axis::

    conv:        o  = floor((i + p_lo + p_hi - d (k - 1) - 1) / s) + 1
    transposed:  o' = (i' - 1) s - 2 p + d (k - 1) + a + 1

where ``a`` (``output_padding``) picks one of the ``s`` input sizes that a stride-``s``
convolution maps to the same output size. Each relation refuses an empty output with a
message that names what the user passed (:class:`InputLabel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Optional, TypeAlias, Union, overload

from ._args import as_tuple, int_tuple, is_int


class InputLabel(NamedTuple):
    """How messages name the input: its channel count, its shape and the shape to show
    (``None``: the input shape itself). A layer called on ``x`` names ``x.shape[1]``."""

    channels: str = "input_shape[0]"
    shape: str = "input_shape"
    value: Optional[tuple[int, ...]] = None


INPUT_SHAPE = InputLabel()

#: What ``padding=`` takes: an int, one per axis, ``(low, high)`` pairs per axis, or a name.
Padding: TypeAlias = Union[int, Sequence[int], Sequence[Sequence[int]], str]


# --------------------------------------------------------------------------- relations


def padding_text(lo: Sequence[int], hi: Sequence[int]) -> str:
    """How a message shows padding: ``1``, or ``(low 1, high 2)`` where the sides differ."""
    return str(lo) if lo == hi else f"(low {lo}, high {hi})"


#: TensorFlow's and ONNX's names for padding computed from the input size (any stride):
#: ``'SAME'`` = ``'SAME_UPPER'`` (the odd extra at the end), ``'SAME_LOWER'`` (at the start).
FRAMEWORK_SAME = ("SAME", "SAME_UPPER", "SAME_LOWER")
PADDING_RULE = ("an int, a tuple of {n} ints, {n} (low, high) pairs, 'same' or 'valid' (torch's), or "
                "'SAME', 'SAME_UPPER', 'SAME_LOWER' or 'VALID' (TensorFlow's and ONNX's)")


def same_sides(rule: str, in_spatial: Sequence[int], kernel: Sequence[int], dilation: Sequence[int],
               stride: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """TensorFlow's / ONNX's SAME: the output has ``ceil(i / s)`` positions, the padding needed
    for that, ``max((o - 1) s + d (k - 1) + 1 - i, 0)``, split in two with the odd extra at the
    end (``'SAME'``, ``'SAME_UPPER'``) or at the start (``'SAME_LOWER'``)."""
    lo, hi = [], []
    for i, k, d, s in zip(in_spatial, kernel, dilation, stride):
        total = max((-(-i // s) - 1) * s + d * (k - 1) + 1 - i, 0)
        low = total - total // 2 if rule == "SAME_LOWER" else total // 2
        lo.append(low)
        hi.append(total - low)
    return tuple(lo), tuple(hi)


def padding_pairs(padding: object, n: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """``((lo, hi), ...)`` per spatial axis -> (pad_lo, pad_hi); None when not pairs."""
    if not isinstance(padding, (tuple, list)) or not any(isinstance(p, (tuple, list)) for p in padding):
        return None
    if len(padding) != n or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in padding):
        raise ValueError(f"padding as (low, high) pairs needs one pair per spatial axis, {n} in all, e.g. "
                         f"{tuple((1, 2) for _ in range(n))}; got {padding!r}.")
    lo = int_tuple("padding", tuple(p[0] for p in padding), n, minimum=0)
    hi = int_tuple("padding", tuple(p[1] for p in padding), n, minimum=0)
    return lo, hi


def padding_sides(padding: object, n: int, kernel: Sequence[int], dilation: Sequence[int],
                  stride: Sequence[int], in_spatial: Sequence[int] | None = None
                  ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``padding`` -> (pad_lo, pad_hi): torch's int, tuple, ``'same'``, ``'valid'``; per-side
    ``(low, high)`` pairs; TensorFlow's / ONNX's ``'SAME'``, ``'SAME_UPPER'``, ``'SAME_LOWER'``
    (:func:`same_sides`, which needs ``in_spatial``) and ``'VALID'``."""
    if isinstance(padding, str):
        if padding in ("valid", "VALID"):
            return (0,) * n, (0,) * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"padding='same' needs stride 1 in every dimension (as in torch, which "
                    f"refuses it for strided convolutions); got stride={stride}. TensorFlow's "
                    f"padding='SAME' (upper case) is defined for any stride."
                )
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            lo = tuple(t // 2 for t in total)  # torch puts the odd extra on the high side
            return lo, tuple(t - lo_ for t, lo_ in zip(total, lo))
        if padding in FRAMEWORK_SAME and in_spatial is not None:
            return same_sides(padding, in_spatial, kernel, dilation, stride)
        raise ValueError(f"padding must be {PADDING_RULE.format(n=n)}; got {padding!r}.")
    pairs = padding_pairs(padding, n)
    if pairs is not None:
        return pairs
    pad = int_tuple("padding", padding, n, minimum=0)
    return pad, pad


def check_output_padding(output_padding: Sequence[int], stride: Sequence[int],
                         dilation: Sequence[int]) -> None:
    if any(a >= s and a >= d for a, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            f"output_padding must be smaller than either stride or dilation in every "
            f"dimension (as in torch); got output_padding={output_padding}, stride={stride}, "
            f"dilation={dilation}."
        )


def conv_out(in_shape: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
             dilation: Sequence[int], lo: Sequence[int], hi: Sequence[int],
             label: InputLabel = INPUT_SHAPE) -> tuple[int, ...]:
    """``floor((i + p_lo + p_hi - d (k - 1) - 1) / s) + 1`` per axis of ``in_shape[1:]``,
    refused when empty."""
    out = tuple((i + a + b - d * (k - 1) - 1) // s + 1
                for i, a, b, k, s, d in zip(in_shape[1:], lo, hi, kernel, stride, dilation))
    if all(o >= 1 for o in out):
        return out
    eff = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    padded = tuple(i + a + b for i, a, b in zip(in_shape[1:], lo, hi))
    shown = tuple(in_shape) if label.value is None else tuple(label.value)
    raise ValueError(
        f"the output would be empty: the padded input {padded} is smaller than the dilated "
        f"kernel {eff} (kernel {tuple(kernel)}, dilation {tuple(dilation)}); got "
        f"{label.shape}={shown}, padding {padding_text(lo, hi)}."
    )


def conv_transpose_out(in_shape: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                       padding: Sequence[int], dilation: Sequence[int],
                       output_padding: Sequence[int]) -> tuple[int, ...]:
    """``(i - 1) s - 2 p + d (k - 1) + a + 1`` per axis of ``in_shape[1:]``, refused when
    empty."""
    out = tuple((i - 1) * s - 2 * p + d * (k - 1) + a + 1
                for i, k, s, p, d, a in zip(in_shape[1:], kernel, stride, padding, dilation, output_padding))
    if all(o >= 1 for o in out):
        return out
    raise ValueError(
        f"the output of the transposed convolution would be empty: (i - 1) * stride - "
        f"2 * padding + dilation * (kernel - 1) + output_padding + 1 = {out}; got "
        f"input_shape={tuple(in_shape)}, kernel {tuple(kernel)}, stride={stride}, "
        f"padding={padding}, dilation={dilation}, output_padding={output_padding}."
    )


# --------------------------------------------------------------------------- output sizes


def _spatial_size(name: str, value: object) -> tuple[tuple[int, ...], bool]:
    """A spatial size: an int (returns scalar=True) or a tuple of positive ints."""
    if is_int(value):
        return int_tuple(name, value, 1, minimum=1), True
    n = len(as_tuple(value, name, "an int or a tuple of ints"))
    if n not in (1, 2, 3):
        raise ValueError(f"{name} must have 1, 2 or 3 spatial sizes; got {value!r}.")
    return int_tuple(name, value, n, minimum=1), False


@overload
def conv_output_size(input_size: int, kernel_size: int | Sequence[int], *,
                     stride: int | Sequence[int] = ..., padding: int | Sequence[int] | str = ...,
                     dilation: int | Sequence[int] = ...) -> int: ...
@overload
def conv_output_size(input_size: Sequence[int], kernel_size: int | Sequence[int], *,
                     stride: int | Sequence[int] = ..., padding: int | Sequence[int] | str = ...,
                     dilation: int | Sequence[int] = ...) -> tuple[int, ...]: ...
def conv_output_size(input_size: int | Sequence[int], kernel_size: int | Sequence[int], *,
                     stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                     dilation: int | Sequence[int] = 1) -> int | tuple[int, ...]:
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
    i, scalar = _spatial_size("input_size", input_size)
    n = len(i)
    k = int_tuple("kernel_size", kernel_size, n, minimum=1)
    s = int_tuple("stride", stride, n, minimum=1)
    d = int_tuple("dilation", dilation, n, minimum=1)
    lo, hi = padding_sides(padding, n, k, d, s, i)
    out = conv_out((0, *i), k, s, d, lo, hi, InputLabel("input_size", "input_size", i))
    return out[0] if scalar else out


@overload
def conv_transpose_output_size(input_size: int, kernel_size: int | Sequence[int], *,
                               stride: int | Sequence[int] = ..., padding: int | Sequence[int] = ...,
                               output_padding: int | Sequence[int] = ...,
                               dilation: int | Sequence[int] = ...) -> int: ...
@overload
def conv_transpose_output_size(input_size: Sequence[int], kernel_size: int | Sequence[int], *,
                               stride: int | Sequence[int] = ..., padding: int | Sequence[int] = ...,
                               output_padding: int | Sequence[int] = ...,
                               dilation: int | Sequence[int] = ...) -> tuple[int, ...]: ...
def conv_transpose_output_size(input_size: int | Sequence[int], kernel_size: int | Sequence[int], *,
                               stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                               output_padding: int | Sequence[int] = 0,
                               dilation: int | Sequence[int] = 1) -> int | tuple[int, ...]:
    """Spatial output size of a transposed convolution.

    ``o' = (i' - 1) s - 2 p + d (k - 1) + a + 1`` per dimension, where ``a`` is
    ``output_padding`` (it picks one of the ``s`` input sizes that a stride-``s`` convolution
    maps to the same output size).

    Parameters
    ----------
    input_size : int or tuple of int
        Spatial input size ``(*spatial)`` of the transposed convolution.
    kernel_size : int or tuple of int
    stride, padding, output_padding, dilation : int or tuple of int
        As in ``torch.nn.ConvTransposeNd``; ``output_padding`` smaller than the stride or the
        dilation.

    Returns
    -------
    int or tuple of int
        An int when ``input_size`` is an int.

    Examples
    --------
    >>> conv_transpose_output_size(28, 3, stride=2, padding=1, output_padding=1)
    56
    """
    i, scalar = _spatial_size("input_size", input_size)
    n = len(i)
    k = int_tuple("kernel_size", kernel_size, n, minimum=1)
    s = int_tuple("stride", stride, n, minimum=1)
    d = int_tuple("dilation", dilation, n, minimum=1)
    p = int_tuple("padding", padding, n, minimum=0)
    a = int_tuple("output_padding", output_padding, n, minimum=0)
    check_output_padding(a, s, d)
    out = conv_transpose_out((0, *i), k, s, p, d, a)
    return out[0] if scalar else out
