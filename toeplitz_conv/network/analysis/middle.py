"""Meet in the middle: forward cones to a middle position, reverse cones from the output,
multiplied where they meet.

In a stencil network (the packed method's: stride-1 ``'same'`` convolutions with zero padding
and elementwise nodes), pick a position ``m`` that every later node reaches only through ``m``
itself or the network's input (a layer boundary of a DnCNN; the end of a residual block).
Then

    J = B A + D,    A = dm/dx,   B = d out/dm (m held as the variable),   D = d out/dx with m fixed

(``D`` is the direct part, a skip from the input such as DnCNN's ``x - f(x)``). ``A`` comes
from the packed forward colouring of the nodes up to ``m`` (its cones have radius ``R_m``),
``B`` and ``D`` from the packed *reverse* colouring of the nodes after ``m`` (radius
``Q_m``), where a convolution goes back by its transpose. Both lattices take the period
``2 q + 1``, ``q = max(R_m, Q_m)``, so that a position's place on it fixes both offsets below
(``C_in (2 q + 1)^d`` and ``C_out (2 q + 1)^d`` colours). At each position ``p`` of ``m``, ``A`` holds a
``C_m x K`` block (the inputs ``x[p + d2]`` around ``p``) and ``B`` an ``L x C_m`` block (the
outputs ``out[p + d1]``); their product is ``J[p + d1, p + d2]``, written into the band of
``J`` by offset. For eight 3x3 convolutions of 16 channels (1 channel in and out) meeting after
the fourth, the cones cost ``2 * 0.36 M`` multiply-adds a pixel and the products ``0.1 M``,
against ``1.6 M`` for the packed forward colouring through all eight.

Costs are estimated from the geometry (:func:`splits`) for every position that splits the
network so; the plan takes the cheapest.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from math import prod
from typing import TYPE_CHECKING, cast

import numpy as np
import scipy.sparse as sp

from ...indexing import index_dtype
from . import packed, stencil
from .colouring import Lattice

if TYPE_CHECKING:
    import torch

    from ..model import Network

#: Multiply-adds a second of the per-position products (``torch.bmm`` of ``B x C_m`` by
#: ``C_m x K`` blocks, float64, 2 cores; measured 8-14 GMAC/s) and entries a second written
#: into the band: the cost model's rates for the meeting.
BMM_MACS_PER_S = 8e9
BAND_ADDS_PER_S = 1e9


@dataclass(frozen=True)
class Split:
    """Where and how the two colourings meet.

    Attributes
    ----------
    node : int
        The middle position ``m``.
    forward, reverse : Lattice
        The column colouring of the input and the row colouring of the output.
    reach : tuple of int
        How far from ``m``'s positions the inputs they read, and the outputs that read them
        (or the input, for the direct part), may lie: the widest of the two cones; both
        lattices' period is ``2 reach + 1``, so that a position's place on it fixes both.
    macs : float
        Multiply-adds: both colourings' cones and the products at ``m``.
    seconds : float
        The estimated time.
    nbytes : int
        The estimated peak memory beyond the result: ``A`` at every position, the band.
    """

    node: int
    forward: Lattice
    reverse: Lattice
    reach: tuple[int, ...]
    macs: float
    seconds: float
    nbytes: int


def splits(net: Network, torch_rate: float, block: int) -> list[Split]:
    """Every position the network can be split at, with its estimated cost (none when the
    packed structure does not hold)."""
    R, why = stencil.structure(net)
    if why is not None:
        return []
    Q = stencil.reverse_radii(net)
    spatial, nd = net.input_shape[1:], len(net.input_shape) - 1
    c_in, c_out = net.input_shape[0], net.output_shape[0]
    itemsize = np.dtype(net.dtype).itemsize
    found = []
    for m in range(1, net.output):
        qm = Q[m]
        if qm is None:
            continue
        later = [i for i in range(m, len(net.layers)) if Q[i + 1] is not None]
        if any(p != 0 and p < m for i in later for p in net.layers[i].inputs):
            continue  # a later node reads something before m besides the input
        Qm = stencil.reverse_radii(net, m)  # through the nodes after m only
        # one period for both sides: a position's place on it then fixes both offsets
        q = tuple(max(r, a, b) for r, a, b in zip(R[m], cast("tuple[int, ...]", Qm[m]), Qm[0] or (0,) * nd))
        e = tuple(2 * a + 1 for a in q)
        if any(a > n for a, n in zip(e, spatial)):
            continue  # cones as wide as the image: no meeting needed
        forward, reverse = Lattice(net.input_shape, (c_in, *e)), Lattice(net.output_shape, (c_out, *e))
        K, L = forward.colours, reverse.colours
        up = stencil.ancestors(net, m)
        fwd = stencil.work(net, R, forward, [i for i in range(m) if i + 1 in up])
        rev = stencil.work(net, [r or (0,) * nd for r in Qm], reverse, later, reverse=True)
        c_m = net.shape_at(m)[0]
        P = prod(-(-n // a) * a for n, a in zip(spatial, e))
        meet = float(P) * L * c_m * K
        seconds = (K * fwd + L * rev) / torch_rate + meet / BMM_MACS_PER_S + P * L * K / BAND_ADDS_PER_S
        band = c_out * prod(-(-n // a) * a + 2 * r for n, a, r in zip(spatial, e, q)) * c_in \
            * prod(4 * r + 1 for r in q)
        held = (P * c_m * K + band + 3 * block * (c_m + c_in) * P) * itemsize
        found.append(Split(m, forward, reverse, q, K * fwd + L * rev + meet, seconds, int(held)))
    return found


def jacobian(net: Network, x: np.ndarray, split: Split, block: int) -> sp.csr_array:
    """The Jacobian at one sample ``x`` ``(1, *input_shape)`` by meeting at ``split.node``."""
    import torch

    m, nd = split.node, len(net.input_shape) - 1
    spatial = net.input_shape[1:]
    c_in, c_out, c_m = net.input_shape[0], net.output_shape[0], net.shape_at(m)[0]
    R, _ = stencil.structure(net)
    Q = [q if q is not None else (0,) * nd for q in stencil.reverse_radii(net, m)]
    up = stencil.ancestors(net, m)
    e, q = split.forward.extents[1:], split.reach  # the one period of both lattices, 2 q + 1
    rmax = [max(R[p][a] for p in up) for a in range(nd)]
    qmax = [max(Q[p][a] for p in range(len(Q)) if p >= m or p == 0) for a in range(nd)]
    pad = tuple(a + max(r, s) for a, r, s in zip(e, rmax, qmax))
    fwd = packed.Packed(net, x, split.forward, R, pad=pad)
    rev = packed.Packed(net, None, split.reverse, Q, pad=pad, primal=fwd)

    # A = dm/dx by position p of m: (*class, *square, C_m, K) with p = e * square + class,
    # first in colour order (each block of colours one strided copy), then each class's colour
    # axes rolled into offset order: the input of colour k that p reads is p + d2 with
    # d2 + q = (k + q - class) mod e
    N = tuple(-(-n // a) for n, a in zip(spatial, e))
    K = split.forward.colours
    At = torch.zeros((*e, *N, c_m, K), dtype=fwd.tdtype)
    padding = [x for n, a in zip(reversed(spatial), reversed(e)) for x in (0, -(-n // a) * a - n)]
    spread = tuple(x for n, a in zip(N, e) for x in (n, a))
    to_class = (*(3 + 2 * a for a in range(nd)), *(2 + 2 * a for a in range(nd)), 1, 0)
    for a0 in range(0, K, block):
        ks = np.arange(a0, min(a0 + block, K))
        U = torch.nn.functional.pad(fwd.unpack(fwd.tangent(ks, m), ks, R[m]), padding)
        At[..., a0:a0 + len(ks)] = U.reshape(len(ks), c_m, *spread).permute(to_class)
        del U
    colour_axes = tuple(range(-nd, 0))
    for cls in product(*(range(a) for a in e)):
        sub = At[cls].reshape(*N, c_m, c_in, *e)
        At[cls] = torch.roll(sub, tuple((r - c) % a for r, c, a in zip(q, cls, e)), colour_axes).reshape(*N, c_m, K)

    # the band of J: (C_out, *output position + margin, C_in, *(o - i) + H)
    H = tuple(2 * r for r in q)
    band = torch.zeros((c_out, *(n * a + 2 * r for n, a, r in zip(N, e, q)), c_in, *(2 * h + 1 for h in H)),
                       dtype=At.dtype)
    L, Nn = split.reverse.colours, prod(N)
    rows = e[-1] * max(1, block // e[-1])  # whole rows of the lattice's last axis per block
    for a0 in range(0, L, rows):
        ls = np.arange(a0, min(a0 + rows, L))
        B = len(ls)
        CT = rev.cotangents(ls, m)
        parts = {m: c_m}
        if 0 in CT:
            parts[0] = c_in
        V = {p: torch.nn.functional.pad(rev.unpack(CT[p], ls, Q[p]), padding).reshape(B, c, *spread)
             for p, c in parts.items()}
        del CT
        lk = np.stack(np.unravel_index(ls, split.reverse.extents), axis=1)
        for cls in product(*(range(a) for a in e)):
            pick = (slice(None), slice(None)) + tuple(x for c in cls for x in (slice(None), c))
            perm = (*range(2, 2 + nd), 0, 1)
            Vc = V[m][pick].permute(perm).reshape(Nn, B, c_m)
            prods = torch.bmm(Vc, At[cls].reshape(Nn, c_m, K)).reshape(*N, B, c_in, *e)
            direct = V[0][pick].permute(perm).reshape(*N, B, c_in) if 0 in V else None
            for b0 in range(0, B, e[-1]):  # a row: its outputs' offsets d1 cover the last axis once
                row = (slice(None),) * nd + (slice(b0, b0 + e[-1]),)
                _add_row(band, prods[row], None if direct is None else direct[row], lk[b0], cls, N, e, q, H)
        del V
    del At, fwd, rev  # the products and the primal pass: let go before the CSR is built
    return _band_to_csr(band.numpy(), spatial, q, H, (prod(net.output_shape), prod(net.input_shape)))


def _add_row(band: torch.Tensor, prods: torch.Tensor, direct: torch.Tensor | None, first: np.ndarray,
             cls: tuple[int, ...], N: tuple[int, ...], e: tuple[int, ...], q: tuple[int, ...],
             H: tuple[int, ...]) -> None:
    """Add one row of output colours (``first`` and the next ``e[-1] - 1`` along the last axis)
    of one class of positions into the band, by strided views: an output colour ``l`` reads the
    positions ``p`` of class ``cls`` at offset ``d1 = j - q`` with ``j = (l - cls + q) mod e``,
    so along the last axis the row's colours are the offsets ``j`` rolled by ``q - cls``: two
    contiguous pieces, each one view ``(square, j, C_in, d2)`` of the band (no two of its
    entries fall on one place of the band: ``o = p + d1`` and ``o - i`` fix ``d1`` and ``d2``)."""
    nd = len(N)
    st = band.stride()
    s_sp, s_ci, s_t = st[1:1 + nd], st[1 + nd], st[2 + nd:]
    lead = range(nd - 1)
    d1 = [q[a] - (cls[a] - int(first[1 + a]) + q[a]) % e[a] for a in lead]
    base = int(first[0]) * st[0] + sum((cls[a] + d1[a] + q[a]) * s_sp[a] + (H[a] - d1[a] - q[a]) * s_t[a]
                                       for a in lead)
    last = nd - 1
    shift = (q[last] - cls[last]) % e[last]  # colour t of the row has j = (t + shift) mod e
    size_n = tuple(N)
    stride_n = tuple(e[a] * s_sp[a] for a in range(nd))
    stride_j = s_sp[last] - s_t[last]
    for t0, t1 in ((0, e[last] - shift), (e[last] - shift, e[last])):
        if t1 <= t0:
            continue
        j0 = (t0 + shift) % e[last]
        # position index cls + d1 + q + e n = cls + j + e n; offset index H - d1 + d2 = H + q - j - q + d2idx
        offset = base + (cls[last] + j0) * s_sp[last] + (H[last] - j0) * s_t[last]
        view = band.as_strided((*size_n, t1 - t0, band.shape[1 + nd], *e),
                               (*stride_n, stride_j, s_ci, *s_t), offset)
        view.add_(prods[(slice(None),) * nd + (slice(t0, t1),)])
        if direct is not None:  # d2 = 0: the offset index H - d1 = H + q - j
            offset = base + (cls[last] + j0) * s_sp[last] + (H[last] + q[last] - j0) * s_t[last] \
                + sum(q[a] * s_t[a] for a in lead)
            view = band.as_strided((*size_n, t1 - t0, band.shape[1 + nd]), (*stride_n, stride_j, s_ci), offset)
            view.add_(direct[(slice(None),) * nd + (slice(t0, t1),)])


def _band_to_csr(band: np.ndarray, spatial: tuple[int, ...], margin: tuple[int, ...], H: tuple[int, ...],
                 shape: tuple[int, int]) -> sp.csr_array:
    """The band ``(C_out, *position + margin, C_in, *(o - i) + H)`` as CSR, a slab of output
    rows at a time (counted first, so that the result is written once, in place): entries
    whose input lies outside the image, and zeros, dropped. Within a row the entries come in
    column order, so nothing is sorted."""
    nd = len(spatial)
    c_out, c_in = band.shape[0], band.shape[1 + nd]
    P = prod(spatial)
    strides = [prod(spatial[a + 1:]) for a in range(nd)]
    inner = band.shape[2 + nd:]
    rows_per = max(1, 2**22 // max(1, prod(spatial[1:]) * c_in * prod(inner)))
    slabs = [(co, y0, min(spatial[0], y0 + rows_per)) for co in range(c_out) for y0 in range(0, spatial[0], rows_per)]

    def slab(co: int, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """The slab's values, which to keep, and each axis's input coordinate (broadcast)."""
        crop = (co, slice(margin[0] + y0, margin[0] + y1)) + tuple(
            slice(a, a + n) for a, n in zip(margin[1:], spatial[1:]))
        vals = band[crop]  # (y1 - y0, *spatial[1:], C_in, *inner)
        ok = vals != 0
        coords = []
        for a in range(nd):
            o = np.arange(y0, y1) if a == 0 else np.arange(spatial[a])
            t = o[:, None] - H[a] + np.arange(inner[a])[None, :]  # the input's coordinate
            shape_ = [1] * vals.ndim
            shape_[a], shape_[nd + 1 + a] = t.shape
            t = t.reshape(shape_)
            ok &= (t >= 0) & (t < spatial[a])
            coords.append(t)
        return vals, ok, coords

    counts = np.concatenate([slab(*s_)[1].reshape(-1, c_in * prod(inner)).sum(axis=1) for s_ in slabs])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    idx = index_dtype(int(indptr[-1]), *shape)
    data = np.empty(int(indptr[-1]), dtype=band.dtype)
    cols = np.empty(int(indptr[-1]), dtype=idx)
    at = 0
    for s_ in slabs:
        vals, ok, coords = slab(*s_)
        col = (np.arange(c_in) * P).reshape([1] * nd + [c_in] + [1] * nd)
        for a in range(nd):
            col = col + coords[a] * strides[a]
        n = int(ok.sum())
        data[at:at + n] = vals[ok]
        cols[at:at + n] = np.broadcast_to(col, ok.shape)[ok]
        at += n
    return sp.csr_array((data, cols, indptr.astype(idx)), shape=shape)
