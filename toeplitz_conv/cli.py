"""The ``toeplitz-conv`` command (also ``python -m toeplitz_conv``).

Commands::

    toeplitz-conv demo [--out DIR]         a small conv layer as a matrix, checked against PyTorch
    toeplitz-conv spy --input 3x8x8 --kernel 4x3x3x3 [--stride 2] [--padding 1] [-o C.png]
    toeplitz-conv verify [--atol 1e-10]    the library against PyTorch over a grid of geometries

Bad arguments give one line, ``toeplitz-conv: error: <what is wrong>``, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from math import prod
from pathlib import Path

import numpy as np

from . import _validate as v

PROG = "toeplitz-conv"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``toeplitz-conv: error: ...`` and exit status 2."""

    def error(self, message):
        raise _UsageError(message)


class _UsageError(Exception):
    pass


class _OutputError(ValueError):
    """A file or folder named on the command line cannot be written."""


def _arg(parse, name, **kw):
    """An argparse ``type=`` from a parser in _validate (its ValueError is the message)."""

    def convert(text):
        try:
            return parse(name, text, **kw)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = name
    return convert


def _one(value):
    """``(2,)`` -> ``2`` (so a single size applies to every spatial axis), else unchanged."""
    return value[0] if isinstance(value, tuple) and len(value) == 1 else value


# --------------------------------------------------------------------------- demo


def _demo(args) -> int:
    """A 1x4x4 input, a 3x3 kernel: C, the output, C.T @ delta and the weight gradient."""
    import toeplitz_conv as tc

    x = np.arange(1.0, 17.0).reshape(1, 4, 4)
    w = np.array([[[[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]]])  # Sobel x
    C = tc.conv_matrix(w, x.shape)
    np.set_printoptions(linewidth=120, precision=4, suppress=True)
    print("A 3x3 kernel (Sobel) on a 4x4 image, no padding: y = C @ x with C of shape", C.shape)
    print(C.toarray())
    y = C @ x.ravel()
    print("\ny = C @ x.ravel() =", y, " (2x2 output)")
    delta = np.array([1.0, -1.0, 0.5, 2.0])
    print("\ninput gradient C.T @ delta, delta =", delta)
    dx = (C.T @ delta).reshape(4, 4)
    dW = tc.conv_weight_grad(x, delta.reshape(1, 2, 2), w.shape)
    status = 0
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    if torch is None:
        print(dx)
    else:
        xt, wt = torch.tensor(x[None]), torch.tensor(w, requires_grad=True)
        yt = F.conv2d(xt, wt)
        dt = torch.tensor(delta).reshape(1, 1, 2, 2)
        yt.backward(dt)
        ref = F.conv_transpose2d(dt, wt.detach()).numpy().reshape(4, 4)
        print(_side_by_side(dx, ref, "C.T @ delta", "F.conv_transpose2d(delta, w)"))
    print("\nweight gradient from the same (row, col, tap) triples:")
    print(dW.reshape(3, 3))
    if torch is None:
        print("\n(torch is not installed: install toeplitz-conv[torch] to verify against PyTorch)")
    else:
        checks = {
            "C @ x == F.conv2d": np.allclose(y, yt.detach().numpy().ravel()),
            "C.T @ delta == F.conv_transpose2d": np.allclose(dx, ref),
            "weight gradient == autograd": np.allclose(dW, wt.grad.numpy()),
        }
        print()
        for name, ok in checks.items():
            print(f"  {'ok  ' if ok else 'FAIL'} {name}")
        status = 0 if all(checks.values()) else 1
    if args.out is not None:
        _demo_figures(Path(args.out), x, w, delta)
    return status


def _side_by_side(a: np.ndarray, b: np.ndarray, ta: str, tb: str) -> str:
    la, lb = str(a).splitlines(), str(b).splitlines()
    width = max(len(ta), *(len(s) for s in la)) + 4
    lines = [ta.ljust(width) + tb] + [s.ljust(width) + t for s, t in zip(la, lb)]
    return "\n".join(lines)


def _demo_figures(out: Path, x, w, delta) -> None:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg")  # writing files only: no window
    import matplotlib.pyplot as plt

    import toeplitz_conv as tc

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _OutputError(f"argument --out: cannot write to {str(out)!r}: {e}") from None
    C = tc.conv_matrix(w, x.shape)
    fig, ax = plt.subplots(figsize=(9, 3), layout="constrained")
    tc.spy(C, ax=ax, input_shape=x.shape, output_shape=(1, 2, 2),
           title="the demo's C: 3x3 Sobel kernel on a 4x4 image (4 x 16)")
    spy_path = out / "demo_spy.png"
    ax.figure.savefig(spy_path, dpi=100)
    plt.close(ax.figure)
    fig = tc.gradient_figure(x, w, grad_output=delta.reshape(1, 2, 2))
    grad_path = out / "demo_gradient.png"
    fig.savefig(grad_path, dpi=100)
    plt.close(fig)
    print(f"\nwrote the spy plot to {spy_path} and the gradient figure to {grad_path}")


# --------------------------------------------------------------------------- spy


def _spy(args) -> int:
    import toeplitz_conv as tc

    kernel, inp = args.kernel, args.input
    if len(kernel) != len(inp) + 1 or len(kernel) not in (3, 4, 5):
        raise ValueError(
            f"--kernel must be C_outxC_in/groupsxKERNEL with one more size than --input "
            f"(C_inxSPATIAL), 1 to 3 spatial sizes; got --kernel {'x'.join(map(str, kernel))} "
            f"and --input {'x'.join(map(str, inp))}."
        )
    opts = dict(stride=_one(args.stride), padding=_one(args.padding),
                dilation=_one(args.dilation), groups=args.groups, padding_mode=args.padding_mode)
    g = tc.conv_geometry(kernel, inp, **opts)
    m, n = g.shape
    w = np.random.default_rng(args.seed).standard_normal(kernel)
    C = tc.conv_matrix(w, inp, **opts)
    nbytes = C.data.nbytes + C.indices.nbytes + C.indptr.nbytes
    print(f"input  {_x(g.in_shape)} -> output {_x(g.out_shape)}   (kernel {_x(kernel)}, "
          f"random N(0, 1) weights, seed {args.seed})")
    print(f"C: {m:,} x {n:,}, {C.nnz:,} nonzeros, density {100 * C.nnz / (m * n):.3g}%, "
          f"{_human(nbytes)} as CSR ({_human(m * n * 8)} dense)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figsize = (min(14.0, 3.0 + 8.0 * max(1.0, n / m) ** 0.5), 6.0)
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    tc.spy(C, ax=ax, input_shape=g.in_shape, output_shape=g.out_shape, mode=args.mode)
    out = Path(args.output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=args.dpi)
    except (OSError, ValueError) as e:  # unwritable path, unknown image format
        raise _OutputError(f"argument -o/--output: cannot write {str(out)!r}: {e}") from None
    finally:
        plt.close(fig)
    print(f"wrote {out}")
    return 0


def _x(shape) -> str:
    return "x".join(map(str, shape))


def _human(nbytes: float) -> str:
    return v._human(nbytes)


# --------------------------------------------------------------------------- verify


class _Progress:
    """A plain-text progress bar: redrawn in place on a terminal, milestones otherwise."""

    def __init__(self, total: int, stream=None, width: int = 30):
        self.total, self.done, self.width = total, 0, width
        self.stream = stream or sys.stdout
        self.tty = getattr(self.stream, "isatty", lambda: False)()
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


def _verify_cases(atol: float):
    """[(section, label, check)], ``check()`` -> max abs error (or raises)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    import toeplitz_conv as tc

    rng = np.random.default_rng(0)
    dt = torch.float64

    def rand(*shape):
        return rng.standard_normal(shape)

    def err(a, b) -> float:
        a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
        return float(np.abs(a - b).max()) if a.size else 0.0

    conv_cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    # (label, weight shape, input shape, options)
    geometries = [
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
    cases = []
    for label, wshape, ishape, opts in geometries:
        n = len(ishape) - 1
        w, x = rand(*wshape), rand(2, *ishape)

        def torch_conv(w=w, x=x, opts=opts, n=n, wshape=wshape):
            layer = conv_cls[n](wshape[1] * opts.get("groups", 1), wshape[0], wshape[2:], bias=False,
                                **opts).to(dt)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(w))
            xt = torch.from_numpy(x).requires_grad_(True)
            return layer, xt, layer(xt)

        def forward(w=w, x=x, ishape=ishape, opts=opts, torch_conv=torch_conv):
            C = tc.conv_matrix(w, ishape, **opts)
            _, _, y = torch_conv()
            return err(C @ x.reshape(2, -1).T, y.detach().numpy().reshape(2, -1).T)

        def backward(w=w, x=x, ishape=ishape, opts=opts, torch_conv=torch_conv):
            layer, xt, y = torch_conv()
            delta = rand(*y.shape)
            y.backward(torch.from_numpy(delta))
            C = tc.conv_matrix(w, ishape, **opts)
            e_dx = err(C.T @ delta.reshape(2, -1).T, xt.grad.numpy().reshape(2, -1).T)
            dW = tc.conv_weight_grad(x, delta, w.shape, **opts)
            return max(e_dx, err(dW, layer.weight.grad.numpy()))

        cases.append(("forward", label, forward))
        cases.append(("input + weight gradient", label, backward))

    tgeoms = [
        ("1D stride 2 out_pad 1", (2, 3, 3), (2, 5), dict(stride=2, padding=1, output_padding=1)),
        ("2D stride 2 pad 1 out_pad 1", (3, 2, 3, 3), (3, 4, 4), dict(stride=2, padding=1, output_padding=1)),
        ("2D groups 2 dilation 2", (4, 1, 3, 3), (4, 3, 3), dict(groups=2, dilation=2)),
        ("2D stride 3 out_pad 2", (1, 2, 2, 2), (1, 3, 3), dict(stride=3, output_padding=2)),
        ("3D stride 2", (2, 2, 2, 2, 2), (2, 3, 3, 3), dict(stride=2)),
    ]
    tfun = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
    for label, wshape, ishape, opts in tgeoms:
        w, x = rand(*wshape), rand(2, *ishape)

        def transposed(w=w, x=x, ishape=ishape, opts=opts):
            T = tc.conv_transpose_matrix(w, ishape, **opts)
            xt, wt = torch.from_numpy(x), torch.from_numpy(w).requires_grad_(True)
            y = tfun[len(ishape) - 1](xt, wt, **opts)
            delta = rand(*y.shape)
            y.backward(torch.from_numpy(delta))
            dW = tc.conv_transpose_weight_grad(x, delta, w.shape, **opts)
            return max(err(T @ x.reshape(2, -1).T, y.detach().numpy().reshape(2, -1).T),
                       err(dW, wt.grad.numpy()))

        cases.append(("transposed conv", label, transposed))

    cases += _pool_cases(rand, err)
    cases += _network_cases(rand, err)
    return cases


def _pool_cases(rand, err):
    """Pooling matrices against torch (when the pooling module is there)."""
    import torch
    import torch.nn.functional as F

    try:
        from . import pool
    except ImportError:
        return []
    avg = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
    mx = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
    ada = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
    cases = []
    for label, ishape, k, opts in [
        ("avg 1D k2", (2, 8), 2, {}),
        ("avg 2D k3 s2 p1", (3, 7, 7), 3, dict(stride=2, padding=1)),
        ("avg 2D ceil, no pad count", (2, 6, 5), 3, dict(stride=2, padding=1, ceil_mode=True,
                                                        count_include_pad=False)),
        ("avg 3D k2", (2, 4, 4, 4), 2, {}),
    ]:
        def check(ishape=ishape, k=k, opts=opts):
            x = rand(*ishape)
            P = pool.avg_pool_matrix(ishape, k, **opts)
            return err(P @ x.ravel(), avg[len(ishape) - 1](torch.from_numpy(x)[None], k, **opts).numpy())
        cases.append(("pooling", label, check))
    for label, ishape, k, opts in [
        ("max 1D k3 s2", (2, 9), 3, dict(stride=2)),
        ("max 2D k2", (3, 6, 6), 2, {}),
        ("max 2D k3 s2 p1 dil 2", (2, 9, 9), 3, dict(stride=2, padding=1, dilation=2)),
        ("max 3D k2", (1, 4, 4, 4), 2, {}),
    ]:
        def check(ishape=ishape, k=k, opts=opts):
            x = rand(*ishape)
            S = pool.max_pool_matrix(x, k, **opts)
            xt = torch.from_numpy(x)[None].requires_grad_(True)
            y = mx[len(ishape) - 1](xt, k, **opts)
            delta = rand(*y.shape)
            y.backward(torch.from_numpy(delta))
            return max(err(S @ x.ravel(), y.detach().numpy()), err(S.T @ delta.ravel(), xt.grad.numpy()))
        cases.append(("pooling", label, check))
    for label, ishape, size in [("adaptive 1D 7->3", (2, 7), 3), ("adaptive 2D 7x5->3x2", (2, 7, 5), (3, 2)),
                                ("adaptive 2D global", (3, 5, 5), 1)]:
        def check(ishape=ishape, size=size):
            x = rand(*ishape)
            P = pool.adaptive_avg_pool_matrix(ishape, size)
            return err(P @ x.ravel(), ada[len(ishape) - 1](torch.from_numpy(x)[None], size).numpy())
        cases.append(("pooling", label, check))
    return cases


def _network_cases(rand, err):
    """A compiled CNN against torch: forward and input gradient (when compile is there)."""
    import torch
    import torch.nn as nn

    import toeplitz_conv as tc

    if not hasattr(tc, "compile"):
        return []

    def build():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, stride=2, padding=1, padding_mode="reflect"), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
        ).double()

    def network():
        model = build()
        x = rand(2, 1, 8, 8)
        net = tc.compile(model, (1, 8, 8))
        xt = torch.from_numpy(x).requires_grad_(True)
        y = model(xt)
        ours = np.asarray(net.forward(x))
        e = err(ours, y.detach().numpy())
        delta = rand(*y.shape)
        y.backward(torch.from_numpy(delta))
        grads, dx = net.backward(delta)
        e = max(e, err(dx, xt.grad.numpy()))
        for name, p in model.named_parameters():
            e = max(e, err(grads[name], p.grad.numpy()))
        return e

    return [("compiled network", "conv-relu-maxpool-conv(reflect)-relu-gap-linear", network)]


def _verify(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        print(f"{PROG}: error: verify compares against PyTorch; install toeplitz-conv[torch].",
              file=sys.stderr)
        return 2
    cases = _verify_cases(args.atol)
    progress = _Progress(len(cases))
    results = {}  # section -> [count, passed, max error]
    failures = []
    start = time.perf_counter()
    for section, label, check in cases:
        try:
            with warnings.catch_warnings():  # torch's performance hints are not results
                warnings.simplefilter("ignore", UserWarning)
                e = check()
            ok = e <= args.atol
            detail = f"max error {e:.2e} > atol {args.atol:g}"
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
    total, passed = len(cases), sum(r[1] for r in results.values())
    missing = [s for s, present in (("pooling", "pooling" in results),
                                    ("compiled network", "compiled network" in results)) if not present]
    if missing:
        print(f"(not checked, not in this version: {', '.join(missing)})")
    if failures:
        print(f"\n{len(failures)} of {total} checks FAILED (float64, atol {args.atol:g}):")
        for line in failures:
            print("  " + line)
        return 1
    print(f"all {passed} checks passed against torch {torch.__version__} "
          f"(float64, atol {args.atol:g}) in {elapsed:.1f} s")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Every convolution layer as its explicit sparse matrix: y = C @ x, "
                    "dx = C.T @ delta, dW from the same (row, col, tap) triples.",
        epilog="Run 'toeplitz-conv COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = sub.add_parser(
        "demo", help="a small conv layer as a matrix, checked against PyTorch",
        description="A 3x3 kernel on a 4x4 image: prints C, y = C @ x, C.T @ delta next to "
                    "conv_transpose2d and the weight gradient, checks them against PyTorch, "
                    "and writes a spy plot and a gradient figure.")
    demo.add_argument("--out", metavar="DIR", default=".",
                      help="folder for demo_spy.png and demo_gradient.png (default: current folder)")
    demo.set_defaults(func=_demo)

    spy = sub.add_parser(
        "spy", help="draw the matrix of any conv layer",
        description="Draw the matrix C of a conv layer with random weights (spy plot with "
                    "channel and image-row lines) and print its shape and size.",
        epilog="example: toeplitz-conv spy --input 3x8x8 --kernel 4x3x3x3 --stride 2 --padding 1 -o C.png")
    spy.add_argument("--input", required=True, metavar="CxHxW",
                     type=_arg(v.parse_sizes, "--input"),
                     help="shape of one input sample, e.g. 3x8x8 (1D: 3x16, 3D: 2x4x8x8)")
    spy.add_argument("--kernel", required=True, metavar="OUTxINxKHxKW",
                     type=_arg(v.parse_sizes, "--kernel"),
                     help="weight shape (C_out, C_in/groups, *kernel), e.g. 4x3x3x3")
    spy.add_argument("--stride", default=1, metavar="S", type=_arg(v.parse_sizes, "--stride"),
                     help="stride, e.g. 2 or 2x1 (default 1)")
    spy.add_argument("--padding", default=0, metavar="P",
                     type=_arg(v.parse_sizes, "--padding", words=("same", "valid"), minimum=0),
                     help="padding, e.g. 1, 1x0, same or valid (default 0)")
    spy.add_argument("--dilation", default=1, metavar="D", type=_arg(v.parse_sizes, "--dilation"),
                     help="dilation, e.g. 2 (default 1)")
    spy.add_argument("--groups", default=1, metavar="G", type=_arg(v.parse_count, "--groups"),
                     help="groups (default 1)")
    spy.add_argument("--padding-mode", default="zeros", choices=v.PADDING_MODES,
                     help="as nn.Conv2d (default zeros)")
    spy.add_argument("--mode", default="auto", choices=("auto", "values", "markers", "density"),
                     help="values as colour, markers, or a nonzero histogram (default auto)")
    spy.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    spy.add_argument("--dpi", type=int, default=110, help="resolution of the image (default 110)")
    spy.add_argument("-o", "--output", default="conv_matrix.png", metavar="FILE",
                     help="image file to write (.png, .pdf, .svg; default conv_matrix.png)")
    spy.set_defaults(func=_spy)

    verify = sub.add_parser(
        "verify", help="check the library against PyTorch over a grid of geometries",
        description="Check conv matrices (forward), their transposes (input gradient and "
                    "conv_transposeNd), weight gradients, pooling matrices and a compiled "
                    "network against PyTorch in float64. Exit status 1 on any mismatch.")
    verify.add_argument("--atol", type=float, default=1e-10,
                        help="largest absolute difference accepted (default 1e-10)")
    verify.set_defaults(func=_verify)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a check failed, 2 bad arguments)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError) as e:  # the library's messages are written for users
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)  # one line
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
