"""Property-based fuzzing of whole models and geometries: the answer equals PyTorch's
(forward, autograd's input gradient, at several batch sizes), or the library refuses with a
ValueError/TypeError, quickly. Never a silent wrong answer.

Random small programs are run by one interpreter module (so torch.fx traces the ops it
picks): convolutions, activations, residual sums, concatenations, slices, reshapes, pooling,
and the constructs that once compiled wrongly (in-place ops on views, ``+=`` read through
another name, the batch size written into a shape, ``numel`` scaling, ``no_grad`` blocks,
``x - x``).
"""

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import toeplitz_conv as tc

C = 2  # channels of every tensor in a program (so any op may follow any other)
OPS = ("conv", "relu", "tanh", "skip", "cat_halve", "slice_cat", "view_add_", "slice_mul_", "alias_iadd",
       "res_iadd", "literal_batch", "numel_scale", "no_grad", "self_sub", "avg_pool", "upsample", "mean_keep",
       "mul_const", "square", "dead_product", "relu_")

REFUSED = {"view_add_", "slice_mul_", "alias_iadd", "no_grad"}  # each one, wherever it is, is refused
READS_BATCH = {"literal_batch", "numel_scale"}  # exact at the traced batch only


class Program(nn.Module):
    """Runs ``ops`` in order on a (N, C, H, W) tensor; each op keeps the shape's channels."""

    def __init__(self, ops, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.ops = list(ops)
        self.convs = nn.ModuleList(nn.Conv2d(C, C, 3, padding=1) for op in ops if op in ("conv", "no_grad"))
        self.mix = nn.Conv2d(2 * C, C, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.4)

    def forward(self, x):
        k = 0
        for op in self.ops:
            if op == "conv":
                x = self.convs[k](x)
                k += 1
            elif op == "relu":
                x = F.relu(x)
            elif op == "tanh":
                x = torch.tanh(x)
            elif op == "skip":
                x = x + F.relu(x)
            elif op == "cat_halve":
                x = self.mix(torch.cat([x, -x], 1))
            elif op == "slice_cat":
                x = torch.cat([x[:, 1:], x[:, :1]], 1)
            elif op == "view_add_":
                y = x.view(x.size(0), -1)
                y.add_(1.0)
            elif op == "slice_mul_":
                x = x * 1.0
                x[:, :1].mul_(3.0)
            elif op == "alias_iadd":
                out = x * 2.0
                identity = out
                out += x
                x = out + identity
            elif op == "res_iadd":
                out = x * 2.0
                out += x
                x = out
            elif op == "literal_batch":
                x = x.reshape(2, -1).reshape(x.shape)
            elif op == "numel_scale":
                x = x * (16.0 / x.numel())
            elif op == "no_grad":
                with torch.no_grad():
                    y = self.convs[k](x)
                k += 1
                x = x + y
            elif op == "self_sub":
                x = x - x + x
            elif op == "avg_pool":
                x = F.avg_pool2d(x, 3, 1, 1)
            elif op == "upsample":
                x = F.avg_pool2d(F.interpolate(x, scale_factor=2, mode="bilinear"), 2)
            elif op == "mean_keep":
                x = x - x.mean((2, 3), keepdim=True)
            elif op == "mul_const":
                x = x * 0.5 + 1.0
            elif op == "square":
                x = x * x
            elif op == "dead_product":
                unused = x * x  # noqa: F841 - never read by the output
            elif op == "relu_":
                x = x.clone()
                x.relu_()
        return x


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
        assert "test_fuzz_models.py:" in str(e) or "traced graph's output differs" in str(e), str(e)
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
