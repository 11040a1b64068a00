"""The check grid of ``toeplitz-conv verify``: the library against PyTorch in float64.

Each case computes one thing twice, here and in torch, and returns the largest absolute
difference: conv matrices (forward), their transposes (input gradient), weight gradients,
transposed convolutions, pooling matrices and a compiled network, over geometries that
include the edge cases (1x1 kernel, kernel = input, stride > kernel, dilation with padding,
groups = channels, every padding mode).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import numpy.typing as npt

from ._args import real_number
from .conv import conv_matrix, conv_transpose_matrix, conv_transpose_weight_grad, conv_weight_grad
from .network import compile as compile_network
from .pool import adaptive_avg_pool_matrix, avg_pool_matrix, max_pool_matrix

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.nn.modules.conv import _ConvNd

    #: ``(section, label, check)``: ``check()`` -> the largest absolute difference.
    Case = tuple[str, str, Callable[[], float]]
    #: ``torch_conv()``: the torch layer, its input (requiring grad) and its output.
    TorchConv = Callable[[], tuple[_ConvNd, torch.Tensor, torch.Tensor]]
    #: ``rand(*shape)``: standard normal samples; ``err(a, b)``: the largest |a - b|.
    Rand = Callable[..., npt.NDArray[np.float64]]
    Err = Callable[[npt.ArrayLike, npt.ArrayLike], float]


class Progress:
    """A plain-text progress bar: redrawn in place on a terminal, milestones otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.done, self.width = total, 0, width
        self.stream = stream or sys.stdout
        self.tty: bool = getattr(self.stream, "isatty", lambda: False)()
        self._last = -1

    def step(self, label: str) -> None:
        self.done += 1
        filled = self.width * self.done // self.total
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done:3d}/{self.total} {label}"
        if self.tty:
            self.stream.write("\r" + line[:100].ljust(100))
            if self.done == self.total:
                self.stream.write("\n")
        elif filled // 10 != self._last or self.done == self.total:  # ~4 lines in a log
            self._last = filled // 10
            self.stream.write(line + "\n")
        self.stream.flush()


def cases() -> list[Case]:
    """The grid: ``[(section, label, check)]``, ``check()`` -> max abs error (or raises)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    dt = torch.float64

    def rand(*shape: int) -> npt.NDArray[np.float64]:
        return rng.standard_normal(shape)

    def err(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
        a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
        return float(np.abs(a - b).max()) if a.size else 0.0

    conv_cls: dict[int, Callable[..., _ConvNd]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    # (label, weight shape, input shape, options)
    geometries: list[tuple[str, tuple[int, ...], tuple[int, ...], dict[str, Any]]] = [
        ("1D k3", (2, 1, 3), (1, 9), {}),
        ("1D stride 2 pad 1 dil 2", (3, 2, 3), (2, 11), dict(stride=2, padding=1, dilation=2)),
        ("1D reflect", (2, 2, 3), (2, 7), dict(padding=2, padding_mode="reflect")),
        ("2D 3x3", (4, 3, 3, 3), (3, 6, 6), {}),
        ("2D stride 2 pad 1", (4, 3, 3, 3), (3, 8, 8), dict(stride=2, padding=1)),
        ("2D 1x1 kernel", (5, 3, 1, 1), (3, 4, 4), {}),
        ("2D kernel = input", (2, 2, 5, 5), (2, 5, 5), {}),
        ("2D stride > kernel", (2, 1, 2, 2), (1, 9, 9), dict(stride=3)),
        ("2D dilation 2 pad 2", (2, 2, 3, 3), (2, 8, 8), dict(dilation=2, padding=2)),
        ("2D groups = channels", (4, 1, 3, 3), (4, 6, 6), dict(groups=4, padding=1)),
        ("2D groups 2, rect", (4, 2, 3, 2), (4, 7, 6), dict(groups=2, stride=(2, 1), padding=(1, 0))),
        ("2D same", (2, 2, 4, 3), (2, 7, 7), dict(padding="same")),
        ("2D reflect", (3, 2, 3, 3), (2, 6, 6), dict(padding=1, padding_mode="reflect")),
        ("2D replicate", (3, 2, 3, 3), (2, 6, 5), dict(padding=2, stride=2, padding_mode="replicate")),
        ("2D circular", (3, 2, 3, 3), (2, 5, 5), dict(padding=(1, 2), padding_mode="circular")),
        ("3D stride 2 pad 1", (2, 2, 3, 3, 3), (2, 5, 5, 5), dict(stride=2, padding=1)),
        ("3D circular", (2, 1, 2, 3, 3), (1, 4, 4, 4), dict(padding=1, padding_mode="circular")),
    ]
    grid: list[Case] = []
    for label, wshape, ishape, opts in geometries:
        n = len(ishape) - 1
        w, x = rand(*wshape), rand(2, *ishape)

        def torch_conv(w: np.ndarray = w, x: np.ndarray = x, opts: dict[str, Any] = opts, n: int = n,
                       wshape: tuple[int, ...] = wshape) -> tuple[_ConvNd, torch.Tensor, torch.Tensor]:
            layer = conv_cls[n](wshape[1] * opts.get("groups", 1), wshape[0], wshape[2:], bias=False,
                                **opts).to(dt)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(w))
            xt = torch.from_numpy(x).requires_grad_(True)
            return layer, xt, layer(xt)

        def forward(w: np.ndarray = w, x: np.ndarray = x, ishape: tuple[int, ...] = ishape,
                    opts: dict[str, Any] = opts, torch_conv: TorchConv = torch_conv) -> float:
            C = conv_matrix(w, ishape, **opts)
            _, _, y = torch_conv()
            return err(C @ x.reshape(2, -1).T, y.detach().numpy().reshape(2, -1).T)

        def backward(w: np.ndarray = w, x: np.ndarray = x, ishape: tuple[int, ...] = ishape,
                     opts: dict[str, Any] = opts, torch_conv: TorchConv = torch_conv) -> float:
            layer, xt, y = torch_conv()
            delta = rand(*y.shape)
            y.backward(torch.from_numpy(delta))  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
            C = conv_matrix(w, ishape, **opts)
            e_dx = err(C.T @ delta.reshape(2, -1).T,
                       xt.grad.numpy().reshape(2, -1).T)  # type: ignore[union-attr]  # .grad: set by backward()
            dW = conv_weight_grad(x, delta, w.shape, **opts)
            return max(e_dx, err(dW, layer.weight.grad.numpy()))  # type: ignore[union-attr]  # .grad: set by backward()

        grid.append(("forward", label, forward))
        grid.append(("input + weight gradient", label, backward))

    tgeoms: list[tuple[str, tuple[int, ...], tuple[int, ...], dict[str, Any]]] = [
        ("1D stride 2 out_pad 1", (2, 3, 3), (2, 5), dict(stride=2, padding=1, output_padding=1)),
        ("2D stride 2 pad 1 out_pad 1", (3, 2, 3, 3), (3, 4, 4), dict(stride=2, padding=1, output_padding=1)),
        ("2D groups 2 dilation 2", (4, 1, 3, 3), (4, 3, 3), dict(groups=2, dilation=2)),
        ("2D stride 3 out_pad 2", (1, 2, 2, 2), (1, 3, 3), dict(stride=3, output_padding=2)),
        ("3D stride 2", (2, 2, 2, 2, 2), (2, 3, 3, 3), dict(stride=2)),
    ]
    tfun = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
    for label, wshape, ishape, opts in tgeoms:
        w, x = rand(*wshape), rand(2, *ishape)

        def transposed(w: np.ndarray = w, x: np.ndarray = x, ishape: tuple[int, ...] = ishape,
                       opts: dict[str, Any] = opts) -> float:
            T = conv_transpose_matrix(w, ishape, **opts)
            xt, wt = torch.from_numpy(x), torch.from_numpy(w).requires_grad_(True)
            y = tfun[len(ishape) - 1](xt, wt, **opts)
            delta = rand(*y.shape)
            y.backward(torch.from_numpy(delta))  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
            dW = conv_transpose_weight_grad(x, delta, w.shape, **opts)
            return max(err(T @ x.reshape(2, -1).T, y.detach().numpy().reshape(2, -1).T),
                       err(dW, wt.grad.numpy()))  # type: ignore[union-attr]  # .grad: set by backward()

        grid.append(("transposed conv", label, transposed))

    grid += _pool_cases(rand, err)
    grid += _network_cases(rand, err)
    return grid


def _pool_cases(rand: Rand, err: Err) -> list[Case]:
    """Pooling matrices against torch."""
    import torch
    import torch.nn.functional as F

    avg = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
    mx = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
    ada: dict[int, Callable[..., torch.Tensor]] = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d,
                                                   3: F.adaptive_avg_pool3d}
    grid: list[Case] = []
    for label, ishape, k, opts in [
        ("avg 1D k2", (2, 8), 2, {}),
        ("avg 2D k3 s2 p1", (3, 7, 7), 3, dict(stride=2, padding=1)),
        ("avg 2D ceil, no pad count", (2, 6, 5), 3, dict(stride=2, padding=1, ceil_mode=True,
                                                        count_include_pad=False)),
        ("avg 3D k2", (2, 4, 4, 4), 2, {}),
    ]:
        def check(ishape: tuple[int, ...] = ishape, k: int = k, opts: dict[str, Any] = opts) -> float:
            x = rand(*ishape)
            P = avg_pool_matrix(ishape, k, **opts)
            return err(P @ x.ravel(), avg[len(ishape) - 1](torch.from_numpy(x)[None], k, **opts).numpy())
        grid.append(("pooling", label, check))
    for label, ishape, k, opts in [
        ("max 1D k3 s2", (2, 9), 3, dict(stride=2)),
        ("max 2D k2", (3, 6, 6), 2, {}),
        ("max 2D k3 s2 p1 dil 2", (2, 9, 9), 3, dict(stride=2, padding=1, dilation=2)),
        ("max 3D k2", (1, 4, 4, 4), 2, {}),
    ]:
        def check(ishape: tuple[int, ...] = ishape, k: int = k, opts: dict[str, Any] = opts) -> float:
            x = rand(*ishape)
            S = max_pool_matrix(x, k, **opts, spatial_dims=len(ishape) - 1)  # (1, 4, 4, 4): 3D
            xt = torch.from_numpy(x)[None].requires_grad_(True)
            y = mx[len(ishape) - 1](xt, k, **opts)
            delta = rand(*y.shape)
            y.backward(torch.from_numpy(delta))
            return max(err(S @ x.ravel(), y.detach().numpy()),
                       err(S.T @ delta.ravel(), xt.grad.numpy()))  # type: ignore[union-attr]  # .grad: set by backward()
        grid.append(("pooling", label, check))
    adaptive: list[tuple[str, tuple[int, ...], int | tuple[int, ...]]] = [
        ("adaptive 1D 7->3", (2, 7), 3), ("adaptive 2D 7x5->3x2", (2, 7, 5), (3, 2)),
        ("adaptive 2D global", (3, 5, 5), 1)]
    for label, ishape, size in adaptive:
        def check(ishape: tuple[int, ...] = ishape,  # type: ignore[misc]  # one check per loop, not variants
                  size: int | tuple[int, ...] = size) -> float:
            x = rand(*ishape)
            P = adaptive_avg_pool_matrix(ishape, size)
            return err(P @ x.ravel(), ada[len(ishape) - 1](torch.from_numpy(x)[None], size).numpy())
        grid.append(("pooling", label, check))
    return grid


def _network_cases(rand: Rand, err: Err) -> list[Case]:
    """A compiled CNN against torch: forward, parameter and input gradients."""
    import torch
    import torch.nn as nn

    def build() -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, stride=2, padding=1, padding_mode="reflect"), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
        ).double()

    def network() -> float:
        model = build()
        x = rand(2, 1, 8, 8)
        net = compile_network(model, (1, 8, 8))
        xt = torch.from_numpy(x).requires_grad_(True)
        y = model(xt)
        ours = np.asarray(net.forward(x))
        e = err(ours, y.detach().numpy())
        delta = rand(*y.shape)
        y.backward(torch.from_numpy(delta))
        grads, dx = net.backward(delta)
        e = max(e, err(dx, xt.grad.numpy()))  # type: ignore[union-attr]  # .grad: set by backward()
        for name, p in model.named_parameters():
            e = max(e, err(grads[name], p.grad.numpy()))  # type: ignore[union-attr]  # .grad: set by backward()
        return e

    return [("compiled network", "conv-relu-maxpool-conv(reflect)-relu-gap-linear", network)]


def run(atol: float, prog: str = "toeplitz-conv") -> int:
    """Run the grid with a progress bar and print the summary table; the exit status: 0 all
    passed, 1 a check failed (or crashed), 2 torch is missing. ``atol``: a finite number >= 0."""
    atol = real_number("atol", atol, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)
    try:
        import torch  # noqa: F401
    except ImportError:
        print(f"{prog}: error: verify compares against PyTorch; install toeplitz-conv[torch].",
              file=sys.stderr)
        return 2
    grid = cases()
    progress = Progress(len(grid))
    results: dict[str, list[float]] = {}  # section -> [count, passed, max error]
    failures: list[str] = []
    start = time.perf_counter()
    for section, label, check in grid:
        try:
            with warnings.catch_warnings():  # torch's performance hints are not results
                warnings.simplefilter("ignore", UserWarning)
                e = check()
            ok = e <= atol
            detail = f"max error {e:.2e} > atol {atol:g}"
        except Exception as exc:  # a crash is a failed check, reported with its message
            e, ok, detail = float("nan"), False, f"{type(exc).__name__}: {exc}"
        row = results.setdefault(section, [0, 0, 0.0])
        row[0] += 1
        row[1] += ok
        if e == e:
            row[2] = max(row[2], e)
        if not ok:
            failures.append(f"{section}: {label}: {detail}")
        progress.step(f"{section}: {label}")
    elapsed = time.perf_counter() - start
    print()
    print(f"{'check':<26}{'cases':>7}{'passed':>8}{'max |error|':>14}")
    print("-" * 55)
    for section, (count, passed, worst) in results.items():
        print(f"{section:<26}{count:>7}{passed:>8}{worst:>14.2e}")
    print("-" * 55)
    total, passed = len(grid), sum(r[1] for r in results.values())
    if failures:
        print(f"\n{len(failures)} of {total} checks FAILED (float64, atol {atol:g}):")
        for line in failures:
            print("  " + line)
        return 1
    print(f"all {passed} checks passed against torch {torch.__version__} "
          f"(float64, atol {atol:g}) in {elapsed:.1f} s")
    return 0
