"""Every input gets the right answer or a clear, fast refusal.

Two parts:

- the reproducers of a fuzzing pass, each once a silent wrong answer, a deep traceback, a
  hang or a multi-GiB allocation: now a correct result or a ValueError/TypeError naming the
  argument, within a time bound and under a memory cap (in a forked child);
- a hypothesis sweep (bounded, derandomized) that puts one wrong value (a wrong type, a
  wrong shape or dtype, an overflowing or non-finite number) in one argument of each public
  function and asserts a result or a ValueError/TypeError that names that argument (or a
  memory-limit refusal with its estimate).
"""

import multiprocessing as mp
import os
import resource
import time

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toeplitz_conv as tc

# --------------------------------------------------------------------------- capped runs


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(fn, conn, cap):
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + cap, resource.RLIM_INFINITY))
    try:
        fn()
        conn.send(("ok", ""))
    except BaseException as e:  # noqa: BLE001 - reported to the parent as it is
        conn.send((type(e).__name__, str(e)))


def run_capped(fn, *, cap=1 << 30, seconds=20.0):
    """Run ``fn`` in a forked child with at most ``cap`` more bytes of address space and
    ``seconds`` of time: ``(exception name or 'ok', message, seconds)``."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(fn, child, cap))
    t0 = time.perf_counter()
    p.start()
    if not parent.poll(seconds):
        p.kill()
        p.join()
        pytest.fail(f"no answer within {seconds} s (a hang or a long build before refusing)")
    kind, msg = parent.recv()
    p.join()
    return kind, msg, time.perf_counter() - t0


pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not os.path.exists("/proc/self/status"),
                                reason="capped runs need fork and /proc (Linux)")

# --------------------------------------------------------------------------- reproducers

REFUSED_UP_FRONT = {
    "conv 1D of 10**9": lambda: tc.conv_matrix(np.ones((1, 1, 3), np.float32), (1, 10**9)),
    "padding 10**8": lambda: tc.conv_matrix(np.ones((1, 1, 3, 3)), (1, 5, 5), padding=10**8),
    "transpose stride 2**30": lambda: tc.conv_transpose_matrix(np.ones((1, 1, 1)), (1, 3), stride=2**30),
    "avg pool 200000^2": lambda: tc.avg_pool_matrix((1, 200000, 200000), 2, stride=1),
    "adaptive 200000^2": lambda: tc.adaptive_avg_pool_matrix((1, 200000, 200000), (100000, 100000)),
    "max pool k40 s1": lambda: tc.max_pool_matrix(np.zeros((1, 2000, 2000), np.float32), 40, stride=1),
    "spy values of eye(10**6)": lambda: tc.spy(sp.eye(10**6, format="csr"), mode="values"),
    "weight_symbols 9M": lambda: tc.weight_symbols((1000, 1000, 3, 3)),
}


@pytest.mark.parametrize("name", sorted(REFUSED_UP_FRONT))
def test_refused_up_front_with_the_estimate(name, monkeypatch):
    monkeypatch.setenv("TOEPLITZ_CONV_MAX_BYTES", str(2**30))
    import matplotlib

    matplotlib.use("Agg")
    kind, msg, seconds = run_capped(REFUSED_UP_FRONT[name], cap=1 << 30, seconds=30)
    assert kind == "ValueError", (kind, msg)
    assert "would need about" in msg or "at most" in msg, msg
    assert seconds < 10, seconds


def test_torch_layers_refuse_before_building():
    torch = pytest.importorskip("torch")
    m = tc.ToeplitzConv2d(256, 256, 3)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="would need about"):
        m(torch.zeros(1, 256, 300, 300))
    assert time.perf_counter() - t0 < 3


@pytest.mark.parametrize("call, exc, match", [
    (lambda: tc.conv_matrix(np.ones((1, 1, 3)), (1, 10), stride=2**63), ValueError, "stride must be at most 2\\*\\*62"),
    (lambda: tc.conv_matrix(np.ones((1, 1, 3)), (1, 10), padding=2**63), ValueError, "padding must be at most"),
    (lambda: tc.avg_pool_matrix((1, 4, 4), 2, divisor_override=10**400), ValueError, "divisor_override must be at most .*401 digits"),
    (lambda: tc.avg_pool_matrix((1, 4, 4), 2, dtype=np.int64), TypeError, "dtype must be a float or complex dtype.*int64"),
    (lambda: tc.avg_pool_matrix((1, 4, 4), 2, dtype=bool), TypeError, "dtype must be a float or complex dtype.*bool"),
    (lambda: tc.adaptive_avg_pool_matrix((1, 4, 4), 2, dtype=np.int32), TypeError, "dtype must be a float"),
    (lambda: tc.avg_pool_matrix((1, 4, 4), 2, dtype="abc"), TypeError, "dtype must be a numpy float or complex dtype"),
    (lambda: tc.max_pool_matrix(np.random.rand(1, 2, 8, 8), 2), ValueError, "ambiguous.*one sample.*spatial_dims=3"),
    (lambda: tc.conv_matrix([[[1, 2], [1]]], (1, 5)), ValueError, "weight must be a rectangular array"),
    (lambda: tc.conv_pattern(None), TypeError, "geometry must be a ConvGeometry .*; got NoneType"),
    (lambda: tc.spy(sp.csr_array((0, 5))), ValueError, "C must have at least one row"),
    (lambda: tc.spy(np.eye(3), ax="x"), TypeError, "ax must be a matplotlib Axes"),
    (lambda: tc.conv_weight_grad(np.zeros((2, 1, 0)), np.ones((2, 1, 0)), (1, 1, 3)), ValueError, "x.shape must not have an empty axis"),
    (lambda: tc.conv_operator(np.ones((1, 1, 3), np.longdouble), (1, 8)), TypeError, "weight must have a dtype .*extended precision"),
])
def test_clear_errors(call, exc, match):
    import matplotlib

    matplotlib.use("Agg")
    with pytest.raises(exc, match=match):
        call()


def test_memory_limit_environment_must_be_finite(monkeypatch):
    monkeypatch.setenv("TOEPLITZ_CONV_MAX_BYTES", "inf")
    with pytest.raises(ValueError, match="TOEPLITZ_CONV_MAX_BYTES must be a finite number of bytes"):
        tc.conv_matrix(np.ones((1, 1, 3)), (1, 8))


def test_pattern_values_is_flat_and_refuses_truncating_outputs():
    w = np.random.default_rng(0).standard_normal((2, 1, 3, 3))
    p = tc.conv_pattern(tc.conv_geometry(w.shape, (1, 5, 5), padding=1))
    C = tc.conv_matrix(w, (1, 5, 5), padding=1)
    data = p.values(w)
    assert data.shape == (C.nnz,) and np.array_equal(data, C.data)
    with pytest.raises(TypeError, match="out must have a dtype that holds the weight's float64.*int8"):
        p.values(w, out=np.empty(C.nnz, np.int8))
    ro = np.empty(C.nnz)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        p.values(w, out=ro)


def test_pooling_accepts_what_torch_accepts():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(1).standard_normal((2, 6, 6))
    xt = torch.from_numpy(x)[None]
    # a negative divisor (torch refuses only 0)
    P = tc.avg_pool_matrix(x.shape, 2, divisor_override=-3)
    np.testing.assert_allclose(P @ x.ravel(), F.avg_pool2d(xt, 2, divisor_override=-3).numpy().ravel())
    # one-element tuples broadcast to every spatial axis, as torch does
    P = tc.avg_pool_matrix(x.shape, (2,), stride=(2,), padding=(1,))
    np.testing.assert_allclose(P @ x.ravel(), F.avg_pool2d(xt, (2,), stride=(2,), padding=(1,)).numpy().ravel())
    w = np.random.default_rng(2).standard_normal((3, 2, 3, 3))
    C = tc.conv_matrix(w, x.shape, stride=(2,), padding=(1,), dilation=(1,))
    ref = F.conv2d(xt, torch.from_numpy(w), stride=(2,), padding=(1,), dilation=(1,))
    np.testing.assert_allclose(C @ x.ravel(), ref.numpy().ravel())
    S = tc.max_pool_matrix(np.random.rand(1, 4, 4, 4), 2, spatial_dims=3)
    assert S.shape == (8, 64)


def test_networks_refuse_complex_and_broadcast_gradients():
    torch = pytest.importorskip("torch")
    net = tc.compile(torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU()).double(), (1, 6, 6))
    with pytest.raises(TypeError, match="x must be real.*complex128"):
        net.forward(np.ones((1, 1, 6, 6)) * 1j)
    net.forward(np.ones((1, 1, 6, 6)))
    with pytest.raises(TypeError, match="grad_output must be real"):
        net.backward(np.ones((1, 3, 4, 4)) * 1j)
    with pytest.raises(ValueError, match=r"grads\['0.weight'\] must have its parameter's shape \(3, 1, 3, 3\).*got \(3,\)"):
        net.sgd_step({"0.weight": np.ones(3)}, lr=0.1)
    with pytest.raises(TypeError, match="lr must be a finite real number; got '0.1'"):
        net.sgd_step({"0.weight": np.ones((3, 1, 3, 3))}, lr="0.1")
    with pytest.raises(TypeError, match="lr must be a finite real number"):
        net.sgd_step({"0.weight": np.ones((3, 1, 3, 3))}, lr=0.1j)
    with pytest.raises(TypeError, match="new_params must be a dict.*got list"):
        net.update([1])
    with pytest.raises(ValueError, match="start must be a position in"):
        net.linear_map(10, 12)


def test_compile_refuses_a_huge_input_up_front():
    torch = pytest.importorskip("torch")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="compile would need about"):
        tc.compile(torch.nn.Sequential(torch.nn.Flatten()), (1, 10**5, 10**5))
    assert time.perf_counter() - t0 < 3


def test_sparse_conv_checks_groups_bias_and_tensor_kinds():
    torch = pytest.importorskip("torch")
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    cases = [
        (dict(groups=1.5), TypeError, "groups of sparse_conv .* must be a positive integer; got 1.5"),
        (dict(bias=torch.ones(2)), ValueError, r"bias of sparse_conv .* must have shape \(3,\).*got bias.shape=\(2,\)"),
        (dict(bias=1.0), TypeError, "bias of sparse_conv .* must be a torch.Tensor; got float"),
        (dict(bias=np.ones(3)), TypeError, "bias of sparse_conv .* must be a torch.Tensor; got ndarray"),
        (dict(bias=[1, 2, 3]), TypeError, "got list"),
    ]
    for kw, exc, match in cases:
        with pytest.raises(exc, match=match):
            tc.sparse_conv(x, w, **kw)
    with pytest.raises(TypeError, match="input of sparse_conv .* must be a dense \\(strided\\) tensor"):
        tc.sparse_conv(x.to_sparse(), w)
    with pytest.raises(TypeError, match="weight of sparse_conv .* must be float32 or float64"):
        tc.sparse_conv(x, w.to(torch.float8_e4m3fn))
    with pytest.raises(TypeError, match="weight must be a dense tensor with values"):
        tc.conv_matrix(w.to("meta"), (2, 5, 5))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda' needs a CUDA build of torch"):
            tc.to_torch_sparse(tc.conv_matrix(np.ones((1, 1, 3)), (1, 5)), device="cuda")


# --------------------------------------------------------------------------- hypothesis sweep

BAD_VALUES = st.sampled_from([
    None, "x", 1.5, float("nan"), float("inf"), -1, 0, 2**63, 10**400, True, [], [1, [2]],
    (1, 2, 3, 4, 5), np.array([1.0, 2.0]), np.ones((2, 2), dtype=bool), np.ones(3, dtype=object),
    1j, {"a": 1},
])

# (function, its valid arguments by name): one argument at a time is replaced
CALLS = {
    "conv_matrix": (tc.conv_matrix, dict(weight=np.ones((2, 1, 3, 3)), input_shape=(1, 6, 6), stride=1,
                                         padding=1, dilation=1, groups=1, padding_mode="zeros")),
    "conv_transpose_matrix": (tc.conv_transpose_matrix, dict(weight=np.ones((1, 2, 3, 3)), input_shape=(1, 4, 4),
                                                             stride=2, padding=1, output_padding=1, dilation=1)),
    "avg_pool_matrix": (tc.avg_pool_matrix, dict(input_shape=(2, 6, 6), kernel_size=2, stride=2, padding=0,
                                                 ceil_mode=False, count_include_pad=True, divisor_override=None)),
    "adaptive_avg_pool_matrix": (tc.adaptive_avg_pool_matrix, dict(input_shape=(2, 7, 5), output_size=(3, 2))),
    "max_pool_matrix": (tc.max_pool_matrix, dict(x=np.arange(72.0).reshape(2, 6, 6), kernel_size=2, stride=2,
                                                 padding=0, dilation=1, ceil_mode=False)),
    "conv_weight_grad": (tc.conv_weight_grad, dict(x=np.ones((1, 6, 6)), grad_output=np.ones((2, 4, 4)),
                                                   weight_shape=(2, 1, 3, 3))),
    "conv_weight_jacobian": (tc.conv_weight_jacobian, dict(x=np.ones((1, 6, 6)), weight_shape=(2, 1, 3, 3))),
    "operator_norm": (tc.operator_norm, dict(weight=np.ones((2, 1, 3, 3)), input_shape=(1, 6, 6), padding=1)),
    "conv_output_size": (tc.conv_output_size, dict(input_size=(8, 8), kernel_size=3, stride=1, padding=1, dilation=1)),
    "conv_operator": (tc.conv_operator, dict(weight=np.ones((2, 1, 3)), input_shape=(1, 8), stride=2, padding=1)),
    "spy": (tc.spy, dict(C=np.eye(4), input_shape=(1, 2, 2), output_shape=(1, 4), mode="values",
                         max_bins=10, title="t", colorbar=False, aspect="auto")),
}


def _names_the_argument(msg: str, name: str, bad) -> bool:
    """The message names the argument, or shows the wrong value itself (a valid value that
    does not fit another argument: the message then names that one and shows this one), or
    is a memory refusal with its estimate."""
    shown = {repr(bad), str(bad)}
    if isinstance(bad, (tuple, list, np.ndarray)):
        shown.add(str(tuple(np.asarray(bad, dtype=object).ravel().tolist())))
    names = {"weight_shape": ("weight_shape", "weight")}.get(name, (name,))
    return any(n in msg for n in names) or any(s in msg for s in shown) or "would need about" in msg


@pytest.mark.parametrize("fname", sorted(CALLS))
@settings(max_examples=60, deadline=5000, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_one_wrong_argument_is_named(fname, data):
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    plt.close("all")
    fn, kwargs = CALLS[fname]
    name = data.draw(st.sampled_from(sorted(kwargs)))
    bad = data.draw(BAD_VALUES)
    call = dict(kwargs, **{name: bad})
    t0 = time.perf_counter()
    try:
        fn(**call)
    except (ValueError, TypeError) as e:
        assert _names_the_argument(str(e), name, bad), f"{fname}({name}={bad!r}): {type(e).__name__}: {e}"
    assert time.perf_counter() - t0 < 5
