"""Property-based fuzzing of whole models and geometries: the answer equals PyTorch's
(forward, autograd's input gradient, at several batch sizes), or the library refuses with a
ValueError/TypeError, quickly. Never a silent wrong answer.

Random small programs are run by one interpreter module (so torch.fx traces the ops it
picks): convolutions, activations, residual sums, concatenations, slices, reshapes, pooling,
and the constructs that once compiled wrongly (in-place ops on views, ``+=`` read through
another name, the batch size written into a shape, ``numel`` scaling, ``no_grad`` blocks,
``x - x``).
"""

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import toeplitz_conv as tc

def _programs():
    """``benchmarks/fuzz_programs.py``, where the fuzzing's programs live (with the totals)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_programs.py"
    spec = importlib.util.spec_from_file_location("_fuzz_programs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_P = _programs()
C, OPS, Program = _P.C, _P.OPS, _P.Program
REFUSED = {"view_add_", "slice_mul_", "alias_iadd", "no_grad"}  # each one, wherever it is, is refused
READS_BATCH = {"literal_batch", "numel_scale"}  # exact at the traced batch only


def _autograd(model, x):
    x = x.clone().requires_grad_(True)
    y = model(x)
    d = torch.ones_like(y) + torch.linspace(0, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    (y * d).sum().backward()
    return y.detach().numpy(), d.numpy(), x.grad.numpy()


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=5), seed=st.integers(0, 2**16),
       size=st.integers(3, 6))
def test_random_programs_compile_exactly_or_are_refused(ops, seed, size):
    model = Program(ops, seed).double().eval()
    shape = (C, size, size)
    t = time.perf_counter()
    try:
        net = tc.compile(model, shape)
    except (ValueError, TypeError) as e:
        assert REFUSED & set(ops), f"{ops} refused: {e}"
        assert "fuzz_programs.py:" in str(e) or "traced graph's output differs" in str(e), str(e)
        return
    finally:
        assert time.perf_counter() - t < 30, f"compile of {ops} took {time.perf_counter() - t:.1f} s"
    assert not REFUSED & set(ops), f"{ops} compiled"
    for n in (1, 2, 3):
        x = torch.randn(n, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + n))
        y, d, dx = _autograd(model, x)
        try:
            out = net.forward(x.numpy())
        except ValueError as e:  # a model that reads its batch size: refused off the traced batch
            assert n != 2 and "batch size" in str(e) and READS_BATCH & set(ops), (ops, n, str(e))
            continue
        np.testing.assert_allclose(out, y, rtol=1e-10, atol=1e-10, err_msg=f"forward of {ops} at batch {n}")
        _, got = net.backward(d)
        np.testing.assert_allclose(got, dx, rtol=1e-10, atol=1e-10, err_msg=f"input gradient of {ops} at batch {n}")
    try:
        bound = net.lipschitz_bound()
    except ValueError as e:  # a product of two inputs, or a map that changes with the batch
        assert "multiplies" in str(e) or ("batch size" in str(e) and READS_BATCH & set(ops)), (ops, str(e))
        return
    x = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    try:
        local = net.local_lipschitz(x.numpy()[0])
    except ValueError as e:  # traced at batch 2 only
        assert "batch size" in str(e), (ops, str(e))
        return
    assert local <= bound * (1 + 1e-6) + 1e-9, f"lipschitz_bound {bound} below a local norm {local} for {ops}"


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(dims=st.integers(1, 3), cin=st.integers(1, 4), cout=st.integers(1, 4), groups=st.sampled_from([1, 2]),
       k=st.integers(1, 4), stride=st.integers(1, 3), dilation=st.integers(1, 2), padding=st.integers(0, 3),
       mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]), n=st.integers(1, 7),
       transposed=st.booleans(), seed=st.integers(0, 2**16))
def test_random_geometries_match_torch_or_are_refused(dims, cin, cout, groups, k, stride, dilation, padding,
                                                      mode, n, transposed, seed):
    """conv_matrix / conv_transpose_matrix against torch's own convolution, in float64."""
    g = torch.Generator().manual_seed(seed)
    cin, cout = cin * groups, cout * groups
    spatial = (n,) * dims
    shape = (cin, *spatial)
    if transposed:
        w = torch.randn(cin, cout // groups, *(k,) * dims, generator=g, dtype=torch.float64)
        conv = getattr(F, f"conv_transpose{dims}d")
        try:
            ref = conv(torch.randn(1, *shape, generator=g, dtype=torch.float64), w, stride=stride,
                       padding=padding, dilation=dilation, groups=groups)
        except RuntimeError:
            ref = None
        x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
        try:
            M = tc.conv_transpose_matrix(w.numpy(), shape, stride=stride, padding=padding, dilation=dilation,
                                         groups=groups)
        except ValueError as e:
            assert ref is None or ref.numel() == 0 or "padding" in str(e) or "output" in str(e), str(e)
            return
        assert ref is not None, "the library built a transposed convolution torch refuses"
        ref = conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    else:
        w = torch.randn(cout, cin // groups, *(k,) * dims, generator=g, dtype=torch.float64)
        x = torch.randn(1, *shape, generator=g, dtype=torch.float64)
        module = getattr(nn, f"Conv{dims}d")(cin, cout, k, stride=stride, padding=padding, dilation=dilation,
                                             groups=groups, bias=False, padding_mode=mode).double()
        with torch.no_grad():
            module.weight.copy_(w)
        try:
            ref = module(x).detach()
        except RuntimeError:
            ref = None
        try:
            M = tc.conv_matrix(w.numpy(), shape, stride=stride, padding=padding, dilation=dilation, groups=groups,
                               padding_mode=mode)
        except ValueError as e:
            assert ref is None or ref.numel() == 0, f"refused what torch computes: {e}"
            return
        assert ref is not None, "the library built a convolution torch refuses"
    np.testing.assert_allclose(M @ x.numpy().ravel(), ref.numpy().ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(M.shape, (ref.numel(), x.numel()))


def test_the_fuzzed_constructs_are_all_reached():
    """The program vocabulary covers each construct that once compiled wrongly."""
    src = Program.forward.__code__.co_consts
    for op in OPS:
        assert op in src, op
    pytest.importorskip("hypothesis")
