"""What a compiled network's matrices take, known before any of them is built.

A node's matrix is made when it is first needed (:class:`~.affine.Affine`), so the bytes of
each can be told from the geometry alone: a convolution's nonzeros by
:func:`toeplitz_conv.pattern.estimate_nnz` (exact for zero padding, an upper bound for the
other modes), a linear layer's ``rows x weight.size``, a batch norm's diagonal. The report
says which are built now and what building the others would add.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..memory import human_bytes
from .affine import Affine, csr_bytes
from .nodes import Combine

if TYPE_CHECKING:
    from .base import Layer
    from .model import Network


class MatrixSize(NamedTuple):
    """One node's matrix: shape, stored entries, CSR bytes, whether ``nnz`` is exact (else an
    upper bound) and whether it is built now."""

    shape: tuple[int, int]
    nnz: int
    nbytes: int
    exact: bool
    built: bool


def matrix_size(layer: Layer) -> MatrixSize | None:
    """The size of a linear node's matrix without building it; None for a node with none (an
    activation, a softmax, a product; max pooling's selection depends on the input)."""
    if isinstance(layer, Affine):
        return MatrixSize(layer.shape, *layer.matrix_size(), layer.built)
    if isinstance(layer, Combine):  # its blocks are given, small, and always held
        nbytes = sum(csr_bytes(W.nnz, W.shape[0], W.shape[1], W.dtype.itemsize) for W in layer.matrices)
        shape = (layer.matrices[0].shape[0], sum(W.shape[1] for W in layer.matrices))
        return MatrixSize(shape, sum(W.nnz for W in layer.matrices), nbytes, True, True)
    return None


def matrix_note(layer: Layer) -> str:
    """``'  matrix 18 x 25, nnz 162'`` for :meth:`Network.__repr__`, with ``(not built)`` for a
    matrix not built yet (its size from the geometry: ``nnz <= n`` when that is a bound)."""
    size = matrix_size(layer)
    if size is None:
        return ""
    nnz = f"nnz {size.nnz}" if size.exact else f"nnz <= {size.nnz}"
    return f"  matrix {size.shape[0]} x {size.shape[1]}, {nnz}" + ("" if size.built else " (not built)")


class MemoryRow(NamedTuple):
    """One node of :meth:`Network.memory_report`: its position (0: the input, so node ``[i]`` of
    ``print(net)`` is at ``i + 1``), traced node name, kind, matrix size, and the name
    ``print(net)`` shows (the module's)."""

    position: int
    node: str
    kind: str
    size: MatrixSize
    label: str = ""


class MemoryReport(list[MemoryRow]):
    """Rows of :class:`MemoryRow`, one per node with a matrix; prints as a table."""

    @property
    def total(self) -> int:
        """Bytes of every matrix, built or not: what building them all would hold."""
        return sum(r.size.nbytes for r in self)

    @property
    def built(self) -> int:
        """Bytes of the matrices built now."""
        return sum(r.size.nbytes for r in self if r.size.built)

    def __str__(self) -> str:
        lines = [f"{'[i]':>5}  {'node':<28} {'kind':<14} {'shape':>21} {'nnz':>15} {'CSR':>10}  built"]
        for r in self:
            s = r.size
            shape = f"{s.shape[0]} x {s.shape[1]}"
            nnz = f"{'' if s.exact else '<= '}{s.nnz:,}"
            lines.append(f"{f'[{r.position - 1}]':>5}  {r.label or r.node:<28} {r.kind:<14} {shape:>21} {nnz:>15} "
                         f"{human_bytes(s.nbytes):>10}  {'yes' if s.built else 'no'}")
        lines.append(f"total {human_bytes(self.total)} if all built; built now {human_bytes(self.built)}")
        return "\n".join(lines)

    __repr__ = __str__


def memory_report(net: Network) -> MemoryReport:
    """:meth:`Network.memory_report`."""
    rows = MemoryReport()
    for i, layer in enumerate(net.layers):
        size = matrix_size(layer)
        if size is not None:
            rows.append(MemoryRow(i + 1, layer.node, layer.kind, size, layer.name or layer.node))
    return rows
