"""What a model will cost before its matrices are built: each convolution's nonzeros and bytes.

:func:`memory_report` runs the model once on one zero sample with torch's own convolutions
(cheap: no matrix is built) to learn every convolution's input size, then adds up what the
torch.sparse variant would store for each: the values of C and C.T, their index tensors and
the weight gradient's gather table. Past the memory limit it refuses with the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from ..geometry import ConvGeometry, conv_geometry
from ..memory import human_bytes, memory_limit
from ..pattern import estimate_nnz
from .structure import auto_layout

if TYPE_CHECKING:
    from torch.nn.modules.conv import _ConvNd
    from torch.utils.hooks import RemovableHandle

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class LayerCost:
    """One convolution of a model: where, what, and what its matrices will hold."""

    name: str
    layer: str  # the layer as a torch constructor call
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    layout: str  # 'csr' or 'bsr'
    nnz: int  # nonzeros of C (C.T holds as many); an upper bound for padding modes but zeros
    nbytes: int  # C and C.T values, index tensors, the weight-gradient gather


@dataclass(frozen=True)
class MemoryReport:
    """:func:`memory_report`'s answer: ``layers``, ``total_bytes`` and the limit in force;
    ``str()`` is a table."""

    layers: tuple[LayerCost, ...]
    total_bytes: int
    limit: int
    limit_source: str

    def __str__(self) -> str:
        head = f"{'layer':<24}{'conv':<44}{'input -> output':<28}{'layout':<7}{'nonzeros':>14}{'bytes':>12}"
        lines = [head, "-" * len(head)]
        for c in self.layers:
            shapes = f"{'x'.join(map(str, c.in_shape))} -> {'x'.join(map(str, c.out_shape))}"
            lines.append(f"{c.name[:23]:<24}{c.layer[:43]:<44}{shapes:<28}{c.layout:<7}"
                         f"{c.nnz:>14,}{human_bytes(c.nbytes):>12}")
        nnz = sum(c.nnz for c in self.layers)
        lines.append(f"{'total':<103}{nnz:>14,}{human_bytes(self.total_bytes):>12}")
        lines.append(f"memory limit: {human_bytes(self.limit)} ({self.limit_source})")
        return "\n".join(lines)


def layer_bytes(geom: ConvGeometry, layout: str, element_size: int, backward: bool = True) -> tuple[int, int]:
    """``(nnz, bytes)`` of one convolution's torch.sparse matrices: the values of C (and C.T
    when ``backward``), their indices (CSR: int32 column and value source per entry while
    they fit; BSR: per 8x8 tile, small), row pointers, and the weight gradient's gather
    table (int64 per tap and output position and group)."""
    nnz = estimate_nnz(geom)  # exact for zero padding, an upper bound otherwise: no table built
    index = 4 if nnz < 2**31 else 8
    per_entry = element_size + (0 if layout == "bsr" else 2 * index)
    matrices = 2 if backward else 1
    rows = (prod(geom.out_shape) + prod(geom.in_shape) + 2) * 8
    gather = 8 * geom.groups * geom.taps * prod(geom.out_spatial)
    return nnz, matrices * nnz * per_entry + rows + gather


def _geometry(module: _ConvNd, x: torch.Tensor) -> ConvGeometry:
    return conv_geometry(tuple(module.weight.shape), tuple(x.shape[1:]), stride=module.stride,
                         padding=module.padding, dilation=module.dilation, groups=module.groups,
                         padding_mode=module.padding_mode)


def memory_report(model: nn.Module, input_shape: tuple[int, ...] | list[int], *,
                  dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                  backward: bool = True, check: bool = True) -> MemoryReport:
    """Each convolution's nonzeros and bytes in the torch.sparse variant, before any is built.

    Parameters
    ----------
    model : torch.nn.Module
        Converted or not: every ``nn.Conv1d/2d/3d`` (and ``ToeplitzConvNd``) is reported.
    input_shape : tuple of int
        One sample, without the batch axis, e.g. ``(3, 224, 224)``.
    dtype : torch.dtype, optional
        Of the matrices' values; default: each layer's weight dtype.
    device : torch.device or str, optional
        Where the layers would run (picks the storage: BSR only on the CPU); default: each
        layer's weight device.
    backward : bool, default True
        Count C.T too (built on the first backward; inference needs C only).
    check : bool, default True
        Refuse with a ``ValueError`` giving the estimate when the total exceeds the memory
        limit (:func:`toeplitz_conv.set_memory_limit`).

    Returns
    -------
    MemoryReport
        ``layers`` (name, layer, shapes, layout, nonzeros, bytes) and ``total_bytes``;
        printing it gives a table. Activations and the per-call buffers are not counted.

    Examples
    --------
    >>> import torch, toeplitz_conv as tc
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
    ...                           torch.nn.Conv2d(8, 8, 3, stride=2))
    >>> report = tc.memory_report(net, (3, 32, 32))
    >>> [(c.name, c.nnz) for c in report.layers]
    [('0', 212064), ('2', 129600)]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    if (not isinstance(input_shape, (tuple, list)) or not input_shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in input_shape)):
        raise ValueError(
            f"input_shape must be a tuple of positive ints, one sample without the batch axis "
            f"(e.g. (3, 224, 224)); got {input_shape!r}."
        )
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype or None; got {dtype!r}.")
    convs = {id(m): name or "(model)" for name, m in model.named_modules() if isinstance(m, _CONVS)}
    seen: set[int]
    costs: list[LayerCost]
    hooks: list[RemovableHandle]
    seen, costs, hooks = set(), [], []

    def record(module: _ConvNd, args: tuple[Any, ...]) -> None:
        if id(module) in seen:  # a tied conv: one set of matrices per input size
            return
        seen.add(id(module))
        geom = _geometry(module, args[0])
        dev = torch.device(device) if device is not None else module.weight.device
        layout = getattr(module, "sparse_layout", "auto")
        layout = auto_layout(geom, dev) if layout == "auto" else layout
        esize = torch.empty((), dtype=dtype or module.weight.dtype).element_size()
        nnz, nbytes = layer_bytes(geom, layout, esize, backward)
        costs.append(LayerCost(convs[id(module)], geom.describe(), geom.in_shape, geom.out_shape,
                               layout, nnz, nbytes))

    originals: dict[int, nn.Module] = {}
    for m in model.modules():
        if isinstance(m, _CONVS) and id(m) not in originals:
            hooks.append(m.register_forward_pre_hook(record))
            base = next(c for c in type(m).__mro__ if c in _CONVS)
            originals[id(m)] = m
            # torch's own convolution: nothing is built
            m.forward = base.forward.__get__(m)  # type: ignore[method-assign]  # deleted below
    param = next(model.parameters(), None)
    x = torch.zeros((1, *input_shape), dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else "cpu")
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        for m in originals.values():
            del m.forward
    total = sum(c.nbytes for c in costs)
    limit, source = memory_limit()
    report = MemoryReport(tuple(costs), total, limit, source)
    if check and total > limit:
        raise ValueError(
            f"the torch.sparse matrices of this model would need about {human_bytes(total)} "
            f"({sum(c.nnz for c in costs):,} nonzeros over {len(costs)} convolutions), more than "
            f"the limit of {human_bytes(limit)} ({source}). Largest: "
            + ", ".join(f"{c.name} {human_bytes(c.nbytes)}" for c in sorted(costs, key=lambda c: -c.nbytes)[:3])
            + ". Use a smaller input, keep the largest layers as nn.ConvNd, or raise the limit "
            "with toeplitz_conv.set_memory_limit."
        )
    return report
