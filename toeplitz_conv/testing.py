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

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ._args import as_array, real_number
from .arithmetic import Padding, same_sides
from .conv import conv_matrix, conv_transpose_matrix
from .geometry import ConvGeometry, conv_geometry, conv_transpose_geometry
from .pattern import conv_pattern
from .layouts import channels_first_fn, kernel_to_torch, sample_shape_first
from .probe import ProbeError, probe_matrix, sample_shape, to_numpy

#: Mismatches listed in the message.
WORST = 5


def _pixel(index: int, shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(index, shape))


def _differences(A: Any, B: Any, rtol: float,
                 atol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, a, b)`` of the entries where ``A`` and ``B`` differ beyond tolerance;
    NaN or inf in either differs (NaN equals nothing, not even NaN)."""
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, a difference
        D = (sp.csr_array(A) - sp.csr_array(B)).tocoo()
        r, c = D.row, D.col
        a = np.asarray(sp.csr_array(A)[r, c]).ravel() if r.size else np.zeros(0)
        b = np.asarray(sp.csr_array(B)[r, c]).ravel() if r.size else np.zeros(0)
        bad = ~(np.abs(a - b) <= atol + rtol * np.abs(a))
    return r[bad], c[bad], a[bad], b[bad]


def default_tolerance(*dtypes: npt.DTypeLike) -> float:
    """The ``rtol`` (and ``atol``) at which matrices of these dtypes are compared when none is
    given: 1e-10 when all are float64, 1e-5 with a float32 among them, 1e-2 with a float16;
    the least precise decides (room for the rounding of sums of a few hundred terms)."""
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
    if atol + rtol * scale >= 4 * eps * scale or _differences(A, B, tol, tol * scale)[0].size:
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
    r, c, a, b = _differences(A, B, rtol, atol)
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


def _expected(weight: np.ndarray, input_shape: Sequence[int], transposed: bool,
              opts: dict[str, Any]) -> sp.sparray:
    if transposed:
        return conv_transpose_matrix(weight, input_shape, **opts)
    return conv_matrix(weight, input_shape, **opts)


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


def _candidates(weight: np.ndarray, transposed: bool,
                opts: dict[str, Any]) -> list[tuple[str, np.ndarray, dict[str, Any]]]:
    """The usual mistakes, as (what it is, weight, options) to try against ``fn``'s matrix."""
    w = np.asarray(weight)
    spatial = tuple(range(2, w.ndim))
    flip = ("kernel flipped: fn's kernel is rotated by 180 degrees against the expected one "
            + ("(the transposed convolution is the true convolution of the kernel: a hand-written "
               "backward that does not rotate it, or rotates it twice)" if transposed else
               "(fn computes a true convolution, not PyTorch's cross-correlation)"))
    out = [(flip, np.flip(w, axis=spatial).copy(), opts)]
    if w.shape[0] == w.shape[1] * opts.get("groups", 1) and opts.get("groups", 1) == 1:
        out.append(("channels swapped: fn reads the weight as (C_in, C_out, ...) instead of "
                    "(C_out, C_in, ...)", np.swapaxes(w, 0, 1).copy(), opts))
        out.append(("channels swapped and kernel flipped: the layout and the flip of a hand-written "
                    "transposed convolution", np.flip(np.swapaxes(w, 0, 1), axis=spatial).copy(), opts))
    pad = opts.get("padding", 0)
    if not transposed:
        for mode in ("zeros", "reflect", "replicate", "circular"):
            if mode != opts.get("padding_mode", "zeros"):
                out.append((f"padding mode: fn pads with '{mode}', not '{opts.get('padding_mode', 'zeros')}'",
                            w, dict(opts, padding_mode=mode)))
    if isinstance(pad, int):
        for p in (pad - 1, pad + 1):
            if p >= 0:
                out.append((f"padding size: fn pads by {p}, not {pad}", w, dict(opts, padding=p)))
    return out


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
    expected = _expected(w, input_shape, transposed, opts)
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
    if got.shape != expected.shape:
        raise AssertionError("\n".join(_shape_diagnosis(got, out_shape, transposed)))
    rtol, atol = (default_tolerance(w.dtype, got.dtype) if t is None else t for t in tols)
    got.sort_indices()
    taps = _tap_finder(geom, w.shape, transposed)  # geom: the convolution (for a transposed one, its adjoint)
    r, c, a, b = _differences(expected, got, rtol, atol)
    if r.size == 0:
        return
    diagnosis = _precision_note(expected, got, rtol, atol, ("the weight is", "fn returns"))
    if not diagnosis:  # not rounding: look for the mistake
        diagnosis = _mistake(w, input_shape, geom, transposed, opts, got, rtol, atol)
        diagnosis += _pattern_diagnosis(expected, got, r, c, out_shape, in_shape, geom, transposed)
    _report(expected, got, in_shape, out_shape, rtol, atol, taps, diagnosis)


def _mistake(w: np.ndarray, input_shape: tuple[int, ...], geom: ConvGeometry, transposed: bool,
             opts: dict[str, Any], got: Any, rtol: float, atol: float) -> list[str]:
    """The usual mistake whose matrix ``got`` equals, if one does."""
    for what, w2, opts2 in _candidates(w, transposed, opts):
        try:
            alt = _expected(w2, input_shape, transposed, opts2)
        except (ValueError, TypeError):
            continue
        if alt.shape == got.shape and _differences(alt, got, rtol, atol)[0].size == 0:
            return [f"fn matches the matrix with: {what}."]
    return _padding_sides(w, input_shape, geom, transposed, opts, got, rtol, atol)


def _shape_diagnosis(got: Any, out_shape: tuple[int, ...], transposed: bool) -> list[str]:
    m = int(np.prod(out_shape))
    lines = [f"fn's output has {got.shape[0]:,} entries per sample; the expected output "
             f"{tuple(out_shape)} has {m:,}."]
    per_channel = got.shape[0] / out_shape[0]
    spatial = out_shape[1:]
    for deltas in itertools.product((0, -1, 1), repeat=len(spatial)):
        if any(deltas) and len(set(d for d in deltas if d)) == 1 and \
                np.isclose(per_channel, np.prod([n + d for n, d in zip(spatial, deltas)])):
            axes = [a for a, d in enumerate(deltas) if d]
            cause = ("output_padding (the last row/column of a stride > 1 transposed convolution)"
                     if transposed else "padding or stride (floor vs ceil of the output size)")
            lines.append(f"diagnosis: the output is one {'larger' if max(deltas) > 0 else 'smaller'} "
                         f"along spatial axis {', '.join(map(str, axes))}: {cause}.")
            return lines
    lines.append("diagnosis: the output shapes differ by more than one position: check stride, "
                 "padding and dilation, or the weight layout.")
    return lines


def _padding_sides(w: np.ndarray, input_shape: tuple[int, ...], geom: ConvGeometry, transposed: bool,
                   opts: dict[str, Any], got: Any, rtol: float, atol: float, max_tries: int = 64) -> list[str]:
    """Zero padding ``lo`` before and ``hi`` after, per axis, other than the expected, with the
    kernel as given or flipped: windows that start off (``x[..., 1::2]``, padding on one side
    only), TensorFlow's SAME against ONNX's SAME_LOWER, a transposed convolution cropped on
    one side (``conv2d_transpose`` with SAME). Reported with the corrected ``padding=``."""
    if geom.padding_mode != "zeros" or got.nnz > 2_000_000:
        return []
    per_axis = []
    for n, k, s_, d, o in zip(geom.in_spatial, geom.kernel, geom.stride, geom.dilation, geom.out_spatial):
        span = d * (k - 1) + 1  # for a transposed convolution geom is its adjoint: n is its output
        per_axis.append([(lo, hi) for lo in range(0, span + 1) for hi in range(0, span + 1)
                         if (n + lo + hi - span) // s_ + 1 == o])
    combos = list(itertools.product(*per_axis))
    if not combos or len(combos) > max_tries:
        return []
    names = {rule: same_sides(rule, geom.in_spatial, geom.kernel, geom.dilation, geom.stride)
             for rule in ("SAME_UPPER", "SAME_LOWER")}
    spatial = tuple(range(2, w.ndim))
    for flipped, combo in itertools.product((False, True), combos):
        lo, hi = tuple(c[0] for c in combo), tuple(c[1] for c in combo)
        if (lo, hi) == (geom.pad_lo, geom.pad_hi) and not flipped:
            continue
        pairs = tuple(zip(lo, hi))
        trial = dict(opts, padding=pairs)
        if transposed:  # the output size fixes output_padding
            trial["output_padding"] = tuple(n - ((i - 1) * s_ + d * (k - 1) + 1 - a - b) for n, i, s_, d, k, a, b in zip(
                geom.in_spatial, input_shape[1:], geom.stride, geom.dilation, geom.kernel, lo, hi))
        try:
            alt = _expected(np.flip(w, axis=spatial).copy() if flipped else w, input_shape, transposed, trial)
        except ValueError:
            continue
        if alt.shape == got.shape and _differences(alt, got, rtol, atol)[0].size == 0:
            named = [rule for rule, sides in names.items() if sides == (lo, hi)]
            call = f"padding={pairs!r}" + (f" (= {named[0]!r})" if named else "")
            if transposed:
                call += f", output_padding={trial['output_padding']}"
            return [f"fn matches the matrix with: zero padding {lo} before and {hi} after (per spatial axis) "
                    f"instead of {geom.pad_lo} and {geom.pad_hi}" + (" and the kernel flipped" if flipped else "")
                    + f": its windows start {tuple(a - b for a, b in zip(geom.pad_lo, lo))} positions off "
                    f"(padding on one side only, or the other framework's SAME). The corrected call: {call}."]
    return []


def _pattern_diagnosis(expected: Any, got: Any, r: np.ndarray, c: np.ndarray, out_shape: tuple[int, ...],
                       in_shape: tuple[int, ...], geom: ConvGeometry, transposed: bool) -> list[str]:
    """What the set of differing entries looks like."""
    out = []
    empty = np.diff(sp.csr_array(got).indptr)[np.unique(r)] == 0
    if empty.all():
        out.append(f"{empty.size:,} output pixels are never computed (their rows of fn's matrix are "
                   f"empty): a loop bound off by one, or an output left at zero.")
        return out
    if not transposed:
        pix = np.array(np.unravel_index(r, out_shape)).T[:, 1:]  # spatial position of each
        start = pix * np.array(geom.stride) - np.array(geom.pad_lo)
        end = start + (np.array(geom.kernel) - 1) * np.array(geom.dilation)
        reads_padding = np.any((start < 0) | (end >= np.array(geom.in_spatial)), axis=1)
        if reads_padding.all():
            out.append("mismatches only in output pixels whose window reaches into the padding "
                       "(the border): the padding's size or mode.")
        inp = np.array(np.unravel_index(c, in_shape)).T[:, 1:]
        edge = np.any((inp == 0) | (inp == np.array(in_shape[1:]) - 1), axis=1)
        if edge.all() and not reads_padding.all():
            out.append("mismatches only where the border of the input is read (its first or last "
                       "row or column): the border handling (padding, or an edge dropped).")
    E, G = sp.csr_array(expected), sp.csr_array(got)
    shifts = []
    rows = np.unique(r)
    for row in rows[:: max(1, rows.size // 256)]:
        ce = E.indices[E.indptr[row]:E.indptr[row + 1]]
        cg = G.indices[G.indptr[row]:G.indptr[row + 1]]
        if ce.size and ce.size == cg.size and np.all(cg - ce == cg[0] - ce[0]) and cg[0] != ce[0]:
            shifts.append(int(cg[0] - ce[0]))
    if shifts:
        values, counts = np.unique(shifts, return_counts=True)
        if counts.max() * 2 >= min(rows.size, 256):
            out.append(f"the differing rows are mostly the expected rows shifted by "
                       f"{int(values[counts.argmax()])} input positions: a constant offset of the "
                       f"window (padding on one side, stride or dilation).")
    if geom.groups > 1:
        gi = (c // int(np.prod(in_shape[1:]))) // (in_shape[0] // geom.groups)
        go = (r // int(np.prod(out_shape[1:]))) // (out_shape[0] // geom.groups)
        if np.any(gi != go):
            out.append("entries connect channels of different groups: the groups are mixed.")
    return out
