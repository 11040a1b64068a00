"""The nodes of modern architectures against autograd in float64: forward, input and parameter
gradients, the Jacobian (by the product of matrices and by colouring), and the Lipschitz bound
never below a local norm."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import toeplitz_conv as tc
from graph_models import Attention


class Op(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class FunctionalPReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.rand(3) - 0.5)

    def forward(self, x):
        return F.prelu(x, self.w)


def check_against_autograd(model, shape, batch=2, rtol=1e-12, seed=0):
    """Forward, gradients and Jacobians of the compiled model equal autograd's."""
    model = model.double().eval()
    net = tc.compile(model, shape)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, dtype=torch.float64, generator=g, requires_grad=True)
    y = model(x)
    d = torch.randn(y.shape, dtype=torch.float64, generator=g)
    (y * d).sum().backward()
    np.testing.assert_allclose(net.forward(x.detach().numpy()), y.detach().numpy(), rtol=1e-12, atol=1e-12)
    grads, dx = net.backward(d.numpy())
    np.testing.assert_allclose(dx, x.grad.numpy(), rtol=rtol, atol=rtol)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=rtol, atol=rtol, err_msg=name)
    x0 = x[0].detach()
    Jt = torch.autograd.functional.jacobian(lambda t: model(t[None])[0].reshape(-1), x0).reshape(y[0].numel(), -1)
    for method in ("chain", "auto"):
        J = net.jacobian(x0.numpy(), method=method)
        np.testing.assert_allclose(J.toarray(), Jt.numpy(), rtol=rtol, atol=rtol, err_msg=method)
    return net


ACTIVATION_MODULES = {
    "Hardsigmoid": nn.Hardsigmoid(), "LogSigmoid": nn.LogSigmoid(), "Softsign": nn.Softsign(),
    "Tanhshrink": nn.Tanhshrink(), "SELU": nn.SELU(), "CELU": nn.CELU(0.7), "Threshold": nn.Threshold(0.1, 0.1),
    "Threshold-jump": nn.Threshold(0.1, -2.0), "Softshrink": nn.Softshrink(0.3), "Hardshrink": nn.Hardshrink(0.3),
    "RReLU": nn.RReLU(0.1, 0.3), "PReLU-per-channel": nn.PReLU(3), "PReLU-one": nn.PReLU(),
    "F.prelu": FunctionalPReLU(), "F.hardsigmoid": Op(F.hardsigmoid), "F.logsigmoid": Op(F.logsigmoid),
    "F.softsign": Op(F.softsign), "F.tanhshrink": Op(F.tanhshrink), "F.selu": Op(F.selu),
    "F.celu": Op(lambda x: F.celu(x, 0.5)), "F.threshold": Op(lambda x: F.threshold(x, 0.2, 0.2)),
    "F.softshrink": Op(lambda x: F.softshrink(x, 0.2)), "F.hardshrink": Op(lambda x: F.hardshrink(x, 0.2)),
    "F.rrelu": Op(lambda x: F.rrelu(x, 0.1, 0.2, training=False)), "torch.selu": Op(torch.selu),
}
# torch's CPU kernels round some constants of these backwards to float32 (hardsigmoid's 1/6,
# CELU's 1/alpha): its gradients differ from the exact ones by ~1e-8 relative
FLOAT32_CONSTANTS = {"Hardsigmoid", "CELU", "F.hardsigmoid"}


@pytest.mark.parametrize("name", list(ACTIVATION_MODULES))
def test_activations_match_autograd(name):
    act = ACTIVATION_MODULES[name]
    model = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), act)
    if isinstance(act, nn.PReLU):
        with torch.no_grad():
            act.weight.copy_(torch.linspace(-0.6, 0.4, act.weight.numel()))
    net = check_against_autograd(model, (3, 5, 5), rtol=1e-6 if name in FLOAT32_CONSTANTS else 1e-12)
    x = np.random.default_rng(1).standard_normal((3, 5, 5))
    bound = net.lipschitz_bound()
    assert bound >= net.local_lipschitz(x) * (1 - 1e-9)
    if name in ("Threshold-jump", "Hardshrink", "F.hardshrink"):  # a jump: no Lipschitz constant
        assert bound == float("inf")


def test_prelu_slopes_follow_update_and_sgd():
    model = nn.Sequential(nn.Linear(4, 3), nn.PReLU(3)).double()
    net = tc.compile(model, (4,))
    with torch.no_grad():
        model[1].weight.fill_(-0.5)
    net.update({"1.weight": model[1].weight.detach().numpy()})
    x = torch.randn(5, 4, dtype=torch.float64)
    np.testing.assert_allclose(net.forward(x), model(x).detach().numpy(), rtol=1e-12, atol=1e-12)


def test_rrelu_in_training_mode_is_refused():
    with pytest.raises(ValueError, match="RReLU must be in eval mode"):
        tc.compile(nn.Sequential(nn.RReLU()).train(), (3,))
    with pytest.raises(ValueError, match=r"F.rrelu .* must be called with training=False"):
        tc.compile(Op(lambda x: F.rrelu(x, training=True)), (3,))


def test_a_jacobian_torch_cannot_vmap_falls_back_to_the_chain_and_says_so():
    from toeplitz_conv.network.analysis.jacobian import network_jacobian

    net = tc.compile(nn.Sequential(nn.Linear(3, 3), nn.RReLU()).double().eval(), (3,))
    J, plan = network_jacobian(net, np.ones(3), "auto")
    assert plan.method == "chain" and "vmap" in plan.reason
    with pytest.raises(ValueError, match=r"method 'forward' evaluates the Jacobian through torch's vmap/jvp, "
                                         r"which cannot run this model .*use method='chain'"):
        net.jacobian(np.ones(3), method="forward")


# --------------------------------------------------------------------------- normalisation


class ChannelsLastLayerNorm(nn.Module):
    """ConvNeXt's LayerNorm: over channels, after moving them last."""

    def __init__(self, c):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(c, c, 3, padding=1, groups=c), nn.LayerNorm(c)

    def forward(self, x):
        return self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class FunctionalNorms(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.w, self.b = nn.Parameter(torch.randn(c)), nn.Parameter(torch.randn(c))
        self.lw = nn.Parameter(torch.randn(5, 5))

    def forward(self, x):
        y = F.group_norm(x, 2, self.w, self.b, eps=1e-3)
        y = F.instance_norm(torch.tanh(y), weight=self.w, bias=None)
        return F.layer_norm(y, (5, 5), self.lw, None, 1e-4)


def _with_random_affine(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.startswith(("w", "b", "lw")) or p.dim() == 1:
                p.copy_(torch.randn(p.shape) * 0.7 + (1.0 if name.endswith("weight") else 0.0))
    return model


NORM_MODELS = {
    "LayerNorm-CHW": (lambda: nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.LayerNorm((4, 5, 5))), (2, 5, 5)),
    "LayerNorm-last-no-affine": (lambda: nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6, elementwise_affine=False)),
                                 (3, 6)),
    "LayerNorm-no-bias": (lambda: nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6, bias=False)), (2, 6)),
    "LayerNorm-channels-last": (lambda: ChannelsLastLayerNorm(4), (4, 5, 5)),
    "GroupNorm": (lambda: nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.GroupNorm(3, 6), nn.ReLU()), (2, 5, 5)),
    "GroupNorm-1d-no-affine": (lambda: nn.Sequential(nn.Conv1d(2, 4, 3), nn.GroupNorm(2, 4, affine=False)), (2, 7)),
    "InstanceNorm2d": (lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.InstanceNorm2d(3)), (2, 6, 6)),
    "InstanceNorm2d-affine": (lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.InstanceNorm2d(3, affine=True)), (2, 6, 6)),
    "InstanceNorm1d-affine": (lambda: nn.Sequential(nn.Conv1d(2, 3, 3), nn.InstanceNorm1d(3, affine=True)), (2, 8)),
    "InstanceNorm3d": (lambda: nn.Sequential(nn.Conv3d(1, 2, 2), nn.InstanceNorm3d(2)), (1, 4, 4, 4)),
    "F.group_norm-instance_norm-layer_norm": (lambda: FunctionalNorms(4), (4, 5, 5)),
}


@pytest.mark.parametrize("name", list(NORM_MODELS))
def test_normalisations_match_autograd(name):
    make, shape = NORM_MODELS[name]
    model = _with_random_affine(make().double())
    net = check_against_autograd(model, shape, batch=3, rtol=1e-10)
    bound = net.lipschitz_bound()
    x = np.random.default_rng(2).standard_normal(shape)
    assert bound >= net.local_lipschitz(x)
    norm = [row for row in net.layer_norms() if "normalisation" in row.what]
    assert norm and "sqrt(eps" in norm[0].what


def test_instance_norm_with_running_statistics_is_an_affine_map_in_eval():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.InstanceNorm2d(3, affine=True, track_running_stats=True)).double()
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 2, 6, 6, dtype=torch.float64) * 2 + 1)
    net = check_against_autograd(model, (2, 6, 6))
    assert net.layers[1].linear


def test_the_normalisation_bound_is_max_gamma_over_sqrt_eps_and_attained_at_zero_variance():
    norm = nn.LayerNorm(4, eps=1e-2).double()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([2.0, -2.0, 2.0, -2.0]))
    net = tc.compile(norm, (4,))
    assert net.lipschitz_bound() == pytest.approx(2.0 / 0.1, rel=1e-12)
    near_constant = np.array([1.0, 1.0 + 1e-6, 1.0, 1.0 - 1e-6])  # variance ~0: the sup of ||J||
    assert net.local_lipschitz(near_constant) == pytest.approx(net.lipschitz_bound(), rel=1e-6)
    assert net.local_lipschitz(np.array([0.0, 1.0, 2.0, 3.0])) < net.lipschitz_bound() / 10


def test_a_normalisation_over_the_wrong_axes_is_refused():
    with pytest.raises(ValueError, match=r"normalized_shape \(4,\) must be the end of the sample shape \(4, 5, 5\) "
                                         r"\(a LayerNorm over channels wants them last"):
        tc.compile(nn.Sequential(nn.Conv2d(4, 4, 1), nn.LayerNorm(4)), (4, 5, 5))


# --------------------------------------------------------------------------- tensor ops


class ShuffleUnit(nn.Module):
    """ShuffleNetV2's basic unit: split the channels, convolve one half, concatenate, shuffle."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        return F.channel_shuffle(torch.cat([a, F.relu(self.c(b))], 1), 2)


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.c(x.mean((2, 3), keepdim=True))).expand_as(x)


class Splits(nn.Module):
    def forward(self, x):
        parts = torch.split(x, [1, 3], dim=1)
        u = x.unbind(1)
        return (parts[1].sum(1) + parts[0][:, 0] * 2 + u[2] + x.narrow(1, 0, 1)[:, 0]
                + torch.tensor_split(x, 2, dim=1)[1].sum(1) + x.view_as(x).reshape_as(x)[:, 3])


class DropoutsInEval(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.f = nn.AlphaDropout(0.3), nn.FeatureAlphaDropout(0.2)

    def forward(self, x):
        y = F.dropout2d(self.a(x), 0.5, training=self.training) + F.alpha_dropout(x, 0.1, training=False)
        return self.f(F.feature_alpha_dropout(y, 0.2, training=self.training))


@pytest.mark.parametrize("model", [ShuffleUnit(), SqueezeExcite(), Splits(), DropoutsInEval()],
                         ids=["chunk-shuffle", "expand_as", "split-unbind-narrow", "dropouts"])
def test_tensor_ops_match_autograd(model):
    check_against_autograd(model, (4, 5, 5), batch=3)


class SlicedParts(nn.Module):
    def forward(self, x):
        return torch.cat(x.chunk(4, 1)[1:], 1)


def test_parts_read_other_than_by_an_int_index_are_refused_with_the_line():
    with pytest.raises(TypeError, match=r"\.chunk \(node 'chunk'\) returns several tensors, and 'getitem' at "
                                        r"test_modern_nodes.py:\d+ .* reads them with \[slice\(1, None, None\)\]"):
        tc.compile(SlicedParts(), (4, 3))


def stochastic_depth(input, p, mode, training=True):
    """A stand-in for torchvision's (not installed here), with its signature; the identity."""
    return input


torch.fx.wrap("stochastic_depth")  # as torchvision does, so that fx keeps it as one call


def test_stochastic_depth_is_the_identity_in_eval(monkeypatch):
    import sys
    import types

    from toeplitz_conv.network import ops

    fake = types.ModuleType("torchvision.ops")
    fake.stochastic_depth = stochastic_depth
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.ops", fake)
    monkeypatch.setattr(ops, "_FUNCTIONS", None)
    monkeypatch.setattr(ops, "_METHODS", None)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return x + stochastic_depth(self.c(x), 0.2, "row", self.training)

    check_against_autograd(Block(), (2, 4, 4))
    with pytest.raises(ValueError, match=r"stochastic_depth .* must be called with training=False"):
        tc.compile(Block().double().train(), (2, 4, 4))


# --------------------------------------------------------------------------- extremes over axes


class ChannelAttention(nn.Module):
    """CBAM's spatial attention: the mean and the max over channels, convolved, as a gate."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        att = torch.cat([x.mean(1, keepdim=True), torch.max(x, 1, keepdim=True)[0]], 1)
        return x * torch.sigmoid(self.c(att))


class PointNetPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.lin = nn.Conv1d(4, 8, 1), nn.Linear(8, 2)

    def forward(self, x):
        return self.lin(torch.max(F.relu(self.c(x)), 2).values)


class Extremes(nn.Module):
    def forward(self, x):
        return (x.amax((2, 3)) + torch.amin(x, dim=1).sum((1, 2))[:, None] + x.min(2)[0].mean(-1)
                + x.max(dim=-1).values.mean(-1))


@pytest.mark.parametrize("model,shape", [(ChannelAttention(), (4, 5, 5)), (PointNetPool(), (4, 7)),
                                         (Extremes(), (4, 5, 5))], ids=["cbam", "pointnet", "amax-amin-max-min"])
def test_extremes_over_axes_match_autograd(model, shape):
    net = check_against_autograd(model, shape, batch=3)
    if not isinstance(model, ChannelAttention):  # a gate: a product of two inputs, no global constant
        assert net.lipschitz_bound() >= net.local_lipschitz(np.random.default_rng(0).standard_normal(shape))


def test_tied_extremes_take_the_gradient_as_torch_does():
    x = torch.tensor([[[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    for fn in (lambda t: t.amax(2), lambda t: t.max(2).values, lambda t: torch.amin(t, 1)):
        model = Op(fn)
        net = tc.compile(model, (2, 3))
        x.grad = None
        y = fn(x)
        y.sum().backward()
        np.testing.assert_allclose(net.forward(x.detach().numpy()), y.detach().numpy())
        _, dx = net.backward(np.ones(y.shape))
        np.testing.assert_allclose(dx, x.grad.numpy(), rtol=0, atol=0)


def test_extremes_without_a_derivative_or_over_the_batch_are_refused():
    with pytest.raises(TypeError, match=r"the indices of the extremes are integers, with no derivative"):
        tc.compile(Op(lambda x: x.max(1)[1].double()), (3, 4))
    with pytest.raises(ValueError, match=r"\.amax 'amax' .*without dim reduces over the batch axis too"):
        tc.compile(Op(lambda x: x.amax()), (3, 4))
    with pytest.raises(TypeError, match=r"torch.max 'max_1' .* of two tensors \(the elementwise extreme\)"):
        tc.compile(Op(lambda x: torch.max(x, x * 2)), (3, 4))


# --------------------------------------------------------------------------- parameters read in forward


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's block: depthwise conv, LayerNorm over channels last, MLP, layer scale, residual."""

    def __init__(self, c=4):
        super().__init__()
        self.dw, self.norm = nn.Conv2d(c, c, 3, padding=1, groups=c), nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 2 * c), nn.Linear(2 * c, c)
        self.gamma = nn.Parameter(torch.linspace(-0.5, 0.8, c))

    def forward(self, x):
        y = self.pw2(F.gelu(self.pw1(self.norm(self.dw(x).permute(0, 2, 3, 1)))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class Tokens(nn.Module):
    """ViT's input: a class token expanded to the batch and prepended, a position embedding added."""

    def __init__(self, d=6, n=4):
        super().__init__()
        self.cls, self.pos = nn.Parameter(torch.randn(1, 1, d)), nn.Parameter(torch.randn(1, n + 1, d))
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return self.lin(torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos)


class ScaleShift(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale, self.shift = nn.Parameter(torch.ones(3)), nn.Parameter(torch.zeros(3))

    def forward(self, x):
        return x / self.scale.exp() - self.shift


@pytest.mark.parametrize("model,shape", [(ConvNeXtBlock(), (4, 5, 5)), (Tokens(), (4, 6)), (ScaleShift(), (2, 3))],
                         ids=["convnext-layer-scale", "vit-class-token", "derived-scale"])
def test_parameters_read_in_forward_are_constants_with_gradients(model, shape):
    net = check_against_autograd(model, shape, batch=3, rtol=1e-10)
    with torch.no_grad():  # training moves them: update builds the nodes again
        for p in model.parameters():
            p.add_(0.25)
    net.update({k: p.detach().numpy() for k, p in model.named_parameters()})
    x = torch.randn(2, *shape, dtype=torch.float64)
    np.testing.assert_allclose(net.forward(x.numpy()), model(x).detach().numpy(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- attention


class ConstantSides(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 3))
        self.register_buffer("m", torch.randn(5, 5))

    def forward(self, x):
        return torch.matmul(self.m, x @ self.w) + torch.bmm(x, x.transpose(1, 2)).sum(-1, keepdim=True)


class TinyViT(nn.Module):
    def __init__(self, d=6):
        super().__init__()
        self.embed, self.tokens = nn.Conv2d(1, d, 2, stride=2), Tokens(d, 4)
        self.norm1, self.attn = nn.LayerNorm(d), Attention(d)
        self.norm2, self.mlp = nn.LayerNorm(d), nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        t = self.tokens(self.embed(x).flatten(2).transpose(1, 2))
        t = t + self.attn(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        return self.head(t[:, 0])


@pytest.mark.parametrize("model,shape", [(Attention(), (5, 6)), (ConstantSides(), (5, 6)), (TinyViT(), (1, 4, 4))],
                         ids=["attention", "matmul-constant-sides", "tiny-vit"])
def test_matrix_products_match_autograd(model, shape):
    net = check_against_autograd(model, shape, batch=3, rtol=1e-10)
    x = torch.randn(2, *shape, dtype=torch.float64)
    np.testing.assert_allclose(net.to_mlp()(x).detach().numpy(), model(x).detach().numpy(), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="multiplies two tensors that both depend on the input"):
        net.lipschitz_bound()  # attention, and x @ x^T: no global constant


class Einsums(nn.Module):
    """Attention written with einsum, a constant side, an ellipsis, one operand and a broadcast."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 4))
        self.qkv = nn.Linear(6, 18)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        a = torch.einsum("bid,bjd->bij", q, k).softmax(-1)
        y = torch.einsum("bij,bjd->bid", a, v)
        z = torch.einsum("bnd,de->bne", y, self.w)
        s = torch.einsum("...nd->...d", x)
        t = torch.einsum("...nd,...n", x, x[..., 0])  # implicit output: the ellipsis, then 'd'
        o = torch.einsum("bn,bm->bnm", x[..., 1], x[..., 2])  # an outer product: nothing summed
        return z.sum(-1) + s[:, :1] + t[:, :5] + o.sum(-1)


def test_einsum_matches_autograd():
    net = check_against_autograd(Einsums(), (5, 6), batch=3, rtol=1e-10)
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    np.testing.assert_allclose(net.to_mlp()(x).detach().numpy(), net.forward(x.numpy()), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fn, match", [
    (lambda x: torch.einsum("bi,bi,bi->bi", x, x, x), "of 3 operands is not supported; write it as einsums of one or two"),
    (lambda x: torch.einsum("bii->bi", x.reshape(-1, 3, 3)[:, :, :3]), "a letter repeated in one operand"),
    (lambda x: torch.einsum("bi,ci->bc", x, x), "the batch axis must be the first letter"),
    (lambda x: torch.einsum("bi,bi", x, x), "the batch axis must be the first letter"),  # implicit: 'i', b summed
], ids=["three operands", "diagonal", "batches mixed", "batch summed"])
def test_einsums_compile_cannot_read_are_refused(fn, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tc.compile(Op(fn).double(), (9,))


class TimmAttention(Attention):
    """timm's own way: the batch axis moved to second place, then q, k, v taken off the front."""

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = (qkv.unbind(0) if n % 2 else (qkv[0], qkv[1], qkv[2]))
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


@pytest.mark.parametrize("shape", [(5, 6), (4, 6)], ids=["unbind(0)", "[0], [1], [2]"])
def test_a_batch_axis_moved_and_brought_back_by_copies_compiles(shape):
    check_against_autograd(TimmAttention(), shape, batch=3, rtol=1e-10)


class BatchMoved(nn.Module):
    def forward(self, x):
        return x.permute(1, 0, 2) * 2


def test_a_batch_axis_moved_from_the_front_and_kept_there_is_refused_with_its_line():
    with pytest.raises(ValueError, match=r"\.permute 'permute' at test_modern_nodes.py:\d+ .* must keep the batch axis "
                                         r"first.*\(\* 'mul' at .* reads it; only copies that bring the batch axis back"):
        tc.compile(BatchMoved(), (3, 4))
    with pytest.raises(ValueError, match=r"\.permute 'permute' .* must keep the batch axis first"):
        tc.compile(Op(lambda x: x.permute(1, 0, 2)), (3, 4))


class FusedAttention(nn.Module):
    """F.scaled_dot_product_attention, as transformers call it: written out by compile."""

    def __init__(self, kind="plain"):
        super().__init__()
        self.qkv, self.kind = nn.Linear(6, 18), kind
        self.register_buffer("keep", (torch.rand(5, 5) > 0.3) | torch.eye(5, dtype=torch.bool))
        self.register_buffer("bias", torch.randn(5, 5))

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        if self.kind == "causal":
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if self.kind == "bool-mask":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=self.keep, scale=0.3)
        if self.kind == "float-mask":
            return F.scaled_dot_product_attention(q, k, v, self.bias)
        if self.kind == "dropout":
            return F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
        return F.scaled_dot_product_attention(q, k, v)


class MaskedFillCausal(nn.Module):
    """The hand-written causal attention: masked_fill(mask, -inf) before the softmax."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(6, 18)
        self.register_buffer("above", torch.ones(5, 5, dtype=torch.bool).triu(1))

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        return (q @ k.transpose(-2, -1) * 0.4).masked_fill(self.above, float("-inf")).softmax(-1) @ v


@pytest.mark.parametrize("model", [FusedAttention("plain"), FusedAttention("causal"), FusedAttention("bool-mask"),
                                   FusedAttention("float-mask"), MaskedFillCausal()],
                         ids=["sdpa", "sdpa-causal", "sdpa-bool-mask", "sdpa-float-mask", "masked_fill(-inf)"])
def test_fused_and_masked_attention_match_autograd(model):
    torch.manual_seed(0)
    net = check_against_autograd(model, (5, 6), batch=3, rtol=1e-10)
    assert "scaled_dot_product_attention" not in repr(net) and "softmax" in repr(net)


class EncoderBlock(nn.Module):
    """torchvision's ViT encoder block, small: nn.MultiheadAttention with batch_first=True."""

    def __init__(self, d=6, heads=2):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=0.1, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        y = self.ln1(x)
        y, _ = self.attn(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln2(x))


class CrossAttention(nn.Module):
    def __init__(self, weights=False, mask=False):
        super().__init__()
        self.attn, self.kv = nn.MultiheadAttention(6, 3, batch_first=True), nn.Linear(6, 6)
        self.weights, self.mask = weights, mask

    def forward(self, x):
        out, w = self.attn(x, self.kv(x), x, need_weights=self.weights,
                           attn_mask=torch.ones(5, 5, dtype=torch.bool).triu(1) if self.mask else None)
        return out + w.sum() if self.weights else out


class SequenceFirst(nn.Module):
    """batch_first=False, the batch axis moved to second place around it (nn.Transformer's way)."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(6, 2)

    def forward(self, x):
        t = x.transpose(0, 1)
        return self.attn(t, t, t, need_weights=False)[0].transpose(0, 1)


@pytest.mark.parametrize("model", [EncoderBlock(), CrossAttention(), SequenceFirst()],
                         ids=["vit-encoder-block", "cross-attention", "batch-second"])
def test_multihead_attention_is_written_out_and_matches_autograd(model):
    torch.manual_seed(0)
    net = check_against_autograd(model, (5, 6), batch=3, rtol=1e-10)  # in_proj_weight's gradient too
    assert "MultiheadAttention" not in repr(net) and "out_proj" in repr(net)


class Encoder(nn.Module):
    """nn.TransformerEncoder's layers called in a loop, as its message says to."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(6, 2, dim_feedforward=12, batch_first=True),
                                             2, norm=nn.LayerNorm(6), enable_nested_tensor=False)

    def forward(self, x):
        for layer in self.encoder.layers:
            x = layer(x)
        return self.encoder.norm(x)


@pytest.mark.parametrize("make", [
    lambda: nn.TransformerEncoderLayer(6, 2, dim_feedforward=12, batch_first=True),
    lambda: nn.TransformerEncoderLayer(6, 3, dim_feedforward=12, batch_first=True, norm_first=True, activation="gelu"),
    Encoder,
], ids=["post-norm", "pre-norm-gelu", "encoder-layers-in-a-loop"])
def test_transformer_encoder_layers_compile_exactly(make):
    """Traced through: its fast-path checks are taken on the example, src_mask=None is a constant."""
    torch.manual_seed(0)
    net = check_against_autograd(make(), (5, 6), batch=3, rtol=1e-10)
    assert "MultiheadAttention" not in repr(net)


def test_a_transformer_encoder_is_refused_with_how_to_call_its_layers():
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(6, 2, 12, batch_first=True), 2, enable_nested_tensor=False)
    with pytest.raises(TypeError, match=r"TransformerEncoder .*for layer in encoder.layers: x = layer\(x\)"):
        tc.compile(nn.Sequential(encoder).double().eval(), (5, 6))


@pytest.mark.parametrize("model", [CrossAttention(weights=True), CrossAttention(mask=True)],
                         ids=["weights-read", "mask"])
def test_multihead_attention_compile_cannot_write_out_is_refused_with_the_rule(model):
    with pytest.raises(TypeError, match=r"MultiheadAttention .*compile writes out attn\(q, k, v, need_weights=False\)"
                                        r"\[0\] with one in_proj_weight"):
        tc.compile(model.double().eval(), (5, 6))


def test_fused_attention_with_dropout_is_refused_with_how_to_write_it():
    with pytest.raises(TypeError, match=r"scaled_dot_product_attention \(node .*\) \(compile writes it out "
                                        r"unless dropout_p > 0 or enable_gqa"):
        tc.compile(FusedAttention("dropout"), (5, 6))


class ConstantMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mask", torch.tensor([[True, False, True], [False, False, True]]))
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        y = self.lin(x)
        return torch.where(self.mask, x, y) + x.masked_fill(~self.mask, 0.5) + torch.where(self.mask, y, 0.0)


def test_a_constant_mask_selects_exactly_and_an_input_mask_is_refused_with_advice():
    check_against_autograd(ConstantMask(), (2, 3), batch=3)
    with pytest.raises(TypeError, match=r"operator.gt .* \(a mask computed from the input is a data-dependent branch"):
        tc.compile(Op(lambda x: torch.where(x > 0, x, 0.1 * x)), (3,))
