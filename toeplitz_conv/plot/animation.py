"""Convolution in motion: the kernel sliding over the input and the matrix row that it is.

Each frame of :func:`animate` shows the same numbers in three places: the (padded) input grid
with the kernel's window and the weight on each tap, the output grid with the pixel being
computed, and the matrix ``C`` with that pixel's **row** lit. For the transposed convolution
each frame takes one input pixel and scatters the kernel into the output: one **column** of
its matrix at a time. Padded cells are grey; cells that reflect, replicate or wrap an input
pixel (``padding_mode``) carry that pixel's index, in italics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import numpy.typing as npt

from .._args import as_array, check_bool, int_tuple, real_number
from ..conv import conv_matrix, conv_transpose_matrix
from ..geometry import conv_geometry, conv_transpose_geometry
from ..memory import check_size
from .matrices import check_real
from .style import DIVERGING, new_figure

if TYPE_CHECKING:
    from matplotlib.animation import FuncAnimation
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

#: An animation is for a layer a viewer can follow: at most this many frames (one per pixel,
#: 0.7 s each: a GIF of a few minutes), and cells in each grid (each cell's index is written
#: in every frame); the command line's limits.
ANIMATE_MAX_FRAMES = 256
ANIMATE_MAX_CELLS = 1024
_FIGSIZE = (12.0, 4.2)

_NUMPY_MODE: dict[str, Literal["reflect", "edge", "wrap"]] = {
    "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _source(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Input index read at each padded position along one axis (-1: a zero)."""
    idx = np.arange(n)
    if mode in _NUMPY_MODE and (lo or hi):
        return np.pad(idx, (lo, hi), mode=_NUMPY_MODE[mode])
    return np.pad(idx, (lo, hi), constant_values=-1)


def _grid(ax: Axes, shape: Sequence[int], title: str) -> None:
    ax.set_xlim(-0.5, shape[1] - 0.5)
    ax.set_ylim(shape[0] - 0.5, -0.5)
    ax.set_xticks(np.arange(shape[1]))
    ax.set_yticks(np.arange(shape[0]))
    ax.set_xticks(np.arange(shape[1] + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(shape[0] + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.7", linewidth=0.6)
    ax.tick_params(which="both", length=0, labelsize=7)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)


def _check_animation_size(grid_in: tuple[int, ...], padded_in: tuple[int, ...],
                          grid_out: tuple[int, ...], transposed: bool) -> None:
    """Refuse a layer too large to watch, or whose frames would not fit in memory, before
    anything is built: one frame per output pixel (per input pixel when transposed)."""
    from matplotlib import rcParams

    frames = prod(grid_in[1:]) if transposed else prod(grid_out[1:])
    if frames > ANIMATE_MAX_FRAMES or max(prod(padded_in), prod(grid_out[1:])) > ANIMATE_MAX_CELLS:
        def grid(shape: Sequence[int]) -> str:
            return "x".join(map(str, shape))

        padded = f" padded to {grid(padded_in)}" if tuple(padded_in) != tuple(grid_in[1:]) else ""
        raise ValueError(
            f"animate is for small layers (at most {ANIMATE_MAX_FRAMES:,} frames and {ANIMATE_MAX_CELLS:,} "
            f"cells in each grid); got {frames:,} frames (one per {'input' if transposed else 'output'} "
            f"pixel), input {grid(grid_in)}{padded} ({prod(padded_in):,} cells), output {grid(grid_out)} "
            f"({prod(grid_out[1:]):,} cells). Draw its matrix with spy, or animate a smaller layer."
        )
    dpi = float(rcParams["figure.dpi"])
    width, height = round(_FIGSIZE[0] * dpi), round(_FIGSIZE[1] * dpi)
    m, n = prod(grid_out), prod(grid_in)
    check_size("animate", frames * width * height * 4 + m * n * 8,
               f"{frames:,} frames of {width} x {height} pixels, RGBA, as the GIF writer holds them, "
               f"and the {m:,} x {n:,} matrix as an image")


def animate(weight: npt.ArrayLike, input_shape: Sequence[int], *, stride: int | Sequence[int] = 1,
            padding: int | Sequence[int] | str = 0, dilation: int | Sequence[int] = 1,
            padding_mode: str = "zeros", transposed: bool = False,
            output_padding: int | Sequence[int] = 0, interval: float = 700) -> FuncAnimation:
    """The convolution (or the transposed convolution) of a single-channel layer, in motion.

    Parameters
    ----------
    weight : (1, 1, kH, kW) or (1, 1, k) array_like or torch.Tensor
        One input and one output channel (the picture of the convolution-arithmetic guide).
    input_shape : (1, H, W) or (1, L) tuple of int
        At most :data:`ANIMATE_MAX_FRAMES` (256) frames and :data:`ANIMATE_MAX_CELLS` (1024)
        cells in the (padded) input grid and in the output grid; larger layers are refused.
    stride, padding, dilation, padding_mode
        As in :func:`toeplitz_conv.conv_matrix`; ``padding_mode`` must be ``'zeros'`` when
        transposed (as torch's ConvTranspose).
    transposed : bool, default False
        The transposed convolution (``conv_transpose2d`` with these arguments and
        ``output_padding``): one frame per *input* pixel, its column lit.
    output_padding : int or tuple, default 0
        Transposed only (else it must be 0); the extra output rows/columns are outlined with
        dashes.
    interval : float, default 700
        Milliseconds per frame (positive).

    Returns
    -------
    matplotlib.animation.FuncAnimation
        One frame per output pixel (per input pixel when transposed). Save it as a GIF with
        ``anim.save("conv.gif", writer="pillow")`` (no ffmpeg needed).

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> anim = animate(np.ones((1, 1, 3, 3)), (1, 4, 4), padding=1, stride=2)
    >>> anim.save(os.path.join(tempfile.mkdtemp(), "conv.gif"), writer="pillow")  # 4 frames
    """
    from matplotlib.animation import FuncAnimation
    from matplotlib.patches import Rectangle

    w = as_array(weight, "weight")
    if w.ndim not in (3, 4) or w.shape[:2] != (1, 1):
        raise ValueError(f"animate draws single-channel 1D or 2D layers: weight must be (1, 1, k) or "
                         f"(1, 1, kH, kW); got weight.shape={tuple(w.shape)}.")
    check_real(w, "weight", "animated")
    w = w.astype(np.float64)
    transposed = check_bool("transposed", transposed)
    interval = real_number("interval", interval, "a positive, finite number of milliseconds",
                           lambda v: np.isfinite(v) and v > 0)
    if transposed:
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode must be 'zeros' when transposed=True (torch's ConvTranspose pads "
                             f"with zeros only); got {padding_mode!r}. The transpose of a padded convolution, "
                             f"conv_matrix(..., padding_mode=...).T, can be drawn with spy.")
        # a str padding: conv_transpose_geometry raises its ValueError
        geom = conv_transpose_geometry(w.shape, input_shape, stride=stride,
                                       padding=cast("int | Sequence[int]", padding),
                                       output_padding=output_padding, dilation=dilation)
        grid_in, grid_out = geom.out_shape, geom.in_shape  # the transposed conv reads geom's output
        padded_in = grid_in[1:]
    else:
        if any(int_tuple("output_padding", output_padding, w.ndim - 2, minimum=0)):
            raise ValueError(f"output_padding must be 0 unless transposed=True (it only resolves the output "
                             f"size of a transposed convolution); got output_padding={output_padding!r}.")
        geom = conv_geometry(w.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
                             padding_mode=padding_mode)
        grid_in, grid_out = geom.in_shape, geom.out_shape
        padded_in = tuple(i + a + b for i, a, b in zip(geom.in_spatial, geom.pad_lo, geom.pad_hi))
    _check_animation_size(grid_in, padded_in, grid_out, transposed)
    if transposed:
        M = conv_transpose_matrix(w, input_shape, stride=stride,
                                  padding=cast("int | Sequence[int]", padding),
                                  output_padding=output_padding, dilation=dilation).tocsc()
    else:
        M = conv_matrix(w, input_shape, stride=stride, padding=padding, dilation=dilation,
                        padding_mode=padding_mode).tocsr()
    two: Callable[[Sequence[int]], tuple[int, ...]] = (  # noqa: E731
        lambda s: (1, s[0]) if len(s) == 1 else tuple(s))
    sp_in, sp_out = two(grid_in[1:]), two(grid_out[1:])
    kern = w.reshape(two(w.shape[2:]))
    lo, hi = (two(geom.pad_lo), two(geom.pad_hi)) if not transposed else ((0, 0), (0, 0))
    rows = _source(sp_in[0], lo[0], hi[0], "zeros" if transposed else padding_mode)
    cols = _source(sp_in[1], lo[1], hi[1], "zeros" if transposed else padding_mode)
    padded = (len(rows), len(cols))
    fig = new_figure(_FIGSIZE)
    a_in, a_out, a_mat = fig.subplots(1, 3, width_ratios=[padded[1] + 1, sp_out[1] + 1, 12])
    lim = float(np.abs(w).max()) or 1.0
    what = "transposed convolution" if transposed else "convolution"
    fig.suptitle(f"{what}: kernel {'x'.join(map(str, w.shape[2:]))}, stride {stride}, padding {padding}"
                 + (f" ({padding_mode})" if padding_mode != "zeros" and not transposed else "")
                 + (f", dilation {dilation}" if dilation != 1 else "")
                 + (f", output_padding {output_padding}" if transposed and output_padding else ""), fontsize=11)
    a_mat.imshow(M.toarray(), cmap=DIVERGING, vmin=-lim, vmax=lim, interpolation="nearest", aspect="auto")
    a_mat.set_title(f"{'C.T' if transposed else 'C'}: {M.shape[0]} x {M.shape[1]}", fontsize=10)
    a_mat.set_xlabel("input index")
    a_mat.set_ylabel("output index")
    lit = a_mat.add_patch(Rectangle((-0.5, -0.5), 1, 1, color="orange", alpha=0.4))  # the lit row or column
    base = two(conv_transpose_geometry(w.shape, input_shape, stride=stride,
                                       padding=cast("int | Sequence[int]", padding),
                                       dilation=dilation).in_shape[1:]) if transposed else sp_out

    def cell(ax: Axes, idx: int, width: int, **kw: Any) -> None:
        ax.add_patch(Rectangle((idx % width - 0.5, idx // width - 0.5), 1, 1, **kw))

    def frame(f: int) -> list[Artist]:
        a_in.clear()
        a_out.clear()
        _grid(a_in, padded, "input" if transposed else "input (padded)")
        _grid(a_out, sp_out, "output")
        for i, r in enumerate(rows):  # the input: indices; padding grey; reflected cells in italics
            for j, c in enumerate(cols):
                if r < 0 or c < 0:
                    a_in.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, color="0.88"))
                    continue
                inside = lo[0] <= i < lo[0] + sp_in[0] and lo[1] <= j < lo[1] + sp_in[1]
                a_in.text(j, i, str(r * sp_in[1] + c), ha="center", va="center", fontsize=7,
                          style="normal" if inside else "italic", color="0.3" if inside else "0.55")
        shown: set[int] = set()
        if transposed:  # frame f: input pixel f scatters the kernel into the output: column f
            m = M.shape[0]
            lit.set_bounds(f - 0.5, -0.5, 1, m)
            cell(a_in, f, sp_in[1], color="tab:red", alpha=0.55)
            col = slice(M.indptr[f], M.indptr[f + 1])
            for i, v in zip(M.indices[col], M.data[col]):
                cell(a_out, i, sp_out[1], color="orange", alpha=0.6)
                a_out.text(i % sp_out[1], i // sp_out[1], f"{v:.3g}", ha="center", va="center", fontsize=7,
                           color="tab:red")
                shown.add(int(i))
            for axis, e in enumerate(p - q for p, q in zip(sp_out, base)):  # output_padding, dashed
                if e > 0:
                    xy = (sp_out[1] - e - 0.5, -0.5) if axis == 1 else (-0.5, sp_out[0] - e - 0.5)
                    size = (e, sp_out[0]) if axis == 1 else (sp_out[1], e)
                    a_out.add_patch(Rectangle(xy, *size, fill=False, linestyle="--", color="0.3"))
        else:  # frame f: output pixel f reads the window under the kernel: row f
            n = M.shape[1]
            lit.set_bounds(-0.5, f - 0.5, n, 1)
            oi, oj = divmod(f, sp_out[1])
            s, d = two(geom.stride), two(geom.dilation)
            for ki in range(kern.shape[0]):
                for kj in range(kern.shape[1]):
                    y, x = oi * s[0] + ki * d[0], oj * s[1] + kj * d[1]
                    a_in.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, color="orange", alpha=0.5))
                    a_in.text(x, y + 0.33, f"{kern[ki, kj]:.3g}", ha="center", va="center", fontsize=6,
                              color="tab:red")
            cell(a_out, f, sp_out[1], color="tab:red", alpha=0.55)
        for p in range(sp_out[0] * sp_out[1]):  # output indices where no value is shown
            if p not in shown:
                a_out.text(p % sp_out[1], p // sp_out[1], str(p), ha="center", va="center", fontsize=7,
                           color="0.3")
        return []

    frames = M.shape[1] if transposed else M.shape[0]
    return FuncAnimation(fig, frame, frames=frames, interval=interval, blit=False)
