"""Tracing a model with ``torch.fx``: registered modules stay single calls, user modules are
traced through, and each node keeps the model's own source line that made it (so that an
error can point at it).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from .call import UntraceableModelError
from .modules import entry_of

if TYPE_CHECKING:
    from types import FrameType

    import torch.fx
    from torch import nn


def _user_line(skip: tuple[str, ...]) -> tuple[str, int, str] | None:
    """``(file, line, code)`` of the innermost frame of the traced code outside torch and this
    package (None when the call comes from torch's own modules, e.g. ``nn.Sequential``)."""
    import linecache

    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.endswith("_symbolic_trace.py") and frame.f_code.co_name == "trace":
            return None  # reached the tracer itself: no user frame in between
        if not name.startswith(skip):
            return os.path.basename(name), frame.f_lineno, linecache.getline(name, frame.f_lineno).strip()
        frame = frame.f_back
    return None


def _tracer() -> torch.fx.Tracer:
    import torch
    import torch.fx
    from torch import nn

    skip = (os.path.dirname(torch.__file__) + os.sep, os.path.dirname(os.path.dirname(__file__)) + os.sep)

    class Tracer(torch.fx.Tracer):
        """Registered modules and torch's own are single calls; user modules are traced through.
        Each node keeps the model's source line that made it (for error messages)."""

        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            if entry_of(m) is not None:
                return True
            if isinstance(m, nn.Sequential):
                return False
            return type(m).__module__.startswith("torch.nn")

        def create_node(self, *args: Any, **kwargs: Any) -> torch.fx.Node:
            node = super().create_node(*args, **kwargs)
            node.meta["source"] = _user_line(skip)
            return node

    return Tracer()


def trace(model: nn.Module) -> torch.fx.GraphModule:
    """The model as a ``torch.fx.GraphModule``; an :class:`UntraceableModelError` if fx fails."""
    import torch.fx

    tracer = _tracer()
    try:
        graph = tracer.trace(model)
    except Exception as e:  # fx raises TraceError, TypeError, NotImplementedError, ...
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UntraceableModelError(
            f"compile could not trace the model ({type(model).__name__}) with torch.fx: {reason.rstrip('.')}. "
            f"Data-dependent Python control flow (an `if` or loop on tensor values) cannot be traced: "
            f"write it with tensor ops (torch.where), or compile the traceable parts separately."
        ) from e
    return torch.fx.GraphModule(tracer.root, graph)


def source(node: torch.fx.Node) -> str:
    """`` at file:line `code` `` of the model's own line that made the node, else ''."""
    where = node.meta.get("source")
    return f" at {where[0]}:{where[1]} `{where[2]}`" if where else ""
