"""Figures a teacher can project: every spy PNG the command writes fills its canvas, keeps its
text inside the figure, names the layer, and thins what would be denser than the pixels."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

import toeplitz_conv as tc
from toeplitz_conv.cli import main

# (name, arguments): a tall matrix (16 output channels over 3 input), a wide one (16 input
# channels to 3, stride 2), a 1D layer, a big one drawn as a density, a small one asked for a
# density
LAYERS = {
    "tall": ["--input", "3x32x32", "--kernel", "16x3x3x3", "--padding", "1"],
    "wide": ["--input", "16x32x32", "--kernel", "3x16x3x3", "--stride", "2", "--padding", "1"],
    "1d": ["--input", "2x64", "--kernel", "3x2x5"],
    "big": ["--input", "64x28x28", "--kernel", "64x64x3x3", "--padding", "1"],
    "reflect": ["--input", "2x12x12", "--kernel", "4x2x3x3", "--padding", "1", "--padding-mode",
                "reflect", "--stride", "2"],
}


def blank_fractions(path, white=250):
    """Fractions of pixel rows and columns with no ink, and whether ink touches the edge."""
    a = np.asarray(Image.open(path).convert("RGB")).astype(int)
    ink = (a < white).any(axis=2)
    touches = bool(ink[:2].any() or ink[-2:].any() or ink[:, :2].any() or ink[:, -2:].any())
    return 1 - ink.any(axis=1).mean(), 1 - ink.any(axis=0).mean(), touches


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_spy_png_fills_its_canvas_and_nothing_touches_the_edge(tmp_path, capsys, name):
    path = tmp_path / f"{name}.png"
    assert main(["spy", *LAYERS[name], "-o", str(path)]) == 0
    capsys.readouterr()
    rows, cols, touches = blank_fractions(path)
    assert rows <= 0.25 and cols <= 0.25, (name, rows, cols)
    assert not touches, name


def spy_of(args):
    """The figure the spy command would draw for ``args`` (same layer, same call)."""
    from toeplitz_conv._cli_args import layer_geometry
    from toeplitz_conv._cli_figures import random_layer
    from toeplitz_conv.cli import build_parser

    parsed = build_parser().parse_args(["spy", *args])
    geom = layer_geometry(parsed)
    w, inp, opts = random_layer(parsed)
    C = tc.conv_matrix(w, inp, **opts)
    ax = tc.spy(C, input_shape=geom.in_shape, output_shape=geom.out_shape,
                layer=geom.describe())
    ax.figure.canvas.draw()
    return ax


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_no_text_is_clipped_and_no_tick_labels_collide(name):
    ax = spy_of(LAYERS[name])
    fig = ax.figure
    box, renderer = fig.bbox, fig.canvas.get_renderer()
    for a in fig.axes:  # the matrix and its colour bar, with every label, tick and title drawn
        bb = a.get_tightbbox(renderer)
        assert bb.x0 >= box.x0 and bb.x1 <= box.x1 and bb.y0 >= box.y0 and bb.y1 <= box.y1, (name, bb)
    for axis in (ax.xaxis, ax.yaxis):
        for minor in (False, True):
            labels = [t for t in (axis.get_minorticklabels() if minor else axis.get_majorticklabels())
                      if t.get_visible() and t.get_text()]
            limits = ax.get_xlim() if axis is ax.xaxis else sorted(ax.get_ylim())
            labels = [t for t in labels
                      if limits[0] - 0.5 <= t.get_position()[0 if axis is ax.xaxis else 1] <= limits[1] + 0.5]
            boxes = sorted((t.get_window_extent(renderer) for t in labels),
                           key=lambda b: (b.x0, b.y0))
            for a, b in zip(boxes, boxes[1:]):
                assert not a.overlaps(b), (name, axis.axis_name, minor,
                                           [t.get_text() for t in labels])
    plt.close(fig)


def test_titles_name_the_layer_and_its_matrix(tmp_path):
    ax = spy_of(LAYERS["reflect"])
    title = ax.get_title().replace("\n", " ")
    assert "Conv2d(2, 4, 3, stride=2, padding=1, padding_mode='reflect')" in title
    assert "144 x 288" in title and "nonzeros" in title
    plt.close("all")


def test_dense_channel_grids_are_thinned_to_every_kth_channel():
    ax = spy_of(LAYERS["big"])
    dark = [c for c in ax.collections if np.allclose(c.get_colors()[0][:3], 0.15)]
    lines = sum(len(c.get_segments()) for c in dark)
    # 64 channel blocks each way: 63 + 63 lines would be a mesh; every k-th channel is drawn
    assert 0 < lines < 63, lines
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels[0] == "c0" and len(labels) < 64 and all(t.startswith("c") for t in labels)
    plt.close("all")


def test_a_density_of_a_small_matrix_is_a_density():
    """Asked for a density, a small matrix gets one (cells of 1x1 entries: its pattern, said
    in the colour bar), never its values in disguise."""
    C = tc.conv_matrix(np.arange(1.0, 10.0).reshape(1, 1, 3, 3), (1, 10, 10))
    ax = tc.spy(C, input_shape=(1, 10, 10), output_shape=(1, 8, 8), mode="density")
    bar = ax.figure.axes[-1]
    assert bar.get_ylabel() == "nonzeros per 1x1 cell (the pattern)"
    image = ax.get_images()[0].get_array()
    assert image.shape == C.shape and image.max() == 1  # counts, not the weights 1..9
    np.testing.assert_array_equal(~np.ma.getmaskarray(image), C.toarray() != 0)
    plt.close("all")


def test_transposed_matrix_axes_say_what_they_index():
    C = tc.conv_matrix(np.ones((3, 2, 3, 3)), (2, 6, 6), padding=1)
    ax = tc.spy(C.T, input_shape=(3, 6, 6), output_shape=(2, 6, 6),
                row_label="row of C.T = input index: x[c, h, w]",
                col_label="column of C.T = output index: y[c, h, w]")
    assert ax.get_ylabel().startswith("row of C.T = input") and "output" in ax.get_xlabel()
    with pytest.raises(TypeError, match="row_label must be a str or None; got int"):
        tc.spy(C, row_label=3)
    plt.close("all")


def test_spy_in_a_subfigure_measures_its_panel():
    """An Axes of a SubFigure: its size and the title's room are the subfigure's, not the
    whole figure's (a SubFigure has no figure width of its own to read)."""
    C = tc.conv_matrix(np.ones((4, 3, 3, 3)), (3, 8, 8), padding=1)
    fig = plt.figure(figsize=(10, 4))
    left, right = fig.subfigures(1, 2)
    ax = right.subplots()
    title = "a title long enough to need wrapping over one half of the figure " * 2
    tc.spy(C, ax=ax, title=title)
    fig.canvas.draw()
    alone = plt.figure(figsize=(5, 4)).subplots()
    tc.spy(C, ax=alone, title=title)
    # the same panel size, so the title wraps the same way as on a 5-inch figure of its own
    assert ax.get_title() == alone.get_title() and "\n" in ax.get_title()
    assert ax.get_window_extent().x0 >= fig.bbox.width / 2 - 1  # drawn in the right half
    plt.close("all")
