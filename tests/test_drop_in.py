"""The drop-in modules inside real training and research code: torch.func, gradients of
gradients, autocast, torch.compile, optimizers (fused, built before the conversion), tied
weights, parametrizations, empty batches, inference mode, threads, non-finite weights --
each against nn.Conv2d in float64."""

import copy
import threading

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import toeplitz_conv as tc

pytestmark = pytest.mark.usefixtures("float64")


def pair(*args, **kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(*args, **kwargs).double()
    return conv, tc.ToeplitzConv2d.from_conv(copy.deepcopy(conv))


LAYERS = [
    dict(args=(3, 4, 3), kwargs=dict(padding=1)),
    dict(args=(4, 4, 3), kwargs=dict(stride=2, padding=1, groups=2, padding_mode="reflect")),
    dict(args=(8, 8, 3), kwargs=dict(padding=1)),  # BSR storage on the CPU
]


@pytest.mark.parametrize("layer", LAYERS)
def test_torch_func_jacrev_jacfwd_vmap_match_conv2d(layer):
    conv, twin = pair(*layer["args"], **layer["kwargs"])
    x = torch.randn(2, layer["args"][0], 6, 6)
    for transform in (torch.func.jacrev, torch.func.jacfwd):
        torch.testing.assert_close(transform(twin)(x), transform(conv)(x))
    params = {k: v.detach() for k, v in conv.named_parameters()}

    def loss(module, p, xi):
        return torch.func.functional_call(module, p, (xi[None],)).square().sum()

    per_sample = torch.func.vmap(torch.func.grad(lambda p, xi: loss(conv, p, xi)), in_dims=(None, 0))(params, x)
    ours = torch.func.vmap(torch.func.grad(lambda p, xi: loss(twin, p, xi)), in_dims=(None, 0))(params, x)
    for k in per_sample:
        torch.testing.assert_close(ours[k], per_sample[k])
    _, jvp_ref = torch.func.jvp(conv, (x,), (torch.ones_like(x),))
    _, jvp_ours = torch.func.jvp(twin, (x,), (torch.ones_like(x),))
    torch.testing.assert_close(jvp_ours, jvp_ref)


def test_vmap_over_weights_ensembles():
    conv, twin = pair(2, 3, 3, padding=1)
    weights = torch.randn(4, 3, 2, 3, 3)
    x = torch.randn(5, 2, 6, 6)
    ref = torch.func.vmap(lambda w: F.conv2d(x, w, padding=1))(weights)
    ours = torch.func.vmap(lambda w: tc.sparse_conv(x, w, padding=1))(weights)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("layer", LAYERS)
def test_gradient_penalty_and_hessian_vector_products(layer):
    conv, twin = pair(*layer["args"], **layer["kwargs"])
    x0 = torch.randn(2, layer["args"][0], 6, 6)
    results = []
    for module in (conv, twin):
        x = x0.clone().requires_grad_()
        y = module(x).tanh().sum()
        (gx,) = torch.autograd.grad(y, x, create_graph=True)
        penalty = (gx.flatten(1).norm(dim=1) - 1).square().mean()  # WGAN-GP
        penalty.backward()
        results.append((penalty.detach(), x.grad if x.grad is not None else None,
                        module.weight.grad.clone(), module.bias.grad.clone()))
        module.zero_grad()
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_gradgradcheck_of_the_functional_form():
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    f = lambda x, w, b: tc.sparse_conv(x, w, b, stride=2, padding=1, padding_mode="circular")
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_returns_what_conv2d_returns(dtype):
    conv, twin = pair(3, 4, 3, padding=1)
    conv.float(), twin.float()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float32)
    with torch.autocast("cpu", dtype=dtype):
        ref, ours = conv(x), twin(x)
        assert ours.dtype == ref.dtype == dtype
        ours.float().sum().backward()
    exact = F.conv2d(x, conv.weight, conv.bias, padding=1)
    # computed in float32 then rounded once: within the lower precision's rounding of the truth
    torch.testing.assert_close(ours.float(), exact, rtol=1e-2, atol=1e-2)
    assert twin.weight.grad.dtype == torch.float32


def _train(model, steps, x, target, opt_cls=torch.optim.SGD, **opt_kw):
    opt = opt_cls(model.parameters(), lr=0.05, **opt_kw)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(model(x), target).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def _net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2),
                         nn.Flatten(), nn.Linear(2 * 3 * 3, 3)).double()


def test_torch_compile_trains_like_eager():
    torch._dynamo.reset()
    x, target = torch.randn(4, 2, 8, 8), torch.randn(4, 3)
    eager = _train(tc.convert(_net()), 3, x, target)
    compiled_model = torch.compile(tc.convert(_net()), backend="aot_eager")  # never called eagerly
    for a, b in zip(eager, _train(compiled_model, 3, x, target)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("opt_cls, kw", [
    (torch.optim.Adam, dict(fused=True)), (torch.optim.AdamW, dict(fused=True)),
    (torch.optim.SGD, dict(fused=True, momentum=0.9)), (torch.optim.Adagrad, dict(fused=True)),
    (torch.optim.Adam, dict(foreach=True)),
])
def test_fused_optimizers_train_like_conv2d(opt_cls, kw):
    x, target = torch.randn(4, 2, 8, 8), torch.randn(4, 3)
    ref = _train(_net(), 3, x, target, opt_cls, **kw)
    ours = _train(tc.convert(_net()), 3, x, target, opt_cls, **kw)
    for a, b in zip(ref, ours):
        torch.testing.assert_close(a, b)


def test_an_optimizer_built_before_convert_keeps_training():
    x, target = torch.randn(4, 2, 8, 8), torch.randn(4, 3)
    ref = _train(_net(), 2, x, target)
    model = _net()
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.05)
    model = tc.convert(model)
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    for _ in range(2):
        opt.zero_grad()
        F.mse_loss(model(x), target).backward()
        opt.step()
    for a, b in zip(ref, model.parameters()):
        torch.testing.assert_close(a, b.detach())


def test_tied_convolutions_stay_tied():
    c = nn.Conv2d(3, 3, 3, padding=1)
    model = tc.convert(nn.Sequential(c, nn.ReLU(), c, nn.Sequential(c)))
    assert type(model[0]).__name__ == "ToeplitzConv2d"
    assert model[0] is model[2] is model[3][0]
    assert len(list(model.parameters())) == 2


def test_spectral_norm_trains_like_conv2d():
    x, target = torch.randn(4, 2, 8, 8), torch.randn(4, 3)
    ref_model = _net()
    model = tc.convert(copy.deepcopy(ref_model))
    for m in (ref_model, model):  # the same random start of the power iteration on both
        torch.manual_seed(3)
        m[0] = nn.utils.parametrizations.spectral_norm(m[0])
    assert "ToeplitzConv2d" in type(model[0]).__name__
    for a, b in zip(_train(ref_model, 4, x, target), _train(model, 4, x, target)):
        torch.testing.assert_close(a, b)


def test_empty_batch_inference_mode_and_threads():
    conv, twin = pair(3, 4, 3, padding=1)
    empty = torch.randn(0, 3, 6, 6, requires_grad=True)
    y = twin(empty)
    assert y.shape == conv(empty).shape == (0, 4, 6, 6)
    y.sum().backward()
    assert empty.grad.shape == empty.shape and torch.count_nonzero(twin.weight.grad) == 0
    x = torch.randn(2, 3, 6, 6)
    with torch.inference_mode():
        made_inside = tc.ToeplitzConv2d.from_conv(nn.Conv2d(3, 4, 3).double())
        torch.testing.assert_close(twin(x), conv(x))
        assert made_inside(x).shape == (2, 4, 4, 4)
    xs = [torch.randn(3, 3, 6, 6) for _ in range(8)]
    results = [None] * len(xs)

    def work(i):
        results[i] = twin(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for xi, r in zip(xs, results):
        torch.testing.assert_close(r, conv(xi).detach())


def test_non_finite_weights_on_padding_taps_give_nan_like_conv2d():
    conv, twin = pair(1, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = float("nan")
        conv.weight[1, 0, 2, 2] = float("inf")
        twin.weight.copy_(conv.weight)
    x = torch.randn(1, 1, 5, 5)
    ref, ours = conv(x), twin(x)
    assert torch.equal(torch.isnan(ours), torch.isnan(ref))
    finite = torch.isfinite(ref)
    torch.testing.assert_close(ours[finite], ref[finite])
    # the scipy core keeps the exact matrix: no entry for padding
    C = tc.conv_matrix(conv.weight.detach().numpy(), (1, 5, 5), padding=1)
    assert C.shape == (50, 25)


def _stored_bytes(module):
    """Bytes the module's built structures and matrices hold (after a forward and backward)."""
    total = 0
    for values in module._values.values():
        s = values.structure
        for op in (s.C, s.CT):
            for t in (op.crow, op.col, op.src, op.owner):
                total += 0 if t is None else t.numel() * t.element_size()
        total += s.gather.numel() * s.gather.element_size()
        for _, M in values._mats.values():
            total += M.values().numel() * M.values().element_size()
    return total


def test_memory_report_predicts_the_matrices_and_refuses_past_the_limit():
    model = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(),   # CSR (gcd 1)
                          nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),  # BSR
                          nn.Conv2d(8, 4, 3, groups=2)).double()
    report = tc.memory_report(model, (3, 32, 32))
    assert [c.name for c in report.layers] == ["0", "2", "3"]
    assert [c.layout for c in report.layers] == ["csr", "bsr", "csr"]
    assert "0" in str(report) and "total" in str(report)
    model = tc.convert(model, input_shape=(3, 32, 32))
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    model(x).sum().backward()
    for cost, i in zip(report.layers, (0, 2, 3)):
        g = tc.conv_geometry(tuple(model[i].weight.shape), cost.in_shape, stride=model[i].stride,
                             padding=model[i].padding, groups=model[i].groups,
                             padding_mode=model[i].padding_mode)
        nnz = tc.conv_pattern(g).nnz
        assert cost.nnz == nnz if g.padding_mode == "zeros" else nnz <= cost.nnz <= 1.2 * nnz
        stored = _stored_bytes(model[i])
        assert 0.75 * stored <= cost.nbytes <= 1.6 * stored, (cost, stored)
    tc.set_memory_limit(report.total_bytes // 2)
    try:
        with pytest.raises(ValueError, match=r"would need about .* more than the limit"):
            tc.memory_report(model, (3, 32, 32))
        fresh = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.Conv2d(8, 8, 3, padding=1),
                              nn.Conv2d(8, 4, 3, groups=2)).double()
        with pytest.raises(ValueError, match="more than the limit"):
            tc.convert(fresh, input_shape=(3, 32, 32))
        assert type(fresh[0]) is nn.Conv2d  # refused before anything was swapped
    finally:
        tc.set_memory_limit(None)
    with pytest.raises(ValueError, match=r"input_shape must be a tuple of positive ints.*got 5"):
        tc.memory_report(model, 5)
