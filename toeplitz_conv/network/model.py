"""A compiled model: a graph of sparse matrices, run as a multilayer perceptron.

:class:`Network` is the object a user holds: its nodes, their shapes and names, the run
(forward and backward: the equations of an MLP along the graph, :mod:`.mlp`), the
parameters (:mod:`.params`), the matrices held (:mod:`.footprint`) and the analyses
(:mod:`.analysis`: linear maps, the exact Jacobian, norms and Lipschitz bounds). Each method
says what it computes and hands the work to the module that owns it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import prod
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .._args import is_int
from . import export, faithful, footprint, mlp, reads
from . import params as setting
from .analysis import bounds, chain, lipschitz
from .analysis import jacobian as analysis_jacobian
from .linear_ops import BATCH

if TYPE_CHECKING:
    import scipy.sparse as sp
    import torch.fx
    from torch import nn

    from .layers import Layer


class Network:
    """A compiled model: a graph of sparse matrices and elementwise functions.

    Attributes
    ----------
    layers : list of Layer
        The nodes in topological order. ``layer.matrix`` (scipy.sparse, built on first read and
        kept until :meth:`release`) and ``layer.bias`` for affine nodes; for max pooling,
        ``matrix`` is the tuple of per-sample selection matrices of the last forward. ``layer.inputs`` lists the positions a node reads:
        position 0 is the network input, position ``i + 1`` the output of ``layers[i]``.
    output : int
        The position of the network's output (``len(layers)`` for a chain).
    params : dict of str -> ndarray
        The parameters, keyed as ``module.named_parameters()``; change them with
        :meth:`update` or :meth:`sgd_step` (the matrices are rebuilt).
    input_shape, output_shape : tuple of int
        Shape of one sample.
    graph : torch.fx.GraphModule or None
        The traced model (None when the model is one module).
    """

    def __init__(self, layers: list[Layer], params: dict[str, np.ndarray],
                 input_shape: Sequence[int], dtype: npt.DTypeLike, output: int | None = None,
                 graph: torch.fx.GraphModule | None = None) -> None:
        self.layers, self.params = layers, params
        self.input_shape = tuple(input_shape)
        self.output = len(layers) if output is None else output
        self.output_shape = self.shape_at(self.output)
        self.dtype, self.graph = dtype, graph
        self._acts: list[np.ndarray] | None = None
        #: The node (and source line) where the traced code computes a shape or value from the
        #: batch size; the network is then exact only at the traced batch and refuses others.
        self.traced_batch_only: str | None = None
        #: Parametrised weights (value name -> module, local name): see :meth:`original_gradients`.
        self.parametrisations: dict[str, tuple[torch.nn.Module, str]] = {}

    def check_batch(self, n: int) -> None:
        """Refuse a batch of ``n`` samples the network cannot compute: none, or another size
        than the traced one when the model's code reads the batch size.

        Parameters
        ----------
        n : int
            The number of samples.
        """
        if n == 0:
            raise ValueError(f"x must hold at least one sample: a batch of shape "
                             f"(N, {', '.join(map(str, self.input_shape))}) with N >= 1; got an empty batch.")
        if self.traced_batch_only is not None and n != BATCH:
            raise ValueError(faithful.batch_message(self.traced_batch_only, BATCH, n))

    def shape_at(self, position: int) -> tuple[int, ...]:
        """Sample shape at a position.

        Parameters
        ----------
        position : int
            0: the input; ``i + 1``: ``layers[i]``'s output.
        """
        return self.input_shape if position == 0 else self.layers[position - 1].out_shape

    @property
    def is_chain(self) -> bool:
        """True when every node reads the one before it and the last is the output."""
        return self.output == len(self.layers) and all(
            layer.inputs == (i,) for i, layer in enumerate(self.layers))

    def __repr__(self) -> str:
        rows = [f"Network(input_shape={self.input_shape}, output_shape={self.output_shape}, dtype={np.dtype(self.dtype).name})"]
        chain = self.is_chain
        for i, layer in enumerate(self.layers):
            extra = footprint.matrix_note(layer)  # from the geometry: builds nothing
            reads = "" if chain else f" <- {', '.join(self._name_at(p) for p in layer.inputs)}"
            label = layer.name or "<model>"
            if not chain and layer.node != layer.name:  # a graph names its nodes; a module's name too
                label = f"{layer.node} ({label})" if layer.module is not None else layer.node
            rows.append(f"  [{i}] {label}: {layer.kind} {layer.in_shape} -> {layer.out_shape}{reads}{extra}")
        if not chain:
            rows.append(f"  output: {self._name_at(self.output)}")
        return "\n".join(rows)

    def _name_at(self, position: int) -> str:
        return "input" if position == 0 else self.layers[position - 1].node

    def position(self, where: int | str, what: str = "position") -> int:
        """The position of a node: ``i`` is the input of ``layers[i]`` (0 the network's input).

        Parameters
        ----------
        where : int or str
            A name (a traced node's name, or its module's name; ``'input'`` for the input) or
            a position (negative ints count from the end, as slices do).
        what : str, default 'position'
            How an error message names ``where``.

        Returns
        -------
        int
        """
        n = len(self.layers)
        if isinstance(where, str):
            if where == "input":
                return 0
            for i, layer in enumerate(self.layers):
                if where in (layer.node, layer.name):
                    return i + 1
            names = ", ".join(["input"] + [layer.node for layer in self.layers])
            raise ValueError(f"{what} must name a node of the network ({names}); got {where!r}.")
        if not is_int(where):
            raise TypeError(f"{what} must be an int or a node name; got {type(where).__name__}.")
        p = int(where) + (n if where < 0 else 0)
        if not 0 <= p <= n:
            raise ValueError(f"{what} must be a position in [-{n}, {n}] (the network has {n} layers); got {where}.")
        return p

    # ------------------------------------------------------------------ forward / backward
    def forward(self, x: npt.ArrayLike) -> np.ndarray:
        """The output for a batch ``x`` of shape ``(N, *input_shape)``; keeps the activations.

        Each affine node is ``Z = W @ A + b`` on ``A`` of shape ``(features, N)``, each
        activation ``sigma(Z)``; nodes run in topological order.

        Parameters
        ----------
        x : (N, *input_shape) array_like

        Returns
        -------
        (N, *output_shape) ndarray
        """
        self._acts = acts = mlp.forward(self, x)
        return acts[self.output].T.reshape(acts[0].shape[1], *self.output_shape)

    __call__ = forward

    @property
    def activations(self) -> list[np.ndarray] | None:
        """The input and every node's output of the last forward, each ``(N, *shape)``."""
        if self._acts is None:
            return None
        return [A.T.reshape(A.shape[1], *self.shape_at(p)) for p, A in enumerate(self._acts)]

    def backward(self, grad_output: npt.ArrayLike) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Gradients of every parameter and of the input, for ``dL/dy = grad_output``.

        The backpropagation equations in matrix form, node by node from the output:
        ``delta = W.T @ delta`` through an affine node, ``delta = delta * sigma'(z)`` through
        an activation; a node read by several nodes sums their deltas; each parameter's
        gradient is read from ``delta`` and the node's input.

        Parameters
        ----------
        grad_output : (N, *output_shape) array_like or torch.Tensor

        Returns
        -------
        grads : dict of str -> ndarray
            Keyed as ``module.named_parameters()``, each the parameter's shape, summed over
            the batch (as autograd's ``.grad``).
        grad_input : (N, *input_shape) ndarray
        """
        if self._acts is None:
            raise ValueError("backward needs the activations of a forward pass; call forward(x) first.")
        return mlp.backward(self, self._acts, grad_output)

    # ------------------------------------------------------------------ parameters
    def update(self, new_params: Mapping[str, npt.ArrayLike]) -> None:
        """Replace parameters; the matrices they change are dropped, made anew on next use.

        Buffers are read again from the model's modules whatever is passed (a batch norm's
        running statistics after training), so that after ``model.eval()`` and
        ``net.update(...)`` the network computes what the model does.

        Parameters
        ----------
        new_params : dict of str to array_like
            Keyed as the model's ``named_parameters``; each of its parameter's shape.
        """
        setting.update(self, new_params)

    # ------------------------------------------------------------------ matrices held
    def release(self) -> None:
        """Drop every node's built matrix (each is built again when next needed)."""
        for layer in self.layers:
            layer.release()

    def memory_report(self) -> footprint.MemoryReport:
        """Each linear node's matrix: shape, nonzeros and CSR bytes from the geometry alone
        (nothing is built), and whether it is built now; ``.total`` is what building them all
        would hold, ``.built`` what is held now. Prints as a table."""
        return footprint.memory_report(self)

    def sgd_step(self, grads: Mapping[str, npt.ArrayLike], lr: float) -> None:
        """One plain SGD step ``p <- p - lr * grad`` for every parameter in ``grads``.

        Parameters
        ----------
        grads : dict of str to array_like
            Parameter name -> gradient of that parameter's exact shape, as :meth:`backward`
            returns them; parameters not named are left as they are.
        lr : float
            The learning rate (finite).
        """
        setting.sgd_step(self, grads, lr)

    def original_gradients(self, grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The gradients of parametrised weights' own tensors (``weight_norm``'s
        ``'conv.parametrizations.weight.original0'``/``original1``, ``spectral_norm``'s
        ``original``), keyed as the model's ``named_parameters()``, from :meth:`backward`'s
        ``grads`` (whose ``'conv.weight'`` is the gradient of the value): torch's autograd of
        each parametrisation. Empty for a model without parametrisations.

        Parameters
        ----------
        grads : dict of str to ndarray
            :meth:`backward`'s gradients (at least those of the parametrised values).

        Returns
        -------
        dict of str to ndarray
            One entry per tensor of each parametrisation, its shape.

        Examples
        --------
        >>> import numpy as np, torch, toeplitz_conv as tc
        >>> from torch import nn
        >>> from torch.nn.utils.parametrizations import weight_norm
        >>> model = nn.Sequential(weight_norm(nn.Conv2d(1, 2, 3)), nn.ReLU()).double().eval()
        >>> net = tc.compile(model, (1, 6, 6))
        >>> x = torch.rand(3, 1, 6, 6, dtype=torch.float64)
        >>> grads, _ = net.backward(np.ones_like(net.forward(x)))  # grads["0.weight"]: the value's
        >>> orig = net.original_gradients(grads)
        >>> sorted(orig)
        ['0.parametrizations.weight.original0', '0.parametrizations.weight.original1']
        >>> model(x).sum().backward()
        >>> all(np.allclose(orig[k], p.grad.numpy()) for k, p in model.named_parameters() if k in orig)
        True
        """
        return reads.original_gradients(self.parametrisations, self.params, dict(grads))

    # ------------------------------------------------------------------ linear maps
    def linear_map(self, start: int | str = 0,
                   stop: int | str | None = None) -> tuple[sp.csr_array, np.ndarray]:
        """``(M, b)`` with ``y_stop = M @ y_start + b``, when every node between is linear.

        Consecutive convolutions, average poolings, reshapes, linear layers, eval batch norms,
        sums and concatenations compose into one sparse matrix: e.g. a convolution followed by
        2x2 average pooling is one convolution with stride 2, and a residual block without
        activation is ``I + C_2 C_1``.

        Parameters
        ----------
        start : int or str, default 0
            A position (``i`` is the input of ``layers[i]``, so ``linear_map(i, j)`` composes
            ``layers[i:j]`` of a chain) or a node name (the map starts at its output), as
            :meth:`position` reads it.
        stop : int, str or None, default None
            Likewise; None is the network's output.

        Returns
        -------
        M : (features at stop, features at start) scipy.sparse.csr_array
        b : (features at stop,) ndarray
            What the biases between add.

        Examples
        --------
        >>> import numpy as np, toeplitz_conv as tc
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AvgPool2d(2)).double()
        >>> net = tc.compile(model, (1, 10, 10))
        >>> M, b = net.linear_map()  # conv 3x3 then 2x2 average: one 4x4 stride-2 map
        >>> M.shape, M.nnz // M.shape[0]
        ((32, 100), 16)
        >>> x = np.random.rand(1, 1, 10, 10)
        >>> np.allclose(M @ x.ravel() + b, net.forward(x).ravel())
        True
        """
        s = self.position(start, "start")
        e = self.output if stop is None else self.position(stop, "stop")
        return chain.linear_map(self.layers, s, e, prod(self.shape_at(s)), self.dtype)

    def jacobian(self, x: npt.ArrayLike, method: str = "auto") -> sp.csr_array:
        """The exact Jacobian ``dy/dx`` at one sample ``x``, as CSR ``(out_features, in_features)``.

        :func:`toeplitz_conv.jacobian` of this network: by structural colouring (a batch of
        Jacobian-vector products per block of colours, ``'forward'`` / ``'packed'``, or of
        vector-Jacobian products, ``'reverse'``, or both meeting at a middle position,
        ``'middle'``) or by the product of the nodes' matrices
        (``'chain'``), whichever is estimated fastest (:func:`toeplitz_conv.jacobian_plan`
        says which and why). Only the true nonzeros are stored (the receptive fields). For a
        piecewise-linear network without biases ``J(x) @ x == f(x)``. Refused up front when
        the chosen method's estimate exceeds the memory limit
        (:func:`toeplitz_conv.set_memory_limit`).

        Parameters
        ----------
        x : (*input_shape) or (1, *input_shape) array_like
        method : {'auto', 'forward', 'packed', 'middle', 'reverse', 'chain'}, default 'auto'
        """
        return analysis_jacobian.network_jacobian(self, x, method)[0]

    def to_mlp(self) -> nn.Sequential | torch.fx.GraphModule:
        """The same function as a plain MLP: every linear node an ``nn.Linear`` (a dense copy of
        its matrix). A chain gives an ``nn.Sequential``; a graph a ``torch.fx.GraphModule``
        with its skip connections kept. Both take ``(N, *input_shape)`` (they start with a
        flatten) and return ``(N, *output_shape)``. Max pooling is refused.
        """
        return export.to_mlp(self)

    # ------------------------------------------------------------------ norms and Lipschitz
    def layer_norms(self) -> lipschitz.NormTable:
        """Each node's constant, as a table you can print: the exact operator norm
        ``||W||_2`` of every linear node (matrix-free: no matrix is built), the Lipschitz constant of every
        activation (``sup |sigma'|``), max pooling (``sqrt`` of the most windows an input
        entry lies in), softmax (1) and log-softmax (``1 + sqrt(K)``); None for a product
        of two inputs. Rows: ``(position, node, kind, constant, what)``."""
        return lipschitz.layer_norms(self)

    def lipschitz_bound(self, method: str = "auto", window: int | None = None) -> bounds.Bound:
        """A certified upper bound of the network's Lipschitz constant in the 2-norm; never below
        :meth:`local_lipschitz`, exact for linear networks. The inequalities are proved in
        :mod:`toeplitz_conv.network.analysis.bounds` and the modules it names. Computed in
        float64: a float32 network's bound is that of the map its parameters define (batch
        norm's scale and average pooling's weights from their formulas, not rounded), and its
        :meth:`local_lipschitz` is the float32 Jacobian's norm, within float32 rounding of it.

        Parameters
        ----------
        method : {'auto', 'product', 'windowed', 'lipsdp', 'lipsdp-layer'}
            ``'product'``: norms composed along the graph (``x + F(x)``: ``1 + L_F``);
            ``'windowed'``: activations averaged about the middle of their slopes over windows
            of the graph, the best partition (never above ``'product'``); ``'lipsdp'`` /
            ``'lipsdp-layer'``: the semidefinite programme on the sparse matrices, verified in
            float64 (small chains; the ``bounds`` extra); ``'auto'``: windowed, and LipSDP where
            cheap, the smaller. A product of two input-dependent tensors is refused.
        window : int, optional
            Activations expanded per segment (``'windowed'``: 2; ``'auto'``: 3 where its cost
            model says it fits a minute, else 2).

        Returns
        -------
        Bound
            A float with ``.method`` (which ran), ``.seconds`` and ``.why``.
        """
        return bounds.lipschitz_bound(self, method, window)

    def local_lipschitz(self, x: npt.ArrayLike) -> float:
        """``||J(x)||_2``, the exact norm of the Jacobian at one sample: a lower bound of the
        network's Lipschitz constant (the largest over many ``x`` is the empirical one).

        Parameters
        ----------
        x : (*input_shape) or (1, *input_shape) array_like
            The sample."""
        return lipschitz.local_lipschitz(self, x)

