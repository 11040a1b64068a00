"""A PyTorch model compiled into sparse matrices: a CNN is an MLP with structured weights.

``compile(module, input_shape)`` reads a model once and returns a :class:`Network`: an
ordered list of layers, each either an affine map ``z = W x + b`` with ``W`` a
``scipy.sparse`` matrix (convolution, transposed convolution, linear, average pooling,
eval-mode batch norm, flatten) or an elementwise function ``a = sigma(z)`` (ReLU, ...).
Max pooling is a selection matrix that depends on the input, rebuilt at every forward.

- :mod:`.layers`: the layers, each backward beside its forward;
- :mod:`.compiler`: the registry of supported modules and :func:`compile`;
- :mod:`.model`: :class:`Network`, forward / backward / update / linear maps / to_mlp;
- :mod:`.loss`: :func:`softmax_cross_entropy`.

Everything is float64 numpy with float64 models (float32 stays float32); torch is needed
only to read the module (and by :meth:`Network.to_mlp`).
"""

from .compiler import ModuleStateError, UnsupportedModuleError, compile, supported_modules
from .loss import softmax_cross_entropy
from .model import Network

__all__ = ["Network", "compile", "softmax_cross_entropy", "supported_modules",
           "ModuleStateError", "UnsupportedModuleError"]
