"""The ``toeplitz-conv`` command (also ``python -m toeplitz_conv``).

Commands::

    toeplitz-conv demo [--out DIR]         a small conv layer as a matrix, checked against PyTorch
    toeplitz-conv spy --input 3x8x8 --kernel 4x3x3x3 [--stride 2] [--padding 1] [-o C.png]
    toeplitz-conv explore --input 1x5x5 --kernel 1x1x3x3 [-o layer.html]
    toeplitz-conv animate --input 2x5x5 --kernel 2x2x3x3 [--transposed] [-o conv.gif]
    toeplitz-conv verify [--atol 1e-10]    the library against PyTorch over a grid of geometries
    toeplitz-conv --version

The commands that draw are in :mod:`toeplitz_conv._cli_figures`. Every argument is checked
before any work (:mod:`toeplitz_conv._cli_args`, and what the layer would cost:
:mod:`toeplitz_conv._cli_limits`): a bad one gives one line naming the flag, the
rule and what arrived, as argparse writes it
(``toeplitz-conv spy: error: argument --dpi: ...``), and exit status 2. Exit status 1 means a
check of ``demo`` or ``verify`` failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import cast

import numpy as np

from . import verify
from ._against import against_arguments, check_against, load_callable
from ._cli_args import (ArgumentError, CommandParser, UsageError, arg_type, dpi_argument, layer_arguments,
                        layer_geometry, output_argument, output_folder, parse_atol)
from ._cli_figures import OutputError, animate_command, demo_figures, explore_command, spy_command
from .conv import conv_matrix, conv_weight_grad

PROG = "toeplitz-conv"
DISTRIBUTION = "toeplitz-conv"  # [project] name in pyproject.toml


def version() -> str:
    """The installed distribution's version; the package's ``__version__`` when not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree: the package says it
        return getattr(sys.modules.get(__package__), "__version__", "unknown")


# --------------------------------------------------------------------------- demo


def _demo(args: argparse.Namespace) -> int:
    """A 1x4x4 input, a 3x3 kernel: C, the output, C.T @ delta and the weight gradient."""
    out = output_folder("--out", args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"argument --out: cannot write to {str(out)!r}: {e}") from None
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
        torch = None  # type: ignore[assignment]  # torch is optional: None when not installed
    if torch is None:
        print(dx)
    else:
        xt, wt = torch.tensor(x[None]), torch.tensor(w, requires_grad=True)
        yt = F.conv2d(xt, wt)
        dt = torch.tensor(delta).reshape(1, 1, 2, 2)
        yt.backward(dt)  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
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
            "weight gradient == autograd": np.allclose(dW, wt.grad.numpy()),  # type: ignore[union-attr]  # .grad: set by backward()
        }
        print()
        for name, ok in checks.items():
            print(f"  {'ok  ' if ok else 'FAIL'} {name}")
        status = 0 if all(checks.values()) else 1
    demo_figures(out, x, w, delta)
    return status


def _side_by_side(a: np.ndarray, b: np.ndarray, ta: str, tb: str) -> str:
    la, lb = str(a).splitlines(), str(b).splitlines()
    width = max(len(ta), *(len(s) for s in la)) + 4
    lines = [ta.ljust(width) + tb] + [s.ljust(width) + t for s, t in zip(la, lb)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- verify


def _verify(args: argparse.Namespace) -> int:
    if args.against is None:
        given = [f for f, v in (("--input", args.input), ("--kernel", args.kernel), ("--transposed", args.transposed)) if v]
        if given:
            raise ArgumentError(f"argument {given[0]}: {given[0]} describes the layer of --against "
                                f"MODULE:CALLABLE; got it without --against.")
        return verify.run(1e-10 if args.atol is None else args.atol, f"{PROG} verify")
    if args.input is None or args.kernel is None:
        raise ArgumentError("argument --against: --against needs the layer it should be: --input and --kernel "
                            f"(e.g. --input 3x8x8 --kernel 4x3x3x3); got --input {args.input} and --kernel {args.kernel}.")
    geom = layer_geometry(args, args.transposed)
    return check_against(load_callable(args.against), args, geom)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description="Every convolution layer as its explicit sparse matrix: y = C @ x, "
                    "dx = C.T @ delta, dW from the same (row, col, tap) triples.",
        epilog="Run 'toeplitz-conv COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)

    demo_cmd = sub.add_parser(
        "demo", help="a small conv layer as a matrix, checked against PyTorch",
        description="A 3x3 kernel on a 4x4 image: prints C, y = C @ x, C.T @ delta next to "
                    "conv_transpose2d and the weight gradient, checks them against PyTorch, "
                    "and writes a spy plot and a gradient figure.")
    demo_cmd.add_argument("--out", metavar="DIR", default=".",
                          help="folder for demo_spy.png and demo_gradient.png, created if missing "
                               "(default: current folder)")
    demo_cmd.set_defaults(func=_demo)

    spy_cmd = sub.add_parser(
        "spy", help="draw the matrix of any conv layer",
        description="Draw the matrix C of a conv layer with random weights (spy plot with "
                    "channel and image-row lines) and print its shape and size.",
        epilog="example: toeplitz-conv spy --input 3x8x8 --kernel 4x3x3x3 --stride 2 --padding 1 -o C.png")
    layer_arguments(spy_cmd)
    spy_cmd.add_argument("--mode", default="auto", choices=("auto", "values", "markers", "density"),
                         help="values as colour, markers, or a nonzero histogram (default auto)")
    dpi_argument(spy_cmd, 110, "image")
    output_argument(spy_cmd, "conv_matrix.png", "image file to write (.png, .pdf, .svg)")
    spy_cmd.set_defaults(func=spy_command)

    explore_cmd = sub.add_parser(
        "explore", help="write a layer's interactive explorer (one HTML file)",
        description="Write one self-contained HTML file (no network) showing a conv layer's "
                    "input, output and matrix C: click an output pixel to light its receptive "
                    "field (its row of C), an input pixel for its column (the transposed "
                    "convolution).",
        epilog="example: toeplitz-conv explore --input 1x5x5 --kernel 1x1x3x3 --stride 2 --padding 1 -o layer.html")
    layer_arguments(explore_cmd)
    output_argument(explore_cmd, "layer.html", "HTML file to write")
    explore_cmd.set_defaults(func=explore_command)

    animate_cmd = sub.add_parser(
        "animate", help="the kernel sliding over the input, with the matrix row it is (a GIF)",
        description="Write a GIF of a 1D or 2D conv layer of up to 4 input and 4 output channels, a "
                    "panel each (random N(0, 1) weights of --kernel's shape): the padded input with "
                    "the kernel window, the output pixel, and the row of C it is; --transposed: the "
                    "transposed convolution, one column at a time. 1280 pixels wide at the default "
                    "--dpi 100, for a projector.",
        epilog="example: toeplitz-conv animate --input 1x5x5 --kernel 1x1x3x3 --stride 2 --padding 1 -o conv.gif")
    layer_arguments(animate_cmd, transposed=True)
    animate_cmd.add_argument("--transposed", action="store_true",
                             help="the transposed convolution (conv_transpose2d) instead")
    dpi_argument(animate_cmd, 100, "frames")
    output_argument(animate_cmd, "conv.gif", "GIF file to write")
    animate_cmd.set_defaults(func=animate_command)

    verify_cmd = sub.add_parser(
        "verify", help="check the library against PyTorch over a grid of geometries",
        description="Check conv matrices (forward), their transposes (input gradient and "
                    "conv_transposeNd), weight gradients, pooling matrices and a compiled "
                    "network against PyTorch in float64. Exit status 1 on any mismatch.")
    verify_cmd.add_argument("--atol", default=None, metavar="TOL", type=arg_type(parse_atol, "--atol"),
                            help="largest absolute difference accepted, a finite number >= 0 (default "
                                 "1e-10; with --against: rtol = atol = 1e-10 for a float64 CALLABLE, "
                                 "1e-5 for float32)")
    against_arguments(verify_cmd)
    verify_cmd.set_defaults(func=_verify)
    return parser


def _fail(prog: str, message: object) -> int:
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)  # one line
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status: 0 done, 1 a check of demo or verify
    failed (or the output was closed before the end, as by ``| head``), 2 bad arguments."""
    try:
        status = _run(argv)
        sys.stdout.flush()  # here, where a closed pipe can still be answered
    except BrokenPipeError:  # the reader stopped reading: stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        except (OSError, ValueError):  # a stdout without a file (captured)
            pass
        status = 1
    return status


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except UsageError as e:
        return _fail(e.prog, e.message)
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    if args.command is None:
        parser.print_usage(sys.stderr)
        return _fail(PROG, "a command is required: demo, spy, explore, animate or verify "
                           "(toeplitz-conv --help says what each does)")
    prog = f"{PROG} {args.command}"
    if extra:
        return _fail(prog, f"unrecognized arguments: {' '.join(extra)}")
    try:
        return cast(int, args.func(args))  # a subcommand's function: its exit status
    except (ValueError, TypeError) as e:  # ours name the flag; the library's are for users too
        return _fail(prog, e)
    except (MemoryError, OverflowError) as e:  # past what the estimates foresaw
        return _fail(prog, f"the layer is too large for this machine ({type(e).__name__}: {e}); "
                           f"use a smaller --input or --kernel")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
