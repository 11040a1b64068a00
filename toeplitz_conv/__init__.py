"""toeplitz_conv: every convolution layer as its explicit sparse matrix.

geometry -> (row, col, tap) triples -> readings: the convolution matrix ``C``, its transpose
(the transposed convolution and input gradient), the weight gradient and the im2col Jacobian.
"""

from ._validate import set_memory_limit
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
]
