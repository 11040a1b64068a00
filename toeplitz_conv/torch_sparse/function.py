"""The autograd Functions of the torch.sparse convolution: three products of one structure
that are each other's derivatives::

    ConvFunction        Y  = C(W) @ X + b      (a stored sparse matrix, values by one gather)
    ConvTFunction       dX = C(W).T @ D        (its own stored matrix: a row-wise product again)
    WeightGradFunction  dW.flat[tap] = sum over triples of D[row] * X[col]
                        (grouped by tap: a gather of whole rows of X along the pattern, a matmul)

``C(W) X`` is linear in ``X`` and in ``W``, so every derivative of one is another:

- ``ConvFunction``'s backward is ``ConvT(D, W)`` for ``X`` and ``WeightGrad(X, D)`` for ``W``;
- ``ConvT(D, W)``'s is ``Conv(G, W)`` for ``D`` and ``WeightGrad(G, D)`` for ``W``;
- ``WeightGrad(X, D)``'s is ``ConvT(D, G)`` for ``X`` and ``Conv(X, G)`` for ``D``.

Their backwards are built from the same Functions, so gradients of gradients (gradient
penalties, Hessian-vector products) work to any order. Each has ``setup_context`` (torch.func),
a forward-mode ``jvp`` from the same identities, and a ``vmap`` rule that folds a vmapped
input into the batch axis (one call), or runs one call per vmapped weight.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch

from . import runtime
from .structure import Structure

if TYPE_CHECKING:
    from typing import Protocol

    class _Applicable(Protocol):
        """An autograd Function class, run by its ``apply``."""

        def apply(self, *args: Any, **kwargs: Any) -> torch.Tensor: ...


class Values:
    """The values of C and C.T for one structure, cached while the weight is unchanged.

    The cache is checked against a copy of the weight it was filled from (an exact
    comparison, a weight-sized read): optimizers that write the weight without bumping its
    version counter (``fused=True``) and inference tensors (which have none) are seen too.
    """

    def __init__(self, structure: Structure, cache: bool) -> None:
        self.structure, self.cache = structure, cache
        self._mats: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()

    def matrix(self, weight: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        if not self.cache:
            return self.structure.matrix(weight, transpose)
        with self._lock:
            hit = self._mats.get(transpose)
            if hit is None or hit[1].dtype != weight.dtype or hit[0].shape != weight.shape:
                self._mats[transpose] = (weight.detach().clone(), self.structure.matrix(weight.detach(), transpose))
            elif not torch.equal(hit[0], weight.detach()):  # new weight values: one gather, same buffer
                hit[0].copy_(weight.detach())
                self.structure.refill(hit[1], weight.detach(), transpose)
            return self._mats[transpose][1]


def _empty_batch(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return x.new_zeros((0, *shape))


def conv_forward(values: Values, x: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor | None) -> torch.Tensor:
    """``y = C(W) x + b`` for ``x`` of shape ``(N, C_in, *spatial)``, no autograd."""
    s = values.structure
    geom = s.geometry
    n = x.shape[0]
    if n == 0:
        return _empty_batch(x, geom.out_shape)
    X = runtime.rows(s, x, role="input")
    Y = runtime.product(s, values.matrix(weight), runtime.operand(s, X, geom.in_channels),
                        None if bias is None else runtime.bias_rows(s, bias, n))
    out = torch.empty((n, *geom.out_shape), dtype=x.dtype, device=x.device)
    runtime.unrows(s, Y, geom.out_channels, out.view(n, geom.out_channels, s.p_out))
    if geom.padding_mode == "zeros" and not bool(torch.isfinite(weight).all()):
        out = _nonfinite_padding(out, weight, s)
    return out


def _nonfinite_padding(y: torch.Tensor, weight: torch.Tensor, s: Structure) -> torch.Tensor:
    """``nn.ConvNd`` multiplies zero padding by the weight: a NaN or inf tap that reads
    padding makes its outputs NaN. The matrix has no entry for padding (the scipy core keeps
    it exact); the drop-in layers put those NaNs in, as torch does."""
    G, taps = s.geometry.groups, s.gather.shape[1]
    reads_pad = (s.gather == s.geometry.shape[1]).to(weight.dtype)  # (G, taps, P_out)
    bad = (~torch.isfinite(weight)).reshape(G, s.cout_g, taps).to(weight.dtype)
    hit = (bad @ reads_pad).reshape(1, *s.geometry.out_shape) > 0
    return y.masked_fill(hit, float("nan"))


def conv_transpose_forward(values: Values, d: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``dx = C(W).T d`` for ``d`` of shape ``(N, C_out, *out_spatial)``, no autograd."""
    s = values.structure
    geom = s.geometry
    n = d.shape[0]
    if n == 0:
        return _empty_batch(d, geom.in_shape)
    D = runtime.rows(s, d, role="rows")
    dX = runtime.product(s, values.matrix(weight, transpose=True), runtime.operand(s, D, geom.out_channels))
    out = d.new_empty((n, *geom.in_shape))
    runtime.unrows(s, dX, geom.in_channels, out.view(n, geom.in_channels, s.p_in))
    return out


def weight_grad_forward(values: Values, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``dW = J(x).T d``: the weight gradient of ``<d, C(W) x>``, no autograd."""
    s = values.structure
    if x.shape[0] == 0:
        return x.new_zeros(s.geometry.weight_shape)
    return runtime.weight_grad(s, runtime.rows(s, x, zero_row=True, role="input"),
                               runtime.rows(s, d, role="rows"))


def _sum_but_channels(t: torch.Tensor) -> torch.Tensor:
    return t.sum(dim=[k for k in range(t.dim()) if k != 1])


# --------------------------------------------------------------------------- vmap


def _fold(t: torch.Tensor, dim: int) -> tuple[torch.Tensor, int, int]:
    """A vmapped ``(..., B at dim, ...)`` tensor as ``(B * N, ...)`` and ``B, N``."""
    t = t.movedim(dim, 0)
    return t.reshape(t.shape[0] * t.shape[1], *t.shape[2:]), t.shape[0], t.shape[1]


def _per_element(fn: _Applicable, info: Any, in_dims: Sequence[int | None],
                 args: Sequence[Any]) -> tuple[torch.Tensor, int]:
    """One call per vmapped element, stacked: when a weight is vmapped (no batch to fold)."""
    outs = []
    for i in range(info.batch_size):
        outs.append(fn.apply(*[a.select(d, i) if isinstance(a, torch.Tensor) and d is not None else a
                               for a, d in zip(args, in_dims)]))
    return torch.stack(outs), 0


def _fold_or_loop(fn: _Applicable, info: Any, in_dims: Sequence[int | None], args: Sequence[Any],
                  batched: int, rest_batched: bool) -> tuple[torch.Tensor, int]:
    """Fold the vmapped dim of ``args[batched]`` into its batch axis when it is the only
    vmapped tensor (one call), else one call per element."""
    if rest_batched or in_dims[batched] is None:
        return _per_element(fn, info, in_dims, args)
    folded, B, N = _fold(args[batched], cast(int, in_dims[batched]))
    out = fn.apply(*[folded if k == batched else a for k, a in enumerate(args)])
    return out.view(B, N, *out.shape[1:]), 0


# --------------------------------------------------------------------------- Functions


class ConvFunction(torch.autograd.Function):
    """``y = C(W) x + b``; ``values``: the :class:`Values` of the layer's structure."""

    if TYPE_CHECKING:  # Function.apply is unannotated: its signature here is forward's
        @classmethod
        def apply(cls, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  values: Values) -> torch.Tensor: ...

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                values: Values) -> torch.Tensor:
        return conv_forward(values, x, weight, bias)

    @staticmethod
    def setup_context(ctx: Any,
                      inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Values],
                      output: torch.Tensor) -> None:
        x, weight, bias, values = inputs
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)
        ctx.values = values

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, None]:
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = ConvTFunction.apply(grad, weight, ctx.values)
        if ctx.needs_input_grad[1]:
            gw = WeightGradFunction.apply(x, grad, ctx.values)
        if ctx.needs_input_grad[2]:
            gb = _sum_but_channels(grad)
        return gx, gw, gb, None

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor | None, w_t: torch.Tensor | None,
            b_t: torch.Tensor | None, _: object) -> torch.Tensor | None:
        x, weight = ctx.saved_tensors
        out = None
        if x_t is not None:
            out = ConvFunction.apply(x_t, weight, None, ctx.values)
        if w_t is not None:
            term = ConvFunction.apply(x, w_t, None, ctx.values)
            out = term if out is None else out + term
        if b_t is not None:
            term = b_t.view(1, -1, *[1] * (x.dim() - 2)).expand(x.shape[0], -1, *ctx.values.structure.geometry.out_spatial)
            out = term if out is None else out + term
        return out

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], x: torch.Tensor, weight: torch.Tensor,
             bias: torch.Tensor | None, values: Values) -> tuple[torch.Tensor, int]:
        return _fold_or_loop(ConvFunction, info, in_dims, (x, weight, bias, values), 0,
                             in_dims[1] is not None or in_dims[2] is not None)


class _Bilinear(torch.autograd.Function):
    """A product bilinear in its two tensors ``(a, b)``: it saves both, and its forward-mode
    derivative is ``B(a', b) + B(a, b')``; each subclass writes its backward."""

    if TYPE_CHECKING:  # Function.apply is unannotated: its signature here is forward's
        @classmethod
        def apply(cls, a: torch.Tensor, b: torch.Tensor, values: Values) -> torch.Tensor: ...

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor, Values],
                      output: torch.Tensor) -> None:
        a, b, values = inputs
        ctx.save_for_backward(a, b)
        ctx.save_for_forward(a, b)
        ctx.values = values

    @classmethod
    def jvp(cls, ctx: Any, a_t: torch.Tensor | None, b_t: torch.Tensor | None,
            _: object) -> torch.Tensor | None:
        a, b = ctx.saved_tensors
        out = None if a_t is None else cls.apply(a_t, b, ctx.values)
        if b_t is not None:
            term = cls.apply(a, b_t, ctx.values)
            out = term if out is None else out + term
        return out


class ConvTFunction(_Bilinear):
    """``dx = C(W).T d``: the input gradient, which is the transposed convolution."""

    @staticmethod
    def forward(d: torch.Tensor, weight: torch.Tensor, values: Values) -> torch.Tensor:
        return conv_transpose_forward(values, d, weight)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        d, weight = ctx.saved_tensors
        gd = gw = None
        if ctx.needs_input_grad[0]:
            gd = ConvFunction.apply(g, weight, None, ctx.values)
        if ctx.needs_input_grad[1]:
            gw = WeightGradFunction.apply(g, d, ctx.values)
        return gd, gw, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], d: torch.Tensor, weight: torch.Tensor,
             values: Values) -> tuple[torch.Tensor, int]:
        return _fold_or_loop(ConvTFunction, info, in_dims, (d, weight, values), 0, in_dims[1] is not None)


class WeightGradFunction(_Bilinear):
    """``dW = J(x).T d``, bilinear in ``x`` and ``d``: ``<dW, G> = <d, C(G) x>``."""

    @staticmethod
    def forward(x: torch.Tensor, d: torch.Tensor, values: Values) -> torch.Tensor:
        return weight_grad_forward(values, x, d)

    @staticmethod
    def backward(ctx: Any, G: torch.Tensor
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, d = ctx.saved_tensors
        gx = gd = None
        if ctx.needs_input_grad[0]:
            gx = ConvTFunction.apply(d, G, ctx.values)
        if ctx.needs_input_grad[1]:
            gd = ConvFunction.apply(x, G, None, ctx.values)
        return gx, gd, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], x: torch.Tensor, d: torch.Tensor,
             values: Values) -> tuple[torch.Tensor, int]:
        # a per-element weight gradient: the batch axis is summed over, so never folded
        return _per_element(WeightGradFunction, info, in_dims, (x, d, values))
