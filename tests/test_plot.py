"""Figures: what they draw is checked through the returned Axes/Figure (Agg backend)."""

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import sympy  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

import toeplitz_conv as tc  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _lines(ax, orientation):
    """Positions of the block lines (hlines -> y, vlines -> x) drawn on ``ax``."""
    out = []
    for coll in ax.collections:
        if isinstance(coll, LineCollection):
            for seg in coll.get_segments():
                (x0, y0), (x1, y1) = seg
                if orientation == "h" and y0 == y1:
                    out.append(y0)
                elif orientation == "v" and x0 == x1:
                    out.append(x0)
    return sorted(out)


# --------------------------------------------------------------------------- spy


def test_import_does_not_load_matplotlib():
    code = "import sys, toeplitz_conv; print('matplotlib' in sys.modules, 'sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_spy_values_mode_shows_every_entry_and_block_lines(rng):
    w = rng.standard_normal((4, 3, 3, 3))
    C = tc.conv_matrix(w, (3, 8, 8), stride=2, padding=1)
    ax = tc.spy(C, input_shape=(3, 8, 8), output_shape=(4, 4, 4))
    assert ax.get_title() == "64 x 192, 1,452 nonzeros (density 11.8%)"
    (im,) = ax.images
    arr = im.get_array()
    assert arr.shape == (64, 192)
    assert (~arr.mask).sum() == C.nnz  # stored entries coloured, the rest blank
    np.testing.assert_allclose(arr.filled(0), C.toarray())
    # channel blocks: rows every 16 (4x4 outputs), columns every 64 (8x8 inputs);
    # image rows: every 4 output rows, every 8 input columns
    h, vv = _lines(ax, "h"), _lines(ax, "v")
    assert {15.5, 31.5, 47.5} <= set(h) and {63.5, 127.5} <= set(vv)
    assert len(h) == 64 // 4 - 1 and len(vv) == 192 // 8 - 1
    assert [t.get_text() for t in ax.get_xticklabels(minor=True)] == ["c0", "c1", "c2"]
    assert [t.get_text() for t in ax.get_yticklabels(minor=True)] == ["c0", "c1", "c2", "c3"]
    assert "output index" in ax.get_ylabel() and "input index" in ax.get_xlabel()
    ax.figure.canvas.draw()


def test_spy_markers_mode_plots_each_nonzero():
    C = tc.conv_matrix(np.ones((2, 1, 3, 3)), (1, 30, 30), padding=1)
    ax = tc.spy(C, mode="markers")
    (line,) = ax.lines
    assert len(line.get_xdata()) == C.nnz
    assert not ax.images


def test_spy_of_a_100k_matrix_aggregates_instead_of_plotting_points():
    # 1 x 316 x 316 input, 3x3 kernel, padding 1: a 99,856 x 99,856 matrix, ~900k nonzeros
    C = tc.conv_matrix(np.ones((1, 1, 3, 3)), (1, 316, 316), padding=1)
    assert C.shape[0] > 99_000 and C.nnz > 800_000
    ax = tc.spy(C, max_bins=300)
    assert not ax.lines  # no marker per point
    (im,) = ax.images
    counts = im.get_array()
    assert max(counts.shape) <= 300  # a 2D histogram of bounded size ...
    assert counts.sum() == C.nnz  # ... holding every nonzero
    assert "nonzeros per" in ax.figure.axes[-1].get_ylabel()  # the colour bar says so


def test_spy_accepts_dense_arrays_and_explicit_axes():
    fig, ax = plt.subplots()
    assert tc.spy(np.eye(3), ax=ax, colorbar=False) is ax
    assert ax.get_title().startswith("3 x 3, 3 nonzeros")
    assert len(ax.texts) == 3  # small: values written in the cells


def test_spy_3d_and_1d_lines():
    C3 = tc.conv_matrix(np.ones((2, 1, 2, 2, 2)), (1, 3, 4, 4))
    ax = tc.spy(C3, input_shape=(1, 3, 4, 4), output_shape=(2, 2, 3, 3))
    assert 8.5 in _lines(ax, "h")  # channel block of 2*3*3 rows ... (boundary at 18 - 0.5)
    assert 17.5 in _lines(ax, "h")
    C1 = tc.conv_matrix(np.ones((2, 2, 3)), (2, 10))
    ax = tc.spy(C1, input_shape=(2, 10), output_shape=(2, 8))
    assert _lines(ax, "h") == [7.5] and _lines(ax, "v") == [9.5]  # channels only


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=(3, 8, 7)), r"input_shape must describe the 192 columns .* got input_shape=\(3, 8, 7\) \(product 168\)"),
    (dict(output_shape=(4, 4)), r"output_shape must describe the 64 rows"),
    (dict(input_shape=(3, 0, 8)), r"input_shape must be a tuple of positive ints"),
    (dict(mode="dots"), r"mode must be one of 'auto', 'values', 'markers', 'density'; got 'dots'"),
    (dict(max_bins=0), r"max_bins must be a positive integer; got 0"),
])
def test_spy_errors(kwargs, match):
    C = tc.conv_matrix(np.ones((4, 3, 3, 3)), (3, 8, 8), stride=2, padding=1)
    with pytest.raises(ValueError, match=match):
        tc.spy(C, **kwargs)


def test_spy_rejects_non_matrices():
    with pytest.raises(ValueError, match=r"C must be a 2D matrix \(scipy.sparse or array_like\); got C.shape=\(3,\)"):
        tc.spy(np.ones(3))
    with pytest.raises(TypeError, match="C must be a numeric array"):
        tc.spy([["a"]])


# --------------------------------------------------------------------------- fields


def test_field_figure_shows_a_row_on_the_input_and_a_column_on_the_output(rng):
    w = rng.standard_normal((2, 3, 3, 3))
    C = tc.conv_matrix(w, (3, 6, 6), stride=2, padding=1)
    fig = tc.field_figure(C, (3, 6, 6), (2, 3, 3), output_index=(1, 1, 1), input_index=(0, 2, 2))
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(images) == 3 + 2
    r = np.ravel_multi_index((1, 1, 1), (2, 3, 3))
    row = C[[r], :].toarray().reshape(3, 6, 6)
    for c in range(3):
        np.testing.assert_array_equal(images[c], row[c])
    # the output (1, 1, 1) reads input rows 1..3, columns 1..3 of every channel: W[1]
    np.testing.assert_allclose(row[:, 1:4, 1:4], w[1])
    # the column of x[0, 2, 2] on the output is conv_transpose2d of a unit impulse
    e = torch.zeros(1, 3, 6, 6, dtype=torch.float64)
    e[0, 0, 2, 2] = 1
    y = F.conv2d(e, torch.from_numpy(w), stride=2, padding=1)[0].numpy()
    for c in range(2):
        np.testing.assert_allclose(images[3 + c], y[c])
    assert "receptive field of y(1, 1, 1)" in fig._suptitle.get_text()
    fig.canvas.draw()


def test_field_figure_defaults_1d_and_errors(rng):
    C = tc.conv_matrix(rng.standard_normal((1, 1, 3)), (1, 9))
    fig = tc.field_figure(C, (1, 9), (1, 7))
    assert fig.axes[0].images[0].get_array().shape == (1, 9)
    with pytest.raises(ValueError, match=r"output_index must be a flat index or a tuple of 2 indices inside shape \(1, 7\); got \(0, 7\)"):
        tc.field_figure(C, (1, 9), (1, 7), output_index=(0, 7))
    with pytest.raises(ValueError, match=r"input_index must be in \[0, 9\) for shape \(1, 9\); got 9"):
        tc.field_figure(C, (1, 9), (1, 7), input_index=9)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("opts", [
    dict(),
    dict(stride=2, padding=1),
    dict(padding=1, padding_mode="reflect"),
    dict(groups=2, dilation=2, padding=2),
], ids=["plain", "stride-pad", "reflect", "groups-dilation"])
def test_gradient_figure_matches_autograd(rng, opts):
    groups = opts.get("groups", 1)
    x = rng.standard_normal((4, 9, 9))
    w = rng.standard_normal((4, 4 // groups, 3, 3))
    fig = tc.gradient_figure(x, w, **opts)
    xt = torch.from_numpy(x)[None].requires_grad_(True)
    wt = torch.from_numpy(w).requires_grad_(True)
    mode = opts.pop("padding_mode", "zeros")
    if mode != "zeros":
        p = opts.pop("padding")
        y = F.conv2d(F.pad(xt, (p,) * 4, mode=mode), wt, **opts)
    else:
        y = F.conv2d(xt, wt, **opts)
    (0.5 * (y ** 2).sum()).backward()
    a = fig.arrays
    np.testing.assert_allclose(a["dW"], wt.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(a["dx"], xt.grad[0].numpy(), atol=1e-10)
    titles = [ax.get_title().replace("\n", " ") for ax in fig.axes[:6]]
    assert titles[0].startswith("input x(0, i, j)") and titles[1].startswith("kernel W(0, 0, i, j)")
    assert titles[2].startswith("weight gradient") and titles[3].startswith("input gradient")
    assert titles[4].startswith("output y(0, i, j)") and titles[5].startswith("δ = dL/dy")
    np.testing.assert_allclose(fig.axes[2].images[0].get_array(), a["dW"][0, 0])
    np.testing.assert_allclose(fig.axes[5].images[0].get_array(), a["grad_output"][0])
    fig.canvas.draw()


def test_gradient_figure_1d_and_given_grad_output(rng):
    x, w = rng.standard_normal((1, 12)), rng.standard_normal((1, 1, 3))
    delta = rng.standard_normal((1, 6))  # (12 + 2 - 3) // 2 + 1 outputs
    fig = tc.gradient_figure(x, w, stride=2, padding=(1,), grad_output=delta)
    xt, wt = torch.from_numpy(x)[None].requires_grad_(True), torch.from_numpy(w).requires_grad_(True)
    F.conv1d(xt, wt, stride=2, padding=1).backward(torch.from_numpy(delta)[None])
    np.testing.assert_allclose(fig.arrays["dW"].reshape(w.shape), wt.grad.numpy())
    np.testing.assert_allclose(fig.arrays["dx"].ravel(), xt.grad.numpy().ravel())
    assert "dL/dy given" in fig._suptitle.get_text()


def test_gradient_figure_errors(rng):
    with pytest.raises(ValueError, match=r"gradient_figure draws a 2D layer .* got x.shape=\(1, 4, 4, 4\), weight.shape=\(1, 1, 2, 2, 2\)"):
        tc.gradient_figure(np.ones((1, 4, 4, 4)), np.ones((1, 1, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"grad_output must have shape \(N, 1, 2, 2\) or \(1, 2, 2\)"):
        tc.gradient_figure(np.ones((4, 4)), np.ones((3, 3)), grad_output=np.ones(3))
    with pytest.raises(ValueError, match=r"out_channel must be an int in \[0, 1\); got 1"):
        tc.gradient_figure(np.ones((4, 4)), np.ones((3, 3)), out_channel=1)


# --------------------------------------------------------------------------- networks


def test_network_figure_from_matrices(rng):
    C1 = tc.conv_matrix(rng.standard_normal((2, 1, 3, 3)), (1, 8, 8), padding=1)
    C2 = tc.conv_matrix(rng.standard_normal((3, 2, 3, 3)), (2, 8, 8), stride=2)
    fig = tc.network_figure([C1, ("second", C2)])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == f"layer 0\n128 x 64, {C1.nnz} nnz"
    assert titles[1].startswith("second\n27 x 128")
    fig = tc.network_figure([C1, C2], names=["a", "b"])
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == ["a", "b"]
    with pytest.raises(ValueError, match=r"names must give one name per drawn layer \(2\); got 1 names"):
        tc.network_figure([C1, C2], names=["a"])
    with pytest.raises(TypeError, match="network must be a compiled Network"):
        tc.network_figure(3)


def test_network_figure_of_a_compiled_network():
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(12, 4)).double()
    net = tc.compile(model, (1, 8, 8))
    net.forward(np.random.default_rng(0).standard_normal((1, 1, 8, 8)))
    fig = tc.network_figure(net)
    titles = [ax.get_title().split("\n") for ax in fig.axes]
    assert [t[0] for t in titles] == ["0: Conv2d", "2: MaxPool2d (sample 0)", "3: Conv2d", "6: Linear"]
    assert [t[1].split(",")[0] for t in titles] == ["128 x 64", "32 x 128", "12 x 32", "4 x 12"]
    assert fig.axes[0].get_xlabel() == "in (1, 8, 8)"


# --------------------------------------------------------------------------- symbols


def _evaluate(M, wshape, w):
    """The symbolic matrix with the weight's numbers put in."""
    f = sympy.lambdify(list(tc.weight_symbols(wshape).ravel()), M, "numpy")
    return np.asarray(f(*w.ravel()), dtype=np.float64)


def test_symbolic_4x16_is_the_guides_example():
    M = tc.symbolic_conv_matrix((1, 1, 3, 3), (1, 4, 4))
    w = sympy.symbols("w_00 w_01 w_02 w_10 w_11 w_12 w_20 w_21 w_22")
    row0 = [w[0], w[1], w[2], 0, w[3], w[4], w[5], 0, w[6], w[7], w[8], 0, 0, 0, 0, 0]
    assert list(M.row(0)) == row0
    assert list(M.row(3)) == [0] * 5 + row0[:11]  # shifted by one image row and one column
    latex = sympy.latex(M)
    assert r"w_{00}" in latex and latex.startswith(r"\left[\begin{")


@pytest.mark.parametrize("wshape, ishape, opts", [
    ((1, 1, 3, 3), (1, 2, 2), {}),
    ((1, 1, 3, 3), (1, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((2, 2, 2, 2), (2, 2, 3), dict(stride=(2, 1), dilation=2)),
    ((4, 1, 3), (4, 4), dict(groups=2, stride=2, padding=1)),
], ids=["guide", "stride-pad-outpad", "channels-dilation", "groups-1d"])
def test_transpose_of_the_symbolic_matrix_is_the_transposed_convolution(wshape, ishape, opts):
    T = tc.symbolic_conv_transpose_matrix(wshape, ishape, **opts)
    out_shape = (wshape[1] * opts.get("groups", 1),
                 *tc.conv_transpose_output_size(ishape[1:], wshape[2:], **{
                     k: val for k, val in opts.items() if k != "groups"}))
    conv_opts = {k: val for k, val in opts.items() if k != "output_padding"}
    C = tc.symbolic_conv_matrix(wshape, out_shape, **conv_opts)
    assert C.T == T
    # and with numbers substituted, T is torch's conv_transpose
    w = np.random.default_rng(1).standard_normal(wshape)
    Tn = _evaluate(T, wshape, w)
    np.testing.assert_allclose(Tn, tc.conv_transpose_matrix(w, ishape, **opts).toarray(), atol=1e-12)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_symbolic_matrix_evaluates_to_conv_matrix(mode):
    wshape = (2, 2, 2, 3)
    w = np.random.default_rng(2).standard_normal(wshape)
    M = tc.symbolic_conv_matrix(wshape, (2, 4, 4), padding=1, stride=(1, 2), padding_mode=mode)
    C = tc.conv_matrix(w, (2, 4, 4), padding=1, stride=(1, 2), padding_mode=mode)
    np.testing.assert_allclose(_evaluate(M, wshape, w), C.toarray(), atol=1e-12)


def test_weight_symbols_names():
    s = tc.weight_symbols((2, 1, 2))
    assert str(s[1, 0, 1]) == "w_101"
    assert str(tc.weight_symbols((1, 1, 12))[0, 0, 11]) == "w_11"
    assert str(tc.weight_symbols((2, 1, 11))[1, 0, 10]) == "w_1,0,10"
    assert str(tc.weight_symbols((1, 1, 2), name="k")[0, 0, 1]) == "k_1"


def test_symbolic_refuses_large_layers():
    with pytest.raises(ValueError, match=r"the symbolic matrix is for small layers \(at most 65,536 entries\); got 1,024 x 1,024"):
        tc.symbolic_conv_matrix((1, 1, 3, 3), (1, 32, 32), padding=1)


def test_symbolic_figure_draws_each_entry():
    ax = tc.symbolic_figure(tc.symbolic_conv_matrix((1, 1, 2), (1, 3), padding=1), title="t")
    # a 4 x 3 band: the 6 stored entries, w_0 and w_1 three times each
    assert sorted(t.get_text() for t in ax.texts) == ["$w_{0}$"] * 3 + ["$w_{1}$"] * 3
    assert ax.get_title() == "t"
    ax.figure.canvas.draw()  # the entries are valid mathtext


def test_spy_of_sparse_matrix_types():
    A = sp.random(50, 40, density=0.1, random_state=0, format="coo")
    ax = tc.spy(sp.coo_matrix(A))
    assert ax.get_title().startswith(f"50 x 40, {A.nnz} nonzeros")


def test_more_argument_errors():
    C = tc.conv_matrix(np.ones((1, 1, 3)), (1, 5))
    with pytest.raises(TypeError, match=r"input_shape must be a tuple \(channels, \*spatial\); got 5"):
        tc.spy(C, input_shape=5)
    with pytest.raises(TypeError, match=r"field_figure needs input_shape and output_shape; got None"):
        tc.field_figure(C, None, (1, 3))
    with pytest.raises(TypeError, match=r"output_index must be an int or a tuple \(channel, \*position\); got 1.5"):
        tc.field_figure(C, (1, 5), (1, 3), output_index=1.5)
    with pytest.raises(ValueError, match=r"network has no layer with a matrix to draw"):
        tc.network_figure([])


# --------------------------------------------------------------------------- LaTeX


def _cells(tex):
    """The entries of a bmatrix string, by structure."""
    assert tex.startswith("\\begin{bmatrix}\n") and tex.endswith("\n\\end{bmatrix}")
    body = tex[len("\\begin{bmatrix}\n"):-len("\n\\end{bmatrix}")]
    return [[c.strip() for c in row.split("&")] for row in body.split("\\\\\n")]


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(padding=1, padding_mode="circular"),
                                dict(groups=2)], ids=["plain", "strided", "circular", "groups"])
def test_to_latex_is_the_symbolic_matrix(kw):
    wshape = (2, 1, 2, 2) if kw.get("groups") else (1, 1, 3, 3)
    shape = (2, 3, 3) if kw.get("groups") else (1, 4, 4)
    M = tc.symbolic_conv_matrix(wshape, shape, **kw)
    cells = _cells(tc.to_latex(wshape, shape, **kw))
    assert [[sympy.latex(M[i, j]) for j in range(M.shape[1])] for i in range(M.shape[0])] == cells
    cells_t = _cells(tc.to_latex(wshape, shape, transpose=True, **kw))
    assert [list(r) for r in zip(*cells_t)] == cells


def test_to_latex_numbers_are_the_matrix():
    w = np.random.default_rng(0).standard_normal((2, 1, 2, 2))
    C = tc.conv_matrix(w, (1, 3, 4), padding=1, padding_mode="reflect").toarray()
    cells = _cells(tc.to_latex(torch.from_numpy(w), (1, 3, 4), padding=1, padding_mode="reflect", digits=12))
    np.testing.assert_allclose(np.array(cells, dtype=float), C, rtol=1e-11)
    with pytest.raises(ValueError, match=r"the symbolic matrix is for small layers .*got 4,096 x 4,096"):
        tc.to_latex(np.ones((1, 1, 3, 3)), (1, 64, 64), padding=1)


def test_spy_ticks_every_row_of_a_small_single_channel_output():
    """The demo's 4 x 16 matrix: rows 0, 1, 2, 3 all labelled (no skipped row)."""
    C = tc.conv_matrix(np.ones((1, 1, 3, 3)), (1, 4, 4))
    ax = tc.spy(C, input_shape=(1, 4, 4), output_shape=(1, 2, 2))
    assert list(ax.get_yticks()) == [0, 1, 2, 3]
    assert list(ax.get_xticks()) == list(range(16))
    plt.close(ax.figure)


# --------------------------------------------------------------------------- animation


@pytest.mark.parametrize("kw,frames", [
    (dict(weight=np.arange(9.0).reshape(1, 1, 3, 3), input_shape=(1, 5, 5), stride=2, padding=1,
          padding_mode="reflect"), 9),  # one frame per output pixel
    (dict(weight=np.ones((1, 1, 3)), input_shape=(1, 8), dilation=2, padding=2, padding_mode="circular"), 8),
    (dict(weight=np.ones((1, 1, 3, 3)), input_shape=(1, 3, 3), stride=2, padding=1, transposed=True,
          output_padding=1), 9),  # one frame per input pixel of the transposed convolution
], ids=["2d-reflect-stride", "1d-circular-dilated", "transposed"])
def test_animate_writes_a_gif_with_one_frame_per_pixel(tmp_path, kw, frames):
    from PIL import Image

    anim = tc.animate(**kw)
    path = tmp_path / "conv.gif"
    anim.save(path, writer="pillow", dpi=40)
    plt.close("all")
    with Image.open(path) as im:
        assert im.n_frames == frames


def test_animate_refuses_other_ranks_and_too_many_channels():
    with pytest.raises(ValueError, match=r"animate draws 1D or 2D layers: weight must be \(C_out, C_in/groups, k\) "
                                         r"or \(C_out, C_in/groups, kH, kW\); got weight.shape=\(1, 1, 3, 3, 3\)"):
        tc.animate(np.ones((1, 1, 3, 3, 3)), (1, 5, 5, 5))
    with pytest.raises(ValueError, match=r"animate draws a panel per channel, at most 4 output channels; got 5 "
                                         r"output channels \(weight.shape=\(5, 1, 3, 3\), input_shape=\(1, 5, 5\)\)"):
        tc.animate(np.ones((5, 1, 3, 3)), (1, 5, 5))


def test_spy_vmax_saturates_a_dominant_diagonal_to_show_the_band():
    import scipy.sparse as sp

    C = tc.conv_matrix(np.full((1, 1, 3, 3), 0.1), (1, 5, 5), padding=1)
    A = sp.identity(25, format="csr") + C
    ax = tc.spy(A, mode="values", vmax=0.1)
    assert ax.images[0].get_clim() == (-0.1, 0.1)
    assert tc.spy(A, mode="values").images[0].get_clim() == (-1.1, 1.1)
    for bad, exc in ((0, ValueError), (float("nan"), ValueError), ("1", TypeError), (True, TypeError)):
        with pytest.raises(exc, match="vmax must be a finite number > 0 or None"):
            tc.spy(A, vmax=bad)
