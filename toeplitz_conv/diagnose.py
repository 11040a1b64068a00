"""The diagnoses of :func:`~toeplitz_conv.testing.assert_conv_equal`: when ``fn``'s matrix is not
the expected one, the fewest changes to the expected call that make it so, searched jointly as
whole explanations (each a matrix built and compared entry by entry): the kernel flipped,
transposed or its channel axes swapped; the stride or dilation (per axis); the padding's sides,
size or mode (TensorFlow's SAME against ONNX's SAME_LOWER, a one-sided crop of a transposed
convolution, numpy's 'symmetric' against torch's reflect); output_padding; channels-last
batches. The smallest explanation is named with the corrected call; else the output shape per
axis, or the pattern of the differing entries. A random probe ``got @ v`` rules out almost every
candidate before the entry-by-entry comparison, and a zero-padded candidate whose pattern
(counted from its geometry) cannot hold ``fn``'s nonzeros is not built at all.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .arithmetic import same_sides
from .conv import conv_matrix, conv_transpose_matrix, csr_size
from .geometry import ConvGeometry, conv_geometry, conv_transpose_geometry
from .layouts import NAMES, channels_last


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


# ------------------------------------------------------------------------- the joint search
#
# A mismatch is explained by the fewest changes to the expected call that give fn's matrix
# exactly. Each factor below is a list of (cost, words, value); the search builds the
# candidates' matrices by increasing total cost (1, then 2, then 3 changes), so the first one
# that matches is the smallest explanation. The padding is not a free factor: for each stride,
# dilation and layout, only the per-side paddings (and, transposed, output_paddings) that give
# fn's output size are tried.

#: The search builds at most this many candidate matrices ...
MAX_TRIES = 4000
#: ... and stops after this many seconds, saying so.
MAX_SECONDS = 20.0
#: Explanations of more changes than this are not searched.
MAX_CHANGES = 3


@dataclass(frozen=True)
class _Layer:
    """What fn is told: the weight (torch's layout), one sample's shape, the options, fn's output."""

    weight: np.ndarray
    input_shape: tuple[int, ...]
    transposed: bool
    opts: dict[str, Any]
    geom: ConvGeometry
    layout: str | None


def _kernels(layer: _Layer) -> list[tuple[int, str, np.ndarray, str]]:
    """(cost, words, weight, the weight as an expression of the given one, torch's layout)."""
    w, transposed = layer.weight, layer.transposed
    spatial = tuple(range(2, w.ndim))
    axes = f"axis={spatial}"
    flip = ("kernel flipped (rotated by 180 degrees): "
            + ("the transposed convolution is the true convolution of the kernel: a hand-written "
               "backward that does not rotate it, or rotates it twice" if transposed else
               "fn computes a true convolution, not PyTorch's cross-correlation"))
    out = [(0, "", w, ""), (1, flip, np.flip(w, axis=spatial).copy(), f"np.flip(weight, {axes})")]
    if w.shape[0] == w.shape[1] and layer.opts.get("groups", 1) == 1:
        swap = ("channels swapped: fn reads the weight's two channel axes the other way round ("
                + ("(C_out, C_in, ...) instead of torch's transposed (C_in, C_out, ...)" if transposed
                   else "(C_in, C_out, ...) instead of (C_out, C_in, ...)") + ")")
        swapped = np.swapaxes(w, 0, 1)
        out += [(1, swap, swapped.copy(), "np.swapaxes(weight, 0, 1)"),
                (2, f"{swap}; and {flip}", np.flip(swapped, axis=spatial).copy(),
                 f"np.flip(np.swapaxes(weight, 0, 1), {axes})")]
    if w.ndim >= 4 and w.shape[-1] == w.shape[-2]:
        out.append((1, "kernel transposed: fn reads the kernel's last two axes the other way round "
                       "(rows as columns)", np.swapaxes(w, -1, -2).copy(), "np.swapaxes(weight, -1, -2)"))
    return [k for k in out if k[0] == 0 or not np.array_equal(k[2], w)]  # a symmetric kernel: no change


def _per_axis(name: str, expected: tuple[int, ...], values: Sequence[int],
              what: str) -> list[tuple[int, str, tuple[int, ...]]]:
    """The expected sizes, then every other choice of ``values`` per axis (the same on every
    axis first: the usual mistake)."""
    others = sorted(set(itertools.product(values, repeat=len(expected))) - {expected},
                    key=lambda t: (len(set(t)) > 1, t))
    return [(0, "", expected)] + [(1, f"{name}: fn {what} {_axes(t)}, not {_axes(expected)}", t) for t in others]


def _axes(t: tuple[int, ...]) -> str:
    return str(t[0]) if len(set(t)) == 1 else str(t)


def _layouts(layer: _Layer, actual: tuple[int, ...]) -> list[tuple[int, str, tuple[bool, bool]]]:
    """(reads channels last, returns channels last), each against what fn was said to do."""
    s = layer.input_shape
    out = [(0, "", (False, False))]
    if len(s) < 2:
        return out
    given = "(N, C, *spatial)" if _said_first(layer.layout) else "(N, *spatial, C)"
    other = "(N, *spatial, C)" if given == "(N, C, *spatial)" else "(N, C, *spatial)"
    for flags, what in (((True, True), "reads and returns"), ((False, True), "returns"), ((True, False), "reads")):
        reads, returns = flags
        if (reads and s[0] == s[-1] == 1) or (returns and actual[0] == actual[-1] == 1):
            continue
        last = "channels last" if given == "(N, C, *spatial)" else "channels first"
        out.append((1, f"{last}: fn {what} batches as {other} where {given} was given", flags))
    return out


def _said_first(layout: str | None) -> bool:
    """Whether fn was said to take channels-first batches."""
    return layout is None or not channels_last(layout)


def _paddings(layer: _Layer, k: tuple[int, ...], s: tuple[int, ...], d: tuple[int, ...],
              n: tuple[int, ...], o: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Every (pad_lo, pad_hi, output_padding) that gives output size ``o`` from input size ``n``."""
    per_axis = []
    for n_, k_, s_, d_, o_ in zip(n, k, s, d, o):
        span = d_ * (k_ - 1) + 1
        if layer.transposed:  # (n - 1) s + span - lo - hi + op = o, with 0 <= op < max(s, d)
            full = (n_ - 1) * s_ + span
            # a crop at the end and output_padding undo each other: (lo, hi - op) is the map
            nets = {(lo, hi - (o_ - full + lo + hi)) for lo in range(span) for hi in range(span)
                    if 0 <= o_ - full + lo + hi < max(s_, d_)}
            axis = sorted((lo, max(net, 0), max(-net, 0)) for lo, net in nets)
        else:
            axis = [(lo, hi, 0) for lo in range(span + 1) for hi in range(span + 1)
                    if n_ + lo + hi >= span and (n_ + lo + hi - span) // s_ + 1 == o_]
        per_axis.append(axis)
    out = [tuple(zip(*combo)) for combo in itertools.product(*per_axis)]
    if layer.transposed:  # the expected crop as it was written, where it is the same map
        g, op = layer.geom, _output_padding(layer)
        same = tuple(tuple(x) for x in (g.pad_lo, np.subtract(g.pad_hi, op)))
        out = [(g.pad_lo, g.pad_hi, op) if (lo, tuple(np.subtract(hi, o))) == same else (lo, hi, o)
               for lo, hi, o in out]
    return out  # type: ignore[return-value]


def _padding_words(layer: _Layer, lo: tuple[int, ...], hi: tuple[int, ...], op: tuple[int, ...],
                   names: list[str]) -> list[str]:
    g, words = layer.geom, []
    if (lo, hi) != (g.pad_lo, g.pad_hi):
        if len(set(lo + hi)) == 1 and len(set(g.pad_lo + g.pad_hi)) == 1:
            words.append(f"padding size: fn {'crops' if layer.transposed else 'pads'} by {lo[0]}, not {g.pad_lo[0]}")
        else:
            off = tuple(a - b for a, b in zip(g.pad_lo, lo))
            words.append(f"zero padding {lo} before and {hi} after (per spatial axis) instead of {g.pad_lo} and "
                         f"{g.pad_hi}: its windows start {off} positions off (padding on one side only"
                         + (f", or {names[0]!r})" if names else ", or the other framework's SAME)"))
    if layer.transposed and op != (expected_op := _output_padding(layer)):
        words.append(f"output_padding {op}, not {expected_op}")
    return words


def _output_padding(layer: _Layer) -> tuple[int, ...]:
    """The expected transposed convolution's output_padding (whatever form the call gave)."""
    g = layer.geom  # the adjoint convolution: its input is the transposed one's output
    return tuple(n - ((i - 1) * s + d * (k - 1) + 1 - a - b) for n, i, s, d, k, a, b in zip(
        g.in_spatial, layer.input_shape[1:], g.stride, g.dilation, g.kernel, g.pad_lo, g.pad_hi))


def explain(weight: np.ndarray, input_shape: tuple[int, ...], geom: ConvGeometry, transposed: bool,
            opts: dict[str, Any], got: Any, actual: tuple[int, ...], rtol: float, atol: float,
            layout: str | None = None) -> list[str]:
    """The fewest changes to the expected call whose matrix ``got`` (fn's, rows in fn's output
    ``actual``'s order) equals: the kernel flipped, transposed or its channel axes swapped; the
    stride, dilation, padding sides, size or mode, output_padding; channels-last batches;
    searched jointly, up to :data:`MAX_CHANGES` at once. Returns the diagnosis lines."""
    layer = _Layer(np.asarray(weight), tuple(input_shape), transposed, opts, geom, layout)
    got = sp.csr_array(got)
    kernels = _kernels(layer)
    strides = _per_axis("stride", geom.stride, (1, 2, 3), "steps by")
    dilations = _per_axis("dilation", geom.dilation, (1, 2), "spaces its taps by")
    mode = opts.get("padding_mode", "zeros")
    modes = [(0, "", mode)] + ([] if transposed else [
        (1, f"padding mode: fn pads with {m!r}, not {mode!r}", m)
        for m in ("zeros", "reflect", "replicate", "circular", "symmetric") if m != mode])
    layouts = _layouts(layer, actual)
    first = _said_first(layout)
    probe = np.random.default_rng(0).standard_normal(got.shape[1])
    seen, size = got @ probe, np.abs(probe)
    strong = int(np.count_nonzero(np.abs(got.data) > atol))  # entries no candidate may leave out
    scale = float(np.abs(seen).max(initial=0.0)) or 1.0
    start, tried, pads_cache = time.perf_counter(), 0, {}
    for level in range(1, MAX_CHANGES + 1):
        for combo in itertools.product(kernels, strides, dilations, modes, layouts):
            cost = sum(c[0] for c in combo)
            if cost > level:
                continue
            (_, kw, w2, kx), (_, sw, s), (_, dw, d), (_, mw, m), (_, lw, (reads, returns)) = combo
            in_cf = _true_shape(input_shape, first) if reads else input_shape
            out_cf = _true_shape(actual, first) if returns else actual
            c_out = w2.shape[1] * opts.get("groups", 1) if transposed else w2.shape[0]
            if c_out != out_cf[0] or (m != "zeros" and transposed):
                continue
            key = (s, d, in_cf, out_cf, w2.shape)
            if key not in pads_cache:
                pads_cache[key] = _paddings(layer, tuple(w2.shape[2:]), s, d, tuple(in_cf[1:]), tuple(out_cf[1:]))
            for lo, hi, op in pads_cache[key]:
                names = _same_names(layer, w2, s, d, in_cf, out_cf, lo, hi)
                pad_words = _padding_words(layer, lo, hi, op, names)
                if cost + min(len(pad_words), 1) != level:  # a crop and its output_padding: one change
                    continue
                if tried >= MAX_TRIES or time.perf_counter() - start > MAX_SECONDS:
                    return [f"no explanation found in {tried:,} candidates of up to {level} changes "
                            f"(the search stops at {MAX_TRIES:,} or {MAX_SECONDS:g} s)."]
                tried += 1
                trial = dict(opts, stride=s, dilation=d, padding=tuple(zip(lo, hi)))
                if transposed:
                    trial["output_padding"] = op
                else:
                    trial["padding_mode"] = m
                try:
                    if not _may_hold(w2, in_cf, transposed, trial, strong):
                        continue
                    alt = sp.csr_array(expected_matrix(w2, in_cf, transposed, trial))
                except (ValueError, TypeError):
                    continue
                if reads:
                    alt = alt[:, _order(input_shape, in_cf, first)]
                if returns:
                    alt = alt[_order(actual, out_cf, first)]
                if alt.shape != got.shape or np.any(np.abs(alt @ probe - seen) > 1.01 * (
                        rtol * (abs(alt) @ size) + atol * size.sum()) + 1e-12 * scale):
                    continue  # what passes entry by entry passes on a probe too; almost nothing else does
                if differences(alt, got, rtol, atol)[0].size == 0:
                    words = [w for w in (kw, sw, dw, mw, lw) if w] + pad_words
                    return [_said(layer, words, trial, lo, hi, op, names, (reads, returns), kx)]
    return [f"no combination of up to {MAX_CHANGES} changes (kernel flipped, transposed or its channel axes "
            f"swapped; stride; dilation; padding sides, size or mode; output_padding; channels last) gives "
            f"fn's matrix ({tried:,} tried)."]


def _may_hold(w: np.ndarray, in_cf: tuple[int, ...], transposed: bool, trial: dict[str, Any], nnz: int) -> bool:
    """Whether a candidate's zero-padded pattern, counted from its geometry alone (nothing
    built), has room for fn's ``nnz`` entries larger than ``atol`` (each must lie in it)."""
    if trial.get("padding_mode", "zeros") != "zeros":
        return True
    if transposed:
        room = csr_size(conv_transpose_geometry(w.shape, in_cf, **trial), 8, transpose=True)[0]
    else:
        room = csr_size(conv_geometry(w.shape, in_cf, **trial), 8)[0]
    return room >= nnz


def _true_shape(shape: tuple[int, ...], first: bool) -> tuple[int, ...]:
    """The channels-first shape fn really reads (or returns) where ``shape`` was said, when fn
    uses the other layout than the one it was said to (``first``: said channels first)."""
    return (shape[-1], *shape[:-1]) if first else (*shape[1:], shape[0])


def _order(said: tuple[int, ...], true: tuple[int, ...], first: bool) -> np.ndarray:
    """For each entry of ``said`` (channels first, as the library flattens it), its index in fn's
    own channels-first flattening of ``true``."""
    return _last(true) if first else np.argsort(_last(said))


def _same_names(layer: _Layer, w2: np.ndarray, s: tuple[int, ...], d: tuple[int, ...], in_cf: tuple[int, ...],
                out_cf: tuple[int, ...], lo: tuple[int, ...], hi: tuple[int, ...]) -> list[str]:
    """Which of TensorFlow's / ONNX's rules the sides are ('VALID' too)."""
    k = tuple(w2.shape[2:])
    n = tuple(out_cf[1:]) if layer.transposed else tuple(in_cf[1:])
    out = [rule for rule in ("SAME_UPPER", "SAME_LOWER") if same_sides(rule, n, k, d, s) == (lo, hi)]
    return out + (["VALID"] if not any(lo + hi) and layer.geom.pad_lo + layer.geom.pad_hi != lo + hi else [])


def _said(layer: _Layer, words: list[str], trial: dict[str, Any], lo: tuple[int, ...], hi: tuple[int, ...],
          op: tuple[int, ...], names: list[str], flags: tuple[bool, bool], weight: str) -> str:
    g, call = layer.geom, []
    if (lo, hi) != (g.pad_lo, g.pad_hi) or (layer.transposed and any("output_padding" in w for w in words)):
        call.append(f"padding={tuple(zip(lo, hi))!r}" + (f" (= {names[0]!r})" if names else ""))
        if layer.transposed:
            call.append(f"output_padding={op}")
    if trial["stride"] != g.stride:
        call.append(f"stride={_axes(trial['stride'])}")
    if trial["dilation"] != g.dilation:
        call.append(f"dilation={_axes(trial['dilation'])}")
    if not layer.transposed and trial["padding_mode"] != layer.opts.get("padding_mode", "zeros"):
        call.append(f"padding_mode={trial['padding_mode']!r}")
    if all(flags):
        nd = len(layer.input_shape) - 1
        name = NAMES[nd][1 if _said_first(layer.layout) else 0]
        call.append(f"layout={name!r} (input_shape as given)")
    elif any(flags):
        call.append("and fn moved to read and return one layout")
    if weight:
        call.insert(0, f"weight={weight} (in torch's layout)")
    return (f"fn matches the matrix with: {'; and '.join(words)}."
            + (f" The corrected call: {', '.join(call)}." if call else ""))


def _last(shape: tuple[int, ...]) -> np.ndarray:
    """For each entry of a channels-last flattening, its index in the channels-first one."""
    return np.moveaxis(np.arange(int(np.prod(shape))).reshape(shape), 0, -1).ravel()


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
