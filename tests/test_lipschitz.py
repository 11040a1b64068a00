"""Norms and Lipschitz constants of compiled networks: the bound is never below the exact
``||J(x)||_2`` from ``torch.func.jacrev`` (chains, residual sums, concatenations, pooling),
is exact for one layer, tightens when linear layers merge, and is refused where no global
constant exists. The dot test on every operator the library produces."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from graph_models import DnCNN, ResNet, SEBlock, UNet, Volume3d, randomize_batch_norm
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn

import toeplitz_conv as tc
from toeplitz_conv.network.activations import ACTIVATIONS, elu, hardtanh, leaky_relu, softplus
from toeplitz_conv.network.analysis.lipschitz import matrix_norm
from toeplitz_conv.network.layers import Affine, Reshape
from toeplitz_conv.network.nodes import Combine, Product


pytestmark = pytest.mark.usefixtures("float64")  # torch tensors default to float64 here


def jacobian_norm(model, x):
    J = torch.func.jacrev(lambda v: model(v[None])[0])(x).reshape(-1, x.numel())
    return float(torch.linalg.matrix_norm(J.detach(), 2))


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 2, 1)
        self.head = nn.Conv2d(5, 2, 3, stride=2, padding=1, padding_mode="reflect")

    def forward(self, x):
        return self.head(torch.cat([F.gelu(self.a(x)), torch.tanh(self.b(x))], dim=1))


MODELS = {
    "chain": (lambda: nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.MaxPool2d(3, stride=1), nn.Conv2d(4, 3, 3),
                                    nn.SiLU(), nn.Flatten(), nn.Linear(3 * 2 * 2, 5), nn.Softmax(dim=1)), (2, 8, 8)),
    "resnet": (lambda: randomize_batch_norm(ResNet()), (3, 8, 8)),
    "dncnn": (DnCNN, (1, 8, 8)),
    "unet": (UNet, (1, 8, 8)),
    "concat": (Concat, (2, 6, 6)),
    "volume": (Volume3d, (1, 4, 4, 4)),
}


@pytest.mark.parametrize("name", MODELS)
def test_bound_is_never_below_the_exact_local_constant(name):
    make, shape = MODELS[name]
    torch.manual_seed(0)
    model = make().double().eval()
    net = tc.compile(model, shape)
    bound = net.lipschitz_bound()
    for scale in (0.1, 1.0, 10.0):
        for _ in range(4):
            x = scale * torch.randn(*shape)
            exact = jacobian_norm(model, x)
            local = net.local_lipschitz(x)
            assert abs(local - exact) <= 1e-8 * max(exact, 1e-12)
            assert bound >= exact * (1 - 1e-12)


# --------------------------------------------------------------------------- against the explicit matrices


def explicit_norm(M):
    """The norm as it was computed from each layer's explicit CSR matrix: dense SVD up to 2**18
    entries, else ARPACK on M^T M (or M M^T) to 1e-10, rounded up by it."""
    m, n = M.shape
    if m * n <= 2**18:
        return float(np.linalg.norm(M.toarray(), 2))
    M = sp.csr_array(M)
    MT = sp.csr_array(M.T)
    k = min(m, n)
    op = LinearOperator((k, k), dtype=M.dtype,
                        matvec=(lambda x: MT @ (M @ x)) if n <= m else (lambda x: M @ (MT @ x)))
    lam = eigsh(op, k=1, which="LA", tol=1e-10, v0=np.random.default_rng(0).standard_normal(k),
                ncv=min(k, 24), return_eigenvectors=False)[0]
    return float(np.sqrt(max(lam, 0.0) * (1 + 2e-10)))


def explicit_bound(net):
    """The slow exact reference: every layer's matrix built, runs of linear nodes multiplied
    into one sparse matrix, the bound composed along the graph as lipschitz.py describes."""
    layers = net.layers
    readers = [0] * (len(layers) + 1)
    for layer in layers:
        for p in layer.inputs:
            readers[p] += 1
    bound, chain = {0: 1.0}, {}

    def at(p):
        if p not in bound:
            M, q = chain.pop(p)
            bound[p] = explicit_norm(M) * at(q)
        return bound[p]

    for i, layer in enumerate(layers):
        p = i + 1
        assert not isinstance(layer, Product)
        if layer.linear and not isinstance(layer, Combine):
            r, W = layer.inputs[0], layer.matrix
            if r in chain and readers[r] == 1 and r != net.output:
                M, q = chain.pop(r)
                chain[p] = ((W @ M).tocsr(), q)
            else:
                chain[p] = (W, r)
        elif isinstance(layer, Combine):
            L = [at(q) for q in layer.inputs]
            bound[p] = min(sum(explicit_norm(W) * l for W, l in zip(layer.matrices, L)),
                           explicit_norm(layer.matrix) * float(np.sqrt(sum(l * l for l in L))))
        else:
            bound[p] = net.layer_norms()[i].constant * at(layer.inputs[0])
    return float(at(net.output))


BIG = {  # past the dense limit: Lanczos on the matrix-free operators
    "conv-bn-conv": (lambda: randomize_batch_norm(nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 3, 3, stride=2, padding=1,
                                                                    padding_mode="circular"),
        nn.ReLU(), nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1))), (2, 24, 24)),
    "resnet": (lambda: randomize_batch_norm(ResNet()), (3, 24, 24)),
}


@pytest.mark.parametrize("name", [*MODELS, *BIG])
def test_bound_and_norms_equal_the_explicit_matrix_computation(name):
    make, shape = {**MODELS, **BIG}[name]
    torch.manual_seed(0)
    model = make().double().eval()
    if name == "chain":
        model = model[:-1]  # the bound composes through softmax too; its constant is checked below
    net = tc.compile(model, shape)
    bound = net.lipschitz_bound("product")
    norms = net.layer_norms()
    assert not any(layer._cache is not None for layer in net.layers if isinstance(layer, Affine))  # none built
    ref = explicit_bound(net)
    assert abs(bound - ref) <= 1e-9 * ref
    for row, layer in zip(norms, net.layers):
        if layer.linear and not isinstance(layer, Reshape):
            exact = explicit_norm(layer.matrix)
            assert abs(row.constant - exact) <= 1e-9 * exact, row
    net.release()


def test_norms_leave_built_matrices_built():
    net = tc.compile(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3)).double(), (1, 8, 8))
    net.forward(np.zeros((1, 1, 8, 8)))
    kept = [layer._cache for layer in net.layers if isinstance(layer, Affine)]
    net.lipschitz_bound()
    net.layer_norms()
    assert all(a is b for a, b in zip([layer._cache for layer in net.layers if isinstance(layer, Affine)], kept))


@pytest.mark.parametrize("layer,shape", [
    (nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="reflect"), (3, 9, 8)),
    (nn.Conv1d(2, 5, 4, padding=2, dilation=2), (2, 30)),
    (nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1), (3, 5, 5)),
    (nn.Linear(7, 4), (7,)),
])
def test_bound_is_exact_for_one_linear_layer(layer, shape):
    net = tc.compile(layer.double(), shape)
    exact = np.linalg.norm(net.layers[0].matrix.toarray(), 2)
    assert abs(net.lipschitz_bound() - exact) <= 1e-9 * exact


def test_consecutive_linear_layers_merge_before_the_norm():
    """conv -> batch norm -> conv with no activation between: the norm of the composed map,
    not the product of three norms."""
    model = randomize_batch_norm(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3),
                                               nn.Conv2d(3, 2, 3, padding=1))).double()
    net = tc.compile(model, (2, 6, 6))
    M, _ = net.linear_map()
    exact = np.linalg.norm(M.toarray(), 2)
    product = np.prod([r.constant for r in net.layer_norms()])
    assert abs(net.lipschitz_bound() - exact) <= 1e-9 * exact
    assert exact < product


def test_large_norms_by_lanczos_match_the_dense_svd():
    w = np.random.default_rng(0).standard_normal((4, 4, 3, 3))
    C = tc.conv_matrix(w, (4, 40, 40), padding=1)
    assert C.shape[0] * C.shape[1] > 2**22  # past the dense limit
    ref = tc.operator_norm(w, (4, 40, 40), padding=1, tol=1e-13)
    assert ref <= matrix_norm(C) <= ref * (1 + 1e-8)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x)) + x


def test_float32_networks_get_float64_norms_and_bounds():
    """A float32 network's norms are those of its float32 entries, computed in float64: the
    residual sum's [I | I] (every singular value sqrt 2) past the dense limit made ARPACK in
    single precision fail (error 3), and single precision cannot reach the 1e-10 tolerance."""
    torch.manual_seed(0)
    model = _Residual().float().eval()  # the tests' default dtype is float64
    net32, net64 = tc.compile(model, (2, 24, 24)), tc.compile(model.double(), (2, 24, 24))
    assert net32.dtype == np.float32 and net32.layers[-1].matrix.shape[0] * net32.layers[-1].matrix.shape[1] > 2**18
    rows32, rows64 = net32.layer_norms(), net64.layer_norms()
    assert rows32[-1].constant == pytest.approx(np.sqrt(2), rel=1e-9)
    for a, b in zip(rows32, rows64):
        assert a.constant == pytest.approx(b.constant, rel=1e-9), (a, b)
    for method in ("product", "windowed"):
        assert float(net32.lipschitz_bound(method)) == pytest.approx(float(net64.lipschitz_bound(method)), rel=1e-9)
    M = sp.hstack([sp.eye(1000), sp.eye(1000)]).astype(np.float32)
    assert matrix_norm(M) == pytest.approx(np.sqrt(2), rel=1e-9)



def test_float32_batch_norm_bound_is_that_of_the_real_map():
    """Batch norm's scale gamma / sqrt(var + eps) is derived: rounded in float32 it moved a
    linear network's bound (exact for linear networks) by ~1e-8, below the norm of the map the
    float32 parameters define. The bound is now of that map, to rounding."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 2, 1, bias=False)).float().eval()
    with torch.no_grad():
        model[0].running_var.uniform_(0.3, 3.0)
        model[0].weight.uniform_(-2.0, 2.0)
    net = tc.compile(model, (3, 5, 5))
    exact = copy.deepcopy(model).double()  # the same parameters; the scale in float64
    J = torch.func.jacrev(lambda v: exact(v[None])[0])(torch.zeros(3, 5, 5)).reshape(50, 75).detach().numpy()
    norm = np.linalg.norm(J, 2)
    for method in ("windowed", "lipsdp"):  # both exact for a linear chain
        assert float(net.lipschitz_bound(method)) == pytest.approx(norm, rel=1e-13), method
    assert float(net.lipschitz_bound("product")) >= norm * (1 - 1e-13)


class _Pooled(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how, self.conv = how, nn.Conv2d(2, 2, 3, bias=False)
        self.pool = nn.AvgPool2d(5, stride=2) if how == "module" else nn.AdaptiveAvgPool2d(3)

    def forward(self, x):
        y = self.conv(x)
        if self.how == "functional":
            return F.avg_pool2d(y, 5, stride=2)
        return F.adaptive_avg_pool2d(y, 3) if self.how == "adaptive" else self.pool(y)


@pytest.mark.parametrize("how", ["module", "functional", "adaptive", "adaptive-module"])
def test_float32_average_pooling_bound_is_that_of_the_real_map(how):
    """Average pooling's weights 1 / k round in float32 (1/25 rounds down by 2e-8): the bound
    reads the matrix made in float64 from its formula, so it is the real map's, to rounding."""
    torch.manual_seed(1)
    model = _Pooled(how).float().eval()
    net = tc.compile(model, (2, 13, 13))
    exact = copy.deepcopy(model).double()
    J = torch.func.jacrev(lambda v: exact(v[None])[0])(torch.zeros(2, 13, 13)).reshape(-1, 338).detach().numpy()
    norm = np.linalg.norm(J, 2)
    for method in ("windowed", "lipsdp"):  # both exact for a linear chain
        assert float(net.lipschitz_bound(method)) == pytest.approx(norm, rel=1e-13), method
    assert net.layer_norms()[-1].constant * net.layer_norms()[0].constant >= norm * (1 - 1e-13)

def test_layer_norms_table():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.LeakyReLU(-1.5), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(8, 3), nn.LogSoftmax(dim=1)).double()
    net = tc.compile(model, (1, 6, 6))
    rows = net.layer_norms()
    assert [r.kind for r in rows] == ["Conv2d", "LeakyReLU", "AvgPool2d", "Flatten", "Linear", "LogSoftmax"]
    assert rows[1].constant == 1.5 and rows[3].constant == 1.0
    assert rows[5].constant == pytest.approx(1 + np.sqrt(3))
    assert abs(rows[0].constant - np.linalg.norm(net.layers[0].matrix.toarray(), 2)) < 1e-12
    text = str(rows)
    assert "node" in text.splitlines()[0] and "LeakyReLU" in text and "sup |sigma'|" in text
    # numbered and named as print(net) numbers and names the nodes: [0] 0: Conv2d ...
    assert text.splitlines()[1].split()[:3] == ["[0]", "0", "Conv2d"], text
    assert "[1] 1: LeakyReLU" in repr(net) and text.splitlines()[2].split()[:3] == ["[1]", "1", "LeakyReLU"]
    assert str(net.memory_report()).splitlines()[1].split()[:3] == ["[0]", "0", "Conv2d"]


def test_overlapping_max_pooling_counts_its_windows():
    net = tc.compile(nn.Sequential(nn.MaxPool2d(3, stride=1)), (1, 6, 6))
    assert net.layers[0].windows == 9 and net.layer_norms()[0].constant == 3.0
    net = tc.compile(nn.Sequential(nn.AdaptiveMaxPool2d(4)), (1, 6, 6))
    assert net.layers[0].windows == 4  # adaptive windows of 2 with stride 1.5: each row in up to 2


def test_product_of_two_inputs_is_refused_by_name():
    net = tc.compile(SEBlock().double(), (2, 5, 5))
    with pytest.raises(ValueError, match=r"the network's Lipschitz constant is not bounded here: node 7 \('mul', \*\) multiplies two "
                                         r"tensors that both depend on the input"):
        net.lipschitz_bound()
    assert any(r.constant is None for r in net.layer_norms())


@pytest.mark.parametrize("name,fn,torch_fn", [
    *[(n, ACTIVATIONS[n], f) for n, f in [
        ("relu", F.relu), ("relu6", F.relu6), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
        ("gelu", F.gelu), ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")), ("silu", F.silu),
        ("mish", F.mish), ("hardswish", F.hardswish)]],
    ("leaky", leaky_relu(-1.3), lambda x: F.leaky_relu(x, -1.3)),
    ("hardtanh", hardtanh(-0.5, 2.0), lambda x: F.hardtanh(x, -0.5, 2.0)),
    ("elu", elu(1.7), lambda x: F.elu(x, 1.7)), ("softplus", softplus(2.0, 5.0), lambda x: F.softplus(x, 2.0, 5.0)),
])
def test_activation_constants_bound_the_derivative_tightly(name, fn, torch_fn):
    x = torch.linspace(-12, 12, 2_400_001, requires_grad=True)
    (d,) = torch.autograd.grad(torch_fn(x).sum(), x)
    sup = float(d.abs().max())
    assert sup <= fn.lipschitz <= sup + 2e-5


# --------------------------------------------------------------------------- the dot test, everywhere


def _operators():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 3, 3))
    for mode in ("zeros", "reflect", "replicate", "circular"):
        yield f"conv_matrix-{mode}", tc.conv_matrix(w, (2, 7, 6), stride=2, padding=1, padding_mode=mode)
        yield f"conv_operator-{mode}", tc.conv_operator(w, (2, 7, 6), stride=2, padding=1, padding_mode=mode)
    yield "conv_transpose_matrix", tc.conv_transpose_matrix(rng.standard_normal((2, 3, 3, 3)), (2, 4, 4), stride=2,
                                                            output_padding=1)
    yield "avg_pool_matrix", tc.avg_pool_matrix((2, 7, 7), 3, stride=2, padding=1)
    yield "adaptive_avg_pool_matrix", tc.adaptive_avg_pool_matrix((2, 7, 5), (3, 2))
    yield "max_pool_matrix", tc.max_pool_matrix(rng.standard_normal((2, 6, 6)), 2)
    torch.manual_seed(0)
    for name, (make, shape) in MODELS.items():
        net = tc.compile(make().double().eval(), shape)
        for layer in net.layers:
            if layer.linear:  # each node's forward with its own backward, as one operator
                sizes = [int(np.prod(s)) for s in layer.in_shapes]
                splits = np.cumsum(sizes)[:-1]
                out = int(np.prod(layer.out_shape))
                bias = layer.bias if layer.bias is not None else 0

                def mv(u, layer=layer, splits=splits, bias=bias):
                    return layer.run([p[:, None] for p in np.split(np.ravel(u), splits)])[:, 0] - bias

                def rmv(v, layer=layer, sizes=sizes):
                    d, _ = layer.back(np.ravel(v)[:, None], [np.zeros((n, 1)) for n in sizes], None)
                    return np.concatenate([g[:, 0] for g in d])

                yield f"{name}:{layer.node}", LinearOperator((out, sum(sizes)), matvec=mv, rmatvec=rmv,
                                                             dtype=np.float64)
        x = torch.randn(*shape)
        yield f"{name}:jacobian", net.jacobian(x)


@pytest.mark.parametrize("name,A", list(_operators()), ids=lambda v: v if isinstance(v, str) else "")
def test_dot_test_on_every_operator(name, A):
    assert tc.dot_test(A) < 1e-12
