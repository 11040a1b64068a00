"""toeplitz_conv: every convolution layer as its explicit sparse matrix.

geometry -> (row, col, tap) triples -> readings: the convolution matrix ``C``, its transpose
(the transposed convolution and input gradient), the weight gradient and the im2col Jacobian.
The scipy core imports without torch; names that need torch are imported on first use.

The modules, from the ground up: ``arithmetic`` (output sizes), ``geometry`` (a layer's
validated shapes), ``indexing`` (window tables, the im2col gather), ``pattern`` (the triples), ``conv`` and ``pool`` (their readings as matrices), ``operator``
and ``spectral`` (matrix-free operators and singular values), ``network`` (whole models),
``torch_sparse`` (the same matrices in torch), ``plot`` (figures) and ``cli`` (the command).
"""

import importlib
from typing import TYPE_CHECKING

from .arithmetic import conv_output_size, conv_transpose_output_size
from .conv import (
    conv_matrix,
    conv_transpose_matrix,
    conv_transpose_weight_grad,
    conv_weight_grad,
    conv_weight_jacobian,
)
from .geometry import ConvGeometry, conv_geometry, conv_transpose_geometry
from .memory import set_memory_limit
from .network import (JacobianPlan, LipschitzReport, Network, compile, jacobian, jacobian_plan, lipschitz_report,
                      softmax_cross_entropy)
from .operator import ConvOperator, conv_operator, dot_test
from .pattern import ConvPattern, conv_pattern
from .plot import (
    diff_figure,
    field_figure,
    gradient_figure,
    network_figure,
    spy,
    symbolic_conv_matrix,
    symbolic_conv_transpose_matrix,
    symbolic_figure,
    to_latex,
    explore,
    animate,
    weight_symbols,
)
from .pool import adaptive_avg_pool_matrix, avg_pool_matrix, max_pool_matrix
from .probe import probe_matrix
from . import testing
from .spectral import Spectrum, condition_number, operator_norm, singular_values

if TYPE_CHECKING:  # the lazy names' types (their module imports torch)
    from .torch_sparse import (ToeplitzConv1d, ToeplitzConv2d, ToeplitzConv3d, convert, memory_report,
                               sparse_conv, to_torch_sparse)

# Names whose modules import torch: loaded on first access (name -> module).
_LAZY = {name: "torch_sparse" for name in (
    "ToeplitzConv1d", "ToeplitzConv2d", "ToeplitzConv3d", "convert", "to_torch_sparse", "sparse_conv",
    "memory_report",
)}

def _package_version() -> str:
    """The installed distribution's version (pyproject.toml is its one source)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("toeplitz-conv")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


__version__ = _package_version()

__all__ = [
    # convolution layers as matrices
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
    # pooling and whole networks
    "JacobianPlan",
    "LipschitzReport",
    "lipschitz_report",
    "Network",
    "adaptive_avg_pool_matrix",
    "avg_pool_matrix",
    "compile",
    "jacobian",
    "jacobian_plan",
    "max_pool_matrix",
    "softmax_cross_entropy",
    # torch.sparse
    "ToeplitzConv1d",
    "ToeplitzConv2d",
    "ToeplitzConv3d",
    "convert",
    "memory_report",
    "to_torch_sparse",
    "sparse_conv",
    # figures
    "field_figure",
    "gradient_figure",
    "network_figure",
    "spy",
    "symbolic_conv_matrix",
    "symbolic_conv_transpose_matrix",
    "symbolic_figure",
    "to_latex",
    "explore",
    "animate",
    "weight_symbols",
    # operators and spectra
    "ConvOperator",
    "Spectrum",
    "conv_operator",
    "dot_test",
    "operator_norm",
    "condition_number",
    "singular_values",
    # equivalence testing
    "probe_matrix",
    "testing",
    "diff_figure",
]


if not TYPE_CHECKING:  # a type checker reads the lazy names' imports above, and refuses any other
    def __getattr__(name: str) -> object:
        if name in _LAZY:
            value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
            globals()[name] = value
            return value
        raise AttributeError(f"module 'toeplitz_conv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


del TYPE_CHECKING  # not a name of the package
