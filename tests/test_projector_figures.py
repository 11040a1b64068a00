"""Figures a class can read from the back row: at least 1280 px wide at the default dpi, no
text under 14 pt (nor under 1.2 % of the figure's width), a colour bar, and highlights that
sit on the cells a frame is about, named with the same 0-based (c, i, j) in every panel."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import Normalize, to_rgba  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from PIL import Image  # noqa: E402

import toeplitz_conv as tc  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")  # stills, on purpose

W3 = np.arange(9.0).reshape(1, 1, 3, 3) - 4  # weights -4 .. 4, tap (ki, kj) = 3 ki + kj - 4


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def small_text(fig):
    """The drawn texts smaller than 14 pt or than 1.2 % of the figure's width."""
    fig.canvas.draw()
    floor = max(14.0, 0.012 * fig.get_size_inches()[0] * 72)
    return [(t.get_text(), t.get_fontsize()) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and t.get_fontsize() < floor - 1e-9]


def has_colorbar(fig):
    return any(ax.get_label() == "<colorbar>" for ax in fig.axes)


def cells(patches):
    """(row, column) of each visible unit patch (its lower-left corner is at -0.5)."""
    return sorted((round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in patches if p.get_visible())


# --------------------------------------------------------------------------- animate


def test_animation_frames_are_projector_sized_with_large_text_and_a_colour_bar():
    anim = tc.animate(W3, (1, 5, 5), stride=2, padding=1)
    fig = anim._fig
    assert fig.dpi == 100 and fig.get_size_inches()[0] * fig.dpi >= 1280
    assert has_colorbar(fig)
    assert small_text(fig) == []


def test_a_conv_frame_lights_the_window_the_pixel_and_the_row():
    """Frame 5 = output y(0, 1, 2) = row 5 of C: the 3x3 window at padded rows 2..4 and columns
    4..6, i.e. input rows 1..3 and columns 3..5 (5: the padding after column 4)."""
    anim = tc.animate(W3, (1, 5, 5), stride=2, padding=1)
    anim.update(5)
    a_in, a_out, a_mat = anim._fig.axes[:3]
    taps = anim.highlights["taps"][0]
    assert cells(taps) == [(i, j) for i in (2, 3, 4) for j in (4, 5, 6)]
    # the grid's ticks name those cells with their 0-based input indices (-1 and 5: padding)
    xticks = {round(x): t.get_text() for x, t in zip(a_in.get_xticks(), a_in.get_xticklabels())}
    assert [xticks[j] for j in (0, 4, 5, 6)] == ["-1", "3", "4", "5"]
    # each tap is filled with its weight's colour, the colour of that weight in C
    cmap, norm = colormaps["RdBu_r"], Normalize(-4, 4)
    for patch in taps:
        ki, kj = round(patch.get_y() + 0.5) - 2, round(patch.get_x() + 0.5) - 4
        np.testing.assert_allclose(patch.get_facecolor(), cmap(norm(W3[0, 0, ki, kj])))
        assert patch.get_linewidth() >= 2.5  # outlined, not only tinted
    assert cells(anim.highlights["pixel"]) == [(1, 2)]
    assert anim.highlights["pixel"][0].get_facecolor() == to_rgba("#FFC20A")
    row = anim.highlights["row"]
    assert (row.get_x(), row.get_y(), row.get_width(), row.get_height()) == (-0.5, 4.5, 25, 1)
    yticks = {round(y): t.get_text() for y, t in zip(a_mat.get_yticks(), a_mat.get_yticklabels())}
    assert yticks[5] == "(0,1,2)" and "row 5 = output y(0,1,2)" in a_mat.get_title()
    assert a_out.get_title() == "output y(0, i, j)" and a_in.get_title() == "input x(0, i, j)"


def test_a_transposed_frame_lights_the_pixel_the_scattered_kernel_and_the_column():
    anim = tc.animate(W3, (1, 3, 3), stride=2, padding=1, transposed=True, output_padding=1)
    anim.update(4)  # input x(0, 1, 1) scatters into the 6x6 output: column 4 of C.T
    M = tc.conv_transpose_matrix(W3, (1, 3, 3), stride=2, padding=1, output_padding=1).tocsc()
    rows = M.indices[M.indptr[4]:M.indptr[5]]
    assert cells(anim.highlights["taps"][0]) == sorted(divmod(int(r), 6) for r in rows)
    assert cells(anim.highlights["pixel"]) == [(1, 1)]
    line = anim.highlights["row"]
    assert (line.get_x(), line.get_width(), line.get_height()) == (3.5, 1, 36)


def test_multi_channel_layers_get_a_panel_per_channel_and_groups_light_their_own():
    anim = tc.animate(np.ones((2, 3, 3, 3)), (3, 4, 4), padding=1, stride=2)
    titles = [ax.get_title() for ax in anim._fig.axes]
    assert titles[:5] == [f"input x({c}, i, j)" for c in range(3)] + [f"output y({c}, i, j)" for c in range(2)]
    assert len(anim._fig.axes) == 3 + 2 + 2  # the panels, C and its colour bar
    anim.update(5)  # output channel 1 (4 pixels per channel) reads all 3 input channels
    assert all(cells(t) for t in anim.highlights["taps"])
    assert [bool(cells([p])) for p in anim.highlights["pixel"]] == [False, True]
    grouped = tc.animate(np.ones((2, 1, 3, 3)), (2, 4, 4), padding=1, stride=2, groups=2)
    grouped.update(5)  # output channel 1 of group 1 reads input channel 1 only
    assert [bool(cells(t)) for t in grouped.highlights["taps"]] == [False, True]


def test_the_blitted_gif_shows_what_a_full_redraw_shows(tmp_path):
    anim = tc.animate(W3, (1, 4, 4), stride=2, padding=1, padding_mode="replicate")
    anim.save(tmp_path / "a.gif", writer="pillow", dpi=50)
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 4 and gif.size[0] == 640
        gif.seek(2)
        frame = np.asarray(gif.convert("RGB"), dtype=int)
    anim.update(2)
    anim._fig.savefig(tmp_path / "still.png", dpi=50)
    still = np.asarray(Image.open(tmp_path / "still.png").convert("RGB"), dtype=int)
    assert frame.shape == still.shape
    assert (np.abs(frame - still).max(axis=2) > 40).mean() < 1e-3  # the palette's rounding only


# --------------------------------------------------------------------------- static figures


def test_spy_is_projector_sized_with_large_text():
    C = tc.conv_matrix(np.ones((4, 3, 3, 3)), (3, 8, 8), stride=2, padding=1)
    ax = tc.spy(C, input_shape=(3, 8, 8), output_shape=(4, 4, 4))
    fig = ax.figure
    assert fig.get_size_inches()[0] * fig.dpi >= 1280 and has_colorbar(fig)
    assert small_text(fig) == []
    assert ax.get_ylabel() == "output index: y(c, i, j) in C order"


def test_gradient_figure_writes_its_numbers_at_14_pt():
    x = np.arange(16.0).reshape(4, 4) - 8
    fig = tc.gradient_figure(x, W3[0, 0], grad_output=np.ones((2, 2)))
    assert fig.get_size_inches()[0] * fig.dpi >= 1280 and has_colorbar(fig)
    assert small_text(fig) == []
    x_ax, w_ax, dw_ax, dx_ax, y_ax, delta_ax = fig.axes[:6]
    assert sorted(t.get_text() for t in w_ax.texts) == sorted(f"{v:.2g}" for v in W3.ravel())
    assert len(x_ax.texts) == 16 and len(dx_ax.texts) == 16 and len(dw_ax.texts) == 9
    assert len(y_ax.texts) == 4 and [t.get_text() for t in delta_ax.texts] == ["1"] * 4


def test_field_figure_is_projector_sized_with_large_text():
    C = tc.conv_matrix(np.ones((2, 1, 3, 3)), (1, 6, 6), stride=2, padding=1)
    fig = tc.field_figure(C, (1, 6, 6), (2, 3, 3))
    assert fig.get_size_inches()[0] * fig.dpi >= 1280 and has_colorbar(fig)
    assert small_text(fig) == []
