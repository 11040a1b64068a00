"""The network Jacobian by meeting in the middle: forward cones up to a middle position, reverse
cones (convolutions by their transposes) after it, multiplied where they meet. Every position
the network can be split at gives jacrev's matrix; only positions that split it are offered;
'auto' takes it for a denoiser; the refusals are with the packed ones (test_jacobian_colouring)."""

import numpy as np
import pytest
import torch
from torch import nn

import toeplitz_conv as tc
from graph_models import STENCILS, DnCNN
from toeplitz_conv.network.analysis import middle, packed, stencil
from toeplitz_conv.network.analysis.cost import TORCH_MACS_PER_S
from toeplitz_conv.network.analysis.jacobian import network_jacobian, sample


def torch_jacobian(model, x):
    f = lambda v: model(v[None])[0]  # noqa: E731
    return torch.func.jacrev(f)(x[0]).reshape(-1, x[0].numel()).detach().numpy()


class Residual2d(nn.Module):
    """Two residual blocks: only their ends (and the stem) split the network."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 3, 3, padding=1)
        self.a1, self.a2 = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
        self.b1, self.b2 = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = h + self.a2(torch.tanh(self.a1(h)))
        h = h + self.b2(torch.relu(self.b1(h)))
        return x - self.head(h)


MODELS = {**STENCILS, "residual-blocks": (Residual2d(), (2, 17, 15))}


def _case(name, seed=3):
    torch.manual_seed(7)
    model, shape = MODELS[name]
    model = model.double().eval()
    x = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return model, shape, x, tc.compile(model, shape)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_split_gives_jacrevs_matrix(name):
    model, shape, x, net = _case(name)
    ref = torch_jacobian(model, x)
    found = middle.splits(net, TORCH_MACS_PER_S, 8)
    assert found, "no position splits the network"
    for split in found:
        # blocks of output colours: a row of the last axis, two rows, two planes, all of them
        ext = split.reverse.extents
        for block in sorted({5, 2 * ext[-1], 2 * int(np.prod(ext[2:])), 10**6}):
            J = middle.jacobian(net, sample(net, x), split, block=block)
            np.testing.assert_allclose(J.toarray(), ref, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(ref).max()),
                                       err_msg=f"meeting at position {split.node}, blocks of {block}")
            assert J.has_sorted_indices and not np.any(J.data == 0)
    J, plan = network_jacobian(net, x, "middle")
    assert plan.method == "middle" and plan.split is not None
    assert plan.colours["middle"] == plan.split.forward.colours + plan.split.reverse.colours
    np.testing.assert_allclose(J.toarray(), ref, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(ref).max()))


def test_only_positions_that_split_the_network_are_offered():
    """Inside a residual block the skip bypasses a position: the block's ends and the stem
    split it; the direct part x - ... reads the input, which is allowed."""
    _, _, _, net = _case("residual-blocks")
    nodes = {s.node for s in middle.splits(net, TORCH_MACS_PER_S, 8)}
    assert nodes  # and each offered one is a cut: every later node reads it, later ones or the input
    for m in nodes:
        later = range(m, len(net.layers))
        assert all(p == 0 or p >= m for i in later for p in net.layers[i].inputs)
    cut_free = [m for m in range(1, net.output) if m not in nodes]
    skipped = [m for m in cut_free if any(0 < p < m for i in range(m, len(net.layers))
                                          for p in net.layers[i].inputs)]
    assert skipped, "the residual blocks' insides must not be offered"


def test_the_halves_reach_as_far_as_their_cones():
    _, _, _, net = _case("dncnn")  # four 3x3 convolutions: meeting after the second, radius 2 each side
    R, _ = stencil.structure(net)
    best = min(middle.splits(net, TORCH_MACS_PER_S, 8), key=lambda s: s.seconds)
    assert best.reach == R[best.node] == (2, 2)  # and the reverse side's: one period for both
    assert best.forward.extents == (1, 5, 5) and best.reverse.extents == (1, 5, 5)


def test_auto_takes_the_middle_for_a_denoiser_and_says_so():
    torch.manual_seed(4)
    model = DnCNN(depth=6, c=4).double().eval()
    x = torch.randn(1, 1, 40, 40, dtype=torch.float64)
    plan = tc.jacobian_plan(model, x)
    assert plan.method == "middle" and plan.seconds["middle"] < plan.seconds["packed"]
    assert "colours meeting at position" in str(plan)
    J = tc.jacobian(model, x)
    # bias-free ReLU network: J x = f(x) exactly
    np.testing.assert_allclose(J @ x.numpy().ravel(), model(x).detach().numpy().ravel(), atol=1e-12)


def test_convolutions_a_seed_at_a_time_are_the_same(monkeypatch):
    """Past the workspace budget each seed runs alone, forward and transposed (groups)."""
    monkeypatch.setattr(packed, "CONV_WORKSPACE_BYTES", 1)
    model, shape, x, net = _case("grouped", seed=5)
    J, plan = network_jacobian(net, x, "middle")
    assert plan.block > 1
    np.testing.assert_allclose(J.toarray(), torch_jacobian(model, x), rtol=1e-10, atol=1e-12)


def test_the_adjoint_convolution_is_torchs_transpose():
    """The reverse side runs a convolution's adjoint as a convolution with the flipped kernel,
    the channels of each group swapped: torch's conv_transpose, for groups and dilation."""
    model = nn.Sequential(nn.Conv2d(4, 6, (3, 5), padding=(2, 4), dilation=2, groups=2, bias=False)).double()
    shape = (4, 9, 11)
    net = tc.compile(model, shape)
    layer = net.layers[0]
    P = packed.Packed(net, np.zeros((1, *shape)), middle.Lattice(shape, (4, 9, 11)), [(0, 0), (2, 4)])
    y = torch.randn(2, 6, 9, 11, dtype=torch.float64)
    got = P._conv(y, layer, (2, 4), transposed=True)
    want = torch.nn.functional.conv_transpose2d(y, model[0].weight, padding=(2, 4), dilation=2, groups=2)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), atol=1e-12)


def test_a_one_by_one_convolution_goes_back_by_its_flipped_kernel():
    """The adjoint's flipped 1x1 kernel of one input channel keeps negative strides on its
    axes of length 1 (numpy calls it contiguous; torch refuses it): it is copied."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 1, (1, 3), padding=(0, 1)),
                          nn.Tanh(), nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Conv2d(2, 1, 3, padding=1)).double().eval()
    x = torch.randn(1, 1, 13, 12, dtype=torch.float64)
    net, ref = tc.compile(model, (1, 13, 12)), torch_jacobian(model, x)
    found = middle.splits(net, TORCH_MACS_PER_S, 8)
    assert [s.node for s in found] == [1, 2, 3, 4, 5, 6]
    for split in found:  # the 1x1 layer forwards (after it), then backwards by its adjoint
        J = middle.jacobian(net, sample(net, x), split, block=8)
        np.testing.assert_allclose(J.toarray(), ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max(),
                                   err_msg=f"meeting at position {split.node}")
