"""Block-diagonal layers: windows that never overlap.

When the stride along every axis is at least the dilated kernel extent ``d (k - 1) + 1``,
the windows of two output positions share no input position; if moreover the padding is
zeros (or there is none), no tap reads a column that another window reads. Up to a
permutation of rows and columns the matrix of the layer (of one group) is then a direct sum

    C = B_1 (+) B_2 (+) ... (+) B_P (+) 0

with one ``C_out/G x (C_in/G * v_p)`` block per output position ``p`` -- the kernel's columns
at the ``v_p`` taps that position reads inside the image (all of them in the interior, fewer
in border windows that reach into the zero padding) -- and zero columns for the input
positions no window reads (``input % stride`` leftovers, holes of the dilation). Its singular
values are the union of those of the blocks, each block's all ``min(C_out/G, C_in/G * v_p)``
of them, filled with zeros up to ``min(C.shape)``. Positions whose windows keep the same taps
have equal blocks: along each axis the taps a position keeps take only a few patterns (the
interior one and the border ones), so one SVD per distinct pattern, repeated as often as it
occurs, gives the exact spectrum. A 1x1 stride-2 shortcut has one pattern; a 4x4 stride-4
patchify stem on a divisible image too.
"""

from __future__ import annotations

from itertools import product
from math import prod

import numpy as np

from .geometry import ConvGeometry
from .lanczos import distinct_groups
from .memory import check_size


def blocks_apply(geom: ConvGeometry) -> str | None:
    """``None`` when the layer is block diagonal (:mod:`toeplitz_conv.blockdiag`), else why
    not."""
    extent = tuple(d * (k - 1) + 1 for k, d in zip(geom.kernel, geom.dilation))
    if any(s < e for s, e in zip(geom.stride, extent)):
        return (f"the stride {geom.stride} is smaller than the dilated kernel extent {extent} "
                f"(windows overlap)")
    if geom.padding_mode != "zeros" and any(geom.pad_lo + geom.pad_hi):
        return (f"padding_mode={geom.padding_mode!r} with padding: padded taps read columns "
                f"another window may read")
    return None


def _axis_patterns(k: int, d: int, s: int, lo: int, n: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """``(patterns, counts)``: the distinct ``(k,)`` boolean masks of the taps that read inside
    the image, over the ``out`` output positions along one axis, and how often each occurs."""
    pos = np.arange(out)[:, None] * s - lo + np.arange(k)[None, :] * d
    return np.unique((pos >= 0) & (pos < n), axis=0, return_counts=True)


def block_singular_values(w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """All ``min(C.shape)`` singular values (unsorted) of a block-diagonal layer: those of each
    distinct block, repeated per output position and group that has it, and zeros."""
    cout_g = geom.cout_per_group
    size = min(geom.shape)
    check_size("the singular values of a block-diagonal layer", 2 * size * 8, f"{size:,} values")
    axes = [_axis_patterns(k, d, s, lo, n, o) for k, d, s, lo, n, o in
            zip(geom.kernel, geom.dilation, geom.stride, geom.pad_lo, geom.in_spatial, geom.out_spatial)]
    parts = distinct_groups(w, geom)
    groups = np.stack([part for part, _ in parts])  # (distinct groups, C_out/G, C_in/G, *kernel)
    group_counts = np.array([count for _, count in parts])
    values, counts = [], []
    for combo in product(*(range(len(p)) for p, _ in axes)):
        masks = [axes[j][0][i] for j, i in enumerate(combo)]
        positions = prod(int(axes[j][1][i]) for j, i in enumerate(combo))
        taps = np.ix_(*[np.flatnonzero(m) for m in masks])
        if any(t.size == 0 for t in taps):
            continue  # windows reading only padding: zero rows
        index = (slice(None), slice(None), slice(None), *taps)
        blocks = groups[index].reshape(len(groups), cout_g, -1)  # type: ignore[index]  # mypy: starred tuple
        s = np.linalg.svd(blocks, compute_uv=False)  # (distinct groups, min(cout_g, cin_g * v))
        values.append(s.reshape(-1))
        counts.append(np.repeat(group_counts * positions, s.shape[1]))
    s = np.repeat(np.concatenate(values), np.concatenate(counts)) if values else np.zeros(0)
    return np.concatenate([s, np.zeros(size - s.size)])
