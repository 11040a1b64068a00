"""Convolution in motion: the kernel sliding over the input and the matrix row that it is.

Each frame of :func:`animate` shows the same numbers in three places, in the same colours:
the (padded) input grids, one panel per channel, with the kernel's window filled with its
weights; the output grids with the pixel being computed; and the matrix ``C`` with that
pixel's **row** lit. For the transposed convolution each frame takes one input pixel and
scatters the kernel into the output: one **column** of its matrix at a time. Every grid and
``C``'s rows and columns carry the same 0-based ``(c, i, j)`` indices; padded cells are grey,
cells that reflect, replicate or wrap an input pixel (``padding_mode``) are tinted and name
that pixel in italics where the cells are large enough.

This module checks the layer and refuses one too large to watch before anything is built;
:mod:`.animation_frames` draws the figure and its frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt

from .._args import as_array, check_bool, int_tuple, positive_int, real_number
from ..conv import conv_matrix, conv_transpose_matrix
from ..geometry import ConvGeometry, conv_geometry, conv_transpose_geometry
from ..memory import check_size
from .animation_frames import build_frames, grid_text, two_d
from .layout import grid_layout
from .matrices import check_real
from .style import MIN_WIDTH

if TYPE_CHECKING:
    from matplotlib.animation import FuncAnimation

#: An animation is for a layer a viewer can follow: at most this many frames (one per pixel,
#: 0.7 s each: a GIF of a few minutes), and cells in each grid; the command line's limits.
ANIMATE_MAX_FRAMES = 256
ANIMATE_MAX_CELLS = 1024
#: Channels drawn, one panel each, on either side (input and output).
ANIMATE_MAX_CHANNELS = 4


def _check_animation_size(grid_in: tuple[int, ...], padded_in: tuple[int, ...],
                          grid_out: tuple[int, ...], transposed: bool) -> tuple[float, float]:
    """Refuse a layer too large to watch, or whose frames would not fit in memory, before
    anything is built: one frame per output entry (per input entry when transposed), each
    channel a panel. Returns the figure's size in inches."""
    from matplotlib import rcParams

    frames = prod(grid_in) if transposed else prod(grid_out)
    if frames > ANIMATE_MAX_FRAMES or max(prod(padded_in), prod(grid_out[1:])) > ANIMATE_MAX_CELLS:
        padded = f" padded to {grid_text(padded_in)}" if tuple(padded_in) != tuple(grid_in[1:]) else ""
        raise ValueError(
            f"animate is for small layers (at most {ANIMATE_MAX_FRAMES:,} frames and {ANIMATE_MAX_CELLS:,} "
            f"cells in each grid); got {frames:,} frames (one per {'input' if transposed else 'output'} "
            f"pixel), input {grid_text(grid_in)}{padded} ({prod(padded_in):,} cells), output "
            f"{grid_text(grid_out)} ({prod(grid_out[1:]):,} cells). Draw its matrix with spy, or animate "
            f"a smaller layer."
        )
    size = grid_layout(grid_in[0], two_d(padded_in), grid_out[0], two_d(grid_out[1:]), prod(grid_out),
                       prod(grid_in), MIN_WIDTH).size
    dpi = float(rcParams["figure.dpi"])
    width, height = round(size[0] * dpi), round(size[1] * dpi)
    m, n = prod(grid_out), prod(grid_in)
    check_size("animate", frames * width * height * 4 + m * n * 8,
               f"{frames:,} frames of {width} x {height} pixels, RGBA, as the GIF writer holds them, "
               f"and the {m:,} x {n:,} matrix as an image")
    return size


def _transposed_name(geom: ConvGeometry, output_padding: tuple[int, ...]) -> str:
    """``ConvTranspose2d(1, 1, 3, stride=2, ...)``: the layer whose transpose ``geom`` is."""
    def short(t: Sequence[object]) -> str:
        return str(t[0]) if len(set(t)) == 1 else str(tuple(t))

    parts = [str(geom.out_channels), str(geom.in_channels), short(geom.kernel)]
    parts += [f"stride={short(geom.stride)}"] if any(s != 1 for s in geom.stride) else []
    parts += [f"padding={short(geom.pad_lo)}"] if any(geom.pad_lo) else []
    parts += [f"output_padding={short(output_padding)}"] if any(output_padding) else []
    parts += [f"dilation={short(geom.dilation)}"] if any(d != 1 for d in geom.dilation) else []
    parts += [f"groups={geom.groups}"] if geom.groups != 1 else []
    return f"ConvTranspose{geom.ndim}d({', '.join(parts)})"


def animate(weight: npt.ArrayLike, input_shape: Sequence[int], *, stride: int | Sequence[int] = 1,
            padding: int | Sequence[int] | str = 0, dilation: int | Sequence[int] = 1,
            padding_mode: str = "zeros", transposed: bool = False,
            output_padding: int | Sequence[int] = 0, interval: float = 700,
            groups: int = 1) -> FuncAnimation:
    """The convolution (or the transposed convolution) of a small layer, in motion.

    Parameters
    ----------
    weight : (C_out, C_in/groups, kH, kW) or (C_out, C_in/groups, k) array_like or torch.Tensor
        When transposed, torch's ConvTranspose layout ``(C_in, C_out/groups, *kernel)``. At most
        :data:`ANIMATE_MAX_CHANNELS` (4) channels on either side, one panel each.
    input_shape : (C_in, H, W) or (C_in, L) tuple of int
        At most :data:`ANIMATE_MAX_FRAMES` (256) frames (one per output entry, all channels;
        per input entry when transposed) and :data:`ANIMATE_MAX_CELLS` (1024) cells in the
        (padded) input grid and in the output grid; larger layers are refused.
    stride, padding, dilation, padding_mode
        As in :func:`toeplitz_conv.conv_matrix`; ``padding_mode`` must be ``'zeros'`` when
        transposed (as torch's ConvTranspose).
    transposed : bool, default False
        The transposed convolution (``conv_transpose2d`` with these arguments and
        ``output_padding``): one frame per *input* entry, its column lit.
    output_padding : int or tuple, default 0
        Transposed only (else it must be 0); the extra output rows/columns are outlined with
        dashes.
    interval : float, default 700
        Milliseconds per frame (positive).
    groups : int, default 1
        As in :func:`toeplitz_conv.conv_matrix`: an output channel's window covers only the
        input channels of its group.

    Returns
    -------
    matplotlib.animation.FuncAnimation
        One frame per output entry (per input entry when transposed), in C order: frame
        ``f`` lights row ``f`` of ``C`` (column ``f`` when transposed). Save it as a GIF with
        ``anim.save("conv.gif", writer="pillow")`` (no ffmpeg needed); its figure is at least
        1280 pixels wide at the default 100 dpi. ``anim.update(f)`` draws frame ``f`` into
        the figure (a still for a slide: then ``fig.savefig``), returning the artists it
        changed; ``anim.highlights`` names them: ``'window'`` (a list per input channel, one
        patch per tap, or the input pixel's patch when transposed), ``'output'`` (per output
        channel), ``'row'`` (the outline on ``C``'s row or column).

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> anim = animate(np.ones((1, 1, 3, 3)), (1, 4, 4), padding=1, stride=2)
    >>> anim.save(os.path.join(tempfile.mkdtemp(), "conv.gif"), writer="pillow")  # 4 frames
    >>> two = animate(np.ones((2, 3, 3, 3)), (3, 4, 4), padding=1, stride=2)  # 3 -> 2 channels
    >>> len(two._fig.axes)  # 3 input panels, 2 output panels, C and its colour bar
    7
    >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    w = as_array(weight, "weight")
    if w.ndim not in (3, 4):
        raise ValueError(f"animate draws 1D or 2D layers: weight must be (C_out, C_in/groups, k) or "
                         f"(C_out, C_in/groups, kH, kW); got weight.shape={tuple(w.shape)}.")
    check_real(w, "weight", "animated")
    w = w.astype(np.float64)
    transposed = check_bool("transposed", transposed)
    interval = real_number("interval", interval, "a positive, finite number of milliseconds",
                           lambda v: np.isfinite(v) and v > 0)
    groups = positive_int("groups", groups)
    if transposed:
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros' when transposed=True (torch's ConvTranspose pads "
                             f"with zeros only); got {padding_mode!r}. The transpose of a padded convolution, "
                             f"conv_matrix(..., padding_mode=...).T, can be drawn with spy.")
        # a str padding: conv_transpose_geometry raises its ValueError
        geom = conv_transpose_geometry(w.shape, input_shape, stride=stride,
                                       padding=cast("int | Sequence[int]", padding),
                                       output_padding=output_padding, dilation=dilation, groups=groups)
        grid_in, grid_out = geom.out_shape, geom.in_shape  # the transposed conv reads geom's output
        padded_in = grid_in[1:]
    else:
        if any(int_tuple("output_padding", output_padding, w.ndim - 2, minimum=0)):
            raise ValueError(f"output_padding must be 0 unless transposed=True (it only resolves the output "
                             f"size of a transposed convolution); got output_padding={output_padding!r}.")
        geom = conv_geometry(w.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
                             groups=groups, padding_mode=padding_mode)
        grid_in, grid_out = geom.in_shape, geom.out_shape
        padded_in = tuple(i + a + b for i, a, b in zip(geom.in_spatial, geom.pad_lo, geom.pad_hi))
    for side, shape in (("input", grid_in), ("output", grid_out)):
        if shape[0] > ANIMATE_MAX_CHANNELS:
            raise ValueError(
                f"animate draws a panel per channel, at most {ANIMATE_MAX_CHANNELS} {side} channels; got "
                f"{shape[0]} {side} channels (weight.shape={tuple(w.shape)}, input_shape="
                f"{tuple(input_shape)}). Animate a slice of the channels, or draw the matrix with spy.")
    _check_animation_size(grid_in, padded_in, grid_out, transposed)
    if transposed:
        op = int_tuple("output_padding", output_padding, w.ndim - 2, minimum=0)
        M = conv_transpose_matrix(w, input_shape, stride=stride,
                                  padding=cast("int | Sequence[int]", padding),
                                  output_padding=output_padding, dilation=dilation, groups=groups)
        name = _transposed_name(geom, op)
        base = conv_transpose_geometry(w.shape, input_shape, stride=stride,
                                       padding=cast("int | Sequence[int]", padding), dilation=dilation,
                                       groups=groups).in_shape[1:]
        return build_frames(M.tocsc(), geom, w, grid_in, grid_out, transposed=True, interval=interval,
                      title=name, base_out=base)
    C = conv_matrix(w, input_shape, stride=stride, padding=padding, dilation=dilation, groups=groups,
                    padding_mode=padding_mode)
    return build_frames(C.tocsr(), geom, w, grid_in, grid_out, transposed=False, interval=interval,
                  title=geom.describe(), base_out=grid_out[1:])
