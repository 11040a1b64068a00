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
from pathlib import Path

import numpy as np

from . import verify
from .conv import conv_matrix, conv_weight_grad
from .geometry import PADDING_MODES, conv_geometry, conv_transpose_geometry
from .memory import human_bytes
from .plot import animate, explore, gradient_figure, spy

PROG = "toeplitz-conv"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``toeplitz-conv: error: ...`` and exit status 2."""

    def error(self, message):
        raise _UsageError(message)


class _UsageError(Exception):
    pass


class _OutputError(ValueError):
    """A file or folder named on the command line cannot be written."""


def _parse_sizes(name: str, text: str, *, words=(), minimum: int = 1):
    """Command-line sizes: '3x8x8' -> (3, 8, 8), '2' -> (2,); ``words`` pass through ('same')."""
    if text in words:
        return text
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        extra = f" or {', '.join(map(repr, words))}" if words else ""
        raise ValueError(f"{name} must be sizes like 3x8x8 or 2{extra}; got {text!r}.") from None
    if any(s < minimum for s in sizes):
        rule = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must contain {rule} sizes; got {text!r}.")
    return sizes


def _parse_count(name: str, text: str) -> int:
    """A command-line positive integer such as ``--groups 2``."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be one positive integer; got {text!r}.") from None
    if value < 1:
        raise ValueError(f"{name} must be one positive integer; got {text!r}.")
    return value


def _arg(parse, name, **kw):
    """An argparse ``type=`` from one of the parsers above (its ValueError is the message)."""

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

    x = np.arange(1.0, 17.0).reshape(1, 4, 4)
    w = np.array([[[[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]]])  # Sobel x
    C = conv_matrix(w, x.shape)
    np.set_printoptions(linewidth=120, precision=4, suppress=True)
    print("A 3x3 kernel (Sobel) on a 4x4 image, no padding: y = C @ x with C of shape", C.shape)
    print(C.toarray())
    y = C @ x.ravel()
    print("\ny = C @ x.ravel() =", y, " (2x2 output)")
    delta = np.array([1.0, -1.0, 0.5, 2.0])
    print("\ninput gradient C.T @ delta, delta =", delta)
    dx = (C.T @ delta).reshape(4, 4)
    dW = conv_weight_grad(x, delta.reshape(1, 2, 2), w.shape)
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


    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _OutputError(f"argument --out: cannot write to {str(out)!r}: {e}") from None
    C = conv_matrix(w, x.shape)
    fig, ax = plt.subplots(figsize=(9, 3), layout="constrained")
    spy(C, ax=ax, input_shape=x.shape, output_shape=(1, 2, 2),
           title="the demo's C: 3x3 Sobel kernel on a 4x4 image (4 x 16)")
    spy_path = out / "demo_spy.png"
    ax.figure.savefig(spy_path, dpi=100)
    plt.close(ax.figure)
    fig = gradient_figure(x, w, grad_output=delta.reshape(1, 2, 2))
    grad_path = out / "demo_gradient.png"
    fig.savefig(grad_path, dpi=100)
    plt.close(fig)
    print(f"\nwrote the spy plot to {spy_path} and the gradient figure to {grad_path}")


# --------------------------------------------------------------------------- spy


def _layer(args, transposed=False):
    """``(weight, input_shape, options, geometry)`` of the layer the arguments describe (the
    transposed convolution's geometry when ``transposed``)."""
    kernel, inp = args.kernel, args.input
    if len(kernel) != len(inp) + 1 or len(kernel) not in (3, 4, 5):
        raise ValueError(
            f"--kernel must be C_outxC_in/groupsxKERNEL with one more size than --input "
            f"(C_inxSPATIAL), 1 to 3 spatial sizes; got --kernel {'x'.join(map(str, kernel))} "
            f"and --input {'x'.join(map(str, inp))}."
        )
    opts = dict(stride=_one(args.stride), padding=_one(args.padding),
                dilation=_one(args.dilation), groups=args.groups, padding_mode=args.padding_mode)
    if transposed:
        del opts["padding_mode"]
        geom = conv_transpose_geometry(kernel, inp, **opts)
    else:
        geom = conv_geometry(kernel, inp, **opts)
    return np.random.default_rng(args.seed).standard_normal(kernel), inp, opts, geom


def _spy(args) -> int:
    w, inp, opts, geom = _layer(args)
    kernel = w.shape
    m, n = geom.shape
    C = conv_matrix(w, inp, **opts)
    nbytes = C.data.nbytes + C.indices.nbytes + C.indptr.nbytes
    print(f"input  {_x(geom.in_shape)} -> output {_x(geom.out_shape)}   (kernel {_x(kernel)}, "
          f"random N(0, 1) weights, seed {args.seed})")
    print(f"C: {m:,} x {n:,}, {C.nnz:,} nonzeros, density {100 * C.nnz / (m * n):.3g}%, "
          f"{human_bytes(nbytes)} as CSR ({human_bytes(m * n * 8)} dense)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = spy(C, input_shape=geom.in_shape, output_shape=geom.out_shape, mode=args.mode,
             layer=f"{geom.describe()}\n{_x(geom.in_shape)} -> {_x(geom.out_shape)}")
    fig = ax.figure
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


# --------------------------------------------------------------------------- explore


def _explore(args) -> int:
    w, inp, opts, geom = _layer(args)
    out = Path(args.output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        explore(w, inp, path=out, **opts)
    except OSError as e:
        raise _OutputError(f"argument -o/--output: cannot write {str(out)!r}: {e}") from None
    print(f"wrote {out}: {_x(geom.in_shape)} -> {_x(geom.out_shape)}, open it in a browser")
    return 0


# --------------------------------------------------------------------------- animate


def _animate(args) -> int:
    w, inp, opts, geom = _layer(args, transposed=args.transposed)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opts.pop("groups")
    anim = animate(w, inp, transposed=args.transposed, **opts)
    out = Path(args.output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        anim.save(out, writer="pillow", dpi=args.dpi)
    except (OSError, ValueError) as e:
        raise _OutputError(f"argument -o/--output: cannot write {str(out)!r}: {e}") from None
    finally:
        plt.close("all")
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------- verify


def _verify(args) -> int:
    return verify.run(args.atol, PROG)


# --------------------------------------------------------------------------- parser


def _layer_arguments(cmd) -> None:
    """The arguments that describe one layer (random weights), shared by spy and explore."""
    cmd.add_argument("--input", required=True, metavar="CxHxW",
                     type=_arg(_parse_sizes, "--input"),
                     help="shape of one input sample, e.g. 3x8x8 (1D: 3x16, 3D: 2x4x8x8)")
    cmd.add_argument("--kernel", required=True, metavar="OUTxINxKHxKW",
                     type=_arg(_parse_sizes, "--kernel"),
                     help="weight shape (C_out, C_in/groups, *kernel), e.g. 4x3x3x3")
    cmd.add_argument("--stride", default=1, metavar="S", type=_arg(_parse_sizes, "--stride"),
                     help="stride, e.g. 2 or 2x1 (default 1)")
    cmd.add_argument("--padding", default=0, metavar="P",
                     type=_arg(_parse_sizes, "--padding", words=("same", "valid"), minimum=0),
                     help="padding, e.g. 1, 1x0, same or valid (default 0)")
    cmd.add_argument("--dilation", default=1, metavar="D", type=_arg(_parse_sizes, "--dilation"),
                     help="dilation, e.g. 2 (default 1)")
    cmd.add_argument("--groups", default=1, metavar="G", type=_arg(_parse_count, "--groups"),
                     help="groups (default 1)")
    cmd.add_argument("--padding-mode", default="zeros", choices=PADDING_MODES,
                     help="as nn.Conv2d (default zeros)")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")


def _output_argument(cmd, default: str, what: str) -> None:
    cmd.add_argument("-o", "--output", default=default, metavar="FILE", help=f"{what} (default {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Every convolution layer as its explicit sparse matrix: y = C @ x, "
                    "dx = C.T @ delta, dW from the same (row, col, tap) triples.",
        epilog="Run 'toeplitz-conv COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo_cmd = sub.add_parser(
        "demo", help="a small conv layer as a matrix, checked against PyTorch",
        description="A 3x3 kernel on a 4x4 image: prints C, y = C @ x, C.T @ delta next to "
                    "conv_transpose2d and the weight gradient, checks them against PyTorch, "
                    "and writes a spy plot and a gradient figure.")
    demo_cmd.add_argument("--out", metavar="DIR", default=".",
                      help="folder for demo_spy.png and demo_gradient.png (default: current folder)")
    demo_cmd.set_defaults(func=_demo)

    spy_cmd = sub.add_parser(
        "spy", help="draw the matrix of any conv layer",
        description="Draw the matrix C of a conv layer with random weights (spy plot with "
                    "channel and image-row lines) and print its shape and size.",
        epilog="example: toeplitz-conv spy --input 3x8x8 --kernel 4x3x3x3 --stride 2 --padding 1 -o C.png")
    _layer_arguments(spy_cmd)
    spy_cmd.add_argument("--mode", default="auto", choices=("auto", "values", "markers", "density"),
                     help="values as colour, markers, or a nonzero histogram (default auto)")
    spy_cmd.add_argument("--dpi", type=int, default=110, help="resolution of the image (default 110)")
    _output_argument(spy_cmd, "conv_matrix.png", "image file to write (.png, .pdf, .svg)")
    spy_cmd.set_defaults(func=_spy)

    explore_cmd = sub.add_parser(
        "explore", help="write a layer's interactive explorer (one HTML file)",
        description="Write one self-contained HTML file (no network) showing a conv layer's "
                    "input, output and matrix C: click an output pixel to light its receptive "
                    "field (its row of C), an input pixel for its column (the transposed "
                    "convolution).",
        epilog="example: toeplitz-conv explore --input 1x5x5 --kernel 1x1x3x3 --stride 2 --padding 1 -o layer.html")
    _layer_arguments(explore_cmd)
    _output_argument(explore_cmd, "layer.html", "HTML file to write")
    explore_cmd.set_defaults(func=_explore)

    animate_cmd = sub.add_parser(
        "animate", help="the kernel sliding over the input, with the matrix row it is (a GIF)",
        description="Write a GIF of a single-channel conv layer (random N(0, 1) weights of "
                    "--kernel's shape): the padded input with the kernel window, the output pixel, "
                    "and the row of C it is; --transposed: the transposed convolution, one column "
                    "at a time.",
        epilog="example: toeplitz-conv animate --input 1x5x5 --kernel 1x1x3x3 --stride 2 --padding 1 -o conv.gif")
    _layer_arguments(animate_cmd)
    animate_cmd.add_argument("--transposed", action="store_true",
                             help="the transposed convolution (conv_transpose2d) instead")
    animate_cmd.add_argument("--dpi", type=int, default=70, help="resolution of the frames (default 70)")
    _output_argument(animate_cmd, "conv.gif", "GIF file to write")
    animate_cmd.set_defaults(func=_animate)

    verify_cmd = sub.add_parser(
        "verify", help="check the library against PyTorch over a grid of geometries",
        description="Check conv matrices (forward), their transposes (input gradient and "
                    "conv_transposeNd), weight gradients, pooling matrices and a compiled "
                    "network against PyTorch in float64. Exit status 1 on any mismatch.")
    verify_cmd.add_argument("--atol", type=float, default=1e-10,
                        help="largest absolute difference accepted (default 1e-10)")
    verify_cmd.set_defaults(func=_verify)
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
