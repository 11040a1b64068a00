"""Models that are graphs, compiled and checked against PyTorch in float64: forward, backward
(every parameter and the input), the exact Jacobian (vs ``torch.func.jacrev``), linear maps
between nodes, ``to_mlp``; every op of the registries; and every refusal, with its message."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from graph_models import (UNet, Audio1d, BasicBlock, DnCNN, Functional, ResNet, SEBlock, Volume3d,
                          randomize_batch_norm)
from torch import nn

import toeplitz_conv as tc
from toeplitz_conv.network import UnsupportedModuleError, UntraceableModelError

RTOL = 1e-9


pytestmark = pytest.mark.usefixtures("float64")  # torch tensors default to float64 here


def close(a, b, rtol=RTOL, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    scale = max(np.abs(b).max(initial=0.0), 1e-300)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=max(rtol * scale, 1e-13), err_msg=what)


def torch_jacobian(model, x):
    J = torch.func.jacrev(lambda v: model(v[None])[0])(x)
    return J.reshape(-1, x.numel()).detach().numpy()


def check(model, shape, n=3, jacobian=True, seed=0):
    """forward, backward and the Jacobian of the compiled model equal autograd's."""
    torch.manual_seed(seed)
    model = model.double().eval()
    net = tc.compile(model, shape)
    x = torch.randn(n, *shape, requires_grad=True)
    y = model(x)
    g = torch.randn_like(y)
    y.backward(g)
    close(net.forward(x.detach()), y.detach().numpy(), what="forward")
    grads, dx = net.backward(g)
    close(dx, x.grad.numpy(), what="input gradient")
    for name, p in model.named_parameters():
        close(grads[name], p.grad.numpy(), what=name)
    if jacobian:
        J = net.jacobian(x[0].detach())
        assert sp.issparse(J) and J.format == "csr"
        close(J.toarray(), torch_jacobian(model, x[0].detach()), what="jacobian")
    return net


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("make,shape", [
    (lambda: randomize_batch_norm(ResNet(widths=(4, 8), blocks=2)), (3, 8, 8)),
    (lambda: randomize_batch_norm(BasicBlock(3, 3)), (3, 5, 5)),
    (lambda: randomize_batch_norm(BasicBlock(2, 4, stride=2)), (2, 6, 6)),
    (UNet, (1, 8, 8)),
    (SEBlock, (2, 5, 5)),
    (Functional, (2, 6, 6)),
    (Audio1d, (1, 16)),
    (Volume3d, (1, 4, 4, 4)),
    (DnCNN, (1, 6, 6)),
], ids=["resnet", "block-identity", "block-projection", "unet", "squeeze-excitation", "functional",
        "audio-1d", "volume-3d", "dncnn"])
def test_graph_models_match_autograd(make, shape):
    check(make(), shape)


def test_resnet_graph_structure_and_names():
    net = tc.compile(randomize_batch_norm(ResNet()).double(), (3, 8, 8))
    assert not net.is_chain
    adds = [layer for layer in net.layers if layer.kind == "+"]  # fx records `out += identity` as +
    assert len(adds) == 2 and all(len(layer.inputs) == 2 for layer in adds)
    names = [layer.name for layer in net.layers]
    assert "layers.1.downsample.0" in names and "layers.0.bn1" in names
    text = repr(net)
    assert "layers_1_downsample_0 (layers.1.downsample.0): Conv2d (4, 8, 8) -> (8, 4, 4) <- layers_0_relu_1" in text
    assert "output: fc" in text


def test_sequential_stays_a_chain_with_module_names():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Sequential(nn.Flatten(), nn.Linear(18, 3))).double()
    net = tc.compile(model, (1, 5, 5))
    assert net.is_chain and [layer.name for layer in net.layers] == ["0", "1", "2.0", "2.1"]
    assert isinstance(net.to_mlp(), nn.Sequential)


def test_jacobian_of_bias_free_relu_networks_is_the_network_at_x():
    """Piecewise linear and bias-free: f(x) = J(x) x exactly (the adaptive filters)."""
    torch.manual_seed(1)
    for model, shape in [(DnCNN(depth=5, c=6), (1, 10, 10)),
                         (nn.Sequential(nn.Conv2d(2, 3, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                                        nn.Flatten(), nn.Linear(12, 4, bias=False)), (2, 6, 6))]:
        model = model.double()
        net = tc.compile(model, shape)
        x = torch.randn(*shape)
        J = net.jacobian(x)
        close(J @ x.numpy().ravel(), model(x[None]).detach().numpy().ravel())


def test_jacobian_stores_only_the_receptive_fields():
    """A 4-layer 3x3 denoiser: each output reads a 9x9 window (plus itself through x - f(x))."""
    model = DnCNN(depth=4, c=4).double()
    net = tc.compile(model, (1, 20, 20))
    J = net.jacobian(torch.randn(1, 20, 20))
    assert J.shape == (400, 400)
    per_row = np.diff(J.indptr)
    assert per_row.max() <= 81 and per_row[10 * 20 + 10] > 40  # an interior pixel
    assert J.nnz < 400 * 81


def test_jacobian_backward_mode_for_small_outputs():
    """A classifier (10 outputs, 3 x 8 x 8 inputs) is accumulated from the output."""
    model = randomize_batch_norm(ResNet(classes=10)).double()
    net = tc.compile(model, (3, 8, 8))
    x = torch.randn(3, 8, 8)
    J = net.jacobian(x)
    assert J.shape == (10, 192)
    close(J.toarray(), torch_jacobian(model, x))
    close(net.jacobian(x[None]).toarray(), J.toarray())


# --------------------------------------------------------------------------- linear maps, to_mlp


class Residual(nn.Module):
    def __init__(self, act=True):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.act = act

    def forward(self, x):
        h = self.c1(x)
        if self.act:
            h = F.relu(h)
        return x + self.c2(h)


def test_linear_map_of_a_residual_block_is_identity_plus_product():
    net = tc.compile(Residual(act=False).double(), (2, 5, 5))
    C1, C2 = net.layers[0].matrix, net.layers[1].matrix
    M, b = net.linear_map()
    close(M.toarray(), (sp.eye_array(50) + C2 @ C1).toarray())
    close(b, C2 @ net.layers[0].bias + net.layers[1].bias)
    M2, b2 = net.linear_map("c1", "c2")  # from c1's output to c2's output: C2 alone
    close(M2.toarray(), C2.toarray())
    M3, _ = net.linear_map("input", "c1")
    close(M3.toarray(), C1.toarray())


def test_linear_map_errors_on_graphs():
    net = tc.compile(Residual().double(), (2, 5, 5))
    with pytest.raises(ValueError, match=r"linear_map needs linear layers only; layer 1 \('relu', F.relu\) "
                                         r"in range\(0, 4\) is not: an elementwise nonlinear activation"):
        net.linear_map()
    with pytest.raises(ValueError, match=r"layer 3 \('add'\) also reads position 0, which does not come "
                                         r"from position 2"):
        net.linear_map("relu", "add")
    with pytest.raises(ValueError, match=r"stop must name a node of the network \(input, c1, relu, c2, add\); "
                                         r"got 'nope'"):
        net.linear_map(0, "nope")
    with pytest.raises(ValueError, match=r"start must be a position in \[-4, 4\] \(the network has 4 layers\); got 10"):
        net.linear_map(10, 12)
    with pytest.raises(ValueError, match=r"linear_map needs start before stop; got positions start=3, stop=1"):
        net.linear_map(3, 1)
    with pytest.raises(TypeError, match=r"start must be an int or a node name; got float"):
        net.linear_map(1.5)


def test_to_mlp_of_graphs_keeps_the_skips():
    for model, shape in [(Residual(), (2, 5, 5)), (SEBlock(), (2, 4, 4)), (Functional(), (2, 6, 6))]:
        model = model.double().eval()
        net = tc.compile(model, shape)
        mlp = net.to_mlp()
        assert isinstance(mlp, nn.Sequential if net.is_chain else torch.fx.GraphModule)
        assert all(not isinstance(m, (nn.Conv2d,)) for m in mlp.modules())
        x = torch.randn(3, *shape)
        close(mlp(x).detach().numpy(), model(x).detach().numpy())
    with pytest.raises(ValueError, match=r"to_mlp needs input-independent linear layers; layer \d+ .*max pooling"):
        tc.compile(UNet().double(), (1, 8, 8)).to_mlp()


# --------------------------------------------------------------------------- every op


class Op(nn.Module):
    def __init__(self, fn, cin=2):
        super().__init__()
        self.conv = nn.Conv2d(cin, 4, 1)  # a parameter before the op, so gradients flow through it
        self.fn = fn

    def forward(self, x):
        return self.fn(self.conv(x))


def _has_channel_shuffle_grad() -> bool:
    """Older torch (2.4 has none) has no derivative for channel_shuffle: the reference fails."""
    x = torch.ones(1, 2, 1, 1, requires_grad=True)
    try:
        torch.channel_shuffle(x, 2).sum().backward()
    except RuntimeError:
        return False
    return True


NEEDS_SHUFFLE_GRAD = pytest.mark.skipif(
    not _has_channel_shuffle_grad(),
    reason=f"torch {torch.__version__} has no derivative for channel_shuffle (the reference)")

OPS = {
    "pad-constant": lambda x: F.pad(x, (1, 2, 0, 1), value=0.5),
    "pad-reflect": lambda x: F.pad(x, (2, 1, 1, 2), mode="reflect"),
    "pad-replicate": lambda x: F.pad(x, (2, 0, 1, 3), mode="replicate"),
    "pad-circular": lambda x: F.pad(x, (1, 2, 2, 1), mode="circular"),
    "nearest-scale": lambda x: F.interpolate(x, scale_factor=2),
    "nearest-size": lambda x: F.interpolate(x, size=(7, 3)),
    "nearest-exact": lambda x: F.interpolate(x, scale_factor=1.7, mode="nearest-exact"),
    "bilinear": lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
    "bilinear-corners": lambda x: F.interpolate(x, size=(9, 6), mode="bilinear", align_corners=True),
    "bilinear-recompute": lambda x: F.interpolate(x, scale_factor=1.5, mode="bilinear", recompute_scale_factor=True),
    "bicubic": lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"),
    "area": lambda x: F.interpolate(x, size=(2, 3), mode="area"),
    "pixel-shuffle": lambda x: F.pixel_shuffle(x, 2),
    "pixel-unshuffle": lambda x: F.pixel_unshuffle(x[:, :, :4, :4], 2),
    "channel-shuffle": lambda x: torch.channel_shuffle(x, 2),
    "unfold-fold": lambda x: F.fold(F.unfold(x, 2, padding=1), (5, 4), 2, padding=1),
    "flatten": lambda x: torch.flatten(x, 1),
    "view-size": lambda x: x.view(x.size(0), -1),
    "reshape-shape": lambda x: x.reshape(x.shape[0], 2, -1),
    "permute": lambda x: x.permute(0, 3, 1, 2),
    "transpose": lambda x: x.transpose(1, 2),
    "squeeze-unsqueeze": lambda x: x.unsqueeze(2).squeeze(2),
    "mean": lambda x: x.mean((2, 3)),
    "sum-keepdim": lambda x: x.sum(dim=1, keepdim=True),
    "torch.mean": lambda x: torch.mean(x, dim=-1),
    "slice-channels": lambda x: x[:, 1:3],
    "index-none": lambda x: x[:, :, None, 0],
    "cat": lambda x: torch.cat([x, x[:, :2] * 2], dim=1),
    "stack": lambda x: torch.stack([x, -x], dim=2),
    "product-broadcast": lambda x: x * x.mean((2, 3))[:, :, None, None],
    "product-self": lambda x: x * x,
    "scalars": lambda x: (2 - x) / 4 + 1.5 * x - 3,
    "constant-tensor": lambda x: x * torch.arange(4.0)[:, None, None] + torch.ones(5, 4),
    "sub-alpha": lambda x: torch.sub(x, x.flip(3), alpha=0.5),
    "neg": lambda x: -x,
    "softmax-channels": lambda x: F.softmax(x, dim=1),
    "log-softmax-last": lambda x: x.log_softmax(-1),
    "avg-pool": lambda x: F.avg_pool2d(x, 2, stride=1, padding=1, count_include_pad=False),
    "adaptive-avg": lambda x: F.adaptive_avg_pool2d(x, (2, 3)),
    "max-pool": lambda x: F.max_pool2d(x, 2, ceil_mode=True),
    "adaptive-max": lambda x: F.adaptive_max_pool2d(x, 3),
    "dropout-eval": lambda x: F.dropout(x, 0.5, training=False),
    **{f"act-{name}": fn for name, fn in {
        "relu6": F.relu6, "hardtanh": lambda x: F.hardtanh(x, -0.5, 0.7), "silu": F.silu,
        "elu": lambda x: F.elu(x, 0.7), "softplus": lambda x: F.softplus(x, beta=2, threshold=1.5),
        "hardswish": lambda x: F.hardswish(x * 3), "mish": F.mish, "gelu-tanh": lambda x: F.gelu(x, approximate="tanh"),
        "leaky": lambda x: F.leaky_relu(x, 0.3), "torch.relu": torch.relu, "tanh": torch.tanh,
        "sigmoid": torch.sigmoid, "relu-method": lambda x: x.relu()}.items()},
}


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # jacrev through nearest-exact
@pytest.mark.parametrize("name", [pytest.param(name, marks=NEEDS_SHUFFLE_GRAD)
                                  if name == "channel-shuffle" else name for name in OPS])
def test_every_op_matches_autograd(name):
    check(Op(OPS[name]), (2, 5, 4), n=2)


@pytest.mark.parametrize("module", [
    nn.ReLU6(), nn.Hardtanh(-2, 0.5), nn.SiLU(), nn.ELU(0.5), nn.Softplus(2, 3), nn.Hardswish(), nn.Mish(),
    nn.Softmax(dim=1), nn.LogSoftmax(dim=2), nn.ZeroPad2d((1, 0, 2, 1)), nn.ReflectionPad2d(1),
    nn.ReplicationPad2d((0, 2, 1, 0)), nn.CircularPad2d(1), nn.ConstantPad2d(1, -1.0),
    nn.Upsample(scale_factor=(2, 1.5), mode="bilinear", align_corners=True), nn.Upsample(size=7),
    nn.PixelShuffle(2), pytest.param(nn.ChannelShuffle(2), marks=NEEDS_SHUFFLE_GRAD),
    nn.AdaptiveMaxPool2d((3, 2)),
], ids=lambda m: type(m).__name__)
def test_new_modules_match_autograd(module):
    check(Op(module), (2, 5, 4), n=2)


def test_one_d_and_three_d_ops():
    check(Op(lambda x: F.interpolate(x, scale_factor=3, mode="linear"), cin=2).__class__(
        lambda x: x, cin=2), (2, 5, 4), n=2)
    for fn in (lambda x: F.interpolate(x, scale_factor=2, mode="trilinear"),
               lambda x: F.pad(x, (1, 1, 0, 2, 1, 0), mode="replicate"),
               lambda x: F.adaptive_max_pool3d(x, 2)):
        model = nn.Sequential(nn.Conv3d(1, 2, 1), nn.Flatten(0, 0))
        model = _Wrap3d(fn)
        check(model, (1, 3, 4, 3), n=2)


class _Wrap3d(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.conv, self.fn = nn.Conv3d(1, 2, 1), fn

    def forward(self, x):
        return self.fn(self.conv(x))


def test_shared_module_called_twice_accumulates_its_gradient():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(torch.relu(self.conv(x)))

    net = check(Twice(), (2, 7))
    assert [layer.name for layer in net.layers] == ["conv", "relu", "conv"]
    assert [layer.node for layer in net.layers] == ["conv", "relu", "conv_1"]


# --------------------------------------------------------------------------- refusals


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


class Sorts(nn.Module):
    def forward(self, x):
        return torch.sort(x, dim=1).values


class Computed(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2, 1, 3))

    def forward(self, x):
        return F.conv1d(x, self.w * 2)


class Pair(nn.Module):
    def forward(self, x):
        return x, -x


class TwoInputs(nn.Module):
    def forward(self, x, y):
        return x + y


class Lstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 3)

    def forward(self, x):
        return self.rnn(x)[0]


def _resnet_training_bn():
    model = randomize_batch_norm(ResNet())
    model.layers[1].bn2.train()
    return model


@pytest.mark.parametrize("model,shape,exc,match", [
    (Branchy(), (3,), UntraceableModelError,
     r"compile could not trace the model \(Branchy\) with torch.fx at test_graph.py:\d+ `.*`: symbolically "
     r"traced variables cannot be used as inputs to control flow\. Python control flow on tensors cannot be "
     r"traced: an `if` on tensor values \(write it with torch.where\)"),
    (Sorts(), (2, 3), UnsupportedModuleError,
     r"compile does not support the function torch.sort \(node 'sort' at test_graph.py:\d+ "
     r"`return torch.sort\(x, dim=1\).values`\); supported functions and methods: \+, \+=, .*F.conv2d"),
    (Lstm(), (2, 3), UnsupportedModuleError,
     r"compile does not support module 'rnn' of type LSTM at test_graph.py:\d+ `return self.rnn\(x\)\[0\]`; "
     r"supported: Sequential, Conv1d"),
    (_resnet_training_bn(), (3, 8, 8), ValueError,
     r"module 'layers.1.bn2' \(BatchNorm2d\) must be in eval mode to be compiled"),
    (nn.Sequential(nn.Linear(3, 3), nn.Dropout()).double(), (3,), ValueError, r"module '1' \(Dropout\) must be in eval mode"),
    (Op(lambda x: F.dropout(x, 0.2, training=True)), (2, 3, 3), ValueError,
     r"F.dropout 'dropout' at test_graph.py:\d+ .* must be called with training=False"),
    (Op(lambda x: x.mean()), (2, 3, 3), ValueError, r".mean 'mean' .* without dim reduces over the batch axis too"),
    (Op(lambda x: x.sum(0)), (2, 3, 3), ValueError, r".sum 'sum' .*reduces over the batch axis \(dim=0\)"),
    (Op(lambda x: F.softmax(x, dim=0)), (2, 3, 3), ValueError, r"normalises over the batch axis \(dim=0\)"),
    (Op(lambda x: x.view(-1)), (2, 3, 3), ValueError, r".view 'view' must keep the batch axis first"),
    (Op(lambda x: x.reshape(4, -1)), (2, 3, 3), ValueError,
     r"^.reshape 'reshape' at test_graph.py:\d+ .* must keep the batch axis first; with a batch of 2 it returned shape \(4, 18\)"),
    (Op(lambda x: x.flip(0)), (2, 3, 3), ValueError, r".flip 'flip' mixes the samples of a batch"),
    (Op(lambda x: x / x.sum(1, keepdim=True)), (2, 3, 3), UnsupportedModuleError,
     r"/ 'truediv' .* divides by a tensor that depends on the input"),
    (Computed(), (1, 5), UnsupportedModuleError,
     r"F.conv1d 'conv1d' .* its weight must be a parameter of the model \(read as self.<name>\); got a tensor computed"),
    (Pair(), (3,), TypeError, r"compile needs a model that returns one tensor computed from its input; it returns a tuple of 2"),
    (TwoInputs(), (3,), TypeError, r"compile needs a model whose forward takes one tensor; it also takes 'y'"),
    (Op(lambda x: F.softmax(x)), (2, 3, 3), ValueError, r"needs an explicit dim"),
    (nn.Sequential(nn.Conv2d(1, 2, 1), nn.Softmax()), (1, 3, 3), ValueError,
     r"^Softmax '1' needs an explicit dim \(the axis of the softmax\); got dim=None"),
    (nn.Sequential(nn.Conv2d(1, 2, 1), nn.LogSoftmax(dim=0)), (1, 3, 3), ValueError,
     r"^LogSoftmax '1' normalises over the batch axis \(dim=0\)"),
    (nn.Sequential(nn.MaxPool2d(2, return_indices=True)), (1, 4, 4), ValueError,
     r"module '0' \(MaxPool2d\) must have return_indices=False"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2, mode="bicubic", align_corners=None)),
     (3, 5, 5), ValueError, r"layer '0' \(Conv2d\) with input shape \(3, 5, 5\)"),
], ids=["untraceable", "unsupported-function", "unsupported-module", "training-bn", "training-dropout",
        "functional-dropout", "mean-all", "sum-batch", "softmax-batch", "view-flat", "reshape-mix",
        "transpose-batch", "divide-by-input", "computed-weight", "tuple-output", "two-inputs",
        "softmax-no-dim", "softmax-module-no-dim", "log-softmax-module-batch", "return-indices", "shape-error"])
@pytest.mark.filterwarnings("ignore:Implicit dimension choice for softmax")
def test_refusals_say_what_and_where(model, shape, exc, match):
    with pytest.raises(exc, match=match):
        tc.compile(model.double() if hasattr(model, "double") else model, shape)


def test_jacobian_is_refused_up_front_when_too_large():
    net = tc.compile(DnCNN(depth=3, c=2).double(), (1, 12, 12))
    tc.set_memory_limit(20_000)
    try:
        for method in ("auto", "chain", "forward"):
            with pytest.raises(ValueError, match=r"the network's Jacobian would need about .*144 x 144 with at "
                                                 r"most [\d,]+ nonzeros \(the receptive fields\), by method"):
                net.jacobian(torch.randn(1, 12, 12), method=method)
    finally:
        tc.set_memory_limit(None)
    # the product chain's own estimate, from a sample of its rows, where it is called directly
    from toeplitz_conv.network.analysis import chain

    net.forward(torch.randn(1, 1, 12, 12))  # the layers' matrices, built on first use, under the default limit
    tc.set_memory_limit(20_000)
    try:
        with pytest.raises(ValueError, match=r"the network's Jacobian would need about .*144 x 144, nonzeros "
                                             r"estimated from a sample of its rows\), more than the limit"):
            chain.jacobian(net.layers, [a.reshape(1, -1).T for a in net.activations], net.output, net.dtype)
    finally:
        tc.set_memory_limit(None)
    with pytest.raises(ValueError, match=r"x must be one sample of shape \(1, 12, 12\) .*got x.shape=\(2, 1, 12, 12\)"):
        net.jacobian(np.zeros((2, 1, 12, 12)))


def test_jacobian_in_blocks_of_output_rows(monkeypatch):
    """The backward side runs on blocks of output rows; the blocks stack to the same matrix."""
    from toeplitz_conv.network.analysis import chain as jacobian

    model = UNet().double()
    x = torch.randn(1, 8, 8)
    whole = tc.compile(model, (1, 8, 8)).jacobian(x, method="chain")
    monkeypatch.setattr(jacobian, "CHUNK_ROWS", 7)
    blocks = tc.compile(model, (1, 8, 8)).jacobian(x, method="chain")
    close(blocks.toarray(), whole.toarray())
    close(blocks.toarray(), torch_jacobian(model, x))


class Broadcast(nn.Module):
    """x (1 channel) plus a constant of 64 channels: the sum is 64 times the input."""

    def __init__(self):
        super().__init__()
        self.register_buffer("c", torch.ones(1, 64, 1, 1))

    def forward(self, x):
        return x + self.c


def test_a_broadcast_sum_too_large_is_refused_up_front():
    """Elementwise arithmetic's output size is the broadcast of its operands' shapes."""
    tc.set_memory_limit(10 * 2**20)
    try:
        with pytest.raises(ValueError, match=r"node .* has 262,144 output features per sample"):
            tc.compile(Broadcast().double(), (1, 64, 64))
    finally:
        tc.set_memory_limit(None)


def test_compiling_a_residual_network_imports_no_compiler():
    """The output-size check reads elementwise arithmetic's shape by broadcasting, not on meta
    tensors: their first call imports torch's compiler and sympy (3-6 s here)."""
    import subprocess
    import sys

    code = ("import sys, torch, toeplitz_conv as tc\n"
            "from torch import nn\n"
            "class R(nn.Module):\n"
            "    def __init__(self):\n"
            "        super().__init__(); self.c = nn.Conv2d(1, 2, 3, padding=1); self.d = nn.Conv2d(2, 1, 1)\n"
            "    def forward(self, x):\n"
            "        return x - self.d(torch.relu(self.c(x))) * 0.5 + x / 2\n"
            "before = set(sys.modules)\n"
            "tc.compile(R().double(), (1, 8, 8))\n"
            "print(sorted(m for m in ('sympy', 'torch._dynamo') if m in set(sys.modules) - before))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
