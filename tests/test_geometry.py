"""The convolution arithmetic (conv_output_size, conv_transpose_output_size) vs torch's shapes.

Shapes come from torch on the 'meta' device (no data, no compute), so large grids are cheap.
"""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import toeplitz_conv as tc

SIZES, KERNELS, STRIDES = [1, 2, 3, 5, 8], [1, 2, 3, 5], [1, 2, 3]


def meta(*shape):
    return torch.empty(*shape, device="meta")


def torch_shape(op, i, k, **kw):
    """Spatial output shape of torch's ``op`` ('conv' or 'conv_transpose'), or None where
    torch refuses the geometry (older torch's meta kernels return an empty shape instead of
    refusing: that counts as refused too)."""
    try:
        shape = tuple(getattr(F, f"{op}{len(i)}d")(meta(1, 1, *i), meta(1, 1, *k), **kw).shape[2:])
    except RuntimeError:
        return None
    return shape if min(shape) >= 1 else None


def torch_conv_shape(i, k, **kw):
    return torch_shape("conv", i, k, **kw)


def torch_conv_transpose_shape(i, k, **kw):
    return torch_shape("conv_transpose", i, k, **kw)


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("dilation", [1, 2], ids=["d1", "d2"])
@pytest.mark.parametrize("padding", [0, 1, 2, "same", "valid"], ids=lambda p: f"p{p}")
def test_conv_output_size_1d(padding, dilation):
    checked = 0
    for i, k, s in itertools.product(SIZES, KERNELS, STRIDES):
        if padding == "same" and s != 1:
            continue
        ref = torch_conv_shape((i,), (k,), stride=s, padding=padding, dilation=dilation)
        if ref is None:  # torch refuses: empty output (see test_empty_output_* below)
            continue
        got = tc.conv_output_size(i, k, stride=s, padding=padding, dilation=dilation)
        assert type(got) is int
        assert (got,) == ref, dict(i=i, k=k, s=s)
        assert tc.conv_output_size((i,), (k,), stride=(s,), dilation=(dilation,),
                                   padding=padding if isinstance(padding, str) else (padding,)) == ref
        checked += 1
    assert checked >= 15


ND_CASES = [
    pytest.param(((7, 5), (3, 2), (2, 1), (1, 0), (1, 2)), id="2d-nonsquare"),
    pytest.param(((9, 4), (1, 1), (3, 2), (0, 0), (1, 1)), id="2d-1x1-stride"),
    pytest.param(((5, 6), (5, 6), 1, 0, 1), id="2d-kernel-eq-input"),
    pytest.param(((3, 4), (5, 6), 1, (1, 1), 1), id="2d-kernel-eq-padded-input"),
    pytest.param(((6, 7), (4, 2), 1, "same", (2, 3)), id="2d-same-even-dilated"),
    pytest.param(((6, 7), (4, 2), (2, 3), "valid", 1), id="2d-valid"),
    pytest.param(((4, 5, 6), (2, 3, 1), (1, 2, 3), (1, 0, 2), (2, 1, 1)), id="3d-nonsquare"),
    pytest.param(((4, 5, 6), (2, 3, 4), 1, "same", 1), id="3d-same-even"),
]


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("c", ND_CASES)
def test_conv_output_size_nd(c):
    i, k, s, p, d = c
    ref = torch_conv_shape(i, k, stride=s, padding=p, dilation=d)
    got = tc.conv_output_size(i, k, stride=s, padding=p, dilation=d)
    assert type(got) is tuple and all(type(o) is int for o in got)
    assert got == ref
    assert tc.conv_output_size(list(i), list(k), stride=s, padding=p, dilation=d) == ref  # list in -> tuple out


@pytest.mark.parametrize("dilation", [1, 2, 3], ids=lambda d: f"d{d}")
@pytest.mark.parametrize("stride", [1, 2, 3], ids=lambda s: f"s{s}")
def test_conv_transpose_output_size_1d(stride, dilation):
    checked = 0
    for i, k, p in itertools.product([1, 2, 4], [1, 2, 3], [0, 1, 2]):
        for a in range(max(stride, dilation)):  # every output_padding torch accepts
            ref = torch_conv_transpose_shape((i,), (k,), stride=stride, padding=p, output_padding=a,
                                             dilation=dilation)
            if ref is None:
                continue
            got = tc.conv_transpose_output_size(i, k, stride=stride, padding=p, output_padding=a,
                                                dilation=dilation)
            assert type(got) is int
            assert (got,) == ref, dict(i=i, k=k, p=p, a=a)
            checked += 1
    assert checked > 10


@pytest.mark.parametrize("c", [
    pytest.param(((3, 4), (3, 2), (2, 1), (1, 0), (1, 0), (1, 2)), id="2d-nonsquare"),
    pytest.param(((2, 3, 2), (2, 3, 1), (2, 1, 3), (0, 1, 0), (1, 0, 2), (1, 2, 1)), id="3d"),
    pytest.param(((4, 4), (1, 1), 3, 0, 2, 1), id="2d-1x1"),
])
def test_conv_transpose_output_size_nd(c):
    i, k, s, p, a, d = c
    ref = torch_conv_transpose_shape(i, k, stride=s, padding=p, output_padding=a, dilation=d)
    got = tc.conv_transpose_output_size(i, k, stride=s, padding=p, output_padding=a, dilation=d)
    assert type(got) is tuple and got == ref


def test_transpose_inverts_conv_size():
    """conv then transposed conv with output_padding = the remainder restores the size."""
    for i, k, s, p, d in itertools.product(range(3, 10), [1, 2, 3], [1, 2, 3], [0, 1], [1, 2]):
        if i + 2 * p < d * (k - 1) + 1:
            continue
        o = tc.conv_output_size(i, k, stride=s, padding=p, dilation=d)
        a = (i + 2 * p - d * (k - 1) - 1) % s
        assert tc.conv_transpose_output_size(o, k, stride=s, padding=p, output_padding=a, dilation=d) == i


def test_numpy_int_in_int_out():
    assert type(tc.conv_output_size(np.int64(9), 3, stride=np.int32(2))) is int
    assert tc.conv_output_size(np.int64(9), 3, stride=np.int32(2)) == 4


def test_geometry_matches_matrix_shape():
    g = tc.conv_geometry((4, 2, 3, 2), (2, 7, 6), stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    assert g.out_spatial == tc.conv_output_size((7, 6), (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    assert g.shape == (4 * 4 * 4, 2 * 7 * 6)
    assert g.weight_shape == (4, 2, 3, 2) and g.ndim == 2


@pytest.mark.parametrize("call, exc, match", [
    pytest.param(lambda: tc.conv_output_size((5, 5), (3, 3, 3)), ValueError, r"kernel_size.*\(3, 3, 3\)",
                 id="kernel-length"),
    pytest.param(lambda: tc.conv_output_size(5, 3, stride=0), ValueError, r"stride.*got 0", id="stride-zero"),
    pytest.param(lambda: tc.conv_output_size(5, 3, padding=-1), ValueError, r"padding.*-1", id="padding-neg"),
    pytest.param(lambda: tc.conv_output_size(5, 3, padding="same", stride=2), ValueError,
                 r"padding='same'.*stride", id="same-stride2"),
    pytest.param(lambda: tc.conv_output_size(0, 3), ValueError, r"input_size.*got 0", id="input-zero"),
    pytest.param(lambda: tc.conv_transpose_output_size(5, 3, output_padding=-1), ValueError,
                 r"output_padding.*-1", id="output-padding-neg"),
])
def test_output_size_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_empty_output_conv_output_size_raises():
    assert torch_conv_shape((2,), (5,)) is None  # torch refuses
    with pytest.raises(ValueError, match="empty"):
        tc.conv_output_size(2, 5)


def test_conv_transpose_output_size_checks_output_padding():
    with pytest.raises(RuntimeError, match="output padding"):  # torch refuses (on CPU; meta does not check)
        F.conv_transpose1d(torch.zeros(1, 1, 3), torch.zeros(1, 1, 3), output_padding=2)
    with pytest.raises(ValueError, match="output_padding"):
        tc.conv_transpose_output_size(3, 3, output_padding=2)


@pytest.mark.parametrize("size", [5.0, None], ids=["float", "none"])
def test_output_size_non_int_input_size_message(size):
    with pytest.raises(TypeError, match=r"input_size"):
        tc.conv_output_size(size, 3)
