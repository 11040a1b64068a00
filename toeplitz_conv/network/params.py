"""Setting a compiled network's parameters: :meth:`Network.update` (replace them, rebuild what
they change) and :meth:`Network.sgd_step`, with the one check both apply to what they are given."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt

from .._args import as_array, real_number

if TYPE_CHECKING:
    from .layers import Affine
    from .model import Network


def real(arr: np.ndarray, name: str, dtype: npt.DTypeLike) -> np.ndarray:
    """Refuse a complex array for a real network (the imaginary part would be dropped)."""
    if np.iscomplexobj(arr) and not np.issubdtype(dtype, np.complexfloating):
        raise TypeError(
            f"{name} must be real: the network computes in {np.dtype(dtype)} and would drop the "
            f"imaginary part; got dtype {arr.dtype}. Pass the real and imaginary parts separately "
            f"(every layer but the activations is linear)."
        )
    return arr


def checked(net: Network, values: Mapping[str, npt.ArrayLike], what: str, shape_rule: str) -> dict[str, np.ndarray]:
    """``values`` keyed by parameter names of ``net``, each real and of its parameter's shape."""
    out = {}
    for name, value in values.items():
        if name not in net.params:
            raise ValueError(f"{what} keys must be parameter names of the model ({', '.join(net.params)}); "
                             f"got {name!r}.")
        arr = real(as_array(value, f"{what}[{name!r}]"), f"{what}[{name!r}]", net.dtype)
        if arr.shape != net.params[name].shape:
            raise ValueError(f"{what}[{name!r}] must have {shape_rule.format(net.params[name].shape)}; "
                             f"got {arr.shape}.")
        out[name] = arr
    return out


def update(net: Network, new_params: Mapping[str, npt.ArrayLike]) -> None:
    """:meth:`Network.update`."""
    if not isinstance(new_params, Mapping):
        raise TypeError(f"new_params must be a dict of parameter name -> array (keys as "
                        f"named_parameters()); got {type(new_params).__name__}.")
    for name, arr in checked(net, new_params, "new_params", "shape {}").items():
        net.params[name] = arr.astype(net.dtype, copy=True)
    for layer in net.layers:  # the changed parameters, and every buffer (running statistics)
        changed = layer.param_names and any(full in new_params for full in layer.param_names.values())
        if layer.param_reads is not None:
            if changed:
                layer.rebuilt_from(layer.param_reads.rebuild(net.params))
        elif getattr(layer, "reads_buffers", False) or changed:
            cast("Affine", layer).build()  # only affine layers have parameters or buffers


def sgd_step(net: Network, grads: Mapping[str, npt.ArrayLike], lr: float) -> None:
    """:meth:`Network.sgd_step`."""
    lr = real_number("lr", lr, "a finite real number", np.isfinite)
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads must be a dict of parameter name -> gradient; got {type(grads).__name__}.")
    g = checked(net, grads, "grads", "its parameter's shape {} (no broadcasting)")
    update(net, {name: net.params[name] - lr * grad for name, grad in g.items()})
