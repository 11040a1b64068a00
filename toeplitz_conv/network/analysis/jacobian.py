"""The exact Jacobian of a network at one sample, by the method its estimated cost picks.

Five exact methods, each giving the same CSR matrix:

``'forward'``
    Colour the columns (:mod:`.colouring`, from the boxes of :mod:`.reach`), evaluate ``J S``
    as a batch of Jacobian-vector products through the model's torch operations
    (:mod:`.compressed`), scatter into CSR. Cost: one forward pass per colour. Memory: the
    result and one block of activations.
``'packed'``
    ``'forward'`` for stencil networks (stride-1 ``'same'`` convolutions and elementwise
    nodes, a denoiser): each colour's tangents kept only in the squares around its seeds
    (:mod:`.packed`), so a colour costs its cones, not the whole image.
``'middle'``
    For the same stencil networks: forward colouring of the nodes up to a middle position,
    reverse colouring (convolutions by their transposes) of the nodes after it, and the two
    multiplied position by position where they meet (:mod:`.middle`). Each side's cones reach
    half as far, so a DnCNN costs about half the packed method's multiply-adds.
``'reverse'``
    The same with the rows: ``S^T J`` by vector-Jacobian products, one per row colour (a
    classifier's few outputs).
``'chain'``
    The product of the nodes' sparse matrices along the graph (:mod:`.chain`). Needs every
    node's matrix; its cost is the nonzeros of the intermediate Jacobians times the nonzeros
    per row of each node's matrix, at sparse-product speed.

:func:`jacobian_plan` estimates each from the geometry before anything runs — colours, the
result's nonzeros (at most the summed box volumes), multiply-adds, bytes (:mod:`.cost`) — and
``'auto'`` takes the fastest estimate; the plan says which ran and why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from math import prod
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import numpy as np
import scipy.sparse as sp

from ..._args import as_array, check_choice
from ...indexing import index_dtype
from ...memory import check_size, human_bytes, memory_limit
from . import chain, compressed, cost, middle, packed, reach, stencil
from .colouring import Lattice, lattice, valid

if TYPE_CHECKING:
    from ..model import Network

Method = Literal["auto", "forward", "packed", "middle", "reverse", "chain"]
Resolved = Literal["forward", "packed", "middle", "reverse", "chain"]

#: Bytes of activations one block of seeds may hold (the block's size follows from it). Small
#: blocks are no slower: a DnCNN-8's Jacobian at 48x48 and 96x96 took 0.93x and 0.85x the
#: time at 32 MiB as at 256 MiB, and half the peak memory (benchmarks/RESULTS.md).
BLOCK_BYTES = 2**25

#: Seeds a block holds at least, while that many take at most a quarter of the memory limit
#: (one seed at a time, a large image's blocks would each pay the per-call overheads).
MIN_BLOCK = 8

#: Entries are written into one slot per (row, colour) while the slots number at most this
#: many times the result's nonzeros (the boxes are tight); else kept as COO triples.
SLOTS_PER_ENTRY = 2


@dataclass(frozen=True)
class JacobianPlan:
    """What :func:`jacobian` will do, estimated before it runs.

    Attributes
    ----------
    method : {'forward', 'packed', 'middle', 'reverse', 'chain'}
        The method that runs (``'auto'`` resolved).
    shape : (int, int)
        ``(out_features, in_features)``.
    colours : dict of str -> int
        Colours of the columns (``'forward'``, ``'packed'``), of the rows (``'reverse'``), and
        of both halves together (``'middle'``).
    nnz_bound : int
        At most this many nonzeros (the summed volumes of the output entries' boxes).
    seconds : dict of str -> float
        The estimated time of each method that applies (the cost model's).
    nbytes : dict of str -> int
        The estimated peak memory of each: the result, and what the method holds while it
        runs (a block of seeds; the saved forward pass; every node's matrix for the chain).
    block : int
        Seeds evaluated per batch by a compressed method.
    reason : str
        Why this method.
    split : Split or None
        For ``'middle'``: the position where the two colourings meet, and their lattices.
    """

    method: Resolved
    shape: tuple[int, int]
    colours: dict[str, int]
    nnz_bound: int
    seconds: dict[str, float]
    nbytes: dict[str, int]
    block: int
    reason: str
    lattices: dict[str, Lattice] = field(repr=False, default_factory=dict)
    boxes: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    radii: list[tuple[int, ...]] | None = field(repr=False, default=None)
    split: middle.Split | None = field(repr=False, default=None)

    def __str__(self) -> str:
        m, n = self.shape
        lines = [f"Jacobian {m:,} x {n:,}, at most {self.nnz_bound:,} nonzeros: method {self.method!r} "
                 f"({self.reason})"]
        for name in ("forward", "packed", "middle", "reverse", "chain"):
            if name in self.seconds:
                c = f"{self.colours[name]:,} colours, " if name in self.colours and name != "chain" else ""
                if name == "middle" and self.split is not None:
                    c = (f"{self.split.forward.colours:,} + {self.split.reverse.colours:,} colours meeting "
                         f"at position {self.split.node}, ")
                lines.append(f"  {name:<8} {c}~{self.seconds[name]:.3g} s, ~{human_bytes(self.nbytes[name])}")
        return "\n".join(lines)


def _check_method(method: object) -> Method:
    return cast(Method, check_choice("method", method, get_args(Method)))


def check_finite_sample(xa: np.ndarray) -> None:
    """Refuse a sample with a NaN or inf entry: no Jacobian there."""
    if not np.isfinite(xa).all():
        raise ValueError(f"x must be finite to have a Jacobian; got {int(np.size(xa) - np.isfinite(xa).sum())} "
                         f"NaN or inf entries.")


def check_finite_derivatives(values: np.ndarray) -> None:
    """Refuse Jacobian entries that are not finite (the derivatives at x are not defined)."""
    if not np.isfinite(values).all():
        raise ValueError("the network's derivatives at x are not finite (a NaN or inf in a "
                         "parameter, or an activation whose derivative overflows there): its "
                         "Jacobian at x is not defined.")


def sample(net: Network, x: object) -> np.ndarray:
    """``x`` as one sample ``(1, *input_shape)`` of the network's dtype."""
    xa = as_array(x, "x")
    if tuple(xa.shape) == net.input_shape:
        xa = xa[None]
    if tuple(xa.shape) != (1, *net.input_shape):
        raise ValueError(f"x must be one sample of shape {net.input_shape} (or {(1, *net.input_shape)}); "
                         f"got x.shape={tuple(xa.shape)}.")
    net.check_batch(1)  # a model that reads its batch size is exact only at the traced batch
    check_finite_sample(xa)
    return np.ascontiguousarray(xa, dtype=net.dtype)


def columns(net: Network, x: np.ndarray) -> list[np.ndarray]:
    """The network's activations at the one sample ``x``, each in column form ``(features, 1)``
    (the numpy forward: it builds the nodes' matrices)."""
    net.forward(x)
    return [a.reshape(1, -1).T for a in cast("list[np.ndarray]", net.activations)]


def plan(net: Network, x: np.ndarray, method: object = "auto") -> JacobianPlan:
    """:func:`jacobian_plan` of a compiled network at one sample ``x`` ``(1, *input_shape)``."""
    method = _check_method(method)
    n_in, n_out = prod(net.input_shape), prod(net.output_shape)
    acts_cache: list[Any] = []

    def acts() -> list[np.ndarray]:  # the numpy forward, only if a node's structure needs values
        if not acts_cache:
            acts_cache.append(columns(net, x))
        return cast("list[np.ndarray]", acts_cache[0])

    fresh = [layer for layer in net.layers if not getattr(layer, "built", True)]
    M_out, sums = reach.forward_reach(net, acts)
    M_in = reach.backward_reach(net, acts)
    if acts_cache:  # the numpy forward built matrices the boxes needed once
        for layer in fresh:
            layer.release()
    lat_f, lat_r = lattice(M_out, net.input_shape), lattice(M_in, net.output_shape)
    nnz = int(reach.volumes(M_out).sum())
    fwd = sum(cost.macs(layer) for layer in net.layers)
    rate = cost.torch_rate(net.dtype)
    seconds = {  # reverse: one forward, then each colour's pull (the input's gradient, no weights')
        "forward": lat_f.colours * fwd / rate,
        "reverse": (lat_r.colours + 1) * fwd / rate,
        "chain": sum(sums[layer.inputs[0]] * cost.row_nnz(layer) for layer in net.layers) / cost.CHAIN_MACS_PER_S,
    }
    radii, why_not = stencil.radii(net, lat_f)
    if why_not is None:
        seconds["packed"] = lat_f.colours * stencil.work(net, radii, lat_f) / rate
    itemsize = np.dtype(net.dtype).itemsize
    idx = np.dtype(index_dtype(nnz, n_out, n_in)).itemsize
    widest = max(prod(layer.out_shape) for layer in net.layers)
    # a seed's input and output, four activations alive, and two int64 index maps (packed)
    per_seed = itemsize * (n_in + n_out + 4 * widest) + 16 * prod(net.input_shape[1:])
    floor = MIN_BLOCK if MIN_BLOCK * per_seed <= memory_limit()[0] // 4 else 1
    block = int(max(floor, min(BLOCK_BYTES // max(per_seed, 1), max(lat_f.colours, lat_r.colours))))
    split = min(middle.splits(net, rate, block), key=lambda s: s.seconds, default=None)
    if split is not None:
        seconds["middle"] = split.seconds
    result = nnz * (itemsize + idx) + idx * (n_out + 1)
    features = sum(prod(layer.out_shape) for layer in net.layers)
    nbytes = {  # the result twice (entries, then the CSR), a block of seeds, what each method holds
        "forward": 2 * result + cost.JVP_BLOCK_FACTOR * block * (per_seed + cost.unfold_bytes(net)),
        "reverse": 2 * result + cost.VJP_BLOCK_FACTOR * block * per_seed + 2 * features * itemsize,
        "chain": result + int(sum(cost.macs(layer) for layer in net.layers) * (itemsize + idx)
                              + chain.product_bytes(max(sums), itemsize, idx)),
    }
    if why_not is None:  # its convolutions unfold at most packed.CONV_WORKSPACE_BYTES at a time
        nbytes["packed"] = 2 * result + cost.JVP_BLOCK_FACTOR * block * per_seed + packed.CONV_WORKSPACE_BYTES
    if split is not None:
        nbytes["middle"] = 2 * result + split.nbytes + block * per_seed
    if method == "auto":
        fits = [k for k in seconds if nbytes[k] <= memory_limit()[0]] or [min(nbytes, key=lambda k: nbytes[k])]
        resolved = cast(Resolved, min(fits, key=lambda k: seconds[k]))
        reason = "the least estimated time" + ("" if len(fits) == len(seconds) else " of those within the memory limit")
    elif method == "packed" and why_not is not None:
        raise ValueError(f"method='packed' needs a network of stride-1 'same' convolutions with zero "
                         f"padding and elementwise nodes, whose cones fit the colouring's period: "
                         f"{why_not}. Use method='forward' (the same colouring, unpacked) or 'auto'.")
    elif method == "middle" and split is None:
        raise ValueError(f"method='middle' needs a network of stride-1 'same' convolutions with zero "
                         f"padding and elementwise nodes, with a position that every later node reaches "
                         f"only through it or the input, whose cones are narrower than the image: "
                         f"{stencil.structure(net)[1] or 'no position splits this network so'}. "
                         f"Use method='packed' or 'auto'.")
    else:
        resolved, reason = method, "asked for"
    colours = {"forward": lat_f.colours, "packed": lat_f.colours, "reverse": lat_r.colours}
    if split is not None:
        colours["middle"] = split.forward.colours + split.reverse.colours
    return JacobianPlan(resolved, (n_out, n_in), colours, nnz, seconds, nbytes, block, reason,
                        {"forward": lat_f, "reverse": lat_r}, {"forward": M_out, "reverse": M_in},
                        radii if why_not is None else None, split)


class _Entries:
    """The Jacobian's entries as they come, colour block by colour block, then its CSR.

    Each entry of the coloured side's other end (an output row for columns, an input column
    for rows) gets one slot per colour: where slots cost little more than the entries (tight
    boxes), values and indices are written straight into ``(n, colours)`` arrays and read off
    in row order (no sort but within rows); else they are kept as COO triples."""

    def __init__(self, n: int, colours: int, shape: tuple[int, int], dtype: Any, nnz_bound: int,
                 by_rows: bool) -> None:
        self.shape, self.by_rows, self.dtype = shape, by_rows, dtype
        self.idx = index_dtype(max(nnz_bound, n * colours), *shape)
        self.slots = n * colours <= SLOTS_PER_ENTRY * nnz_bound + n
        if self.slots:
            self.vals = np.zeros((n, colours), dtype=dtype)
            self.cols = np.zeros((n, colours), dtype=self.idx)
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, ks: np.ndarray, block: np.ndarray, targets: np.ndarray) -> None:
        keep = (targets >= 0) & (block != 0)
        if self.slots:
            self.vals[:, ks] = np.where(keep, block, 0)
            self.cols[:, ks] = np.where(keep, targets, 0)
            return
        i, b = np.nonzero(keep)
        self.parts.append((i.astype(self.idx), targets[i, b].astype(self.idx), block[i, b]))

    def matrix(self) -> sp.csr_array:
        m, n = self.shape
        if self.slots:
            keep = self.vals != 0
            indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(self.idx)
            data, indices = self.vals[keep], self.cols[keep]
            del self.vals, self.cols, keep
            kind = sp.csr_array if self.by_rows else sp.csc_array  # slots per row, or per column
            J = sp.csr_array(kind((data, indices, indptr), shape=(m, n)))
        else:
            own = np.concatenate([q[0] for q in self.parts]) if self.parts else np.zeros(0, self.idx)
            other = np.concatenate([q[1] for q in self.parts]) if self.parts else np.zeros(0, self.idx)
            vals = np.concatenate([q[2] for q in self.parts]) if self.parts else np.zeros(0, self.dtype)
            self.parts = []
            rows, cols = (own, other) if self.by_rows else (other, own)
            J = sp.csr_array((vals, (rows, cols)), shape=self.shape)
        J.sort_indices()
        if J.indices.dtype != self.idx:
            J = sp.csr_array((J.data, J.indices.astype(self.idx), J.indptr.astype(self.idx)), shape=J.shape)
        return J


def _compressed(net: Network, x: np.ndarray, p: JacobianPlan) -> sp.csr_array:
    """``J`` from ``J S`` (forward, packed) or ``S^T J`` (reverse), block by block of colours."""
    import torch

    if p.method == "middle":
        J = middle.jacobian(net, x, cast(middle.Split, p.split), p.block)
        check_finite_derivatives(J.data)
        return J
    side = "reverse" if p.method == "reverse" else "forward"
    lat, M = p.lattices[side], p.boxes[side]
    if not valid(lat, M):  # pragma: no cover - lattice() sizes the period to the widest box
        raise RuntimeError("the lattice colouring does not fit the boxes; please report this.")
    evaluate: Callable[[np.ndarray], np.ndarray]
    if p.method == "packed":
        evaluate = packed.Packed(net, x, lat, cast("list[tuple[int, ...]]", p.radii)).block
    else:
        f = compressed.torch_function(net)
        xt = torch.from_numpy(x)
        pull = compressed.vjp_puller(f, xt)[1] if side == "reverse" else None

        def unpacked(ks: np.ndarray) -> np.ndarray:
            seeds = torch.from_numpy(lat.seeds(ks, net.dtype))
            with torch.no_grad() if pull is None else torch.enable_grad():
                out = compressed.jvp_block(f, xt, seeds) if pull is None else pull(seeds)
            return cast(np.ndarray, out.detach().numpy().reshape(len(ks), -1).T)
        evaluate = unpacked
    n_side = p.shape[0] if side == "forward" else p.shape[1]
    entries = _Entries(n_side, lat.colours, p.shape, net.dtype, p.nnz_bound, by_rows=side == "forward")
    for a in range(0, lat.colours, p.block):
        ks = np.arange(a, min(a + p.block, lat.colours))
        block = evaluate(ks)  # (entries of the other side, B)
        check_finite_derivatives(block)
        targets = lat.targets(M, ks)
        if np.any((targets < 0) & (block != 0)):
            raise RuntimeError("a Jacobian entry fell outside the structure the network's nodes allow; "
                               "please report this.")
        entries.add(ks, block, targets)
    return entries.matrix()


def network_jacobian(net: Network, x: object, method: object = "auto") -> tuple[sp.csr_array, JacobianPlan]:
    """``(J, plan)``: the exact Jacobian of ``net`` at one sample ``x``, and how it was made."""
    xs = sample(net, x)
    p = plan(net, xs, method)
    m, n = p.shape
    check_size("the network's Jacobian", p.nbytes[p.method],
               f"{m:,} x {n:,} with at most {p.nnz_bound:,} nonzeros (the receptive fields), "
               f"by method {p.method!r}, with what it holds while it runs")
    stale = compressed.stale_parametrised(net) if p.method != "chain" else None
    if stale is not None:
        why = (f"the parametrised weight {stale!r} was changed by update, and torch's traced model, which "
               f"method {p.method!r} runs, still computes the old one")
        if method != "auto":
            raise ValueError(f"{why}; use method='chain'.")
        p = replace(p, method="chain", reason=f"{why}: the product of the nodes' matrices instead")
    if p.method != "chain":
        try:
            return _compressed(net, xs, p), p
        except (RuntimeError, NotImplementedError) as e:  # an op torch's vmap or jvp cannot batch
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            if "vmap" not in reason and "forward AD" not in reason and "jvp" not in reason:
                raise
            if method != "auto":
                raise ValueError(f"method {p.method!r} evaluates the Jacobian through torch's vmap/jvp, which "
                                 f"cannot run this model ({reason}); use method='chain'.") from e
            p = replace(p, method="chain", reason=f"torch's vmap/jvp cannot run this model ({reason}): the "
                                                  f"product of the nodes' matrices instead")
            check_size("the network's Jacobian", p.nbytes["chain"],
                       f"{m:,} x {n:,} with at most {p.nnz_bound:,} nonzeros, by method 'chain'")
    fresh = [layer for layer in net.layers if not getattr(layer, "built", True)]
    J = chain.jacobian(net.layers, columns(net, xs), net.output, net.dtype)
    for layer in fresh:  # the matrices the product needed, let go again
        layer.release()
    return J, p
