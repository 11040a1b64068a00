"""The autograd Function of the torch.sparse convolution, the forward beside its backward::

    forward         Y = C(W) @ X          (a stored sparse matrix, values refreshed by one gather)
    input gradient  dX = C(W).T @ D       (its own stored matrix: a row-wise product again)
    weight grad     dW.flat[tap] = sum over triples of D[row] * X[col]
                    (grouped by tap: a gather of whole rows of X along the pattern, then a matmul)
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from . import runtime
from .structure import Structure


class Values:
    """The values of C and C.T for one structure, cached per weight version (or not at all)."""

    def __init__(self, structure: Structure, cache: bool):
        self.structure, self.cache = structure, cache
        self._mats = {}

    def matrix(self, weight, transpose=False):
        if not self.cache:
            return self.structure.matrix(weight, transpose)
        key = (id(weight), weight.data_ptr(), weight._version, weight.dtype)
        hit = self._mats.get(transpose)
        if hit is None or hit[1].dtype != weight.dtype:
            self._mats[transpose] = (key, self.structure.matrix(weight, transpose))
        elif hit[0] != key:  # new weight values: one gather into the same buffer
            self._mats[transpose] = (key, self.structure.refill(hit[1], weight, transpose))
        return self._mats[transpose][1]


class ToeplitzConvFunction(torch.autograd.Function):
    """``y = C(W) x + b`` with the backward read from the same structure.

    forward:  ``Y = C @ X`` (stored C; ``X`` the input rows, kept for the weight gradient).
    backward: ``dX = C.T @ D`` (stored C.T), ``dW`` from a gather of ``X`` along the
    pattern times ``D``, ``db = sum D``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, values):
        s = values.structure
        geom = s.geometry
        n = x.shape[0]
        X = runtime.rows(s, x, zero_row=True)  # a new tensor: kept for the weight gradient
        C = values.matrix(weight)
        Y = runtime.product(s, C, runtime.operand(s, X[:-1], geom.in_channels),
                            None if bias is None else runtime.bias_rows(s, bias, n))
        out = torch.empty((n, *geom.out_shape), dtype=x.dtype, device=x.device)
        runtime.unrows(s, Y, geom.out_channels, out.view(n, geom.out_channels, s.p_out))
        ctx.save_for_backward(X, weight)
        ctx.values = values
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        X, weight = ctx.saved_tensors
        values = ctx.values
        s, geom = values.structure, values.structure.geometry
        n = grad.shape[0]
        gx = gw = gb = None
        D = runtime.rows(s, grad, role="rows")
        if ctx.needs_input_grad[0]:
            CT = values.matrix(weight, transpose=True)
            dX = runtime.product(s, CT, runtime.operand(s, D, geom.out_channels))
            gx = grad.new_empty((n, *geom.in_shape))
            runtime.unrows(s, dX, geom.in_channels, gx.view(n, geom.in_channels, s.p_in))
        if ctx.needs_input_grad[1]:
            gw = runtime.weight_grad(s, X, D)
        if ctx.needs_input_grad[2]:
            gb = grad.sum(dim=[d for d in range(grad.dim()) if d != 1])
        return gx, gw, gb, None
