"""Matrix products in a traced model: ``a @ b``, ``torch.matmul``, ``torch.bmm`` over the
sample's last two axes. Of two tensors that depend on the input (attention's ``q @ k^T`` and
``p @ v``) the node is a :class:`~.nodes.Contraction`; with one side constant (a parameter or
buffer, ``x @ self.w``), an affine node.
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
