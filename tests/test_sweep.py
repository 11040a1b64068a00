"""A hypothesis sweep over random convolution geometries, checked against torch in float64.

Geometries are drawn valid by construction, following torch's rules: reflect padding smaller
than the input, circular padding at most the input, 'same' only with stride 1, non-empty
output. Each example checks the forward ``C @ x`` (``nn.ConvNd``), the input gradient
``C.T @ delta`` (autograd) and ``conv_weight_grad`` (autograd). Derandomized and bounded in
examples so CI is reproducible and fast. A second sweep does the same for transposed
convolutions (every output_padding torch accepts) and their weight gradient.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toeplitz_conv as tc

MODES = ["zeros", "reflect", "replicate", "circular"]
TOL = dict(rtol=1e-12, atol=1e-12)
MAX_IN = {1: 12, 2: 7, 3: 5}  # input size above the smallest valid one, per ndim

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


@st.composite
def geometries(draw, ndim=None):
    n = ndim or draw(st.integers(1, 3))
    mode = draw(st.sampled_from(MODES))
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    padding_kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    kernel, stride, dilation, size = [], [], [], []
    for _ in range(n):
        k = draw(st.integers(1, 4 if n < 3 else 3))
        d = draw(st.integers(1, 3))
        s = 1 if padding_kind == "same" else draw(st.integers(1, 3))
        kernel.append(k), dilation.append(d), stride.append(s)
    if padding_kind == "same":
        lo = [d * (k - 1) // 2 for k, d in zip(kernel, dilation)]
        hi = [d * (k - 1) - l for k, d, l in zip(kernel, dilation, lo)]
        padding = "same"
    elif padding_kind == "valid":
        lo = hi = [0] * n
        padding = "valid"
    elif padding_kind == "int":
        p = draw(st.integers(0, 3))
        lo = hi = [p] * n
        padding = p
    else:
        lo = hi = [draw(st.integers(0, 3)) for _ in range(n)]
        padding = tuple(lo)
    for k, d, l, h in zip(kernel, dilation, lo, hi):
        need = max(1, d * (k - 1) + 1 - l - h)  # non-empty output
        if mode == "reflect":
            need = max(need, max(l, h) + 1)
        elif mode == "circular":
            need = max(need, max(l, h))
        size.append(need + draw(st.integers(0, MAX_IN[n] - 1)))
    batch = draw(st.integers(1, 3))
    return dict(w=(cout, cin // groups, *kernel), inp=(cin, *size), stride=tuple(stride), padding=padding,
                dilation=tuple(dilation), groups=groups, mode=mode, batch=batch)


def check(g):
    n = len(g["w"]) - 2
    kw = dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"], groups=g["groups"])
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(*g["w"], generator=gen, dtype=torch.float64)
    x = torch.randn(g["batch"], *g["inp"], generator=gen, dtype=torch.float64, requires_grad=True)
    conv = getattr(torch.nn, f"Conv{n}d")(g["inp"][0], g["w"][0], g["w"][2:], bias=False,
                                          padding_mode=g["mode"], **kw).double()
    conv.weight.data = w
    y = conv(x)
    delta = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    y.backward(delta)
    N = g["batch"]

    C = tc.conv_matrix(w.numpy(), g["inp"], padding_mode=g["mode"], **kw)
    assert C.shape == (y[0].numel(), x[0].numel())
    X = x.detach().numpy().reshape(N, -1).T
    np.testing.assert_allclose(C @ X, y.detach().numpy().reshape(N, -1).T, **TOL)
    np.testing.assert_allclose(C.T @ delta.numpy().reshape(N, -1).T, x.grad.numpy().reshape(N, -1).T, **TOL)
    dW = tc.conv_weight_grad(x.detach().numpy(), delta.numpy(), g["w"], padding_mode=g["mode"], **kw)
    np.testing.assert_allclose(dW, conv.weight.grad.numpy(), **TOL)


SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=200, **SETTINGS)
@given(geometries())
def test_sweep_all_dims(g):
    check(g)


@settings(max_examples=80, **SETTINGS)
@given(geometries(ndim=2))
def test_sweep_2d(g):
    check(g)


@settings(max_examples=80, **SETTINGS)
@given(geometries(ndim=3))
def test_sweep_3d(g):
    check(g)


@st.composite
def transpose_geometries(draw):
    """Transposed convolutions: weight (C_in, C_out/groups, *k), any output_padding torch accepts."""
    n = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel, stride, dilation, pad, out_pad, size = [], [], [], [], [], []
    for _ in range(n):
        k, s, d, p = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(0, 3))
        a = draw(st.integers(0, max(s, d) - 1))
        # output (i - 1) s - 2 p + d (k - 1) + a + 1 must be >= 1
        short = max(0, 2 * p - d * (k - 1) - a)
        i_min = 1 + -(-short // s)
        kernel.append(k), stride.append(s), dilation.append(d), pad.append(p), out_pad.append(a)
        size.append(i_min + draw(st.integers(0, {1: 6, 2: 4, 3: 2}[n])))
    return dict(w=(cin, cout // groups, *kernel), inp=(cin, *size), stride=tuple(stride), padding=tuple(pad),
                output_padding=tuple(out_pad), dilation=tuple(dilation), groups=groups,
                batch=draw(st.integers(1, 3)))


@settings(max_examples=120, **SETTINGS)
@given(transpose_geometries())
def test_sweep_conv_transpose(g):
    n, N = len(g["w"]) - 2, g["batch"]
    kw = {k: g[k] for k in ("stride", "padding", "output_padding", "dilation", "groups")}
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(*g["w"], generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.randn(N, *g["inp"], generator=gen, dtype=torch.float64, requires_grad=True)
    y = getattr(torch.nn.functional, f"conv_transpose{n}d")(x, w, **kw)
    delta = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    y.backward(delta)

    T = tc.conv_transpose_matrix(w.detach().numpy(), g["inp"], **kw)
    assert T.shape == (y[0].numel(), x[0].numel())
    np.testing.assert_allclose(T @ x.detach().numpy().reshape(N, -1).T, y.detach().numpy().reshape(N, -1).T, **TOL)
    np.testing.assert_allclose(T.T @ delta.numpy().reshape(N, -1).T, x.grad.numpy().reshape(N, -1).T, **TOL)
    dW = tc.conv_transpose_weight_grad(x.detach().numpy(), delta.numpy(), g["w"], **kw)
    np.testing.assert_allclose(dW, w.grad.numpy(), **TOL)
