"""Other frameworks' axis orders, converted once at the edge: the matrices inside stay torch's.

- ``layout``, of a callable's input and output batches: channels first (``'NCHW'``; 1D
  ``'NCL'``/``'NCW'``, 3D ``'NCDHW'``: torch's, ONNX's, the default) or channels last
  (``'NHWC'``; ``'NLC'``/``'NWC'``, ``'NDHWC'``: TensorFlow's and JAX's default). A sample shape
  given with a layout is in that layout (``(H, W, C)`` for ``'NHWC'``).
- ``kernel_layout``, of a weight as given: letters ``O`` (output channels), ``I`` (input
  channels per group) and the spatial axes (``W``; ``HW``; ``DHW``) in the weight's axis
  order: ``'OIHW'`` (torch's and ONNX's convolution), ``'HWIO'`` (TensorFlow's, JAX's with
  ``('NHWC', 'HWIO', 'NHWC')``), ``'IOHW'`` (torch's transposed convolution), ``'HWOI'``
  (TensorFlow's ``conv2d_transpose`` filter). ``O`` and ``I`` are always the op's own: for a
  transposed convolution ``I`` is what it reads and ``O`` what it writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

SPATIAL = {1: "W", 2: "HW", 3: "DHW"}
#: Per number of spatial axes: the (channels-first, channels-last) layout names a message gives.
NAMES = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}
_FIRST = {"NCHW", "NCL", "NCW", "NCDHW"}
_LAST = {"NHWC", "NLC", "NWC", "NDHWC"}


def channels_last(layout: object, n: int | None = None) -> bool:
    """Whether ``layout`` puts the channels last; a ValueError names the layouts for ``n`` axes."""
    names = {1: ("NCL", "NLC", "NCW", "NWC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}
    allowed = names.get(n, tuple(sorted(_FIRST | _LAST))) if n is not None else tuple(sorted(_FIRST | _LAST))
    if not isinstance(layout, str) or layout not in allowed:
        raise ValueError(f"layout must be one of {', '.join(repr(a) for a in allowed)}"
                         f"{f' for {n} spatial axes' if n is not None else ''}; got {layout!r}.")
    return layout in _LAST


def sample_shape_first(shape: tuple[int, ...], layout: str | None) -> tuple[int, ...]:
    """A sample shape given in ``layout`` -> channels first (torch's)."""
    if layout is None:
        return shape
    if channels_last(layout, len(shape) - 1):
        return (shape[-1], *shape[:-1])
    return shape


def _move(x: Any, perm: tuple[int, ...]) -> Any:
    return x.permute(*perm) if hasattr(x, "permute") and not isinstance(x, np.ndarray) else np.transpose(x, perm)


def channels_first_fn(fn: Callable[[Any], object], layout: str | None,
                      to_numpy: Callable[[object, str], np.ndarray]) -> Callable[[Any], object]:
    """``fn`` taking and returning channels-last batches -> the same map on channels-first ones."""
    if layout is None or not channels_last(layout):
        return fn

    def wrapped(x: Any) -> np.ndarray:
        d = len(x.shape)
        y = to_numpy(fn(_move(x, (0, *range(2, d), 1))), f"a {layout} input")
        if y.ndim != d:
            raise ValueError(f"fn must return a {layout} batch like its input ({d} axes) for layout={layout!r}; "
                             f"got shape {tuple(y.shape)}.")
        return np.transpose(y, (0, d - 1, *range(1, d - 1)))
    return wrapped


def kernel_to_torch(weight: np.ndarray, kernel_layout: str | None, transposed: bool = False) -> np.ndarray:
    """``weight`` in ``kernel_layout`` -> torch's ``(O, I, *k)`` (``(I, O, *k)`` when
    ``transposed``: ``ConvTransposeNd``'s); unchanged when ``kernel_layout`` is None."""
    if kernel_layout is None:
        return weight
    n = weight.ndim - 2
    spatial = SPATIAL.get(n, "")
    if (not isinstance(kernel_layout, str) or len(kernel_layout) != weight.ndim
            or sorted(kernel_layout) != sorted("OI" + spatial)):
        first, last = ("IO", "OI") if transposed else ("OI", "IO")
        raise ValueError(f"kernel_layout must name the {weight.ndim} axes of weight (shape {weight.shape}) with O, I "
                         f"and {spatial or 'the spatial letters'}, e.g. {first + spatial!r} (torch's) or "
                         f"{spatial + last!r}; got {kernel_layout!r}.")
    target = ("IO" if transposed else "OI") + spatial
    return np.ascontiguousarray(np.transpose(weight, [kernel_layout.index(a) for a in target]))


def kernel_from_torch(weight: np.ndarray, kernel_layout: str | None, transposed: bool = False) -> np.ndarray:
    """torch's ``(O, I, *k)`` weight (``(I, O, *k)`` when ``transposed``) -> ``kernel_layout``:
    the inverse of :func:`kernel_to_torch`, whose checks it applies."""
    if kernel_layout is None:
        return weight
    kernel_to_torch(weight, kernel_layout, transposed)  # the letters
    torch_order = ("IO" if transposed else "OI") + SPATIAL.get(weight.ndim - 2, "")
    return np.ascontiguousarray(np.transpose(weight, [torch_order.index(a) for a in kernel_layout]))


def output_shape_in(shape: Sequence[int], layout: str | None) -> tuple[int, ...]:
    """A channels-first sample shape shown in ``layout``."""
    shape = tuple(shape)
    return (*shape[1:], shape[0]) if layout is not None and channels_last(layout, len(shape) - 1) else shape
