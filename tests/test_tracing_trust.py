"""Real model code that torch.fx records differently from what the model computes: each is
now either compiled exactly (checked against autograd in float64) or refused at compile time
(or at evaluation) with the construct and its source line named."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import toeplitz_conv as tc
from toeplitz_conv.network import UnsupportedModuleError, UntraceableModelError


def assert_exact(model, shape, batch=2, seed=0):
    """Forward and input gradient of the compiled model equal autograd's."""
    model = model.double().eval()
    net = tc.compile(model, shape)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, dtype=torch.float64, generator=g, requires_grad=True)
    y = model(x)
    np.testing.assert_allclose(net.forward(x.detach().numpy()), y.detach().numpy(), rtol=1e-12, atol=1e-12)
    d = torch.randn(y.shape, dtype=torch.float64, generator=g)
    (y * d).sum().backward()
    _, dx = net.backward(d.numpy())
    np.testing.assert_allclose(dx, x.grad.numpy(), rtol=1e-12, atol=1e-12)
    return net


class Conv(nn.Module):
    def __init__(self, c=2):
        super().__init__()
        self.c = nn.Conv2d(c, c, 3, padding=1)


# --------------------------------------------------------------------------- in place


class ViewAdd(Conv):
    def forward(self, x):
        x = self.c(x)
        y = x.view(x.size(0), -1)
        y.add_(1)
        return x


class SliceMul(Conv):
    def forward(self, x):
        x = self.c(x)
        x[:, :1].mul_(2)
        return x


class AliasedSum(Conv):
    def forward(self, x):
        out = self.c(x)
        identity = out
        out += x
        return out + identity


class ResidualSum(Conv):
    def forward(self, x):
        identity = x
        out = self.c(x)
        out += identity
        return F.relu(out, inplace=True)


class InplaceReluThenView(Conv):
    def forward(self, x):
        y = self.c(x).relu_()
        return y.view(y.size(0), -1) * 2


@pytest.mark.parametrize("model,match", [
    (ViewAdd(), r"\.add_ 'add_' at test_tracing_trust.py:\d+ `y.add_\(1\)` changes 'view' in place, and "
                r"'output' reads 'c', which shares its memory, afterwards: write it out of place"),
    (SliceMul(), r"\.mul_ 'mul_' at test_tracing_trust.py:\d+ `x\[:, :1\].mul_\(2\)` changes 'getitem' in place, "
                 r"and 'output' reads 'c', which shares its memory, afterwards"),
    (AliasedSum(), r"the traced graph's output differs from the model's own on an example input \(max difference "
                   r"[\d.e+-]+\): torch.fx records `a \+= b` on a tensor as `a = a \+ b`"),
], ids=["view-add_", "slice-mul_", "aliased-+="])
def test_in_place_changes_seen_through_another_name_are_refused(model, match):
    with pytest.raises(UnsupportedModuleError, match=match):
        tc.compile(model.double().eval(), (2, 4, 4))


class ReadAfterChange(Conv):
    def forward(self, x):
        y = self.c(x)
        z = y.add_(1)  # y itself changes: every later read of y reads y + 1
        return y * z + y


@pytest.mark.parametrize("model", [ResidualSum(), InplaceReluThenView(), ReadAfterChange()],
                         ids=["residual-+=", "relu_-then-view", "read-after-add_"])
def test_in_place_changes_nobody_else_reads_compile_exactly(model):
    assert_exact(model, (2, 4, 4))


# --------------------------------------------------------------------------- the batch size


class LiteralBatch(Conv):
    def forward(self, x):
        return self.c(x).reshape(2, -1)


class NumelScale(Conv):
    def forward(self, x):
        y = self.c(x)
        return y / y.numel()


class NumelShape(Conv):
    def forward(self, x):
        y = self.c(x)
        return y.reshape(y.numel() // 32, -1)


@pytest.mark.parametrize("model,node", [(LiteralBatch(), "reshape"), (NumelScale(), "truediv")])
def test_a_shape_or_value_computed_from_the_batch_is_refused_at_other_batches(model, node):
    net = assert_exact(model, (2, 4, 4), batch=2)  # exact at the traced batch
    assert net.traced_batch_only is not None and net.traced_batch_only.startswith(repr(node))
    for n in (1, 3):
        with pytest.raises(ValueError, match=rf"computes a shape or a value from the batch size at node '{node}' "
                                             rf"at test_tracing_trust.py:\d+ .*traced at a batch of 2 .*got a batch "
                                             rf"of {n}\. Write such shapes with x.size\(0\)"):
            net.forward(np.zeros((n, 2, 4, 4)))
    with pytest.raises(ValueError, match="got a batch of 1"):
        net.jacobian(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="got a batch of 1"):  # one sample's map is another
        net.lipschitz_bound()


def test_a_shape_that_follows_the_batch_is_exact_at_every_batch():
    for n in (1, 2, 3):
        net = assert_exact(NumelShape(), (2, 4, 4), batch=n)
    assert net.traced_batch_only is None


def test_an_empty_batch_is_refused_clearly():
    net = tc.compile(nn.Conv2d(1, 1, 3).double(), (1, 4, 4))
    with pytest.raises(ValueError, match=r"x must hold at least one sample: a batch of shape \(N, 1, 4, 4\) with "
                                         r"N >= 1; got an empty batch"):
        net.forward(np.zeros((0, 1, 4, 4)))


# --------------------------------------------------------------------------- autograd off


class NoGrad(Conv):
    def forward(self, x):
        with torch.no_grad():
            y = self.c(x)
        return x + y


def test_no_grad_inside_forward_is_refused_with_its_line():
    with pytest.raises(UnsupportedModuleError, match=r"Conv2d 'c' at test_tracing_trust.py:\d+ `y = self.c\(x\)` "
                                                     r"runs under torch.no_grad\(\).*autograd passes no gradient"):
        tc.compile(NoGrad().double(), (2, 4, 4))


def test_compiling_under_no_grad_is_not_taken_for_no_grad_in_forward():
    with torch.no_grad():
        net = tc.compile(ResidualSum().double(), (2, 4, 4))
    assert len(net.layers) == 3


# --------------------------------------------------------------------------- subclasses


class ClampedConv(nn.Conv2d):
    def forward(self, x):
        return torch.clamp(super().forward(x), max=10.0)


class DoubledConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) * 2


class CausalConv1d(nn.Conv1d):
    def __init__(self, c, k):
        super().__init__(c, c, k, padding=k - 1)

    def forward(self, x):
        return super().forward(x)[:, :, : -self.padding[0]]


def test_a_subclass_with_its_own_forward_is_traced_through_not_built_as_its_base():
    big = ClampedConv(2, 2, 3, padding=1).double()
    with torch.no_grad():
        big.weight.mul_(100)  # the clamp bites: its base class would be wrong
    with pytest.raises(UnsupportedModuleError, match=r"torch.clamp .*at test_tracing_trust.py:\d+"):
        tc.compile(big, (2, 4, 4))
    net = assert_exact(DoubledConv(2, 3, 3), (2, 5, 5))
    assert [layer.kind for layer in net.layers] == ["F.conv2d", "*"]
    net = assert_exact(CausalConv1d(2, 3), (2, 7))
    assert net.output_shape == (2, 7)


def test_the_library_drop_in_modules_stay_single_convolutions():
    from toeplitz_conv.torch_sparse import ToeplitzConv2d

    net = tc.compile(ToeplitzConv2d(2, 3, 3).double(), (2, 5, 5))
    assert [layer.kind for layer in net.layers] == ["ToeplitzConv2d"]


# --------------------------------------------------------------------------- parameters


def test_parametrised_weights_are_read_as_their_value():
    from torch.nn.utils.parametrizations import spectral_norm, weight_norm

    model = nn.Sequential(weight_norm(nn.Conv2d(2, 3, 3)), nn.ReLU(), spectral_norm(nn.Conv2d(3, 2, 1))).double()
    model.eval()
    net = assert_exact(model, (2, 6, 6))
    assert "0.weight" in net.params and not any("parametrizations" in k for k in net.params)
    np.testing.assert_allclose(net.params["0.weight"], model[0].weight.detach().numpy(), rtol=0, atol=0)
    x = np.random.default_rng(0).standard_normal((2, 6, 6))
    net.update({"0.weight": net.params["0.weight"] * 3})  # torch's model keeps the old weight
    J = net.jacobian(x)  # through the matrices: torch's graph would give the old weight's
    np.testing.assert_allclose(J.toarray(), net.jacobian(x, method="chain").toarray(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"the parametrised weight '0.weight' was changed by update.*method='chain'"):
        net.jacobian(x, method="reverse")


def test_parametrised_weights_gradients_reach_their_own_tensors():
    """weight_norm's g and v, spectral_norm's original and a custom parametrisation: torch's
    autograd through the model's own parameters."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import spectral_norm, weight_norm

    class Symmetric(nn.Module):
        def forward(self, w):
            return w + w.transpose(-1, -2)

    conv = nn.Conv2d(2, 2, 3, padding=1)
    parametrize.register_parametrization(conv, "weight", Symmetric())
    model = nn.Sequential(weight_norm(nn.Conv2d(2, 3, 3)), nn.Tanh(), spectral_norm(nn.Conv2d(3, 2, 1)), conv)
    model = model.double().eval()
    net = tc.compile(model, (2, 7, 7))
    x = torch.randn(3, 2, 7, 7, dtype=torch.float64)
    y = model(x)
    d = torch.randn(y.shape, dtype=torch.float64)
    (y * d).sum().backward()
    net.forward(x.numpy())
    grads, _ = net.backward(d.numpy())
    got = net.original_gradients(grads)
    names = [n for n, _ in model.named_parameters() if ".parametrizations." in n]
    assert sorted(got) == sorted(names) and len(names) == 4, (sorted(got), names)
    for name, p in model.named_parameters():
        if name in got:
            np.testing.assert_allclose(got[name], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    assert tc.compile(nn.Conv2d(1, 1, 3).double(), (1, 4, 4)).original_gradients({}) == {}
    net.update({"3.weight": net.params["3.weight"] * 2})
    with pytest.raises(ValueError, match=r"the network's '3.weight' is no longer the value its parametrisation makes"):
        net.original_gradients(grads)
    model.train()
    with pytest.raises(ValueError, match=r"the parametrisation of '0.weight' is in training mode; call model.eval"):
        net.original_gradients(grads)


def test_update_reads_every_batch_norm_buffer_again():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.BatchNorm2d(2, affine=False)).double().eval()
    net = tc.compile(model, (1, 6, 6))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 1, 6, 6, dtype=torch.float64) * 3 + 1)
    model.eval()
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    assert np.abs(net.forward(x) - model(x).detach().numpy()).max() > 1e-3  # stale until update
    net.update({"0.weight": model[0].weight.detach().numpy()})  # a subset, no batch norm in it
    np.testing.assert_allclose(net.forward(x), model(x).detach().numpy(), rtol=1e-12, atol=1e-12)
    net.update({})
    np.testing.assert_allclose(net.forward(x), model(x).detach().numpy(), rtol=1e-12, atol=1e-12)


def test_embedding_is_refused_with_the_reason():
    with pytest.raises(UnsupportedModuleError, match=r"type Embedding \(it looks up rows by integer index"):
        tc.compile(nn.Sequential(nn.Embedding(10, 3)).double(), (4,))


# --------------------------------------------------------------------------- Lipschitz


class Cancels(nn.Module):
    def forward(self, x):
        return x - x


class ThreeTimes(Conv):
    def forward(self, x):
        y = self.c(x)
        return y + 2 * y


class DeadProduct(Conv):
    def forward(self, x):
        y = self.c(x)
        unused = y * y  # noqa: F841 - computed, never read by the output
        return torch.relu(y)


def test_a_sum_that_reads_one_tensor_twice_is_one_map_and_its_bound_exact():
    net = tc.compile(Cancels(), (3, 4))
    assert [layer.kind for layer in net.layers] == ["-"] and net.lipschitz_bound() == 0.0
    model = ThreeTimes().double()
    net = assert_exact(model, (2, 5, 5))
    conv = tc.compile(model.c, (2, 5, 5))
    assert net.lipschitz_bound() == pytest.approx(3 * conv.lipschitz_bound(), rel=1e-9)


def test_a_branch_the_output_never_reads_does_not_block_the_bound():
    model = DeadProduct().double()
    net = tc.compile(model, (2, 5, 5))
    relu_free = tc.compile(model.c, (2, 5, 5))
    assert net.lipschitz_bound() == pytest.approx(relu_free.lipschitz_bound(), rel=1e-9)


# --------------------------------------------------------------------------- sizes


class FunctionalPool(nn.Module):
    def forward(self, x):
        return torch.cat([F.avg_pool2d(x, 3, 2, 1, count_include_pad=False).flatten(1),
                          F.adaptive_avg_pool2d(x, (5, 7)).flatten(1),
                          F.avg_pool1d(x.flatten(2), 4, 3, 2, ceil_mode=True).flatten(1),
                          F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, divisor_override=2).flatten(1)], 1)


def test_functional_pooling_is_built_from_its_geometry():
    assert_exact(FunctionalPool(), (2, 11, 13))


def test_functional_pooling_of_a_large_image_compiles_in_linear_time():
    import time

    class Pool(nn.Module):
        def forward(self, x):
            return F.avg_pool2d(x, 2)

    t = time.perf_counter()
    net = tc.compile(Pool(), (1, 384, 384))  # probed with the identity, this took minutes
    assert time.perf_counter() - t < 20
    assert net.layers[0].matrix.nnz == 384 * 384


@pytest.mark.parametrize("model,shape,what", [
    (nn.Upsample(size=(4096, 4096), mode="bilinear"), (3, 64, 64), r"\(Upsample\) has 50,331,648 output features"),
    (nn.Unfold(3), (3, 1024, 1024), r"\(Unfold\) has 28,201,068 output features"),
])
def test_a_node_whose_output_is_too_large_is_refused_before_it_runs(model, shape, what):
    tc.set_memory_limit(512 << 20)  # above the input's own floor (144 MiB for the unfold)
    try:
        with pytest.raises(ValueError, match=rf"compile would need about .* \(node '<model>' {what} per sample"):
            tc.compile(model, shape)
    finally:
        tc.set_memory_limit(None)


# --------------------------------------------------------------------------- code on shapes


class TutorialLeNet(nn.Module):
    """The PyTorch tutorial's LeNet: a loop over x.size()[1:] for the features."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 3, 3), nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        num = 1
        for s in x.size()[1:]:
            num *= s
        return self.fc(x.view(-1, num))


class DCGANGuard(nn.Module):
    """DCGAN's forward: a branch on the device and the number of GPUs."""

    def __init__(self, ngpu=1):
        super().__init__()
        self.ngpu, self.main = ngpu, nn.Sequential(nn.ConvTranspose2d(3, 2, 4, 2, 1), nn.Tanh())

    def forward(self, x):
        if x.is_cuda and self.ngpu > 1:
            return nn.parallel.data_parallel(self.main, x, range(self.ngpu))
        return self.main(x) if x.dim() == 4 else x


class BatchBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv1d(2, 2, 1)

    def forward(self, x):
        return self.c(x) if x.size(0) > 1 else -self.c(x)


@pytest.mark.parametrize("model,shape", [(TutorialLeNet(), (1, 10, 10)), (DCGANGuard(), (3, 4, 4))],
                         ids=["tutorial-lenet", "dcgan-guard"])
def test_python_code_on_shapes_traces_with_the_example_shapes(model, shape):
    for n in (1, 2, 3):
        assert_exact(model, shape, batch=n)


def test_a_branch_on_the_batch_size_is_exact_only_at_the_traced_batch():
    net = assert_exact(BatchBranch(), (2, 5), batch=2)
    assert net.traced_batch_only is not None and "the output" in net.traced_batch_only
    with pytest.raises(ValueError, match="traced at a batch of 2 .*got a batch of 1"):
        net.forward(np.zeros((1, 2, 5)))


class ValueBranch(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_a_branch_on_tensor_values_is_still_refused_with_its_line():
    with pytest.raises(UntraceableModelError, match=r"at test_tracing_trust.py:\d+ `return x if x.sum\(\) > 0"):
        tc.compile(ValueBranch(), (3,))


def test_non_finite_parameters_are_refused_by_name():
    """torch spreads a NaN weight through the zero padding (NaN * 0), a sparse matrix stores no
    padding: compile refuses such a model up front, naming the parameter, instead of failing
    its own check with "please report this"."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 3, padding=1)).double()
    with torch.no_grad():
        model[2].weight[0, 1, 0, 0] = float("nan")
        model[2].bias[0] = float("inf")
    with pytest.raises(ValueError, match=r"parameter '2.weight' has 1 NaN or inf entries; compile needs finite"):
        tc.compile(model, (1, 6, 6))
