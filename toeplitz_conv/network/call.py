"""One traced call, as a builder sees it, and the errors :func:`~.compiler.compile` raises
about a model.

A model is traced into calls (``conv1(x)``, ``F.relu(y)``, ``out + identity``,
``torch.cat([a, b], 1)``). A builder turns one call into a node of the network; it reads the
call's arguments (``arg``), the shapes of its data operands (the tensors that depend on the
network input), and can re-run the op on tensors of its choosing (``apply``): that is how the
matrices of parameter-free linear ops are read off torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch
    from torch import nn


class ModuleError(Exception):
    """Raised about a module or a call itself; its message names it, so :func:`compile` passes
    it on as it is (other errors get the layer's name and input shape prepended)."""


class UnsupportedModuleError(ModuleError, TypeError):
    """A module type, function or method that :func:`compile` has no node for."""


class ModuleStateError(ModuleError, ValueError):
    """A supported module in a state that is not a fixed map (training mode, say)."""


class UntraceableModelError(ModuleError, TypeError):
    """A model that ``torch.fx.symbolic_trace`` cannot trace."""


@dataclass(frozen=True)
class Operand:
    """A data operand of a call: the tensor ``k``-th among the call's data operands, the
    output of network position ``index`` (0: the input), of sample shape ``shape``. (Not a
    tuple, so that fx's argument walkers take it as one leaf.)"""

    k: int
    index: int
    shape: tuple[int, ...]


class Call:
    """A traced call: ``fn(*args, **kwargs)`` with the data tensors as :class:`Operand`.

    Attributes
    ----------
    label : str
        The module's qualified name for a module call (``'layer1.0.conv1'``), else the node's.
    node : str
        The traced node's name (unique in the graph).
    kind : str
        ``'Conv2d'``, ``'F.relu'``, ``'torch.cat'``, ``'+'``, ``'.view'``: for display.
    module : torch.nn.Module or None
    operands : list of Operand
    value : torch.Tensor
        The op's output on the traced example (batch of 2 samples).
    params : dict
        The network's parameters (full name -> ndarray); ``param_name(t)`` finds a tensor's name.
    dtype : numpy dtype of the network.
    where : str
        `` at file:line `code` `` when the tracer recorded the source line, else ''.
    """

    pnames: dict[str, str]  # local parameter name ('weight') -> full name; set by compile

    def __init__(self, *, label: str, node: str, kind: str, module: nn.Module | None,
                 fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 operands: list[Operand], params: dict[str, np.ndarray],
                 param_names: dict[int, str], dtype: npt.DTypeLike, where: str) -> None:
        self.label, self.node, self.kind, self.module = label, node, kind, module
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.operands, self.params, self.dtype, self.where = operands, params, dtype, where
        self.param_ids = param_names  # id(tensor) -> full parameter name
        self.value: Any = None

    @property
    def title(self) -> str:
        """The label, or ``'<model>'`` for a model that is itself one supported module."""
        return self.label or "<model>"

    @property
    def shape(self) -> tuple[int, ...]:
        """Sample shape of the first data operand."""
        return self.operands[0].shape

    def arg(self, i: int | None, name: str, default: Any = None) -> Any:
        """Argument ``i`` (positional) or ``name`` (keyword), else ``default``."""
        if i is not None and len(self.args) > i:
            return self.args[i]
        return self.kwargs.get(name, default)

    def apply(self, *tensors: torch.Tensor, **overrides: Any) -> Any:
        """Run the op with its data operands replaced by ``tensors`` (in operand order)."""
        from torch.fx.node import map_aggregate

        def put(a: Any) -> Any:
            if isinstance(a, Moved):
                return a.call.apply(*[tensors[o.k] for o in a.operands])
            return tensors[a.k] if isinstance(a, Operand) else a

        args = map_aggregate(self.args, put)
        kwargs = {**map_aggregate(self.kwargs, put), **overrides}
        return self.fn(*args, **kwargs)

    def param_name(self, tensor: object) -> str | None:
        """The full parameter name of ``tensor`` (a model parameter read in the traced code),
        or None."""
        return self.param_ids.get(id(tensor))

    def __repr__(self) -> str:
        return f"{self.kind} {self.label!r}"


class Parts(tuple):  # type: ignore[type-arg]
    """The tensors a copying op returns several of (``x.chunk(2, 1)``): each becomes a node
    when it is indexed (``parts[0]``)."""


def part_call(call: Call, index: object, node: str, where: str) -> Call:
    """The call (node ``node``, at ``where``) that computes part ``index`` of ``call``, a call
    returning several tensors."""
    if not isinstance(index, int):
        raise UnsupportedModuleError(f"{call.kind} (node {call.node!r}) returns several tensors, and "
                                     f"{node!r}{where} reads them with [{index!r}]: compile reads "
                                     f"one part at a time, by an int index (a, b = x.chunk(2, 1)).")
    part = Call(label=node, node=node, kind=f"{call.kind}[{index}]", module=None,
                fn=lambda *a, **k: call.fn(*a, **k)[index], args=call.args, kwargs=call.kwargs,
                operands=list(call.operands), params=call.params, param_names=call.param_ids,
                dtype=call.dtype, where=where)
    part.pnames = {}
    return part


class Moved:
    """The result of a copy op that moves the batch axis from the front (timm's
    ``qkv.permute(2, 0, 3, 1, 4)``): not a node of its own. The copy ops that read it and bring
    the batch axis back first (``qkv[0]``, ``qkv.unbind(0)``) run it first, on its operands
    (``operands``: theirs, standing for ``call``'s own)."""

    def __init__(self, call: Call, operands: list[Operand]) -> None:
        self.call, self.operands = call, operands
