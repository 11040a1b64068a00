"""Layer matrices are built on first use and released on demand: compile builds none (a large
convolution is checked against torch matrix-free), a forward builds and keeps them, release()
drops them, update() invalidates them, repr and memory_report tell their sizes from the
geometry alone, and an oversized build is refused naming its estimate."""

import re

import numpy as np
import pytest
import torch
from graph_models import ResNet, randomize_batch_norm
from torch import nn

import toeplitz_conv as tc
from toeplitz_conv.network import faithful
from toeplitz_conv.network.layers import Affine, Conv, Reshape


pytestmark = pytest.mark.usefixtures("float64")  # torch tensors default to float64 here


def small_model():
    torch.manual_seed(0)
    return randomize_batch_norm(nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(4), nn.ReLU(),
        nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1), nn.AvgPool2d(2),
        nn.Conv2d(3, 4, 3, groups=1, dilation=2, padding=2), nn.Flatten(), nn.Linear(4 * 12 * 12, 5))).double().eval()


def built(net):
    return [layer.node for layer in net.layers if isinstance(layer, Affine) and layer._cache is not None]


def test_compile_leaves_a_large_convolution_unbuilt():
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 4, 3, padding=1)).double()
    net = tc.compile(model, (16, 128, 128))
    conv = net.layers[0]
    assert isinstance(conv, Conv) and conv._cache is None and not conv.built
    nnz, nbytes, exact = conv.matrix_size()
    assert exact and nnz == tc.pattern.estimate_nnz(conv.geometry) == 16 * 16 * (3 * 128 - 2) ** 2  # taps reading input, per axis
    assert nbytes > faithful.CHECK_MATRIX_BYTES  # so its check against torch ran matrix-free
    assert built(net) == []
    assert "(not built)" in repr(net) and built(net) == []  # repr builds nothing


def test_compile_builds_nothing_and_forward_builds_and_keeps():
    net = tc.compile(small_model(), (2, 12, 12))
    assert built(net) == []
    x = torch.randn(3, 2, 12, 12)
    net.forward(x)
    affine = [layer for layer in net.layers if isinstance(layer, Affine)]
    assert all(layer.built != isinstance(layer, Reshape) for layer in affine)
    kept = [layer._cache for layer in affine]
    net.forward(x)
    assert all(a is b for a, b in zip(kept, [layer._cache for layer in affine]))  # kept, not rebuilt


def test_release_drops_the_matrices_and_rebuilds_equal_values():
    model = small_model()
    net = tc.compile(model, (2, 12, 12))
    x = torch.randn(3, 2, 12, 12)
    y = net.forward(x)
    dense = {layer.node: layer.matrix.toarray() for layer in net.layers if layer.linear}
    grads, dx = net.backward(np.ones_like(y))
    net.release()
    assert built(net) == []
    assert "(not built)" in repr(net)
    for layer in net.layers:
        if layer.linear:
            assert np.array_equal(layer.matrix.toarray(), dense[layer.node])
    net.release()
    np.testing.assert_array_equal(net.forward(x), y)
    grads2, dx2 = net.backward(np.ones_like(y))
    np.testing.assert_array_equal(dx2, dx)
    assert all(np.array_equal(grads[k], grads2[k]) for k in grads)
    np.testing.assert_allclose(y, model(x).detach().numpy(), atol=1e-10)


def test_update_invalidates_the_built_matrices():
    model = small_model()
    net = tc.compile(model, (2, 12, 12))
    x = torch.randn(2, 2, 12, 12)
    net.forward(x)
    conv = net.layers[0]
    old = conv.matrix.toarray()
    new_weight = np.random.default_rng(1).standard_normal(conv.weight.shape)
    net.update({"0.weight": new_weight})
    assert not conv.built and net.layers[3].built  # only the changed layer is dropped
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(new_weight))
    np.testing.assert_allclose(net.forward(x), model(x).detach().numpy(), atol=1e-10)
    assert not np.allclose(conv.matrix.toarray(), old)
    np.testing.assert_array_equal(conv.matrix.toarray(), tc.conv_matrix(new_weight, (2, 12, 12), padding=1,
                                                                         padding_mode="reflect").toarray())


def test_repr_tells_sizes_without_building():
    net = tc.compile(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular")).double(),
                     (1, 6, 6))
    text = repr(net)
    assert "matrix 32 x 36, nnz 288 (not built)" in text
    assert "matrix 32 x 32, nnz <= 576 (not built)" in text  # circular: taps may share a column
    assert built(net) == []
    net.forward(np.zeros((1, 1, 6, 6)))
    text = repr(net)
    assert "matrix 32 x 36, nnz 288\n" in text and "not built" not in text
    assert f"matrix 32 x 32, nnz {net.layers[1].matrix.nnz}" in text


def test_memory_report_estimates_every_matrix_before_building():
    net = tc.compile(randomize_batch_norm(ResNet()).double().eval(), (3, 8, 8))
    report = net.memory_report()
    assert built(net) == []
    estimates = {r.node: r.size for r in report}
    net.forward(torch.randn(1, 3, 8, 8))
    after = {r.node: r.size for r in net.memory_report()}
    for layer in net.layers:
        if isinstance(layer, Affine) and not isinstance(layer, Reshape):  # a reshape's forward reads none
            est, real = estimates[layer.node], after[layer.node]
            assert real.built and real.shape == est.shape == layer.matrix.shape
            assert real.nnz == layer.matrix.nnz and real.nbytes == (
                layer.matrix.data.nbytes + layer.matrix.indices.nbytes + layer.matrix.indptr.nbytes)
            assert (est.nnz == real.nnz and est.nbytes == real.nbytes) if est.exact else est.nnz >= real.nnz
    assert report.built < report.total == sum(r.size.nbytes for r in report)
    lines = str(report).splitlines()
    assert "nnz" in lines[0] and "built" in lines[0] and lines[-1].startswith("total")


def test_an_oversized_build_is_refused_naming_its_estimate():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU()).double()
    tc.set_memory_limit(1_500_000)  # the index table (864 KiB) fits, the matrix does not
    try:
        net = tc.compile(model, (4, 32, 32))  # checked matrix-free: nothing is built
        nnz = net.memory_report()[0].size.nnz
        with pytest.raises(ValueError, match=r"conv_matrix would need about [\d.]+ MiB \(" + re.escape(f"{nnz:,}")
                           + r" nonzeros, shape 8,192 x 4,096\), more than the limit of 1.4 MiB"):
            net.forward(np.zeros((1, 4, 32, 32)))
    finally:
        tc.set_memory_limit(None)
    assert net.forward(np.zeros((1, 4, 32, 32))).shape == (1, 8, 32, 32)


@pytest.mark.parametrize("layer,shape", [
    (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, padding_mode="replicate"), (4, 9, 8)),
    (nn.Conv1d(2, 3, 4, padding=3, dilation=2, padding_mode="circular"), (2, 11)),
    (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), (4, 5, 4)),
    (nn.ConvTranspose3d(2, 1, 2, stride=2, dilation=2), (2, 3, 3, 2)),
    (nn.Linear(5, 3), (4, 5)),
    (randomize_batch_norm(nn.Sequential(nn.BatchNorm2d(3))).eval(), (3, 4, 4)),
    (nn.AvgPool2d(3, stride=2, padding=1), (2, 5, 5)),
], ids=["conv2d-groups-replicate", "conv1d-circular", "conv-transpose2d", "conv-transpose3d", "linear",
        "batch-norm", "avg-pool"])
def test_matrix_free_check_and_operator_equal_the_matrix(monkeypatch, layer, shape):
    """With every node checked matrix-free, compile still compares each with torch; the
    operator is the matrix, forward and adjoint."""
    monkeypatch.setattr(faithful, "CHECK_MATRIX_BYTES", 0)
    torch.manual_seed(0)
    net = tc.compile(layer.double(), shape)
    node = net.layers[0]
    assert built(net) == []
    A = node.operator()
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((A.shape[1], 3)), rng.standard_normal((A.shape[0], 3))
    np.testing.assert_allclose(A @ u, node.matrix @ u, atol=1e-12)
    np.testing.assert_allclose(A.H @ v, node.matrix.T @ v, atol=1e-12)
    np.testing.assert_allclose(node.forward_free(u), node.forward(u), atol=1e-12)
