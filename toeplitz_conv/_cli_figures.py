"""The ``toeplitz-conv`` commands that draw: ``spy``, ``explore``, ``animate``, and the demo's two
figures. Each checks its layer and what it would cost (:mod:`toeplitz_conv._cli_args`,
:mod:`toeplitz_conv._cli_limits`) before it builds a matrix or opens a figure, and writes its
file under the ``Agg`` backend; a file that cannot be written is an :class:`OutputError` that
names the flag.
"""

from __future__ import annotations

import argparse
import gc
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from ._cli_args import (ArgumentError, check_animated_channels, image_suffixes, layer_flags, layer_geometry,
                        layer_options, output_file)
from ._cli_limits import (EXPLORE_BYTES_PER_NONZERO, SPY_BYTES_PER_NONZERO, check_animation,
                          check_frames_memory, check_memory, check_pixels, spy_image)
from .conv import conv_matrix, csr_size
from .memory import human_bytes
from .plot import animate, explore, gradient_figure, spy
from .plot.explorer import EXPLORER_MAX_ENTRIES, EXPLORER_MAX_NONZEROS
from .plot.layout import figure_size


class OutputError(ValueError):
    """A file or folder named on the command line cannot be written."""


def pyplot() -> ModuleType:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg")  # writing files only: no window
    import matplotlib.pyplot as plt

    return plt


def shape_text(shape: Sequence[int]) -> str:
    """``'3x8x8'`` for ``(3, 8, 8)``."""
    return "x".join(map(str, shape))


def demo_figures(out: Path, x: npt.NDArray[np.float64], w: npt.NDArray[np.float64],
                 delta: npt.NDArray[np.float64]) -> None:
    """The demo's two figures in ``out``: its matrix's spy plot and the gradient figure."""
    plt = pyplot()
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
        raise OutputError(f"argument --out: cannot write to {str(out)!r}: {e}") from None
    finally:
        plt.close("all")
    print(f"\nwrote the spy plot to {spy_path} and the gradient figure to {grad_path}")


def random_layer(args: argparse.Namespace, transposed: bool = False
           ) -> tuple[npt.NDArray[np.float64], tuple[int, ...], dict[str, Any]]:
    """``(weight, input_shape, options)`` of the layer the arguments describe, its random
    weights drawn: called once the caller has its geometry (:func:`layer_geometry`), so
    a broken layer is refused before anything is drawn."""
    w = np.random.default_rng(args.seed).standard_normal(args.kernel)
    return w, args.input, layer_options(args, transposed)


def save(fig_or_anim: Any, out: Path, **kw: Any) -> None:
    """Write a figure (or an animation, ``writer=`` in ``kw``) to ``out``, creating its folder."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        (fig_or_anim.save if "writer" in kw else fig_or_anim.savefig)(out, **kw)
    except (OSError, ValueError) as e:  # a full disk, a path that changed since the check
        raise OutputError(f"argument -o/--output: cannot write {str(out)!r}: {e}") from None


# --------------------------------------------------------------------------- spy


def spy_command(args: argparse.Namespace) -> int:
    """``toeplitz-conv spy``: the layer's matrix as a spy plot, its size printed; exit status 0."""
    geom = layer_geometry(args)
    out = output_file("-o/--output", args.output, "conv_matrix.png", image_suffixes(), "the image file")
    m, n = geom.shape
    check_memory(args, "spy", geom, SPY_BYTES_PER_NONZERO, spy_image(geom, args.mode))
    layer = f"{geom.describe()}\n{shape_text(geom.in_shape)} -> {shape_text(geom.out_shape)}"
    size = figure_size(m, n, colorbar=args.mode != "markers",  # the figure spy will draw
                       title_lines=layer.count("\n") + 3)
    check_pixels(args.dpi, *size, "the spy plot")

    w, inp, opts = random_layer(args)
    C = conv_matrix(w, inp, **opts)
    nbytes = C.data.nbytes + C.indices.nbytes + C.indptr.nbytes
    print(f"input  {shape_text(geom.in_shape)} -> output {shape_text(geom.out_shape)}   (kernel {shape_text(w.shape)}, "
          f"random N(0, 1) weights, seed {args.seed})")
    print(f"C: {m:,} x {n:,}, {C.nnz:,} nonzeros, density {100 * C.nnz / (m * n):.3g}%, "
          f"{human_bytes(nbytes)} as CSR ({human_bytes(m * n * 8)} dense)")
    plt = pyplot()  # the Agg backend before spy makes its figure
    ax = spy(C, input_shape=geom.in_shape, output_shape=geom.out_shape, mode=args.mode, layer=layer)
    try:
        save(ax.figure, out, dpi=args.dpi)
    finally:
        plt.close(ax.figure)
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------- explore


def explore_command(args: argparse.Namespace) -> int:
    """``toeplitz-conv explore``: the layer's explorer, one HTML file; exit status 0."""
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
    w, inp, opts = random_layer(args)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        explore(w, inp, path=out, **opts)
    except OSError as e:
        raise OutputError(f"argument -o/--output: cannot write {str(out)!r}: {e}") from None
    print(f"wrote {out}: {shape_text(geom.in_shape)} -> {shape_text(geom.out_shape)}, open it in a browser")
    return 0


# --------------------------------------------------------------------------- animate


def animate_command(args: argparse.Namespace) -> int:
    """``toeplitz-conv animate``: the GIF of the kernel sliding, with the row of C it is; exit status 0."""
    check_animated_channels(args)
    geom = layer_geometry(args, transposed=args.transposed)
    check_animation(args, geom)
    out = output_file("-o/--output", args.output, "conv.gif", {".gif"}, "the GIF file")
    check_memory(args, "animate", geom)
    plt = pyplot()
    w, inp, opts = random_layer(args, transposed=args.transposed)
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
        save(anim, out, writer="pillow", dpi=args.dpi)
    finally:
        plt.close("all")
    print(f"wrote {out}")
    return 0
