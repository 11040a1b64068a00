"""The matrix of any linear callable, read off by probing it with chunks of the identity.

``fn`` maps a batch ``(N, *input_shape)`` to ``(N, *out)``; fed the columns of the identity
(``N`` of them at a time, each reshaped to ``input_shape``), it returns the columns of its
matrix. The exact zeros are dropped: a convolution's probe is as sparse as its
:func:`~toeplitz_conv.conv_matrix`, and equal to it entry for entry when ``fn`` is that
convolution. numpy callables are fed numpy arrays; a callable that refuses them (a torch
function) is fed torch tensors of the same dtype.

Identity columns alone would read a matrix off any callable, linear or not (``relu`` of a
convolution with positive weights gives the convolution's columns), so the result is
checked: ``fn(0) == 0``, then one call on four random samples ``a, b, a + b, s a`` checks
superposition, scaling and ``fn(x) == A x``. A callable that fails, or returns NaN or inf,
raises :class:`ProbeError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod, sqrt
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ._args import check_int_range, is_int, is_torch_tensor, positive_int
from .layouts import channels_first_fn, sample_shape_first
from .memory import check_size, human_bytes, memory_limit

#: Bytes of one chunk's identity columns and outputs when ``batch`` is not given.
CHUNK_BYTES = 2**25
#: The scale ``s`` of the scaling check ``fn(s a) == s fn(a)``: negative, as ``relu`` and
#: ``abs`` are homogeneous for positive scales only.
SCALE = -2.5


class ProbeError(ValueError):
    """``fn`` is no matrix: it is not linear (an offset, a nonlinearity), or returns NaN or inf."""


def sample_shape(value: object, name: str = "input_shape") -> tuple[int, ...]:
    """One sample's shape: a non-empty sequence of positive ints (a bool or a float is no
    size); the ``ValueError`` names the first entry that is not."""
    rule = f"{name} must be a non-empty tuple of positive ints (one sample's shape, no batch axis)"
    items: tuple[Any, ...] = ()
    if not isinstance(value, (str, bytes)):
        try:
            items = tuple(value)  # type: ignore[arg-type]  # not iterable: the TypeError below
        except TypeError:
            pass
    if not items:
        raise ValueError(f"{rule}; got {name}={value!r}.")
    shown = tuple(int(v) if is_int(v) else v for v in items)
    for axis, v in enumerate(items):
        if isinstance(v, (bool, np.bool_)):
            problem = "a bool, not a size"
        elif not is_int(v):
            problem = f"a {type(v).__name__}"
        elif v < 1:
            problem = f"{int(v)}"
        else:
            continue
        raise ValueError(f"{rule}; got {name}={shown!r}: entry {axis} is {problem}.")
    check_int_range(name, *items)
    return tuple(int(v) for v in items)


def to_numpy(y: object, what: str) -> np.ndarray:
    """``fn``'s output as a numeric numpy array: a numpy array, a torch tensor, or anything
    ``np.asarray`` converts (``__array__``: jax; ``.numpy()``: tensorflow) or exposing
    ``__dlpack__`` (the array API); no framework is imported."""
    if is_torch_tensor(y):
        t = y.float() if str(y.dtype) == "torch.bfloat16" else y  # numpy has no bfloat16; float32 is exact
        y = t.detach().cpu().resolve_conj().resolve_neg().numpy()
    elif not hasattr(y, "__array__") and callable(getattr(y, "numpy", None)):
        y = y.numpy()  # type: ignore[attr-defined]  # checked just above
    elif not hasattr(y, "__array__") and hasattr(y, "__dlpack__"):
        try:
            y = np.from_dlpack(y)
        except (TypeError, ValueError, RuntimeError, BufferError) as e:  # on a device numpy cannot read
            raise TypeError(f"fn returned a {type(y).__name__} numpy cannot read through __dlpack__ ({e}) "
                            f"for {what}: return it on the CPU.") from None
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError):  # a ragged list, an array that refuses to leave its device
        arr = None
    if arr is not None and arr.dtype.name == "bfloat16":  # jax's (ml_dtypes): exact in float32
        arr = arr.astype(np.float32)
    if arr is None or arr.dtype.kind not in "iufc":
        of = f" of dtype {arr.dtype}" if arr is not None and hasattr(y, "dtype") else ""
        raise TypeError(f"fn must return a numeric array (numpy, torch, or anything np.asarray converts: "
                        f"__array__, .numpy()); got {type(y).__name__}{of} for {what}.")
    return arr


def caller(fn: Callable[[Any], object], seen: list[str] | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``call(X)`` that feeds ``fn`` numpy, or torch tensors once ``fn`` refuses numpy (and
    from then on); without torch, ``fn``'s own error stands. ``seen`` collects the dtype
    names ``fn`` returns (bfloat16 is read as float32)."""
    state: dict[str, bool] = {}
    seen = [] if seen is None else seen

    def read(y: object, what: str) -> np.ndarray:
        seen.append(str(getattr(y, "dtype", "")))
        return to_numpy(y, what)

    def call(X: np.ndarray) -> np.ndarray:
        if not state.get("torch"):
            try:
                y = fn(X)
            except (TypeError, AttributeError) as refused:  # a torch function: "argument 'input' must be Tensor"
                try:
                    import torch  # noqa: F401
                except ImportError:
                    raise refused from None
                state["torch"] = True
            else:
                return read(y, "a numpy input")
        import torch

        return read(fn(torch.from_numpy(X)), "a torch input")

    return call


def _finite(Y: np.ndarray, out_shape: tuple[int, ...], where: Callable[[int], str]) -> None:
    """Refuse NaN or inf in ``Y`` (samples, outputs), naming the first; ``where(k)``: sample ``k``."""
    bad = ~np.isfinite(Y)
    if bad.any():
        k, i = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise ProbeError(
            f"fn must return finite values; it returned {Y[k, i]} at output "
            f"{tuple(int(v) for v in np.unravel_index(i, out_shape))} (the first of "
            f"{np.count_nonzero(bad):,} non-finite outputs) for {where(int(k))}."
        )


def linearity_tolerance(dtype: npt.DTypeLike) -> float:
    """The relative deviation the linearity check lets pass: ``4 sqrt(eps)`` of ``dtype``, at
    least 1e-6 (float64 1e-6, float32 1.4e-3): rounding passes, TF32's and a float64 callable
    computing in float32 included; a nonlinearity changes outputs by a fraction of their size.
    ``'bfloat16'`` (8 bits of mantissa): 2e-2."""
    if str(dtype) == "bfloat16":
        return 2e-2
    return max(4 * sqrt(float(np.finfo(dtype).eps)), 1e-6)


def _check_linear(call: Callable[[np.ndarray], np.ndarray], A: sp.csr_array, shape: tuple[int, ...],
                  dt: np.dtype[Any], batch: int, bfloat16: bool = False) -> None:
    """``fn(a + b) == fn(a) + fn(b)``, ``fn(s a) == s fn(a)`` and ``fn(x) == A x`` on random
    samples, in one call when ``batch`` allows; a ``ProbeError`` lists what fails, by how much."""
    m, n = A.shape
    if m == 0:
        return
    a, b = np.random.default_rng(0).standard_normal((2, n)).astype(dt)
    X = np.stack([a, b, a + b, dt.type(SCALE) * a])
    Y = np.concatenate([call(X[i:i + batch].reshape(-1, *shape)).reshape(len(X[i:i + batch]), -1)
                        for i in range(0, 4, batch)])
    if Y.shape != (4, m):
        raise ValueError(f"fn must return (N, *out) with the same out for every batch; for N=4 random "
                         f"samples it returned {Y.shape[1]:,} outputs each, not {m:,}.")
    _finite(Y, (m,), lambda k: f"the random sample {k} of the linearity check")
    low = dt if Y.dtype.kind not in "fc" or np.finfo(Y.dtype).eps <= np.finfo(dt).eps else Y.dtype
    tol = linearity_tolerance("bfloat16" if bfloat16 else low)
    wide = np.complex128 if np.iscomplexobj(Y) or np.iscomplexobj(A.data) else np.float64
    Y, X, A = Y.astype(wide), X.astype(wide), A.astype(wide)
    AX = (A @ X[:2].T).T
    scale = max(float(np.abs(Y).max()), float((abs(A) @ np.abs(X).T).max()), np.finfo(float).tiny)
    checks = [("superposition fn(a + b) = fn(a) + fn(b)", Y[2] - Y[0] - Y[1]),
              (f"scaling fn({SCALE:g} a) = {SCALE:g} fn(a)", Y[3] - SCALE * Y[0]),
              ("fn(x) = A x for the matrix A probed column by column", Y[:2] - AX)]
    failed = [(what, float(np.abs(d).max())) for what, d in checks if np.abs(d).max() > tol * scale]
    if failed:
        worst = max(e for _, e in failed) / scale
        hint = (f" Deviations this small are rounding if fn computes in a lower precision than "
                f"{low} (bfloat16, TF32)."
                if worst < 0.05 else " A nonlinearity (ReLU, a square, abs, a max) or a map that "
                "depends on the batch: probe the linear map alone.")
        raise ProbeError(
            "fn must be linear; it is not: " + "; ".join(
                f"{what} fails by {e:.3g} (relative {e / scale:.2g})" for what, e in failed)
            + f" (random samples a, b; relative to {scale:.3g}, the largest |A| |x| or |fn(x)|; "
            f"tolerance {tol:.2g} for {'bfloat16' if bfloat16 else low}).{hint}"
        )


def probe_matrix(fn: Callable[[Any], object], input_shape: Sequence[int], *,
                 dtype: npt.DTypeLike = np.float64, batch: int | None = None,
                 layout: str | None = None) -> sp.csr_array:
    """The matrix ``A`` of a linear callable: ``fn(x[None])[0].ravel() == A @ x.ravel()``.

    Parameters
    ----------
    fn : callable
        Takes a batch ``(N, *input_shape)`` (numpy, or torch when it refuses numpy) and
        returns ``(N, *out)``: a numpy array, a torch tensor or anything ``np.asarray``
        converts (a jax or tensorflow array). It must be linear (checked: see Raises).
    input_shape : tuple of int
        One sample's shape, no batch axis.
    dtype : numpy float dtype, default float64
        Of the identity columns fed to ``fn`` (and of the matrix).
    batch : int, optional
        Identity columns per call; default: as many as fit in about 32 MiB of input and output.
    layout : str, optional
        ``fn``'s batches channels last (``'NHWC'``, ``'NLC'``, ``'NDHWC'``): ``input_shape`` is
        then ``(*spatial, C)``, and the matrix is the same map on channels-first samples,
        comparable with :func:`~toeplitz_conv.conv_matrix` (:mod:`toeplitz_conv.layouts`).

    Returns
    -------
    A : (prod(out), prod(input_shape)) scipy.sparse csr_array
        Columns in C order of one input sample, rows in C order of one output sample; exact
        zeros dropped; the dtype ``fn`` returns.

    Raises
    ------
    ProbeError
        (a ``ValueError``) ``fn`` is not linear: ``fn(0) != 0`` (an offset, with its size), or
        on random samples ``a, b`` superposition ``fn(a + b) = fn(a) + fn(b)``, scaling
        ``fn(s a) = s fn(a)`` or ``fn(x) = A x`` fails beyond :func:`linearity_tolerance` of
        the output's scale (one extra call of 4 samples); or ``fn`` returns NaN or inf (the
        first is named).
    ValueError
        Before any call, when one probe input would exceed the memory limit; before the
        identity chunks, when a chunk would; after the first chunk, when the nonzeros it
        found, extrapolated to every column, would.

    Examples
    --------
    >>> import numpy as np, torch, torch.nn.functional as F, toeplitz_conv as tc
    >>> w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    >>> A = tc.probe_matrix(lambda x: F.conv2d(x, w, stride=2, padding=1), (3, 8, 8))
    >>> C = tc.conv_matrix(w, (3, 8, 8), stride=2, padding=1)
    >>> A.shape == C.shape and bool(abs(A - C).max() < 1e-12)
    True
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable taking a batch (N, *input_shape); got {type(fn).__name__}.")
    shape = sample_shape_first(sample_shape(input_shape), layout)
    fn = channels_first_fn(fn, layout, to_numpy)
    dt = np.dtype(dtype) if not type(dtype).__module__.startswith("torch") else None
    if dt is None or dt.kind != "f" or dt.itemsize < 4:
        raise TypeError(f"dtype must be a numpy float32 or float64 dtype; got {dtype!r}.")
    n = prod(shape)
    check_size("probe_matrix", n * dt.itemsize, f"one probe input of {n:,} values")
    seen: list[str] = []
    call = caller(fn, seen)
    zero = call(np.zeros((1, *shape), dtype=dt))
    if zero.ndim < 1 or zero.shape[0] != 1:
        raise ValueError(
            f"fn must return a batch (N, *out) for an input (N, *input_shape); for N=1 and "
            f"input_shape={shape} it returned shape {tuple(zero.shape)}."
        )
    out_shape = tuple(zero.shape[1:])
    m = prod(out_shape)
    _finite(zero.reshape(1, m), out_shape, lambda k: "a zero input")
    if np.any(zero != 0):
        raise ProbeError(
            f"fn must be linear, fn(0) = 0; fn of a zero input has {np.count_nonzero(zero):,} "
            f"nonzero outputs, up to {np.abs(zero).max():.3g} in size (a constant offset: a bias? "
            f"probe the map without it)."
        )
    itemsize = max(dt.itemsize, zero.dtype.itemsize)
    per_nonzero = 16 + itemsize  # (row, col) as int64, and the value
    per_column = (n + m) * itemsize + m * per_nonzero  # input, output, its nonzeros at worst
    limit, source = memory_limit()
    if batch is None:
        check_size("probe_matrix", per_column,
                   f"one probe column: {n:,} inputs and {m:,} outputs, all nonzero at worst")
        batch = max(1, min(n, CHUNK_BYTES // max(1, (n + m) * itemsize), limit // per_column))
    else:
        batch = min(positive_int("batch", batch), n)
        check_size("probe_matrix", batch * per_column,
                   f"batch={batch:,} probe columns of {n:,} inputs and {m:,} outputs, all nonzero at worst")
    rows, cols, vals, kept = [], [], [], 0
    eye = np.zeros((batch, n), dtype=dt)
    for j0 in range(0, n, batch):
        b = min(batch, n - j0)
        X = eye[:b]
        X[:] = 0
        X[np.arange(b), j0 + np.arange(b)] = 1
        Y = call(X.reshape(b, *shape))
        if tuple(Y.shape) != (b, *out_shape):
            raise ValueError(
                f"fn must return (N, *out) with the same out for every batch; for N={b} it "
                f"returned shape {tuple(Y.shape)}, for N=1 {tuple(zero.shape)}."
            )
        _finite(Y.reshape(b, m), out_shape, lambda k: (
            f"the probe of input pixel {tuple(int(v) for v in np.unravel_index(j0 + k, shape))} (column {j0 + k:,})"))
        r, c = np.nonzero(Y.reshape(b, m).T)
        rows.append(r.astype(np.int64))
        cols.append((c + j0).astype(np.int64))
        vals.append(Y.reshape(b, m).T[r, c])
        kept += r.size * per_nonzero
        if j0 == 0 and b < n:
            check_size("probe_matrix", kept * n // b,
                       f"about {r.size / b:,.0f} nonzeros per column in the first {b:,} of {n:,} columns, "
                       f"as (row, col, value) triples")
        if kept > limit:
            raise ValueError(
                f"probe_matrix: the nonzeros found so far ({sum(v.size for v in vals):,}, "
                f"{human_bytes(kept)} as triples) already exceed the limit of {human_bytes(limit)} "
                f"({source}), after {j0 + b:,} of {n:,} columns."
            )
    A = sp.coo_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, n)).tocsr()
    _check_linear(call, A, shape, dt, batch, any(d.endswith("bfloat16") for d in seen))
    return A
