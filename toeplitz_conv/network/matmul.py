"""Matrix products in a traced model: ``a @ b``, ``torch.matmul``, ``torch.bmm`` over the
sample's last two axes, and ``torch.einsum`` of one or two operands. Of two tensors that depend
on the input (attention's ``q @ k^T`` and ``p @ v``) the node is a :class:`~.nodes.Contraction`;
with one side constant (a parameter or buffer, ``x @ self.w``), an affine node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .call import Operand, UnsupportedModuleError
from .layers import Fixed
from .linear_ops import SampleMixingError, gather_matrices, reduce_matrix
from .nodes import Contraction

if TYPE_CHECKING:
    import torch

    from .call import Call


def matmul(call: Call) -> Fixed | Contraction:
    """``a @ b`` (``torch.matmul``, ``torch.bmm``, ``.matmul``) over the sample's last two axes,
    leading axes broadcast: a :class:`Contraction` of two inputs, or a linear node when one side
    is a constant (``x @ self.w``: see :mod:`.reads`)."""
    import torch

    a, b = call.arg(0, "input"), call.arg(1, "other")
    full = tuple(call.value.shape)
    ta = a if not isinstance(a, Operand) else torch.empty((2, *a.shape))
    tb = b if not isinstance(b, Operand) else torch.empty((2, *b.shape))
    if ta.dim() < 2 or tb.dim() < 2 or (isinstance(a, Operand) and isinstance(b, Operand) and min(len(a.shape), len(b.shape)) < 2):
        raise UnsupportedModuleError(f"{call.kind} {call.title!r}{call.where} of a vector is not supported; "
                                     f"keep two matrix axes (x.unsqueeze(-1)).")
    m, k, n = ta.shape[-2], ta.shape[-1], tb.shape[-1]
    space = (*full[:-2], m, n, k)  # one entry per output and summed index (the batch axis first)

    def spread_a(t: torch.Tensor) -> torch.Tensor:
        return t.unsqueeze(-2).expand(*t.shape[:-2], m, n, k).broadcast_to(space)

    def spread_b(t: torch.Tensor) -> torch.Tensor:
        return t.transpose(-1, -2).unsqueeze(-3).expand(*t.shape[:-2], m, n, k).broadcast_to(space)

    summed = reduce_matrix(space[1:], [len(space) - 2], False, call.dtype)
    sides = []
    for side, spread in ((a, spread_a), (b, spread_b)):
        if isinstance(side, Operand):
            sides.append(gather_matrices(spread, [side.shape], call.dtype, f"{call.kind} {call.title!r}")[0][0])
        else:
            sides.append(_constant_spread(call, side, spread, space))
    out_shape = full[1:]
    if isinstance(a, Operand) and isinstance(b, Operand):
        return Contraction(call.label, [a.shape, b.shape], out_shape, sides, summed, call.kind)
    gather_side, constant = (sides[0], sides[1]) if isinstance(a, Operand) else (sides[1], sides[0])
    return Fixed(call.label, call.module, call.shape, out_shape,
                 (summed @ sp.diags_array(constant) @ gather_side).tocsr(), None, kind=call.kind)


def _constant_spread(call: Call, c: object, spread: Callable[[torch.Tensor], torch.Tensor],
                     space: Sequence[int]) -> np.ndarray:
    """A constant operand of a matrix product, spread over the product space of one sample."""
    import torch

    t = spread(torch.as_tensor(c, dtype=torch.float64).detach())  # broadcast over the batch too
    if (t[0] != t[1]).any():
        raise SampleMixingError(f"{call.kind} {call.title!r}{call.where}: a constant operand differs between "
                                f"the samples of a batch.")
    return t[0].reshape(-1).numpy().astype(call.dtype)


def einsum(call: Call) -> Fixed | Contraction:
    """``torch.einsum(equation, a[, b])``: one operand is a linear map of it (a sum over the
    summed letters of a copy), two are a :class:`Contraction` (both depend on the input) or a
    linear node (one side constant). Each operand is spread over the product space (the
    output's letters, then the summed ones) and the summed letters are reduced, as for ``@``.
    The batch axis must be the first letter of every traced operand and of the output."""
    import torch

    ops = call.args[1:] if len(call.args) > 2 or not isinstance(call.arg(1, "operands"), (list, tuple)) \
        else list(call.arg(1, "operands"))
    if not 1 <= len(ops) <= 2:
        raise UnsupportedModuleError(f"torch.einsum {call.title!r}{call.where} of {len(ops)} operands is not "
                                     f"supported; write it as einsums of one or two operands.")
    full = [(2, *o.shape) if isinstance(o, Operand) else tuple(torch.as_tensor(o).shape) for o in ops]
    subs, out = _subscripts(call, str(call.arg(0, "equation")), [len(s) for s in full])
    sizes: dict[str, int] = {}
    for s, shape in zip(subs, full):
        sizes.update({letter: n for letter, n in zip(s, shape) if n != 1 or letter not in sizes})
    batch = out[:1]
    for s, o in zip(subs, ops):
        if isinstance(o, Operand) and s[:1] != batch:
            raise SampleMixingError(f"torch.einsum {call.title!r}{call.where}: the batch axis must be the first "
                                    f"letter of every input that depends on the model's input and of the "
                                    f"output; got {call.arg(0, 'equation')!r}.")
    summed = "".join(sorted({c for s in subs for c in s} - set(out)))
    letters = out + summed
    space = tuple(sizes[c] for c in letters)

    def spreader(s: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def spread(t: torch.Tensor) -> torch.Tensor:
            t = t.permute([s.index(c) for c in letters if c in s])
            t = t.reshape([t.shape[[c for c in letters if c in s].index(c)] if c in s else 1 for c in letters])
            return t.expand(t.shape[0] if s[:1] == batch else 2, *space[1:])
        return spread

    reduce = reduce_matrix(space[1:], range(len(out) - 1, len(letters) - 1), False, call.dtype)
    sides = []
    for s, o in zip(subs, ops):
        if isinstance(o, Operand):
            sides.append(gather_matrices(spreader(s), [o.shape], call.dtype, f"torch.einsum {call.title!r}")[0][0])
        else:
            sides.append(_constant_spread(call, o, spreader(s), (2, *space[1:])))
    out_shape = tuple(call.value.shape[1:])
    traced = [isinstance(o, Operand) for o in ops]
    if all(traced) and len(ops) == 2:
        return Contraction(call.label, [o.shape for o in ops], out_shape, sides, reduce, call.kind)
    gather_side = sides[traced.index(True)]
    for side, t in zip(sides, traced):
        if not t:
            gather_side = sp.diags_array(side) @ gather_side
    return Fixed(call.label, call.module, call.shape, out_shape, (reduce @ gather_side).tocsr(), None, kind=call.kind)


def _subscripts(call: Call, equation: str, ndims: Sequence[int]) -> tuple[list[str], str]:
    """Each operand's letters and the output's, the ellipsis written out with fresh letters."""
    import string

    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(ndims) or any(not set(s.replace("...", "")) <= set(string.ascii_letters) for s in ins):
        raise ValueError(f"torch.einsum {call.title!r}{call.where}: cannot read the equation {equation!r} for "
                         f"{len(ndims)} operands.")
    free = [c for c in string.ascii_letters if c not in eq]
    width = max([n - (len(s) - 3) for s, n in zip(ins, ndims) if "..." in s], default=0)
    ell = "".join(free[:width])
    ins = [s.replace("...", ell[width - (n - (len(s) - 3)):]) for s, n in zip(ins, ndims)]
    if any(len(set(s)) != len(s) for s in ins):
        raise UnsupportedModuleError(f"torch.einsum {call.title!r}{call.where}: a letter repeated in one operand "
                                     f"(a diagonal, {equation!r}) is not supported.")
    if arrow:
        out = rhs.replace("...", ell)
    else:
        counts = "".join(ins)
        out = ell + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c not in ell))
    return ins, out
