"""Drop-in convolution modules and the functional form, through the torch.sparse matrices.

``ToeplitzConvNd`` takes the constructor of ``nn.ConvNd`` (it *is* an ``nn.ConvNd`` subclass,
so its parameters, ``state_dict``, ``.to(device)`` and initialisation are torch's own);
:func:`convert` swaps them into a model; :func:`sparse_conv` is the functional form. Every call
is checked here (types, devices, dtypes, channels) before it reaches the structure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, get_args

import torch
import torch.nn as nn

from .._args import check_choice
from ..geometry import PaddingMode, conv_geometry
from .function import ConvFunction, Values
from .structure import Structure, auto_layout, cached_structure
from .tensors import LAYOUT_NOTE

if TYPE_CHECKING:
    from torch.nn.modules.conv import _ConvNd
    from typing_extensions import Self  # typing.Self: Python 3.11+

    _F = TypeVar("_F", bound=Callable[..., Any])
    _ConvBase = _ConvNd  # what the mixin is mixed into
else:
    _ConvBase = object

#: The ``sparse_layout`` argument: the storage of the matrices.
SparseLayout = Literal["auto", "csr", "bsr"]

_MATMUL_DTYPES = (torch.float32, torch.float64)
_DEVICES = ("cpu", "cuda")
LAYOUTS: tuple[str, ...] = get_args(SparseLayout)


def _check_dense(name: str, t: object, what: str) -> None:
    """``t`` is a dense (strided, not nested) torch tensor, or the error naming ``name``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} of {what} must be a torch.Tensor; got {type(t).__name__}.")
    if t.is_nested or t.layout != torch.strided:
        raise TypeError(
            f"{name} of {what} must be a dense (strided) tensor; got a "
            f"{'nested' if t.is_nested else str(t.layout)} tensor. Convert it with .to_dense()."
        )


def _check_call(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, ndim: int,
                in_channels: int, what: str) -> tuple[torch.Tensor, bool]:
    """The checks of one call; returns the input with a batch axis and whether it was added."""
    _check_dense("input", input, what)  # before its shape is read
    spatial = "DHW"[3 - ndim:]
    if input.dim() not in (ndim + 1, ndim + 2):
        raise ValueError(
            f"input of {what} must have shape (N, C_in, {', '.join(spatial)}) or "
            f"(C_in, {', '.join(spatial)}) ({ndim + 2}D or {ndim + 1}D); got input.shape="
            f"{tuple(input.shape)} ({input.dim()}D)."
        )
    unbatched = input.dim() == ndim + 1
    x = input.unsqueeze(0) if unbatched else input
    if x.shape[1] != in_channels:
        raise ValueError(
            f"input of {what} must have {in_channels} channels (in_channels), on axis "
            f"{0 if unbatched else 1}; got input.shape={tuple(input.shape)}."
        )
    _check_tensors(x, weight, bias, what)
    return x, unbatched


def _check_tensors(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   what: str) -> None:
    """Kinds (the input's is checked already), devices, then dtypes: the tensors of one call
    where torch.sparse multiplies."""
    _check_dense("weight", weight, what)
    if bias is not None:
        _check_dense("bias", bias, what)
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(
            f"bias of {what} must have shape ({weight.shape[0]},), one value per output channel; "
            f"got bias.shape={tuple(bias.shape)}."
        )
    with_bias = [("bias", bias)] if bias is not None else []
    elsewhere = [(name, t) for name, t in [("weight", weight), *with_bias] if t.device != x.device]
    if elsewhere:
        name, t = elsewhere[0]
        raise ValueError(
            f"input and {name} of {what} must be on the same device; got input on "
            f"{x.device} and {name} on {t.device}. Move one with .to(device)."
        )
    if x.device.type not in _DEVICES:
        raise ValueError(
            f"{what} runs on 'cpu' or 'cuda' (torch.sparse products); got tensors on {x.device}."
        )
    if weight.dtype not in _MATMUL_DTYPES:
        raise TypeError(
            f"weight of {what} must be float32 or float64, the dtypes torch.sparse can "
            f"multiply on {x.device.type}; got {weight.dtype}. Cast the module with "
            f".float() or .double()."
        )
    cast = [(name, t) for name, t in [("input", x), *with_bias] if t.dtype != weight.dtype]
    if cast:
        name, t = cast[0]
        raise TypeError(f"{name} of {what} must have the weight's dtype {weight.dtype}; got {t.dtype}.")


def sparse_conv(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
                dilation: int | Sequence[int] = 1, groups: int = 1,
                padding_mode: PaddingMode = "zeros", *,
                sparse_layout: SparseLayout = "auto") -> torch.Tensor:
    """Functional convolution through the sparse matrix, like ``F.conv1d/2d/3d``.

    Parameters
    ----------
    input : (N, C_in, *spatial) or (C_in, *spatial) torch.Tensor
    weight : (C_out, C_in/groups, *kernel) torch.Tensor
    bias : (C_out,) torch.Tensor, optional
    stride, padding, dilation, groups
        As in ``torch.nn.functional.conv2d``.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
        As ``nn.Conv2d(padding_mode=...)`` (the functional torch API has zeros only).
    sparse_layout : {'auto', 'csr', 'bsr'}, default 'auto'
        Storage of the matrix: BSR (dense ``C_out/groups x C_in/groups`` blocks, one per tap;
        the CPU default for wide layers) or CSR.

    Returns
    -------
    torch.Tensor
        ``(N, C_out, *out_spatial)``, differentiable in ``input``, ``weight`` and ``bias``.
        The structure is cached per geometry and device; the values are gathered on every
        call (the modules cache them per weight version).

    Examples
    --------
    >>> import torch, torch.nn.functional as F, toeplitz_conv as tc
    >>> x = torch.randn(2, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    >>> w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    >>> y = tc.sparse_conv(x, w, stride=2, padding=1)
    >>> torch.allclose(y, F.conv2d(x, w, stride=2, padding=1))
    True
    >>> x, w = x[:1, :2, :4, :4].detach().requires_grad_(), w[:2, :2].detach().requires_grad_()
    >>> f = lambda x, w: tc.sparse_conv(x, w, padding=1)
    >>> torch.autograd.gradcheck(f, (x, w), fast_mode=True)
    True
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor; got {type(weight).__name__}.")
    n = weight.dim() - 2
    if n not in (1, 2, 3):
        raise ValueError(
            f"weight must have 3, 4 or 5 dimensions, (C_out, C_in/groups, *kernel); got "
            f"weight.shape={tuple(weight.shape)}."
        )
    what = f"sparse_conv ({n}D)"
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise (ValueError if isinstance(groups, int) and not isinstance(groups, bool) else TypeError)(
            f"groups of {what} must be a positive integer; got {groups!r}."
        )
    return _run(input, weight, bias, n, weight.shape[1] * groups, what,
                lambda x, w: Values(_plan(w, x, stride, padding, dilation, groups, padding_mode,
                                          sparse_layout), cache=False))


@cast("Callable[[_F], _F]",
      torch.compiler.disable(recursive=True))  # type: ignore[no-untyped-call]  # untyped in torch
def _run(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, ndim: int,
         in_channels: int, what: str,
         values_for: Callable[[torch.Tensor, torch.Tensor], Values]) -> torch.Tensor:
    """One call of the sparse convolution, from the checks to the output, with torch's
    semantics around the product: autocast (computed in float32, returned in the autocast
    dtype as ``nn.ConvNd`` would), a batch of 0, NaN/inf weights on taps that read zero
    padding. Run eagerly under ``torch.compile`` (a graph break around it)."""
    if torch.jit.is_tracing():  # type: ignore[attr-defined, no-untyped-call]  # untyped, no __all__
        raise TypeError(
            f"{what} cannot be recorded by torch.jit.trace: its sparse structure is built in "
            f"Python for each input size. Use torch.compile (it runs the sparse product "
            f"eagerly, a graph break around it) or call the module directly."
        )
    autocast = None
    device_type = input.device.type if isinstance(input, torch.Tensor) else "cpu"
    if device_type in _DEVICES and torch.is_autocast_enabled(device_type):
        autocast = torch.get_autocast_dtype(device_type)
        input, weight = input.float(), weight.float()
        bias = bias.float() if isinstance(bias, torch.Tensor) else bias  # anything else: refused below
    x, unbatched = _check_call(input, weight, bias, ndim, in_channels, what)
    values = values_for(x, weight)
    with torch.autocast(device_type, enabled=False) if autocast is not None else nullcontext():
        y = ConvFunction.apply(x, weight, bias, values)
    if autocast is not None:
        y = y.to(autocast)
    return y.squeeze(0) if unbatched else y


def _plan(weight: torch.Tensor, x: torch.Tensor, stride: int | Sequence[int],
          padding: int | Sequence[int] | str, dilation: int | Sequence[int], groups: int,
          padding_mode: str, sparse_layout: str) -> Structure:
    """The cached structure of this call's geometry on its device, in its storage layout."""
    geom = conv_geometry(tuple(weight.shape), tuple(x.shape[1:]), stride=stride, padding=padding,
                         dilation=dilation, groups=groups, padding_mode=padding_mode)
    layout = check_choice("sparse_layout", sparse_layout, LAYOUTS, LAYOUT_NOTE)
    if layout == "auto":
        layout = auto_layout(geom, x.device)
    return cached_structure(geom, x.device, layout)


# --------------------------------------------------------------------------- modules


class _ToeplitzConvNd(_ConvBase):
    """Mixin: ``nn.ConvNd`` whose forward is the sparse matrix product."""

    _ndim: int
    _torch_conv: type[_ConvNd]

    def __init__(self, *args: Any, sparse_layout: SparseLayout = "auto", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sparse_layout = check_choice("sparse_layout", sparse_layout, LAYOUTS, LAYOUT_NOTE)
        self._values: dict[tuple[tuple[int, ...], torch.device], Values] = {}

    @classmethod
    def from_conv(cls, conv: nn.Module, *, sparse_layout: SparseLayout = "auto") -> Self:
        """A Toeplitz twin of ``conv`` (an ``nn.ConvNd`` of the same rank): same arguments,
        device and dtype, and the *same* weight and bias parameters (shared, not copied: an
        optimizer built on ``conv`` trains the twin)."""
        if not isinstance(conv, cls._torch_conv):
            raise TypeError(
                f"{cls.__name__}.from_conv needs an nn.{cls._torch_conv.__name__}; got "
                f"{type(conv).__name__}."
            )
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                  bias=conv.bias is not None, padding_mode=conv.padding_mode,
                  device="meta", sparse_layout=sparse_layout)  # no throwaway initialisation
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], *args: Any, **kwargs: Any) -> Self:
        self._values = {}  # new device or dtype: structures and values are rebuilt lazily
        return super()._apply(  # type: ignore[no-any-return, no-untyped-call]  # untyped in torch
            fn, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = (super().__getstate__()  # type: ignore[no-untyped-call]  # untyped in torch
                 if hasattr(super(), "__getstate__") else self.__dict__)
        return {**state, "_values": {}}  # copies and pickles rebuild their matrices lazily

    def refresh(self) -> None:
        """Forget the cached structures and matrix values (they are rebuilt on the next call);
        never needed for correctness, the cache checks the weight on every call."""
        self._values = {}

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        # the weight is read once per call (a parametrization such as spectral_norm computes
        # it on every read)
        weight, bias = self.weight, self.bias
        return _run(input, weight, bias, self._ndim, self.in_channels, type(self).__name__,
                    self._values_for)

    def _values_for(self, x: torch.Tensor, weight: torch.Tensor) -> Values:
        key = (tuple(x.shape[2:]), x.device)
        vals = self._values.get(key)
        if vals is None:
            plan = _plan(weight, x, self.stride, self.padding, self.dilation, self.groups,
                         self.padding_mode, self.sparse_layout)
            vals = self._values[key] = Values(plan, cache=True)
        return vals

    def extra_repr(self) -> str:
        return (super().extra_repr()  # type: ignore[no-any-return, no-untyped-call]  # untyped in torch
                + f", sparse_layout={self.sparse_layout!r}")


_MODULE_DOC = """A drop-in ``nn.Conv{n}d`` whose forward is one torch.sparse matrix product.

    Takes the constructor of ``torch.nn.Conv{n}d`` (``in_channels, out_channels, kernel_size,
    stride, padding, dilation, groups, bias, padding_mode, device, dtype``) plus
    ``sparse_layout`` ({{'auto', 'csr', 'bsr'}}); ``weight`` and ``bias`` are the same
    parameters (it subclasses ``nn.Conv{n}d``), so optimizers, ``state_dict`` and
    ``.to(device)`` work unchanged.

    The sparsity structure is built once per input spatial size and device (C.T on the first
    backward); the matrix values are refreshed by one gather whenever the weight differs from
    the copy they were filled from (any optimizer, fused ones and writes through
    ``weight.data`` included). Backward: ``dx = C.T @ delta`` from a stored transpose, ``dW``
    from a gather of input rows along the pattern and a matmul; each of them differentiable
    again (torch.func, gradients of gradients).

    Examples
    --------
    >>> import torch, toeplitz_conv as tc
    >>> conv = torch.nn.Conv{n}d(3, 4, 3, padding=1, padding_mode="circular").double()
    >>> tconv = tc.ToeplitzConv{n}d.from_conv(conv)
    >>> x = torch.randn({shape}, dtype=torch.float64)
    >>> torch.allclose(tconv(x), conv(x))
    True
    >>> tconv(x).sum().backward(); conv(x).sum().backward()
    >>> torch.allclose(tconv.weight.grad, conv.weight.grad)
    True
    """


def _module(n: int, base: type[_ConvNd]) -> type[_ToeplitzConvNd]:
    shape = ", ".join(["2", "3"] + ["6"] * n)
    cls = type(f"ToeplitzConv{n}d", (_ToeplitzConvNd, base),
               {"_ndim": n, "_torch_conv": base, "__doc__": _MODULE_DOC.format(n=n, shape=shape),
                "__module__": __package__})  # its public home: toeplitz_conv.torch_sparse
    return cls


if TYPE_CHECKING:  # the classes _module makes, spelled out for type checkers
    class ToeplitzConv1d(_ToeplitzConvNd, nn.Conv1d): ...
    class ToeplitzConv2d(_ToeplitzConvNd, nn.Conv2d): ...
    class ToeplitzConv3d(_ToeplitzConvNd, nn.Conv3d): ...
else:
    ToeplitzConv1d = _module(1, nn.Conv1d)
    ToeplitzConv2d = _module(2, nn.Conv2d)
    ToeplitzConv3d = _module(3, nn.Conv3d)

_TWINS: dict[type[nn.Module], type[_ToeplitzConvNd]] = {
    nn.Conv1d: ToeplitzConv1d, nn.Conv2d: ToeplitzConv2d, nn.Conv3d: ToeplitzConv3d}


def convert(model: nn.Module, *, sparse_layout: SparseLayout = "auto",
            input_shape: tuple[int, ...] | list[int] | None = None) -> nn.Module:
    """Swap every ``nn.Conv1d/2d/3d`` of ``model`` for its Toeplitz twin, keeping the weights.

    Parameters
    ----------
    model : torch.nn.Module
        Converted in place (a bare ``nn.ConvNd`` is returned converted). Only modules of the
        exact types ``nn.Conv1d/2d/3d`` are swapped: subclasses may override ``forward``.
    sparse_layout : {'auto', 'csr', 'bsr'}, default 'auto'
    input_shape : tuple of int, optional
        One sample's shape, e.g. ``(3, 224, 224)``: the model's matrices are estimated first
        (:func:`memory_report`) and the conversion refused with the estimate when they would
        exceed the memory limit. The matrices themselves are built on the first call.

    Returns
    -------
    torch.nn.Module
        ``model``. The twins share the original weight and bias parameters (the same
        objects): an optimizer built before the conversion keeps training them. A conv used
        in several places becomes one twin used in the same places (tied weights stay tied).

    Examples
    --------
    >>> import torch, toeplitz_conv as tc
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3))
    >>> x = torch.randn(5, 1, 10, 10)
    >>> ref = net(x)
    >>> net = tc.convert(net)
    >>> type(net[0]).__name__, torch.allclose(net(x), ref, atol=1e-5)
    ('ToeplitzConv2d', True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    check_choice("sparse_layout", sparse_layout, LAYOUTS, LAYOUT_NOTE)
    if input_shape is not None:
        from .report import memory_report

        memory_report(model, input_shape)  # refuses past the memory limit, with the estimate
    if type(model) in _TWINS:
        return _TWINS[type(model)].from_conv(model, sparse_layout=sparse_layout)
    _convert_children(model, sparse_layout, {})
    return model


def _convert_children(model: nn.Module, sparse_layout: SparseLayout,
                      twins: dict[int, nn.Module]) -> None:
    """Swap the children in place; ``twins`` maps each converted module (by id) to its twin,
    so that a module used in several places (tied weights) stays one module."""
    for name, child in list(model._modules.items()):  # named_children() skips repeats
        if child is None:
            continue
        if id(child) in twins:
            setattr(model, name, twins[id(child)])
        elif type(child) in _TWINS:
            twins[id(child)] = _TWINS[type(child)].from_conv(child, sparse_layout=sparse_layout)
            setattr(model, name, twins[id(child)])
        else:
            twins[id(child)] = child
            _convert_children(child, sparse_layout, twins)
