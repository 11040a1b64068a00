"""Is the traced graph the model? Three things ``torch.fx`` cannot see, checked on the example.

- **Aliasing**: an in-place op on a view (``x[:, :2].mul_(2)``, ``y = x.view(...); y.add_(1)``)
  changes the tensor the view was taken from. :func:`storages` runs the graph once and tells
  which nodes share memory, so that the compiler refuses an in-place op whose change another
  name reads afterwards.
- **In-place Python operators**: fx traces ``out += x`` as ``out = out + x``, so a name bound to
  ``out`` before (``identity = out``) keeps the old value in the graph but not in the model.
  :func:`check_output` compares the model's own output with the graph's on the example.
- **The batch size**: a shape or value computed from it (``x.reshape(2, -1)``, ``x.numel()``)
  is read at the traced batch of two. :func:`batch_dependence` runs the graph on the first
  sample alone and names the first node whose value is not that sample's row of the traced
  one; the network then refuses other batch sizes (:attr:`Network.traced_batch_only`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .call import UnsupportedModuleError
from .trace import source

if TYPE_CHECKING:
    import torch
    import torch.fx
    from torch import nn


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal to the precision of the model's dtype (what the node checks accept)."""
    import torch

    if a.shape != b.shape:
        return False
    tol = 1e-9 if a.dtype == torch.float64 else 1e-4
    scale = max(1.0, float(b.detach().abs().max())) if b.numel() else 1.0
    return bool(torch.allclose(a.detach().to(b.dtype), b.detach(), rtol=tol, atol=tol * scale, equal_nan=True))


def storages(gm: torch.fx.GraphModule, x: torch.Tensor) -> dict[torch.fx.Node, int]:
    """``{node: address of its tensor's storage}`` for every node whose value is a tensor, from
    one run of the graph on ``x`` (values kept alive, so that no address is reused)."""
    import torch
    import torch.fx

    found: dict[torch.fx.Node, int] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            value = super().run_node(n)
            if isinstance(value, torch.Tensor):
                found[n] = value.untyped_storage().data_ptr()
            return value

    with torch.no_grad():
        Recorder(gm, garbage_collect_values=False).run(x.clone())
    return found


def check_output(model: nn.Module, x: torch.Tensor, traced: torch.Tensor) -> None:
    """Refuse a model whose own output on ``x`` is not the traced graph's."""
    import torch

    with torch.no_grad():
        own = model(x.clone())
    if isinstance(own, torch.Tensor) and _close(traced, own):
        return
    diff = (f"max difference {float((own - traced).abs().max()):.3g}"
            if isinstance(own, torch.Tensor) and own.shape == traced.shape else "another shape")
    raise UnsupportedModuleError(
        f"compile traced the model ({type(model).__name__}), but the traced graph's output differs "
        f"from the model's own on an example input ({diff}): torch.fx records `a += b` on a tensor "
        f"as `a = a + b`, so a change made in place and read through another name (identity = out; "
        f"out += x) is not in the graph; random or stateful code in forward is not either. Write "
        f"such updates out of place (out = out + x).")


def batch_dependence(gm: torch.fx.GraphModule, x: torch.Tensor,
                     traced: dict[torch.fx.Node, torch.Tensor]) -> str | None:
    """The first node (with its source line) whose value on ``x[:1]`` is not row 0 of its
    ``traced`` value on the batch ``x``, or whose run fails there; None if every node follows
    the batch."""
    import torch
    import torch.fx

    class Follower(torch.fx.Interpreter):
        culprit: str | None = None

        def run_node(self, n: torch.fx.Node) -> Any:
            try:
                value = super().run_node(n)
            except Exception as e:  # the traced batch size is written into this call
                self.culprit = f"{n.name!r}{source(n)} (on one sample, torch raised: {str(e).splitlines()[0]})"
                raise _Stop from None
            ref = traced.get(n)
            if ref is not None and not (isinstance(value, torch.Tensor) and _close(value, ref[:1])):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                self.culprit = (f"{n.name!r}{source(n)} (on one sample it gives {shape}, not the "
                                f"first sample's {(1, *ref.shape[1:])} of the traced batch)")
                raise _Stop
            return value

    follower = Follower(gm)
    try:
        with torch.no_grad():
            follower.run(x[:1].clone())
    except _Stop:
        pass
    return follower.culprit


class _Stop(Exception):
    """Stops the interpreter at the first node that does not follow the batch."""


def batch_message(culprit: str, traced: int, given: int) -> str:
    return (f"the model computes a shape or a value from the batch size at node {culprit}: the "
            f"network was traced at a batch of {traced} and is exact only there; got a batch of "
            f"{given}. Write such shapes with x.size(0), x.shape[0] or -1 (e.g. x.reshape(x.size(0), -1), "
            f"x.flatten(1)) and compile again.")

