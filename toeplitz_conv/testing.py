"""Equivalence testing against the exact matrix: is ``fn`` this convolution, and if not, why.

:func:`assert_conv_equal` probes ``fn`` (:func:`~toeplitz_conv.probe_matrix`), builds the
matrix the arguments describe (:func:`~toeplitz_conv.conv_matrix` or
:func:`~toeplitz_conv.conv_transpose_matrix`) and compares them entry by entry with
:func:`assert_matrix_equal`. On a mismatch the message says how many entries differ, lists the
worst as (output pixel, input pixel, kernel tap, expected, got), and then diagnoses: it tries
the usual mistakes (a flipped kernel, the weight's channel axes swapped, another padding size
or mode, a shifted window, ``output_padding``) and names the one whose matrix ``fn`` matches,
or describes the pattern of the differences (only border rows, a constant shift of the band,
entries across groups). numpy-testing style: silent when equal, ``AssertionError`` otherwise —
also when ``fn`` is not linear or returns NaN or inf (:func:`~toeplitz_conv.probe_matrix`
checks both), and NaN equals nothing, not even NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ._args import as_array, real_number
from .arithmetic import Padding
from .geometry import ConvGeometry, conv_geometry, conv_transpose_geometry
from .diagnose import differences, expected_matrix, explain, pattern_diagnosis, shape_diagnosis
from .pattern import conv_pattern
from .layouts import NAMES, channels_first_fn, kernel_to_torch, sample_shape_first
from .probe import ProbeError, caller, probe_matrix, sample_shape, to_numpy

#: Mismatches listed in the message.
WORST = 5


def _pixel(index: int, shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(index, shape))


def default_tolerance(*dtypes: npt.DTypeLike) -> float:
    """The ``rtol`` (and ``atol``) at which matrices of these dtypes are compared when none is
    given: 1e-10 when all are float64, 1e-5 with a float32 among them, 1e-2 with a float16,
    3e-2 with ``'bfloat16'`` (named by a string: numpy has none); the least precise decides
    (room for the rounding of sums of a few hundred terms)."""
    if "bfloat16" in [str(t) for t in dtypes]:  # 8 bits of mantissa (numpy has no such dtype)
        return 3e-2
    eps = max([float(np.finfo(d).eps) for d in (np.dtype(t) for t in dtypes) if d.kind in "fc"], default=2.0**-52)
    return 1e-10 if eps <= 2.0**-52 else 1e-5 if eps <= 2.0**-23 else 1e-2


def _tolerance(name: str, value: object) -> float:
    return real_number(name, value, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)


def _precision_note(A: Any, B: Any, rtol: float, atol: float, names: tuple[str, str]) -> list[str]:
    """When the tolerance leaves no room for a few roundings in the least precise of the two
    dtypes, and the entries are equal at its :func:`default_tolerance`: the dtype is why they
    differ."""
    dtypes = [np.dtype(M.dtype) for M in (A, B)]
    low = max(range(2), key=lambda i: np.finfo(dtypes[i]).eps if dtypes[i].kind in "fc" else 0.0)
    if dtypes[low].kind not in "fc":
        return []
    eps, tol = float(np.finfo(dtypes[low]).eps), default_tolerance(*dtypes)
    with np.errstate(invalid="ignore"):
        scale = float(abs(sp.csr_array(A)).max()) if A.nnz else 0.0
    if atol + rtol * scale >= 4 * eps * scale or differences(A, B, tol, tol * scale)[0].size:
        return []  # room for a few roundings, or more than rounding differs
    return [f"{names[low]} {dtypes[low]}, whose resolution ~{eps:.2g} (~{eps * scale:.2g} at values up "
            f"to {scale:.3g}) is too coarse for rtol={rtol:g}, atol={atol:g}: the differences are its rounding; "
            f"use rtol={tol:g}, atol={tol * scale:.2g}: these matrices are equal then."]


def assert_matrix_equal(expected: Any, got: Any, input_shape: Sequence[int], output_shape: Sequence[int], *,
                        rtol: float = 1e-7, atol: float = 1e-12,
                        taps: Callable[[int, int], object] | None = None,
                        diagnosis: Sequence[str] = ()) -> None:
    """Raise ``AssertionError`` unless ``got`` equals ``expected`` entry by entry.

    Parameters
    ----------
    expected, got : (M, N) scipy.sparse or 2D array_like
    input_shape, output_shape : tuple of int
        What a column and a row index (one sample, C order): mismatches are reported as
        pixels ``(c, h, w)``.
    rtol, atol : float
        ``|got - expected| <= atol + rtol * |expected|`` passes.
    taps : callable, optional
        ``taps(row, col)`` -> the kernel taps an entry holds (for the message).
    diagnosis : sequence of str
        Lines appended to the message (what the caller found the mismatch to be).

    Examples
    --------
    >>> import numpy as np
    >>> assert_matrix_equal(np.eye(2), np.eye(2), (1, 2), (1, 2))
    >>> try:
    ...     assert_matrix_equal(np.eye(2), np.diag([1.0, 3.0]), (1, 2), (1, 2))
    ... except AssertionError as e:
    ...     print(str(e).splitlines()[0])
    1 of 4 entries differ (largest difference 2):
    """
    rtol, atol = _tolerance("rtol", rtol), _tolerance("atol", atol)
    A = expected if sp.issparse(expected) else sp.csr_array(as_array(expected, "expected"))
    B = got if sp.issparse(got) else sp.csr_array(as_array(got, "got"))
    m, n = int(np.prod(output_shape)), int(np.prod(input_shape))
    for name, M in (("expected", A), ("got", B)):
        if M.shape != (m, n):
            raise ValueError(
                f"{name} must be ({m}, {n}) for output_shape={tuple(output_shape)} and "
                f"input_shape={tuple(input_shape)}; got {name}.shape={M.shape}."
            )
    note = _precision_note(A, B, rtol, atol, ("expected is", "got is"))
    _report(A, B, input_shape, output_shape, rtol, atol, taps, [*note, *diagnosis])


def _report(A: Any, B: Any, input_shape: Sequence[int], output_shape: Sequence[int], rtol: float, atol: float,
            taps: Callable[[int, int], object] | None, diagnosis: Sequence[str]) -> None:
    """Raise the ``AssertionError`` of :func:`assert_matrix_equal` if ``A`` and ``B`` differ."""
    r, c, a, b = differences(A, B, rtol, atol)
    if r.size == 0:
        return
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
    order = np.argsort(-np.where(np.isnan(diff), np.inf, diff), kind="stable")[:WORST]  # NaN first
    lines = [f"{r.size:,} of {A.shape[0] * A.shape[1]:,} entries differ (largest difference {diff.max():.3g}):"]
    for k in order:
        tap = taps(int(r[k]), int(c[k])) if taps is not None else None
        lines.append(
            f"  output {_pixel(r[k], output_shape)}, input {_pixel(c[k], input_shape)}"
            + (f", kernel tap {tap}" if tap is not None else "")
            + f": expected {a[k]:.6g}, got {b[k]:.6g}"
        )
    for name, M in (("expected", A), ("got", B)):
        data = sp.csr_array(M).tocoo()
        bad = np.flatnonzero(~np.isfinite(data.data))
        if bad.size:
            k = bad[np.lexsort((data.col[bad], data.row[bad]))[0]]
            lines.append(f"diagnosis: {name} has {bad.size:,} NaN or inf entries, the first "
                         f"{data.data[k]} at output {_pixel(data.row[k], output_shape)}, input "
                         f"{_pixel(data.col[k], input_shape)}.")
    lines += [f"diagnosis: {d}" for d in diagnosis]
    raise AssertionError("\n".join(lines))


# --------------------------------------------------------------------------- the convolution


def _geometry(weight: np.ndarray, input_shape: Sequence[int], transposed: bool,
              opts: dict[str, Any]) -> ConvGeometry:
    if transposed:
        return conv_transpose_geometry(weight.shape, input_shape, **opts)
    return conv_geometry(weight.shape, input_shape, **opts)


def _tap_finder(geom: ConvGeometry, weight_shape: tuple[int, ...],
                transposed: bool) -> Callable[[int, int], tuple[int, ...] | list[tuple[int, ...]] | None]:
    """``taps(row, col)``: the weight indices ``(o, i, *k)`` summed into an entry of the
    expected matrix (for a transposed convolution, of the convolution's ``C``, transposed)."""
    row, col, tap = conv_pattern(geom).triples()
    key = row.astype(np.int64) * geom.shape[1] + col
    order = np.argsort(key, kind="stable")
    key, tap = key[order], tap[order]

    def taps(r: int, c: int) -> tuple[int, ...] | list[tuple[int, ...]] | None:
        if transposed:
            r, c = c, r
        k = r * geom.shape[1] + c
        lo, hi = np.searchsorted(key, k), np.searchsorted(key, k, side="right")
        found = [tuple(int(i) for i in np.unravel_index(int(t), weight_shape)) for t in tap[lo:hi]]
        return found[0] if len(found) == 1 else (found or None)

    return taps


def _layout_hint(w: np.ndarray, input_shape: tuple[int, ...], transposed: bool, opts: dict[str, Any],
                 layout: str | None) -> str:
    """Where the channels do not fit but would channels last: which ``layout=`` to pass."""
    channels = w.shape[0] if transposed else w.shape[1] * opts.get("groups", 1)
    if layout is not None or len(input_shape) < 2 or input_shape[0] == channels or input_shape[-1] != channels:
        return ""
    name = NAMES.get(len(input_shape) - 1, NAMES[2])[1]
    return (f" input_shape {input_shape} looks channels-last: its last entry is the {channels} input channels; "
            f"pass layout={name!r} (input_shape stays as it is).")


def assert_conv_equal(fn: Callable[[Any], object], weight: npt.ArrayLike, input_shape: Sequence[int], *,
                      stride: int | Sequence[int] = 1, padding: Padding = 0,
                      dilation: int | Sequence[int] = 1, groups: int = 1, padding_mode: str = "zeros",
                      transposed: bool = False, output_padding: int | Sequence[int] = 0,
                      rtol: float | None = 1e-7, atol: float | None = 1e-10,
                      layout: str | None = None, kernel_layout: str | None = None) -> None:
    """Raise ``AssertionError`` unless ``fn`` is the convolution these arguments describe.

    Parameters
    ----------
    fn : callable
        A batch ``(N, *input_shape)`` -> ``(N, *out)``, numpy or torch (see
        :func:`~toeplitz_conv.probe_matrix`): the user's convolution with ``weight`` bound.
    weight : array_like or torch.Tensor
        ``(C_out, C_in/groups, *kernel)``; ``(C_in, C_out/groups, *kernel)`` when ``transposed``.
    input_shape : tuple of int
        One sample of ``fn``'s input, in ``layout``.
    stride, padding, dilation, groups, padding_mode
        As in ``torch.nn.ConvNd``; ``padding`` also per side and TensorFlow's / ONNX's
        ``'SAME'``, ``'SAME_LOWER'``, ``'VALID'``, ``padding_mode`` also ``'symmetric'``
        (:func:`~toeplitz_conv.conv_matrix`).
    transposed : bool, default False
        Compare with ``conv_transposeNd`` (``output_padding`` as torch's).
    rtol, atol : float >= 0 or None
        ``|got - expected| <= atol + rtol * |expected|`` passes; None: both
        :func:`default_tolerance` of the weight's and ``fn``'s dtypes (1e-5 with float32).
    layout, kernel_layout : str, optional
        ``fn``'s batches, e.g. ``'NHWC'``, and ``weight``'s axes, e.g. ``'HWIO'``
        (:mod:`toeplitz_conv.layouts`); default torch's.

    Raises
    ------
    AssertionError
        ``fn`` is not linear (the property that fails, by how much: see
        :func:`~toeplitz_conv.probe_matrix`) or returns NaN or inf (the first); or how many
        entries differ, the worst few as (output pixel, input pixel, kernel tap, expected,
        got), and a diagnosis: the dtype ``fn`` returns when its resolution is coarser than
        the tolerance, the mistake ``fn``'s matrix matches (kernel flipped, channels swapped,
        padding size or mode), or the pattern of the differences (only border rows, a shifted
        band, entries across groups, the output shape off by one).
    ValueError, TypeError
        A bad argument: a weight with NaN or inf, an ``input_shape`` entry that is no
        positive int, a tolerance that is no finite number >= 0.

    Examples
    --------
    >>> import torch, torch.nn.functional as F, toeplitz_conv as tc
    >>> w = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    >>> tc.testing.assert_conv_equal(lambda x: F.conv2d(x, w, padding=1), w, (3, 5, 5), padding=1)
    >>> try:  # a true convolution: the kernel flipped
    ...     tc.testing.assert_conv_equal(lambda x: F.conv2d(x, w.flip(2, 3), padding=1), w, (3, 5, 5), padding=1)
    ... except AssertionError as e:
    ...     print([line for line in str(e).splitlines() if "diagnosis" in line][0][:40])
    diagnosis: fn matches the matrix with: k
    """
    w = kernel_to_torch(as_array(weight, "weight"), kernel_layout, transposed)
    if not np.isfinite(w).all():
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(~np.isfinite(w))), w.shape))
        raise ValueError(f"weight must be finite; got {w[first]} at weight[{', '.join(map(str, first))}].")
    tols = [None if t is None else _tolerance(name, t) for name, t in (("rtol", rtol), ("atol", atol))]
    input_shape = sample_shape_first(sample_shape(input_shape), layout)
    fn = channels_first_fn(fn, layout, to_numpy)
    opts = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if transposed:
        opts["output_padding"] = output_padding
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode of a transposed convolution must be 'zeros' (as in torch); got {padding_mode!r}.")
    else:
        opts["padding_mode"] = padding_mode
    try:
        expected = expected_matrix(w, input_shape, transposed, opts)
    except ValueError as e:
        raise ValueError(f"{e}{_layout_hint(w, input_shape, transposed, opts, layout)}") from None
    geom = _geometry(w, input_shape, transposed, opts)
    in_shape = geom.out_shape if transposed else geom.in_shape
    out_shape = geom.in_shape if transposed else geom.out_shape
    dtype = np.float32 if w.dtype == np.float32 else np.float64
    try:
        got = probe_matrix(fn, input_shape, dtype=dtype)
    except ProbeError as e:  # not linear, or NaN: fn is no convolution
        raise AssertionError(str(e)) from None
    if got.shape[1] != expected.shape[1]:
        raise ValueError(f"fn's input must be input_shape={input_shape}; probing gave {got.shape[1]} columns.")
    seen: list[str] = []  # the dtype fn returns: bfloat16 is read as float32, judged at its tolerance
    actual = tuple(caller(fn, seen)(np.zeros((1, *input_shape), dtype=dtype)).shape[1:])  # fn's own output shape
    narrow = ("bfloat16",) if None in tols and seen[-1].endswith("bfloat16") else ()
    rtol, atol = (default_tolerance(w.dtype, got.dtype, *narrow) if t is None else t for t in tols)
    if got.shape != expected.shape:
        found = explain(w, input_shape, geom, transposed, opts, got, actual, rtol, atol, layout)
        raise AssertionError("\n".join(shape_diagnosis(got, out_shape, transposed, actual)
                                       + [f"diagnosis: {line}" for line in found]))
    got.sort_indices()
    taps = _tap_finder(geom, w.shape, transposed)  # geom: the convolution (for a transposed one, its adjoint)
    r, c, a, b = differences(expected, got, rtol, atol)
    if r.size == 0:
        return
    diagnosis = _precision_note(expected, got, rtol, atol, ("the weight is", "fn returns"))
    if not diagnosis:  # not rounding: look for the mistake
        diagnosis = explain(w, input_shape, geom, transposed, opts, got, actual, rtol, atol, layout)
        diagnosis += pattern_diagnosis(expected, got, r, c, out_shape, in_shape, geom, transposed)
    _report(expected, got, in_shape, out_shape, rtol, atol, taps, diagnosis)


