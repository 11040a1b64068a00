"""Singular values and operator norms of convolution layers.

Four exact routes to the spectrum of the convolution matrix ``C`` of one layer:

``'blocks'``
    Windows that never overlap (a stride at least the dilated kernel extent along every axis,
    zero padding or none: 1x1 stride-2 shortcuts, patchify stems): ``C`` is, up to
    permutations, a direct sum of one ``C_out x C_in k`` block per output position, equal
    wherever the windows keep the same taps, so one SVD per distinct block gives every value
    with its multiplicity (:mod:`toeplitz_conv.blockdiag`).
``'fft'``
    Circular padding and an output of ``input / stride`` positions: ``C`` is block circulant
    in the polyphase components of the input, so the discrete Fourier transform
    block-diagonalises it (:mod:`toeplitz_conv.circulant`). Its singular values are the
    union, over the frequencies ``f`` of the coarse grid, of those of the ``C_out x (C_in
    s^d)`` matrices ``M(f)`` of the DFT'd kernel (Sedghi, Gupta & Long, *The singular values
    of convolutional layers*, ICLR 2019, for stride 1). Any dilation, any padding split
    (``'same'`` with an even kernel), kernels larger than the image (taps that wrap around
    add), strides dividing the input, and groups (``M(f)`` is block diagonal) are handled.
``'dense'``
    The dense SVD of the explicit matrix: every padding mode and stride, small layers only.
``'svds'``
    Lanczos (ARPACK ``eigsh``) on the normal operator ``A^H A`` (or ``A A^H``, whichever is
    smaller) of the matrix-free operator (:mod:`toeplitz_conv.operator`): the top (or
    bottom) ``k`` values of any layer, never storing ``C`` (:mod:`toeplitz_conv.svds`).
    Repeated values come out as often as they repeat: a grouped layer is block diagonal, so
    each distinct group is solved once and its values repeated, and a second Lanczos run on
    the operator deflated of the vectors found fetches the copies the first one missed.
    Each value comes with its certificate (``Spectrum.residuals``): the residual of the
    singular triplet ``(sigma, u, v)`` it came from, within which a singular value lies.

A singular value below ``max(C.shape) * eps * sigma_max`` (numpy's ``matrix_rank`` rule) is
reported as exactly 0: the layer is rank-deficient there.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from .blockdiag import block_singular_values, blocks_apply
from .geometry import ConvGeometry, conv_geometry, with_geometry_doc
from .memory import check_size, memory_limit
from .circulant import fft_applies, fft_singular_values
from .dissection import lu_applies
from .lanczos import NoConvergence, dense_bytes, dense_values
from .spectrum import Spectrum as Spectrum  # the public result type, re-exported
from .spectrum import (Method, Resolved, Which, check_k, check_method, check_tol, check_which,
                       finite_weight, unit_scale, zero_tiny)
from .svds import svds_values

#: Dense SVD is ``auto``'s choice for all singular values, and for the top ``k`` while the
#: matrix's larger side is at most this: past it Lanczos wins (a 1024 x 1024 dense SVD takes
#: about a second, Lanczos for its norm a few milliseconds; measured on 2 cores).
DENSE_AUTO_MAX = 256

#: For the smallest values ``auto`` keeps the dense SVD up to this size: Lanczos needs many
#: more iterations at the bottom of the spectrum, where values cluster (a 3136-column layer:
#: ~1.5 s dense, over a minute by Lanczos to 1e-10). Not for a square layer on one grid, whose
#: bottom comes from its LU by nested dissection (:mod:`toeplitz_conv.dissection`): past
#: ``DENSE_AUTO_MAX`` that is faster (64 -> 64 3x3 on 7x7, 3136 columns: 0.16 s against the
#: dense SVD's 3.6 s; 16 -> 16 on 16x16: 0.14 s against 7.9 s).
DENSE_SMALLEST_MAX = 4096


def _dense_bottom_max(geom: ConvGeometry) -> int:
    """The size up to which ``'auto'`` takes the bottom of the spectrum from the dense SVD:
    ``DENSE_SMALLEST_MAX``, or ``DENSE_AUTO_MAX`` for a square layer on one grid (its LU by
    nested dissection is faster)."""
    return DENSE_AUTO_MAX if lu_applies(geom) is None else DENSE_SMALLEST_MAX


def _resolve(method: Method, geom: ConvGeometry, k: int | None,
             which: Which = "largest") -> Resolved:
    reason = fft_applies(geom)
    m, n = geom.shape
    if method == "auto":
        if blocks_apply(geom) is None:
            return "blocks"  # one small SVD per distinct block: the cheapest of all
        if reason is None:
            return "fft"
        if k is None or max(m, n) <= DENSE_AUTO_MAX or k >= min(m, n):
            return "dense"
        if which == "smallest" and max(m, n) <= _dense_bottom_max(geom):
            return "dense"  # Lanczos converges slowly at the clustered bottom (but not from a grid LU)
        return "svds"
    if method == "blocks" and (why := blocks_apply(geom)) is not None:
        raise ValueError(
            f"method='blocks' needs a block-diagonal layer: a stride at least the dilated kernel "
            f"extent along every axis, and zero padding (or none); got {why}. Use "
            f"method='auto', 'dense' or 'svds'."
        )
    if method == "fft" and reason is not None:
        raise ValueError(
            f"method='fft' needs a circulant layer: padding_mode='circular', each spatial size "
            f"divisible by its stride and an output of input / stride positions; got {reason}. "
            f"Use method='auto', 'dense' or 'svds'."
        )
    if method == "svds" and k is None:
        raise ValueError(
            f"method='svds' computes the top (or bottom) k singular values only: pass k (1 <= k < "
            f"{min(m, n)}); got k=None. For all of them use method='dense' (or 'fft' or 'blocks' "
            f"when it applies)."
        )
    if method == "svds" and cast(int, k) >= min(m, n):  # k is not None: raised above
        raise ValueError(
            f"k must be smaller than min(C.shape) = {min(m, n)} for method='svds' (ARPACK's "
            f"limit; the matrix is {m} x {n}); got k={k}. Use method='dense'."
        )
    return method


@with_geometry_doc
def singular_values(weight: npt.ArrayLike, input_shape: Sequence[int], *,
                    stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                    dilation: int | Sequence[int] = 1, groups: int = 1, padding_mode: str = "zeros",
                    k: int | None = None, which: Which = "largest", method: Method = "auto",
                    tol: float = 1e-12) -> Spectrum:
    """Exact singular values of a convolution layer's matrix, by the fastest exact method.

    Parameters
    ----------
    weight : (C_out, C_in/groups, *kernel) array_like or torch.Tensor
        1D, 2D or 3D convolution. Computed in float64 (complex128 for complex weights).
    input_shape : (C_in, *spatial) tuple of int
        Shape of one sample, no batch dimension.
    GEOMETRY_PARAMETERS
    k : int, optional
        Return only ``k`` of them: the ``k`` largest, or the ``k`` smallest with
        ``which='smallest'``. Default: all ``min(C.shape)`` of them.
    which : {'largest', 'smallest'}, default 'largest'
        Which end of the spectrum ``k`` takes. The values are always in descending order.
    method : {'auto', 'blocks', 'fft', 'dense', 'svds'}, default 'auto'
        ``'blocks'``: a stride at least the dilated kernel extent along every axis and zero
        padding (or none), so that no two windows read one input position: the matrix is a
        direct sum of small blocks, one per output position (:mod:`toeplitz_conv.blockdiag`);
        ``'fft'``: circular padding, each spatial size divisible by its stride, an output of
        ``input / stride`` positions (e.g. ``padding='same'`` at stride 1; ``kernel 3,
        padding 1, stride 2`` on an even size), any dilation and groups; ``'dense'``: SVD of
        the dense matrix; ``'svds'``: Lanczos on the matrix-free operator, ``k <
        min(C.shape)`` values only, each as often as it repeats (one distinct group at a
        time; a group with no more values than it must supply, by its dense SVD). ``'auto'``
        takes ``'blocks'`` whenever it applies (one SVD per distinct block), then ``'fft'``
        (one per frequency; both are by far the fastest), else ``'dense'`` for
        all values or a matrix with at most ``DENSE_AUTO_MAX`` (256) rows and columns
        (``DENSE_SMALLEST_MAX``, 4096, for the smallest of a layer that is not square on one
        grid), else ``'svds'``; where Lanczos
        gives up (its budget spent at a clustered bottom of the spectrum), the dense SVD if it
        fits in memory. The result's ``method`` says which ran.
    tol : float, default 1e-12
        Relative tolerance of ``'svds'`` (ARPACK's, on the squared values; for the smallest
        by Lanczos on ``c I - N``, relative to ``sigma_max**2``; through an LU, on the
        eigenvalues ``1 / sigma**2`` of the inverse).

    Returns
    -------
    Spectrum
        ``.values`` (descending float64 ndarray), ``.method``, ``.shape``; usable as an array.
        For ``'svds'``, ``.residuals`` certifies each value: the residual
        ``sqrt(||C v - sigma u||^2 + ||C^H u - sigma v||^2) / sqrt(2)`` of the unit singular
        vectors it came from, so that a singular value lies within it of ``sigma``.
        Values below ``max(C.shape) * eps * sigma_max`` are reported as 0 (rank deficiency);
        so is a smallest value from ``'svds'`` within its residual of 0.
        A zero layer (all weights 0, or only taps that read zero padding) has only zeros.

    Raises
    ------
    ValueError
        For a weight with a NaN or inf entry, and for the arguments' rules.

    Notes
    -----
    For circular padding the matrix is block circulant in the polyphase components of the
    input and the DFT over the coarse grid block-diagonalises it (Sedghi, Gupta & Long, ICLR
    2019, for stride 1; :mod:`toeplitz_conv.circulant`): its singular values are those of the
    matrices ``M(f)[co, (ci, r)] = sum_q h[co, ci, s q + r] exp(2 pi i f.q / (n/s))``, ``h``
    being the kernel wrapped onto the image. The convolution is cross-correlation (torch's)
    and rows/columns are in C order; neither changes the singular values (they conjugate
    ``M`` and permute rows and columns). For real kernels ``M(-f) = conj(M(f))``, so half the
    frequencies suffice.

    Examples
    --------
    >>> import numpy as np
    >>> from toeplitz_conv import conv_matrix
    >>> w = np.random.default_rng(0).standard_normal((8, 8, 3, 3))
    >>> s = singular_values(w, (8, 32, 32), padding=1, padding_mode="circular")
    >>> s.method, len(s)
    ('fft', 8192)
    >>> w2 = np.random.default_rng(1).standard_normal((3, 2, 3, 2))
    >>> C2 = conv_matrix(w2, (2, 6, 5), padding="same", padding_mode="circular")
    >>> s2 = singular_values(w2, (2, 6, 5), padding="same", padding_mode="circular")
    >>> np.allclose(s2, np.linalg.svd(C2.toarray(), compute_uv=False))
    True

    Strided circular layers too (polyphase):

    >>> C3 = conv_matrix(w, (8, 8, 8), stride=2, padding=1, padding_mode="circular")
    >>> s3 = singular_values(w, (8, 8, 8), stride=2, padding=1, padding_mode="circular")
    >>> s3.method, np.allclose(s3, np.linalg.svd(C3.toarray(), compute_uv=False))
    ('fft', True)

    Windows that never overlap (a 1x1 stride-2 shortcut): one SVD of the 16 x 8 block,
    each value once per output position, and zeros for the columns no window reads:

    >>> w1 = np.random.default_rng(2).standard_normal((16, 8, 1, 1))
    >>> s1 = singular_values(w1, (8, 28, 28), stride=2)
    >>> block = np.linalg.svd(w1[:, :, 0, 0], compute_uv=False)
    >>> s1.method, len(s1), bool(np.allclose(s1[:8 * 196], np.repeat(block, 196))), float(s1[-1])
    ('blocks', 3136, True, 0.0)

    Any other layer: dense SVD when small, Lanczos for the top (or bottom) ``k``:

    >>> s4 = singular_values(w2, (2, 40, 40), stride=2, padding=1, k=3)
    >>> s4.method, s4.values.shape
    ('svds', (3,))

    Repeated values come out as often as they repeat, here those of two equal groups:

    >>> g = np.random.default_rng(6).standard_normal((2, 2, 3, 3))
    >>> s5 = singular_values(np.concatenate([g, g]), (4, 12, 12), padding=1, groups=2, k=4)
    >>> s5.method, bool(s5[0] == s5[1] and s5[2] == s5[3])
    ('svds', True)
    """
    w = finite_weight(weight)
    kw: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                              padding_mode=padding_mode)
    geom = conv_geometry(w.shape, input_shape, **kw)
    method = check_method(method)
    which = check_which(which)
    if k is not None:
        k = check_k(k, min(geom.shape))
    tol = check_tol(tol)
    asked, method = method, _resolve(method, geom, k, which)
    w, e = unit_scale(w)
    if method == "blocks":
        s = block_singular_values(w, geom)
    elif method == "fft":
        cin = geom.cin_per_group * prod(geom.stride)
        freqs = prod(geom.out_spatial)
        check_size("the FFT of the kernel", 3 * geom.out_channels * cin * freqs * 16,
                   f"{geom.out_channels} x {cin} complex matrices at {freqs:,} frequencies")
        s = fft_singular_values(w, geom)
    elif method == "dense":
        s = dense_values(w, geom, kw)
    residuals, route = None, None
    if method == "svds":
        try:
            s, residuals, s_max, route = svds_values(w, geom, cast(int, k), which, tol, kw)  # _resolve: k is set
        except NoConvergence:  # Lanczos gave up at a clustered bottom: 'auto' takes the dense SVD if it fits
            if asked != "auto" or dense_bytes(w, geom) > memory_limit()[0]:
                raise
            method, s, route = "dense", dense_values(w, geom, kw), None
    if method == "svds":
        order = np.argsort(s, kind="stable")[::-1]
        with np.errstate(over="ignore"):  # the residuals scale by 2**e: inf only past float64
            s, residuals = s[order], np.ldexp(cast(np.ndarray, residuals)[order], e)
    else:
        s = np.sort(s)[::-1]
    s = zero_tiny(s.astype(np.float64, copy=False), geom.shape,
                  s_max if method == "svds" else (s[0] if s.size else 0.0))
    if k is not None:
        pick = slice(None, k) if which == "largest" else slice(s.size - k, None)
        s = s[pick]
        residuals = None if residuals is None else residuals[pick]
    return Spectrum(np.ldexp(s, e), method, geom.shape, residuals, route)


@with_geometry_doc
def condition_number(weight: npt.ArrayLike, input_shape: Sequence[int], *,
                     stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                     dilation: int | Sequence[int] = 1, groups: int = 1,
                     padding_mode: str = "zeros", method: Method = "auto",
                     tol: float = 1e-12) -> float:
    """``sigma_max / sigma_min`` of a layer's matrix, over its ``min(C.shape)`` singular values.

    ``inf`` for a rank-deficient layer (a zero singular value).

    Parameters
    ----------
    weight, input_shape, stride, padding, dilation, groups, padding_mode, tol
        As in :func:`singular_values`.
    method : {'auto', 'blocks', 'fft', 'dense', 'svds'}, default 'auto'
        ``'auto'`` is ``'blocks'`` for block-diagonal layers, the FFT for circulant layers
        (all values, both cheap), the dense SVD up to
        ``DENSE_SMALLEST_MAX`` (4096) rows and columns (``DENSE_AUTO_MAX``, 256, for a square
        layer on one grid, whose bottom comes from its LU by nested dissection), else Lanczos
        for both ends of the spectrum.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from toeplitz_conv import conv_matrix
    >>> w = np.random.default_rng(0).standard_normal((3, 2, 3, 3))
    >>> C = conv_matrix(w, (2, 7, 7), padding=1)
    >>> bool(np.isclose(condition_number(w, (2, 7, 7), padding=1), np.linalg.cond(C.toarray())))
    True
    >>> condition_number(np.ones((1, 1, 2, 2)), (1, 4, 4), padding="same", padding_mode="circular")
    inf
    """
    w = finite_weight(weight)
    kw: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                              padding_mode=padding_mode)
    geom = conv_geometry(w.shape, input_shape, **kw)
    method = check_method(method)
    exact_all = blocks_apply(geom) is None or fft_applies(geom) is None
    if method == "auto" and not exact_all and max(geom.shape) > _dense_bottom_max(geom):
        method = "svds"
    if method == "svds" and min(geom.shape) < 2:
        method = "dense"
    if method == "svds":
        top = singular_values(w, input_shape, **kw, k=1, method="svds", tol=tol).values[0]
        bottom = singular_values(w, input_shape, **kw, k=1, which="smallest", method="svds", tol=tol).values[0]
    else:
        s = singular_values(w, input_shape, **kw, method=method, tol=tol).values
        top, bottom = s[0], s[-1]
    return float("inf") if bottom == 0 else float(top / bottom)


@with_geometry_doc
def operator_norm(weight: npt.ArrayLike, input_shape: Sequence[int], *,
                  stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                  dilation: int | Sequence[int] = 1, groups: int = 1, padding_mode: str = "zeros",
                  method: Method = "auto", tol: float = 1e-10) -> float:
    """The largest singular value of a layer: its Lipschitz constant in the 2-norm.

    Parameters
    ----------
    weight : (C_out, C_in/groups, *kernel) array_like or torch.Tensor
    input_shape : (C_in, *spatial) tuple of int
    GEOMETRY_PARAMETERS
    method : {'auto', 'blocks', 'fft', 'dense', 'svds'}, default 'auto'
        As :func:`singular_values` with ``k=1``: ``'auto'`` is ``'blocks'`` for a layer
        whose windows do not overlap (a 1x1 stride-2 shortcut, a 4x4 stride-4 stem), ``'fft'``
        for a circulant one (circular padding, output = input / stride), ``'dense'`` while the matrix has
        at most 256 rows and columns, else ``'svds'`` (Lanczos on the matrix-free
        operator: every padding mode and stride, any size that fits the index table).
    tol : float, default 1e-10
        Relative tolerance of ``'svds'`` on ``sigma_max**2`` (ARPACK's residual criterion);
        the returned value is then accurate to about ``tol / 2`` relative. ``'blocks'``,
        ``'fft'`` and ``'dense'`` are exact to rounding.

    Returns
    -------
    float
        ``max ||C x|| / ||x||``.

    Examples
    --------
    >>> import numpy as np
    >>> from toeplitz_conv import conv_matrix
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    >>> C = conv_matrix(w, (3, 20, 20), stride=2, padding=1, padding_mode="reflect")
    >>> exact = np.linalg.norm(C.toarray(), 2)
    >>> sigma = operator_norm(w, (3, 20, 20), stride=2, padding=1, padding_mode="reflect",
    ...                       method="svds")
    >>> bool(abs(sigma - exact) < 1e-9 * exact)
    True
    """
    w = finite_weight(weight)
    geom = conv_geometry(w.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, padding_mode=padding_mode)
    method = check_method(method)
    tol = check_tol(tol)
    if min(geom.shape) == 1 and method == "svds":
        method = "dense"  # svds needs k < min(C.shape); 'auto' resolves k=1 of 1 to an exact route
    return float(singular_values(w, input_shape, stride=stride, padding=padding,
                                 dilation=dilation, groups=groups, padding_mode=padding_mode,
                                 k=1, method=method, tol=tol).values[0])
