"""The result of the spectral functions, and the checks of their arguments.

:class:`Spectrum` (the values and the method that ran) and the normalisers that
:mod:`toeplitz_conv.spectral` applies to ``k``, ``which``, ``method``, ``tol`` and the weight.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, SupportsIndex, cast, get_args, overload

import numpy as np
import numpy.typing as npt

from ._args import check_choice, is_int, real_number
from .geometry import check_weight

#: The ``method`` argument, and the method that ran (``'auto'`` resolved).
Method = Literal["auto", "blocks", "fft", "dense", "svds"]
Resolved = Literal["blocks", "fft", "dense", "svds"]
#: The end of the spectrum ``k`` takes.
Which = Literal["largest", "smallest"]


def check_which(which: object) -> Which:
    return cast(Which, check_choice("which", which, get_args(Which)))


def check_method(method: object) -> Method:
    return cast(Method, check_choice("method", method, get_args(Method)))


def check_k(k: object, limit: int) -> int:
    """``k`` singular values of a matrix with ``limit = min(C.shape)`` of them."""
    if not is_int(k):
        raise TypeError(f"k must be a positive integer or None (all values); got {k!r}.")
    if not 1 <= k <= limit:
        raise ValueError(
            f"k must be between 1 and min(C.shape) = {limit} (the number of singular values "
            f"of this layer's matrix); got k={k}."
        )
    return int(k)


def check_tol(tol: object) -> float:
    return real_number("tol", tol, "a float in [0, 1) (0: machine precision)", lambda t: 0 <= t < 1)


def finite_weight(weight: npt.ArrayLike) -> np.ndarray:
    """A convolution weight with finite entries only: a NaN or inf has no singular values."""
    w = check_weight(weight)
    finite = np.isfinite(w)
    if not finite.all():
        bad = np.argwhere(~finite)
        first = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"weight must be finite (no NaN or inf) to have singular values; got {len(bad)} "
            f"non-finite {'entry' if len(bad) == 1 else 'entries'} of {w.size}, the first "
            f"weight[{', '.join(map(str, first))}] = {w[first]}."
        )
    return w


def unit_scale(w: np.ndarray) -> tuple[np.ndarray, int]:
    """``(w / 2**e, e)`` in float64 (complex128) with ``max |w / 2**e|`` in ``[0.5, 1)``: exact
    (a power of two), and it keeps the squares of the normal operator clear of overflow and
    underflow (weights near 1e200 or 1e-200); the singular values scale back by ``2**e``."""
    w = w.astype(np.result_type(w.dtype, np.float64), copy=False)
    peak = float(np.max(np.abs(w)))
    e = int(np.frexp(peak)[1]) if peak > 0 else 0
    if np.iscomplexobj(w):
        return np.ldexp(w.real, -e) + 1j * np.ldexp(w.imag, -e), e
    return np.ldexp(w, -e), e


# --------------------------------------------------------------------------- the results


@dataclass(frozen=True, eq=False)
class Spectrum:
    """Singular values of a convolution layer and how they were computed.

    A ``Spectrum`` behaves as its ``values`` array: ``np.asarray(s)``, ``s[0]``, ``len(s)``.

    Attributes
    ----------
    values : (m,) float64 ndarray
        Singular values in descending order (all ``min(C.shape)`` of them, or the top ``k``).
    method : {'blocks', 'fft', 'dense', 'svds'}
        The method used (``method='auto'`` resolved): ``'blocks'`` the SVD of each distinct
        block of a block-diagonal layer (windows that do not overlap), ``'fft'`` that of each
        frequency's matrix of a circulant layer, ``'dense'`` the dense SVD of the matrix,
        ``'svds'`` an iterative eigensolver on the normal operator (top or bottom ``k``).
    shape : (int, int)
        Shape of the convolution matrix.
    residuals : (m,) float64 ndarray or None
        The certificate of values from ``'svds'``: ``residuals[j] = sqrt(||C v - s u||^2 +
        ||C^H u - s v||^2) / sqrt(2)`` for ``s = values[j]`` and the unit singular vectors
        ``u, v`` it came from: the residual of an eigenvector of the Hermitian ``[[0, C],
        [C^H, 0]]``, whose eigenvalues are the singular values (with signs and zeros), so a
        singular value lies within it of ``values[j]`` (0 where a group's values came from its
        dense SVD; for a null vector without its own ``u``, the smaller
        ``sqrt(||N v - s^2 v||)``, ``N = C^H C``). Its rounding is about ``eps * sigma_max``:
        a small value is told apart from 0 as finely as the dense SVD does. ``None`` for the
        direct methods (``'blocks'``, ``'fft'``, ``'dense'``), exact to rounding.
    route : str or None
        How ``'svds'`` reached the values, e.g. ``"Lanczos on C^-1 C^-H (LU by nested
        dissection: 7.7e+11 multiply-adds, 4.85 GiB of factors), polished by refined inverse
        iteration"`` for the bottom of a square layer, ``"Lanczos on c I - N"`` past every LU
        (routes of distinct groups joined by ``"; "``). ``None`` for the direct methods.
    """

    values: npt.NDArray[np.float64]
    method: Resolved
    shape: tuple[int, int]
    residuals: npt.NDArray[np.float64] | None = None
    route: str | None = None

    def __array__(self, dtype: npt.DTypeLike | None = None,
                  copy: bool | None = None) -> npt.NDArray[Any]:
        return self.values if dtype is None else self.values.astype(dtype)

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(  # type: ignore[overload-overlap]  # a 0-d int array is SupportsIndex too
            self, item: slice | Sequence[int] | npt.NDArray[np.integer[Any] | np.bool_]
    ) -> npt.NDArray[np.float64]: ...
    @overload
    def __getitem__(self, item: SupportsIndex) -> np.float64: ...
    def __getitem__(self, item: Any) -> Any:
        return self.values[item]

    def __iter__(self) -> Iterator[np.float64]:
        return iter(self.values)

    def __repr__(self) -> str:
        vals = np.array2string(self.values, threshold=6, precision=6)
        return f"Spectrum(method={self.method!r}, shape={self.shape}, values={vals})"


def zero_tiny(s: np.ndarray, shape: tuple[int, int], s_max: float) -> np.ndarray:
    """Values below numpy's rank tolerance ``max(shape) * eps * sigma_max`` are exactly 0."""
    s = s.copy()
    s[s <= max(shape) * np.finfo(np.float64).eps * s_max] = 0.0
    return s
