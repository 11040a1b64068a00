"""Tracing a model with ``torch.fx``: registered modules stay single calls, user modules are
traced through, and each node keeps the model's own source line that made it (so that an
error can point at it) and whether autograd was on when it was made (``with torch.no_grad():``
inside ``forward`` leaves no node of its own: the flag is how it is seen).
"""

from __future__ import annotations

import os
import sys
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
    from torch.fx.node import map_aggregate

    skip = _skipped()

    class Tracer(torch.fx.Tracer):
        """Registered modules and torch's own are single calls; user modules are traced through.
        Each node keeps the model's source line that made it (for error messages).

        With an example input, each node's value on it is computed as the node is made, so that
        Python code on shapes traces with the example's: a loop over ``x.size()[1:]``, an ``if``
        on ``x.dim()`` or ``x.is_cuda`` (the values are dropped once traced). Code on tensor
        values still fails to trace."""

        def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, *rest: Any, **kw: Any) -> Any:
            proxy = super().create_proxy(kind, target, args, kwargs, *rest, **kw)
            if example is not None:
                proxy.node.meta["example"] = self._value(kind, target, args, kwargs)
            return proxy

        def _value(self, kind: str, target: Any, args: Any, kwargs: Any) -> Any:
            if kind == "placeholder":
                first = not any(n.op == "placeholder" and n.meta.get("example", _UNKNOWN) is not _UNKNOWN
                                for n in self.graph.nodes)
                return cast("torch.Tensor", example).clone() if first else _UNKNOWN
            unknown: list[bool] = []

            def value(a: Any) -> Any:
                if isinstance(a, torch.fx.Proxy):
                    v = a.node.meta.get("example", _UNKNOWN)
                    unknown.append(v is _UNKNOWN)
                    return v
                return a
            args, kwargs = map_aggregate(args, value), map_aggregate(kwargs, value)
            if any(unknown):
                return _UNKNOWN
            self.evaluating = True  # fx's patches of Module.__getattr__ and __call__ step aside
            try:
                with torch.no_grad():
                    if kind == "get_attr":
                        out: Any = self.root
                        for part in target.split("."):
                            out = getattr(out, part)
                        return out
                    if kind == "call_function":
                        return target(*args, **kwargs)
                    if kind == "call_method":
                        return getattr(args[0], target)(*args[1:], **kwargs)
                    return self.root.get_submodule(target)(*args, **kwargs)  # call_module
            except Exception:  # the trace goes on; a decision on this value fails as fx's does
                return _UNKNOWN
            finally:
                self.evaluating = False

        evaluating = False

        def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
            return attr_val if self.evaluating else super().getattr(attr, attr_val, parameter_proxy_cache)

        def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
            if self.evaluating:
                return forward(*args, **kwargs)
            return super().call_module(m, forward, args, kwargs)

        def _shape_value(self, obj: torch.fx.Proxy) -> Any:
            """The example value of ``obj`` when it is made of ints and bools (shapes, sizes,
            flags), else ``_UNKNOWN``."""
            v = obj.node.meta.get("example", _UNKNOWN)
            flat: list[Any] = []
            map_aggregate(v, flat.append)
            if v is _UNKNOWN or not all(isinstance(e, (int, bool)) for e in flat):
                return _UNKNOWN
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
            if isinstance(m, nn.Sequential):
                return False
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
            graph = tracer.trace(model)
        for node in graph.nodes:
            node.meta.pop("example", None)
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
    return torch.fx.GraphModule(tracer.root, graph)


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
