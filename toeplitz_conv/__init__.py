"""toeplitz_conv: every convolution layer as its explicit sparse matrix.

geometry -> (row, col, tap) triples -> readings: the convolution matrix ``C``, its transpose
(the transposed convolution and input gradient), the weight gradient and the im2col Jacobian.
The scipy core imports without torch; names that need torch are imported on first use.
"""

import importlib

from .memory import set_memory_limit
from .conv import (
    conv_matrix,
    conv_transpose_matrix,
    conv_transpose_weight_grad,
    conv_weight_grad,
    conv_weight_jacobian,
)
from .geometry import (
    ConvGeometry,
    conv_geometry,
    conv_output_size,
    conv_transpose_geometry,
    conv_transpose_output_size,
)
from .pattern import ConvPattern, conv_pattern

# --- pooling and whole networks (issue 3)
from .network import Network, compile, softmax_cross_entropy
from .pool import adaptive_avg_pool_matrix, avg_pool_matrix, max_pool_matrix
# --- figures (issue 5)
from .plot import (
    field_figure,
    gradient_figure,
    network_figure,
    spy,
    symbolic_conv_matrix,
    symbolic_conv_transpose_matrix,
    symbolic_figure,
    weight_symbols,
)
# --- spectra and operators (issue 6)
from .operator import ConvOperator, conv_operator, dot_test
from .spectral import Spectrum, operator_norm, singular_values

# Names whose modules import torch: loaded on first access (name -> module).
_LAZY = {
    # --- torch.sparse (issue 4)
    "ToeplitzConv1d": "torch_sparse",
    "ToeplitzConv2d": "torch_sparse",
    "ToeplitzConv3d": "torch_sparse",
    "convert": "torch_sparse",
    "to_torch_sparse": "torch_sparse",
    "sparse_conv": "torch_sparse",
}

__version__ = "0.1.0"

__all__ = [
    "ConvGeometry",
    "ConvPattern",
    "conv_geometry",
    "conv_matrix",
    "conv_output_size",
    "conv_pattern",
    "conv_transpose_geometry",
    "conv_transpose_matrix",
    "conv_transpose_output_size",
    "conv_transpose_weight_grad",
    "conv_weight_grad",
    "conv_weight_jacobian",
    "set_memory_limit",
    # --- issue 3
    "Network",
    "adaptive_avg_pool_matrix",
    "avg_pool_matrix",
    "compile",
    "max_pool_matrix",
    "softmax_cross_entropy",
    # --- issue 4
    "ToeplitzConv1d",
    "ToeplitzConv2d",
    "ToeplitzConv3d",
    "convert",
    "to_torch_sparse",
    "sparse_conv",
    # --- issue 5
    "field_figure",
    "gradient_figure",
    "network_figure",
    "spy",
    "symbolic_conv_matrix",
    "symbolic_conv_transpose_matrix",
    "symbolic_figure",
    "weight_symbols",
    # --- issue 6
    "ConvOperator",
    "Spectrum",
    "conv_operator",
    "operator_norm",
    "singular_values",
]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'toeplitz_conv' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
