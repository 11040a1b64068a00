"""Spectra: the FFT method, dense and Lanczos singular values, operator norms.

Every spectrum is checked against the dense SVD of the explicit matrix; operator norms also
against a power iteration built only from torch's conv2d / conv_transpose2d.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import svds

import toeplitz_conv as tc
from helpers import MODES
from toeplitz_conv.blockdiag import blocks_apply
from toeplitz_conv.spectral import DENSE_AUTO_MAX



def dense_sv(w, shape, **kw):
    return np.linalg.svd(tc.conv_matrix(w, shape, **kw).toarray(), compute_uv=False)


# --------------------------------------------------------------------------- FFT method

FFT_CASES = {
    "1d": ((3, 2, 3), (2, 11), dict(padding=1)),
    "1d-even-kernel-same": ((2, 3, 4), (3, 9), dict(padding="same")),
    "1d-kernel-wraps": ((2, 2, 7), (2, 4), dict(padding=3)),  # taps wrap around and add
    "2d-multichannel-nonsquare": ((5, 3, 3, 2), (3, 6, 7), dict(padding="same")),
    "2d-cout<cin": ((2, 4, 1, 3), (4, 5, 6), dict(padding=(0, 1))),
    "2d-dilation": ((3, 2, 3, 3), (2, 8, 7), dict(padding=(2, 1), dilation=(2, 1))),
    "2d-groups": ((4, 1, 3, 3), (2, 5, 5), dict(padding=1, groups=2)),
    "2d-depthwise": ((3, 1, 3, 3), (3, 4, 6), dict(padding=1, groups=3)),
    "2d-1x1": ((4, 3, 1, 1), (3, 4, 5), dict()),
    "3d": ((3, 2, 2, 3, 1), (2, 4, 3, 5), dict(padding="same")),
}


@pytest.mark.parametrize("complex_weight", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("case", FFT_CASES.values(), ids=FFT_CASES.keys())
def test_fft_matches_dense_svd(case, complex_weight):
    wshape, shape, kw = case
    rng = np.random.default_rng(1)
    w = rng.standard_normal(wshape)
    if complex_weight:
        w = w + 1j * rng.standard_normal(wshape)
    s = tc.singular_values(w, shape, padding_mode="circular", method="fft", **kw)
    assert s.method == "fft"
    geom = tc.conv_geometry(w.shape, shape, padding_mode="circular", **kw)
    assert tc.singular_values(w, shape, padding_mode="circular", **kw).method == \
        ("blocks" if blocks_apply(geom) is None else "fft")  # auto: a 1x1 kernel is block diagonal
    ref = dense_sv(w, shape, padding_mode="circular", **kw)
    assert s.values.shape == ref.shape
    np.testing.assert_allclose(s.values, ref, rtol=0, atol=1e-10 * ref[0])
    assert np.all(np.diff(s.values) <= 0)  # descending


def test_fft_top_k_and_norm():
    w = np.random.default_rng(2).standard_normal((6, 4, 3, 3))
    kw = dict(padding=1, padding_mode="circular")
    ref = dense_sv(w, (4, 7, 8), **kw)
    s = tc.singular_values(w, (4, 7, 8), k=5, **kw)
    assert s.method == "fft" and len(s) == 5
    np.testing.assert_allclose(s.values, ref[:5], rtol=1e-12)
    assert tc.operator_norm(w, (4, 7, 8), **kw) == pytest.approx(ref[0], rel=1e-12)


def test_float32_weight_computed_in_float64():
    w = np.random.default_rng(3).standard_normal((3, 2, 3, 3)).astype(np.float32)
    s = tc.singular_values(w, (2, 6, 6), padding=1, padding_mode="circular")
    assert s.values.dtype == np.float64
    np.testing.assert_allclose(s.values, dense_sv(w.astype(np.float64), (2, 6, 6), padding=1,
                                                  padding_mode="circular"), atol=1e-10)


def test_spectrum_behaves_as_array():
    w = np.random.default_rng(4).standard_normal((2, 2, 3))
    s = tc.singular_values(w, (2, 8), padding=1, padding_mode="circular")
    assert isinstance(s, tc.Spectrum)
    assert len(s) == 16 and s[0] == s.values[0] and s.shape == (16, 16)
    np.testing.assert_array_equal(np.asarray(s), s.values)
    assert list(s)[:2] == list(s.values[:2])
    assert "method='fft'" in repr(s)


# --------------------------------------------------------------------------- auto and other methods


@pytest.mark.parametrize("mode", MODES)
def test_dense_and_svds_every_mode_and_stride(mode):
    w = np.random.default_rng(5).standard_normal((4, 3, 3, 2))
    kw = dict(stride=(2, 1), padding=(1, 1), padding_mode=mode)
    ref = dense_sv(w, (3, 9, 8), **kw)
    s = tc.singular_values(w, (3, 9, 8), **kw)
    assert s.method == "dense"
    np.testing.assert_allclose(s.values, ref, atol=1e-12 * ref[0])
    top = tc.singular_values(w, (3, 9, 8), k=4, method="svds", **kw)
    assert top.method == "svds"
    np.testing.assert_allclose(top.values, ref[:4], rtol=1e-10)
    for method in ("auto", "dense", "svds"):
        assert tc.operator_norm(w, (3, 9, 8), method=method, **kw) == pytest.approx(ref[0], rel=1e-10)


def test_auto_choices():
    w = np.random.default_rng(6).standard_normal((2, 2, 3, 3))
    assert tc.singular_values(w, (2, 6, 6), padding=1, padding_mode="circular").method == "fft"
    assert tc.singular_values(w, (2, 6, 6), padding=1).method == "dense"
    big = (2, 32, 32)  # 2048 columns > DENSE_AUTO_MAX
    assert 2 * 32 * 32 > DENSE_AUTO_MAX
    assert tc.singular_values(w, big, padding=1, k=2).method == "svds"
    assert tc.singular_values(w, (2, 6, 6), padding=1, k=2).method == "dense"


def test_svds_zero_padded_same():
    # stride 1, 'same' zero padding: Lanczos from a random start, against the dense SVD
    w = np.random.default_rng(7).standard_normal((3, 3, 3, 3))
    for shape in [(3, 12, 12), (3, 9, 14)]:
        ref = dense_sv(w, shape, padding=1)[0]
        assert tc.operator_norm(w, shape, padding=1, method="svds") == pytest.approx(ref, rel=1e-10)


def torch_power_norm(w, shape, *, stride, padding, dilation, iters=4000):
    """sigma_max from a power iteration on A^T A, built only from torch's conv2d/conv_transpose2d."""
    w = torch.from_numpy(w)
    x = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
    k, s, p, d = w.shape[2:], stride, padding, dilation
    output_padding = tuple(shape[1 + j] - ((y.shape[2 + j] - 1) * s[j] - 2 * p[j] + d[j] * (k[j] - 1) + 1)
                           for j in range(2))
    sigma2 = 0.0
    for _ in range(iters):
        x = x / x.norm()
        y = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
        new = float(y.norm() ** 2)  # Rayleigh quotient of A^T A at the unit vector x
        x = F.conv_transpose2d(y, w, stride=stride, padding=padding, dilation=dilation,
                               output_padding=output_padding)
        if abs(new - sigma2) <= 1e-15 * new:
            break
        sigma2 = new
    return np.sqrt(new)


@pytest.mark.parametrize("geom", [
    dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1)),
    dict(stride=(2, 2), padding=(1, 0), dilation=(1, 1)),
    dict(stride=(1, 2), padding=(2, 2), dilation=(2, 1)),
], ids=["same", "stride2", "dilated"])
def test_operator_norm_vs_torch_power_iteration(geom):
    w = np.random.default_rng(8).standard_normal((3, 2, 3, 3))
    shape = (2, 7, 8)
    ref = torch_power_norm(w, shape, **geom)
    assert tc.operator_norm(w, shape, method="svds", **geom) == pytest.approx(ref, rel=1e-8)
    assert tc.operator_norm(w, shape, **geom) == pytest.approx(ref, rel=1e-8)


def test_svds_on_the_operator():
    w = np.random.default_rng(14).standard_normal((3, 2, 3, 3))
    A = tc.conv_operator(w, (2, 9, 9), stride=2, padding=1)
    ref = dense_sv(w, (2, 9, 9), stride=2, padding=1)
    s = svds(A, k=3, return_singular_vectors=False, tol=1e-12, random_state=0)
    np.testing.assert_allclose(np.sort(s)[::-1], ref[:3], rtol=1e-9)


# --------------------------------------------------------------------------- errors


def test_errors():
    w = np.random.default_rng(15).standard_normal((2, 2, 3, 3))
    with pytest.raises(ValueError, match=r"method must be one of 'auto', 'blocks', 'fft', 'dense', 'svds'; got 'eig'"):
        tc.singular_values(w, (2, 6, 6), method="eig")
    with pytest.raises(ValueError, match=r"method must be one of .*got 'power'"):
        tc.operator_norm(w, (2, 6, 6), method="power")
    with pytest.raises(ValueError, match=r"method='fft' needs a circulant layer.*padding_mode='zeros'"):
        tc.singular_values(w, (2, 6, 6), padding=1, method="fft")
    with pytest.raises(ValueError, match=r"method='fft' needs .*the input \(7, 7\) is not divisible by the stride \(2, 2\)"):
        tc.singular_values(w, (2, 7, 7), padding=1, stride=2, padding_mode="circular", method="fft")
    with pytest.raises(ValueError, match=r"method='fft' needs .*the output \(4, 4\) is not input / stride = \(6, 6\) positions"):
        tc.operator_norm(w, (2, 6, 6), padding_mode="circular", method="fft")
    with pytest.raises(ValueError, match=r"method='fft' needs .*the output \(4, 4\) is not input / stride = \(3, 3\) "
                                         r"positions .*an even kernel with symmetric padding gives one position more"):
        tc.singular_values(np.ones((2, 2, 2, 2)), (2, 6, 6), padding=1, stride=2, padding_mode="circular", method="fft")
    with pytest.raises(ValueError, match=r"which must be one of 'largest', 'smallest'; got 'min'"):
        tc.singular_values(w, (2, 6, 6), k=1, which="min")
    with pytest.raises(ValueError, match=r"method='svds' computes the top \(or bottom\) k .*got k=None"):
        tc.singular_values(w, (2, 6, 6), method="svds")
    with pytest.raises(ValueError, match=r"k must be smaller than min\(C.shape\) = 32 for method='svds'.*got k=32"):
        tc.singular_values(w, (2, 6, 6), k=32, method="svds")
    with pytest.raises(ValueError, match=r"k must be between 1 and min\(C.shape\) = 32 .*got k=0"):
        tc.singular_values(w, (2, 6, 6), k=0)
    with pytest.raises(ValueError, match=r"k must be between 1 and min\(C.shape\) = 32 .*got k=33"):
        tc.singular_values(w, (2, 6, 6), k=33)
    with pytest.raises(TypeError, match=r"k must be a positive integer or None .*got 2.0"):
        tc.singular_values(w, (2, 6, 6), k=2.0)
    with pytest.raises(ValueError, match=r"tol must be a float in \[0, 1\) .*got tol=1.5"):
        tc.operator_norm(w, (2, 6, 6), tol=1.5)
    with pytest.raises(TypeError, match=r"tol must be a float in \[0, 1\) .*got '1e-6'"):
        tc.singular_values(w, (2, 6, 6), tol="1e-6")
    # geometry errors are the library's
    with pytest.raises(ValueError, match=r"input_shape\[0\] must equal weight.shape\[1\] \* groups"):
        tc.conv_operator(w, (3, 6, 6))
    with pytest.raises(ValueError, match=r"padding_mode must be one of"):
        tc.operator_norm(w, (2, 6, 6), padding_mode="wrap")


def test_dense_refused_when_too_large():
    w = np.ones((1, 1, 3, 3))
    tc.set_memory_limit(10**6)
    try:
        with pytest.raises(ValueError, match=r"the dense SVD of the convolution matrix would need about .*k=\.\.\."):
            tc.singular_values(w, (1, 30, 30), padding=1)
        with pytest.raises(ValueError, match=r"the FFT of the kernel would need about"):
            tc.singular_values(w, (1, 300, 300), padding=1, padding_mode="circular")
    finally:
        tc.set_memory_limit(None)


# --------------------------------------------------------------------------- strided circular layers


def torch_circular_matrix(w, shape, stride, padding=0, dilation=1, groups=1):
    """The matrix of torch's circular convolution, probed column by column (an independent oracle)."""
    nd = len(shape) - 1
    conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    pads = (padding,) * nd if isinstance(padding, int) else tuple(padding)
    n = int(np.prod(shape))
    eye = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    x = F.pad(eye, [p for p in reversed(pads) for _ in (0, 1)], mode="circular")
    y = conv(x, torch.as_tensor(w), stride=stride, dilation=dilation, groups=groups)
    return y.reshape(n, -1).T.numpy()


STRIDED = {
    "1d-s2": ((3, 2, 3), (2, 12), dict(stride=2, padding=1)),
    "1d-s3-k5": ((2, 3, 5), (3, 12), dict(stride=3, padding=2)),
    "1d-s2-k4-not-circulant": ((2, 2, 4), (2, 10), dict(stride=2, padding=(1,))),  # 4 outputs, not 5: dense
    "2d-s2": ((4, 3, 3, 3), (3, 8, 6), dict(stride=2, padding=1)),
    "2d-s2x3": ((3, 2, 3, 3), (2, 6, 9), dict(stride=(2, 3), padding=1)),
    "2d-s3-k3-p1": ((2, 2, 3, 3), (2, 9, 6), dict(stride=3, padding=1)),
    "2d-s2-groups": ((4, 1, 3, 3), (2, 8, 8), dict(stride=2, padding=1, groups=2)),
    "2d-s2-dilation": ((2, 2, 3, 3), (2, 8, 8), dict(stride=2, padding=2, dilation=2)),
    "2d-s2-cout>cin*s^2": ((9, 2, 1, 1), (2, 4, 4), dict(stride=2)),
    "3d-s2": ((2, 2, 3, 3, 3), (2, 4, 4, 6), dict(stride=2, padding=1)),
}


@pytest.mark.parametrize("case", STRIDED.values(), ids=STRIDED.keys())
def test_strided_circular_fft_matches_torch_probed_svd(case):
    wshape, shape, kw = case
    w = np.random.default_rng(3).standard_normal(wshape)
    geom = tc.conv_geometry(w.shape, shape, padding_mode="circular", **kw)
    ref = np.linalg.svd(torch_circular_matrix(w, shape, **kw), compute_uv=False)
    s = tc.singular_values(w, shape, padding_mode="circular", **kw)
    if blocks_apply(geom) is None:
        assert s.method == "blocks"  # windows that do not overlap: cheaper still
    elif geom.out_spatial != tuple(n // st for n, st in zip(shape[1:], geom.stride)):
        assert s.method == "dense"  # not circulant: auto falls back
    else:
        assert s.method == "fft"
    np.testing.assert_allclose(s.values, ref, rtol=0, atol=1e-10 * ref[0])


def test_strided_fft_needs_divisible_sizes_and_refuses_with_the_reason():
    w = np.ones((1, 1, 3))
    with pytest.raises(ValueError, match=r"the input \(9,\) is not divisible by the stride \(2,\)"):
        tc.singular_values(w, (1, 9), stride=2, padding=1, padding_mode="circular", method="fft")
    assert tc.singular_values(w, (1, 9), stride=2, padding=1, padding_mode="circular").method == "dense"


# --------------------------------------------------------------------------- the smallest, condition numbers


@pytest.mark.parametrize("method", ["auto", "dense", "svds"])
@pytest.mark.parametrize("mode", MODES)
def test_smallest_singular_values(mode, method):
    w = np.random.default_rng(4).standard_normal((3, 2, 3, 3))
    kw = dict(padding=1, stride=(1, 2) if mode != "circular" else 1, padding_mode=mode)
    ref = dense_sv(w, (2, 9, 8), **kw)
    s = tc.singular_values(w, (2, 9, 8), k=4, which="smallest", method=method, **kw)
    np.testing.assert_allclose(s.values, ref[-4:], rtol=0, atol=1e-8 * ref[0])
    assert np.all(np.diff(s.values) <= 0)


def test_smallest_from_the_fft_and_a_zero_singular_value_is_zero():
    w = np.ones((1, 1, 2, 2))  # a 2x2 box: its DFT vanishes at the Nyquist frequency
    kw = dict(padding="same", padding_mode="circular")
    s = tc.singular_values(w, (1, 6, 6), k=3, which="smallest", **kw)
    assert s.method == "fft" and s.values[-1] == 0.0
    assert tc.condition_number(w, (1, 6, 6), **kw) == np.inf
    big = tc.singular_values(np.ones((1, 1, 2, 2)), (1, 30, 30), k=1, which="smallest", method="svds", **kw)
    assert big.values[0] == 0.0  # Lanczos too: a rank-deficient layer, not a solver failure


@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=1, padding_mode="reflect", stride=2),
                                dict(padding="same", padding_mode="circular"),
                                dict(padding=1, padding_mode="circular", stride=2), dict(stride=3),
                                dict(padding=2, dilation=2, padding_mode="replicate")],
                         ids=["zeros", "reflect-s2", "circular", "circular-s2", "valid-s3", "replicate-dilated"])
def test_condition_number_matches_numpy(kw):
    w = np.random.default_rng(5).standard_normal((3, 2, 3, 3))
    C = tc.conv_matrix(w, (2, 8, 8), **kw).toarray()
    np.testing.assert_allclose(tc.condition_number(w, (2, 8, 8), **kw), np.linalg.cond(C), rtol=1e-8)


def test_condition_number_by_lanczos_on_a_larger_layer():
    w = np.random.default_rng(6).standard_normal((2, 2, 3, 3))
    kw = dict(padding=1)
    C = tc.conv_matrix(w, (2, 14, 14), **kw).toarray()
    assert max(C.shape) > DENSE_AUTO_MAX
    np.testing.assert_allclose(tc.condition_number(w, (2, 14, 14), method="svds", **kw), np.linalg.cond(C), rtol=1e-6)
