"""Singular values and operator norms of convolution layers.

Three exact routes to the spectrum of the convolution matrix ``C`` of one layer:

``'fft'``
    Circular padding, stride 1, output as large as the input: ``C`` is (block) doubly
    circulant, so the discrete Fourier transform diagonalises it. Its singular values are the
    union, over the ``prod(spatial)`` frequencies ``f``, of the singular values of the
    ``C_out x C_in`` matrices ``K_hat(f)`` of the DFT'd kernel (Sedghi, Gupta & Long, *The
    singular values of convolutional layers*, ICLR 2019). Any dilation, any padding split
    (``'same'`` with an even kernel), kernels larger than the image (taps that wrap around
    add) and groups (``K_hat(f)`` is block diagonal) are handled.
``'dense'``
    The dense SVD of the explicit matrix: every padding mode and stride, small layers only.
``'svds'``
    Lanczos (ARPACK ``eigsh``) on the normal operator ``A^H A`` (or ``A A^H``, whichever is
    smaller) of the matrix-free operator (:mod:`toeplitz_conv.operator`): the top ``k``
    values of any layer, never storing ``C``.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from math import prod

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from ._args import check_choice, is_int, real_number
from .conv import conv_matrix
from .geometry import ConvGeometry, check_weight, conv_geometry, with_geometry_doc
from .memory import check_size
from .operator import ConvOperator

#: Dense SVD is ``auto``'s choice for all singular values, and for the top ``k`` while the
#: matrix's larger side is at most this: past it Lanczos wins (a 1024 x 1024 dense SVD takes
#: about a second, Lanczos for its norm a few milliseconds; measured on 2 cores).
DENSE_AUTO_MAX = 256


#: BLAS threads while Lanczos runs (set through threadpoolctl when it is installed; ``None``
#: leaves them alone). One thread: the products alternate a BLAS matmul with single-threaded
#: numpy gathers, and multithreaded OpenBLAS on a busy machine made them 3-30x slower.
LANCZOS_BLAS_THREADS = 1


@contextmanager
def _blas_threads(n: int | None):
    """Limit BLAS to ``n`` threads inside the block (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        threadpool_limits = None
    with (threadpool_limits(n, user_api="blas") if n and threadpool_limits else nullcontext()):
        yield


def _check_k(k, limit: int) -> int:
    """``k`` singular values of a matrix with ``limit = min(C.shape)`` of them."""
    if not is_int(k):
        raise TypeError(f"k must be a positive integer or None (all values); got {k!r}.")
    if not 1 <= k <= limit:
        raise ValueError(
            f"k must be between 1 and min(C.shape) = {limit} (the number of singular values "
            f"of this layer's matrix); got k={k}."
        )
    return int(k)


def _check_tol(tol) -> float:
    return real_number("tol", tol, "a float in [0, 1) (0: machine precision)", lambda t: 0 <= t < 1)


# --------------------------------------------------------------------------- the FFT method


def fft_applies(geom: ConvGeometry) -> str | None:
    """``None`` when the FFT method is exact for this geometry, else the reason it is not."""
    if geom.padding_mode != "circular" and any(
            k != 1 or lo or hi for k, lo, hi in zip(geom.kernel, geom.pad_lo, geom.pad_hi)):
        return f"padding_mode={geom.padding_mode!r} (needs 'circular')"
    if any(s != 1 for s in geom.stride):
        return f"stride={geom.stride} (needs 1)"
    if geom.out_spatial != geom.in_spatial:
        return (f"the output {geom.out_spatial} differs from the input {geom.in_spatial} in size "
                f"(needs padding summing to dilation * (kernel - 1), e.geom. padding='same')")
    return None


def _fft_blocks(w: np.ndarray, geom: ConvGeometry):
    """The per-frequency matrices ``M(f)`` of a circulant layer, and their multiplicities.

    ``y[co, o] = sum_{ci, m} h[co, ci, m] x[ci, o + m mod n]`` with ``h`` the kernel wrapped
    onto the image (tap ``k`` at ``k * dilation - pad_lo mod n``; wrapped taps add). A plane
    wave ``x[:, o] = a exp(2 pi i f.o / n)`` comes out as ``y[:, o] = (M(f) a) exp(2 pi i
    f.o / n)`` with ``M(f) = sum_m h[m] exp(2 pi i f.m / n)``, i.e. ``P * ifftn(h)``.

    Returns ``(M, weights)``: ``M`` of shape ``(*freq, G, C_out/G, C_in/G)`` (block diagonal
    over groups) and, for a real kernel, only half the frequencies (``rfftn``:
    ``M(-f) = conj(M(f))`` has the same singular values) with ``weights`` the number of
    frequencies each index of the last axis stands for; ``weights is None`` for all of them.
    """
    n = geom.ndim
    cout_g, cin_g = geom.cout_per_group, geom.cin_per_group
    h = np.zeros((geom.out_channels, cin_g, *geom.in_spatial), dtype=np.result_type(w.dtype, np.float64))
    idx = [(np.arange(k) * d - lo) % size
           for k, d, lo, size in zip(geom.kernel, geom.dilation, geom.pad_lo, geom.in_spatial)]
    if all(len(np.unique(i)) == len(i) for i in idx):
        h[(slice(None), slice(None), *np.ix_(*idx))] = w
    else:  # the dilated kernel wraps around the image: taps on one position add
        np.add.at(h, (slice(None), slice(None), *np.ix_(*idx)), w)
    axes = tuple(range(2, 2 + n))
    if np.iscomplexobj(h):
        M, weights = np.fft.ifftn(h, axes=axes) * prod(geom.in_spatial), None
    else:
        M = np.fft.rfftn(h, axes=axes).conj()
        last = geom.in_spatial[-1]
        weights = np.full(M.shape[-1], 2)
        weights[0] = 1
        if last % 2 == 0:
            weights[-1] = 1
    M = np.moveaxis(M, (0, 1), (-2, -1)).reshape(*M.shape[2:], geom.groups, cout_g, cin_g)
    return M, weights


def _fft_singular_values(w: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """All singular values (unsorted) of a circulant layer: the union of those of ``M(f)``."""
    M, weights = _fft_blocks(w, geom)
    s = np.linalg.svd(M, compute_uv=False)  # (*freq, G, min(cout_g, cin_g))
    if weights is None:
        return s.reshape(-1)
    s = np.moveaxis(s, geom.ndim - 1, 0)  # last frequency axis first
    return np.repeat(s.reshape(s.shape[0], -1), weights, axis=0).reshape(-1)


def _warm_start(w: np.ndarray, geom: ConvGeometry):
    """A start vector for Lanczos near the top right singular vector, or ``None``.

    For stride 1 and an output as large as the input the layer differs from its circular
    counterpart only at the border: take the counterpart's top singular vector (a plane wave
    from the FFT method) and, for zero padding, damp it to zero at the border with the
    lowest Dirichlet mode ``sin(pi (i + 1) / (n + 1))`` along each axis.
    """
    if any(s != 1 for s in geom.stride) or geom.out_spatial != geom.in_spatial:
        return None
    M, _ = _fft_blocks(w, replace(geom, padding_mode="circular"))
    top = np.linalg.svd(M, compute_uv=False)[..., 0]  # (*freq, G)
    *f, grp = np.unravel_index(np.argmax(top), top.shape)
    a = np.linalg.svd(M[tuple(f) + (grp,)])[2][0].conj()  # top right singular vector of M(f)
    cin_g = geom.cin_per_group
    amp = np.zeros(geom.in_channels, dtype=complex)
    amp[grp * cin_g:(grp + 1) * cin_g] = a
    grids = np.meshgrid(*[np.arange(n) for n in geom.in_spatial], indexing="ij")
    phase = sum(2 * np.pi * fj * p / n for fj, p, n in zip(f, grids, geom.in_spatial))
    x = amp.reshape(-1, *(1,) * geom.ndim) * np.exp(1j * phase)[None]
    if geom.padding_mode == "zeros":
        for j, n in enumerate(geom.in_spatial):
            shape = [1] * (geom.ndim + 1)
            shape[j + 1] = n
            x = x * np.sin(np.pi * (np.arange(n) + 1) / (n + 1)).reshape(shape)
    x = x.reshape(-1)
    if not np.iscomplexobj(w):  # a real vector in the span of the waves at f and -f
        x = x.real if np.linalg.norm(x.real) >= np.linalg.norm(x.imag) else x.imag
    return x / np.linalg.norm(x)


# --------------------------------------------------------------------------- the results


@dataclass(frozen=True, eq=False)
class Spectrum:
    """Singular values of a convolution layer and how they were computed.

    Attributes
    ----------
    values : (m,) float64 ndarray
        Singular values in descending order (all ``min(C.shape)`` of them, or the top ``k``).
    method : {'fft', 'dense', 'svds'}
        The method used (``method='auto'`` resolved).
    shape : (int, int)
        Shape of the convolution matrix.

    A ``Spectrum`` behaves as its ``values`` array: ``np.asarray(s)``, ``s[0]``, ``len(s)``.
    """

    values: np.ndarray
    method: str
    shape: tuple

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def __len__(self):
        return len(self.values)

    def __getitem__(self, item):
        return self.values[item]

    def __iter__(self):
        return iter(self.values)

    def __repr__(self):
        vals = np.array2string(self.values, threshold=6, precision=6)
        return f"Spectrum(method={self.method!r}, shape={self.shape}, values={vals})"


def _dense_values(w, geom: ConvGeometry, kw) -> np.ndarray:
    m, n = geom.shape
    itemsize = 16 if np.iscomplexobj(w) else 8
    check_size("the dense SVD of the convolution matrix", 3 * m * n * itemsize,
                 f"a dense {m:,} x {n:,} matrix and its SVD workspace; ask for the top k "
                 f"values (k=...) to use method='svds' instead")
    C = conv_matrix(w.astype(np.result_type(w.dtype, np.float64), copy=False), geom.in_shape, **kw)
    return np.linalg.svd(C.toarray(), compute_uv=False)


def _lanczos_values(w, geom: ConvGeometry, k: int, tol: float) -> np.ndarray:
    """Top ``k`` singular values from ARPACK's Lanczos on the smaller normal operator."""
    w = w.astype(np.result_type(w.dtype, np.float64), copy=False)
    A = ConvOperator(w, geom)
    m, n = A.shape
    if n <= m:
        N = LinearOperator((n, n), matvec=lambda x: A.rmatvec(A.matvec(x)), dtype=A.dtype)
    else:
        N = LinearOperator((m, m), matvec=lambda x: A.matvec(A.rmatvec(x)), dtype=A.dtype)
    rng = np.random.default_rng(0)
    v0 = rng.standard_normal(N.shape[0])
    if np.iscomplexobj(w):
        v0 = v0 + 1j * rng.standard_normal(N.shape[0])
    v0 /= np.linalg.norm(v0)
    x = _warm_start(w, geom) if k == 1 else None
    if x is not None:  # a little noise keeps every direction in the Krylov space
        v0 = (x if n <= m else A.matvec(x)) + 1e-2 * v0
    ncv = min(N.shape[0], max(2 * k + 1, k + 32))
    with _blas_threads(LANCZOS_BLAS_THREADS):
        lam = eigsh(N, k=k, which="LA", tol=tol, v0=v0, ncv=ncv,
                    maxiter=max(1000, 50 * N.shape[0] // ncv), return_eigenvectors=False)
    return np.sqrt(np.clip(np.sort(lam)[::-1], 0, None))


def _resolve(method, geom: ConvGeometry, k):
    reason = fft_applies(geom)
    m, n = geom.shape
    if method == "auto":
        if reason is None:
            return "fft"
        if k is None or max(m, n) <= DENSE_AUTO_MAX or k >= min(m, n):
            return "dense"
        return "svds"
    if method == "fft" and reason is not None:
        raise ValueError(
            f"method='fft' needs a circulant layer: padding_mode='circular', stride 1 and an "
            f"output as large as the input; got {reason}. Use method='auto', 'dense' or 'svds'."
        )
    if method == "svds" and k is None:
        raise ValueError(
            f"method='svds' computes the top k singular values only: pass k (1 <= k < "
            f"{min(m, n)}); got k=None. For all of them use method='dense' (or 'fft' when it "
            f"applies)."
        )
    if method == "svds" and k >= min(m, n):
        raise ValueError(
            f"k must be smaller than min(C.shape) = {min(m, n)} for method='svds' (ARPACK's "
            f"limit; the matrix is {m} x {n}); got k={k}. Use method='dense'."
        )
    return method


@with_geometry_doc
def singular_values(weight, input_shape, *, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", k=None, method="auto", tol=1e-12):
    """Exact singular values of a convolution layer's matrix, by the fastest exact method.

    Parameters
    ----------
    weight : (C_out, C_in/groups, *kernel) array_like or torch.Tensor
        1D, 2D or 3D convolution. Computed in float64 (complex128 for complex weights).
    input_shape : (C_in, *spatial) tuple of int
        Shape of one sample, no batch dimension.
    GEOMETRY_PARAMETERS
    k : int, optional
        Return only the ``k`` largest. Default: all ``min(C.shape)`` of them.
    method : {'auto', 'fft', 'dense', 'svds'}, default 'auto'
        ``'fft'``: circular padding, stride 1, output size equal to the input size (e.geom.
        ``padding='same'``), any dilation and groups; ``'dense'``: SVD of the dense matrix;
        ``'svds'``: Lanczos on the matrix-free operator, top ``k < min(C.shape)`` only.
        ``'auto'`` takes ``'fft'`` whenever it applies (it is by far the fastest), else
        ``'dense'`` for all values or a matrix with at most ``DENSE_AUTO_MAX`` (256) rows and
        columns, else ``'svds'``. The result's ``method`` says which ran.
    tol : float, default 1e-12
        Relative tolerance of ``'svds'`` (ARPACK's, on the squared values).

    Returns
    -------
    Spectrum
        ``.values`` (descending float64 ndarray), ``.method``, ``.shape``; usable as an array.

    Notes
    -----
    For circular padding and stride 1 the matrix is block doubly circulant and the DFT over
    the spatial axes block-diagonalises it (Sedghi, Gupta & Long, ICLR 2019): its singular
    values are those of the ``prod(spatial)`` matrices ``K_hat(f)[co, ci] = sum_m
    h[co, ci, m] exp(2 pi i f.m / n)``, ``h`` being the kernel wrapped onto the image. The
    convolution is cross-correlation (torch's) and rows/columns are in C order; neither
    changes the singular values (they conjugate ``K_hat`` and permute rows and columns).
    For real kernels ``K_hat(-f) = conj(K_hat(f))``, so half the frequencies suffice.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.random.default_rng(0).standard_normal((8, 8, 3, 3))
    >>> s = singular_values(w, (8, 32, 32), padding=1, padding_mode="circular")
    >>> s.method, len(s)
    ('fft', 8192)
    >>> w2 = np.random.default_rng(1).standard_normal((3, 2, 3, 2))
    >>> C2 = conv_matrix(w2, (2, 6, 5), padding="same", padding_mode="circular")
    >>> s2 = singular_values(w2, (2, 6, 5), padding="same", padding_mode="circular")
    >>> np.allclose(s2, np.linalg.svd(C2.toarray(), compute_uv=False))
    True

    Any other layer: dense SVD when small, Lanczos for the top ``k``:

    >>> s3 = singular_values(w2, (2, 40, 40), stride=2, padding=1, k=3)
    >>> s3.method, s3.values.shape
    ('svds', (3,))
    """
    w = check_weight(weight)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
              padding_mode=padding_mode)
    geom = conv_geometry(w.shape, input_shape, **kw)
    method = check_choice("method", method, ("auto", "fft", "dense", "svds"))
    if k is not None:
        k = _check_k(k, min(geom.shape))
    tol = _check_tol(tol)
    method = _resolve(method, geom, k)
    if method == "fft":
        cin_g = geom.cin_per_group
        check_size("the FFT of the kernel", 3 * geom.out_channels * cin_g * prod(geom.in_spatial) * 16,
                   f"{geom.out_channels} x {cin_g} complex matrices at {prod(geom.in_spatial):,} frequencies")
        s = _fft_singular_values(w, geom)
    elif method == "dense":
        s = _dense_values(w, geom, kw)
    else:
        s = _lanczos_values(w, geom, k, tol)
    if k is not None and method != "svds":
        s = np.partition(s, s.size - k)[s.size - k:]
    return Spectrum(np.sort(s)[::-1].astype(np.float64, copy=False), method, geom.shape)


@with_geometry_doc
def operator_norm(weight, input_shape, *, stride=1, padding=0, dilation=1, groups=1,
                  padding_mode="zeros", method="auto", tol=1e-10):
    """The largest singular value of a layer: its Lipschitz constant in the 2-norm.

    Parameters
    ----------
    weight : (C_out, C_in/groups, *kernel) array_like or torch.Tensor
    input_shape : (C_in, *spatial) tuple of int
    GEOMETRY_PARAMETERS
    method : {'auto', 'fft', 'dense', 'svds'}, default 'auto'
        As :func:`singular_values` with ``k=1``: ``'auto'`` is ``'fft'`` for circular
        padding with stride 1 (output size = input size), ``'dense'`` while the matrix has
        at most 256 rows and columns, else ``'svds'`` (Lanczos on the matrix-free
        operator: every padding mode and stride, any size that fits the index table).
    tol : float, default 1e-10
        Relative tolerance of ``'svds'`` on ``sigma_max**2`` (ARPACK's residual criterion);
        the returned value is then accurate to about ``tol / 2`` relative. ``'fft'`` and
        ``'dense'`` are exact to rounding.

    Returns
    -------
    float
        ``max ||C x|| / ||x||``.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    >>> C = conv_matrix(w, (3, 20, 20), stride=2, padding=1, padding_mode="reflect")
    >>> exact = np.linalg.norm(C.toarray(), 2)
    >>> sigma = operator_norm(w, (3, 20, 20), stride=2, padding=1, padding_mode="reflect",
    ...                       method="svds")
    >>> bool(abs(sigma - exact) < 1e-9 * exact)
    True
    """
    w = check_weight(weight)
    geom = conv_geometry(w.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, padding_mode=padding_mode)
    method = check_choice("method", method, ("auto", "fft", "dense", "svds"))
    tol = _check_tol(tol)
    if min(geom.shape) == 1 and method in ("auto", "svds"):
        method = "fft" if method == "auto" and fft_applies(geom) is None else "dense"
    return float(singular_values(w, input_shape, stride=stride, padding=padding,
                                 dilation=dilation, groups=groups, padding_mode=padding_mode,
                                 k=1, method=method, tol=tol).values[0])
