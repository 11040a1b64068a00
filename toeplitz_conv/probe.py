"""The matrix of any linear callable, read off by probing it with chunks of the identity.

``fn`` maps a batch ``(N, *input_shape)`` to ``(N, *out)``; fed the columns of the identity
(``N`` of them at a time, each reshaped to ``input_shape``), it returns the columns of its
matrix. The exact zeros are dropped: a convolution's probe is as sparse as its
:func:`~toeplitz_conv.conv_matrix`, and equal to it entry for entry when ``fn`` is that
convolution. numpy callables are fed numpy arrays; a callable that refuses them (a torch
function) is fed torch tensors of the same dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ._args import positive_int, shape_tuple
from .memory import check_size, human_bytes, memory_limit

#: Bytes of one chunk's identity columns and outputs when ``batch`` is not given.
CHUNK_BYTES = 2**25


def _as_numpy(y: object, what: str) -> np.ndarray:
    if type(y).__module__.startswith("torch") and hasattr(y, "detach"):
        return y.detach().cpu().resolve_conj().resolve_neg().numpy()  # type: ignore[no-any-return]  # torch unimported: .numpy() is Any
    if isinstance(y, np.ndarray):
        return y
    raise TypeError(f"fn must return a numpy array or a torch tensor; got {type(y).__name__} for {what}.")


def _caller(fn: Callable[[Any], object]) -> Callable[[np.ndarray], np.ndarray]:
    """``call(X)`` that feeds ``fn`` numpy, or torch tensors once ``fn`` refuses numpy (and
    from then on); without torch, ``fn``'s own error stands."""
    state: dict[str, bool] = {}

    def call(X: np.ndarray) -> np.ndarray:
        if not state.get("torch"):
            try:
                return _as_numpy(fn(X), "a numpy input")
            except (TypeError, AttributeError) as refused:  # a torch function: "argument 'input' must be Tensor"
                try:
                    import torch  # noqa: F401
                except ImportError:
                    raise refused from None
                state["torch"] = True
        import torch

        return _as_numpy(fn(torch.from_numpy(X)), "a torch input")

    return call


def probe_matrix(fn: Callable[[Any], object], input_shape: Sequence[int], *,
                 dtype: npt.DTypeLike = np.float64, batch: int | None = None) -> sp.csr_array:
    """The matrix ``A`` of a linear callable: ``fn(x[None])[0].ravel() == A @ x.ravel()``.

    Parameters
    ----------
    fn : callable
        Takes a batch ``(N, *input_shape)`` (numpy, or torch when it refuses numpy) and
        returns ``(N, *out)``; it must be linear (``fn(0) == 0``: a bias is refused).
    input_shape : tuple of int
        One sample's shape, no batch axis.
    dtype : numpy float dtype, default float64
        Of the identity columns fed to ``fn`` (and of the matrix).
    batch : int, optional
        Identity columns per call; default: as many as fit in about 32 MiB of input and output.

    Returns
    -------
    A : (prod(out), prod(input_shape)) scipy.sparse csr_array
        Columns in C order of one input sample, rows in C order of one output sample; exact
        zeros dropped. Refused up front when one probe's input and output would exceed the
        memory limit, and as soon as the nonzeros found would.

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
    if not isinstance(input_shape, (tuple, list)) or not input_shape:
        raise ValueError(
            f"input_shape must be a non-empty tuple of positive ints (one sample, no batch "
            f"axis); got {input_shape!r}."
        )
    shape = shape_tuple("input_shape", input_shape, len(input_shape), "(one sample's shape, no batch axis)")
    dt = np.dtype(dtype) if not type(dtype).__module__.startswith("torch") else None
    if dt is None or dt.kind != "f" or dt.itemsize < 4:
        raise TypeError(f"dtype must be a numpy float32 or float64 dtype; got {dtype!r}.")
    n = prod(shape)
    call = _caller(fn)
    zero = call(np.zeros((1, *shape), dtype=dt))
    if zero.ndim < 1 or zero.shape[0] != 1:
        raise ValueError(
            f"fn must return a batch (N, *out) for an input (N, *input_shape); for N=1 and "
            f"input_shape={shape} it returned shape {tuple(zero.shape)}."
        )
    if np.any(zero != 0):
        raise ValueError(
            f"fn must be linear, fn(0) = 0; fn of a zero input has {np.count_nonzero(zero):,} "
            f"nonzero outputs (a bias? probe the map without it)."
        )
    out_shape = tuple(zero.shape[1:])
    m = prod(out_shape)
    itemsize = max(dt.itemsize, zero.dtype.itemsize)
    check_size("probe_matrix", (n + m) * itemsize,
               f"one probe column: {n:,} inputs and {m:,} outputs")
    if batch is None:
        batch = max(1, min(n, CHUNK_BYTES // max(1, (n + m) * itemsize)))
    else:
        batch = min(positive_int("batch", batch), n)
        check_size("probe_matrix", batch * (n + m) * itemsize,
                   f"batch={batch:,} probe columns of {n:,} inputs and {m:,} outputs")
    limit, source = memory_limit()
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
        r, c = np.nonzero(Y.reshape(b, m).T)
        rows.append(r.astype(np.int64))
        cols.append((c + j0).astype(np.int64))
        vals.append(Y.reshape(b, m).T[r, c])
        kept += r.size * (16 + itemsize)
        if kept > limit:
            raise ValueError(
                f"probe_matrix: the nonzeros found so far ({sum(v.size for v in vals):,}, "
                f"{human_bytes(kept)} as triples) already exceed the limit of {human_bytes(limit)} "
                f"({source}), after {j0 + b:,} of {n:,} columns."
            )
    A = sp.coo_array((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, n))
    return A.tocsr()

