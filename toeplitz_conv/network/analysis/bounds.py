"""The Lipschitz certificates by name, the one ``'auto'`` picks, and the gap to what gradients show.

Methods (every one an upper bound of the 2-norm Lipschitz constant, proved in its module):

- ``'product'``: norms composed along the graph (:func:`.lipschitz.product_bound`);
- ``'windowed'``: activations averaged about the middle of their slopes over windows of the
  graph, the best partition (:mod:`.certify`); never above ``'product'``;
- ``'lipsdp'`` / ``'lipsdp-layer'``: the semidefinite programme of Fazlyab et al. on the
  network's sparse matrices, solved by cvxpy and verified in float64 (:mod:`.lipsdp`); chains
  of linear nodes and activations only, up to :data:`.lipsdp.MAX_SIZE` neurons;
- ``'auto'``: ``'windowed'`` (window 3 where the cost model, :func:`auto_window`, says it
  fits a minute, else 2), and also ``'lipsdp'`` when the network is a chain small enough
  (input plus activations at most :data:`AUTO_SDP_SIZE`) and cvxpy is installed: the smaller.

:func:`lipschitz_report` prints them beside an empirical lower bound.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from . import certify, lipsdp
from ..affine import Affine
from ..nodes import Combine
from .lipschitz import matrix_norm, product_bound

if TYPE_CHECKING:
    from ..model import Network

METHODS = ("auto", "product", "windowed", "lipsdp", "lipsdp-layer")
#: ``'auto'`` adds LipSDP-Neuron up to this ``N`` (input plus activations): SCS takes seconds there.
AUTO_SDP_SIZE = 400
#: The windowed bound's cost model: seconds per nonzero of the network's linear nodes (one
#: application of each), by window; the most measured here (2 cores) over a CIFAR ResNet-18
#: and a VGG-11 (``benchmarks/RESULTS.md``: 1.1e-7 and 3.0e-7 at window 2; window 3 about 4x).
SECONDS_PER_NONZERO = {2: 3.0e-7, 3: 1.2e-6}
#: ``'auto'`` takes window 3 when its estimate fits this many seconds, else window 2.
AUTO_BUDGET_S = 60.0
#: :func:`lipschitz_report` skips LipSDP when it is estimated to take longer (it says so).
REPORT_SDP_S = 120.0


class Bound(float):
    """A certified Lipschitz bound (a float) that says how it was obtained: ``method`` (the one
    that gave the value), ``seconds``, and ``why`` (what ``'auto'`` ran and skipped)."""

    method: str
    seconds: float
    why: str

    def __new__(cls, value: float, method: str, seconds: float, why: str = "") -> Bound:
        self = super().__new__(cls, value)
        self.method, self.seconds, self.why = method, seconds, why
        return self


def _check_method(method: object) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(repr(m) for m in METHODS)}; got {method!r}.")
    return method


def sdp_size(net: Network) -> int | None:
    """``N`` of LipSDP's semidefinite block, or None when the network is not a chain it handles."""
    try:
        return lipsdp.chain_size(net)
    except ValueError:
        return None


def work(net: Network) -> int:
    """Nonzeros of every linear node's matrix (from the geometry: nothing is built): the
    multiply-adds of one application of the whole network, what each Lanczos step costs."""
    total = 0
    for layer in net.layers:
        if isinstance(layer, Combine):
            total += sum(M.nnz for M in layer.matrices)
        elif isinstance(layer, Affine):
            total += layer.matrix_size()[0]
    return total


def auto_window(net: Network) -> tuple[int, str]:
    """The window ``'auto'`` takes, and why: 3 when its estimated time fits
    :data:`AUTO_BUDGET_S`, else 2."""
    nnz = work(net)
    estimate = nnz * SECONDS_PER_NONZERO[3]
    if estimate <= AUTO_BUDGET_S:
        return 3, f"window 3 (estimated {estimate:.2g} s for {nnz:.3g} nonzeros)"
    return 2, f"window 2 (window 3 estimated {estimate:.2g} s > {AUTO_BUDGET_S:g} s for {nnz:.3g} nonzeros)"


def lipschitz_bound(net: Network, method: str = "auto", window: int | None = None) -> Bound:
    """:meth:`Network.lipschitz_bound`."""
    method = _check_method(method)
    start = time.perf_counter()
    if method == "product":
        return Bound(product_bound(net), method, time.perf_counter() - start)
    if method == "windowed":
        w = certify.WINDOW if window is None else window
        return Bound(certify.windowed_bound(net, w), method, time.perf_counter() - start, f"window {w}")
    if method in ("lipsdp", "lipsdp-layer"):
        return Bound(lipsdp.lipsdp_bound(net, layer=method == "lipsdp-layer"), method, time.perf_counter() - start)
    if window is None:
        window, chose = auto_window(net)
    else:
        chose = f"window {window}"
    value, chosen = certify.windowed_bound(net, window), "windowed"
    n = sdp_size(net)
    if n is None:
        why = f"windowed, {chose}; lipsdp skipped: not a chain of linear nodes and activations"
    elif n > AUTO_SDP_SIZE:
        why = f"windowed, {chose}; lipsdp skipped: N = {n} > {AUTO_SDP_SIZE} (method='lipsdp' runs it up to {lipsdp.MAX_SIZE})"
    elif not lipsdp.available():
        why = f"windowed, {chose}; lipsdp skipped: cvxpy is not installed (pip install 'toeplitz-conv[bounds]')"
    else:
        try:
            sdp = lipsdp.lipsdp_bound(net)
        except ValueError as e:  # the solver's multipliers could not be certified
            why = f"windowed, {chose}; lipsdp gave no certificate: {e}"
        else:
            why = f"windowed {value:.6g} ({chose}), lipsdp {sdp:.6g} (N = {n}): the smaller"
            if sdp < value:
                value, chosen = sdp, "lipsdp"
    return Bound(value, chosen, time.perf_counter() - start, why)


def empirical_lower_bound(net: Network, samples: npt.ArrayLike, steps: int = 3) -> tuple[float, np.ndarray]:
    """``(max ||J(x)||_2, x)`` over the samples and a few ascent steps from each: a lower bound of
    the Lipschitz constant (it is the supremum of ``||J(x)||`` where ``f`` is differentiable).

    Each step moves ``x`` along the top right singular vector ``v`` of ``J(x)`` (by 1/4, 1 and 4
    times the sample's RMS, both ways) and keeps the best point: through ReLU networks, whose
    ``J`` is piecewise constant and has no gradient, this crosses into the neighbouring regions
    where ``||J||`` grows. Each step costs up to six exact Jacobians (:meth:`Network.jacobian`).
    """
    X = np.asarray(samples, dtype=np.float64)
    shape = tuple(net.input_shape)
    if X.shape == shape:
        X = X[None]
    if X.ndim != len(shape) + 1 or X.shape[1:] != shape or X.shape[0] == 0:
        raise ValueError(f"x_samples must have shape (N, {', '.join(map(str, shape))}) with N >= 1; got {X.shape}.")
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0; got {steps!r}.")
    best, best_x = -1.0, X[0]

    def top(x: np.ndarray) -> tuple[float, np.ndarray]:
        J = net.jacobian(x)
        s = matrix_norm(J)
        if J.shape[0] * J.shape[1] <= 2**22:
            v = np.linalg.svd(J.toarray())[2][0]
        else:
            from scipy.sparse.linalg import svds
            v = svds(J.astype(np.float64), k=1, random_state=0)[2][0]  # float64: ARPACK in float32 can fail
        return s, v.reshape(shape)

    for x in X:
        s, v = top(x)
        scale = float(np.sqrt(np.mean(x * x))) or 1.0
        for _ in range(steps):
            moved = [(x + sign * c * scale * v) for c in (0.25, 1.0, 4.0) for sign in (1, -1)]
            tries = [(top(y), y) for y in moved]
            (s2, v2), y = max(tries, key=lambda t: t[0][0])
            if s2 <= s:
                break
            s, v, x = s2, v2, y
        if s > best:
            best, best_x = s, x
    return best, best_x


@dataclass
class Row:
    method: str
    bound: float | None
    seconds: float
    note: str = ""


@dataclass
class LipschitzReport:
    """What :func:`lipschitz_report` prints: each method's certified bound and time, and the
    empirical lower bound; the true constant lies between ``lower`` and ``certified``."""

    rows: list[Row] = field(default_factory=list)
    lower: float = 0.0
    lower_seconds: float = 0.0
    samples: int = 0
    steps: int = 0

    @property
    def certified(self) -> float:
        """The tightest certified bound among the methods that ran."""
        return min(r.bound for r in self.rows if r.bound is not None)

    @property
    def gap(self) -> float:
        """``certified / lower``: how loose the certificate can be (1: tight)."""
        return self.certified / self.lower if self.lower > 0 else float("inf")

    def __str__(self) -> str:
        lines = [f"{'method':<14} {'bound':>12} {'vs lower':>10} {'time':>9}  note"]
        for r in self.rows:
            b = "-" if r.bound is None else f"{r.bound:.6g}"
            ratio = "-" if r.bound is None or self.lower <= 0 else f"{r.bound / self.lower:.3g}x"
            lines.append(f"{r.method:<14} {b:>12} {ratio:>10} {r.seconds:>8.2f}s  {r.note}")
        lines.append(f"{'empirical':<14} {self.lower:>12.6g} {'1x':>10} {self.lower_seconds:>8.2f}s  "
                     f"max ||J(x)||_2 over {self.samples} samples, {self.steps} ascent steps each (a lower bound)")
        lines.append(f"The Lipschitz constant lies in [{self.lower:.6g}, {self.certified:.6g}]: the certificate "
                     f"is at most {self.gap:.3g}x the true constant.")
        return "\n".join(lines)

    __repr__ = __str__


def lipschitz_report(net: Network, x_samples: npt.ArrayLike,
                     methods: Sequence[str] = ("product", "windowed", "lipsdp"), steps: int = 3,
                     window: int | None = None) -> LipschitzReport:
    """Each certified bound beside an empirical lower bound, to show how loose the certificate is.

    Parameters
    ----------
    net : Network
    x_samples : (N, *input_shape) array_like
        Points where the exact Jacobian's norm is taken (and the ascent starts).
    methods : sequence of str
        Methods of :meth:`Network.lipschitz_bound` to run; one that does not apply (LipSDP on a
        graph, past its size, or without cvxpy) gets a row saying why instead of a bound.
    steps : int
        Ascent steps from each sample (:func:`empirical_lower_bound`).
    window : int, optional
        For ``'windowed'`` (default 2) and ``'auto'`` (default: its cost model's).

    Returns
    -------
    LipschitzReport
        Prints as a table; ``certified``, ``lower`` and ``gap`` as attributes.
    """
    report = LipschitzReport(steps=int(steps) if isinstance(steps, (int, np.integer)) else 0)
    for m in methods:
        _check_method(m)
    start = time.perf_counter()
    report.lower, _ = empirical_lower_bound(net, x_samples, steps)
    report.lower_seconds = time.perf_counter() - start
    report.samples = int(np.asarray(x_samples).reshape(-1, *net.input_shape).shape[0])
    for m in methods:
        start = time.perf_counter()
        n = sdp_size(net) if m.startswith("lipsdp") else None
        if n is not None and lipsdp.estimate_seconds(n) > REPORT_SDP_S:
            report.rows.append(Row(m, None, 0.0, f"skipped: N = {n}, an estimated {lipsdp.estimate_seconds(n):.0f} s "
                                                 f"(run lipschitz_bound(method={m!r}) for it)"))
            continue
        try:
            b = lipschitz_bound(net, m, window)
            report.rows.append(Row(m, float(b), time.perf_counter() - start, b.why))
        except (ValueError, ImportError) as e:
            report.rows.append(Row(m, None, time.perf_counter() - start, str(e).split("; use")[0]))
    if all(r.bound is None for r in report.rows):
        raise ValueError(f"no method in {list(methods)} gave a bound: " + "; ".join(r.note for r in report.rows))
    return report
