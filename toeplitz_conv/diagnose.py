"""The diagnoses of :func:`~toeplitz_conv.testing.assert_conv_equal`: when ``fn``'s matrix is not
the expected one, which usual mistake it is, searched as whole explanations (each a matrix
built and compared entry by entry): a flipped kernel, swapped channel axes, another padding
size, mode or sides (with the kernel flipped or not, transposed convolutions included:
TensorFlow's SAME against ONNX's SAME_LOWER, a one-sided crop), channels-last batches; else
the output shape per axis, or the pattern of the differing entries. Each names the corrected
call where there is one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .arithmetic import same_sides
from .conv import conv_matrix, conv_transpose_matrix
from .geometry import ConvGeometry


def differences(A: Any, B: Any, rtol: float,
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


def expected_matrix(weight: np.ndarray, input_shape: Sequence[int], transposed: bool,
              opts: dict[str, Any]) -> sp.sparray:
    if transposed:
        return conv_transpose_matrix(weight, input_shape, **opts)
    return conv_matrix(weight, input_shape, **opts)


def candidates(weight: np.ndarray, transposed: bool,
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
        for mode in ("zeros", "reflect", "replicate", "circular", "symmetric"):
            if mode != opts.get("padding_mode", "zeros"):
                out.append((f"padding mode: fn pads with '{mode}', not '{opts.get('padding_mode', 'zeros')}'",
                            w, dict(opts, padding_mode=mode)))
    if isinstance(pad, int):
        for p in (pad - 1, pad + 1):
            if p >= 0:
                out.append((f"padding size: fn pads by {p}, not {pad}", w, dict(opts, padding=p)))
    return out


def mistake(w: np.ndarray, input_shape: tuple[int, ...], geom: ConvGeometry, transposed: bool,
             opts: dict[str, Any], got: Any, rtol: float, atol: float) -> list[str]:
    """The usual mistake whose matrix ``got`` equals, if one does."""
    for what, w2, opts2 in candidates(w, transposed, opts):
        try:
            alt = expected_matrix(w2, input_shape, transposed, opts2)
        except (ValueError, TypeError):
            continue
        if alt.shape == got.shape and differences(alt, got, rtol, atol)[0].size == 0:
            return [f"fn matches the matrix with: {what}."]
    found = padding_sides(w, input_shape, geom, transposed, opts, got, rtol, atol)
    out_shape = geom.in_shape if transposed else geom.out_shape
    return found or channels_last(expected_matrix(w, input_shape, transposed, opts), got, input_shape, out_shape,
                                  rtol, atol)


def _last(shape: tuple[int, ...]) -> np.ndarray:
    """For each entry of a channels-last flattening, its index in the channels-first one."""
    return np.moveaxis(np.arange(int(np.prod(shape))).reshape(shape), 0, -1).ravel()


def channels_last(expected: Any, got: Any, in_shape: tuple[int, ...], out_shape: tuple[int, ...], rtol: float,
                  atol: float) -> list[str]:
    """``fn`` reads or returns channels-last batches where channels first were assumed (or the
    other way round): its matrix is the expected one with rows and/or columns permuted."""
    E = sp.csr_array(expected)
    rows, cols = _last(out_shape), _last(in_shape)
    for what, alt in (("returns", E[rows]), ("reads", E[:, cols]), ("reads and returns", E[rows][:, cols])):
        if alt.shape == got.shape and differences(alt, got, rtol, atol)[0].size == 0:
            name = {1: "NLC", 2: "NHWC", 3: "NDHWC"}.get(len(in_shape) - 1, "NHWC")
            fix = (f"The corrected call: layout={name!r}, with input_shape {(*in_shape[1:], in_shape[0])}."
                   if what == "reads and returns" else "Move its channels axis so that it reads and returns one layout.")
            return [f"fn matches the matrix with: channels last: fn {what} batches as (N, *spatial, C) where "
                    f"(N, C, *spatial) was given. {fix}"]
    return []


def shape_diagnosis(got: Any, out_shape: tuple[int, ...], transposed: bool, actual: tuple[int, ...]) -> list[str]:
    """What differs between fn's output shape ``actual`` (channels first) and the expected one."""
    lines = [f"fn's output has shape {actual} ({got.shape[0]:,} entries per sample); the expected output "
             f"{tuple(out_shape)} has {int(np.prod(out_shape)):,}."]
    names = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}.get(len(out_shape) - 1)
    if len(actual) != len(out_shape) or names is None:
        return lines + ["diagnosis: fn's output has another number of axes: check the layout (layout='NHWC'?) "
                        "or a reshape in fn."]
    if actual[0] != out_shape[0]:
        lines.append(f"diagnosis: {actual[0]} output channels instead of {out_shape[0]}: the weight layout "
                     f"(kernel_layout, or (C_in, C_out) read as (C_out, C_in)) or the channels' axis (layout).")
        return lines
    deltas = [a - e for a, e in zip(actual[1:], out_shape[1:])]
    axes = " and the ".join(names[i] for i, d in enumerate(deltas) if d)
    if set(deltas) <= {-1, 0} or set(deltas) <= {0, 1}:
        cause = ("output_padding (the last row/column of a stride > 1 transposed convolution), or the "
                 "padding's sides" if transposed else "padding or stride (floor vs ceil of the output "
                 "size: TensorFlow's SAME gives ceil(i / s))")
        lines.append(f"diagnosis: the output is one {'larger' if max(deltas) > 0 else 'smaller'} along "
                     f"the {axes}: {cause}.")
    else:
        lines.append(f"diagnosis: the output differs by {tuple(deltas)} along the {axes}: check stride, "
                     f"padding and dilation, or the weight layout.")
    return lines


def padding_sides(w: np.ndarray, input_shape: tuple[int, ...], geom: ConvGeometry, transposed: bool,
                   opts: dict[str, Any], got: Any, rtol: float, atol: float, max_tries: int = 64) -> list[str]:
    """Zero padding ``lo`` before and ``hi`` after, per axis, other than the expected, with the
    kernel as given, flipped, its channel axes swapped (square ones), or both: windows that start off (``x[..., 1::2]``, padding on one side
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
    kernels = [("", w), (" and the kernel flipped", np.flip(w, axis=spatial).copy())]
    if w.shape[0] == w.shape[1] and opts.get("groups", 1) == 1:  # the channel axes read the other way round
        swapped = np.swapaxes(w, 0, 1)
        kernels += [(" and the channel axes swapped", swapped.copy()),
                    (" and the channel axes swapped and the kernel flipped", np.flip(swapped, axis=spatial).copy())]
    for (also, w2), combo in itertools.product(kernels, combos):
        lo, hi = tuple(c[0] for c in combo), tuple(c[1] for c in combo)
        if (lo, hi) == (geom.pad_lo, geom.pad_hi) and not also:
            continue
        pairs = tuple(zip(lo, hi))
        trial = dict(opts, padding=pairs)
        if transposed:  # the output size fixes output_padding
            trial["output_padding"] = tuple(n - ((i - 1) * s_ + d * (k - 1) + 1 - a - b) for n, i, s_, d, k, a, b in zip(
                geom.in_spatial, input_shape[1:], geom.stride, geom.dilation, geom.kernel, lo, hi))
        try:
            alt = expected_matrix(w2, input_shape, transposed, trial)
        except ValueError:
            continue
        if alt.shape == got.shape and differences(alt, got, rtol, atol)[0].size == 0:
            named = [rule for rule, sides in names.items() if sides == (lo, hi)]
            call = f"padding={pairs!r}" + (f" (= {named[0]!r})" if named else "")
            if transposed:
                call += f", output_padding={trial['output_padding']}"
            return [f"fn matches the matrix with: zero padding {lo} before and {hi} after (per spatial axis) "
                    f"instead of {geom.pad_lo} and {geom.pad_hi}" + also
                    + f": its windows start {tuple(a - b for a, b in zip(geom.pad_lo, lo))} positions off "
                    f"(padding on one side only, or the other framework's SAME). The corrected call: {call}."]
    return []


def pattern_diagnosis(expected: Any, got: Any, r: np.ndarray, c: np.ndarray, out_shape: tuple[int, ...],
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
