"""Other frameworks' conventions at the edge: TensorFlow's / ONNX's SAME (upper, lower) and VALID
for any stride, per-side padding, 'symmetric' padding, channels-last batches, kernel layouts,
and callables returning arrays through __dlpack__. TensorFlow's and ONNX's rules are emulated
with torch (explicit F.pad, permutes), so these tests need no other framework."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import toeplitz_conv as tc
from toeplitz_conv import layouts
from toeplitz_conv.testing import assert_conv_equal

rng = np.random.default_rng(0)
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _tf_same(n: int, k: int, s: int, d: int, rule: str) -> tuple[int, int]:
    """TensorFlow's SAME, written from its documentation: out = ceil(n / s)."""
    out = (n + s - 1) // s
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    lo = total // 2 if rule in ("SAME", "SAME_UPPER") else total - total // 2
    return lo, total - lo


def _reference(x: np.ndarray, w: np.ndarray, pads: list[tuple[int, int]], stride: int, dilation: int,
               mode: str = "constant") -> np.ndarray:
    """The convolution of x padded explicitly (numpy.pad: 'constant' or 'symmetric')."""
    xp = np.pad(x, [(0, 0)] + pads, mode=mode)
    n = w.ndim - 2
    return CONV[n](torch.tensor(xp)[None], torch.tensor(w), stride=stride, dilation=dilation)[0].numpy()


@pytest.mark.parametrize("rule", ["SAME", "SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("n, k, s, d", [(7, 3, 2, 1), (8, 3, 2, 1), (8, 4, 2, 1), (9, 2, 3, 2), (5, 5, 1, 1),
                                        (6, 1, 2, 1), (10, 4, 3, 1), (4, 3, 4, 1)])
def test_framework_padding_rules_for_odd_and_even_sizes_and_strides(rule: str, n: int, k: int, s: int,
                                                                    d: int) -> None:
    w, x = rng.standard_normal((2, 3, k, k)), rng.standard_normal((3, n, n + 1))
    pads = [(0, 0), (0, 0)] if rule == "VALID" else [_tf_same(m, k, s, d, rule) for m in x.shape[1:]]
    C = tc.conv_matrix(w, x.shape, stride=s, dilation=d, padding=rule)
    ref = _reference(x, w, pads, s, d)
    if rule != "VALID":
        assert ref.shape[1:] == tuple((m + s - 1) // s for m in x.shape[1:])  # ceil(n / s) outputs
    np.testing.assert_allclose(C @ x.ravel(), ref.ravel(), atol=1e-12)


@pytest.mark.parametrize("ndim", [1, 3])
def test_same_in_1d_and_3d(ndim: int) -> None:
    w = rng.standard_normal((2, 2) + (4,) * ndim)
    x = rng.standard_normal((2,) + (7,) * ndim)
    pads = [_tf_same(7, 4, 2, 1, "SAME_LOWER")] * ndim
    C = tc.conv_matrix(w, x.shape, stride=2, padding="SAME_LOWER")
    np.testing.assert_allclose(C @ x.ravel(), _reference(x, w, pads, 2, 1).ravel(), atol=1e-12)


def test_per_side_padding_pairs_and_the_output_size() -> None:
    w, x = rng.standard_normal((2, 3, 3, 3)), rng.standard_normal((3, 6, 7))
    C = tc.conv_matrix(w, x.shape, padding=((1, 0), (2, 1)), stride=(1, 2))
    ref = CONV[2](F.pad(torch.tensor(x)[None], (2, 1, 1, 0)), torch.tensor(w), stride=(1, 2))[0].numpy()
    np.testing.assert_allclose(C @ x.ravel(), ref.ravel(), atol=1e-12)
    assert tc.conv_output_size((6, 7), 3, padding=((1, 0), (2, 1)), stride=(1, 2)) == ref.shape[1:]
    assert tc.conv_output_size(7, 3, stride=2, padding="SAME") == 4


@pytest.mark.parametrize("rule", ["SAME", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("i, k, s, d", [(4, 3, 2, 1), (4, 4, 2, 1), (5, 1, 2, 1), (3, 5, 3, 1), (4, 3, 2, 2),
                                        (3, 2, 3, 1)])
def test_transposed_framework_padding_is_the_adjoint_of_the_forward_one(rule: str, i: int, k: int, s: int,
                                                                        d: int) -> None:
    """TensorFlow's conv2d_transpose is the gradient of conv2d with that padding on an output of
    i * stride (SAME) or i * stride + max(k_eff - stride, 0) (VALID, Keras's size)."""
    w = rng.standard_normal((3, 2, k, k))  # torch's (C_in, C_out, k, k) of the transposed op
    T = tc.conv_transpose_matrix(w, (3, i, i), stride=s, dilation=d, padding=rule)
    eff = d * (k - 1) + 1
    o = i * s if rule != "VALID" else i * s + max(eff - s, 0)
    pads = [(0, 0)] * 2 if rule == "VALID" else [_tf_same(o, k, s, d, rule)] * 2
    x = torch.zeros((1, 2, o, o), dtype=torch.float64, requires_grad=True)
    y = CONV[2](F.pad(x, (*pads[1], *pads[0])), torch.tensor(w), stride=s, dilation=d)  # forward: (1, 3, i, i)
    assert y.shape[2:] == (i, i)
    g = torch.tensor(rng.standard_normal((1, 3, i, i)))
    (grad,) = torch.autograd.grad(y, x, g)
    assert T.shape == (2 * o * o, 3 * i * i)
    np.testing.assert_allclose(T @ g.numpy().ravel(), grad.numpy().ravel(), atol=1e-12)


def test_transposed_per_side_pairs_crop_the_full_output() -> None:
    w, x = rng.standard_normal((2, 3, 3, 3)), rng.standard_normal((2, 4, 5))
    T = tc.conv_transpose_matrix(w, x.shape, stride=2, padding=((1, 0), (0, 2)))
    full = F.conv_transpose2d(torch.tensor(x)[None], torch.tensor(w), stride=2)[0].numpy()
    np.testing.assert_allclose(T @ x.ravel(), full[:, 1:, :full.shape[2] - 2].ravel(), atol=1e-12)


def test_symmetric_padding_repeats_the_edge_as_numpy() -> None:
    w, x = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((3, 5, 6))
    for pad, pads in [(1, [(1, 1), (1, 1)]), (((2, 1), (0, 3)), [(2, 1), (0, 3)])]:
        C = tc.conv_matrix(w, x.shape, padding=pad, padding_mode="symmetric")
        np.testing.assert_allclose(C @ x.ravel(), _reference(x, w, pads, 1, 1, "symmetric").ravel(), atol=1e-12)
        np.testing.assert_allclose(C.T @ np.ones(C.shape[0]), tc.conv_operator(
            w, x.shape, padding=pad, padding_mode="symmetric").H @ np.ones(C.shape[0]), atol=1e-12)
    with pytest.raises(ValueError, match=r"padding_mode=.symmetric.*got padding \(6, 6\) for input size \(5, 6\)"):
        tc.conv_matrix(w, x.shape, padding=6, padding_mode="symmetric")


@pytest.mark.parametrize("layout, transposed", [("HWIO", False), ("IOHW", False), ("HWOI", False),
                                                ("HWOI", True), ("OIHW", True)])
def test_a_kernel_layout_gives_the_same_matrix(layout: str, transposed: bool) -> None:
    w = rng.standard_normal((4, 3, 3, 2))  # torch's: (O, I, H, W), or (I, O, H, W) transposed
    torch_order = "IOHW" if transposed else "OIHW"
    given = np.transpose(w, [torch_order.index(a) for a in layout])
    make = tc.conv_transpose_matrix if transposed else tc.conv_matrix
    shape = (4, 5, 6) if transposed else (3, 5, 6)
    assert abs(make(given, shape, stride=2, kernel_layout=layout) - make(w, shape, stride=2)).max() == 0


def _tf_conv(w_hwio: np.ndarray, stride: int, rule: str):
    """A TensorFlow-style convolution (NHWC batches, HWIO kernel, SAME padding), in torch."""
    w = torch.tensor(w_hwio).permute(3, 2, 0, 1)

    def fn(x):
        x = torch.as_tensor(np.asarray(x)).permute(0, 3, 1, 2)
        pads = [_tf_same(n, w.shape[2 + a], stride, 1, rule) for a, n in enumerate(x.shape[2:])]
        y = F.conv2d(F.pad(x, (*pads[1], *pads[0])), w, stride=stride)
        return y.permute(0, 2, 3, 1).numpy()
    return fn


def test_a_channels_last_callable_checks_in_one_call() -> None:
    w = rng.standard_normal((3, 3, 2, 4))  # HWIO
    fn = _tf_conv(w, 2, "SAME")
    assert_conv_equal(fn, w, (7, 8, 2), stride=2, padding="SAME", layout="NHWC", kernel_layout="HWIO")
    A = tc.probe_matrix(fn, (7, 8, 2), layout="NHWC")
    C = tc.conv_matrix(w, (2, 7, 8), stride=2, padding="SAME", kernel_layout="HWIO")
    assert abs(A - C).max() < 1e-12
    with pytest.raises(AssertionError, match="entries differ|differ"):  # ONNX's SAME_LOWER is another map
        assert_conv_equal(_tf_conv(w, 2, "SAME_LOWER"), w, (7, 8, 2), stride=2, padding="SAME", layout="NHWC",
                          kernel_layout="HWIO")


class DLPackOnly:
    """An array that only speaks the array API's exchange protocol (like a CuPy or JAX array on CPU)."""

    def __init__(self, arr: np.ndarray) -> None:
        self._arr = arr

    def __dlpack__(self, **kwargs):
        return self._arr.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._arr.__dlpack_device__()


def test_a_callable_returning_only_dlpack_is_read() -> None:
    w = rng.standard_normal((2, 1, 3, 3))
    A = tc.probe_matrix(lambda x: DLPackOnly(F.conv2d(torch.as_tensor(x), torch.tensor(w)).numpy()), (1, 5, 5))
    assert abs(A - tc.conv_matrix(w, (1, 5, 5))).max() < 1e-12


def test_bad_conventions_are_refused_by_name() -> None:
    w = rng.standard_normal((2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"padding as \(low, high\) pairs needs one pair per spatial axis, 2"):
        tc.conv_matrix(w, (3, 5, 5), padding=((1, 1),))
    with pytest.raises(ValueError, match="padding must be .*'SAME', 'SAME_UPPER', 'SAME_LOWER' or 'VALID'.*got 'Same'"):
        tc.conv_matrix(w, (3, 5, 5), padding="Same")
    with pytest.raises(ValueError, match="padding='same' needs stride 1.*'SAME' \\(upper case\\)"):
        tc.conv_matrix(w, (3, 5, 5), padding="same", stride=2)
    with pytest.raises(ValueError, match="output_padding is set by padding='SAME'"):
        tc.conv_transpose_matrix(w, (2, 4, 4), stride=2, padding="SAME", output_padding=1)
    with pytest.raises(ValueError, match="kernel_layout must name the 4 axes of weight .* got 'HWI'"):
        tc.conv_matrix(w, (3, 5, 5), kernel_layout="HWI")
    with pytest.raises(ValueError, match="layout must be one of 'NCHW', 'NHWC' for 2 spatial axes; got 'NHCW'"):
        tc.probe_matrix(lambda x: x, (5, 5, 3), layout="NHCW")
    with pytest.raises(ValueError, match="fn must return a NHWC batch like its input"):
        tc.probe_matrix(lambda x: np.asarray(x).reshape(len(x), -1), (5, 5, 3), layout="NHWC")
    assert layouts.output_shape_in((3, 5, 6), "NHWC") == (5, 6, 3)


def _diagnosis(fn, w, shape, **kw) -> str:
    with pytest.raises(AssertionError) as err:
        assert_conv_equal(fn, w, shape, **kw)
    return [line for line in str(err.value).splitlines() if "diagnosis" in line or "matches" in line][0]


def test_the_other_frameworks_same_is_diagnosed_with_the_corrected_call() -> None:
    w = rng.standard_normal((3, 3, 2, 4))  # HWIO
    said = _diagnosis(_tf_conv(w, 2, "SAME_LOWER"), w, (8, 8, 2), stride=2, padding="SAME", layout="NHWC",
                      kernel_layout="HWIO")
    assert "The corrected call: padding=((1, 0), (1, 0)) (= 'SAME_LOWER')" in said, said


def test_a_transposed_same_cropped_on_one_side_is_diagnosed() -> None:
    """TensorFlow's conv2d_transpose with SAME, stride 2, kernel 4: crops 1 before and 1 after...
    with kernel 3 it crops 0 before and 1 after, which torch's symmetric padding cannot say."""
    w = rng.standard_normal((3, 2, 3, 3))  # torch's transposed layout (C_in, C_out, k, k)
    T = tc.conv_transpose_matrix(w, (3, 4, 4), stride=2, padding="SAME")
    fn = lambda x: (T @ np.asarray(x).reshape(len(x), -1).T).T.reshape(len(x), 2, 8, 8)  # noqa: E731
    said = _diagnosis(fn, w, (3, 4, 4), transposed=True, stride=2, padding=1, output_padding=1)
    assert "padding=((0, 1), (0, 1)) (= 'SAME_UPPER'), output_padding=(0, 0)" in said, said


def test_a_flip_combined_with_an_offset_is_diagnosed() -> None:
    w = rng.standard_normal((2, 3, 3, 3))
    flipped = torch.tensor(w).flip(2, 3)
    fn = lambda x: F.conv2d(F.pad(torch.as_tensor(x), (2, 0, 2, 0)), flipped)  # noqa: E731
    said = _diagnosis(fn, w, (3, 6, 6), padding=1)
    assert "zero padding (2, 2) before and (0, 0) after" in said and "kernel flipped" in said, said


TF_MODULE = '''
import numpy as np, torch, torch.nn.functional as F


def _same(n, k, s, lower):
    out = (n + s - 1) // s
    total = max((out - 1) * s + k - n, 0)
    lo = total - total // 2 if lower else total // 2
    return lo, total - lo


def conv(x, weight, stride, padding, dilation, groups, lower=False):
    """TensorFlow's conv2d: NHWC batches, an HWIO kernel, padding 'SAME' (numpy in, numpy out)."""
    assert padding == "SAME" and np.asarray(weight).shape[:2] == (3, 3)
    x = torch.as_tensor(np.asarray(x)).permute(0, 3, 1, 2)
    w = torch.as_tensor(np.asarray(weight)).permute(3, 2, 0, 1)
    (a, b), (c, d) = (_same(n, 3, stride, lower) for n in x.shape[2:])
    return F.conv2d(F.pad(x, (c, d, a, b)), w, stride=stride).permute(0, 2, 3, 1).numpy()


def conv_lower(x, weight, stride, padding, dilation, groups):
    return conv(x, weight, stride, padding, dilation, groups, lower=True)
'''


def test_verify_against_a_channels_last_same_callable(tmp_path, capsys) -> None:
    from toeplitz_conv.cli import main

    (tmp_path / "tfconv.py").write_text(TF_MODULE)
    layer = ["--input", "2x7x8", "--kernel", "4x2x3x3", "--stride", "2", "--padding", "SAME",
             "--layout", "NHWC", "--kernel-layout", "HWIO"]
    assert main(["verify", "--against", f"{tmp_path / 'tfconv.py'}:conv", *layer]) == 0
    assert "is the Conv2d" in capsys.readouterr().out
    assert main(["verify", "--against", f"{tmp_path / 'tfconv.py'}:conv_lower", *layer]) == 1
    out = capsys.readouterr().out
    assert "is NOT the Conv2d" in out and "(= 'SAME_LOWER')" in out, out
    assert main(["verify", "--against", f"{tmp_path / 'tfconv.py'}:conv", *layer[:-4], "--layout", "NHCW"]) == 2
    assert "argument --layout/--kernel-layout: layout must be one of 'NCHW', 'NHWC'" in capsys.readouterr().err


def test_a_shape_mismatch_names_the_axis_from_fns_own_output() -> None:
    """6x6 expected, fn gives 6x7: the width (an equal count of entries cannot tell 6x7 from 7x6)."""
    w = torch.tensor(rng.standard_normal((2, 3, 3, 3)))
    wide = lambda x: F.conv2d(F.pad(torch.as_tensor(x), (1, 2, 1, 1)), w)  # noqa: E731
    tall = lambda x: F.conv2d(F.pad(torch.as_tensor(x), (1, 1, 1, 2)), w)  # noqa: E731
    assert "one larger along the width: padding or stride" in _diagnosis(wide, w, (3, 6, 6), padding=1)
    assert "one larger along the height: padding or stride" in _diagnosis(tall, w, (3, 6, 6), padding=1)
    fewer = lambda x: F.conv2d(torch.as_tensor(x), w[:1], padding=1)  # noqa: E731
    assert "1 output channels instead of 2" in _diagnosis(fewer, w, (3, 6, 6), padding=1)


def test_a_channels_last_callable_checked_as_channels_first_is_diagnosed() -> None:
    """Same entry count, permuted: fn reads and returns (N, H, W, C) batches of a 6x6x6 input."""
    w = torch.tensor(rng.standard_normal((6, 6, 3, 3)))
    nhwc = lambda x: F.conv2d(torch.as_tensor(x).permute(0, 3, 1, 2), w, padding=1).permute(0, 2, 3, 1)  # noqa: E731
    said = _diagnosis(nhwc, w, (6, 6, 6), padding=1)
    assert "channels last: fn reads and returns batches" in said and "layout='NHWC'" in said, said
    returns = lambda x: F.conv2d(torch.as_tensor(x), w, padding=1).permute(0, 2, 3, 1)  # noqa: E731
    assert "channels last: fn returns batches" in _diagnosis(returns, w, (6, 6, 6), padding=1)


def test_numpys_symmetric_padding_checked_as_torchs_reflect_is_diagnosed() -> None:
    w = rng.standard_normal((2, 3, 3, 3))
    fn = lambda x: F.conv2d(torch.as_tensor(np.pad(np.asarray(x), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="symmetric")),  # noqa: E731
                            torch.tensor(w))  # at padding 1 'symmetric' is 'replicate': 2 tells them apart
    said = _diagnosis(fn, w, (3, 5, 5), padding=2, padding_mode="reflect")
    assert "fn pads with 'symmetric', not 'reflect'" in said, said
    assert_conv_equal(fn, w, (3, 5, 5), padding=2, padding_mode="symmetric")


def test_a_bfloat16_callable_is_judged_at_bfloat16s_tolerance() -> None:
    w = torch.tensor(rng.standard_normal((2, 3, 3, 3)))
    fn = lambda x: F.conv2d(torch.as_tensor(x).bfloat16(), w.bfloat16(), padding=1)  # noqa: E731
    assert_conv_equal(fn, w, (3, 5, 5), padding=1, rtol=None, atol=None)  # 3e-2: bfloat16 keeps 8 bits
    A = tc.probe_matrix(fn, (3, 5, 5))
    assert A.dtype == np.float32 and 0 < abs(A - tc.conv_matrix(w, (3, 5, 5), padding=1)).max() < 2e-2
    flipped = lambda x: F.conv2d(torch.as_tensor(x).bfloat16(), w.flip(2, 3).bfloat16(), padding=1)  # noqa: E731
    with pytest.raises(AssertionError, match="kernel flipped"):
        assert_conv_equal(flipped, w, (3, 5, 5), padding=1, rtol=None, atol=None)
    assert tc.testing.default_tolerance("bfloat16", np.float32) == 3e-2


def test_a_swapped_transposed_kernel_with_a_same_crop_is_diagnosed_jointly() -> None:
    """A hand-written conv2d_transpose that reads the weight as (out, in) and crops like TF's SAME."""
    w = rng.standard_normal((3, 3, 3, 3))
    T = tc.conv_transpose_matrix(np.swapaxes(w, 0, 1).copy(), (3, 4, 4), stride=2, padding="SAME")
    fn = lambda x: (T @ np.asarray(x).reshape(len(x), -1).T).T.reshape(len(x), 3, 8, 8)  # noqa: E731
    said = _diagnosis(fn, w, (3, 4, 4), transposed=True, stride=2, padding=1, output_padding=1)
    assert "channels swapped" in said and "(= 'SAME_UPPER')" in said, said
