"""The parameters a compiled network reads: parametrised weights as their values
(:func:`named_parameters`), and parameters read in ``forward`` outside the supported layers:
a layer scale ``x * self.gamma``, a position embedding ``x + self.pos``, a class token
``torch.cat([self.cls.expand(n, -1, -1), x], 1)``. The op is affine in its input for given
parameters, so its node is an affine node whose matrix and bias are read with the parameters'
current values as constants; what the node needs besides is the parameters' gradient, and its
matrix again when they change.

:class:`ParamReads` keeps the call and how each parameter reaches it (directly, or through
constants computed from parameters, ``self.cls.expand(...)``). The gradient is torch's own
vector-Jacobian product of the op with respect to the parameters (``backward``); after
:meth:`Network.update` the op is built again from the new values (``rebuild``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._args import as_array
from .base import batch_form
from .call import UnsupportedModuleError
from .layers import Fixed, Reshape
from .nodes import Combine
from .trace import ancestors, evaluate

if TYPE_CHECKING:
    import torch
    import torch.fx
    from torch import nn

    from .call import Call
    from .layers import Layer
    from .ops import Builder


class ParamReads:
    """What one affine node reads of the model's parameters, and how to read it again.

    Parameters
    ----------
    call, build : the traced call and its builder.
    direct : {id(tensor): name}
        Parameters passed to the call as they are.
    derived : {id(tensor): node}
        Constants the call reads that ``forward`` computed from parameters (fx nodes of the
        traced graph, evaluated again from the parameters by :meth:`constant`).
    gm : the traced graph.
    data_shapes : {node: sample shape}
        The input-dependent nodes the constants are computed from (``x.shape[0]`` in
        ``self.cls.expand(x.shape[0], -1, -1)``): they are evaluated on meta tensors of the
        batch at hand, so that such a constant follows the batch.
    """

    def __init__(self, call: Call, build: Builder, direct: dict[int, str], derived: dict[int, torch.fx.Node],
                 gm: torch.fx.GraphModule, data_shapes: dict[torch.fx.Node, tuple[int, ...]]) -> None:
        self.call, self.build, self.direct, self.derived, self.gm = call, build, direct, derived, gm
        self.data_shapes = data_shapes  # input-dependent ancestors of the constants: only their shapes count
        self.names = sorted(set(direct.values()) | {
            cast(str, n.target) for d in derived.values() for n in ancestors(d, data_shapes) if n.op == "get_attr"
            and cast(str, n.target) in call.params})

    def constant(self, node: torch.fx.Node, values: dict[str, torch.Tensor], batch: int) -> torch.Tensor:
        """The value of the constant ``node`` with the parameters in ``values``, for a batch of
        ``batch`` samples."""
        import torch
        from torch.fx.node import map_arg

        env: dict[torch.fx.Node, Any] = {}
        for n in ancestors(node, stop=self.data_shapes):
            if n in self.data_shapes:  # only its shape can reach a constant
                env[n] = torch.empty((batch, *self.data_shapes[n]), device="meta", dtype=torch.float64)
                continue
            if n.op == "get_attr" and cast(str, n.target) in values:
                env[n] = values[cast(str, n.target)]
                continue
            env[n] = evaluate(n, map_arg(n.args, env.__getitem__), map_arg(n.kwargs, env.__getitem__), self.gm)
        return cast("torch.Tensor", env[node])

    def with_values(self, values: dict[str, torch.Tensor], batch: int) -> Call:
        """A copy of the call whose parameters (and constants made of them) have ``values``, for a
        batch of ``batch`` samples."""
        import copy

        import torch
        from torch.fx.node import map_aggregate

        def put(a: Any) -> Any:
            if isinstance(a, torch.Tensor):
                if id(a) in self.direct:
                    return values[self.direct[id(a)]]
                if id(a) in self.derived:
                    return self.constant(self.derived[id(a)], values, batch)
            return a
        new = copy.copy(self.call)
        new.args, new.kwargs = map_aggregate(self.call.args, put), map_aggregate(self.call.kwargs, put)
        return new

    def _values(self, params: dict[str, np.ndarray], grad: bool) -> dict[str, torch.Tensor]:
        import torch

        return {name: torch.from_numpy(np.array(params[name])).requires_grad_(grad) for name in self.names}

    def gradients(self, delta: np.ndarray, Xs: Sequence[np.ndarray], in_shapes: Sequence[Sequence[int]],
                  out_shape: Sequence[int], params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{parameter name: dL/dparameter}`` for ``dL/dy = delta``, by torch's autograd of the op."""
        import torch

        values = self._values(params, True)
        xs = [torch.from_numpy(np.ascontiguousarray(batch_form(X, shape))) for X, shape in zip(Xs, in_shapes)]
        out = self.with_values(values, delta.shape[1]).apply(*xs)
        grads = torch.autograd.grad(out, list(values.values()),
                                    torch.from_numpy(np.ascontiguousarray(batch_form(delta, out_shape))).to(out.dtype),
                                    allow_unused=True)
        return {name: (np.zeros_like(params[name]) if g is None else g.detach().numpy().reshape(params[name].shape))
                for name, g in zip(values, grads)}

    def rebuild(self, params: dict[str, np.ndarray]) -> Layer:
        """The node built again with the parameters' values in ``params``."""
        import torch

        with torch.no_grad():
            call = self.with_values(self._values(params, False), 2)
            call.value = call.apply(*[torch.zeros((2, *op.shape), dtype=torch.float64).to(_dtype(call))
                                      for op in call.operands])
        return self.build(call)


def reading_parameters(call: Call, build: Builder, layer: Layer, direct: set[str],
                       derived: dict[int, torch.fx.Node], gm: torch.fx.GraphModule,
                       data: dict[torch.fx.Node, tuple[int, torch.Tensor]]) -> Layer:
    """An affine node whose op reads parameters (``x * self.gamma``, ``torch.cat([self.cls.expand(
    ...), x], 1)``): their values are its constants, their gradients torch's (:class:`ParamReads`)."""
    from torch.fx.node import map_aggregate

    if not isinstance(layer, (Fixed, Combine)):
        name = sorted(direct)[0] if direct else next(iter(derived.values())).name
        raise UnsupportedModuleError(
            f"{call.kind} {call.title!r}{call.where} reads {name!r}, computed from the model's parameters, "
            f"outside a layer; compile reads parameters as the weights of the supported layers, or as "
            f"constants of an affine op (x * self.gamma, x + self.pos, torch.cat with a token).")
    ids: dict[int, str] = {}
    map_aggregate((call.args, call.kwargs), lambda a: ids.setdefault(id(a), call.param_ids[id(a)])
                  if call.param_ids.get(id(a)) in direct else None)
    reads = ParamReads(call, build, ids, derived, gm, {n: tuple(v.shape[1:]) for n, (_, v) in data.items()})
    if isinstance(layer, Reshape):  # the identity for these values: a matrix, to be rebuilt with others
        layer = Fixed(layer.name, layer.module, layer.in_shape, layer.out_shape, layer.matrix, None, kind=layer.kind)
    layer.param_reads, layer.param_names = reads, {name: name for name in reads.names}
    return layer


def named_parameters(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """``module.named_parameters()``, but a parametrised tensor (``weight_norm``,
    ``spectral_norm``, ``torch.nn.utils.parametrize``) as its current value under its module's
    name (``'1.weight'``) in place of the parametrisation's own parameters."""
    named: list[tuple[str, torch.Tensor]] = [
        (n, p) for n, p in module.named_parameters() if ".parametrizations." not in f".{n}"]
    return named + [(name, getattr(m, local).detach()) for name, (m, local) in parametrisations(module).items()]


def parameter_values(named: list[tuple[str, torch.Tensor]]) -> tuple[dict[str, np.ndarray], np.dtype]:
    """``({name: numpy copy}, dtype)``: the parameters' values in their common floating dtype,
    refused unless floating and finite (torch spreads a NaN weight through zero padding; a
    matrix stores no padding)."""
    params = {name: as_array(p, name).copy() for name, p in named}
    dtype = np.result_type(*params.values()) if params else np.dtype(np.float64)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"the model's parameters must be floating point; got {dtype}.")
    params = {k: a.astype(dtype, copy=False) for k, a in params.items()}
    for name, a in params.items():
        if not np.isfinite(a).all():
            raise ValueError(f"the model's parameter {name!r} has {int(a.size - np.isfinite(a).sum())} NaN or inf "
                             f"entries; compile needs finite parameters.")
    return params, dtype


def _dtype(call: Call) -> torch.dtype:
    import torch

    return torch.float64 if np.dtype(call.dtype) == np.float64 else torch.float32


def parametrisations(module: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Each parametrised tensor's value name (``'1.weight'``, as :func:`named_parameters`
    gives it) -> (its module, the tensor's local name)."""
    from torch.nn.utils import parametrize

    return {f"{prefix}.{local}" if prefix else local: (m, local) for prefix, m in module.named_modules()
            if parametrize.is_parametrized(m) for local in m.parametrizations}


def original_gradients(found: dict[str, tuple[nn.Module, str]], params: dict[str, np.ndarray],
                       grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The gradients of the parametrisations' own tensors (``weight_norm``'s ``original0``
    and ``original1``, ``spectral_norm``'s ``original``), keyed as the model's
    ``named_parameters()``: torch's autograd of each parametrisation, given the gradient of the
    value it makes. Refused where the network's value is no longer the one the module's
    tensors make (after :meth:`~.Network.update`) or a parametrisation is in training mode
    (``spectral_norm`` would run its power iteration)."""
    import torch

    out: dict[str, np.ndarray] = {}
    for name, (m, local) in found.items():
        plist: Any = getattr(m, "parametrizations")[local]  # a ParametrizationList
        if any(p.training for p in plist.modules()):
            raise ValueError(f"the parametrisation of {name!r} is in training mode; call model.eval() (spectral_norm "
                             f"runs a power-iteration step, changing its buffers, each time it is evaluated).")
        originals = list(plist.named_parameters(recurse=False))
        with torch.enable_grad():
            value = plist()
        if value.shape != params[name].shape or not np.array_equal(value.detach().numpy().astype(params[name].dtype),
                                                                     params[name]):
            raise ValueError(f"the network's {name!r} is no longer the value its parametrisation makes (changed by "
                             f"update()); set the parametrisation's own tensors and compile again.")
        g = torch.autograd.grad(value, [p for _, p in originals], torch.as_tensor(grads[name], dtype=value.dtype),
                                allow_unused=True)
        prefix = name[: -len(local)] + f"parametrizations.{local}."
        for (n, p), gi in zip(originals, g):
            out[prefix + n] = np.zeros(tuple(p.shape)) if gi is None else gi.detach().numpy()
    return out
