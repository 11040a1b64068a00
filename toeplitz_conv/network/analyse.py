"""The analyses' public entry points: a torch model or a compiled network, one sample.

:func:`jacobian` and :func:`jacobian_plan` take either; a model is compiled for the sample's
shape (:func:`~toeplitz_conv.compile`), then :mod:`.analysis.jacobian` does the work — except
a model in eval mode with few outputs (a classifier), whose Jacobian is a handful of
vector-Jacobian products through the model itself: compiling it and finding its structure
would cost more than they could save.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .._args import as_array
from ..memory import check_size
from .analysis.compressed import vjp_puller
from .analysis.jacobian import (JacobianPlan, Method, check_finite_derivatives, check_finite_sample, network_jacobian,
                                plan, sample)
from .compiler import compile
from .model import Network

#: ``'auto'`` on a model (not a compiled network) in eval mode with at most this many outputs
#: takes reverse mode straight through the model: one vector-Jacobian product per output, in
#: one batch, at most this many. A colouring could save a few of them at best, and the compile
#: and the structure cost more (a CIFAR ResNet-18's 10 x 3072 Jacobian: 1.7 s of compile and
#: 0.3 s of structure for 1.8 s of products, benchmarks/RESULTS.md).
DIRECT_MAX_OUTPUTS = 32


class _Direct:
    """A model's reverse pass at one sample, run once: its output and the pull-back."""

    def __init__(self, model: Any, xa: np.ndarray) -> None:
        import torch

        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        xt = torch.as_tensor(np.ascontiguousarray(xa))
        self.x = xt.to(dtype) if dtype is not None else xt
        self.out, self.rows = vjp_puller(model, self.x)
        if not isinstance(self.out, torch.Tensor):
            raise TypeError(f"the model returns a {type(self.out).__name__}")
        m, n = self.shape = (int(self.out.numel()), int(self.x.numel()))
        self.nbytes = 2 * m * n * self.x.element_size()  # the dense rows and their CSR

    def plan(self) -> JacobianPlan:
        m, n = self.shape
        return JacobianPlan("reverse", self.shape, {"reverse": m}, m * n, {}, {"reverse": self.nbytes}, m,
                            f"a model with {m} outputs: one vector-Jacobian product per output "
                            f"through the model itself, nothing compiled or coloured")

    def matrix(self) -> sp.csr_array:
        import torch

        m, n = self.shape
        check_size("the network's Jacobian", self.nbytes, f"{m:,} x {n:,}, dense (every output's row), "
                                                          f"with its CSR copy")
        seeds = torch.eye(m, dtype=self.out.dtype).reshape(m, *self.out.shape[1:])
        rows = self.rows(seeds).detach().numpy().reshape(m, n)
        check_finite_derivatives(rows)
        return sp.csr_array(rows)


#: Methods that cut a tensor from autograd: through them the model's own products would not
#: differentiate what it computes.
_DETACHING = {"detach", "detach_", "requires_grad_", "numpy", "tolist", "item", "register_hook"}


def _autograd_is_faithful(model: Any, example: Any) -> bool:
    """Whether autograd differentiates everything the model computes from its input: traced
    (torch.fx, a tenth of a second for a ResNet-18), no node on the input's path is made under
    ``no_grad``, detached, read through ``.data`` or by a custom ``autograd.Function``. A model
    that fails this (or fx) is compiled instead, which refuses it with the reason."""
    import torch

    from .trace import trace

    try:
        gm = trace(model, example)
    except Exception:  # untraceable: compile says why
        return False
    derived: set[Any] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder" and not derived:
            derived.add(node)
        elif any(n in derived for n in node.all_input_nodes):
            derived.add(node)
            bound = getattr(node.target, "__self__", None)
            if (node.meta.get("grad") is False
                    or (node.op == "call_method" and node.target in _DETACHING)
                    or (node.target is getattr and "data" in node.args[1:])
                    or (isinstance(bound, type) and issubclass(bound, torch.autograd.Function))):
                return False
    return True


def _direct(model: object, x: object, method: object) -> _Direct | None:
    """The model's reverse pass when ``'auto'`` takes it (a model in eval mode with at most
    :data:`DIRECT_MAX_OUTPUTS` outputs, differentiated faithfully by autograd), else None."""
    if method != "auto" or isinstance(model, Network):
        return None
    from torch import nn

    if not isinstance(model, nn.Module) or any(m.training for m in model.modules()):
        return None
    xa = _one_sample(x)
    check_finite_sample(xa)
    try:
        d = _Direct(model, xa)
    except Exception:  # what autograd cannot run or a tuple output: compile says why
        return None
    return d if d.shape[0] <= DIRECT_MAX_OUTPUTS and _autograd_is_faithful(model, d.x) else None


def _one_sample(x: object) -> np.ndarray:
    """``x`` as an array, refused unless it is one sample with its batch axis."""
    xa = as_array(x, "x")
    if xa.ndim < 2 or xa.shape[0] != 1:
        raise ValueError(f"x must be one sample with its batch axis, (1, *input_shape), for a model; "
                         f"got x.shape={tuple(xa.shape)}.")
    return xa


def as_network(model: object, x: object) -> Network:
    """A :class:`Network` as it is, or a torch model compiled for the sample ``x``
    ``(1, *input_shape)``."""
    if isinstance(model, Network):
        return model
    try:
        from torch import nn
    except ImportError as e:  # pragma: no cover - a model needs torch
        raise TypeError(f"model must be a Network or a torch.nn.Module; got {type(model).__name__}.") from e
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a Network (toeplitz_conv.compile) or a torch.nn.Module; "
                        f"got {type(model).__name__}.")
    return compile(model, tuple(_one_sample(x).shape[1:]))


def jacobian_plan(model: object, x: object, *, method: Method = "auto") -> JacobianPlan:
    """What :func:`jacobian` will do at ``x``: each method's colours and estimated time, the
    result's size, and the method chosen — estimated from the geometry, before any product.

    Parameters
    ----------
    model : Network or torch.nn.Module
        A compiled network, or a model (compiled for ``x``'s shape).
    x : (1, *input_shape) array_like or torch.Tensor
        The sample (for a Network also ``(*input_shape)``).
    method : {'auto', 'forward', 'packed', 'middle', 'reverse', 'chain'}, default 'auto'

    Returns
    -------
    JacobianPlan
        Prints as a table.
    """
    d = _direct(model, x, method)
    if d is not None:
        return d.plan()
    net = as_network(model, x)
    return plan(net, sample(net, x), method)


def jacobian(model: object, x: object, *, method: Method = "auto") -> sp.csr_array:
    """The exact Jacobian ``dy/dx`` of a network at one sample, as CSR ``(out_features, in_features)``.

    Only the true nonzeros are stored (the receptive fields, less the entries that a ReLU or a
    max pooling switches off at ``x``). The methods give the same matrix:

    - ``'forward'``: colour the Jacobian's columns so that no two of one colour share a row
      (a lattice over the input's coordinates whose period is the widest receptive field,
      found by propagating boxes of coordinates through the nodes' index structure, without
      values), evaluate ``J S`` as one batch of Jacobian-vector products per block of colours
      through the model's own torch operations (``torch.func.jvp`` and ``vmap``), and
      scatter it into CSR. A stack of eight 3x3 convolutions on a one-channel image needs
      17 x 17 = 289 colours at any image size;
    - ``'packed'``: ``'forward'`` with each colour's tangents packed into the squares around
      its seeds, for networks of stride-1 ``'same'`` zero-padded convolutions and elementwise
      nodes (denoisers): a colour then costs its seeds' cones, not the whole image;
    - ``'middle'``: for the same networks, the packed forward colouring of the nodes up to a
      middle position and a packed reverse colouring (convolutions by their transposes) of
      the nodes after it, multiplied position by position where they meet: each side's cones
      reach half as far (a DnCNN: about half the multiply-adds of ``'packed'``). The position
      must be one that every later node reaches only through it or the input;
    - ``'reverse'``: the same with the rows and vector-Jacobian products (a classifier: one
      colour per output);
    - ``'chain'``: the product of the nodes' sparse matrices along the graph
      (:meth:`Network.jacobian` before colouring existed), which needs every node's matrix.

    ``'auto'`` takes the least estimated time (:func:`jacobian_plan` prints the estimates and
    the choice). The result's size is estimated from the boxes before anything runs, and
    refused past the memory limit (:func:`toeplitz_conv.set_memory_limit`). A model (not a
    compiled network) in eval mode with at most 32 outputs, a classifier, is not compiled:
    ``'auto'`` takes one vector-Jacobian product per output through the model itself
    (``'reverse'`` with every row its own colour; the plan says so), once its traced graph
    shows that autograd sees all of it (nothing on the input's path under ``no_grad``,
    detached, read through ``.data`` or by a custom ``autograd.Function``; else it is
    compiled, which refuses those with the reason).

    Parameters
    ----------
    model : Network or torch.nn.Module
        A compiled network (:func:`toeplitz_conv.compile`), or a model, compiled for ``x``.
    x : (1, *input_shape) array_like or torch.Tensor
        The sample (for a Network also ``(*input_shape)``).
    method : {'auto', 'forward', 'packed', 'middle', 'reverse', 'chain'}, default 'auto'

    Returns
    -------
    scipy.sparse.csr_array
        Sorted indices, int32 where they fit; no stored zeros.

    Examples
    --------
    >>> import torch, toeplitz_conv as tc
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
    ...                       nn.Conv2d(4, 1, 3, padding=1)).double()
    >>> x = torch.randn(1, 1, 32, 32, dtype=torch.float64)
    >>> J = tc.jacobian(model, x)
    >>> print(tc.jacobian_plan(model, x).colours["forward"])  # a 5 x 5 lattice of the input
    25
    >>> jac = torch.autograd.functional.jacobian(model, x).reshape(1024, 1024)
    >>> bool(abs(J.toarray() - jac.numpy()).max() < 1e-12)
    True
    """
    d = _direct(model, x, method)
    if d is not None:
        return d.matrix()
    net = as_network(model, x)
    return network_jacobian(net, x, method)[0]
