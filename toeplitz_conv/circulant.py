"""Circulant layers: the spectrum of a circular convolution from the FFT of its kernel.

With circular padding and an output of ``input / stride`` positions, the matrix ``C`` of a
layer is block circulant in the *polyphase* components of its input (Sedghi, Gupta & Long,
*The singular values of convolutional layers*, ICLR 2019, for stride 1). Write each input
position along an axis as ``s q + r`` (``q`` on the coarse grid of ``n / s`` points, ``r`` the
phase in ``[0, s)``). The output at ``o`` reads ``x[s o + m]`` with ``m = s q' + r``, so

    y[co, o] = sum_{ci, r, q'} h[co, ci, s q' + r] x_r[ci, o + q']   (mod n / s)

a stride-1 circular convolution on the coarse grid with ``C_in s^d`` input channels (one per
input channel and phase). The DFT on the coarse grid block-diagonalises it: the singular
values of ``C`` are the union, over the ``prod(n / s)`` frequencies ``f``, of those of the
``C_out x (C_in s^d)`` matrices ``M(f)``. Stride 1 is the case ``s = 1``.
"""

from __future__ import annotations

from math import prod

import numpy as np

from .geometry import ConvGeometry


#: ``fft_blocks`` takes the DFT straight from the taps (a sum of ``prod(kernel)`` terms per
#: frequency, one axis at a time) at stride 1 with kernels up to this size per axis; the FFT of
#: the kernel wrapped onto the image otherwise (a 512-channel 3x3 kernel on 7x7: 0.05 s
#: against 0.8 s, the FFTs of 262,144 tiny planes).
DIRECT_DFT_MAX_KERNEL = 8


def fft_applies(geom: ConvGeometry) -> str | None:
    """``None`` when the FFT method is exact for this geometry, else the reason it is not."""
    if geom.padding_mode != "circular" and any(
            k != 1 or lo or hi for k, lo, hi in zip(geom.kernel, geom.pad_lo, geom.pad_hi)):
        return f"padding_mode={geom.padding_mode!r} (needs 'circular')"
    if any(n % s for n, s in zip(geom.in_spatial, geom.stride)):
        return f"the input {geom.in_spatial} is not divisible by the stride {geom.stride}"
    coarse = tuple(n // s for n, s in zip(geom.in_spatial, geom.stride))
    if geom.out_spatial != coarse:
        return (f"the output {geom.out_spatial} is not input / stride = {coarse} positions "
                f"(needs padding summing to dilation * (kernel - 1), e.g. padding='same' at "
                f"stride 1; an even kernel with symmetric padding gives one position more)")
    return None


def fft_blocks(w: np.ndarray, geom: ConvGeometry) -> tuple[np.ndarray, np.ndarray | None]:
    """The per-frequency matrices ``M(f)`` of a circulant layer, and their multiplicities.

    ``y[co, o] = sum_{ci, m} h[co, ci, m] x[ci, s o + m mod n]`` with ``h`` the kernel wrapped
    onto the image (tap ``k`` at ``k * dilation - pad_lo mod n``; wrapped taps add). Splitting
    ``m = s q + r`` makes the phases ``r`` extra input channels on the coarse grid; a plane
    wave ``x_r[:, q] = a_r exp(2 pi i f.q / (n/s))`` comes out as ``y[:, o] = (M(f) a) exp(2 pi
    i f.o / (n/s))`` with ``M(f) = sum_q h_r[q] exp(2 pi i f.q / (n/s))``.

    Returns ``(M, weights)``: ``M`` of shape ``(*freq, G, C_out/G, C_in/G * prod(stride))``
    (block diagonal over groups) and, for a real kernel, only half the frequencies
    (``rfftn``: ``M(-f) = conj(M(f))`` has the same singular values) with ``weights`` the
    number of frequencies each index of the last axis stands for; ``weights is None`` for all.
    """
    n = geom.ndim
    cout_g, cin_g = geom.cout_per_group, geom.cin_per_group
    pos = [(np.arange(k) * d - lo) % size
           for k, d, lo, size in zip(geom.kernel, geom.dilation, geom.pad_lo, geom.in_spatial)]
    real = not np.iscomplexobj(w)
    if all(s == 1 for s in geom.stride) and max(geom.kernel) <= DIRECT_DFT_MAX_KERNEL:
        # a small kernel: the DFT straight from its taps, one axis at a time (wrapped taps add)
        M = w.astype(np.result_type(w.dtype, np.complex128), copy=False)
        for j, (p, size) in enumerate(zip(pos, geom.in_spatial)):
            f = np.arange(size // 2 + 1 if real and j == n - 1 else size)
            M = np.tensordot(M, np.exp(2j * np.pi * np.outer(f, p) / size), axes=([2], [1]))
        cin = cin_g
    else:
        M, cin = _fft_of_wrapped_kernel(w, geom, pos)
    weights = None
    if real:
        last = geom.in_spatial[-1] // geom.stride[-1]
        weights = np.full(M.shape[-1], 2)
        weights[0] = 1
        if last % 2 == 0:
            weights[-1] = 1
    M = np.moveaxis(M, (0, 1), (-2, -1)).reshape(*M.shape[2:], geom.groups, cout_g, cin)
    return np.ascontiguousarray(M), weights


def _fft_of_wrapped_kernel(w: np.ndarray, geom: ConvGeometry,
                           pos: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """``(M, C_in/G * prod(stride))`` with ``M`` of shape ``(C_out, C_in/G * prod(stride),
    *freq)``: the kernel wrapped onto the image, split into its polyphase components, FFT'd
    (half the last axis for a real kernel)."""
    n = geom.ndim
    cin_g = geom.cin_per_group
    h = np.zeros((geom.out_channels, cin_g, *geom.in_spatial), dtype=np.result_type(w.dtype, np.float64))
    if all(len(np.unique(i)) == len(i) for i in pos):
        h[(slice(None), slice(None), *np.ix_(*pos))] = w  # type: ignore[index]  # mypy: starred tuple is tuple[object, ...]
    else:  # the dilated kernel wraps around the image: taps on one position add
        np.add.at(h, (slice(None), slice(None), *np.ix_(*pos)), w)  # type: ignore[arg-type]  # numpy's stub: ints only, no slices
    coarse = tuple(size // s for size, s in zip(geom.in_spatial, geom.stride))
    if any(s != 1 for s in geom.stride):  # the phases become input channels: (C_out, C_in*s^d, *coarse)
        split = [d for c, s in zip(coarse, geom.stride) for d in (c, s)]
        h = h.reshape(geom.out_channels, cin_g, *split)
        h = np.moveaxis(h, [3 + 2 * j for j in range(n)], [2 + j for j in range(n)])
        h = h.reshape(geom.out_channels, cin_g * prod(geom.stride), *coarse)
    axes = tuple(range(2, 2 + n))
    if np.iscomplexobj(h):
        return np.fft.ifftn(h, axes=axes) * prod(coarse), h.shape[1]
    return np.fft.rfftn(h, axes=axes).conj(), h.shape[1]


def fft_singular_values(w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """All singular values (unsorted) of a circulant layer: the union of those of ``M(f)``."""
    M, weights = fft_blocks(w, geom)
    s = np.linalg.svd(M, compute_uv=False)  # (*freq, G, min(cout_g, cin_g * s^d))
    if weights is None:
        return s.reshape(-1)
    s = np.moveaxis(s, geom.ndim - 1, 0)  # last frequency axis first
    return np.repeat(s.reshape(s.shape[0], -1), weights, axis=0).reshape(-1)
