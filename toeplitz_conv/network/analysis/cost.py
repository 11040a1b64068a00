"""The Jacobian methods' cost model: what a node costs on one sample, the rates those costs run
at, and what a block of seeds holds over its size estimate. :mod:`.jacobian` reads it to
estimate each method's time and memory before anything runs (and refuses past the memory
limit); ``bench_jacobian.py --calibrate`` sets every estimate against the clock and the peak
(benchmarks/RESULTS.md).
"""

from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..layers import Conv, ConvTranspose, Layer, Linear
from ..nodes import Grouped

if TYPE_CHECKING:
    from ..model import Network

#: Multiply-adds a second of torch's float64 convolutions under ``vmap(jvp)`` (2 cores), of its
#: float32 ones (about four times as many: oneDNN's kernels), and of scipy's sparse products in
#: the chain (the same in both): the cost model's rates (measured, benchmarks/RESULTS.md).
TORCH_MACS_PER_S = 5e9
TORCH_FLOAT32_MACS_PER_S = 2e10
CHAIN_MACS_PER_S = 1.4e9

#: What a block of vector-Jacobian products holds, over its size estimate ``block * per_seed``:
#: the vmapped backward keeps more than four activations per seed alive (a residual sum's
#: pending gradient, batch norm's), and each block's values, targets and masks are copied
#: (measured on ResNet-18 and ResNet-50 variants, benchmarks/RESULTS.md: up to 3.2x).
VJP_BLOCK_FACTOR = 4

#: The same for a block of Jacobian-vector products (``'forward'``, ``'packed'``), over ``block *
#: (per_seed + the float64 convolution's unfolded input)``: a DnCNN-8's at 128x128 held 209-450
#: MiB above the compiled network, run to run, for an estimate of 313 MiB without it; packed, 100-182
#: MiB for 185 (benchmarks/RESULTS.md).
JVP_BLOCK_FACTOR = 2


def macs(layer: Layer) -> float:
    """Multiply-adds of one node on one sample, from its geometry."""
    out = float(prod(layer.out_shape))
    if isinstance(layer, ConvTranspose):
        w = cast(np.ndarray, layer.p("weight"))
        return float(w.size) * prod(layer.in_shape[1:])
    if isinstance(layer, Conv):
        w = cast(np.ndarray, layer.p("weight"))
        return float(w.size) * prod(layer.out_shape[1:])
    if isinstance(layer, Linear):
        w = cast(np.ndarray, layer.p("weight"))
        return float(w.size) * prod(layer.in_shape[:-1])
    return out * max(1, len(layer.inputs))


def unfold_bytes(net: Network) -> int:
    """What torch's float64 convolution holds per sample beyond its output: it unfolds its input
    (im2col: channels x taps values at every output position; a transposed one, the same at
    every input position). Its float32 convolutions (oneDNN) do not."""
    if np.dtype(net.dtype) != np.float64:
        return 0
    sizes = [max(layer.in_shape[0], layer.out_shape[0]) * prod(cast(np.ndarray, layer.p("weight")).shape[2:])
             * max(prod(layer.in_shape[1:]), prod(layer.out_shape[1:]))
             for layer in net.layers if isinstance(layer, Conv)]
    return np.dtype(np.float64).itemsize * max(sizes, default=0)


def torch_rate(dtype: Any) -> float:
    """The cost model's rate of torch's convolutions for a network of ``dtype``."""
    return TORCH_FLOAT32_MACS_PER_S if np.dtype(dtype) == np.float32 else TORCH_MACS_PER_S


def row_nnz(layer: Layer) -> float:
    """Mean stored entries per row of the node's matrices (what one row of the chain costs)."""
    if isinstance(layer, (Conv, Linear)):
        return macs(layer) / prod(layer.out_shape)
    if isinstance(layer, Grouped):  # a dense block per group
        return float(layer.groups().shape[1])
    return float(max(1, len(layer.inputs)))
