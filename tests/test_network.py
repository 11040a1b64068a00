"""compile(model) against torch autograd in float64: outputs, loss, every gradient."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from hypothesis import event, given, settings
from hypothesis import strategies as st
from torch import nn

import toeplitz_conv as tc

RTOL = 1e-12


def close(a, b, rtol=RTOL):
    """Relative agreement, scaled by the largest entry (a gradient may have exact zeros)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.abs(b).max(initial=0.0), 1e-300)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


def check_model(model, input_shape, n=3, seed=0, classes=None):
    """Forward, loss, every parameter gradient and the input gradient equal autograd's."""
    torch.manual_seed(seed)
    model = model.double().eval()
    net = tc.compile(model, input_shape)
    x = torch.randn(n, *input_shape, dtype=torch.float64, requires_grad=True)
    y_ref = model(x)
    y = net.forward(x)
    close(y, y_ref.detach().numpy())
    if classes is None:  # a generic loss: <y, g> with random g
        g = torch.randn_like(y_ref)
        (y_ref * g).sum().backward()
        grads, dx = net.backward(g.numpy())
    else:
        target = torch.randint(0, classes, (n,))
        loss_ref = F.cross_entropy(y_ref, target)
        loss_ref.backward()
        loss, dy = tc.softmax_cross_entropy(y, target.numpy())
        close(loss, loss_ref.item())
        grads, dx = net.backward(dy)
    names = [name for name, _ in model.named_parameters()]
    assert list(grads) == names
    for name, p in model.named_parameters():
        close(grads[name], p.grad.numpy())
    close(dx, x.grad.numpy())
    return net, x


# --------------------------------------------------------------------------- the models


def test_mnist_shaped_cnn_with_cross_entropy():
    model = nn.Sequential(nn.Conv2d(1, 3, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(432, 10))
    net, x = check_model(model, (1, 28, 28), n=4, classes=10)
    assert [layer.kind for layer in net.layers] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    conv = net.layers[0]
    assert sp.issparse(conv.matrix) and conv.matrix.shape == (3 * 24 * 24, 784)
    assert conv.matrix.nnz == 3 * 24 * 24 * 25 and conv.bias.shape == (3 * 24 * 24,)


def test_cifar_shaped_cnn_with_cross_entropy():
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4096, 10))
    check_model(model, (3, 32, 32), n=2, classes=10, seed=1)


# --------------------------------------------------------------------------- every supported layer

MODELS = {
    "conv1d-reflect-leaky": (lambda: nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=2, padding_mode="reflect", dilation=2), nn.LeakyReLU(0.1),
        nn.Conv1d(4, 4, 2, stride=2, groups=2, padding_mode="circular", padding=1), nn.Tanh()), (2, 11)),
    "conv2d-circular-replicate-same": (lambda: nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"), nn.Sigmoid(),
        nn.Conv2d(4, 4, (2, 3), padding="same", padding_mode="replicate", bias=False), nn.GELU()), (2, 7, 6)),
    "conv3d-gelu-tanh": (lambda: nn.Sequential(
        nn.Conv3d(1, 2, 2, stride=(1, 2, 1), padding=1), nn.GELU(approximate="tanh"),
        nn.Conv3d(2, 2, 3, padding=1, padding_mode="reflect"), nn.ReLU()), (1, 4, 5, 4)),
    "conv-transpose-1d-2d": (lambda: nn.Sequential(
        nn.ConvTranspose1d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2), nn.ReLU(),
        nn.Identity(),
        nn.ConvTranspose1d(4, 2, 2, dilation=2)), (2, 5)),
    "conv-transpose-2d": (lambda: nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1, bias=False)), (3, 8, 8)),
    "conv-transpose-3d": (lambda: nn.Sequential(
        nn.ConvTranspose3d(2, 2, 2, stride=2, dilation=(1, 1, 2), output_padding=(0, 1, 1)), nn.Tanh()), (2, 3, 2, 3)),
    "batchnorm-dropout-avgpool-adaptive": (lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5),
        nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        nn.AdaptiveAvgPool2d((2, 3)), nn.Dropout2d(), nn.Flatten(), nn.Linear(18, 5),
        nn.BatchNorm1d(5), nn.Sigmoid()), (2, 9, 9)),
    "batchnorm-no-affine-1d-3d": (lambda: nn.Sequential(
        nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3, affine=False), nn.AvgPool1d(2, ceil_mode=True),
        nn.AdaptiveAvgPool1d(1)), (2, 8)),
    "batchnorm3d-maxpool3d": (lambda: nn.Sequential(
        nn.Conv3d(1, 2, 3, padding=1), nn.BatchNorm3d(2), nn.MaxPool3d(2, stride=1, padding=1),
        nn.AvgPool3d(2, divisor_override=3), nn.AdaptiveAvgPool3d(1), nn.Flatten()), (1, 4, 4, 4)),
    "nested-sequential-identity": (lambda: nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), nn.Identity())),
        nn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True), nn.Flatten(),
        nn.Sequential(nn.Linear(8, 6), nn.GELU(), nn.Linear(6, 3))), (1, 7, 7)),
    "linear-on-last-axis-flatten-2": (lambda: nn.Sequential(
        nn.Conv1d(2, 3, 3), nn.Linear(6, 4), nn.Tanh(), nn.Flatten(start_dim=2), nn.Linear(4, 2),
        nn.Flatten()), (2, 8)),
    "single-conv-module": (lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1, groups=1), (2, 6, 6)),
}


@pytest.mark.parametrize("factory,shape", MODELS.values(), ids=MODELS.keys())
def test_model_matches_autograd(factory, shape):
    torch.manual_seed(0)
    model = factory()
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            if m.affine:
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -1, 1)
    check_model(model, shape)


def test_shared_module_gradients_add():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.Tanh(), lin)
    net, _ = check_model(model, (4,))
    assert list(net.params) == ["0.weight", "0.bias"]
    assert net.layers[2].param_names == {"weight": "0.weight", "bias": "0.bias"}


def test_maxpool_matrix_is_the_per_sample_selection(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, padding=1)).double()
    net = tc.compile(model, (1, 7, 7))
    assert net.layers[1].matrix is None
    x = rng.standard_normal((3, 1, 7, 7))
    net.forward(x)
    hidden = net.activations[1]
    S = net.layers[1].matrix
    assert len(S) == 3
    for n in range(3):
        ref = tc.max_pool_matrix(hidden[n], 2, padding=1)
        assert (S[n] != ref).nnz == 0
        np.testing.assert_array_equal(S[n] @ hidden[n].ravel(), net.activations[2][n].ravel())


# --------------------------------------------------------------------------- MLP equivalence, linear maps


def test_to_mlp_reproduces_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, padding_mode="circular"), nn.BatchNorm2d(3),
                          nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(48, 5), nn.GELU(),
                          nn.Linear(5, 2)).double().eval()
    model[1].running_mean.uniform_(-1, 1)
    mlp = tc.compile(model, (1, 8, 8)).to_mlp()
    assert [type(m).__name__ for m in mlp] == ["Flatten", "Linear", "Linear", "ReLU", "Linear",
                                                "Linear", "GELU", "Linear"]
    assert mlp[1].weight.shape == (192, 64)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    close(mlp(x).detach().numpy(), model(x).detach().numpy())


def test_to_mlp_unflattens_a_spatial_output():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh()).double()
    mlp = tc.compile(model, (1, 5, 5)).to_mlp()
    x = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    close(mlp(x).detach().numpy(), model(x).detach().numpy())


def test_conv_then_avg_pool_is_one_strided_conv(rng):
    """conv 3x3 followed by 2x2 average pooling = one 4x4 convolution with stride 2."""
    w = rng.standard_normal((2, 1, 3, 3))
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.AvgPool2d(2)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(w))
    M, b = tc.compile(model, (1, 10, 10)).linear_map()
    box = np.ones((1, 1, 2, 2)) / 4
    w4 = F.conv_transpose2d(torch.from_numpy(w), torch.from_numpy(box)).numpy()  # full conv w * box
    C = tc.conv_matrix(w4, (1, 10, 10), stride=2)
    np.testing.assert_allclose((M - C).toarray(), 0, atol=1e-14)
    assert M.nnz == C.nnz and not b.any()


def test_linear_map_of_linear_segments(rng):
    model = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.BatchNorm1d(3), nn.AvgPool1d(2),
                          nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 2)).double().eval()
    net = tc.compile(model, (2, 8))
    x = rng.standard_normal((3, 2, 8))
    net.forward(x)
    M, b = net.linear_map(0, 5)
    close((M @ x.reshape(3, -1).T).T + b, net.activations[5])
    M, b = net.linear_map(-1)
    assert M.shape == (2, 4)
    with pytest.raises(ValueError, match=r"linear_map needs linear layers only; layer 5 \('5', ReLU\) in range\(0, 7\) is not: an elementwise nonlinear activation"):
        net.linear_map()


def test_sgd_step_rebuilds_the_matrices(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(18, 2)).double()
    net = tc.compile(model, (1, 5, 5))
    x = rng.standard_normal((4, 1, 5, 5))
    net.forward(x)
    grads, _ = net.backward(np.ones((4, 2)))
    net.sgd_step(grads, 0.1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p -= 0.1 * torch.from_numpy(grads[name])
    close(net.forward(x), model(torch.from_numpy(x)).detach().numpy())
    close(net.layers[0].matrix.toarray(),
          tc.conv_matrix(model[0].weight.detach(), (1, 5, 5)).toarray())


def test_float32_stays_float32():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 2))
    net = tc.compile(model, (1, 8, 8))
    x = torch.randn(2, 1, 8, 8)
    y = net.forward(x)
    assert y.dtype == np.float32 and net.layers[0].matrix.dtype == np.float32
    np.testing.assert_allclose(y, model(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    grads, dx = net.backward(np.ones((2, 2), dtype=np.float32))
    assert grads["4.weight"].dtype == np.float32 and dx.dtype == np.float32


def test_repr_lists_layers():
    net = tc.compile(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), (1, 5, 5))
    assert "Conv2d (1, 5, 5) -> (2, 3, 3)  matrix 18 x 25, nnz 162" in repr(net)


# --------------------------------------------------------------------------- bad input


class Custom(nn.Module):
    def forward(self, x):
        return x.abs()


def _trained_bn():
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))  # training mode by default


@pytest.mark.parametrize("call,exc,match", [
    (lambda: tc.compile(nn.Sequential(nn.Conv2d(1, 2, 3), nn.LocalResponseNorm(2)), (1, 5, 5)), TypeError,
     r"compile does not support module '1' of type LocalResponseNorm; supported: Sequential, Conv1d"),
    (lambda: tc.compile(nn.Sequential(Custom()), (3,)), TypeError,
     r"compile does not support the method .abs \(node 'abs(_\d+)?' at test_network.py:\d+ `return x.abs\(\)`\); "
     r"supported functions and methods: \+, \+=, -"),
    (lambda: tc.compile(_trained_bn(), (1, 5, 5)), ValueError,
     r"module '1' \(BatchNorm2d\) must be in eval mode to be compiled: in training mode batch norm"),
    (lambda: tc.compile(nn.Sequential(nn.Dropout()), (3,)), ValueError,
     r"module '0' \(Dropout\) must be in eval mode.*dropout zeroes random entries"),
    (lambda: tc.compile(nn.BatchNorm1d(3, track_running_stats=False).eval(), (3,)), ValueError,
     r"must track running statistics .*got track_running_stats=False"),
    (lambda: tc.compile(nn.Sequential(nn.Conv2d(1, 2, 3)), (3, 5, 5)), ValueError,
     r"layer '0' \(Conv2d\) with input shape \(3, 5, 5\): input_shape\[0\] must equal"),
    (lambda: tc.compile(nn.Sequential(nn.Flatten(), nn.Linear(10, 2)), (1, 5, 5)), ValueError,
     r"layer '1' \(Linear\) with input shape \(25,\): the input's last axis must equal in_features=10"),
    (lambda: tc.compile(nn.Sequential(nn.Flatten(0)), (2, 3)), ValueError,
     r"Flatten '0' must keep the batch axis \(start_dim >= 1\); got start_dim=0"),
    (lambda: tc.compile(nn.Sequential(nn.MaxPool2d(2, return_indices=True)), (1, 4, 4)), ValueError,
     r"module '0' \(MaxPool2d\) must have return_indices=False.*got return_indices=True"),
    (lambda: tc.compile(nn.Sequential(nn.AvgPool2d(3, padding=2)), (1, 8, 8)), ValueError,
     r"layer '0' \(AvgPool2d\).*padding must be at most half of kernel_size"),
    (lambda: tc.compile(nn.Sequential(nn.MaxPool2d(5)), (1, 3, 3)), ValueError,
     r"layer '0' \(MaxPool2d\).*the output would be empty"),
    (lambda: tc.compile(nn.Sequential(nn.BatchNorm2d(3).eval()), (2, 4, 4)), ValueError,
     r"channel axis must equal num_features=3; got input shape \(2, 4, 4\)"),
    (lambda: tc.compile("model", (3,)), TypeError, r"module must be a torch.nn.Module; got str"),
    (lambda: tc.compile(nn.Linear(3, 2), 3), TypeError, r"input_shape must be a tuple of ints .*got 3"),
    (lambda: tc.compile(nn.Linear(3, 2), (0, 3)), ValueError,
     r"input_shape must be a non-empty tuple of positive ints .*got input_shape=\(0, 3\)"),
    (lambda: tc.compile(nn.Linear(3, 2).half(), (3,)), TypeError, r"must have a dtype scipy.sparse supports"),
    (lambda: tc.compile(nn.Linear(3, 2, dtype=torch.complex64), (3,)), TypeError,
     r"the model's parameters must be floating point; got complex64"),
])
def test_compile_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_module_errors_name_the_module_and_say_so_by_their_class():
    """Errors about a module itself come as they are (their class says so, not their text);
    errors from a layer's arguments get the layer's name and input shape prepended."""
    from toeplitz_conv.network import ModuleStateError, UnsupportedModuleError, supported_modules

    with pytest.raises(UnsupportedModuleError) as info:
        tc.compile(nn.Sequential(nn.Conv2d(1, 2, 3), nn.LocalResponseNorm(2)), (1, 5, 5))
    assert isinstance(info.value, TypeError)
    assert str(info.value) == (f"compile does not support module '1' of type LocalResponseNorm; supported: "
                               f"{', '.join(supported_modules())}.")
    with pytest.raises(ModuleStateError) as info:
        tc.compile(_trained_bn(), (1, 5, 5))
    assert isinstance(info.value, ValueError) and str(info.value).startswith("module '1' (BatchNorm2d)")
    with pytest.raises(ValueError) as info:
        tc.compile(nn.Sequential(nn.Conv2d(1, 2, 3)), (3, 5, 5))
    assert not isinstance(info.value, ModuleStateError)
    assert str(info.value).startswith("layer '0' (Conv2d) with input shape (3, 5, 5): input_shape[0]")


# one instance of every supported module, with an input shape that fits it
SUPPORTED_EXAMPLES = {
    **{f"Conv{n}d": (lambda n=n: getattr(nn, f"Conv{n}d")(2, 3, 1), (2, *(3,) * n)) for n in (1, 2, 3)},
    **{f"ConvTranspose{n}d": (lambda n=n: getattr(nn, f"ConvTranspose{n}d")(2, 3, 2), (2, *(3,) * n))
       for n in (1, 2, 3)},
    "Linear": (lambda: nn.Linear(4, 2), (4,)),
    "Flatten": (nn.Flatten, (2, 3)),
    **{f"AvgPool{n}d": (lambda n=n: getattr(nn, f"AvgPool{n}d")(2), (2, *(4,) * n)) for n in (1, 2, 3)},
    **{f"MaxPool{n}d": (lambda n=n: getattr(nn, f"MaxPool{n}d")(2), (2, *(4,) * n)) for n in (1, 2, 3)},
    **{f"AdaptiveAvgPool{n}d": (lambda n=n: getattr(nn, f"AdaptiveAvgPool{n}d")(1), (2, *(4,) * n))
       for n in (1, 2, 3)},
    **{f"BatchNorm{n}d": (lambda n=n: getattr(nn, f"BatchNorm{n}d")(2), (2, *(3,) * n)) for n in (1, 2, 3)},
    **{name: (getattr(nn, name), shape) for name, shape in (("Dropout", (2, 3, 3, 3)), ("Dropout1d", (2, 3)),
                                                            ("Dropout2d", (2, 3, 3)), ("Dropout3d", (2, 3, 3, 3)))},
    **{name: (getattr(nn, name), (5,)) for name in ("Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU",
                                                    "ReLU6", "Hardtanh", "SiLU", "ELU", "Softplus",
                                                    "Hardswish", "Mish", "Hardsigmoid", "LogSigmoid",
                                                    "Softsign", "Tanhshrink", "SELU", "CELU")},
    "Threshold": (lambda: nn.Threshold(0.1, 0.2), (5,)),
    **{name: (getattr(nn, name), (5,)) for name in ("Softshrink", "Hardshrink", "RReLU", "PReLU")},
    "LayerNorm": (lambda: nn.LayerNorm(4), (3, 4)), "GroupNorm": (lambda: nn.GroupNorm(2, 4), (4, 3)),
    **{f"InstanceNorm{n}d": (lambda n=n: getattr(nn, f"InstanceNorm{n}d")(2), (2, *(3,) * n)) for n in (1, 2, 3)},
    "Softmax": (lambda: nn.Softmax(dim=1), (3, 2)), "LogSoftmax": (lambda: nn.LogSoftmax(dim=-1), (3, 4)),
    **{f"AdaptiveMaxPool{n}d": (lambda n=n: getattr(nn, f"AdaptiveMaxPool{n}d")(2), (2, *(5,) * n))
       for n in (1, 2, 3)},
    **{f"{base}{n}d": (lambda n=n, base=base: getattr(nn, f"{base}{n}d")(*((1,) if base != "ConstantPad" else (1, 0.5))),
                       (2, *(4,) * n))
       for base in ("ZeroPad", "ConstantPad", "ReflectionPad", "ReplicationPad", "CircularPad") for n in (1, 2, 3)},
    "Upsample": (lambda: nn.Upsample(scale_factor=2, mode="bilinear"), (2, 3, 4)),
    "UpsamplingNearest2d": (lambda: nn.UpsamplingNearest2d(scale_factor=2), (2, 3, 4)),
    "UpsamplingBilinear2d": (lambda: nn.UpsamplingBilinear2d(size=(5, 7)), (2, 3, 4)),
    "PixelShuffle": (lambda: nn.PixelShuffle(2), (8, 2, 3)),
    "PixelUnshuffle": (lambda: nn.PixelUnshuffle(2), (2, 4, 6)),
    "ChannelShuffle": (lambda: nn.ChannelShuffle(2), (4, 2, 3)),
    "Unfold": (lambda: nn.Unfold(2, padding=1), (2, 3, 4)),
    "Unflatten": (lambda: nn.Unflatten(1, (2, 3)), (6, 2)),
    "Fold": (lambda: nn.Fold((4, 5), 2), (8, 12)),
}


def test_supported_modules_are_read_off_the_registry():
    from toeplitz_conv.network import supported_modules

    assert supported_modules() == ("Sequential", *SUPPORTED_EXAMPLES)
    for name, (make, shape) in SUPPORTED_EXAMPLES.items():
        model = make().double().eval()
        net = tc.compile(model, shape)
        assert net.layers[0].kind in (name, "Upsample"), name  # Upsampling*2d are Upsample subclasses
        x = torch.randn(2, *shape, dtype=torch.float64)
        np.testing.assert_allclose(net.forward(x), model(x).detach().numpy(), rtol=1e-12, atol=1e-12, err_msg=name)


def test_subclasses_compile_as_their_base_but_activations_only_as_torch_defines_them():
    class MyConv(nn.Conv2d):
        pass

    class MyReLU(nn.ReLU):
        def forward(self, x):
            return super().forward(x) * 2

    net = tc.compile(MyConv(1, 2, 3).double(), (1, 5, 5))
    assert net.layers[0].kind == "MyConv" and net.layers[0].matrix.shape == (18, 25)
    net = tc.compile(MyReLU(), (3,))  # not the registered ReLU: traced through, as F.relu then * 2
    assert [layer.kind for layer in net.layers] == ["F.relu", "*"]
    x = torch.randn(4, 3, dtype=torch.float64)
    close(net.forward(x), MyReLU()(x).numpy())


@pytest.fixture
def small_net():
    return tc.compile(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()).double(),
                      (1, 6, 6))


def test_network_input_errors(small_net):
    with pytest.raises(ValueError, match=r"x must be a batch of shape \(N, 1, 6, 6\) .*got "
                                         r"x.shape=\(1, 6, 6\) \(add a batch axis: x\[None\]\)"):
        small_net.forward(np.zeros((1, 6, 6)))
    with pytest.raises(ValueError, match=r"got x.shape=\(2, 1, 5, 5\)\.$"):
        small_net.forward(np.zeros((2, 1, 5, 5)))
    with pytest.raises(TypeError, match=r"x must be a numeric array"):
        small_net.forward(np.array([["a"]]))


def test_backward_errors(small_net):
    with pytest.raises(ValueError, match=r"backward needs the activations of a forward pass; call forward\(x\) first"):
        small_net.backward(np.zeros((2, 8)))
    small_net.forward(np.zeros((2, 1, 6, 6)))
    with pytest.raises(ValueError, match=r"grad_output must have the shape of the last forward's output "
                                         r"\(2, 8\); got grad_output.shape=\(2, 2, 2, 2\)"):
        small_net.backward(np.zeros((2, 2, 2, 2)))


def test_to_mlp_and_update_errors(small_net):
    with pytest.raises(ValueError, match=r"to_mlp needs input-independent linear layers; layer 2 "
                                         r"\('2', MaxPool2d\) is max pooling, linear only per input"):
        small_net.to_mlp()
    with pytest.raises(ValueError, match=r"linear_map needs linear layers only; layer 2 .*max pooling is linear only per input"):
        small_net.linear_map(2, 3)
    with pytest.raises(ValueError, match=r"new_params keys must be parameter names of the model "
                                         r"\(0.weight, 0.bias\); got 'weight'"):
        small_net.update({"weight": np.zeros((2, 1, 3, 3))})
    with pytest.raises(ValueError, match=r"new_params\['0.bias'\] must have shape \(2,\); got \(3,\)"):
        small_net.update({"0.bias": np.zeros(3)})


@pytest.mark.parametrize("logits,target,match", [
    (np.zeros((2, 3)), np.array([0, 1, 2]), r"logits must be \(N, K\) and target \(N,\) integer class "
                                            r"indices; got logits.shape=\(2, 3\), target.shape=\(3,\)"),
    (np.zeros((2, 3)), np.array([0.0, 1.0]), r"target.shape=\(2,\) \(float64\)"),
    (np.zeros((2, 3)), np.array([0, 3]), r"target must hold class indices in \[0, 3\); got values in \[0, 3\]"),
])
def test_cross_entropy_errors(logits, target, match):
    with pytest.raises(ValueError, match=match):
        tc.softmax_cross_entropy(logits, target)


# --------------------------------------------------------------------------- sweep: random small CNNs

ACTIVATIONS = [nn.ReLU, nn.Tanh, nn.Sigmoid, lambda: nn.LeakyReLU(0.2), nn.GELU]


@st.composite
def small_cnn(draw):
    nd = draw(st.integers(1, 2))
    conv_cls = (nn.Conv1d, nn.Conv2d)[nd - 1]
    size = tuple(draw(st.lists(st.integers(4, 9), min_size=nd, max_size=nd)))
    groups = draw(st.sampled_from([1, 2]))
    c_in, c_out = 2, draw(st.sampled_from([2, 4]))
    k = draw(st.integers(1, 3))
    pad = draw(st.integers(0, k))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    conv = conv_cls(c_in, c_out, k, stride=draw(st.integers(1, 2)), padding=pad,
                    dilation=draw(st.integers(1, 2)), groups=groups, padding_mode=mode)
    act = draw(st.sampled_from(ACTIVATIONS))()
    pk = draw(st.integers(1, 3))
    pool_kw = dict(kernel_size=pk, stride=draw(st.integers(1, 2)), padding=draw(st.integers(0, pk // 2)),
                   ceil_mode=draw(st.booleans()))
    if draw(st.booleans()):
        pool = (nn.MaxPool1d, nn.MaxPool2d)[nd - 1](**pool_kw)
    else:
        pool = (nn.AvgPool1d, nn.AvgPool2d)[nd - 1](count_include_pad=draw(st.booleans()), **pool_kw)
    layers = [conv, act, pool, nn.Flatten()]
    return layers, (c_in, *size)


@settings(max_examples=20, deadline=None)
@given(spec=small_cnn())
def test_random_small_cnns_match_autograd(spec):
    layers, shape = spec
    torch.manual_seed(0)
    body = nn.Sequential(*layers).double()
    try:
        features = body(torch.zeros(1, *shape, dtype=torch.float64)).shape[1]
    except RuntimeError:  # a geometry torch refuses: we must refuse it too
        event("refused by torch")
        with pytest.raises(ValueError):
            tc.compile(body, shape)
        return
    event("compared with torch")
    check_model(nn.Sequential(*layers, nn.Linear(features, 3)), shape, n=2, classes=3)
