"""The Lipschitz certificates ('product', 'windowed', 'lipsdp', 'auto'): each is an upper bound
(above the exact constant where it can be enumerated, above the empirical one on random
networks), the windowed bound is never above the product, LipSDP on the sparse matrices
equals a dense textbook formulation, and every refusal names its reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import toeplitz_conv as tc
from toeplitz_conv.network.activations import ACTIVATIONS, celu, elu, leaky_relu, prelu, softplus
from toeplitz_conv.network.analysis import bounds, certify, lipsdp


def _trained_like_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Batch-norm statistics as after training: running variance in [0.5, 2], mean ~ N(0, 0.01),
    gamma in [0.5, 1.5] (float64; benchmarks/bench_lipschitz.py uses it too)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) * 1.5 + 0.5)
            m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64) * 0.1)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g, dtype=torch.float64) + 0.5)
    return model


def _net(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> tc.Network:
    return tc.compile(_trained_like_bn(model.double().eval(), seed), shape)


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))


def _models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    torch.manual_seed(1)
    return {
        "cnn": (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(),
                              nn.Linear(64, 10)), (1, 8, 8)),
        "resnet": (nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), Block(4), Block(4), nn.Flatten(),
                                 nn.Linear(4 * 6 * 6, 5)), (2, 6, 6)),
        "mlp-smooth": (nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.GELU(),
                                     nn.Linear(16, 16), nn.SiLU(), nn.Linear(16, 3)), (5,)),
        "leaky-pool": (nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.LeakyReLU(0.2), nn.MaxPool2d(2),
                                     nn.Conv2d(3, 3, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(3, 2)), (1, 6, 6)),
        "concat": (nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), (4,)),
    }


def _empirical(net: tc.Network, n: int = 30, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    return max(net.local_lipschitz(rng.standard_normal(net.input_shape)) for _ in range(n))


@pytest.mark.parametrize("name", list(_models()))
def test_every_method_is_above_the_empirical_constant_and_windowed_below_the_product(name: str) -> None:
    model, shape = _models()[name]
    net = _net(model, shape)
    emp = _empirical(net)
    product = net.lipschitz_bound("product")
    windowed = net.lipschitz_bound("windowed")
    assert emp <= windowed * (1 + 1e-9)
    assert windowed <= product * (1 + 1e-9)
    for w in (0, 1, 3):
        assert emp <= net.lipschitz_bound("windowed", window=w) * (1 + 1e-9) <= product * (1 + 2e-9)
    assert net.lipschitz_bound("windowed", window=0) == pytest.approx(float(product), rel=1e-5)
    if name in ("cnn", "mlp-smooth", "resnet"):  # expansion has something to keep together
        assert windowed < 0.95 * product


def _two_layer_exact(W1: np.ndarray, b1: np.ndarray, W2: np.ndarray) -> float:
    """The exact Lipschitz constant of x -> W2 relu(W1 x + b1) for scalar x: the largest
    ||W2 D W1|| over the intervals between the breakpoints -b1 / W1."""
    br = np.sort(-b1 / W1[:, 0])
    mids = np.concatenate([[br[0] - 1], (br[:-1] + br[1:]) / 2, [br[-1] + 1]])
    return max(float(np.linalg.norm(W2 @ (((W1[:, 0] * x + b1) > 0)[:, None] * W1))) for x in mids)


@pytest.mark.parametrize("seed", range(8))
def test_above_the_exact_constant_of_one_dimensional_two_layer_nets(seed: int) -> None:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(1, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    W1, b1 = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    exact = _two_layer_exact(W1, b1, model[2].weight.detach().numpy())
    net = tc.compile(model, (1,))
    for method in ("product", "windowed", "auto"):
        assert net.lipschitz_bound(method) >= exact * (1 - 1e-9), method
    if lipsdp.available():
        assert net.lipschitz_bound("lipsdp") >= exact * (1 - 1e-9)


def test_the_averaged_bound_of_two_layers_is_combettes_pesquets() -> None:
    """W2 relu(W1 x): windowed = 1/2 ||W2 W1|| + 1/2 ||W2|| ||W1||, computed by hand."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 9, bias=False), nn.ReLU(), nn.Linear(9, 4, bias=False)).double()
    W1, W2 = model[0].weight.detach().numpy(), model[2].weight.detach().numpy()
    expected = 0.5 * np.linalg.norm(W2 @ W1, 2) + 0.5 * np.linalg.norm(W2, 2) * np.linalg.norm(W1, 2)
    net = tc.compile(model, (6,))
    assert net.lipschitz_bound("windowed") == pytest.approx(expected, rel=1e-9)
    assert net.lipschitz_bound("product") == pytest.approx(np.linalg.norm(W2, 2) * np.linalg.norm(W1, 2), rel=1e-9)


def test_inside_a_residual_block_the_identity_is_kept_with_the_averaged_branch() -> None:
    """relu(x + W2 relu(W1 x)): ||I + 1/2 W2 W1|| + 1/2 ||W2|| ||W1|| (the last ReLU: 1)."""
    torch.manual_seed(4)

    class Res(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(5, 5, bias=False), nn.Linear(5, 5, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x + self.b(torch.relu(self.a(x))))

    model = Res().double()
    W1, W2 = model.a.weight.detach().numpy(), model.b.weight.detach().numpy()
    n1, n2 = np.linalg.norm(W1, 2), np.linalg.norm(W2, 2)
    expected = min(np.linalg.norm(np.eye(5) + 0.5 * W2 @ W1, 2) + 0.5 * n1 * n2, 1 + n1 * n2)
    net = tc.compile(model, (5,))
    assert net.lipschitz_bound("windowed") == pytest.approx(expected, rel=1e-9)
    assert net.lipschitz_bound("product") == pytest.approx(1 + n1 * n2, rel=1e-9)


def test_secant_slopes_of_every_activation_lie_in_its_range() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 200000, 1)) * np.array([[[1.0]], [[6.0]]])
    functions = dict(ACTIVATIONS) | {"leaky": leaky_relu(0.1), "elu": elu(1.3), "elu-": elu(-0.5),
                                     "softplus": softplus(), "celu": celu(0.7),
                                     "prelu": prelu(np.array([[-0.3]]))}
    for name, fn in functions.items():
        s = (fn.forward(a) - fn.forward(b)) / (a - b)
        lo, hi = fn.slope_range
        assert lo - 1e-9 <= s.min() and s.max() <= hi + 1e-9, name
        assert max(abs(lo), abs(hi)) <= fn.lipschitz + 1e-12, name


def test_auto_says_which_method_ran_and_why() -> None:
    model, shape = _models()["resnet"]
    b = _net(model, shape).lipschitz_bound()
    assert b.method == "windowed" and "not a chain" in b.why and b.seconds >= 0
    assert isinstance(b, float)


def test_refusals_name_the_argument_and_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    model, shape = _models()["resnet"]
    net = _net(model, shape)
    with pytest.raises(ValueError, match="method must be one of .*'windowed'.*got 'sdp'"):
        net.lipschitz_bound("sdp")
    with pytest.raises(ValueError, match="window must be an integer >= 0.*got -1"):
        net.lipschitz_bound("windowed", window=-1)
    pooled = _net(*_models()["leaky-pool"])
    monkeypatch.setattr(lipsdp, "available", lambda: False)
    with pytest.raises(ImportError, match=r"toeplitz-conv\[bounds\]"):
        pooled.lipschitz_bound("lipsdp")
    monkeypatch.undo()
    if not lipsdp.available():
        pytest.skip("cvxpy is not installed (pip install 'toeplitz-conv[bounds]')")
    with pytest.raises(ValueError, match=r"chain .* reads 2 inputs; use method='windowed'"):
        net.lipschitz_bound("lipsdp")
    with pytest.raises(ValueError, match="node .* is MaxPool2d; use method=.windowed."):
        pooled.lipschitz_bound("lipsdp")
    cnn = _net(*_models()["cnn"])
    monkeypatch.setattr(lipsdp, "MAX_SIZE", 100)
    with pytest.raises(ValueError, match=r"N x N with N = 272 .* over the limit 100: about .* GiB"):
        cnn.lipschitz_bound("lipsdp")


def test_a_product_of_two_inputs_is_refused_by_every_method() -> None:
    class Square(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x) * x

    net = tc.compile(Square().double(), (3,))
    for method in ("product", "windowed", "auto"):
        with pytest.raises(ValueError, match="multiplies two tensors that both depend on the input"):
            net.lipschitz_bound(method)


# ------------------------------------------------------------------ LipSDP
def _dense_lipsdp(weights: list[np.ndarray], slopes: list[tuple[float, float]], **solve: object) -> float:
    """LipSDP-Neuron as written in the paper, dense: min rho s.t. M(rho, T) <= 0 (``solve``:
    cvxpy's solver and its settings; Clarabel by default). benchmarks/bench_lipschitz.py times it."""
    cp = pytest.importorskip("cvxpy")
    n0, hidden = weights[0].shape[1], [W.shape[0] for W in weights[:-1]]
    N, H = n0 + sum(hidden), sum(hidden)
    A = np.zeros((H, N))
    r = c = 0
    for W in weights[:-1]:
        A[r:r + W.shape[0], c:c + W.shape[1]] = W
        r, c = r + W.shape[0], c + W.shape[1]
    B = np.hstack([np.zeros((H, n0)), np.eye(H)])
    alpha = np.concatenate([np.full(h, a) for h, (a, _) in zip(hidden, slopes)])
    beta = np.concatenate([np.full(h, b) for h, (_, b) in zip(hidden, slopes)])
    t = cp.Variable(H, nonneg=True)
    rho = cp.Variable(nonneg=True)
    T = cp.diag(t)
    Q = cp.bmat([[cp.diag(cp.multiply(-2 * alpha * beta, t)), cp.diag(cp.multiply(alpha + beta, t))],
                 [cp.diag(cp.multiply(alpha + beta, t)), -2 * T]])
    AB = np.vstack([A, B])
    WL = weights[-1]
    last = np.zeros((N, N))
    last[N - WL.shape[1]:, N - WL.shape[1]:] = WL.T @ WL
    E = np.diag(np.r_[np.ones(n0), np.zeros(N - n0)])
    M = AB.T @ Q @ AB + last - rho * E
    cp.Problem(cp.Minimize(rho), [-(M + M.T) / 2 >> 0]).solve(**(solve or {"solver": cp.CLARABEL}))
    return float(np.sqrt(rho.value))


def _dense_weights_of(model: nn.Sequential, shape: tuple[int, ...]) -> list[np.ndarray]:
    """Each linear run's dense matrix (between activations) from torch's autograd, not from
    the library's matrices."""
    runs: list[list[nn.Module]] = [[]]
    for m in model:
        if isinstance(m, (nn.ReLU, nn.Tanh, nn.Sigmoid)):
            runs.append([])
        else:
            runs[-1].append(m)
    out, size = [], (1, *shape)
    for run in runs:
        f = nn.Sequential(*run)
        x0 = torch.zeros(size, dtype=torch.float64)
        J = torch.autograd.functional.jacobian(lambda z: f(z).reshape(-1), x0).reshape(-1, x0.numel())
        out.append(J.numpy())
        size = (1, *f(x0).shape[1:])
    return out


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh])
def test_lipsdp_on_the_sparse_matrices_equals_the_dense_formulation(act: type[nn.Module]) -> None:
    pytest.importorskip("cvxpy")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), act(), nn.Conv2d(2, 2, 2), act(), nn.Flatten(),
                          nn.Linear(8, 3)).double().eval()
    net = tc.compile(model, (1, 5, 5))
    ours = net.lipschitz_bound("lipsdp")
    slope = (0.0, 1.0)
    reference = _dense_lipsdp(_dense_weights_of(model, (1, 5, 5)), [slope, slope])
    assert ours == pytest.approx(reference, rel=1e-3)
    emp = _empirical(net)
    assert emp <= ours * (1 + 1e-9) <= net.lipschitz_bound("windowed") * (1 + 1e-6)
    assert net.lipschitz_bound("lipsdp-layer") >= ours * (1 - 1e-6)
    auto = net.lipschitz_bound()
    assert auto.method == "lipsdp" and auto == pytest.approx(float(ours), rel=1e-6)


def test_lipsdp_certificate_is_verified_not_trusted() -> None:
    """Multipliers that do not satisfy the inequality give no certificate (inf); the solver's
    give one no smaller than the exact two-layer constant."""
    pytest.importorskip("cvxpy")
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(1, 6), nn.ReLU(), nn.Linear(6, 2)).double()
    net = tc.compile(model, (1,))
    chain = lipsdp.chain_of(net)
    assert lipsdp.certify(chain, np.zeros(6)) == float("inf")
    bound, t = lipsdp.solve(chain)
    assert lipsdp.certify(chain, t) == pytest.approx(bound)
    exact = _two_layer_exact(model[0].weight.detach().numpy(), model[0].bias.detach().numpy(),
                             model[2].weight.detach().numpy())
    assert bound >= exact * (1 - 1e-9)


# ------------------------------------------------------------------ the report
def test_the_report_shows_each_bound_beside_the_empirical_one() -> None:
    model, shape = _models()["resnet"]
    net = _net(model, shape)
    x = np.random.default_rng(0).standard_normal((2, *shape))
    report = tc.lipschitz_report(net, x, steps=2)
    text = str(report)
    assert "product" in text and "windowed" in text and "empirical" in text
    lipsdp_row = [r for r in report.rows if r.method == "lipsdp"][0]
    assert lipsdp_row.bound is None and "chain" in lipsdp_row.note
    assert 0 < report.lower <= report.certified and report.gap >= 1
    assert report.lower >= max(net.local_lipschitz(s) for s in x) * (1 - 1e-12)  # ascent never loses
    assert report.certified == pytest.approx(float(net.lipschitz_bound("windowed")), rel=1e-9)
    with pytest.raises(ValueError, match=r"x_samples must have shape \(N, 2, 6, 6\)"):
        tc.lipschitz_report(net, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="method must be one of"):
        tc.lipschitz_report(net, x, methods=("fast",))


def test_windowed_partition_uses_the_cuts_of_the_graph() -> None:
    model, shape = _models()["resnet"]
    net = _net(model, shape)
    cuts = certify.Windowed(net).cuts()
    assert cuts[0] == 0 and cuts[-1] == net.output
    for p in cuts:  # nothing after a cut reads before it
        assert all(q >= p for layer in net.layers[p:net.output] for q in layer.inputs)
    assert bounds.sdp_size(net) is None


@pytest.mark.parametrize("conv, shape", [
    (nn.Conv2d(3, 5, 3, stride=2, padding=1), (3, 9, 8)),
    (nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(2, 1), dilation=2, groups=2), (4, 10, 7)),
    (nn.Conv1d(2, 3, 4, stride=3, padding=2), (2, 11)),
    (nn.Conv3d(2, 2, 3, padding=1), (2, 4, 4, 5)),
    (nn.Conv2d(2, 3, 4, padding="same"), (2, 7, 7)),
])
def test_torchs_convolution_operator_is_the_pattern_tables(conv: nn.Module, shape: tuple[int, ...]) -> None:
    """The windowed bound applies convolutions through torch's kernels: the same map and adjoint."""
    layer = tc.compile(nn.Sequential(conv).double(), shape).layers[0]
    A, B = layer.operator(np.float64), certify.torch_conv(layer)
    assert B is not None
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((A.shape[1], 3)), rng.standard_normal((A.shape[0], 3))
    np.testing.assert_allclose(B @ X, A @ X, atol=1e-13)
    np.testing.assert_allclose(B.H @ Y, A.H @ Y, atol=1e-13)
    np.testing.assert_allclose(B @ X[:, 0], A @ X[:, 0], atol=1e-13)
    circular = tc.compile(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")).double(), (1, 5, 5))
    assert certify.torch_conv(circular.layers[0]) is None  # its pattern table serves it


def test_a_linear_network_gets_its_exact_norm_from_every_method() -> None:
    """No activation: one linear region, normed exactly (a residual sum included: ||I + W||)."""
    torch.manual_seed(5)

    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.a(x)

    model = Skip().double()
    exact = np.linalg.norm(np.eye(4) + model.a.weight.detach().numpy(), 2)
    net = tc.compile(model, (4,))
    assert net.lipschitz_bound() == pytest.approx(exact, rel=1e-9)
    assert net.lipschitz_bound("windowed") == pytest.approx(exact, rel=1e-9)
    assert net.lipschitz_bound("product") >= exact  # 1 + ||W||
    chain = tc.compile(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2)).double(), (3,))
    W = chain.linear_map()[0].toarray()
    for method in ("product", "windowed", "auto") + (("lipsdp",) if lipsdp.available() else ()):
        assert chain.lipschitz_bound(method) == pytest.approx(np.linalg.norm(W, 2), rel=1e-9), method


def test_the_report_skips_a_lipsdp_estimated_too_long_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _net(*_models()["cnn"])
    monkeypatch.setattr(bounds, "REPORT_SDP_S", 1e-3)
    report = tc.lipschitz_report(net, np.zeros((1, 1, 8, 8)), methods=("windowed", "lipsdp"), steps=0)
    row = report.rows[1]
    assert row.bound is None and "skipped: N = 272, an estimated" in row.note
    assert "lipsdp" in str(report) and report.certified == pytest.approx(float(net.lipschitz_bound("windowed")))
