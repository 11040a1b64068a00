"""GIFs of :func:`~.animation.animate` drawn by blitting: the static figure is rendered once,
and each frame redraws over a copy of it only what the frame moves.

:func:`layer_animation` fixes the figure's layout once (a frame only moves patches and changes
a title) and picks, in each axes, the artists a frame redraws: those the frame changes and
everything drawn above the lowest of them. Its result's ``save(..., writer="pillow")`` writes
the frames that way; any other writer renders every frame in full, as matplotlib does.
matplotlib and PIL are imported only when an animation is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from matplotlib.animation import FuncAnimation
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def layer_animation(fig: Figure, update: Callable[[int], list[Artist]], changing: set[Artist],
                    axes: Sequence[Axes], *, frames: int, interval: float) -> FuncAnimation:
    """The animation of ``fig``, ``update(f)`` drawing frame ``f``: the layout fixed now, and
    ``movers``, per axes of ``axes``, what a frame changes (``changing``) and everything drawn
    above it, in drawing order."""
    from matplotlib.axis import Axis

    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)  # the layout, once: frames only move patches
    fig.set_layout_engine("none")
    movers = []  # per axes: what a frame changes and everything drawn above it, in drawing order
    for ax in axes:
        lowest = min(a.get_zorder() for a in ax.get_children() if a in changing)
        still = {ax.patch, ax.title} - changing  # the title: outside the moving area
        movers += sorted((a for a in ax.get_children() if a.get_zorder() >= lowest and a not in still
                          and not isinstance(a, Axis)), key=lambda a: a.get_zorder())
    anim: Any = layer_animation_class()(fig, update, frames=frames, interval=interval, blit=False)
    anim.update = update
    anim.movers = movers
    return cast("FuncAnimation", anim)


def layer_animation_class() -> type[FuncAnimation]:
    """The class of :func:`toeplitz_conv.plot.animate`'s result (a FuncAnimation), made when
    matplotlib is first needed."""
    from matplotlib import rcParams
    from matplotlib.animation import FuncAnimation
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    class LayerAnimation(FuncAnimation):
        """A FuncAnimation whose GIFs (``writer='pillow'``) are drawn by blitting: the static
        figure is rendered once, and each frame redraws only ``movers`` (what the frame
        changes and what lies above it in the same axes) over a copy of it. Any other writer
        renders every frame in full, as matplotlib does."""

        update: Callable[[int], list[Artist]]
        movers: list[Artist]
        highlights: dict[str, Any]

        def save(self, filename: Any, writer: Any = None, fps: float | None = None, dpi: Any = None,
                 *args: Any, progress_callback: Callable[[int, int], Any] | None = None,
                 **kwargs: Any) -> None:
            if writer != "pillow" or args or any(v is not None for v in kwargs.values()):
                return super().save(filename, writer, fps, dpi, *args,  # type: ignore[arg-type]
                                    progress_callback=progress_callback, **kwargs)
            me: Any = self  # FuncAnimation's attributes: _fig, _interval, _save_count
            fig = me._fig
            dpi = rcParams["savefig.dpi"] if dpi is None else dpi
            dpi = fig.dpi if dpi == "figure" else float(dpi)
            fps = 1000.0 / me._interval if fps is None else fps
            old_canvas, old_dpi = fig.canvas, fig.dpi
            shown = {id(a): a.get_visible() for a in self.movers}
            count = me._save_count or 0
            images = []
            palette = None
            try:
                canvas: Any = FigureCanvasAgg(fig)
                fig.dpi = dpi
                for a in self.movers:
                    a.set_visible(False)
                canvas.draw()  # everything that stays, once
                background = canvas.copy_from_bbox(fig.bbox)
                for a in self.movers:
                    a.set_visible(shown[id(a)])
                renderer = canvas.get_renderer()
                for f in range(count):
                    self.update(f)
                    canvas.restore_region(background)
                    for a in self.movers:
                        a.draw(renderer)
                    size = (int(renderer.width), int(renderer.height))
                    rgb = Image.frombuffer("RGBA", size, bytes(canvas.buffer_rgba()), "raw", "RGBA", 0, 1
                                           ).convert("RGB")
                    # one palette, from the first frame: every frame shows the same colours, moved
                    palette = palette or rgb.quantize(method=Image.Quantize.FASTOCTREE)
                    images.append(rgb.quantize(palette=palette, dither=Image.Dither.NONE))
                    if progress_callback is not None:
                        progress_callback(f, count)
            finally:
                fig.dpi = old_dpi
                fig.set_canvas(old_canvas)
                me._draw_was_started = True  # saved: no "deleted without rendering" warning
            images[0].save(filename, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)

    return LayerAnimation
