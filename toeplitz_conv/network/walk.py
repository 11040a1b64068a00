"""The walk from a traced graph to the network's nodes, one call at a time.

:func:`walk` runs the traced graph on the example batch node by node, as torch's own
interpreter would, and hands each call that depends on the input to its builder (the module
registry, :mod:`.modules`, or the function and method registries, :mod:`.ops`). Each node is
checked against torch's value on the example as it is built (:func:`.faithful.check_node`),
then appended; of the example's value it keeps only the shape. Along the way it reads what
plain interpretation would miss: constants computed from parameters, calls that return
several tensors (``chunk``, ``split``), copies that move the batch axis, in-place changes of
a tensor other nodes still read, and ``no_grad`` regions. A call that no registry builds is
refused with the reasons in :mod:`.refusals`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from . import faithful
from .call import Call, ModuleError, Moved, Operand, Parts, UnsupportedModuleError, part_call
from .layers import Layer
from .linear_ops import BATCH, BatchAxisError
from .modules import Entry, entry_of
from .nodes import Combine
from .ops import functions, gather, methods, returns_parts
from .reads import reading_parameters
from .refusals import unsupported
from .trace import source

if TYPE_CHECKING:
    import torch
    import torch.fx
    from torch import nn
    from torch.fx.node import Argument

    from .ops import Builder


def _callee(gm: torch.fx.GraphModule, node: torch.fx.Node
            ) -> tuple[Callable[..., Any], str, str, nn.Module | None, Builder | None]:
    """``(fn, label, kind, module, builder)`` of a call node; builder None if unsupported."""
    build: Builder | None
    if node.op == "call_module":
        qualname = cast(str, node.target)  # a call_module's target is the module's name
        m = gm.get_submodule(qualname)
        entry = entry_of(m)
        return m, qualname, type(m).__name__, m, entry and entry.build
    if node.op == "call_function":
        for name, (target, build) in functions().items():
            if target is node.target:
                return node.target, node.name, name, None, build
        fn = cast("Callable[..., Any]", node.target)  # a call_function's target is the function
        return fn, node.name, _function_name(fn), None, None
    name = f".{node.target}"
    build = methods().get(name, (None, None))[1]

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, cast(str, node.target))(*args, **kwargs)
    return method, node.name, name, None, build


def _function_name(fn: object) -> str:
    module = getattr(fn, "__module__", None) or ""
    short = {"torch.nn.functional": "F", "_operator": "operator", "torch._C._nn": "torch._C._nn"}.get(module, module)
    return f"{short}.{getattr(fn, '__name__', repr(fn))}" if short else getattr(fn, "__name__", repr(fn))


def _params_in(value: Argument, param_names: dict[int, str]) -> list[str]:
    """Full names of the parameters found in a call's arguments."""
    from torch.fx.node import map_aggregate

    found: list[str] = []
    map_aggregate(value, lambda a: found.append(param_names[id(a)]) if id(a) in param_names else None)
    return found


def _build(call: Call, build: Builder) -> Layer:
    """The builder's node, with argument errors prefixed by the node's name and input shape."""
    try:
        return build(call)
    except ModuleError:
        raise
    except (ValueError, TypeError) as e:
        raise type(e)(f"layer {call.title!r} ({call.kind}) with input shape {call.shape}: {e}") from e


def _add(call: Call, build: Builder, examples: Sequence[torch.Tensor], layers: list[Layer],
         dtype: npt.DTypeLike, derived: dict[int, torch.fx.Node] | None = None,
         gm: torch.fx.GraphModule | None = None,
         data: dict[torch.fx.Node, tuple[int, torch.Tensor]] | None = None) -> Any:
    """Build the call's node, check it against torch on the example, append it; its value."""
    import torch

    faithful.check_output_size(call, examples)
    try:
        with torch.no_grad():
            value = call.apply(*[e.clone() for e in examples])
    except Exception as e:  # torch refuses the call: let the builder's own checks say why
        try:
            _build(call, build)
        except (AttributeError, IndexError, KeyError):
            pass
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"layer {call.title!r} ({call.kind}){call.where} with input shape {call.shape}: "
                         f"torch cannot run it: {reason}") from e
    call.value = value
    if not isinstance(value, torch.Tensor):
        if returns_parts(build) and isinstance(value, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in value):
            return Parts(value)  # chunk, split, unbind, max(x, dim): each part is read by indexing
        if _has_tensor(value):
            _build(call, build)  # the builder may say why (return_indices=True, ...)
            raise UnsupportedModuleError(f"{call.kind} (node {call.node!r}{call.where}) returns several "
                                         f"tensors; compile needs each call to return one tensor.")
        return value
    layer = _build(call, build)
    missing = set(_params_in((call.args, call.kwargs), call.param_ids)) - set(layer.param_names.values())
    if missing or derived:
        layer = reading_parameters(call, build, layer, missing, derived or {}, cast("torch.fx.GraphModule", gm),
                                   data or {})
    layer.inputs, layer.node = tuple(op.index for op in call.operands), call.node
    layer.torch_call = call.apply  # the op itself, on tensors (to_mlp re-uses it)
    if isinstance(layer, Combine) and len(set(layer.inputs)) < len(layer.inputs) and not layer.param_names:
        # a sum that reads one tensor several times (x - x): one matrix per distinct input
        read, (merged, kept) = layer.inputs, layer.merged()
        merged.torch_call = lambda *ts: call.apply(*[ts[merged.inputs.index(p)] for p in read])
        layer, examples = merged, [examples[k] for k in kept]
    faithful.check_node(call, layer, examples, value, dtype)
    layers.append(layer)
    # the node keeps its call (torch_call); of the example's value it needs only the shape
    # (a rebuild computes its own): the values of a 512x512 DnCNN's nodes held 0.9 GB
    call.value = torch.empty(value.shape, dtype=value.dtype, device="meta")
    return value


def example_batch(shape: Sequence[int], dtype: npt.DTypeLike) -> torch.Tensor:
    """The example a model is traced and checked on: ``BATCH`` samples of ``shape``, seeded."""
    import torch

    tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    return torch.randn(BATCH, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(tdtype)


def walk(gm: torch.fx.GraphModule | None, model: nn.Module, shape: tuple[int, ...],
          dtype: npt.DTypeLike, params: dict[str, np.ndarray],
          param_names: dict[int, str]) -> tuple[list[Layer], int, Traced | None]:
    """The layers (topological order), the position of the output, and what the traced graph
    computed on the example (None when the model is one module)."""
    import torch
    import torch.fx
    from torch.fx.node import map_arg

    x = example_batch(shape, dtype)
    layers: list[Layer] = []

    def make_call(label: str, node: str, kind: str, module: nn.Module | None,
                  fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                  operands: list[Operand], where: str = "") -> Call:
        call = Call(label=label, node=node, kind=kind, module=module, fn=fn, args=args, kwargs=kwargs,
                    operands=operands, params=params, param_names=param_names, dtype=dtype, where=where)
        call.pnames = {} if module is None else {
            local: param_names[id(p)] for local, p in module.named_parameters(recurse=False)}
        if module is not None:  # a parametrised weight: read as its value, under the module's name
            call.pnames.update({local: f"{label}.{local}" if label else local
                                for local in getattr(module, "parametrizations", {})})
        return call

    if gm is None:  # the model is one registered module: one call
        op = Operand(0, 0, shape)
        call = make_call("", "model", type(model).__name__, model, model, (op,), {}, [op])
        _add(call, cast(Entry, entry_of(model)).build, [x], layers, dtype)  # registered: an entry
        return layers, 1, None
    data: dict[torch.fx.Node, tuple[int, torch.Tensor]]  # node -> (position, example value)
    env: dict[torch.fx.Node, Any]
    derived: set[torch.fx.Node]
    output: Argument
    data, env, derived, output = {}, {}, set(), None  # derived: constants computed from parameters
    memory: dict[torch.fx.Node, int] | None = None  # node -> its storage, once an in-place op needs it
    own: dict[torch.fx.Node, torch.Tensor] = {}  # a node changed in place: its value before the change
    parts: dict[torch.fx.Node, tuple[Call, Builder, list[torch.Tensor]]] = {}  # chunk, split, unbind
    moved: dict[torch.fx.Node, tuple[Call, list[torch.Tensor], str]] = {}  # the batch axis moved: read through
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if not data:
                data[node] = (0, x)
            elif node.args:
                env[node] = node.args[0]
            else:
                raise TypeError(f"compile needs a model whose forward takes one tensor; it also takes "
                                f"{node.target!r} (give it a default, or wrap the model).")
            continue
        if node.op == "get_attr":
            value = gm
            for part in cast(str, node.target).split("."):
                value = getattr(value, part)
            env[node] = value
            if id(value) in param_names:
                derived.add(node)
            continue
        if node.op == "output":
            output = node.args[0]
            continue
        operands: list[Operand]
        examples: list[torch.Tensor]
        operands, examples = [], []

        def lookup(n: torch.fx.Node) -> Any:
            if n in data:
                op = Operand(len(operands), data[n][0], tuple(data[n][1].shape[1:]))
                operands.append(op)
                examples.append(data[n][1])
                return op
            if n in moved:  # read through: its operands become this call's
                inner, inner_examples, _ = moved[n]
                ops = [Operand(len(operands) + k, o.index, o.shape) for k, o in enumerate(inner.operands)]
                operands.extend(ops)
                examples.extend(inner_examples)
                return Moved(inner, ops)
            return env[n]

        source_node = node.args[0] if node.args else None
        if node.target in (operator.getitem, getattr) and isinstance(source_node, torch.fx.Node) and source_node in parts:
            whole, copies, examples = parts[source_node]
            index = node.args[1]
            if isinstance(index, str):  # torch.max(x, 1).values
                index = {"values": 0, "indices": 1}.get(index, index)
            call = part_call(whole, index, node.name, source(node))
            data[node] = (len(layers) + 1, _add(call, copies, examples, layers, dtype))
            continue
        args, kwargs = map_arg(node.args, lookup), map_arg(node.kwargs, lookup)
        fn, label, kind, module, build = _callee(gm, node)
        call = make_call(label, node.name, kind, module, fn, args, kwargs, operands, source(node))
        if not operands:  # a constant: computed from parameters, buffers, literals
            with torch.no_grad():
                env[node] = call.apply()
            if any(n in derived for n in node.all_input_nodes):
                derived.add(node)
            continue
        if node.meta.get("grad") is False:
            raise UnsupportedModuleError(
                f"{kind} {call.title!r}{call.where} runs under torch.no_grad() (or inference mode) "
                f"in forward on a tensor that depends on the input: autograd passes no gradient "
                f"through it, where compile's backward and Jacobian would. Move it out of no_grad, "
                f"or compile the parts separately.")
        stray = {id(env[n]): n for n in node.all_input_nodes if n in derived and n.op != "get_attr"}
        if build is None:
            if node.op == "call_module":
                raise unsupported(call, node)
            try:
                with torch.no_grad():
                    value = call.apply(*[e.clone() for e in examples])
            except Exception as e:  # torch refuses it on the example: it is not supported anyway
                raise unsupported(call, node) from e
            if isinstance(value, torch.Tensor) or _has_tensor(value):
                raise unsupported(call, node)
            env[node] = value  # a size, a shape: the example's, with a batch of 2
            continue
        rebind = None
        if faithful.mutated(node, call):
            if memory is None:  # which nodes share memory: asked once, at the first in-place op
                memory = faithful.storages(gm, x)
            rebind = faithful.in_place_target(node, call, data, memory)
        reads_moved = [n for n in node.all_input_nodes if n in moved]
        if reads_moved and not returns_parts(build):
            raise ValueError(f"{moved[reads_moved[0]][2]} ({kind} {call.title!r}{call.where} reads it; only "
                             f"copies that bring the batch axis back first may, e.g. qkv[0] or qkv.unbind(0))")
        try:
            value = _add(call, build, examples, layers, dtype, stray, gm, data)
        except BatchAxisError as e:
            if build is not gather:
                raise
            moved[node] = (call, list(examples), str(e))  # a copy that moves the batch axis: read through
            continue
        if isinstance(value, Parts):
            parts[node] = (call, build, examples)
        elif isinstance(value, torch.Tensor):
            data[node] = (len(layers), value)
            if rebind is not None:  # later reads of the changed tensor read the change
                data[rebind], own[rebind] = data[node], data[rebind][1]
        else:
            env[node] = value
    if isinstance(output, torch.fx.Node) and output in moved:
        raise ValueError(moved[output][2])
    if not (isinstance(output, torch.fx.Node) and output in data):
        raise TypeError(f"compile needs a model that returns one tensor computed from its input; "
                        f"it returns {_describe(output)}.")
    values = {n: own.get(n, v) for n, (_, v) in data.items()}  # each node's own value, before a change
    return layers, data[output][0], Traced(x, values, data[output][1])


class Traced(NamedTuple):
    """The example batch, every data node's own value on it, and the network's output."""

    x: torch.Tensor
    values: dict[torch.fx.Node, torch.Tensor]
    output: torch.Tensor


def _has_tensor(value: Argument) -> bool:
    import torch
    from torch.fx.node import map_aggregate

    found: list[torch.Tensor] = []
    map_aggregate(value, lambda a: found.append(a) if isinstance(a, torch.Tensor) else None)
    return bool(found)


def _describe(output: object) -> str:
    if isinstance(output, (tuple, list)):
        return f"a {type(output).__name__} of {len(output)}"
    if isinstance(output, dict):
        return f"a dict with keys {list(output)}"
    return "a value that does not depend on the input"
