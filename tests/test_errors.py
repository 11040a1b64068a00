"""Every error path of the core (issue 2): a ValueError/TypeError whose message names the
argument, states the rule and shows what was received.

Each case lists regexes that must all be found in the message: the first names the
argument, the others show the rule and what arrived.
"""

import re

import numpy as np
import pytest
import torch

import toeplitz_conv as tc

W = np.ones((4, 2, 3, 3))  # conv weight (C_out, C_in/groups, kH, kW): input (2, H, W)
WT = np.ones((4, 2, 3, 3))  # conv-transpose weight (C_in, C_out/groups, kH, kW): input (4, H, W)
X = np.ones((2, 2, 6, 6))  # batch of 2 for W
D = np.ones((2, 4, 4, 4))  # its grad_output


def conv(weight=W, input_shape=(2, 6, 6), **kw):
    return lambda: tc.conv_matrix(weight, input_shape, **kw)


def tconv(weight=WT, input_shape=(4, 3, 3), **kw):
    return lambda: tc.conv_transpose_matrix(weight, input_shape, **kw)


def wgrad(x=X, grad_output=D, weight_shape=W.shape, **kw):
    return lambda: tc.conv_weight_grad(x, grad_output, weight_shape, **kw)


def twgrad(x=np.ones((2, 4, 3, 3)), grad_output=np.ones((2, 2, 5, 5)), weight_shape=WT.shape, **kw):
    return lambda: tc.conv_transpose_weight_grad(x, grad_output, weight_shape, **kw)


def jac(x=np.ones((2, 6, 6)), weight_shape=W.shape, **kw):
    return lambda: tc.conv_weight_jacobian(x, weight_shape, **kw)


def err(id, call, exc, *patterns):
    return pytest.param(call, exc, patterns, id=id)


CASES = [
    # ---- stride / dilation / groups: non-positive, non-integer, wrong length
    err("stride-zero", conv(stride=0), ValueError, r"stride", r"positive", r"got 0"),
    err("stride-negative-axis", conv(stride=(1, -2)), ValueError, r"stride", r"positive", r"\(1, -2\)"),
    err("stride-float", conv(stride=2.0), TypeError, r"stride", r"int", r"got 2\.0"),
    err("stride-bool", conv(stride=True), TypeError, r"stride", r"int", r"got True"),
    err("stride-float-in-tuple", conv(stride=(1, 1.5)), TypeError, r"stride", r"integers", r"1\.5"),
    err("stride-wrong-length", conv(stride=(1, 2, 3)), ValueError, r"stride", r"2 ints", r"\(1, 2, 3\)"),
    err("stride-string", conv(stride="2"), (TypeError, ValueError), r"stride", r"'2'"),
    err("dilation-zero", conv(dilation=(1, 0)), ValueError, r"dilation", r"positive", r"\(1, 0\)"),
    err("dilation-float", conv(dilation=1.5), TypeError, r"dilation", r"int", r"1\.5"),
    err("groups-zero", conv(groups=0), ValueError, r"groups", r"positive", r"got 0"),
    err("groups-negative", conv(groups=-2), ValueError, r"groups", r"positive", r"-2"),
    err("groups-float", conv(groups=2.0), TypeError, r"groups", r"integer", r"2\.0"),
    err("groups-not-dividing-out-channels", conv(groups=3, input_shape=(6, 6, 6)), ValueError,
        r"groups", r"divide", r"weight\.shape\[0\]=4", r"groups=3"),
    err("channels-not-groups-times-weight", conv(np.ones((4, 2, 3, 3)), (6, 6, 6), groups=2), ValueError,
        r"input_shape\[0\]", r"weight\.shape\[1\] \* groups", r"got input_shape\[0\]=6"),
    # ---- kernel (the weight's trailing axes)
    err("kernel-zero", conv(np.ones((4, 2, 0, 3))), ValueError, r"weight", r"empty", r"\(4, 2, 0, 3\)"),
    err("weight-shape-kernel-zero", wgrad(weight_shape=(4, 2, 3, 0)), ValueError, r"weight.?shape",
        r"positive", r"\(4, 2, 3, 0\)"),
    err("weight-shape-kernel-float", wgrad(weight_shape=(4, 2, 3, 3.0)), (TypeError, ValueError),
        r"weight.?shape", r"int", r"3\.0"),
    err("weight-shape-not-a-tuple", wgrad(weight_shape=5), TypeError, r"weight.?shape", r"got 5"),
    # ---- padding
    err("padding-negative", conv(padding=-1), ValueError, r"padding", r"non-negative", r"got -1"),
    err("padding-negative-axis", conv(padding=(1, -1)), ValueError, r"padding", r"non-negative", r"\(1, -1\)"),
    err("padding-float", conv(padding=1.5), TypeError, r"padding", r"int", r"1\.5"),
    err("padding-none", conv(padding=None), TypeError, r"padding", r"None"),
    err("padding-wrong-length", conv(padding=(1, 1, 1)), ValueError, r"padding", r"2 ints", r"\(1, 1, 1\)"),
    err("padding-unknown-string", conv(padding="full"), ValueError, r"padding", r"'same' or 'valid'", r"'full'"),
    err("padding-same-stride2", conv(padding="same", stride=2), ValueError, r"padding='same'",
        r"stride 1", r"stride=\(2, 2\)"),
    err("padding-same-stride-one-axis", conv(padding="same", stride=(1, 2)), ValueError, r"padding='same'",
        r"stride 1", r"\(1, 2\)"),
    err("reflect-padding-eq-input", conv(padding=6, padding_mode="reflect"), ValueError, r"padding",
        r"smaller than the input", r"reflect", r"\(6, 6\)"),
    err("reflect-padding-one-axis", conv(input_shape=(2, 6, 4), padding=(1, 4), padding_mode="reflect"),
        ValueError, r"padding", r"reflect", r"\(1, 4\)", r"\(6, 4\)"),
    err("reflect-same-even-kernel-high-side", conv(np.ones((4, 2, 5, 5)), (2, 2, 2), padding="same",
                                                   padding_mode="reflect"),
        ValueError, r"padding", r"reflect", r"\(2, 2\)"),
    err("circular-padding-gt-input", conv(padding=7, padding_mode="circular"), ValueError, r"padding",
        r"circular", r"not exceed", r"\(7, 7\)", r"\(6, 6\)"),
    err("transpose-padding-same", tconv(padding="same"), ValueError, r"padding", r"transposed", r"'same'"),
    err("transpose-padding-negative", tconv(padding=-1), ValueError, r"padding", r"non-negative", r"-1"),
    # ---- output_padding
    err("output-padding-eq-stride", tconv(stride=2, output_padding=2), ValueError, r"output_padding",
        r"smaller than either stride or dilation", r"output_padding=\(2, 2\)", r"stride=\(2, 2\)"),
    err("output-padding-stride1", tconv(output_padding=1), ValueError, r"output_padding", r"stride",
        r"output_padding=\(1, 1\)"),
    err("output-padding-ge-stride-and-dilation", tconv(stride=2, dilation=(3, 1), output_padding=(2, 2)),
        ValueError, r"output_padding", r"dilation=\(3, 1\)", r"output_padding=\(2, 2\)"),
    err("output-padding-negative", tconv(output_padding=-1), ValueError, r"output_padding", r"-1"),
    err("transpose-weight-grad-output-padding", twgrad(output_padding=1), ValueError, r"output_padding",
        r"\(1, 1\)"),
    # ---- input_shape
    err("input-shape-channels", conv(input_shape=(3, 6, 6)), ValueError, r"input_shape\[0\]",
        r"weight\.shape\[1\]", r"got input_shape\[0\]=3"),
    err("input-shape-with-batch-axis", conv(input_shape=(1, 2, 6, 6)), ValueError, r"input_shape",
        r"batch", r"\(1, 2, 6, 6\)"),
    err("input-shape-too-short", conv(input_shape=(2, 6)), ValueError, r"input_shape", r"3 ints", r"\(2, 6\)"),
    err("input-shape-zero", conv(input_shape=(2, 6, 0)), ValueError, r"input_shape", r"positive", r"\(2, 6, 0\)"),
    err("input-shape-float", conv(input_shape=(2, 6.0, 6)), (TypeError, ValueError), r"input_shape",
        r"ints", r"6\.0"),
    err("input-shape-int", conv(input_shape=6), TypeError, r"input_shape", r"tuple", r"got 6"),
    err("transpose-input-shape-channels", tconv(input_shape=(3, 3, 3)), ValueError, r"input_shape\[0\]",
        r"weight\.shape\[0\]", r"got input_shape\[0\]=3"),
    err("transpose-groups-not-dividing", tconv(groups=3), ValueError, r"groups", r"divide",
        r"weight\.shape\[0\]=4", r"groups=3"),
    # ---- empty output
    err("empty-output", conv(input_shape=(2, 2, 2)), ValueError, r"output would be empty",
        r"input_shape=\(2, 2, 2\)", r"kernel \(3, 3\)"),
    err("empty-output-dilation", conv(input_shape=(2, 6, 4), dilation=(1, 2)), ValueError,
        r"output would be empty", r"dilation \(1, 2\)", r"\(2, 6, 4\)"),
    err("empty-output-conv-transpose", tconv(np.ones((4, 2, 1, 1)), (4, 1, 1), padding=1), ValueError,
        r"transposed convolution would be empty", r"input_shape=\(4, 1, 1\)", r"padding=\(1, 1\)"),
    # ---- weight ndim and dtype
    err("weight-ndim-2", conv(np.ones((4, 2))), ValueError, r"weight", r"3, 4 or 5", r"ndim=2"),
    err("weight-ndim-6", conv(np.ones((4, 2, 3, 3, 3, 3))), ValueError, r"weight", r"3, 4 or 5", r"ndim=6"),
    err("transpose-weight-ndim", tconv(np.ones((4, 2, 3, 3, 3, 3))), ValueError, r"weight", r"ndim=6"),
    err("weight-bool", conv(W.astype(bool)), TypeError, r"weight", r"numeric", r"bool"),
    err("weight-object", conv(W.astype(object)), TypeError, r"weight", r"numeric", r"object"),
    err("weight-str", conv(np.full((4, 2, 3, 3), "a")), TypeError, r"weight", r"numeric", r"<U1"),
    err("weight-float16", conv(W.astype(np.float16)), TypeError, r"weight", r"float16"),
    err("weight-torch-float16", conv(torch.ones(4, 2, 3, 3, dtype=torch.float16)), TypeError, r"weight",
        r"float16"),
    err("weight-torch-bfloat16", conv(torch.ones(4, 2, 3, 3, dtype=torch.bfloat16)), TypeError, r"weight",
        r"bfloat16"),
    err("weight-torch-bool", conv(torch.ones(4, 2, 3, 3, dtype=torch.bool)), TypeError, r"weight", r"bool"),
    err("weight-none", conv(None), TypeError, r"weight", r"object"),
    err("transpose-weight-float16", tconv(WT.astype(np.float16)), TypeError, r"weight", r"float16"),
    # ---- padding_mode and format
    err("padding-mode-unknown", conv(padding_mode="zero"), ValueError, r"padding_mode", r"'reflect'", r"'zero'"),
    err("padding-mode-none", conv(padding_mode=None), ValueError, r"padding_mode", r"got None"),
    err("weight-grad-padding-mode", wgrad(padding_mode="mirror"), ValueError, r"padding_mode", r"'mirror'"),
    err("jacobian-padding-mode", jac(padding_mode="mirror"), ValueError, r"padding_mode", r"'mirror'"),
    err("format-unknown", conv(format="csx"), ValueError, r"format", r"'csr'", r"'csx'"),
    err("format-dense", tconv(format="dense"), ValueError, r"format", r"'dense'"),
    err("jacobian-format", jac(format="array"), ValueError, r"format", r"'array'"),
    # ---- x / grad_output shapes and dtypes
    err("grad-output-spatial", wgrad(grad_output=np.ones((2, 4, 5, 4))), ValueError, r"grad_output",
        r"\(N, 4, 4, 4\)", r"grad_output\.shape=\(2, 4, 5, 4\)"),
    err("grad-output-channels", wgrad(grad_output=np.ones((2, 3, 4, 4))), ValueError, r"grad_output",
        r"grad_output\.shape=\(2, 3, 4, 4\)"),
    err("batch-size-mismatch", wgrad(grad_output=np.ones((3, 4, 4, 4))), ValueError, r"same number of samples",
        r"x\.shape=\(2, 2, 6, 6\)", r"grad_output\.shape=\(3, 4, 4, 4\)"),
    err("batch-vs-one-sample", wgrad(grad_output=np.ones((4, 4, 4))), ValueError, r"same number of samples",
        r"\(2, 2, 6, 6\)"),
    err("x-ndim", wgrad(x=np.ones((2, 6))), ValueError, r"x", r"\(N, C_in, \*spatial\)", r"x\.shape=\(2, 6\)"),
    err("x-ndim-too-many", wgrad(x=np.ones((1, 2, 2, 6, 6))), ValueError, r"x", r"x\.shape=\(1, 2, 2, 6, 6\)"),
    err("x-bool", wgrad(x=X.astype(bool)), TypeError, r"\bx\b", r"numeric", r"bool"),
    err("grad-output-object", wgrad(grad_output=D.astype(object)), TypeError, r"grad_output", r"object"),
    err("grad-output-float16", wgrad(grad_output=D.astype(np.float16)), TypeError, r"grad_output", r"float16"),
    err("grad-output-str", wgrad(grad_output="abc"), TypeError, r"grad_output", r"<U3"),
    err("transpose-grad-output-shape", twgrad(grad_output=np.ones((2, 2, 6, 5))), ValueError, r"grad_output",
        r"grad_output\.shape=\(2, 2, 6, 5\)"),
    err("transpose-batch-mismatch", twgrad(grad_output=np.ones((3, 2, 5, 5))), ValueError,
        r"same number of samples", r"\(3, 2, 5, 5\)", r"\(2, 4, 3, 3\)"),
    err("transpose-x-float16", twgrad(x=np.ones((2, 4, 3, 3), dtype=np.float16)), TypeError, r"\bx\b",
        r"float16"),
    err("jacobian-batch-of-two", jac(x=np.ones((2, 2, 6, 6))), ValueError, r"\bx\b", r"one sample",
        r"x\.shape=\(2, 2, 6, 6\)"),
    err("jacobian-x-bool", jac(x=np.ones((2, 6, 6), dtype=bool)), TypeError, r"\bx\b", r"bool"),
    # ---- memory limit
    err("set-memory-limit-zero", lambda: tc.set_memory_limit(0), ValueError, r"nbytes", r"positive", r"got 0"),
    err("set-memory-limit-float", lambda: tc.set_memory_limit(1.5), TypeError, r"nbytes", r"1\.5"),
]


def check_message(excinfo, patterns):
    msg = str(excinfo.value)
    for p in patterns:
        assert re.search(p, msg), f"{p!r} not in message: {msg}"


@pytest.mark.parametrize("call, exc, patterns", CASES)
def test_error_message(call, exc, patterns):
    with pytest.raises(exc, match=patterns[0]) as excinfo:
        call()
    check_message(excinfo, patterns)


# --------------------------------------------------------------------------- messages naming x
# conv_weight_grad & co. take x, not input_shape: a mismatch between x and the weight should
# name x (what the user passed), not input_shape.

X_MISMATCH = [
    pytest.param(wgrad(x=np.ones((2, 3, 6, 6))), id="conv_weight_grad-channels"),
    pytest.param(wgrad(x=np.ones((2, 2, 2, 2))), id="conv_weight_grad-empty-output"),
    pytest.param(jac(x=np.ones((3, 6, 6))), id="conv_weight_jacobian-channels"),
    pytest.param(twgrad(x=np.ones((2, 3, 3, 3))), id="conv_transpose_weight_grad-channels"),
]


@pytest.mark.parametrize("call", X_MISMATCH)
def test_x_not_matching_weight_raises(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("call", X_MISMATCH)
def test_x_not_matching_weight_names_x(call):
    with pytest.raises(ValueError) as excinfo:
        call()
    assert re.search(r"\bx\b|x\.shape", str(excinfo.value)), str(excinfo.value)


# --------------------------------------------------------------------------- memory refusal


@pytest.fixture
def memory_limit():
    """Set a library-wide memory limit for one test; always restored."""
    yield tc.set_memory_limit
    tc.set_memory_limit(None)


SIZE = r"would need about [\d.]+ (B|KiB|MiB|GiB|TiB)"


@pytest.mark.parametrize("call, what", [
    pytest.param(conv(input_shape=(2, 8, 8)), "conv_matrix", id="conv_matrix"),
    pytest.param(tconv(input_shape=(4, 8, 8)), "conv_transpose_matrix", id="conv_transpose_matrix"),
    pytest.param(jac(x=np.ones((2, 8, 8))), "conv_weight_jacobian", id="conv_weight_jacobian"),
])
def test_memory_limit_refuses(memory_limit, call, what):
    memory_limit(1000)
    with pytest.raises(ValueError, match=what + " " + SIZE) as excinfo:
        call()
    check_message(excinfo, [r"nonzeros", r"limit of 1000 B", r"set_memory_limit"])
    memory_limit(None)
    call()  # the default limit builds it


def test_memory_limit_estimate_is_nonzeros_times_bytes(memory_limit):
    """The estimate covers at least data + indices of the CSR (nnz counted from torch's shapes)."""
    C = tc.conv_matrix(W, (2, 8, 8))
    floor = C.data.nbytes + C.indices.nbytes + C.indptr.nbytes
    memory_limit(floor - 1)
    with pytest.raises(ValueError, match=SIZE):
        tc.conv_matrix(W, (2, 8, 8))
    memory_limit(None)


def test_memory_limit_default_refuses_huge_layer():
    # ~2 TiB of CSR: refused from the estimate, before anything is allocated
    with pytest.raises(ValueError, match=r"conv_matrix " + SIZE) as excinfo:
        tc.conv_matrix(np.ones((64, 64, 3, 3)), (64, 2000, 2000), padding=1)
    check_message(excinfo, [r"TiB", r"147,357,712,384 nonzeros|nonzeros", r"limit of"])


def test_memory_limit_env(monkeypatch):
    monkeypatch.setenv("TOEPLITZ_CONV_MAX_BYTES", "2e3")
    with pytest.raises(ValueError, match=r"conv_matrix " + SIZE) as excinfo:
        tc.conv_matrix(W, (2, 8, 8))
    check_message(excinfo, [r"TOEPLITZ_CONV_MAX_BYTES", r"2\.0 KiB"])
    monkeypatch.setenv("TOEPLITZ_CONV_MAX_BYTES", str(10**9))
    tc.conv_matrix(W, (2, 8, 8))


def test_memory_limit_env_invalid(monkeypatch):
    monkeypatch.setenv("TOEPLITZ_CONV_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match=r"TOEPLITZ_CONV_MAX_BYTES") as excinfo:
        tc.conv_matrix(W, (2, 8, 8))
    check_message(excinfo, [r"'lots'"])


def test_set_memory_limit_wins_over_env(monkeypatch, memory_limit):
    monkeypatch.setenv("TOEPLITZ_CONV_MAX_BYTES", "100")
    memory_limit(10**9)
    tc.conv_matrix(W, (2, 8, 8))
    memory_limit(None)
    with pytest.raises(ValueError, match=r"TOEPLITZ_CONV_MAX_BYTES"):
        tc.conv_matrix(W, (2, 8, 8))


def test_values_out_must_be_contiguous_and_sized():
    w = np.random.default_rng(0).standard_normal((2, 3, 3, 3))
    p = tc.conv_pattern(tc.conv_geometry(w.shape, (3, 5, 5), padding=1))
    C = tc.conv_matrix(w, (3, 5, 5), padding=1)
    with pytest.raises(ValueError, match=rf"out must be a C-contiguous numpy array of {C.nnz:,} entries.*got shape \(10,\)"):
        p.values(w, out=np.empty(10))
    with pytest.raises(ValueError, match=r"out must be a C-contiguous.*C-contiguous=False"):
        p.values(w, out=np.empty(2 * C.nnz)[::2])
    with pytest.raises(ValueError, match=r"got list"):
        p.values(w, out=[0.0] * C.nnz)
    C.data[:] = 0
    p.values(2 * w, out=C.data)  # in place, one gather
    np.testing.assert_array_equal(C.toarray(), tc.conv_matrix(2 * w, (3, 5, 5), padding=1).toarray())
