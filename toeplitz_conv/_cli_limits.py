"""What the ``toeplitz-conv`` command would allocate and draw, refused before any work.

spy, explore and animate estimate, from the layer's geometry alone, the memory their matrix,
images and frames would need and hold it against the library's memory limit
(``TOEPLITZ_CONV_MAX_BYTES``), and keep the drawings within their own limits (pixels, frames,
cells). A refusal is an :class:`~toeplitz_conv._cli_args.ArgumentError` naming the flags that
gave the layer, as every broken argument is.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from math import prod
from typing import Literal

import numpy as np

from ._cli_args import ArgumentError, layer_flags
from .geometry import ConvGeometry
from .indexing import index_dtype
from .memory import human_bytes, memory_limit
from .pattern import TABLE_BYTES_PER_ENTRY, estimate_nnz
from .plot.animation import ANIMATE_MAX_CELLS, ANIMATE_MAX_FRAMES  # the figure's own limits, without matplotlib

#: The most pixels one image (or GIF frame) may have.
MAX_PIXELS = 50_000_000
#: Bytes per nonzero beyond the CSR matrix: spy's drawn indices (rows, density bins);
#: explore's page (Python lists of the values and indices, then their JSON text).
SPY_BYTES_PER_NONZERO = 24
EXPLORE_BYTES_PER_NONZERO = 200
#: The most entries of a matrix spy may draw as a dense image without being asked to (a
#: density plot whose cells would hold single entries draws the values instead).
SPY_DENSE_MAX = 4_000_000


def _limit() -> tuple[int, str]:
    """The memory limit and how the message names it."""
    limit, source = memory_limit()
    if not os.environ.get("TOEPLITZ_CONV_MAX_BYTES"):
        source += "; the TOEPLITZ_CONV_MAX_BYTES environment variable sets it"
    return limit, f"the memory limit of {human_bytes(limit)} ({source})"


def check_memory(args: argparse.Namespace, command: str, geom: ConvGeometry, per_nonzero: int = 0,
                 extra: Iterable[tuple[str, int]] = ()) -> int:
    """Refuse a layer whose weights, index table and matrix (plus ``per_nonzero`` bytes per
    nonzero and the ``(what, bytes)`` of ``extra``) would exceed the memory limit; returns
    the bytes estimated. Counted from the geometry alone: nothing is allocated."""
    limit, limit_text = _limit()
    m, n = geom.shape
    parts = [("the random weights", prod(geom.weight_shape) * 8),
             ("the index table", prod(geom.out_spatial) * geom.taps * TABLE_BYTES_PER_ENTRY)]
    nnz = None
    if sum(b for _, b in parts) <= limit:  # else counting the nonzeros is not worth it
        nnz = estimate_nnz(geom)
        idx = np.dtype(index_dtype(nnz, m, n)).itemsize
        parts.append((f"the {m:,} x {n:,} matrix: {nnz:,} nonzeros as CSR",
                      nnz * (8 + idx) + (m + 1) * idx))
        if per_nonzero:
            parts.append((f"{command}'s {per_nonzero} bytes per nonzero", per_nonzero * nnz))
        parts += list(extra)
    total = sum(b for _, b in parts)
    if total > limit:
        detail = "; ".join(f"{what} {human_bytes(b)}" for what, b in parts)
        raise ArgumentError(
            f"arguments {layer_flags(args)}: {command} would need {'about' if nnz is not None else 'at least'} "
            f"{human_bytes(total)} ({detail}), more than {limit_text}.")
    return total


def spy_image(geom: ConvGeometry, mode: Literal["auto", "values", "markers", "density"]
              ) -> list[tuple[str, int]]:
    """``[(what, bytes)]`` of the dense image of the values spy may draw: asked for (``--mode
    values``, refused past the limit naming --mode), or chosen (``auto`` up to 250k entries, a
    density of single entries up to SPY_DENSE_MAX)."""
    limit, limit_text = _limit()
    m, n = geom.shape
    nbytes = 9 * m * n  # float64 values and a mask byte per entry
    if mode != "values":
        return [("a dense image of the values", nbytes)] if mode != "markers" and m * n <= SPY_DENSE_MAX else []
    if nbytes > limit:
        raise ArgumentError(
            f"argument --mode: --mode values draws a dense image of every entry, {m:,} x {n:,} here: "
            f"about {human_bytes(nbytes)}, more than {limit_text}; --mode density draws any size; got "
            f"'values'.")
    return [("the dense image of --mode values", nbytes)]


def check_pixels(dpi: int, width_in: float, height_in: float, what: str, flag: str = "--dpi") -> int:
    """Pixels of a ``width_in x height_in`` inch figure at ``dpi``, refused past MAX_PIXELS."""
    w, h = round(width_in * dpi), round(height_in * dpi)
    if w * h > MAX_PIXELS:
        raise ArgumentError(
            f"argument {flag}: {what} of {width_in:.3g} x {height_in:.3g} inches at {dpi} dpi would be "
            f"{w:,} x {h:,} pixels, more than {MAX_PIXELS // 10**6} megapixels; got {dpi}.")
    return w * h


def check_animation(args: argparse.Namespace, geom: ConvGeometry) -> None:
    """animate draws 1D or 2D layers of a few channels, at most ANIMATE_MAX_FRAMES frames and
    ANIMATE_MAX_CELLS cells in each grid it writes its indices in."""
    frames = geom.shape[1] if args.transposed else geom.shape[0]
    if args.transposed:
        grids = {"input": prod(geom.out_spatial), "output": prod(geom.in_spatial)}
    else:
        padded = prod(i + lo + hi for i, lo, hi in zip(geom.in_spatial, geom.pad_lo, geom.pad_hi))
        grids = {"padded input": padded, "output": prod(geom.out_spatial)}
    what = "input" if args.transposed else "output"
    if frames > ANIMATE_MAX_FRAMES:
        raise ArgumentError(
            f"arguments {layer_flags(args)}: animate draws one frame per {what} pixel, at most "
            f"{ANIMATE_MAX_FRAMES} (a GIF of a few minutes); got {frames:,} {what} pixels.")
    for grid, cells in grids.items():
        if cells > ANIMATE_MAX_CELLS:
            raise ArgumentError(
                f"arguments {layer_flags(args)}: animate writes the index of every cell of the "
                f"{grid} in each frame, at most {ANIMATE_MAX_CELLS:,} cells; got {cells:,}.")


def check_frames_memory(frames: int, pixels: int, dpi: int) -> None:
    """The GIF writer keeps every frame (RGBA) until it writes the file."""
    limit, limit_text = _limit()
    nbytes = frames * pixels * 4
    if nbytes > limit:
        raise ArgumentError(
            f"argument --dpi: the GIF's {frames} frames of {pixels:,} pixels would hold "
            f"{human_bytes(nbytes)} in memory, more than {limit_text}; got {dpi}.")
