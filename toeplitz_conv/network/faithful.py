"""Is the traced graph the model? Every node is checked against torch on the example
(:func:`check_node`), and three things ``torch.fx`` cannot see are checked too.

- **Aliasing**: an in-place op on a view (``x[:, :2].mul_(2)``, ``y = x.view(...); y.add_(1)``)
  changes the tensor the view was taken from. :func:`storages` runs the graph once and tells
  which nodes share memory; :func:`in_place_target` refuses an in-place op whose change is
  read afterwards through another tensor that shares its memory (a change of a tensor read
  afterwards under its own name is kept: later reads read the changed value).
- **In-place Python operators**: fx traces ``out += x`` as ``out = out + x``, so a name bound to
  ``out`` before (``identity = out``) keeps the old value in the graph but not in the model.
  :func:`check_output` compares the model's own output with the graph's on the example.
- **The batch size**: a shape or value computed from it (``x.reshape(2, -1)``, ``x.numel()``)
  is read at the traced batch of two. :func:`batch_dependence` runs the graph on the first
  sample alone and names the first node whose value is not that sample's row of the traced
  one; the network then refuses other batch sizes (:attr:`Network.traced_batch_only`).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from ..memory import check_size, memory_limit
from .call import Call, UnsupportedModuleError
from .layers import Affine, Layer
from .linear_ops import BATCH
from .trace import source

if TYPE_CHECKING:
    import torch
    import torch.fx
    from torch import nn


#: A node whose matrix would take more bytes than this (or more than the memory limit) is
#: checked against torch matrix-free; a smaller one through its matrix, released after.
CHECK_MATRIX_BYTES = 32 * 2**20


def run_example(layer: Layer, Xs: list[np.ndarray]) -> np.ndarray:
    """The node on the example, leaving no matrix built that was not built before."""
    if not isinstance(layer, Affine) or layer.built:
        return layer.run(Xs)
    if layer.matrix_size()[1] > min(CHECK_MATRIX_BYTES, memory_limit()[0]):
        return layer.forward_free(Xs[0])
    try:
        return layer.run(Xs)
    finally:
        layer.release()


def check_node(call: Call, layer: Layer, examples: Sequence[torch.Tensor], value: torch.Tensor,
                dtype: npt.DTypeLike) -> None:
    """The node's output on the example equals torch's (a guard on every builder)."""
    import torch

    if tuple(layer.out_shape) != tuple(value.shape[1:]):
        raise RuntimeError(f"compile built node {call.node!r} ({call.kind}) with output shape "
                           f"{layer.out_shape}, but torch gives {tuple(value.shape[1:])}; please report this.")
    Xs = [np.ascontiguousarray(e.detach().numpy().reshape(BATCH, -1).T, dtype=dtype) for e in examples]
    Y = run_example(layer, Xs)
    layer.clear()
    ref = value.detach().to(torch.float64).numpy().reshape(BATCH, -1).T
    if not agree(Y, ref, np.dtype(dtype) == np.float64):
        raise RuntimeError(f"compile built node {call.node!r} ({call.kind}) but it differs from torch on "
                           f"an example input (max difference {np.abs(Y - ref).max():.3g}); please report this.")


_INPLACE = {"iadd", "isub", "imul", "itruediv"}


def mutated(node: torch.fx.Node, call: Call) -> bool:
    """True if the call changes its first data operand in place."""
    if node.op == "call_method":
        return cast(str, node.target).endswith("_")
    if node.op == "call_function" and getattr(node.target, "__name__", "") in _INPLACE:
        return True
    return bool(call.kwargs.get("inplace") or getattr(call.module, "inplace", False))




#: Bytes per output feature a node holds while it is built and checked: the example batch's
#: output and its float64 copy, the numbered probe a copying op is read with, and a matrix
#: entry or two per output (indices and value).
OUTPUT_BYTES = 96


#: Functions whose output is no larger than their input: their size needs no check (and an
#: elementwise op's first call on meta tensors imports torch's reference kernels, seconds).
NOT_GROWING = frozenset(
    [f"F.{n}" for n in ("relu", "relu6", "silu", "mish", "hardswish", "hardsigmoid", "sigmoid", "tanh", "gelu",
                        "elu", "selu", "celu", "softplus", "leaky_relu", "hardtanh", "prelu", "dropout",
                        "batch_norm", "layer_norm", "group_norm", "instance_norm", "softmax", "log_softmax")]
    + [f"torch.{n}" for n in ("relu", "sigmoid", "tanh", "selu")]
    + [f".{n}" for n in ("relu", "relu_", "sigmoid", "tanh", "softmax", "log_softmax")])


#: Elementwise arithmetic: the output's shape is the broadcast of the operands' shapes, read
#: without running it (on meta tensors its first call imports torch's compiler, seconds; so
#: does torch.broadcast_shapes).
ARITHMETIC = frozenset(["+", "-", "*", "/"] + [f"{p}{n}" for p in ("torch.", ".") for n in (
    "add", "sub", "mul", "div", "subtract", "multiply", "true_divide", "maximum", "minimum")])


def _not_growing(call: Call) -> bool:
    """Activations, normalisations and dropout: the output has the input's size (or less);
    and modules with parameters, which the meta check could not run anyway."""
    m = call.module
    if m is None:
        return call.kind in NOT_GROWING
    if any(True for _ in m.parameters(recurse=False)):
        return True  # its CPU parameters cannot run on meta tensors: the run on the example tells
    family = type(m).__module__.rsplit(".", 1)[-1]
    return (family in ("activation", "batchnorm", "normalization", "instancenorm", "dropout")
            and type(m).__name__ != "MultiheadAttention")


def check_output_size(call: Call, examples: Sequence[torch.Tensor]) -> None:
    """Refuse a node whose output is too large, from its shape on meta tensors (nothing is
    allocated): an upsampling to 4096x4096 or an unfold of a large image says so up front.
    Activations, normalisations and dropout are not checked: their output is no larger than
    their input, which was."""
    import torch

    if _not_growing(call):
        return
    shape: Sequence[int] | None = None
    if call.module is None and call.kind in ARITHMETIC:
        operands = [*examples, *(a for a in (*call.args, *call.kwargs.values()) if isinstance(a, torch.Tensor))]
        try:
            shape = np.broadcast_shapes(*(tuple(t.shape) for t in operands))  # torch's imports sympy
        except ValueError:  # shapes that do not broadcast: the run will say so
            return
    else:
        try:
            with torch.no_grad():
                out = call.apply(*[torch.empty(e.shape, dtype=e.dtype, device="meta") for e in examples])
        except Exception:  # an op without a meta kernel, or parameters on the CPU: the run will tell
            return
        shape = out.shape if isinstance(out, torch.Tensor) else None
    if shape is not None:
        n = prod(shape[1:])
        check_size("compile", n * OUTPUT_BYTES,
                   f"node {call.title!r} ({call.kind}){call.where} has {n:,} output features per sample: "
                   f"the example's output and the node's matrix, about {OUTPUT_BYTES} bytes per feature")


def in_place_target(node: torch.fx.Node, call: Call, data: dict[torch.fx.Node, Any],
                    memory: dict[torch.fx.Node, int]) -> torch.fx.Node | None:
    """For an in-place op ``node`` (``data``: the input-dependent nodes so far), the node it
    changes when later code reads that one by its own name (those reads must then read the
    change), None when nothing reads it afterwards; refused when a later read goes through
    another node that shares its memory (a view, the base of a view)."""
    first = next(n for n in node.all_input_nodes if n in data)
    names = [n for n in data if n is first or (
        memory.get(n) is not None and memory.get(n) == memory.get(first) and not _after(n, node))]
    later = [(n, u) for n in names for u in n.users if u is not node and _after(u, node)]
    for alias, user in later:
        if alias is not first:
            raise UnsupportedModuleError(
                f"{call.kind} {call.title!r}{call.where} changes {first.name!r} in place, and "
                f"{user.name!r} reads {alias.name!r}, which shares its memory, afterwards: write it "
                f"out of place (y = x + 1, torch.cat of the parts, inplace=False).")
    return first if later else None


def _after(user: torch.fx.Node, node: torch.fx.Node) -> bool:
    n = node.next
    while n.op != "root":
        if n is user:
            return True
        n = n.next
    return False


def agree(got: np.ndarray, ref: np.ndarray, double: bool, equal_nan: bool = False) -> bool:
    """``got`` equals ``ref`` to the precision of the model's dtype (float64 when ``double``):
    the rule of every check against torch here."""
    tol = 1e-9 if double else 1e-4
    if got.shape == ref.shape and ref.size:  # the common case in two passes: all finite, within atol
        top = float(np.abs(ref).max())
        if np.isfinite(top) and float(np.abs(got - ref).max()) <= tol * max(1.0, top):
            return True
    scale = max(1.0, float(np.abs(ref[np.isfinite(ref)]).max(initial=0.0)))  # -inf of a mask: equal or not
    return bool(np.allclose(got, ref, rtol=tol, atol=tol * scale, equal_nan=equal_nan))


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Two tensors agree (:func:`agree`, NaN equal to NaN); compared in numpy, several times
    faster than torch's on large CPU tensors here."""
    import torch

    if a.shape != b.shape:
        return False
    return agree(a.detach().cpu().numpy(), b.detach().cpu().numpy(), a.dtype == torch.float64, equal_nan=True)


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


def batch_dependence(gm: torch.fx.GraphModule, model: nn.Module, x: torch.Tensor,
                     traced: dict[torch.fx.Node, torch.Tensor]) -> str | None:
    """The first node (with its source line) whose value on ``x[:1]`` is not row 0 of its
    ``traced`` value on the batch ``x``, or whose run fails there; or the output, when the
    model's own on ``x[:1]`` is not the graph's (a branch on the batch size, traced with the
    example's); None if all follow the batch."""
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
                if isinstance(value, torch.Tensor) and value.shape == ref[:1].shape:
                    what = "other values than the first sample's of the traced batch"
                else:
                    shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    what = f"shape {shape}, not the first sample's {(1, *ref.shape[1:])} of the traced batch"
                self.culprit = f"{n.name!r}{source(n)} (on one sample it gives {what})"
                raise _Stop
            return value

    follower = Follower(gm)
    try:
        with torch.no_grad():
            out = follower.run(x[:1].clone())
    except _Stop:
        return follower.culprit
    if not gm.meta.get("specialised"):  # no decision on a traced value: the graph is the code
        return None
    with torch.no_grad():
        own = model(x[:1].clone())
    if isinstance(own, torch.Tensor) and isinstance(out, torch.Tensor) and _close(out, own):
        return None
    return ("the output (on one sample the model's own output is not the traced graph's: Python code "
            "on the batch size, an `if` or a loop, was traced with the example's batch)")


class _Stop(Exception):
    """Stops the interpreter at the first node that does not follow the batch."""


def batch_message(culprit: str, traced: int, given: int) -> str:
    return (f"the model computes a shape or a value from the batch size at node {culprit}: the "
            f"network was traced at a batch of {traced} and is exact only there; got a batch of "
            f"{given}. Write such shapes with x.size(0), x.shape[0] or -1 (e.g. x.reshape(x.size(0), -1), "
            f"x.flatten(1)) and compile again.")

