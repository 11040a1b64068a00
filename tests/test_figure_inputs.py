"""The figures' arguments: a wrong one is a ValueError or TypeError that names it, says the rule
and shows what arrived, never a figure of something else; a layer too large to draw is refused
before anything is built."""

import gc
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import toeplitz_conv as tc  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _with_explicit_zeros():
    """A 2 x 4 matrix with 2 true nonzeros and 3 stored zeros (one of them a duplicate pair)."""
    rows = np.array([0, 0, 0, 1, 1, 1, 1])
    cols = np.array([0, 1, 2, 1, 3, 3, 2])
    vals = np.array([1.5, 0.0, 0.0, -2.0, 1.0, -1.0, 0.0])  # (1, 3): 1 - 1 sums to a zero
    return sp.coo_array((vals, (rows, cols)), shape=(2, 4))


# --------------------------------------------------------------------------- animate

W3 = np.ones((1, 1, 3, 3))


@pytest.mark.parametrize("mode", ["reflect", "circular", "bogus"])
def test_animate_transposed_refuses_a_padding_mode(mode):
    with pytest.raises(ValueError, match=rf"padding_mode must be 'zeros' when transposed=True \(torch's "
                                         rf"ConvTranspose pads with zeros only\); got '{mode}'"):
        tc.animate(W3, (1, 4, 4), transposed=True, padding_mode=mode)


@pytest.mark.parametrize("op", [1, (0, 1)])
def test_animate_refuses_output_padding_without_transposed(op):
    with pytest.raises(ValueError, match=re.escape(f"output_padding must be 0 unless transposed=True (it only "
                                                   f"resolves the output size of a transposed convolution); got "
                                                   f"output_padding={op!r}.")):
        tc.animate(W3, (1, 4, 4), output_padding=op)
    with pytest.raises(TypeError, match=r"output_padding must be an int or a tuple of 2 ints \(non-negative integers\); got 1.5"):
        tc.animate(W3, (1, 4, 4), output_padding=1.5)


@pytest.mark.parametrize("value, error, match", [
    (0, ValueError, r"interval must be a positive, finite number of milliseconds; got interval=0"),
    (-5.0, ValueError, r"interval must be a positive, finite number of milliseconds; got interval=-5.0"),
    (float("inf"), ValueError, r"interval must be a positive, finite number of milliseconds; got interval=inf"),
    ("700", TypeError, r"interval must be a positive, finite number of milliseconds; got '700'"),
    (True, TypeError, r"interval must be a positive, finite number of milliseconds; got True"),
])
def test_animate_checks_interval(value, error, match):
    with pytest.raises(error, match=match):
        tc.animate(W3, (1, 4, 4), interval=value)


@pytest.mark.parametrize("value", ["no", 1, None])
def test_animate_transposed_must_be_a_bool(value):
    with pytest.raises(TypeError, match=rf"transposed must be True or False; got {value!r}"):
        tc.animate(W3, (1, 4, 4), transposed=value)


@pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")  # not saved on purpose
def test_animate_accepts_numpy_bools_and_a_float_interval():
    anim = tc.animate(W3, (1, 3, 3), transposed=np.bool_(True), interval=250.5)
    assert anim.event_source.interval == 250  # matplotlib's timer counts whole milliseconds
    plt.close("all")
    del anim
    gc.collect()  # its warning, here


def test_animate_refuses_complex_weights():
    with pytest.raises(TypeError, match=r"weight must be real to be animated; got dtype complex128. "
                                        r"Pass weight.real, weight.imag or abs\(weight\)"):
        tc.animate(W3 * (1 + 1j), (1, 4, 4))


@pytest.mark.parametrize("kw, match", [
    (dict(input_shape=(1, 64, 64), padding=1),
     r"animate is for small layers \(at most 256 frames and 1,024 cells in each grid\); got 4,096 frames "
     r"\(one per output pixel\), input 1x64x64 padded to 66x66 \(4,356 cells\), output 1x64x64 \(4,096 cells\)"),
    (dict(input_shape=(1, 40, 40), transposed=True),
     r"animate is for small layers .*; got 1,600 frames \(one per input pixel\), input 1x40x40 \(1,600 cells\), "
     r"output 1x42x42 \(1,764 cells\)"),
    (dict(input_shape=(1, 2000, 2000), stride=500),
     r"animate is for small layers .*; got 16 frames \(one per output pixel\), input 1x2000x2000 \(4,000,000 cells\)"),
], ids=["frames", "transposed", "cells"])
def test_animate_refuses_large_layers_before_building_them(kw, match):
    with pytest.raises(ValueError, match=match):
        tc.animate(W3, **kw)


@pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")  # not saved on purpose
def test_animate_takes_the_largest_layer_the_command_takes():
    """256 frames, a 32x32 input and a 16x16 output: each grid within 1,024 cells."""
    anim = tc.animate(np.ones((1, 1, 17, 17)), (1, 32, 32))
    assert len(list(anim.new_frame_seq())) == 256
    plt.close("all")
    del anim
    gc.collect()


def test_animate_estimates_its_frames_through_the_memory_limit():
    tc.set_memory_limit(1_000_000)
    try:
        with pytest.raises(ValueError, match=r"animate would need about .* MiB \(36 frames of \d+ x \d+ "
                                             r"pixels, RGBA, as the GIF writer holds them.*more than the limit"):
            tc.animate(W3, (1, 8, 8))
    finally:
        tc.set_memory_limit(None)


# --------------------------------------------------------------------------- explore


def test_explore_refuses_complex_weights(tmp_path):
    with pytest.raises(TypeError, match=r"weight must be real to be drawn; got dtype complex128. "
                                        r"Pass weight.real, weight.imag or abs\(weight\)"):
        tc.explore(np.ones((1, 1, 3)) * (1 + 2j), (1, 5), path=tmp_path / "c.html")
    assert not (tmp_path / "c.html").exists()


@pytest.mark.parametrize("kw, error, match", [
    (dict(title=3), TypeError, r"title must be a str or None; got int"),
    (dict(title=b"x"), TypeError, r"title must be a str or None; got bytes"),
    (dict(path=3), TypeError, r"path must be a str or os.PathLike; got int"),
])
def test_explore_checks_title_and_path(tmp_path, kw, error, match):
    kw.setdefault("path", tmp_path / "x.html")
    with pytest.raises(error, match=match):
        tc.explore(np.ones((1, 1, 3)), (1, 5), **kw)


def test_explore_lights_only_true_nonzeros(tmp_path):
    import json

    w = np.array([[[1.0, 0.0, 2.0]]])  # a zero tap is no connection
    text = tc.explore(w, (1, 5), path=tmp_path / "z.html").read_text()
    data = json.loads(text.split("const D = ")[1].split(";\n")[0])["layers"][0]
    C = tc.conv_matrix(w, (1, 5)).toarray()
    assert 0 not in data["data"] and len(data["data"]) == np.count_nonzero(C) == 6
    assert len(data["indices"]) == 6  # the page writes its "with N nonzeros" from these


def test_explore_keeps_small_weights(tmp_path):
    """Entries are stored as they are (the page rounds what it shows), so tiny weights are not 0."""
    import json

    w = np.array([[[3e-8, -1e-9, 2.5e-7]]])
    text = tc.explore(w, (1, 4), path=tmp_path / "s.html").read_text()
    data = json.loads(text.split("const D = ")[1].split(";\n")[0])["layers"][0]
    np.testing.assert_array_equal(data["data"], tc.conv_matrix(w, (1, 4)).tocsr().data)


# --------------------------------------------------------------------------- to_latex


@pytest.mark.parametrize("value", ["no", 0, 1, None, "True"])
def test_to_latex_transpose_must_be_a_bool(value):
    with pytest.raises(TypeError, match=rf"transpose must be True or False; got {value!r}"):
        tc.to_latex((1, 1, 2), (1, 3), transpose=value)


def test_to_latex_accepts_numpy_bools():
    assert tc.to_latex((1, 1, 2), (1, 3), transpose=np.bool_(False)) == tc.to_latex((1, 1, 2), (1, 3))
    assert tc.to_latex((1, 1, 2), (1, 3), transpose=np.True_) == tc.to_latex((1, 1, 2), (1, 3), transpose=True)


@pytest.mark.parametrize("value, error", [(-1, ValueError), (0, ValueError), (2.5, TypeError),
                                          (True, TypeError), ("4", TypeError)])
def test_to_latex_checks_digits(value, error):
    for weight in ((1, 1, 2), np.ones((1, 1, 2))):  # symbolic too: a wrong digits is wrong anywhere
        with pytest.raises(error, match=rf"digits must be a positive integer; got {value!r}"):
            tc.to_latex(weight, (1, 3), digits=value)


@pytest.mark.parametrize("value, error, match", [
    (3, TypeError, r"name must be a non-empty str; got 3"),
    ("", ValueError, r"name must be a non-empty str; got ''"),
])
def test_symbol_names_must_be_strings(value, error, match):
    with pytest.raises(error, match=match):
        tc.to_latex((1, 1, 2), (1, 3), name=value)
    with pytest.raises(error, match=match):
        tc.weight_symbols((1, 1, 2), name=value)


def test_symbolic_figure_checks_its_arguments():
    M = tc.symbolic_conv_matrix((1, 1, 2), (1, 3))
    with pytest.raises(TypeError, match=r"title must be a str or None; got int"):
        tc.symbolic_figure(M, title=3)
    with pytest.raises(TypeError, match=r"ax must be a matplotlib Axes or None; got str"):
        tc.symbolic_figure(M, ax="x")
    with pytest.raises(TypeError, match=r"M must be a 2D sympy.Matrix \(e.g. from symbolic_conv_matrix\); got list"):
        tc.symbolic_figure([[1, 2]])


# --------------------------------------------------------------------------- spy and friends


def test_spy_counts_true_nonzeros_not_stored_zeros():
    A = _with_explicit_zeros()
    stored = A.tocsr()
    before = (stored.data.copy(), stored.indices.copy())
    ax = tc.spy(stored, mode="values")
    assert ax.get_title() == "2 x 4, 2 nonzeros (density 25%)"
    assert (~ax.images[0].get_array().mask).sum() == 2  # the stored zeros are blank, not 0-coloured
    np.testing.assert_array_equal(stored.data, before[0])  # the caller's matrix is untouched
    np.testing.assert_array_equal(stored.indices, before[1])
    ax = tc.spy(stored, mode="markers")
    assert sorted(zip(ax.lines[0].get_ydata(), ax.lines[0].get_xdata())) == [(0, 0), (1, 1)]


def test_network_figure_titles_count_true_nonzeros():
    A = _with_explicit_zeros().tocsr()
    fig = tc.network_figure([("zeros", A)])
    assert "2 nnz" in fig.axes[0].get_title()


def test_spy_refuses_to_draw_complex_values():
    A = sp.csr_array(np.array([[1 + 2j, 0], [0, 3j]]))
    with pytest.raises(TypeError, match=r"C must be real to be drawn as values; got dtype complex128. "
                                        r"Pass C.real, C.imag or abs\(C\)"):
        tc.spy(A, mode="values")
    ax = tc.spy(A)  # 'auto' draws the pattern of a complex matrix, not its real part
    assert not ax.images and len(ax.lines[0].get_xdata()) == 2


def test_field_and_gradient_figures_refuse_complex():
    C = tc.conv_matrix(np.ones((1, 1, 3)) * 1j, (1, 5))
    with pytest.raises(TypeError, match=r"C must be real to be drawn as values; got dtype complex128"):
        tc.field_figure(C, (1, 5), (1, 3))
    with pytest.raises(TypeError, match=r"x must be real to be drawn; got dtype complex128. Pass x.real"):
        tc.gradient_figure(np.ones((4, 4)) * 1j, np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"weight must be real to be drawn; got dtype complex128"):
        tc.gradient_figure(np.ones((4, 4)), np.ones((2, 2)) * 1j)
    with pytest.raises(TypeError, match=r"grad_output must be real to be drawn; got dtype complex128"):
        tc.gradient_figure(np.ones((4, 4)), np.ones((2, 2)), grad_output=np.ones((3, 3)) * 1j)


def test_diff_figure_of_complex_matrices_circles_the_mismatch():
    A = np.array([[1 + 1j, 0], [0, 2]])
    B = A.copy()
    B[1, 1] = 2 + 1e-3j
    ax = tc.diff_figure(A, B)
    assert ax.get_title().startswith("A vs B: 1 of 4 entries mismatch")


@pytest.mark.parametrize("value", [1.5, "1", True])
def test_gradient_figure_channels_must_be_ints(value):
    with pytest.raises(TypeError, match=rf"out_channel must be an int in \[0, 1\); got {value!r}"):
        tc.gradient_figure(np.ones((4, 4)), np.ones((2, 2)), out_channel=value)


@pytest.mark.parametrize("names, match", [
    ("ab", r"names must be a sequence of str, one per drawn layer; got the str 'ab'"),
    ([1, 2], r"names must be a sequence of str, one per drawn layer; got \[1, 2\]"),
    (3, r"names must be a sequence of str, one per drawn layer; got 3"),
])
def test_network_figure_names_must_be_strings(names, match):
    with pytest.raises(TypeError, match=match):
        tc.network_figure([np.eye(3), np.eye(3)], names=names)
