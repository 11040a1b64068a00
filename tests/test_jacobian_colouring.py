"""The network Jacobian by structural colouring: every method equals autograd's Jacobian.

``'forward'`` (columns coloured, Jacobian-vector products), ``'reverse'`` (rows coloured,
vector-Jacobian products) and ``'chain'`` (the product of the nodes' matrices) on small models
of every node kind, against ``torch.func.jacrev``; the colouring itself (no two columns of one
colour share a row; the boxes hold the true pattern); ``'auto'``'s choice; the refusals.
"""

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

import toeplitz_conv as tc
from graph_models import (STENCILS, SEBlock, Audio1d, BasicBlock, DnCNN, Functional, UNet, Volume3d,
                          randomize_batch_norm)
from toeplitz_conv.network.analysis import colouring, reach
from toeplitz_conv.network.analysis.jacobian import network_jacobian

METHODS = ["forward", "reverse", "chain"]


def torch_jacobian(model, x):
    J = torch.func.jacrev(lambda v: model(v[None])[0])(x[0])
    return J.reshape(-1, x[0].numel()).detach().numpy()


class Gate(nn.Module):
    """A product of two tensors that depend on the input, and a softmax over channels."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 3, 1)

    def forward(self, x):
        return torch.softmax(self.a(x) * torch.sigmoid(self.b(x)), dim=1)


class FunctionalPool(nn.Module):
    """Max pooling without a module: functional and adaptive (its selection from torch)."""

    def forward(self, x):
        return F.adaptive_max_pool2d(F.max_pool2d(x, 2), (3, 2))


def _models():
    torch.manual_seed(0)
    return {
        "conv-stride-dilation-groups": (nn.Sequential(
            nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), nn.ReLU(),
            nn.Conv2d(6, 3, (3, 2), padding=(1, 0))), (4, 11, 10)),
        "reflect-circular-replicate": (nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), nn.Tanh(),
            nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(),
            nn.Conv2d(3, 1, 3, padding=1, padding_mode="replicate")), (2, 9, 8)),
        "maxpool-avgpool-linear": (nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(2, 1),
            nn.Flatten(), nn.Linear(4 * 4 * 4, 5)), (2, 10, 10)),
        "functional-maxpool": (nn.Sequential(nn.Conv2d(1, 2, 3), FunctionalPool()), (1, 14, 12)),
        "residual-batchnorm": (randomize_batch_norm(BasicBlock(3, 5, stride=2)), (3, 8, 8)),
        "unet-concat-transpose": (UNet(), (1, 8, 8)),
        "squeeze-excitation-product": (SEBlock(), (2, 6, 6)),
        "gate-softmax": (Gate(), (2, 5, 5)),
        "functional-logsoftmax": (Functional(), (2, 6, 6)),
        "1d-dilated-residual": (Audio1d(), (1, 16)),
        "3d-circular-maxpool": (Volume3d(), (1, 4, 4, 4)),
        "transposed": (nn.Sequential(nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1), nn.SiLU(),
                                     nn.Conv2d(3, 2, 3)), (2, 5, 4)),
    }


MODELS = _models()


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("method", METHODS)
def test_every_method_equals_jacrev(name, method):
    model, shape = MODELS[name]
    model = model.double().eval()
    x = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    J, plan = network_jacobian(tc.compile(model, shape), x, method)
    assert plan.method == method
    ref = torch_jacobian(model, x)
    assert J.shape == ref.shape
    np.testing.assert_allclose(J.toarray(), ref, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(ref).max()))
    assert J.has_sorted_indices and not np.any(J.data == 0)  # no stored zeros


@pytest.mark.parametrize("name", list(MODELS))
def test_boxes_hold_the_pattern_and_colours_never_clash(name):
    """Each row's nonzeros lie in its box; within a row every column has its own colour (the
    colouring's one rule), and within a column every row has its own row colour."""
    model, shape = MODELS[name]
    model = model.double().eval()
    x = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    net = tc.compile(model, shape)
    ref = torch_jacobian(model, x)
    plan = tc.jacobian_plan(net, x)
    rows, cols = np.nonzero(ref)
    for side, (r, c) in {"forward": (rows, cols), "reverse": (cols, rows)}.items():
        lo, hi, reached = reach.bounds(plan.boxes[side])
        inner = plan.lattices[side].shape
        coords = np.stack(np.unravel_index(c, inner), axis=1)
        assert reached[r].all()
        assert np.all((lo[r] <= coords) & (coords <= hi[r])), side
        colour = plan.lattices[side].colour_of()[c]
        pairs = set(zip(r.tolist(), colour.tolist()))
        assert len(pairs) == r.size, f"{side}: two entries of one colour in one row"
    assert plan.nnz_bound >= ref.astype(bool).sum()


@pytest.mark.parametrize("name", list(STENCILS))
def test_packed_cones_equal_jacrev(name):
    """Each colour's tangents packed into the squares around its seeds give the same Jacobian."""
    torch.manual_seed(7)
    model, shape = STENCILS[name]
    model = model.double().eval()
    x = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    net = tc.compile(model, shape)
    J, plan = network_jacobian(net, x, "packed")
    assert plan.method == "packed" and "packed" in plan.seconds
    ref = torch_jacobian(model, x)
    np.testing.assert_allclose(J.toarray(), ref, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(ref).max()))
    assert not np.any(J.data == 0)


@pytest.mark.parametrize("name", ["dncnn-two-channels", "grouped", "3d"])
def test_packed_convolutions_a_seed_at_a_time_are_the_same(monkeypatch, name):
    """Past the convolution's workspace budget the seeds of a block run one at a time."""
    from toeplitz_conv.network.analysis import packed

    monkeypatch.setattr(packed, "CONV_WORKSPACE_BYTES", 1)
    model, shape = STENCILS[name]
    model = model.double().eval()
    x = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    J, plan = network_jacobian(tc.compile(model, shape), x, "packed")
    assert plan.block > 1  # else nothing was split
    np.testing.assert_allclose(J.toarray(), torch_jacobian(model, x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method, model, shape, why", [
    ("packed", nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1)), (1, 8, 8), "changes the spatial shape"),
    ("packed", nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")), (1, 8, 8),
     "is not a stride-1 convolution with zero 'same' padding.*padding \\(1, 1\\) before and \\(1, 1\\) "
     "after, mode 'reflect'"),
    ("middle", nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 2, padding="same")),
     (1, 8, 8), "as wide on both sides of each axis.*kernel \\(2, 2\\).*padding \\(0, 0\\) before and "
     "\\(1, 1\\) after"),
    ("packed", nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Softmax(dim=1)), (1, 8, 8),
     "is not a convolution or an elementwise node"),
    ("packed", nn.Sequential(nn.Conv2d(1, 1, 5, padding=2), nn.Conv2d(1, 1, 5, padding=2)), (1, 6, 6),
     r"the cones \(radius 4\) overlap at period \(6, 6\)"),
    ("middle", nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 1)), (1, 8, 8),
     "changes the spatial shape"),
    ("middle", nn.Sequential(nn.Conv2d(1, 1, 3, padding=1)), (1, 8, 8), "no position splits this network so"),
    ("middle", nn.Sequential(nn.Conv2d(1, 1, 5, padding=2), nn.ReLU(), nn.Conv2d(1, 1, 5, padding=2)), (1, 4, 4),
     "no position splits this network so"),  # cones as wide as the image
])
def test_stencil_methods_refused_where_they_do_not_apply(method, model, shape, why):
    model = model.double()
    x = torch.randn(1, *shape, dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"method='{method}' needs a network of stride-1 'same' convolutions.*" + why):
        tc.jacobian(model, x, method=method)
    assert method not in tc.jacobian_plan(model, x).seconds


@pytest.mark.parametrize("method", ["forward", "reverse"])
def test_entries_as_triples_equal_entries_in_slots(monkeypatch, method):
    """Where the slots would not pay, the entries are kept as COO triples: the same matrix."""
    from toeplitz_conv.network.analysis import jacobian as module

    model, shape = MODELS["unet-concat-transpose"]
    model = model.double().eval()
    x = torch.randn(1, *shape, dtype=torch.float64)
    net = tc.compile(model, shape)
    slots = network_jacobian(net, x, method)[0]
    monkeypatch.setattr(module, "SLOTS_PER_ENTRY", 0)
    monkeypatch.setattr(module, "BLOCK_BYTES", 1)  # one colour per block: many parts
    monkeypatch.setattr(module, "MIN_BLOCK", 1)
    triples = network_jacobian(net, x, method)[0]
    assert triples.has_sorted_indices and triples.indices.dtype == np.int32
    np.testing.assert_array_equal(triples.toarray(), slots.toarray())
    np.testing.assert_allclose(triples.toarray(), torch_jacobian(model, x), atol=1e-12)


def test_a_lattice_too_fine_is_not_valid():
    """The validity check can fail: a period smaller than a box makes two columns clash."""
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)).double()
    net = tc.compile(model, (1, 9, 9))
    plan = tc.jacobian_plan(net, torch.randn(1, 1, 9, 9, dtype=torch.float64))
    M = plan.boxes["forward"]
    assert plan.lattices["forward"].extents == (1, 5, 5)
    assert colouring.valid(plan.lattices["forward"], M)
    assert not colouring.valid(colouring.Lattice((1, 9, 9), (1, 4, 5)), M)


def test_bias_free_relu_network_is_its_jacobian_times_x():
    """A bias-free piecewise-linear network is positively homogeneous: ``J(x) x == f(x)``."""
    torch.manual_seed(3)
    model = DnCNN(depth=5, c=6).double().eval()
    x = torch.randn(1, 1, 24, 24, dtype=torch.float64)
    J = tc.jacobian(model, x, method="forward")
    np.testing.assert_allclose(J @ x.numpy().ravel(), model(x).detach().numpy().ravel(), atol=1e-12)
    assert tc.jacobian_plan(model, x, method="forward").colours["forward"] == 11 * 11


def test_auto_takes_reverse_for_a_classifier_and_the_cones_for_a_denoiser():
    torch.manual_seed(4)
    classifier = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                               nn.Linear(4 * 12 * 12, 3)).double()
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    plan = tc.jacobian_plan(classifier, x)
    assert plan.method == "reverse" and plan.colours["reverse"] == 3
    assert "reverse" in str(plan) and "least estimated time" in str(plan)
    denoiser = DnCNN(depth=4, c=4).double().eval()
    x = torch.randn(1, 1, 40, 40, dtype=torch.float64)
    plan = tc.jacobian_plan(denoiser, x)
    assert plan.method == "middle" and plan.colours["forward"] == 81 and "packed" in plan.seconds
    np.testing.assert_allclose(tc.jacobian(denoiser, x).toarray(), torch_jacobian(denoiser, x), atol=1e-12)


def test_the_cost_model_reads_the_dtype_and_counts_one_pull_per_reverse_colour():
    torch.manual_seed(4)
    denoiser = DnCNN(depth=4, c=4).eval()
    x = torch.randn(1, 1, 40, 40)
    p64 = tc.jacobian_plan(denoiser.double(), x.double())
    p32 = tc.jacobian_plan(denoiser.float(), x)
    torch_methods = {"forward", "reverse", "packed", "middle"}
    assert torch_methods < set(p64.seconds) and set(p64.seconds) == set(p32.seconds)
    for method in ("forward", "reverse", "packed"):  # float32 convolutions run about four times as fast
        assert p32.seconds[method] < p64.seconds[method] / 2, method
    assert p32.seconds["middle"] < p64.seconds["middle"]  # its meeting's products: the same rate
    assert p32.seconds["chain"] == p64.seconds["chain"]  # scipy's sparse products: the same rate
    # reverse: one forward, then one pull per colour (the input's gradient only), the forward's cost each
    colours = p64.colours["reverse"]
    assert p64.seconds["reverse"] == pytest.approx(p64.seconds["forward"] * (colours + 1) / p64.colours["forward"])


class NoGradHead(nn.Module):
    """A classifier whose forward runs a layer under no_grad: autograd passes nothing through it."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 2, 3), nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        with torch.no_grad():
            y = self.conv(x)
        return self.fc(y.flatten(1))


class DetachedHead(NoGradHead):
    def forward(self, x):
        return self.fc(self.conv(x).detach().flatten(1))


class TupleHead(NoGradHead):
    def forward(self, x):
        return self.fc(self.conv(x).flatten(1)), x


class Doubled(torch.autograd.Function):
    """2 x forward, with a backward that forgets the factor."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        return g


class OwnBackwardHead(NoGradHead):
    def forward(self, x):
        return self.fc(Doubled.apply(self.conv(x)).flatten(1))


def test_auto_on_a_classifier_model_takes_its_own_vjps_without_compiling(monkeypatch):
    """A model in eval mode with at most 32 outputs: one vector-Jacobian product per output
    through the model itself (compile is never called); more outputs, training mode or a
    method asked for compile as before."""
    from toeplitz_conv.network import analyse

    def classifier(outputs):
        torch.manual_seed(7)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 6 * 6, outputs)).double().eval()

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled")

    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    monkeypatch.setattr(analyse, "compile", no_compile)
    model = randomize_batch_norm(classifier(analyse.DIRECT_MAX_OUTPUTS))
    plan = tc.jacobian_plan(model, x)
    assert plan.method == "reverse" and plan.colours["reverse"] == 32 and plan.shape == (32, 108)
    assert "nothing compiled" in str(plan)
    J = tc.jacobian(model, x.numpy())  # numpy in, the model's dtype
    assert isinstance(J, sp.csr_array) and J.has_sorted_indices
    np.testing.assert_allclose(J.toarray(), torch_jacobian(model, x), rtol=1e-13, atol=1e-15)
    assert tc.jacobian(classifier(5).float(), x).dtype == np.float32
    for asked in [(classifier(33), "auto"), (classifier(3).train(), "auto"), (classifier(3), "reverse")]:
        with pytest.raises(AssertionError, match="compiled"):
            tc.jacobian(asked[0], x, method=asked[1])
    # autograd would be wrong, or the products fail (a tuple): compile runs and says why
    for unfaithful in [NoGradHead(), DetachedHead(), OwnBackwardHead(), TupleHead()]:
        with pytest.raises(AssertionError, match="compiled"):
            tc.jacobian(unfaithful.double().eval(), x)
    with pytest.raises(ValueError, match=r"x must be finite to have a Jacobian; got 1 NaN"):
        tc.jacobian(model, x.index_put((torch.tensor([0]),) * 4, torch.tensor([float("nan")], dtype=torch.float64)))
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"the network's derivatives at x are not finite"):
        tc.jacobian(model, x)


def test_auto_keeps_to_the_methods_that_fit_in_memory(monkeypatch):
    """The fastest estimate whose memory estimate fits the limit; past every one, the refusal."""
    from toeplitz_conv.network.analysis import cost
    from toeplitz_conv.network.analysis import jacobian as module

    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 1, 3, padding=1)).double()
    x = torch.randn(1, 1, 30, 30, dtype=torch.float64)
    monkeypatch.setattr(cost, "CHAIN_MACS_PER_S", 1e15)  # the chain, estimated fastest
    monkeypatch.setattr(module, "BLOCK_BYTES", 1)  # one seed a block: the colourings hold little
    monkeypatch.setattr(module, "MIN_BLOCK", 1)
    plan = tc.jacobian_plan(model, x)
    assert plan.method == "chain" and plan.reason == "the least estimated time"
    others = min(v for k, v in plan.nbytes.items() if k != "chain")
    monkeypatch.setattr(module, "memory_limit", lambda: (others, "a test's limit"))
    plan = tc.jacobian_plan(model, x)
    assert plan.nbytes["chain"] > others  # else the test shows nothing
    assert plan.method != "chain" and "within the memory limit" in plan.reason


@pytest.mark.parametrize("method", ["forward", "reverse"])
@pytest.mark.parametrize("name", ["unet-concat-transpose", "squeeze-excitation-product", "functional-maxpool"])
def test_the_colourings_leave_no_matrix_built(method, name):
    """The boxes read a convolution's pattern table, and any other node's matrix only for the
    moment they need it (a functional max pooling's selection needs the numpy forward): after
    the Jacobian, no node keeps a matrix it did not have."""
    model, shape = MODELS[name]
    net = tc.compile(model.double().eval(), shape)
    affine = [layer for layer in net.layers if hasattr(layer, "built")]
    assert affine and not any(layer.built for layer in affine)
    tc.jacobian(net, torch.randn(1, *shape, dtype=torch.float64), method=method)
    assert not any(layer.built for layer in affine)
    net.layers[0].matrix  # a matrix the user built is kept
    tc.jacobian(net, torch.randn(1, *shape, dtype=torch.float64), method=method)
    assert net.layers[0].built


def test_updated_parameters_are_the_ones_differentiated():
    """The compressed products run with the network's parameters, not the model's originals."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 1, 3)).double()
    net = tc.compile(model, (1, 8, 8))
    new = {k: v * 2 for k, v in net.params.items()}
    net.update(new)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    for method in METHODS:
        np.testing.assert_allclose(network_jacobian(net, x, method)[0].toarray(), torch_jacobian(model, x),
                                   atol=1e-12)


def test_float32_network():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 1, 3, padding=1))
    x = torch.randn(1, 1, 10, 10)
    J = tc.jacobian(model, x)
    assert J.dtype == np.float32
    np.testing.assert_allclose(J.toarray(), torch_jacobian(model, x), atol=1e-5)



class _Float32Mix(nn.Module):
    """A clone (an identity node), an in-place ReLU, batch norm and residual sums: nodes whose
    derivative factors numpy gives as float64 in a float32 network."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.bn = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 2, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x):
        h = self.a(x).clone().relu_()
        h = h + torch.tanh(self.bn(h))
        return x - self.b(h)


@pytest.mark.parametrize("method", ["auto", "forward", "packed", "middle", "reverse", "chain"])
def test_float32_network_every_method(method):
    torch.manual_seed(4)
    model = _Float32Mix().float().eval()
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 2, 12, 12, dtype=torch.float32)
    net = tc.compile(model, (2, 12, 12))
    J = tc.jacobian(net, x, method=method)
    assert J.dtype == np.float32
    ref = torch_jacobian(copy.deepcopy(model).double(), x.double())  # the same weights, float64
    np.testing.assert_allclose(J.toarray(), ref, atol=1e-5 * np.abs(ref).max())

def test_refusals():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 3, padding=1)).double()
    x = torch.randn(1, 1, 64, 64, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"method must be one of 'auto', 'forward', 'packed', 'middle', 'reverse', 'chain'; got 'fast'"):
        tc.jacobian(model, x, method="fast")
    with pytest.raises(ValueError, match=r"x must be one sample with its batch axis, \(1, \*input_shape\).*got x.shape=\(2, 1, 64, 64\)"):
        tc.jacobian(model, torch.zeros(2, 1, 64, 64))
    with pytest.raises(TypeError, match=r"model must be a Network .* or a torch.nn.Module; got list"):
        tc.jacobian([model], x)
    net = tc.compile(model, (1, 64, 64))
    with pytest.raises(ValueError, match=r"x must be one sample of shape \(1, 64, 64\).*got x.shape=\(2, 1, 64, 64\)"):
        tc.jacobian(net, torch.zeros(2, 1, 64, 64))
    with pytest.raises(ValueError, match=r"x must be finite to have a Jacobian; got 1 NaN or inf entries"):
        tc.jacobian(net, x.index_put((torch.tensor([0]),) * 4, torch.tensor([float("nan")], dtype=torch.float64)))
    bad = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 1, 3, padding=1)).double()
    bad_net = tc.compile(bad, (1, 6, 6))
    bad_net.update({"0.bias": np.array([np.nan, 0.0])})  # a parameter gone NaN in training
    with pytest.raises(ValueError, match=r"the network's derivatives at x are not finite"):
        tc.jacobian(bad_net, torch.randn(1, 1, 6, 6, dtype=torch.float64), method="forward")
    tc.set_memory_limit(100_000)
    try:
        with pytest.raises(ValueError, match=r"the network.s Jacobian would need about .*4,096 x 4,096 with at most [\d,]+ nonzeros"):
            tc.jacobian(net, x)
    finally:
        tc.set_memory_limit(None)


@pytest.mark.parametrize("repeats", [False, True])
def test_boxes_read_backwards_equal_ufunc_at(repeats):
    """The backward scatter of window maxima: a plain scatter where each tap reads an input
    once (a convolution's windows), ufunc.at where one tap reads it several times (nearest
    upsampling's): both equal np.maximum.at everywhere but the padding row."""
    rng = np.random.default_rng(0)
    p_out, p_in, taps = 50, 40, 3
    table = np.stack([rng.permutation(p_in + 10)[:p_out] for _ in range(taps)], axis=1)  # >= p_in: padding
    if repeats:
        table[:, 1] = rng.integers(0, p_in, p_out)
    Mo = rng.integers(-100, 100, (2, p_out, 4)).astype(np.int32)
    ref = np.full((p_in + 1, 2, 4), reach.NONE, dtype=np.int32)
    for t in range(taps):
        np.maximum.at(ref, np.minimum(table[:, t], p_in), Mo.transpose(1, 0, 2))
    np.testing.assert_array_equal(reach._scatter_max(Mo, table, p_in), ref[:p_in].transpose(1, 0, 2))


def test_box_volumes_axis_by_axis():
    """Each box's volume, and 0 where it reaches nothing, as the product over its axes."""
    rng = np.random.default_rng(1)
    M = rng.integers(-3, 9, (200, 6)).astype(np.int32)
    M[::5] = reach.NONE
    lo, hi, reached = reach.bounds(M)
    np.testing.assert_array_equal(reach.volumes(M), np.where(reached, np.prod(hi - lo + 1, axis=1), 0))


_PEAK_SCRIPT = r"""
import gc, sys
sys.path.insert(0, sys.argv[1])
import torch, toeplitz_conv as tc
from _timing import hwm, reset_peak, rss
model_name, method, warm = sys.argv[2], sys.argv[3], sys.argv[4] == "warm"
torch.manual_seed(0)
if model_name == "resnet50":
    from bench_resnet50 import resnet50
    model, shape, dtype = resnet50(16, 100).eval(), (3, 112, 112), torch.float32  # residual sums, batch norm
else:
    from bench_network import dncnn
    model, shape, dtype = dncnn().double().eval(), (1, 64, 64), torch.float64
x = torch.randn(1, *shape, dtype=dtype)
net = tc.compile(model, shape)
plan = tc.jacobian_plan(net, x, method=method)
if warm:  # torch.func's one-time imports and code first; the peak starts again after them
    tc.jacobian(net, x, method=method)
    gc.collect()
    base = reset_peak()
else:  # the peak since the process started (ru_maxrss would keep the parent's across exec)
    base = rss()
tc.jacobian(net, x, method=method)
print(plan.nbytes[method], hwm() - base)
"""


def _estimate_and_held(model_name, method, warm):
    """``(estimate, held)``: the plan's memory estimate and the peak resident set the Jacobian
    added, in a fresh process."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(bench), model_name, method,
                           "warm" if warm else "cold"], capture_output=True, text=True, check=True)
    return tuple(map(int, done.stdout.split()[-2:]))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident set from /proc")
def test_the_reverse_memory_estimate_covers_what_a_resnet_holds():
    """The estimate the refusals read must not be below what the method holds: a ResNet-50
    layout's vector-Jacobian blocks held 2.6x their old estimate (it said 108 MiB, 159 held)."""
    estimate, held = _estimate_and_held("resnet50", "reverse", warm=False)
    assert held <= estimate, (held / 2**20, estimate / 2**20)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="resets the peak resident set through /proc")
@pytest.mark.parametrize("method", ["forward", "chain"])
def test_the_forward_and_chain_memory_estimates_cover_what_a_denoiser_holds(method):
    """A DnCNN-8 at 64x64 in float64: 'forward' held 117-120 MiB for an estimate of 55 MiB (torch's
    float64 convolutions unfold their input, 4.7 MB a seed here), 'chain' 1.07 GiB for 978 MiB
    (torch's sparse products copy their operands' indices to int64)."""
    estimate, held = _estimate_and_held("dncnn", method, warm=True)
    assert held <= estimate, (held / 2**20, estimate / 2**20)
