"""Tracing a model with ``torch.fx``: registered modules stay single calls, user modules are
traced through, and each node keeps the model's own source line that made it (so that an
error can point at it) and whether autograd was on when it was made (``with torch.no_grad():``
inside ``forward`` leaves no node of its own: the flag is how it is seen).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Container
from typing import TYPE_CHECKING, Any, cast

from .call import UntraceableModelError
from .modules import entry_of

if TYPE_CHECKING:
    from types import FrameType

    import torch.fx
    from torch import nn


def _skipped() -> tuple[str, ...]:
    """Folders whose frames are not the user's: torch's and this package's."""
    import torch

    return (os.path.dirname(torch.__file__) + os.sep, os.path.dirname(os.path.dirname(__file__)) + os.sep)


def _user_line(skip: tuple[str, ...], frame: FrameType | None = None) -> tuple[str, int, str] | None:
    """``(file, line, code)`` of the innermost frame of the traced code outside torch and this
    package (None when the call comes from torch's own modules, e.g. ``nn.Sequential``)."""
    import linecache

    frame = frame if frame is not None else sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.endswith("_symbolic_trace.py") and frame.f_code.co_name == "trace":
            return None  # reached the tracer itself: no user frame in between
        if not name.startswith(skip):
            return os.path.basename(name), frame.f_lineno, linecache.getline(name, frame.f_lineno).strip()
        frame = frame.f_back
    return None


_UNKNOWN = object()  # a node whose example value could not be computed


def _tracer(example: torch.Tensor | None) -> torch.fx.Tracer:
    import torch
    import torch.fx
    from torch import nn
    from torch.fx.node import map_aggregate, map_arg

    skip = _skipped()

    class Tracer(torch.fx.Tracer):
        """Registered modules and torch's own are single calls; user modules are traced through.
        Each node keeps the model's source line that made it (for error messages).

        With an example input, a decision Python takes on a traced value (a loop over
        ``x.size()[1:]``, an ``if`` on ``x.dim()`` or ``x.is_cuda``) is taken on the example's
        value, computed then with what it needs; ``specialised`` says one was. A decision on
        tensor values still fails to trace."""

        evaluating = False  # while True, fx's patches of Module.__getattr__ and __call__ step aside
        specialised = False  # a decision was taken on an example value

        def _value(self, node: torch.fx.Node) -> Any:
            """The example value of ``node``, computed with those of its ancestors (once each)."""
            if example is None:
                return _UNKNOWN
            values: dict[torch.fx.Node, Any] = self.__dict__.setdefault("values", {})
            for n in ancestors(node, stop=values):
                if n not in values:
                    values[n] = self._one(n, values)
            return values[node]

        def _one(self, n: torch.fx.Node, values: dict[torch.fx.Node, Any]) -> Any:
            if n.op == "placeholder":
                first = next(m for m in self.graph.nodes if m.op == "placeholder")
                return cast("torch.Tensor", example).clone() if n is first else _UNKNOWN
            args, kwargs = map_arg(n.args, values.__getitem__), map_arg(n.kwargs, values.__getitem__)
            flat: list[Any] = []
            map_aggregate((args, kwargs), flat.append)
            if any(v is _UNKNOWN for v in flat):
                return _UNKNOWN
            self.evaluating = True
            try:
                with torch.no_grad():
                    return evaluate(n, args, kwargs, self.root)
            except Exception:  # a decision on this value fails as fx's does
                return _UNKNOWN
            finally:
                self.evaluating = False

        def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
            return attr_val if self.evaluating else super().getattr(attr, attr_val, parameter_proxy_cache)

        def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
            if self.evaluating:
                return forward(*args, **kwargs)
            return super().call_module(m, forward, args, kwargs)

        def _shape_value(self, obj: torch.fx.Proxy) -> Any:
            """The example value of ``obj`` when it is made of ints and bools (shapes, sizes,
            flags), else ``_UNKNOWN``."""
            v = self._value(obj.node)
            flat: list[Any] = []
            map_aggregate(v, flat.append)
            if v is _UNKNOWN or not all(isinstance(e, (int, bool)) for e in flat):
                return _UNKNOWN
            self.specialised = True
            return v

        def iter(self, obj: torch.fx.Proxy) -> Any:
            v = self._shape_value(obj)
            return iter(v) if v is not _UNKNOWN else super().iter(obj)

        def to_bool(self, obj: torch.fx.Proxy) -> bool:
            v = self._shape_value(obj)
            return bool(v) if v is not _UNKNOWN else super().to_bool(obj)

        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            if entry_of(m) is not None:
                return True
            if isinstance(m, (nn.Sequential, nn.TransformerEncoderLayer)):
                return False  # a container, and a transformer layer made of supported calls
            return type(m).__module__.startswith("torch.nn")

        def create_node(self, *args: Any, **kwargs: Any) -> torch.fx.Node:
            node = super().create_node(*args, **kwargs)
            node.meta["source"] = _user_line(skip)
            node.meta["grad"] = torch.is_grad_enabled()
            return node

    return Tracer()


def trace(model: nn.Module, example: torch.Tensor | None = None) -> torch.fx.GraphModule:
    """The model as a ``torch.fx.GraphModule``; an :class:`UntraceableModelError` if fx fails.
    With ``example`` (a batch of inputs), Python code on shapes is traced with its shapes."""
    import torch
    import torch.fx

    tracer = _tracer(example)
    try:
        with torch.enable_grad():  # so that a node made under no_grad in forward is told apart
            graph = tracer.trace(model, concrete_args=_defaults(model) or None)
        if example is not None:
            write_out_attention(graph, tracer._value)  # type: ignore[attr-defined]
        write_out_multihead(graph, model)
        tracer.__dict__.pop("values", None)  # the example values decisions needed
    except Exception as e:  # fx raises TraceError, TypeError, NotImplementedError, ...
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        where = _raised_at(e)
        raise UntraceableModelError(
            f"compile could not trace the model ({type(model).__name__}) with torch.fx{where}: "
            f"{reason.rstrip('.')}. Python control flow on tensors cannot be traced: an `if` on "
            f"tensor values (write it with torch.where), a loop over a tensor or over x.size() "
            f"(use x.flatten(1), x.size(1), or a fixed number), or an attribute like x.is_cuda; "
            f"or compile the traceable parts separately."
        ) from e
    gm = torch.fx.GraphModule(tracer.root, graph)
    gm.meta["specialised"] = bool(getattr(tracer, "specialised", False))
    return gm


def _defaults(model: nn.Module) -> dict[str, Any]:
    """The model's ``forward`` arguments after the input that have defaults, at their defaults
    (``src_mask=None`` of a transformer layer): traced as constants, not as more inputs."""
    import inspect

    try:
        params = list(inspect.signature(model.forward).parameters.values())[1:]
    except (TypeError, ValueError):  # a builtin forward: nothing to fix
        return {}
    return {p.name: p.default for p in params
            if p.default is not inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD}


class _Writer:
    """Writes nodes before ``node`` in its graph, each with ``node``'s source line (the user's
    call they replace): ``add('call_method', 'transpose', x, 0, 1)``."""

    def __init__(self, graph: torch.fx.Graph, node: torch.fx.Node) -> None:
        self.graph, self.node = graph, node

    def __call__(self, kind: str, target: Any, *args: Any, **kwargs: Any) -> torch.fx.Node:
        with self.graph.inserting_before(self.node):
            new: torch.fx.Node = (self.graph.get_attr(target) if kind == "get_attr"
                                  else getattr(self.graph, kind)(target, args, kwargs or None))
        new.meta.update({key: self.node.meta[key] for key in ("source", "grad") if key in self.node.meta})
        return new

    def replace(self, out: torch.fx.Node) -> None:
        """Read ``out`` wherever ``node`` was read, and drop ``node``."""
        self.node.replace_all_uses_with(out)
        self.graph.erase_node(self.node)


def _softmax_attention(add: _Writer, q: Any, k: Any, v: Any, scale: float,
                       masked: Callable[[torch.fx.Node], torch.fx.Node] = lambda s: s) -> torch.fx.Node:
    """``softmax(masked(q @ k^T * scale), -1) @ v`` as nodes, each of which compiles."""
    import operator

    import torch

    scores = add("call_function", operator.mul, add("call_function", torch.matmul, q,
                                                    add("call_method", "transpose", k, -2, -1)), scale)
    return add("call_function", torch.matmul, add("call_method", "softmax", masked(scores), -1), v)


def write_out_attention(graph: torch.fx.Graph, value: Callable[[torch.fx.Node], Any]) -> None:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask, 0.0, is_causal, scale)`` replaced
    by the nodes it computes, each of which compiles: ``q @ k^T``, ``* scale`` (default
    ``1 / sqrt(E)``, from the example's ``q``), the causal mask and ``attn_mask`` (a constant:
    a boolean one as ``masked_fill(~mask, -inf)``, a float one added), ``.softmax(-1)`` and
    ``@ v``. A call with ``dropout_p > 0`` or ``enable_gqa`` is left as it is (refused)."""
    import math
    import operator

    import torch
    import torch.nn.functional as F

    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not F.scaled_dot_product_attention:
            continue
        given = {**dict(zip(names, node.args)), **node.kwargs}
        q, k, v, mask = given["query"], given["key"], given["value"], given.get("attn_mask")
        causal, scale = given.get("is_causal", False), given.get("scale")
        q_value, k_value = value(q), value(k)
        mask_value = value(mask) if isinstance(mask, torch.fx.Node) else mask
        if (given.get("dropout_p", 0.0) != 0 or given.get("enable_gqa", False) or not isinstance(causal, bool)
                or not isinstance(scale, (int, float, type(None)))
                or any(t is _UNKNOWN for t in (q_value, k_value, mask_value))):
            continue
        add = _Writer(graph, node)

        def masked(s: torch.fx.Node) -> torch.fx.Node:
            if causal:
                above = add("call_method", "triu", add("call_function", torch.ones,
                                                       (q_value.shape[-2], k_value.shape[-2]), dtype=torch.bool), 1)
                s = add("call_method", "masked_fill", s, above, float("-inf"))
            if mask is not None and getattr(mask_value, "dtype", None) == torch.bool:
                s = add("call_method", "masked_fill", s, add("call_function", torch.logical_not, mask), float("-inf"))
            elif mask is not None:
                s = add("call_function", operator.add, s, mask)
            return s

        add.replace(_softmax_attention(add, q, k, v, 1 / math.sqrt(q_value.shape[-1]) if scale is None else scale,
                                       masked))


def write_out_multihead(graph: torch.fx.Graph, root: nn.Module) -> None:
    """``nn.MultiheadAttention`` called as ``attn(q, k, v, need_weights=False)[0]``
    (torchvision's ViT) replaced by what it computes, each node of which compiles: the input
    projection ``F.linear(x, in_proj_weight, in_proj_bias)`` (once per distinct input), each of
    q, k, v narrowed from it and split into heads, ``softmax(q k^T / sqrt(d)) v``, the heads
    joined, and ``out_proj`` (with ``batch_first=False``, the batch axis moved to the front
    first and back after). Left as it is (refused) with masks, ``bias_k``/``add_zero_attn``,
    separate q/k/v projection weights, in training mode with dropout, or when the attention
    weights (``[1]``) are read."""
    import math
    import operator

    import torch.nn.functional as F
    from torch import nn

    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
             "is_causal")
    for node in list(graph.nodes):
        if node.op != "call_module" or not isinstance(m := root.get_submodule(str(node.target)), nn.MultiheadAttention):
            continue
        given = {**dict(zip(names, node.args)), **node.kwargs}
        users = list(node.users)
        if (not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn
                or any(given.get(n) is not None for n in ("key_padding_mask", "attn_mask"))
                or given.get("is_causal", False) or (m.training and m.dropout > 0)
                or not all(u.op == "call_function" and u.target is operator.getitem
                           and (u.args[1] == 0 or not u.users) for u in users)):  # `y, _ = attn(...)`
            continue
        e, h = m.embed_dim, m.num_heads
        add = _Writer(graph, node)
        weight = add("get_attr", f"{node.target}.in_proj_weight")
        bias = add("get_attr", f"{node.target}.in_proj_bias") if m.in_proj_bias is not None else None
        inputs = [given["query"], given["key"], given["value"]]
        if not m.batch_first:  # (L, N, E): the batch axis to the front first, and back after
            firsts = {t: add("call_method", "transpose", t, 0, 1) for t in dict.fromkeys(inputs)}
            inputs = [firsts[t] for t in inputs]
        projected = {t: add("call_function", F.linear, t, weight, bias) for t in dict.fromkeys(inputs)}
        heads = [add("call_method", "transpose", add("call_method", "unflatten", add(
                     "call_method", "narrow", projected[t], -1, i * e, e), -1, (h, e // h)), 1, 2)
                 for i, t in enumerate(inputs)]
        out = _softmax_attention(add, heads[0], heads[1], heads[2], 1 / math.sqrt(e // h))
        out = add("call_method", "flatten", add("call_method", "transpose", out, 1, 2), -2)
        out = add("call_module", f"{node.target}.out_proj", out)
        if not m.batch_first:
            out = add("call_method", "transpose", out, 0, 1)
        for u in users:
            if u.args[1] == 0:
                u.replace_all_uses_with(out)
            graph.erase_node(u)
        graph.erase_node(node)


def ancestors(node: torch.fx.Node, stop: Container[torch.fx.Node] = ()) -> list[torch.fx.Node]:
    """``node`` and every node it is computed from, not past the nodes in ``stop`` (which are
    listed, their own inputs not), in the graph's order."""
    seen: dict[torch.fx.Node, None] = {}
    todo = [node]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen[n] = None
            if n not in stop:
                todo.extend(n.all_input_nodes)
    order = {n: i for i, n in enumerate(node.graph.nodes)}
    return sorted(seen, key=order.__getitem__)


def evaluate(node: torch.fx.Node, args: Any, kwargs: Any, root: nn.Module) -> Any:
    """What the traced call ``node`` computes from ``args`` and ``kwargs`` (values in place of
    its input nodes), with ``root`` the traced module (for attributes and submodules)."""
    if node.op == "get_attr":
        out: Any = root
        for part in cast(str, node.target).split("."):
            out = getattr(out, part)
        return out
    if node.op == "call_function":
        return cast(Any, node.target)(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], cast(str, node.target))(*args[1:], **kwargs)
    return root.get_submodule(cast(str, node.target))(*args, **kwargs)  # call_module


def _raised_at(e: BaseException) -> str:
    """`` at file:line `code` `` of the innermost frame of the model's own code in ``e``'s
    traceback, else ''."""
    tb, last = e.__traceback__, None
    skip = _skipped()
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(skip):
            last = tb
        tb = tb.tb_next
    if last is None:
        return ""
    import linecache

    name = last.tb_frame.f_code.co_filename
    return f" at {os.path.basename(name)}:{last.tb_lineno} `{linecache.getline(name, last.tb_lineno).strip()}`"


def source(node: torch.fx.Node) -> str:
    """`` at file:line `code` `` of the model's own line that made the node, else ''."""
    where = node.meta.get("source")
    return f" at {where[0]}:{where[1]} `{where[2]}`" if where else ""
