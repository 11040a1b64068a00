"""The compressed Jacobian ``J S`` (or ``S^T J``) as one batch of Jacobian-vector products.

Each column of ``J S`` is the directional derivative of the network along one colour's seed:
a Jacobian-vector product (forward mode, ``torch.func.jvp``); each row of ``S^T J`` a
vector-Jacobian product (reverse mode, ``torch.func.vjp``). A block of seeds runs as one
batch (``torch.func.vmap``) through the model's own torch operations — its convolutions at
dense speed — with the network's current parameters (``torch.func.functional_call``), so
the products are those of the compiled network (every node of which was checked against the
same operations when it was compiled).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from ..model import Network


def torch_function(net: Network) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network as a function of a batch ``(1, *input_shape)`` on torch tensors, through the
    traced model with the network's parameters (which :meth:`Network.update` may have changed)."""
    import torch
    from torch.func import functional_call

    module: Any = net.graph if net.graph is not None else net.layers[0].module
    own = dict(module.named_parameters())
    params = {name: torch.from_numpy(np.ascontiguousarray(p)) for name, p in net.params.items() if name in own}

    def f(x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = functional_call(module, params, (x,))
        return out

    return f


def stale_parametrised(net: Network) -> str | None:
    """The name of a parametrised weight (``weight_norm``, ``spectral_norm``) that
    :meth:`Network.update` changed: torch's traced model still computes the old one, so the
    batched JVPs/VJPs through it would not be the network's. None when there is none."""
    from torch.nn.utils import parametrize

    module: Any = net.graph if net.graph is not None else net.layers[0].module
    for prefix, m in module.named_modules():
        if parametrize.is_parametrized(m):
            for local in m.parametrizations:
                name = f"{prefix}.{local}" if prefix else local
                if name in net.params and not np.array_equal(net.params[name], getattr(m, local).detach().numpy()):
                    return name
    return None


def jvp_block(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
              seeds: torch.Tensor) -> torch.Tensor:
    """``(B, *output_shape)``: the derivative of ``f`` at ``x`` (a batch of one) along each of
    the ``B`` seeds ``(B, *input_shape)``."""
    from torch.func import jvp, vmap

    def one(t: torch.Tensor) -> torch.Tensor:
        tangent: torch.Tensor = jvp(f, (x,), (t[None],))[1][0]
        return tangent

    out: torch.Tensor = vmap(one)(seeds)
    return out


def vjp_puller(f: Callable[[torch.Tensor], torch.Tensor],
               x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``(f(x), rows)``: the forward pass, run once, here, and the function mapping ``B``
    cotangents ``(B, *output_shape)`` to ``(B, *input_shape)``, the rows ``u^T J`` of the
    Jacobian at ``x``."""
    from torch.func import vjp, vmap

    out, pull = vjp(f, x)[:2]

    def one(u: torch.Tensor) -> torch.Tensor:
        row: torch.Tensor = pull(u[None])[0][0]
        return row

    def rows(us: torch.Tensor) -> torch.Tensor:
        got: torch.Tensor = vmap(one)(us)
        return got

    return out, rows
