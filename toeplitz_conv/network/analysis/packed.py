"""Forward colouring with each seed's tangent packed into its cone: the stencil networks' method.

In a network of stride-1 ``'same'`` convolutions with zero padding and elementwise nodes (a
denoiser: DnCNN, residual stacks), the tangent of one seed is zero beyond the seed's cone:
after convolutions of half-widths ``h_1, h_2, ...`` it lives within ``R = h_1 + h_2 + ...``
of the seed along each axis. The seeds of one colour lie on a lattice of period ``e >= 2R + 1``
(:mod:`.colouring`), so their cones never overlap, and the tangent of a colour is a grid of
``(2R + 1)``-wide squares around its seeds. This method keeps only those squares, side by
side in one *packed* image: a convolution of half-width ``h`` pads each square with a ring of
``h`` zeros, then runs torch's convolution on the packed image — a square's stencil reads the
zero ring of its neighbour, never its values, so each square's result is exact — and masks
what falls outside the image. An elementwise node multiplies by its derivative, gathered into
the same squares. The work of a colour is then that of its cones, not of the whole image:
for eight 3x3 convolutions ``sum (2l + 1)^2 / (8 * 17^2) = 42%`` of the unpacked work.

The primal values (the derivatives of the activations at ``x``) come from one forward pass of
the same nodes in torch.

The same packing runs backwards (:meth:`Packed.cotangents`): the cotangents of output seeds
on a lattice, through the nodes in reverse order, a convolution by its adjoint (the
flipped-kernel convolution on the grown squares), an elementwise node by its factor. Both
directions stop at any position (:meth:`Packed.tangent`), which is how :mod:`.middle` meets
them there.
"""

from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import scipy.sparse as sp

from ..layers import Activation, Conv, Reshape
from ..nodes import Combine
from .chain import last_uses
from .colouring import Lattice
from .stencil import ancestors, conv_half_widths, diagonal_of, half_widths

if TYPE_CHECKING:
    import torch

    from ..model import Network


#: Bytes torch's convolution may unfold at once (its im2col buffer); a batch of seeds past it
#: runs a few seeds at a time. Kept small: past the allocator's reuse of freed blocks each
#: call's buffer is fresh memory, faulted in page by page. The DnCNN's 48x48 cones took
#: 60 ms and 1.4k page faults at 16 MiB, against 75-170 ms and 12-14k faults at 128 MiB.
CONV_WORKSPACE_BYTES = 2**24


class Packed:
    """The packed colourings of one network at one sample: :meth:`block` evaluates ``J S`` for
    a block of colours, :meth:`tangent` and :meth:`cotangents` carry a block of seeds forward
    to a position or back from the output to one."""

    def __init__(self, net: Network, x: np.ndarray | None, lat: Lattice, R: list[tuple[int, ...]], *,
                 pad: tuple[int, ...] | None = None, primal: Packed | None = None) -> None:
        """``lat``'s period places the seeds; ``R`` gives each position's radius around them.
        ``pad`` (default: the period plus the widest radius) must be the same for two objects
        that share the primal pass (``primal``: the reverse side of :mod:`.middle`)."""
        import torch

        self.net, self.lat, self.R = net, lat, R
        self.spatial = net.input_shape[1:]
        self.nd = len(self.spatial)
        self.e = lat.extents[1:]
        self.N = tuple(-(-n // e) for n, e in zip(self.spatial, self.e))
        if pad is None:
            rmax = [max(r[a] for r in R) for a in range(self.nd)]
            pad = tuple(e + r for e, r in zip(self.e, rmax))
        self.pad = pad
        self.padded = tuple(n + 2 * p for n, p in zip(self.spatial, self.pad))
        self.tdtype = torch.from_numpy(np.zeros(0, dtype=net.dtype)).dtype
        inside = torch.zeros(self.padded, dtype=self.tdtype)
        inside[tuple(slice(p, p + n) for p, n in zip(self.pad, self.spatial))] = 1
        self.inside = inside.reshape(1, -1)
        self.scales: list[list[Any]]
        if primal is not None:
            self.scales = primal.scales
        else:
            self.scales = self._primal(torch.from_numpy(cast(np.ndarray, x)))
        # A convolution's packed output is masked to the image only where another convolution
        # reads it: an elementwise node multiplies by its factor gathered from the padded image,
        # zero outside it, and the result is cropped to the image.
        self.masked = [any(isinstance(net.layers[j], Conv) for j in range(len(net.layers))
                           if i + 1 in net.layers[j].inputs) for i in range(len(net.layers))]

    def _flat(self, a: np.ndarray) -> torch.Tensor:
        """``(C, *spatial)`` values -> ``(C, prod(padded))`` in the network's dtype, zero in the
        padding (an activation's derivative or an identity's diagonal may come as float64)."""
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.ascontiguousarray(a.reshape(-1, *self.spatial), dtype=self.net.dtype))
        pads = [p for pp in reversed(self.pad) for p in (pp, pp)]
        return F.pad(t, pads).reshape(t.shape[0], -1)

    def _primal(self, x: torch.Tensor) -> list[list[torch.Tensor | None]]:
        """One forward pass; per node the derivative factor of each input (None: a convolution)."""
        import torch.nn.functional as F

        conv = [F.conv1d, F.conv2d, F.conv3d][self.nd - 1]
        vals: list[Any] = [x[0].numpy().reshape(-1)]
        scales: list[list[Any]] = []
        last = last_uses(self.net.layers, len(self.net.layers) + 1)
        for i, layer in enumerate(self.net.layers):
            X = [vals[p] for p in layer.inputs]
            if isinstance(layer, Conv):
                w, b, h = layer.p("weight"), layer.p("bias"), cast("tuple[int, ...]", conv_half_widths(layer))
                t = conv(torch_tensor(X[0].reshape(1, *layer.in_shape)), torch_tensor(w),
                         None if b is None else torch_tensor(b), padding=h, dilation=layer.kw["dilation"],
                         groups=layer.kw["groups"])
                vals.append(t.numpy().reshape(-1))
                scales.append([None])
            elif isinstance(layer, Activation):
                Y = layer.function.forward(X[0][:, None])
                vals.append(Y[:, 0].astype(self.net.dtype, copy=False))
                scales.append([self._flat(layer.function.backward(np.ones_like(Y), X[0][:, None], Y)[:, 0])])
            else:  # a diagonal affine node: batch norm, a reshape, a residual sum or difference
                kept = bool(getattr(layer, "built", True))
                mats = [sp.eye_array(X[0].size, dtype=self.net.dtype)] if isinstance(layer, Reshape) else (
                    layer.matrices if isinstance(layer, Combine) else [layer.matrix])
                diags = [cast(np.ndarray, diagonal_of(M)) for M in mats]
                if not kept:  # a batch norm's diagonal, read and let go
                    layer.release()
                y = sum(d * v for d, v in zip(diags, X))
                vals.append(np.asarray(y + (layer.bias if layer.bias is not None else 0), dtype=self.net.dtype))
                scales.append([self._flat(d) for d in diags])
            for p in set(layer.inputs):  # free what no later node reads
                if last[p] <= i and p != self.net.output:
                    vals[p] = None
        return scales

    # ------------------------------------------------------------------ packed tangents
    def _index(self, offsets: np.ndarray, r: tuple[int, ...]) -> torch.Tensor:
        """``(B, M)`` int64: the padded flat position of each packed entry at radius ``r``."""
        import torch

        strides = np.cumprod((1,) + self.padded[::-1])[:-1][::-1]
        B = offsets.shape[0]
        idx = np.zeros((B,) + self._sizes(r), dtype=np.int64)
        for a in range(self.nd):
            pos = (offsets[:, a, None, None] + self.e[a] * np.arange(self.N[a])[None, :, None]
                   + np.arange(-r[a], r[a] + 1)[None, None, :]).reshape(B, -1) + self.pad[a]
            shape = [B] + [1] * self.nd
            shape[a + 1] = pos.shape[1]
            idx += pos.reshape(shape) * int(strides[a])
        return torch.from_numpy(idx.reshape(B, -1))

    def _sizes(self, r: tuple[int, ...]) -> tuple[int, ...]:
        """The packed image's size at radius ``r``: per axis ``N`` squares of ``2r + 1``."""
        return tuple(n * (2 * ra + 1) for n, ra in zip(self.N, r))

    def _gather(self, flat: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return flat[:, idx].permute(1, 0, 2)  # (B, C, M)

    def _grow(self, t: torch.Tensor, r: tuple[int, ...], h: tuple[int, ...]) -> torch.Tensor:
        """The packed squares of radius ``r`` padded with rings of ``h`` zeros: one zero image of
        the grown squares, each square copied into its middle (a strided view, no permute)."""
        B, C = t.shape[:2]
        split = [d for n, ra in zip(self.N, r) for d in (n, 2 * ra + 1)]
        grown = [d for n, ra, hh in zip(self.N, r, h) for d in (n, 2 * (ra + hh) + 1)]
        out = t.new_zeros(B, C, *grown)
        middle = tuple(x for ra, hh in zip(r, h) for x in (slice(None), slice(hh, hh + 2 * ra + 1)))
        out[(slice(None), slice(None)) + middle] = t.reshape(B, C, *split)
        return out.reshape(B, C, *self._sizes(tuple(ra + hh for ra, hh in zip(r, h))))

    def _conv(self, grown: torch.Tensor, layer: Conv, h: tuple[int, ...], transposed: bool = False) -> torch.Tensor:
        """torch's convolution (or its transpose, the adjoint) of the grown squares, a few seeds
        at a time: its float64 kernel unfolds the whole batch first (``C * taps`` values per
        position), 2.6 GB for eight seeds of a 512x512 image's cones; per seed it runs as fast."""
        import torch
        import torch.nn.functional as F

        conv = [F.conv1d, F.conv2d, F.conv3d][self.nd - 1]
        w = cast(np.ndarray, layer.p("weight"))
        if transposed:  # the adjoint of a stride-1 'same' convolution: the flipped kernel, the
            # channels of each group swapped (torch's own transpose runs at half the speed here)
            g = layer.kw["groups"]
            w = w.reshape(g, w.shape[0] // g, *w.shape[1:]).swapaxes(1, 2).reshape(
                w.shape[1] * g, w.shape[0] // g, *w.shape[2:])
            w = np.ascontiguousarray(w[(slice(None), slice(None)) + (slice(None, None, -1),) * self.nd])
        B = grown.shape[0]
        channels = max(layer.in_shape[0], layer.out_shape[0])
        per_seed = channels * prod(w.shape[2:]) * prod(grown.shape[2:]) * grown.element_size()
        step = max(1, CONV_WORKSPACE_BYTES // per_seed)
        args = dict(padding=h, dilation=layer.kw["dilation"], groups=layer.kw["groups"])
        wt = torch_tensor(w)
        if step >= B:
            return conv(grown, wt, None, **args)
        c_out = layer.in_shape[0] if transposed else layer.out_shape[0]
        y = torch.empty((B, c_out, *grown.shape[2:]), dtype=grown.dtype)
        for a in range(0, B, step):
            y[a:a + step] = conv(grown[a:a + step], wt, None, **args)
        return y

    def _seeds(self, colours: np.ndarray, channels: int) -> tuple[np.ndarray, torch.Tensor]:
        """The colours' lattice offsets ``(B, nd)`` and their seeds at radius 0 ``(B, C, N...)``."""
        import torch

        ks = np.stack(np.unravel_index(colours, self.lat.extents), axis=1)  # (B, 1 + nd)
        channel = torch.from_numpy((np.arange(channels)[None, :] % self.lat.extents[0]) == ks[:, :1]).to(self.tdtype)
        offsets = ks[:, 1:]
        return offsets, channel[:, :, None] * self._gather(self.inside, self._index(offsets, (0,) * self.nd))

    def tangent(self, colours: np.ndarray, node: int) -> torch.Tensor:
        """``(B, C, M)``: the packed tangents at position ``node`` (radius ``R[node]``) of the
        colours' seeds; only the nodes ``node`` depends on run."""
        import torch

        net = self.net
        offsets, seed = self._seeds(colours, net.input_shape[0])
        B = len(colours)
        indices = _Indices(self, offsets)
        index = indices.__getitem__

        layers = net.layers[:node]
        wanted = ancestors(net, node)
        T: list[Any] = [seed]
        needed = [{self.R[node]} | set(self.R[j + 1:node + 1]) for j in range(len(layers))]
        last = last_uses(layers, len(layers) + 1)
        with torch.no_grad():
            for i, layer in enumerate(layers):
                r = self.R[i + 1]
                for stale in set(indices) - needed[i]:  # an index map no later node reads
                    del indices[stale]
                if i + 1 not in wanted:
                    T.append(None)
                elif isinstance(layer, Conv):
                    rin = self.R[layer.inputs[0]]
                    h = tuple(a - b for a, b in zip(r, rin))
                    src = T[layer.inputs[0]].reshape(B, layer.in_shape[0], *self._sizes(rin))
                    y = self._conv(self._grow(src, rin, h), layer, h).reshape(B, layer.out_shape[0], -1)
                    T.append(y * self._gather(self.inside, index(r)) if self.masked[i] else y)
                else:
                    total = None
                    for p, s in zip(layer.inputs, self.scales[i]):
                        term = self._to(T[p], self.R[p], r) * self._gather(cast("torch.Tensor", s), index(r))
                        total = term if total is None else total + term
                    T.append(total)
                for p in set(layer.inputs):
                    if last[p] <= i and p != node:
                        T[p] = None
        return cast("torch.Tensor", T[node])

    def _to(self, t: torch.Tensor, r: tuple[int, ...], wanted: tuple[int, ...]) -> torch.Tensor:
        """Packed squares of radius ``r`` as squares of radius ``wanted >= r`` (zero rings)."""
        if r == wanted:
            return t
        B, C = t.shape[:2]
        grown = self._grow(t.reshape(B, C, *self._sizes(r)), r, tuple(a - b for a, b in zip(wanted, r)))
        return grown.reshape(B, C, -1)

    def unpack(self, t: torch.Tensor, colours: np.ndarray, r: tuple[int, ...]) -> torch.Tensor:
        """``(B, C, *spatial)``: packed squares of radius ``r`` put back in the image (the
        squares of one colour never overlap), what falls outside it dropped."""
        import torch

        B, C = t.shape[:2]
        offsets = np.stack(np.unravel_index(colours, self.lat.extents), axis=1)[:, 1:]
        full = torch.zeros(B, C, prod(self.padded), dtype=self.tdtype)
        full.scatter_add_(2, self._index(offsets, r)[:, None, :].expand(B, C, -1), t)
        return full.reshape(B, C, *self.padded)[(slice(None), slice(None)) + tuple(
            slice(p, p + n) for p, n in zip(self.pad, self.spatial))]

    def block(self, colours: np.ndarray) -> np.ndarray:
        """``(out_features, len(colours))``: ``J S`` for these colours."""
        out = self.unpack(self.tangent(colours, self.net.output), colours, self.R[self.net.output])
        return out.reshape(len(colours), -1).T.numpy()

    def cotangents(self, colours: np.ndarray, stop: int) -> dict[int, torch.Tensor]:
        """The packed cotangents ``(B, C, M)`` of the output seeds of these colours (this
        object's lattice is on the output; ``R`` its reverse radii), carried back through the
        nodes after position ``stop``: at ``stop``, and at the input where a node after ``stop``
        reads it. A convolution goes back by its transpose, on the grown squares."""
        import torch

        net = self.net
        offsets, seed = self._seeds(colours, net.output_shape[0])
        B = len(colours)
        CT: dict[int, torch.Tensor] = {net.output: seed}
        index = _Indices(self, offsets).__getitem__  # a node and the convolution before it share one

        def add(p: int, t: torch.Tensor, r: tuple[int, ...]) -> None:
            t = self._to(t, r, self.R[p])
            CT[p] = CT[p] + t if p in CT else t

        with torch.no_grad():
            for i in reversed(range(stop, len(net.layers))):
                ct = CT.pop(i + 1, None)
                if ct is None:
                    continue
                layer, r = net.layers[i], self.R[i + 1]
                if isinstance(layer, Conv):  # the node has no entries outside the image
                    ct = ct * self._gather(self.inside, index(r))
                    h = half_widths(layer)
                    src = ct.reshape(B, layer.out_shape[0], *self._sizes(r))
                    grown = tuple(a + b for a, b in zip(r, h))
                    y = self._conv(self._grow(src, r, h), layer, h, transposed=True)
                    add(layer.inputs[0], y.reshape(B, layer.in_shape[0], -1), grown)
                else:
                    for p, s in zip(layer.inputs, self.scales[i]):
                        add(p, ct * self._gather(cast("torch.Tensor", s), index(r)), r)
        return CT


class _Indices(dict):  # type: ignore[type-arg]
    """``{radius: Packed._index(offsets, radius)}``, each computed when first read."""

    def __init__(self, packed: Packed, offsets: np.ndarray) -> None:
        super().__init__()
        self.packed, self.offsets = packed, offsets

    def __missing__(self, r: tuple[int, ...]) -> torch.Tensor:
        self[r] = self.packed._index(self.offsets, r)
        return cast("torch.Tensor", self[r])


def torch_tensor(a: Any) -> torch.Tensor:
    """``a`` as a tensor (shared where it can be). numpy calls an array contiguous whatever the
    stride of an axis of length 1, but torch refuses a negative one (a flipped 1x1 kernel)."""
    import torch

    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if min(a.strides, default=0) >= 0 else a.copy())

