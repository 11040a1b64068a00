"""The structure of a stencil network, read from its nodes without values: which nodes keep
the spatial shape (stride-1 ``'same'`` convolutions with zero padding, elementwise nodes), how
far a seed's tangent reaches forward at each position (its cone's radius), how far an output's
cotangent reaches back, and what a colour of the packed method costs. :mod:`.packed` runs the
colourings on this structure; :mod:`.middle` picks where to meet them.
"""

from __future__ import annotations

from math import prod
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import numpy as np
import scipy.sparse as sp

from ..layers import Activation, BatchNorm, Conv, ConvTranspose, Layer, Reshape
from ..nodes import Combine
from .colouring import Lattice

if TYPE_CHECKING:
    from ..model import Network


def diagonal_of(M: sp.sparray) -> np.ndarray | None:
    """The diagonal of a square matrix that has nothing else, else None."""
    M = sp.csr_array(M)
    if M.shape[0] != M.shape[1]:
        return None
    rows = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
    if not np.array_equal(rows, M.indices):
        return None
    d = np.zeros(M.shape[0], dtype=M.dtype)
    d[rows] = M.data
    return d


def conv_half_widths(layer: Conv) -> tuple[int, ...] | None:
    """Per axis the half-width of a stride-1, zero-padded, size-keeping convolution, else None."""
    g = layer.geometry
    h = tuple(d * (k - 1) // 2 for k, d in zip(g.kernel, g.dilation))
    ok = (g.padding_mode == "zeros" and all(s == 1 for s in g.stride)
          and all(d * (k - 1) == 2 * hh for k, d, hh in zip(g.kernel, g.dilation, h))
          and tuple(g.pad_lo) == h and tuple(g.pad_hi) == h)
    return h if ok else None


def radii(net: Network, lat: Lattice) -> tuple[list[tuple[int, ...]], str | None]:
    """Per position the cone's radius of one seed along each spatial axis, and ``None`` — or
    the reason this method does not apply."""
    R, why = structure(net)
    if why is not None:
        return R, why
    for r in R:
        if any(2 * ra + 1 > e for ra, e in zip(r, lat.extents[1:])):
            return R, f"the cones (radius {max(max(r) for r in R)}) overlap at period {lat.extents[1:]}"
    return R, None


def half_widths(layer: Layer) -> tuple[int, ...]:
    """Per axis how far one node reaches: a convolution's half-width, else 0."""
    if isinstance(layer, Conv):
        return cast("tuple[int, ...]", conv_half_widths(layer))
    return (0,) * (len(layer.out_shape) - 1)


def structure(net: Network) -> tuple[list[tuple[int, ...]], str | None]:
    """Per position the forward cone's radius, and ``None`` when every node is a stride-1
    ``'same'`` convolution with zero padding or an elementwise node on one spatial shape — or
    the first node that is not."""
    spatial = net.input_shape[1:]
    nd = len(spatial)
    R: list[tuple[int, ...]] = [(0,) * nd]
    for i, layer in enumerate(net.layers):
        why = f"node {i} ({layer.node!r}, {layer.kind})"
        if any(len(s) != nd + 1 or tuple(s[1:]) != spatial for s in (*layer.in_shapes, layer.out_shape)):
            return R, f"{why} changes the spatial shape"
        ins = [R[p] for p in layer.inputs]
        if isinstance(layer, Conv) and not isinstance(layer, ConvTranspose):
            h = conv_half_widths(layer)
            if h is None:
                g = layer.geometry
                return R, (f"{why} is not a stride-1 convolution with zero 'same' padding, as wide on "
                           f"both sides of each axis (an odd kernel extent): it has kernel {tuple(g.kernel)}, "
                           f"dilation {tuple(g.dilation)}, stride {tuple(g.stride)}, padding "
                           f"{tuple(g.pad_lo)} before and {tuple(g.pad_hi)} after, mode {g.padding_mode!r}")
            R.append(tuple(r + hh for r, hh in zip(ins[0], h)))
        elif isinstance(layer, (Activation, BatchNorm, Reshape)) or (
                isinstance(layer, Combine) and all(diagonal_of(M) is not None for M in layer.matrices)):
            R.append(tuple(max(r) for r in zip(*ins)))
        else:
            return R, f"{why} is not a convolution or an elementwise node"
    return R, None


def reverse_radii(net: Network, stop: int = 0) -> list[tuple[int, ...] | None]:
    """Per position the reverse cone's radius: how far from an output seed its cotangent
    reaches there, through the nodes after position ``stop`` (None where they do not read the
    position)."""
    nd = len(net.input_shape) - 1
    Q: list[tuple[int, ...] | None] = [None] * (len(net.layers) + 1)
    Q[net.output] = (0,) * nd
    for i in reversed(range(stop, len(net.layers))):
        q = Q[i + 1]
        if q is None:
            continue
        h = half_widths(net.layers[i])
        for p in net.layers[i].inputs:
            grown = tuple(a + b for a, b in zip(q, h))
            Q[p] = grown if Q[p] is None else tuple(max(a, b) for a, b in zip(cast("tuple[int, ...]", Q[p]), grown))
    return Q


def work(net: Network, R: list[tuple[int, ...]], lat: Lattice, layers: Iterable[int] | None = None,
         reverse: bool = False) -> float:
    """Multiply-adds of one colour: each of ``layers`` (default all) over its packed squares,
    ``R`` giving each position's radius. Forward, a node runs at its output's radius; in reverse
    (``R`` the reverse radii), a convolution's transpose runs on its output's squares grown by
    its half-width."""
    spatial = net.input_shape[1:]
    N = [-(-n // e) for n, e in zip(spatial, lat.extents[1:])]
    total = 0.0
    for i in range(len(net.layers)) if layers is None else layers:
        layer, r = net.layers[i], R[i + 1]
        if reverse:
            r = tuple(a + b for a, b in zip(r, half_widths(layer)))
        area = prod(n * (2 * ra + 1) for n, ra in zip(N, r))
        if isinstance(layer, Conv):
            w = cast(np.ndarray, layer.p("weight"))
            total += float(w.size) * area
        else:
            total += layer.out_shape[0] * area * len(layer.inputs)
    return total


def ancestors(net: Network, node: int) -> set[int]:
    """The positions ``node`` reads, directly or not, and ``node``."""
    seen, todo = {node}, [node]
    while todo:
        q = todo.pop()
        if q > 0:
            for p in net.layers[q - 1].inputs:
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
    return seen
