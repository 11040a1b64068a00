"""Fuzz the exact network Jacobian against ``torch.func.jacrev``, every method.

Two kinds of random model, float64 (or float32 with ``--float32``), one sample:

- *stencil networks*, where the packed and meeting methods apply: 1D/2D/3D, 1-3 channels,
  convolutions with ``padding='same'`` (kernels 1-5, sometimes even; dilation 1-2; groups;
  with or without bias), activations (ReLU, tanh, sigmoid, ELU, leaky ReLU, softplus), batch
  norm in eval mode, residual blocks, the output ``f(x)`` or ``x - f(x)``; images from
  smaller than a cone to a few cones wide;
- *programs* of ``fuzz_programs.py`` (concatenations, slices, pooling, upsampling, products,
  ...), those that compile.

Each model is compiled, and ``tc.jacobian(net, x, method=m)`` runs for ``m`` in ``auto``,
``forward``, ``packed``, ``middle``, ``reverse`` and ``chain``, and ``tc.jacobian(model, x)``
on the model itself (``model`` below: it compiles only if it needs to); the meeting also at every
position that splits the network, with a random block of output colours. A case passes when
every method that runs agrees with jacrev to ``rtol 1e-10`` (``atol 1e-12`` of the largest
entry) and stores no zeros, and every method that does not run refuses with a ``ValueError``
naming what it needs (``model`` and ``auto`` must always run). And ``lipschitz_bound`` by
``auto``, ``product`` and ``windowed`` must be at least ``||J(x)||_2`` (a bound holds at
every ``x``; a program that multiplies two tensors depending on the input may be refused).

    python benchmarks/fuzz_jacobian.py --seed 1 --cases 200
    python benchmarks/fuzz_jacobian.py --seed 1 --cases 200 --tight   # the large inputs' chunked paths
    python benchmarks/fuzz_jacobian.py --seed 1 --cases 200 --float32 # float32 models

Prints each failure and, at the end, how often each method ran, was refused, or failed.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import traceback
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import toeplitz_conv as tc  # noqa: E402
from _fuzz import print_failed, print_totals, tally  # noqa: E402
from fuzz_programs import OPS, Program  # noqa: E402
from toeplitz_conv.network.analysis import middle  # noqa: E402
from toeplitz_conv.network.analysis.cost import TORCH_MACS_PER_S  # noqa: E402
from toeplitz_conv.network.analysis.jacobian import sample  # noqa: E402

METHODS = ("model", "auto", "forward", "packed", "middle", "reverse", "chain")
BOUNDS = ("auto", "product", "windowed")
ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "elu": F.elu,
               "leaky": lambda v: F.leaky_relu(v, 0.1), "softplus": F.softplus}
# compile refuses these, and the Jacobian refuses a model that reads the batch size
REFUSED_PROGRAM_OPS = {"view_add_", "slice_mul_", "alias_iadd", "no_grad", "literal_batch", "numel_scale"}


class Stencil(nn.Module):
    """Runs ``ops`` (convolutions, activations, batch norms, residual blocks) in order."""

    def __init__(self, nd: int, c_in: int, rng: np.random.Generator):
        super().__init__()
        conv = [nn.Conv1d, nn.Conv2d, nn.Conv3d][nd - 1]
        bn = [nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d][nd - 1]
        self.ops, self.mods = [], nn.ModuleList()
        c = c_in

        def a_conv(c_from: int, c_to: int) -> nn.Module:
            g = int(rng.choice([g for g in (1, 2, 3) if c_from % g == 0 and c_to % g == 0]))
            even = rng.random() < 0.15
            k = int(rng.choice([2, 4])) if even else int(rng.choice([1, 3, 3, 5]))
            d = int(rng.choice([1, 1, 2]))
            return conv(c_from, c_to, k, padding="same", dilation=d, groups=g, bias=bool(rng.random() < 0.5))

        for _ in range(int(rng.integers(1, 5))):
            kind = str(rng.choice(["conv", "conv", "act", "act", "bn", "res"]))
            if kind == "conv":
                c_out = int(rng.integers(1, 4))
                self.mods.append(a_conv(c, c_out))
                self.ops.append(("mod", len(self.mods) - 1))
                c = c_out
            elif kind == "act":
                self.ops.append(("act", str(rng.choice(list(ACTIVATIONS)))))
            elif kind == "bn":
                m = bn(c)
                with torch.no_grad():
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.normal_()
                    m.bias.normal_()
                self.mods.append(m)
                self.ops.append(("mod", len(self.mods) - 1))
            else:  # h + conv(act(conv(h)))
                self.mods.extend([a_conv(c, c), a_conv(c, c)])
                self.ops.append(("res", len(self.mods) - 2, str(rng.choice(list(ACTIVATIONS)))))
        self.residual_out = c == c_in and rng.random() < 0.5
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        with torch.no_grad():
            for mod in self.mods:
                if isinstance(mod, nn.modules.conv._ConvNd):
                    mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * 0.5)
                    if mod.bias is not None:
                        mod.bias.copy_(torch.randn(mod.bias.shape, generator=g))

    def forward(self, x):
        h = x
        for op in self.ops:
            if op[0] == "mod":
                h = self.mods[op[1]](h)
            elif op[0] == "act":
                h = ACTIVATIONS[op[1]](h)
            else:
                h = h + self.mods[op[1] + 1](ACTIVATIONS[op[2]](self.mods[op[1]](h)))
        return x - h if self.residual_out else h


def _tighten() -> None:
    """Set the memory-driven limits so that every chunked path runs on small models."""
    from toeplitz_conv.network.analysis import chain, jacobian, packed, reach

    jacobian.BLOCK_BYTES, jacobian.MIN_BLOCK, jacobian.SLOTS_PER_ENTRY = 1, 1, 0
    packed.CONV_WORKSPACE_BYTES = 1
    chain.CHUNK_ROWS = 7
    reach._CHUNK = 64


def _where() -> str:
    """The library's innermost frame of the exception being handled."""
    frames = [f for f in traceback.extract_tb(sys.exc_info()[2]) if "toeplitz_conv" in f.filename]
    return f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"


def case(rng: np.random.Generator, dtype):
    """A random model (in ``dtype``) and its input shape."""
    if rng.random() < 0.7:
        nd = int(rng.choice([1, 2, 2, 3]))
        c_in = int(rng.integers(1, 4))
        hi = {1: 40, 2: 14, 3: 7}[nd]
        spatial = tuple(int(x) for x in rng.integers(3, hi + 1, nd))
        return Stencil(nd, c_in, rng).to(dtype).eval(), (c_in, *spatial)
    ops = [str(o) for o in rng.choice([o for o in OPS if o not in REFUSED_PROGRAM_OPS], int(rng.integers(1, 6)))]
    side = int(rng.integers(4, 11))
    return Program(ops, int(rng.integers(2**31))).to(dtype).eval(), (2, side, side)


def main(argv=None) -> int:
    """Run the cases; the number of models with a failure."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--tight", action="store_true",
                   help="the limits that large inputs meet, at these sizes: one seed a block, one seed's "
                        "convolution at a time, entries as COO triples, the chain's rows and the boxes' "
                        "reads in small chunks")
    p.add_argument("--float32", action="store_true",
                   help="float32 models: each method against jacrev of the same weights in float64 to "
                        "rtol 1e-4, the bounds (computed in float64) at least its norm")
    args = p.parse_args(argv)
    dtype = torch.float32 if args.float32 else torch.float64
    rtol, atol_rel = (1e-4, 1e-5) if args.float32 else (1e-10, 1e-12)
    if args.tight:
        _tighten()
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    # torch warns that an even kernel's 'same' padding may copy the input: expected here
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    counts = tally((*METHODS, "middle splits", *(f"bound {b}" for b in BOUNDS)))
    failures = cases = 0
    for i in range(args.cases):
        model, shape = case(rng, dtype)
        x = torch.randn(1, *shape, dtype=torch.float64).to(dtype)
        try:
            net = tc.compile(model, shape)
        except (ValueError, TypeError) as e:  # a program compile refuses, saying why
            print(f"case {i}: compile refused {shape}: {str(e)[:120]}")
            continue
        cases += 1
        exact = model if dtype == torch.float64 else copy.deepcopy(model).double()  # the same weights
        ref = torch.func.jacrev(lambda v: exact(v[None])[0])(x[0].double()).reshape(-1, x[0].numel()).detach().numpy()
        atol = atol_rel * max(1.0, float(np.abs(ref).max()))
        bad = []

        def check(name, J):
            ok = np.allclose(J.toarray(), ref, rtol=rtol, atol=atol) and not np.any(J.data == 0)
            counts[name]["ran" if ok else "failed"] += 1
            if not ok:
                diff = float(np.abs(J.toarray() - ref).max())
                bad.append(f"{name}: max diff {diff:.3g}, zeros stored {int(np.sum(J.data == 0))}")

        for m in METHODS:
            try:
                J = tc.jacobian(model if m == "model" else net, x, method="auto" if m == "model" else m)
            except ValueError as e:
                if m in ("model", "auto") or not str(e).startswith(f"method={m!r} needs"):
                    counts[m]["failed"] += 1
                    bad.append(f"{m}: refused: {str(e)[:160]} at {_where()}")
                else:
                    counts[m]["refused"] += 1
                continue
            except Exception as e:  # noqa: BLE001 - a fuzz reports every failure
                counts[m]["failed"] += 1
                bad.append(f"{m}: {type(e).__name__}: {str(e)[:160]} at {_where()}")
                continue
            check(m, J)
        norm = float(np.linalg.norm(ref, 2))  # a Lipschitz bound holds at every x: at this one too
        for m in BOUNDS:
            try:
                bound = float(net.lipschitz_bound(method=m))
            except ValueError as e:  # a product of two input-dependent tensors has no bound
                if isinstance(model, Stencil) or "is not bounded here" not in str(e):
                    counts[f"bound {m}"]["failed"] += 1
                    bad.append(f"lipschitz_bound({m!r}) refused: {str(e)[:160]} at {_where()}")
                else:
                    counts[f"bound {m}"]["refused"] += 1
                continue
            except Exception as e:  # noqa: BLE001
                counts[f"bound {m}"]["failed"] += 1
                bad.append(f"lipschitz_bound({m!r}): {type(e).__name__}: {str(e)[:160]} at {_where()}")
                continue
            ok = bound >= norm * (1 - 1e-9)
            counts[f"bound {m}"]["ran" if ok else "failed"] += 1
            if not ok:
                bad.append(f"lipschitz_bound({m!r}) = {bound!r} below ||J(x)||_2 = {norm!r}")
        for split in middle.splits(net, TORCH_MACS_PER_S, 8):
            block = int(rng.integers(1, split.reverse.colours + 2))
            try:
                check("middle splits", middle.jacobian(net, sample(net, x), split, block))
            except Exception as e:  # noqa: BLE001
                counts["middle splits"]["failed"] += 1
                bad.append(f"middle at {split.node}, block {block}: {type(e).__name__}: {str(e)[:160]} "
                           f"at {_where()}")
        if bad:
            failures += 1
            print_failed(i, f"{type(model).__name__} {shape} {getattr(model, 'ops', '')}", bad)
    print_totals(cases, "models", failures, counts)
    return failures


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
