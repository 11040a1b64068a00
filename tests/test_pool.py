"""Pooling matrices against torch.nn.functional in float64: values, input gradients, indices."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toeplitz_conv as tc

AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
ADAPTIVE = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def check_linear_against(P, f, x, rng):
    """P @ x == f(x), and P.T @ delta == autograd's input gradient of f."""
    xt = _t(x).requires_grad_(True)
    y = f(xt[None])[0]
    np.testing.assert_allclose(P @ x.ravel(), y.detach().numpy().ravel(), rtol=1e-12, atol=1e-14)
    delta = rng.standard_normal(y.shape)
    y.backward(_t(delta))
    np.testing.assert_allclose(P.T @ delta.ravel(), xt.grad.numpy().ravel(), rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- average

AVG_CASES = {
    "1d-k3-s1": ((2, 9), dict(kernel_size=3, stride=1)),
    "1d-ceil-pad": ((1, 10), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    "1d-ceil-pad-excl": ((1, 10), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True,
                                        count_include_pad=False)),
    "2d-k2": ((3, 8, 8), dict(kernel_size=2)),
    "2d-odd-input-ceil": ((2, 7, 5), dict(kernel_size=2, ceil_mode=True)),
    "2d-ceil-pad-incl": ((2, 7, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    "2d-ceil-pad-excl": ((2, 7, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                          count_include_pad=False)),
    "2d-rect": ((1, 9, 6), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))),
    "2d-stride>kernel": ((1, 11, 11), dict(kernel_size=2, stride=4, ceil_mode=True)),
    "2d-kernel=input": ((2, 5, 5), dict(kernel_size=5)),
    "2d-divisor": ((2, 6, 6), dict(kernel_size=3, stride=2, padding=1, divisor_override=7)),
    "3d": ((2, 5, 6, 4), dict(kernel_size=2, stride=(1, 2, 2), padding=(1, 0, 1))),
    "3d-ceil-excl": ((1, 5, 5, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                         count_include_pad=False)),
    "3d-divisor": ((1, 4, 4, 4), dict(kernel_size=2, divisor_override=3)),
}


@pytest.mark.parametrize("shape,kw", AVG_CASES.values(), ids=AVG_CASES.keys())
def test_avg_pool_matches_torch(shape, kw, rng):
    x = rng.standard_normal(shape)
    P = tc.avg_pool_matrix(shape, **kw)
    check_linear_against(P, lambda t: AVG[len(shape) - 1](t, **kw), x, rng)


def test_avg_pool_columns_probe_torch():
    """Independent oracle: column j of P is the torch pooling of the unit vector e_j."""
    shape, kw = (2, 7, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                count_include_pad=False)
    P = tc.avg_pool_matrix(shape, **kw).toarray()
    eye = torch.eye(int(np.prod(shape)), dtype=torch.float64).reshape(-1, *shape)
    probed = F.avg_pool2d(eye, **kw).reshape(eye.shape[0], -1).numpy().T
    np.testing.assert_array_equal(P, probed)


def test_avg_pool_dtype_format_and_block_structure():
    P = tc.avg_pool_matrix((3, 4, 4), 2, dtype=np.float32, format="csc")
    assert P.format == "csc" and P.dtype == np.float32
    block = tc.avg_pool_matrix((1, 4, 4), 2).toarray()
    np.testing.assert_array_equal(P.toarray(), np.kron(np.eye(3), block))
    assert P.nnz == 3 * 16 and np.all(P.data == np.float32(0.25))


# --------------------------------------------------------------------------- adaptive

ADAPTIVE_CASES = {
    "1d-7to3": ((2, 7), 3),
    "1d-upsample": ((1, 3), 5),
    "2d-global": ((3, 5, 6), 1),
    "2d-none": ((2, 7, 10), (3, None)),
    "2d-uneven": ((1, 10, 9), (4, 7)),
    "3d": ((2, 5, 6, 7), (2, 3, 4)),
}


@pytest.mark.parametrize("shape,out", ADAPTIVE_CASES.values(), ids=ADAPTIVE_CASES.keys())
def test_adaptive_avg_pool_matches_torch(shape, out, rng):
    x = rng.standard_normal(shape)
    P = tc.adaptive_avg_pool_matrix(shape, out)
    check_linear_against(P, lambda t: ADAPTIVE[len(shape) - 1](t, out), x, rng)


def test_global_average_pool_is_the_mean(rng):
    x = rng.standard_normal((4, 3, 5, 2))
    np.testing.assert_allclose(tc.adaptive_avg_pool_matrix(x.shape, 1) @ x.ravel(),
                               x.mean(axis=(1, 2, 3)), rtol=1e-13)


# --------------------------------------------------------------------------- max

MAX_CASES = {
    "1d": ((2, 11), dict(kernel_size=3, stride=2, padding=1)),
    "1d-dilation-ceil": ((1, 12), dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    "2d-k2": ((3, 8, 8), dict(kernel_size=2)),
    "2d-overlap-pad": ((2, 7, 7), dict(kernel_size=3, stride=2, padding=1)),
    "2d-ceil": ((2, 7, 5), dict(kernel_size=2, ceil_mode=True)),
    "2d-dilation-pad": ((1, 9, 8), dict(kernel_size=(3, 2), stride=1, padding=(1, 1), dilation=(2, 3))),
    "2d-stride>kernel": ((1, 10, 10), dict(kernel_size=2, stride=3, ceil_mode=True)),
    "2d-kernel=input": ((2, 4, 4), dict(kernel_size=4)),
    "3d": ((2, 5, 6, 4), dict(kernel_size=2, stride=(1, 2, 2), padding=1)),
    "3d-dilation-ceil": ((1, 6, 6, 6), dict(kernel_size=2, stride=2, dilation=2, ceil_mode=True)),
}


def check_max(x, kw, rng):
    nd = x.ndim - 1
    S = tc.max_pool_matrix(x, spatial_dims=nd, **kw)
    xt = _t(x).requires_grad_(True)
    y, ind = MAX[nd](xt[None], return_indices=True, **kw)
    y, ind = y[0], ind[0]
    np.testing.assert_array_equal(S @ x.ravel(), y.detach().numpy().ravel())
    p_in = int(np.prod(x.shape[1:]))
    np.testing.assert_array_equal(S.indices % p_in, ind.numpy().ravel())
    assert S.nnz == S.shape[0] and np.all(S.data == 1)
    delta = rng.standard_normal(y.shape)
    y.backward(_t(delta))
    np.testing.assert_allclose(S.T @ delta.ravel(), xt.grad.numpy().ravel(), rtol=1e-14, atol=0)


@pytest.mark.parametrize("shape,kw", MAX_CASES.values(), ids=MAX_CASES.keys())
def test_max_pool_matches_torch(shape, kw, rng):
    check_max(rng.standard_normal(shape), kw, rng)


@pytest.mark.parametrize("shape,kw", MAX_CASES.values(), ids=MAX_CASES.keys())
def test_max_pool_ties_pick_torchs_index(shape, kw, rng):
    """Small integers: windows full of ties; the chosen index must be torch's."""
    check_max(rng.integers(0, 2, shape).astype(np.float64), kw, rng)


def test_max_pool_nan_and_inf_follow_torch(rng):
    x = np.array([[1.0, np.nan, 3.0, np.nan, 0.0, -np.inf, -np.inf, 2.0, 2.0]])
    S = tc.max_pool_matrix(x, 3, stride=1, padding=1)
    ref, ind = F.max_pool1d(_t(x)[None], 3, stride=1, padding=1, return_indices=True)
    np.testing.assert_array_equal(S.indices, ind.numpy().ravel())
    x2 = np.full((1, 4), -np.inf)  # every input -inf: torch picks the first input position
    S2 = tc.max_pool_matrix(x2, 2, padding=1)
    ref2, ind2 = F.max_pool1d(_t(x2)[None], 2, padding=1, return_indices=True)
    np.testing.assert_array_equal(S2.indices, ind2.numpy().ravel())


def test_max_pool_keeps_dtype_and_accepts_tensors(rng):
    x = torch.rand(2, 6, 6)
    S = tc.max_pool_matrix(x, 2, format="coo")
    assert S.format == "coo" and S.dtype == np.float32
    np.testing.assert_array_equal(S @ x.numpy().ravel(), F.max_pool2d(x, 2).numpy().ravel())


# --------------------------------------------------------------------------- sweep: accept/refuse as torch


@st.composite
def pool_geometry(draw):
    nd = draw(st.integers(1, 3))
    size = draw(st.lists(st.integers(1, 7), min_size=nd, max_size=nd))
    kernel = draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd))
    stride = draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd))
    padding = draw(st.lists(st.integers(0, 2), min_size=nd, max_size=nd))
    dilation = draw(st.lists(st.integers(1, 2), min_size=nd, max_size=nd))
    return (draw(st.integers(1, 2)), *size), dict(
        kernel_size=tuple(kernel), stride=tuple(stride), padding=tuple(padding),
        ceil_mode=draw(st.booleans())), tuple(dilation), draw(st.booleans())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(geom=pool_geometry())
def test_pool_sweep_against_torch(geom, rng):
    """Random geometries: where torch computes, we agree; where torch refuses, so do we."""
    shape, kw, dilation, include = geom
    nd = len(shape) - 1
    x = rng.integers(-2, 3, shape).astype(np.float64)  # ties on purpose
    try:
        AVG[nd](_t(x)[None], count_include_pad=include, **kw)
        torch_ok = True
    except RuntimeError:
        torch_ok = False
    if torch_ok:
        P = tc.avg_pool_matrix(shape, count_include_pad=include, **kw)
        check_linear_against(P, lambda t: AVG[nd](t, count_include_pad=include, **kw), x, rng)
    else:
        with pytest.raises(ValueError):
            tc.avg_pool_matrix(shape, count_include_pad=include, **kw)
    try:
        # a window of padding only: torch outputs -inf (and an index outside the input)
        torch_ok = not torch.isinf(MAX[nd](_t(x)[None], dilation=dilation, **kw)).any()
    except RuntimeError:
        torch_ok = False
    if torch_ok:
        check_max(x, dict(dilation=dilation, **kw), rng)
    else:
        with pytest.raises(ValueError):
            tc.max_pool_matrix(x, dilation=dilation, **kw)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call,exc,match", [
    (lambda: tc.avg_pool_matrix((1, 8, 8), 3, padding=2), ValueError,
     r"padding must be at most half of kernel_size .* got padding=\(2, 2\) for kernel_size=\(3, 3\)"),
    (lambda: tc.avg_pool_matrix((1, 3, 3), 5), ValueError,
     r"avg_pool_matrix: the output would be empty.*input_shape=\(1, 3, 3\)"),
    (lambda: tc.avg_pool_matrix((1, 1, 3, 3), (2, 1, 1), padding=(1, 0, 0)), ValueError,
     r"spatial size must be at least kernel_size .* got spatial size \(1, 3, 3\) for kernel_size=\(2, 1, 1\)"),
    (lambda: tc.max_pool_matrix(np.zeros((1, 2, 2)), 2, dilation=2), ValueError,
     r"max_pool_matrix: the output would be empty.*dilation=\(2, 2\)"),
    (lambda: tc.max_pool_matrix(np.zeros((1, 1, 3)), (2, 1), stride=1, padding=(1, 0), dilation=(2, 1)),
     ValueError, r"max pooling has a window that reads only padding .*input_shape=\(1, 1, 3\)"),
    (lambda: tc.avg_pool_matrix((8, 8), (2, 2)), ValueError,
     r"kernel_size must be an int or a tuple of 1 ints"),
    (lambda: tc.avg_pool_matrix((1, 1, 2, 3, 4), 2), ValueError,
     r"input_shape must be a tuple of 2, 3 or 4 ints .*got input_shape=\(1, 1, 2, 3, 4\)"),
    (lambda: tc.avg_pool_matrix(5, 2), TypeError, r"input_shape must be a tuple \(C, \*spatial\).*got 5"),
    (lambda: tc.avg_pool_matrix((1, 0, 4), 2), ValueError, r"input_shape must contain positive sizes"),
    (lambda: tc.avg_pool_matrix((1, 4, 4), 2, ceil_mode="yes"), TypeError,
     r"ceil_mode must be True or False; got 'yes'"),
    (lambda: tc.avg_pool_matrix((1, 4, 4), 2, count_include_pad=1), TypeError,
     r"count_include_pad must be True or False; got 1"),
    (lambda: tc.avg_pool_matrix((1, 4, 4), 2, divisor_override=0), ValueError,
     r"divisor_override must be a nonzero integer or None \(as in torch\); got 0"),
    (lambda: tc.avg_pool_matrix((1, 4, 4), 2, stride=0), ValueError, r"stride must contain positive"),
    (lambda: tc.avg_pool_matrix((1, 4, 4), 2, format="dense"), ValueError, r"format must be one of"),
    (lambda: tc.max_pool_matrix(np.zeros((2, 1, 4, 4, 4)), 2), ValueError,
     r"x must be one sample .*\(no batch axis\); got x.shape=\(2, 1, 4, 4, 4\)"),
    (lambda: tc.max_pool_matrix(np.zeros(4), 2), ValueError, r"x must be one sample .*got x.shape=\(4,\)"),
    (lambda: tc.max_pool_matrix(np.zeros((1, 4), dtype=bool), 2), TypeError, r"x must be a numeric array"),
    (lambda: tc.adaptive_avg_pool_matrix((1, 4, 4), (2, 2, 2)), ValueError,
     r"output_size must be an int or a tuple of 2 ints .*got output_size=\(2, 2, 2\)"),
    (lambda: tc.adaptive_avg_pool_matrix((1, 4, 4), (0, 2)), ValueError,
     r"output_size must contain positive sizes; got output_size=\(0, 2\)"),
    (lambda: tc.adaptive_avg_pool_matrix((1, 4, 4), 2.5), TypeError,
     r"output_size must be an int or a tuple of 2 ints.*got 2.5"),
])
def test_pool_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_torch_refuses_what_we_refuse():
    """The refusals above are torch's too (not stricter rules of our own)."""
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(RuntimeError, match="pad should be at most half"):
        F.avg_pool2d(x, 3, padding=2)
    with pytest.raises(RuntimeError, match="Output size is too small"):
        F.avg_pool2d(torch.zeros(1, 1, 3, 3), 5)
