"""Equivalence testing: probe_matrix reads any linear callable's matrix, assert_conv_equal
passes for torch's convolutions and says what is wrong with planted mistakes."""

import re

import numpy as np
import pytest
import scipy.sparse as sp

import toeplitz_conv as tc

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.usefixtures("float64")

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

GRID = [  # (weight shape, input shape, options)
    ((3, 2, 3), (2, 9), dict(stride=2, padding=1)),
    ((4, 2, 3, 3), (2, 7, 6), dict(padding=1, dilation=2)),
    ((4, 1, 2, 3), (2, 6, 7), dict(stride=(2, 1), groups=2)),
    ((2, 2, 2, 2, 2), (2, 4, 4, 3), dict(stride=2)),
    ((3, 3, 3, 3), (3, 6, 6), dict(padding=1, padding_mode="reflect")),
    ((3, 3, 3, 3), (3, 5, 5), dict(padding=2, padding_mode="circular")),
]
GRID_T = [
    ((2, 3, 3), (2, 5), dict(stride=2, padding=1, output_padding=1)),
    ((4, 1, 3, 3), (4, 4, 5), dict(stride=2, groups=2, dilation=1)),
    ((2, 2, 2, 2, 2), (2, 3, 3, 2), dict(stride=2, padding=0)),
]


def rand(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape))


def torch_conv(w, opts):
    mode = opts.get("padding_mode", "zeros")
    o = {k: v for k, v in opts.items() if k != "padding_mode"}
    if mode == "zeros":
        return lambda x: CONV[w.dim() - 2](x, w, **o)
    conv = getattr(torch.nn, f"Conv{w.dim() - 2}d")(w.shape[1] * o.get("groups", 1), w.shape[0], w.shape[2:],
                                                   bias=False, padding_mode=mode, **o).double()
    with torch.no_grad():
        conv.weight.copy_(w)
    return lambda x: conv(x).detach()


@pytest.mark.parametrize("wshape, ishape, opts", GRID)
def test_torch_convolutions_pass(wshape, ishape, opts):
    w = rand(*wshape)
    tc.testing.assert_conv_equal(torch_conv(w, opts), w, ishape, **opts)


@pytest.mark.parametrize("wshape, ishape, opts", GRID_T)
def test_torch_transposed_convolutions_pass(wshape, ishape, opts):
    w = rand(*wshape)
    fn = lambda x: CONV_T[w.dim() - 2](x, w, **opts)  # noqa: E731
    tc.testing.assert_conv_equal(fn, w, ishape, transposed=True, **opts)


@pytest.mark.parametrize("wshape, ishape, opts", GRID)
def test_probe_matrix_is_conv_matrix(wshape, ishape, opts):
    w = rand(*wshape, seed=1)
    A = tc.probe_matrix(torch_conv(w, opts), ishape)
    C = tc.conv_matrix(w, ishape, **opts)
    assert A.shape == C.shape and isinstance(A, sp.csr_array)
    if opts.get("padding_mode", "zeros") == "zeros":  # one tap per entry: bit for bit
        assert np.array_equal(A.indices, C.indices) and np.array_equal(A.indptr, C.indptr)
        assert np.array_equal(A.data, C.data)
    else:  # summed taps: the same sums, maybe in another order
        np.testing.assert_allclose(A.toarray(), C.toarray(), rtol=1e-14, atol=1e-15)


def test_probe_matrix_of_a_numpy_callable_and_small_batches():
    C = tc.conv_matrix(np.arange(1.0, 7.0).reshape(2, 1, 3), (1, 8), stride=2)
    fn = lambda x: (C @ x.reshape(len(x), -1).T).T.reshape(len(x), 2, 3)  # noqa: E731
    A = tc.probe_matrix(fn, (1, 8), batch=3)
    assert (A != C).nnz == 0


def diagnosis(err):
    return [line for line in str(err).splitlines() if line.startswith("diagnosis")]


W = rand(3, 3, 3, 3, seed=5)


def check_fails(fn, match, **kw):
    opts = dict(padding=1)
    opts.update(kw)
    with pytest.raises(AssertionError) as info:
        tc.testing.assert_conv_equal(fn, W, (3, 6, 6), **opts)
    text = "\n".join(diagnosis(info.value))
    assert any(s in text for s in match), str(info.value)
    return str(info.value)


def test_a_flipped_kernel_is_named():
    msg = check_fails(lambda x: F.conv2d(x, W.flip(2, 3), padding=1), ["kernel flipped"])
    first = msg.splitlines()[1]  # the worst entry: output pixel, input pixel, kernel tap, values
    assert "output (" in first and "input (" in first and "kernel tap (" in first and "expected" in first


def test_swapped_channels_are_named():
    check_fails(lambda x: F.conv2d(x, W.transpose(0, 1), padding=1), ["channels swapped"])


def test_a_border_bug_is_named():
    # reflect padding where zeros were meant: only border outputs differ, and the mode is found
    fn = lambda x: F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), W)  # noqa: E731
    text = check_fails(fn, ["padding mode: fn pads with 'reflect'"])
    assert "border" in text
    # a hand-made border mistake: the last input column is dropped before the convolution
    fn = lambda x: F.conv2d(torch.cat([x[..., :-1], 0 * x[..., -1:]], dim=-1), W, padding=1)  # noqa: E731
    check_fails(fn, ["border"])


def test_a_shifted_window_is_named():
    # the window starts one position late: padding on the left only, then one on the right
    fn = lambda x: F.conv2d(F.pad(x, (0, 2, 1, 1)), W)  # noqa: E731
    check_fails(fn, ["shifted by", "offset"])


def test_output_padding_is_named():
    w = rand(2, 3, 3, 3, seed=6)
    fn = lambda x: F.conv_transpose2d(x, w, stride=2, padding=1)  # output_padding forgotten  # noqa: E731
    with pytest.raises(AssertionError, match="one smaller along the height and the width: output_padding"):
        tc.testing.assert_conv_equal(fn, w, (2, 4, 4), stride=2, padding=1, output_padding=1, transposed=True)


def test_groups_mixed_are_named():
    w = rand(4, 1, 3, 3, seed=7)
    wrong = w[[2, 3, 0, 1]]  # each group's output channels read the other group's inputs
    fn = lambda x: F.conv2d(x, wrong, groups=2)  # noqa: E731
    with pytest.raises(AssertionError) as info:
        tc.testing.assert_conv_equal(fn, w, (2, 5, 5), groups=2)
    assert "different groups" in str(info.value) or "differ" in str(info.value)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: tc.probe_matrix(3, (1, 4)), TypeError, "fn must be a callable.*got int"),
    (lambda: tc.probe_matrix(lambda x: x.sum(), (1, 4)), ValueError, "fn must return a batch \\(N, \\*out\\)"),
    (lambda: tc.probe_matrix(lambda x: x + 1, (1, 4)), ValueError, "fn must be linear, fn\\(0\\) = 0.*bias"),
    (lambda: tc.probe_matrix(lambda x: x, 5), ValueError, "input_shape must be a non-empty tuple"),
    (lambda: tc.probe_matrix(lambda x: x, (1, 4), dtype=np.int64), TypeError, "dtype must be a numpy float32 or float64"),
    (lambda: tc.probe_matrix(lambda x: "a", (1, 4)), TypeError, "fn must return a numeric array .*; got str for a numpy input"),
    (lambda: tc.probe_matrix(lambda x: x[:1] if len(x) > 1 else x, (1, 4), batch=2), ValueError,
     "same out for every batch"),
])
def test_probe_refusals(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_probe_refuses_past_the_memory_limit():
    tc.set_memory_limit(10_000)
    try:
        with pytest.raises(ValueError, match="probe_matrix would need about"):
            tc.probe_matrix(lambda x: x, (1, 100, 100))
    finally:
        tc.set_memory_limit(None)


def test_diff_figure_circles_the_mismatches():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = np.random.default_rng(3).standard_normal((1, 1, 3, 3))
    C, Fl = tc.conv_matrix(w, (1, 5, 5)), tc.conv_matrix(w[..., ::-1, ::-1].copy(), (1, 5, 5))
    ax = tc.diff_figure(C, Fl, (1, 5, 5), (1, 3, 3))
    n_bad = int((abs(C - Fl) > 1e-12).sum())
    assert ax.get_title().startswith(f"A vs B: {n_bad} of 225 entries mismatch")
    circles = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(circles) == 1 and len(circles[0].get_xdata()) == n_bad
    with pytest.raises(ValueError, match="A and B must have the same shape"):
        tc.diff_figure(C, C[:, :5])
    plt.close("all")


def test_verify_against_a_users_callable(tmp_path, capsys):
    from toeplitz_conv.cli import main

    (tmp_path / "myconv.py").write_text(
        "import torch.nn.functional as F\n"
        "def flipped(x, w, **kw):\n    return F.conv2d(x, w.flip(2, 3), **kw)\n")
    layer = ["--input", "3x6x6", "--kernel", "4x3x3x3", "--padding", "1"]
    assert main(["verify", "--against", "torch.nn.functional:conv2d", *layer]) == 0
    assert "is the Conv2d(3, 4, 3, padding=1) on 3x6x6" in capsys.readouterr().out
    assert main(["verify", "--against", f"{tmp_path / 'myconv.py'}:flipped", *layer]) == 1
    out = capsys.readouterr().out
    assert "is NOT the Conv2d(3, 4, 3, padding=1)" in out and "kernel flipped" in out
    assert main(["verify", "--against", "torch.nn.functional:conv_transpose2d", "--transposed", "--input", "3x4x4",
                 "--kernel", "3x2x3x3", "--stride", "2", "--padding", "1", "--output-padding", "1"]) == 0
    assert "ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["--against", "nope_module:conv", "--input", "1x5x5", "--kernel", "1x1x3x3"], "argument --against: cannot import 'nope_module'"),
    (["--against", "torch.nn.functional:nothing", "--input", "1x5x5", "--kernel", "1x1x3x3"], "has no attribute 'nothing'"),
    (["--against", "conv2d", "--input", "1x5x5", "--kernel", "1x1x3x3"], "--against must be MODULE:CALLABLE"),
    (["--against", "torch.nn.functional:conv2d"], "--against needs the layer it should be: --input and --kernel"),
    (["--input", "1x5x5"], "--input describes the layer of --against"),
    (["--against", "torch.nn:functional", "--input", "1x5x5", "--kernel", "1x1x3x3"], "is not callable"),
])
def test_verify_against_errors_exit_2_with_one_line(argv, match, capsys):
    from toeplitz_conv.cli import main

    assert main(["verify", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("toeplitz-conv verify: error:")
    assert re.search(match, err), err
