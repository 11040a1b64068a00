"""Tracing a model with ``torch.fx``: registered modules stay single calls, user modules are
traced through, and each node keeps the model's own source line that made it (so that an
error can point at it) and whether autograd was on when it was made (``with torch.no_grad():``
inside ``forward`` leaves no node of its own: the flag is how it is seen).
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


def _tracer() -> torch.fx.Tracer:
    import torch
    import torch.fx
    from torch import nn

    skip = _skipped()

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
            node.meta["grad"] = torch.is_grad_enabled()
            return node

    return Tracer()


def trace(model: nn.Module) -> torch.fx.GraphModule:
    """The model as a ``torch.fx.GraphModule``; an :class:`UntraceableModelError` if fx fails."""
    import torch.fx

    import torch

    tracer = _tracer()
    try:
        with torch.enable_grad():  # so that a node made under no_grad in forward is told apart
            graph = tracer.trace(model)
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
