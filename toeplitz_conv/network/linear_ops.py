"""The matrices of parameter-free linear ops, read off torch itself.

Padding, pixel shuffle, channel shuffle, reshapes, permutations, slicing, ``torch.cat`` and
nearest upsampling only *move* entries: each output is one input entry, or a constant. Their
matrix is read from one call of the op on a tensor that holds each entry's own number
(:func:`gather_matrices`): the output says which input entry every output entry copied. The
numbers are float64 integers, exact up to 2^53. Ops that *weigh* entries along each axis
alone (linear upsampling) are read per axis by probing with the identity
(:func:`separable_matrix`); sums and means over axes are written down (:func:`reduce_matrix`),
and so is functional pooling (from its geometry, in :mod:`toeplitz_conv.pool`).

Every op is called on a batch of two samples, so the reading also checks that the op keeps
the batch axis and never mixes samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from math import prod
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from .call import ModuleError

if TYPE_CHECKING:
    import torch

    from .call import Call

BATCH = 2  # the traced batch: two samples tell the batch axis from a size-1 axis


class SampleMixingError(ModuleError, ValueError):
    """The op's output for one sample reads another sample (or the batch axis is gone)."""


class BatchAxisError(SampleMixingError):
    """The op's output does not have the batch axis first (a permutation moved it, say)."""


def _numbers(shapes: Sequence[Sequence[int]], torch: ModuleType) -> list[torch.Tensor]:
    """Float64 tensors ``(BATCH, *shape)`` numbering every entry of every operand from 1."""
    out, start = [], 1
    for shape in shapes:
        n = BATCH * prod(shape)
        out.append(torch.arange(start, start + n, dtype=torch.float64).reshape(BATCH, *shape))
        start += n
    return out


def gather_matrices(apply: Callable[..., Any], shapes: Sequence[Sequence[int]], dtype: npt.DTypeLike,
                    what: str) -> tuple[list[sp.csr_array], np.ndarray | None, tuple[int, ...]]:
    """``(matrices, bias, out_shape)`` of an op that copies entries: ``y = sum_i W_i x_i + b``.

    ``apply(*tensors)`` calls the op with its data operands replaced by ``tensors``
    (``(BATCH, *shape)`` each); ``W_i`` is ``(prod(out_shape), prod(shapes[i]))`` CSR with
    0/1 entries, ``b`` the output for zero inputs (None when it is zero).
    """
    import torch

    with torch.no_grad():
        zero = apply(*[torch.zeros(BATCH, *s, dtype=torch.float64) for s in shapes])
        out = apply(*_numbers(shapes, torch))
    if not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != BATCH:
        raise BatchAxisError(f"{what} must keep the batch axis first; with a batch of {BATCH} "
                                f"it returned {_describe(out)}.")
    out_shape = tuple(out.shape[1:])
    bias = zero[0].reshape(-1).numpy()
    z, o = zero.reshape(BATCH, -1).numpy(), out.reshape(BATCH, -1).numpy()
    fixed = np.isinf(z) & (o == z)  # an infinite constant (masked_fill(mask, -inf)), whatever the input
    with np.errstate(invalid="ignore"):
        v = np.where(fixed, 0.0, o - z)
    if not np.array_equal(v, np.round(v)) or (zero[0] != zero[1]).any():
        raise ValueError(f"{what} is not a copy of its input's entries, so compile cannot read its "
                         f"matrix this way.")  # a registry error: the op is listed as a copy
    sizes = [prod(s) for s in shapes]
    starts = np.concatenate([[1], 1 + BATCH * np.cumsum(sizes)])
    src = v.astype(np.int64)
    which = np.searchsorted(starts, src, side="right") - 1  # operand of each entry (-1: constant)
    local = src - starts[np.clip(which, 0, None)]
    sample = local // np.asarray(sizes + [1])[np.clip(which, 0, None)]
    copied = src > 0
    if (copied & (sample != np.arange(BATCH)[:, None])).any():
        raise SampleMixingError(f"{what} mixes the samples of a batch (an output of one sample "
                                f"reads another sample's input); compile needs an op that acts on "
                                f"each sample alone, with the batch axis first.")
    n_of = np.asarray(sizes)[np.clip(which, 0, None)]
    if not (np.array_equal(copied[0], copied[1]) and np.array_equal(which[0], which[1])
            and np.array_equal((local[1] - n_of[1])[copied[1]], local[0][copied[0]])):
        raise SampleMixingError(f"{what} treats the samples of a batch differently; compile needs "
                                f"an op that maps every sample the same way.")
    m = prod(out_shape)
    rows = np.nonzero(copied[0])[0]
    mats = []
    for i, n in enumerate(sizes):
        r = rows[which[0, rows] == i]
        cols = local[0, r]
        mats.append(sp.csr_array((np.ones(r.size, dtype=dtype), (r, cols)), shape=(m, n)))
    has_bias = bool(np.any(bias))
    return mats, (bias.astype(dtype) if has_bias else None), out_shape


def _describe(value: object) -> str:
    shape = getattr(value, "shape", None)
    return f"shape {tuple(shape)}" if shape is not None else type(value).__name__


def is_identity(matrix: sp.sparray) -> bool:
    """True for the identity (a reshape: the flattened sample does not change)."""
    if matrix.shape[0] != matrix.shape[1] or matrix.nnz != matrix.shape[0]:
        return False
    coo = matrix.tocoo()
    return bool(np.array_equal(coo.row, coo.col) and np.all(coo.data == 1))


def reduce_matrix(shape: Sequence[int], axes: Iterable[int], mean: bool,
                  dtype: npt.DTypeLike) -> sp.csr_array:
    """Sum (or mean) of a sample of shape ``shape`` over ``axes`` (sample axes, no batch):
    ``(prod(kept), prod(shape))``, kept axes in order."""
    axes = sorted(set(axes))
    kept = [a for a in range(len(shape)) if a not in axes]
    grid = np.indices(shape).reshape(len(shape), -1)
    kept_shape = tuple(shape[a] for a in kept)
    rows = np.ravel_multi_index(tuple(grid[kept]), kept_shape) if kept else np.zeros(grid.shape[1], int)
    count = prod(shape[a] for a in axes)
    vals = np.full(rows.size, 1.0 / count if mean else 1.0, dtype=dtype)
    return sp.csr_array((vals, (rows, np.arange(rows.size))), shape=(prod(kept_shape), prod(shape)))


def separable_matrix(apply_axis: Callable[[int, torch.Tensor], torch.Tensor], shape: Sequence[int],
                     dtype: npt.DTypeLike) -> tuple[sp.csr_array, tuple[int, ...]]:
    """The matrix of a per-channel op that acts on each spatial axis alone (interpolation):
    ``apply_axis(d, probe)`` runs the op on ``probe`` whose only non-trivial spatial axis is
    ``d``; the matrix is ``kron(I_C, A_1, ..., A_d)``."""
    import torch

    spatial = tuple(shape[1:])
    M = sp.eye_array(shape[0], dtype=dtype, format="csr")
    out_spatial = []
    with torch.no_grad():
        for d, n in enumerate(spatial):
            probe = torch.eye(n, dtype=torch.float64).reshape(n, 1, *[n if e == d else 1 for e in range(len(spatial))])
            out = apply_axis(d, probe)
            out_spatial.append(out.shape[2 + d])
            A = sp.csr_array(out.reshape(n, -1).numpy().T.astype(dtype))
            A.eliminate_zeros()
            M = sp.kron(M, A, format="csr")
    return M, (shape[0], *out_spatial)


def sample_axes(call: Call, dims: int | Sequence[int], what: str) -> list[int]:
    """Sample axes (batch removed) of tensor dims ``dims``; refuses the batch axis."""
    nd = len(call.shape) + 1
    dims = [dims] if isinstance(dims, int) else list(dims)
    axes = [d % nd for d in dims]
    if 0 in axes:
        raise SampleMixingError(f"{call.kind} {call.title!r}{call.where} {what} over the batch axis "
                                f"(dim={dims if len(dims) > 1 else dims[0]}); compile needs ops that act "
                                f"on each sample alone.")
    return [a - 1 for a in axes]
