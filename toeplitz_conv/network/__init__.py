"""A PyTorch model compiled into sparse matrices: a CNN is an MLP with structured weights.

``compile(model, input_shape)`` traces a model once (``torch.fx``) and returns a
:class:`Network`: a graph of nodes in topological order, each an affine map ``z = W x + b``
with ``W`` a ``scipy.sparse`` matrix (convolution, transposed convolution, linear, pooling,
padding, upsampling, reshapes and permutations, eval-mode batch norm), an elementwise
function ``a = sigma(z)`` (ReLU, ...), a softmax, or a combination of several inputs (sum,
concatenation, elementwise product). Max pooling is a selection matrix that depends on the
input, rebuilt at every forward.

- :mod:`.activations`: the elementwise functions, forward and derivative side by side;
- :mod:`.layers`: the one-input layers, each backward beside its forward;
- :mod:`.nodes`: the nodes with several inputs, and softmax;
- :mod:`.linear_ops`: the matrices of parameter-free linear ops, read off torch;
- :mod:`.call`, :mod:`.ops`, :mod:`.functional`, :mod:`.modules`: one traced call, and the
  registries of supported functions, methods and modules that turn calls into nodes;
- :mod:`.trace`, :mod:`.compiler`: :func:`compile` (trace with torch.fx, then build node by node);
- :mod:`.refusals`: what :func:`compile` says about a call it cannot compile, and why;
- :mod:`.model`: :class:`Network`, forward / backward / update / linear maps / Jacobian;
- :mod:`.analysis`: what a compiled network is about, apart from tracing: exact Jacobians (by
  structural colouring or the product chain) and linear maps, node norms and the certified
  Lipschitz bound;
- :mod:`.analyse`: :func:`jacobian` and :func:`jacobian_plan` of a model or a network;
- :mod:`.export`: ``to_mlp``;
- :mod:`.loss`: :func:`softmax_cross_entropy`.

Everything is float64 numpy with float64 models (float32 stays float32); torch is needed
only to read the model (and by :meth:`Network.to_mlp`).
"""

from .analyse import jacobian, jacobian_plan
from .analysis.bounds import LipschitzReport, lipschitz_report
from .analysis.jacobian import JacobianPlan
from .call import ModuleStateError, UnsupportedModuleError, UntraceableModelError
from .compiler import compile, supported_modules, supported_ops
from .loss import softmax_cross_entropy
from .model import Network

__all__ = ["JacobianPlan", "LipschitzReport", "Network", "compile", "lipschitz_report", "jacobian", "jacobian_plan", "softmax_cross_entropy", "supported_modules", "supported_ops",
           "ModuleStateError", "UnsupportedModuleError", "UntraceableModelError"]
