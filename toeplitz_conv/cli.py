"""The ``toeplitz-conv`` command (also ``python -m toeplitz_conv``).

Commands::

    toeplitz-conv demo [--out DIR]         a small conv layer as a matrix, checked against PyTorch
    toeplitz-conv spy --input 3x8x8 --kernel 4x3x3x3 [--stride 2] [--padding 1] [-o C.png]
    toeplitz-conv explore --input 1x5x5 --kernel 1x1x3x3 [-o layer.html]
    toeplitz-conv animate --input 2x5x5 --kernel 2x2x3x3 [--transposed] [-o conv.gif]
    toeplitz-conv verify [--atol 1e-10]    the library against PyTorch over a grid of geometries
    toeplitz-conv --version

Every argument is checked before any work (:mod:`toeplitz_conv._cli_args`, and what the layer
would cost: :mod:`toeplitz_conv._cli_limits`): a bad one gives one line naming the flag, the
rule and what arrived, as argparse writes it
(``toeplitz-conv spy: error: argument --dpi: ...``), and exit status 2. Exit status 1 means a
check of ``demo`` or ``verify`` failed.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from . import verify
from ._against import against_arguments, check_against, load_callable
from ._cli_args import (ArgumentError, CommandParser, UsageError, arg_type, check_animated_channels,
                        dpi_argument, image_suffixes, layer_arguments, layer_flags, layer_geometry,
                        layer_options, output_argument, output_file, output_folder, parse_atol)
from ._cli_limits import (EXPLORE_BYTES_PER_NONZERO, SPY_BYTES_PER_NONZERO, check_animation,
                          check_frames_memory, check_memory, check_pixels, spy_image)
from .conv import conv_matrix, conv_weight_grad, csr_size
from .memory import human_bytes
from .plot import animate, explore, gradient_figure, spy
from .plot.explorer import EXPLORER_MAX_ENTRIES, EXPLORER_MAX_NONZEROS
from .plot.layout import figure_size

PROG = "toeplitz-conv"
DISTRIBUTION = "toeplitz-conv"  # [project] name in pyproject.toml


class _OutputError(ValueError):
    """A file or folder named on the command line cannot be written."""


def version() -> str:
    """The installed distribution's version; the package's ``__version__`` when not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree: the package says it
        return getattr(sys.modules.get(__package__), "__version__", "unknown")


def _pyplot() -> ModuleType:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg")  # writing files only: no window
    import matplotlib.pyplot as plt

    return plt


def _x(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


# --------------------------------------------------------------------------- demo


def _demo(args: argparse.Namespace) -> int:
    """A 1x4x4 input, a 3x3 kernel: C, the output, C.T @ delta and the weight gradient."""
    out = output_folder("--out", args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _OutputError(f"argument --out: cannot write to {str(out)!r}: {e}") from None
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
    _demo_figures(out, x, w, delta)
    return status


def _side_by_side(a: np.ndarray, b: np.ndarray, ta: str, tb: str) -> str:
    la, lb = str(a).splitlines(), str(b).splitlines()
    width = max(len(ta), *(len(s) for s in la)) + 4
    lines = [ta.ljust(width) + tb] + [s.ljust(width) + t for s, t in zip(la, lb)]
    return "\n".join(lines)


def _demo_figures(out: Path, x: npt.NDArray[np.float64], w: npt.NDArray[np.float64],
                  delta: npt.NDArray[np.float64]) -> None:
    plt = _pyplot()
    C = conv_matrix(w, x.shape)
    fig, ax = plt.subplots(figsize=(9, 3), layout="constrained")
    spy(C, ax=ax, input_shape=x.shape, output_shape=(1, 2, 2),
        title="the demo's C: 3x3 Sobel kernel on a 4x4 image (4 x 16)")
    spy_path = out / "demo_spy.png"
    fig = gradient_figure(x, w, grad_output=delta.reshape(1, 2, 2))
    grad_path = out / "demo_gradient.png"
    try:
        ax.figure.savefig(spy_path, dpi=100)
        fig.savefig(grad_path, dpi=100)
    except OSError as e:
        raise _OutputError(f"argument --out: cannot write to {str(out)!r}: {e}") from None
    finally:
        plt.close("all")
    print(f"\nwrote the spy plot to {spy_path} and the gradient figure to {grad_path}")


# --------------------------------------------------------------------------- spy


def _layer(args: argparse.Namespace, transposed: bool = False
           ) -> tuple[npt.NDArray[np.float64], tuple[int, ...], dict[str, Any]]:
    """``(weight, input_shape, options)`` of the layer the arguments describe, its random
    weights drawn: called once the caller has its geometry (:func:`layer_geometry`), so
    a broken layer is refused before anything is drawn."""
    w = np.random.default_rng(args.seed).standard_normal(args.kernel)
    return w, args.input, layer_options(args, transposed)


def _save(fig_or_anim: Any, out: Path, **kw: Any) -> None:
    """Write a figure (or an animation, ``writer=`` in ``kw``) to ``out``, creating its folder."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        (fig_or_anim.save if "writer" in kw else fig_or_anim.savefig)(out, **kw)
    except (OSError, ValueError) as e:  # a full disk, a path that changed since the check
        raise _OutputError(f"argument -o/--output: cannot write {str(out)!r}: {e}") from None


def _spy(args: argparse.Namespace) -> int:
    geom = layer_geometry(args)
    out = output_file("-o/--output", args.output, "conv_matrix.png", image_suffixes(), "the image file")
    m, n = geom.shape
    check_memory(args, "spy", geom, SPY_BYTES_PER_NONZERO, spy_image(geom, args.mode))
    layer = f"{geom.describe()}\n{_x(geom.in_shape)} -> {_x(geom.out_shape)}"
    size = figure_size(m, n, colorbar=args.mode != "markers",  # the figure spy will draw
                       title_lines=layer.count("\n") + 3)
    check_pixels(args.dpi, *size, "the spy plot")

    w, inp, opts = _layer(args)
    C = conv_matrix(w, inp, **opts)
    nbytes = C.data.nbytes + C.indices.nbytes + C.indptr.nbytes
    print(f"input  {_x(geom.in_shape)} -> output {_x(geom.out_shape)}   (kernel {_x(w.shape)}, "
          f"random N(0, 1) weights, seed {args.seed})")
    print(f"C: {m:,} x {n:,}, {C.nnz:,} nonzeros, density {100 * C.nnz / (m * n):.3g}%, "
          f"{human_bytes(nbytes)} as CSR ({human_bytes(m * n * 8)} dense)")
    plt = _pyplot()  # the Agg backend before spy makes its figure
    ax = spy(C, input_shape=geom.in_shape, output_shape=geom.out_shape, mode=args.mode, layer=layer)
    try:
        _save(ax.figure, out, dpi=args.dpi)
    finally:
        plt.close(ax.figure)
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------- explore


def _explore(args: argparse.Namespace) -> int:
    geom = layer_geometry(args)
    m, n = geom.shape
    if max(m, n) > EXPLORER_MAX_ENTRIES:
        raise ArgumentError(
            f"arguments {layer_flags(args)}: explore is for small "
            f"layers, at most {EXPLORER_MAX_ENTRIES:,} input and output entries (to stay readable); "
            f"got {n:,} inputs and {m:,} outputs.")
    nnz = csr_size(geom, 8)[0]
    if nnz > EXPLORER_MAX_NONZEROS:
        raise ArgumentError(f"arguments {layer_flags(args)}: explore is for small layers, at most "
                            f"{EXPLORER_MAX_NONZEROS:,} nonzeros in C (to keep the file small); got {nnz:,}.")
    out = output_file("-o/--output", args.output, "layer.html", {".html", ".htm"}, "the HTML file")
    check_memory(args, "explore", geom, EXPLORE_BYTES_PER_NONZERO)
    w, inp, opts = _layer(args)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        explore(w, inp, path=out, **opts)
    except OSError as e:
        raise _OutputError(f"argument -o/--output: cannot write {str(out)!r}: {e}") from None
    print(f"wrote {out}: {_x(geom.in_shape)} -> {_x(geom.out_shape)}, open it in a browser")
    return 0


# --------------------------------------------------------------------------- animate


def _animate(args: argparse.Namespace) -> int:
    check_animated_channels(args)
    geom = layer_geometry(args, transposed=args.transposed)
    check_animation(args, geom)
    out = output_file("-o/--output", args.output, "conv.gif", {".gif"}, "the GIF file")
    check_memory(args, "animate", geom)
    plt = _pyplot()
    w, inp, opts = _layer(args, transposed=args.transposed)
    anim = animate(w, inp, transposed=args.transposed, **opts)
    try:
        fig = plt.gcf()  # the figure animate drew into: its size fixes the frames' pixels
        pixels = check_pixels(args.dpi, *cast("tuple[float, float]", fig.get_size_inches()), "each frame")
        check_frames_memory(geom.shape[1] if args.transposed else geom.shape[0], pixels, args.dpi)
    except ArgumentError:
        with warnings.catch_warnings():  # matplotlib's "deleted without rendering": we meant it
            warnings.simplefilter("ignore", UserWarning)
            del anim
            plt.close("all")
            gc.collect()
        raise
    try:
        _save(anim, out, writer="pillow", dpi=args.dpi)
    finally:
        plt.close("all")
    print(f"wrote {out}")
    return 0


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
    spy_cmd.set_defaults(func=_spy)

    explore_cmd = sub.add_parser(
        "explore", help="write a layer's interactive explorer (one HTML file)",
        description="Write one self-contained HTML file (no network) showing a conv layer's "
                    "input, output and matrix C: click an output pixel to light its receptive "
                    "field (its row of C), an input pixel for its column (the transposed "
                    "convolution).",
        epilog="example: toeplitz-conv explore --input 1x5x5 --kernel 1x1x3x3 --stride 2 --padding 1 -o layer.html")
    layer_arguments(explore_cmd)
    output_argument(explore_cmd, "layer.html", "HTML file to write")
    explore_cmd.set_defaults(func=_explore)

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
    animate_cmd.set_defaults(func=_animate)

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
