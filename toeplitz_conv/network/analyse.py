"""The analyses' public entry points: a torch model or a compiled network, one sample.

:func:`jacobian` and :func:`jacobian_plan` take either; a model is compiled for the sample's
shape (:func:`~toeplitz_conv.compile`), then :mod:`.analysis.jacobian` does the work.
"""

from __future__ import annotations

import scipy.sparse as sp

from .._args import as_array
from .analysis.jacobian import JacobianPlan, Method, network_jacobian, plan, sample
from .compiler import compile
from .model import Network


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
    shape = tuple(as_array(x, "x").shape)
    if len(shape) < 2 or shape[0] != 1:
        raise ValueError(f"x must be one sample with its batch axis, (1, *input_shape), to compile a "
                         f"model for it; got x.shape={shape}.")
    return compile(model, shape[1:])


def jacobian_plan(model: object, x: object, *, method: Method = "auto") -> JacobianPlan:
    """What :func:`jacobian` will do at ``x``: each method's colours and estimated time, the
    result's size, and the method chosen — estimated from the geometry, before any product.

    Parameters
    ----------
    model : Network or torch.nn.Module
        A compiled network, or a model (compiled for ``x``'s shape).
    x : (1, *input_shape) array_like or torch.Tensor
        The sample (for a Network also ``(*input_shape)``).
    method : {'auto', 'forward', 'packed', 'reverse', 'chain'}, default 'auto'

    Returns
    -------
    JacobianPlan
        Prints as a table.
    """
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
    - ``'reverse'``: the same with the rows and vector-Jacobian products (a classifier: one
      colour per output);
    - ``'chain'``: the product of the nodes' sparse matrices along the graph
      (:meth:`Network.jacobian` before colouring existed), which needs every node's matrix.

    ``'auto'`` takes the least estimated time (:func:`jacobian_plan` prints the estimates and
    the choice). The result's size is estimated from the boxes before anything runs, and
    refused past the memory limit (:func:`toeplitz_conv.set_memory_limit`).

    Parameters
    ----------
    model : Network or torch.nn.Module
        A compiled network (:func:`toeplitz_conv.compile`), or a model, compiled for ``x``.
    x : (1, *input_shape) array_like or torch.Tensor
        The sample (for a Network also ``(*input_shape)``).
    method : {'auto', 'forward', 'packed', 'reverse', 'chain'}, default 'auto'

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
    net = as_network(model, x)
    return network_jacobian(net, x, method)[0]
