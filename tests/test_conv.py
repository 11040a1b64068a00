"""conv_matrix and its readings against PyTorch in float64.

Every test computes the same thing twice, here and in torch, and compares:

* forward ``C @ x`` vs ``nn.ConvNd`` (every padding mode), input gradient ``C.T @ delta`` vs
  autograd and (zero padding) vs ``F.conv_transposeNd``, ``conv_weight_grad`` vs autograd;
* ``conv_transpose_matrix`` vs ``F.conv_transposeNd`` for every ``output_padding`` torch
  accepts, and its relation to ``conv_matrix(...).T``; ``conv_transpose_weight_grad``;
* ``conv_weight_jacobian`` vs ``torch.func.jacrev``;
* dtypes, index dtypes, formats, canonical CSR, torch inputs, ``ConvPattern`` readings.

See also test_oracle.py (exact, probed column by column) and test_sweep.py (hypothesis).
"""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

import toeplitz_conv as tc
from helpers import MODES, case, options, per_axis
from toeplitz_conv.indexing import index_dtype

TOL = dict(rtol=1e-12, atol=1e-12)

# torch warns that 'same' with an even kernel copies the input; the result is what we test
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def torch_conv(x, w, mode, **kw):
    """torch's convolution with a padding mode, as nn.ConvNd applies it."""
    n = w.ndim - 2
    conv = getattr(torch.nn, f"Conv{n}d")(w.shape[1] * kw.get("groups", 1), w.shape[0], w.shape[2:],
                                          bias=False, padding_mode=mode, **kw).double()
    conv.weight.data = w
    return conv


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("groups", [1, 2])
def test_forward_backward_2d(mode, groups):
    torch.manual_seed(0)
    w = torch.randn(4, 4 // groups, 3, 2, dtype=torch.float64)
    x = torch.randn(3, 4, 7, 6, dtype=torch.float64, requires_grad=True)
    kw = dict(stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=groups)
    conv = torch_conv(x, w, mode, **kw)
    y = conv(x)
    delta = torch.randn_like(y)
    y.backward(delta)
    C = tc.conv_matrix(w, x.shape[1:], padding_mode=mode, **kw)
    X = x.detach().reshape(3, -1).numpy().T
    D = delta.reshape(3, -1).numpy().T
    np.testing.assert_allclose((C @ X).T, y.detach().reshape(3, -1).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((C.T @ D).T, x.grad.reshape(3, -1).numpy(), rtol=1e-12, atol=1e-12)
    dW = tc.conv_weight_grad(x.detach(), delta, w.shape, padding_mode=mode, **kw)
    np.testing.assert_allclose(dW, conv.weight.grad.numpy(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- the grid
#
# weight shape (C_out, C_in/groups, *kernel), one sample's input shape (C_in, *spatial).
# Every case is valid for every padding mode (reflect padding < input, circular <= input).


CASES = [
    case("1d", (3, 2, 3), (2, 11), stride=2, padding=1),
    case("1d-dilation-pad-groups", (2, 2, 3), (4, 9), dilation=3, padding=2, groups=2),
    case("1d-kernel-eq-input", (2, 1, 7), (1, 7)),
    case("2d-1x1", (4, 3, 1, 1), (3, 5, 6)),
    case("2d-1x1-stride", (4, 3, 1, 1), (3, 7, 5), stride=(2, 3)),
    case("2d-kernel-eq-padded-input", (2, 3, 5, 4), (3, 3, 2), padding=1),
    case("2d-kernel-eq-input", (2, 3, 4, 5), (3, 4, 5)),
    case("2d-stride-gt-kernel", (2, 2, 2, 3), (2, 9, 11), stride=(3, 4), padding=(1, 0)),
    case("2d-dilation-pad", (3, 2, 3, 3), (2, 8, 7), dilation=(2, 3), padding=(2, 3)),
    case("2d-depthwise", (4, 1, 3, 3), (4, 6, 6), padding=1, groups=4),
    case("2d-depthwise-multiplier", (6, 1, 3, 2), (3, 5, 6), stride=(1, 2), padding=(1, 0), groups=3),
    case("2d-groups", (4, 3, 2, 3), (6, 6, 7), padding=(1, 2), groups=2),
    case("2d-nonsquare-all", (3, 2, 2, 3), (2, 7, 5), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    case("2d-same-even-kernel", (2, 3, 4, 2), (3, 6, 5), padding="same"),
    case("2d-same-even-dilated", (2, 3, 2, 4), (3, 7, 9), padding="same", dilation=(3, 2)),
    case("2d-valid", (3, 2, 3, 2), (2, 5, 6), padding="valid", stride=(1, 2)),
    case("3d", (2, 2, 2, 3, 1), (2, 4, 5, 3), stride=(1, 2, 1), padding=(1, 0, 1)),
    case("3d-same-even-groups", (4, 1, 2, 2, 3), (2, 4, 3, 5), padding="same", groups=2),
    case("3d-depthwise-dilated-strided", (3, 1, 2, 2, 2), (3, 5, 4, 6), stride=(2, 1, 2),
         padding=(1, 1, 2), dilation=(2, 1, 3), groups=3),
    # many distinct border rows: ConvPattern.values takes its plain-gather path, not row runs
    case("3d-cube-pad1", (2, 2, 3, 3, 3), (2, 9, 9, 9), padding=1),
]


def rand(*shape, seed=0, dtype=torch.float64, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(requires_grad)


def pad_lo_hi(c):
    """(pad_lo, pad_hi) per axis, as torch reads ``padding`` (independent of the library)."""
    n = len(c["w"]) - 2
    k, d = c["w"][2:], per_axis(c["dilation"], n)
    if c["padding"] == "valid":
        return (0,) * n, (0,) * n
    if c["padding"] == "same":
        total = [di * (ki - 1) for di, ki in zip(d, k)]
        return tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)
    p = per_axis(c["padding"], n)
    return p, p


def flat(t, n):
    """(N, ...) tensor or array -> (features, N) numpy, the library's batch layout."""
    a = t.detach().numpy() if isinstance(t, torch.Tensor) else t
    return a.reshape(n, -1).T


@pytest.mark.parametrize("batch", [1, 3], ids=["N1", "N3"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("c", CASES)
def test_forward_and_gradients(c, mode, batch):
    """C @ x == nn.ConvNd, C.T @ delta == autograd's dx, conv_weight_grad == autograd's dW."""
    w = rand(*c["w"], seed=1)
    x = rand(batch, *c["inp"], seed=2, requires_grad=True)
    conv = torch_conv(x, w, mode, **options(c))
    y = conv(x)
    delta = rand(*y.shape, seed=3)
    y.backward(delta)

    C = tc.conv_matrix(w.numpy(), c["inp"], padding_mode=mode, **options(c))
    assert isinstance(C, sp.csr_array)
    assert C.shape == (y[0].numel(), x[0].numel())
    assert C.dtype == np.float64
    np.testing.assert_allclose(C @ flat(x, batch), flat(y, batch), **TOL)
    np.testing.assert_allclose(C.T @ flat(delta, batch), flat(x.grad, batch), **TOL)

    dW = tc.conv_weight_grad(x.detach().numpy(), delta.numpy(), c["w"], padding_mode=mode, **options(c))
    assert dW.shape == tuple(c["w"]) and dW.dtype == np.float64
    np.testing.assert_allclose(dW, conv.weight.grad.numpy(), **TOL)
    if batch == 1:  # one sample without its batch axis
        dW1 = tc.conv_weight_grad(x.detach().numpy()[0], delta.numpy()[0], c["w"], padding_mode=mode,
                                  **options(c))
        np.testing.assert_allclose(dW1, conv.weight.grad.numpy(), **TOL)


@pytest.mark.parametrize("c", CASES)
def test_input_gradient_is_conv_transpose(c):
    """Zero padding: C.T @ delta == F.conv_transposeNd(delta, W) with the output_padding that
    restores the input size (asymmetric 'same' padding: pad_lo, then crop the high side)."""
    n = len(c["w"]) - 2
    w = rand(*c["w"], seed=4)
    x_shape = (2, *c["inp"])
    y = getattr(F, f"conv{n}d")(torch.zeros(x_shape, dtype=torch.float64), w, **options(c))
    delta = rand(*y.shape, seed=5)
    lo, _ = pad_lo_hi(c)
    s, d = per_axis(c["stride"], n), per_axis(c["dilation"], n)
    i, o, k = c["inp"][1:], y.shape[2:], c["w"][2:]
    base = [(oj - 1) * sj - 2 * pj + dj * (kj - 1) + 1 for oj, sj, pj, dj, kj in zip(o, s, lo, d, k)]
    a = tuple(max(0, ij - bj) for ij, bj in zip(i, base))
    ref = getattr(F, f"conv_transpose{n}d")(delta, w, stride=s, padding=lo, output_padding=a,
                                            dilation=d, groups=c["groups"])
    ref = ref[(slice(None), slice(None)) + tuple(slice(0, ij) for ij in i)]
    assert tuple(ref.shape) == x_shape
    C = tc.conv_matrix(w, c["inp"], **options(c))
    np.testing.assert_allclose(C.T @ flat(delta, 2), flat(ref, 2), **TOL)


# --------------------------------------------------------------------------- transposed conv
#
# weight shape (C_in, C_out/groups, *kernel), input shape (C_in, *spatial) of the transposed conv.


TCASES = [
    case("1d-stride3-pad1", (2, 3, 3), (2, 5), stride=3, padding=1),
    case("1d-dilation-gt-stride", (2, 2, 3), (2, 6), dilation=3, padding=2),
    case("1d-stride-gt-kernel", (1, 2, 2), (1, 4), stride=4),
    case("2d-stride2-pad1", (3, 2, 3, 3), (3, 4, 5), stride=2, padding=1),
    case("2d-nonsquare", (2, 3, 2, 3), (2, 3, 4), stride=(3, 2), padding=(0, 1), dilation=(1, 2)),
    case("2d-groups-dilation", (4, 2, 3, 2), (4, 3, 3), stride=(2, 1), dilation=(1, 3), groups=2),
    case("2d-depthwise", (3, 1, 3, 3), (3, 4, 4), stride=2, padding=1, groups=3),
    case("2d-1x1-stride", (2, 2, 1, 1), (2, 3, 4), stride=(2, 3)),
    case("3d", (2, 2, 2, 3, 2), (2, 3, 2, 3), stride=(2, 1, 2), padding=(0, 1, 1), dilation=(1, 2, 1)),
]


def output_paddings(c):
    """Every output_padding torch accepts: smaller than stride or dilation, per axis."""
    n = len(c["w"]) - 2
    s, d = per_axis(c["stride"], n), per_axis(c["dilation"], n)
    return list(itertools.product(*[range(max(sj, dj)) for sj, dj in zip(s, d)]))


def test_output_paddings_helper_covers_dilation():
    # guards the grid: some case must allow output_padding >= stride (through the dilation)
    assert any(max(a) >= 1 for a in output_paddings(TCASES[1].values[0]))
    assert len(output_paddings(TCASES[-1].values[0])) == 8


@pytest.mark.parametrize("c", TCASES)
def test_conv_transpose_matrix_every_output_padding(c):
    n = len(c["w"]) - 2
    w = rand(*c["w"], seed=6)
    x = rand(2, *c["inp"], seed=7)
    kw = options(c)
    for a in output_paddings(c):
        ref = getattr(F, f"conv_transpose{n}d")(x, w, output_padding=a, **kw)
        T = tc.conv_transpose_matrix(w.numpy(), c["inp"], output_padding=a, **kw)
        assert T.format == "csr" and T.dtype == np.float64
        assert T.shape == (ref[0].numel(), x[0].numel()), a
        np.testing.assert_allclose(T @ flat(x, 2), flat(ref, 2), **TOL, err_msg=f"output_padding={a}")

        # T is the transpose of the convolution with the same weight, output cropped to the
        # input size (it is larger only where output_padding >= stride)
        out_sp = tuple(ref.shape[2:])
        C = tc.conv_matrix(w.numpy(), (w.shape[1] * c["groups"], *out_sp), **kw)
        conv_out = getattr(F, f"conv{n}d")(ref, w, **kw).shape[2:]
        rows = np.arange(C.shape[0]).reshape(c["inp"][0], *conv_out)
        rows = rows[(slice(None),) + tuple(slice(0, ij) for ij in c["inp"][1:])].ravel()
        if all(aj < sj for aj, sj in zip(a, per_axis(c["stride"], n))):
            assert tuple(conv_out) == tuple(c["inp"][1:])
        assert np.array_equal(T.toarray(), C[rows].T.toarray()), f"output_padding={a}"


@pytest.mark.parametrize("c", TCASES)
def test_conv_transpose_gradients_every_output_padding(c):
    """conv_transpose_weight_grad == autograd; T.T @ delta == autograd's input gradient."""
    n = len(c["w"]) - 2
    kw = options(c)
    for a in output_paddings(c):
        w = rand(*c["w"], seed=8, requires_grad=True)
        x = rand(3, *c["inp"], seed=9, requires_grad=True)
        y = getattr(F, f"conv_transpose{n}d")(x, w, output_padding=a, **kw)
        delta = rand(*y.shape, seed=10)
        y.backward(delta)
        dW = tc.conv_transpose_weight_grad(x.detach().numpy(), delta.numpy(), tuple(w.shape),
                                           output_padding=a, **kw)
        assert dW.shape == tuple(w.shape)
        np.testing.assert_allclose(dW, w.grad.numpy(), **TOL, err_msg=f"output_padding={a}")
        T = tc.conv_transpose_matrix(w.detach().numpy(), c["inp"], output_padding=a, **kw)
        np.testing.assert_allclose(T.T @ flat(delta, 3), flat(x.grad, 3), **TOL)


def test_conv_transpose_weight_grad_one_sample():
    w = rand(2, 3, 3, 3, seed=11, requires_grad=True)
    x = rand(1, 2, 4, 5, seed=12)
    y = F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    delta = rand(*y.shape, seed=13)
    y.backward(delta)
    dW = tc.conv_transpose_weight_grad(x[0], delta[0], w.shape, stride=2, padding=1, output_padding=1)
    np.testing.assert_allclose(dW, w.grad.numpy(), **TOL)


# --------------------------------------------------------------------------- weight Jacobian

JCASES = [c for c in CASES if c.id in (
    "1d", "1d-dilation-pad-groups", "2d-1x1", "2d-nonsquare-all", "2d-depthwise-multiplier",
    "2d-same-even-kernel", "2d-stride-gt-kernel", "3d", "3d-same-even-groups")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("c", JCASES)
def test_weight_jacobian_vs_jacrev(c, mode):
    w = rand(*c["w"], seed=14)
    x = rand(1, *c["inp"], seed=15)
    conv = torch_conv(x, w, mode, **options(c))
    jac = torch.func.jacrev(lambda W: torch.func.functional_call(conv, {"weight": W}, (x,)))(w)
    y = conv(x).detach()
    jac = jac.reshape(y.numel(), w.numel()).numpy()

    J = tc.conv_weight_jacobian(x[0].numpy(), c["w"], padding_mode=mode, **options(c))
    assert isinstance(J, sp.csr_array) and J.shape == jac.shape
    np.testing.assert_allclose(J.toarray(), jac, **TOL)
    np.testing.assert_allclose(J @ w.numpy().ravel(), y.numpy().ravel(), **TOL)

    # J.T @ delta is the weight gradient (of one sample)
    delta = rand(*y.shape, seed=16)
    wg = w.clone().requires_grad_(True)
    torch.func.functional_call(conv, {"weight": wg}, (x,)).backward(delta)
    np.testing.assert_allclose(J.T @ delta.numpy().ravel(), wg.grad.numpy().ravel(), **TOL)
    dW = tc.conv_weight_grad(x, delta, c["w"], padding_mode=mode, **options(c))
    np.testing.assert_allclose(J.T @ delta.numpy().ravel(), dW.ravel(), **TOL)


def test_weight_jacobian_accepts_batch_of_one():
    x = rand(1, 3, 6, 5, seed=17)
    J1 = tc.conv_weight_jacobian(x, (2, 3, 3, 2), padding=1)
    J0 = tc.conv_weight_jacobian(x[0], (2, 3, 3, 2), padding=1)
    assert (J1 != J0).nnz == 0


# --------------------------------------------------------------------------- dtypes and indices


@pytest.mark.parametrize("mode", MODES)
def test_float32_in_float32_out(mode):
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    w = rand(4, 2, 3, 3, seed=18, dtype=torch.float32)
    x = rand(2, 4, 7, 8, seed=19, dtype=torch.float32, requires_grad=True)
    conv = torch_conv(x, w.double(), mode, **kw).float()
    conv.weight.data = w.clone()
    y = conv(x)
    delta = rand(*y.shape, seed=20, dtype=torch.float32)
    y.backward(delta)

    C = tc.conv_matrix(w.numpy(), (4, 7, 8), padding_mode=mode, **kw)
    assert C.dtype == np.float32
    np.testing.assert_allclose(C @ flat(x, 2), flat(y, 2), rtol=1e-4, atol=1e-5)
    dW = tc.conv_weight_grad(x.detach().numpy(), delta.numpy(), w.shape, padding_mode=mode, **kw)
    assert dW.dtype == np.float32
    np.testing.assert_allclose(dW, conv.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    J = tc.conv_weight_jacobian(x[0].detach().numpy(), w.shape, padding_mode=mode, **kw)
    assert J.dtype == np.float32


def test_float32_transpose():
    w = rand(3, 2, 3, 3, seed=21, dtype=torch.float32)
    x = rand(2, 3, 4, 4, seed=22, dtype=torch.float32)
    T = tc.conv_transpose_matrix(w.numpy(), (3, 4, 4), stride=2, padding=1, output_padding=1)
    assert T.dtype == np.float32
    ref = F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    np.testing.assert_allclose(T @ flat(x, 2), flat(ref, 2), rtol=1e-4, atol=1e-5)
    dW = tc.conv_transpose_weight_grad(x.numpy(), torch.ones_like(ref).numpy(), w.shape, stride=2,
                                       padding=1, output_padding=1)
    assert dW.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.complex128], ids=["int32", "int64", "complex128"])
def test_dtype_follows_weight(dtype):
    rng = np.random.default_rng(41)
    w = rng.integers(-5, 5, size=(2, 3, 3, 3)).astype(dtype)
    if np.issubdtype(dtype, np.complexfloating):
        w = w + 1j * rng.integers(-5, 5, size=w.shape)
    C = tc.conv_matrix(w, (3, 5, 5), padding=1, padding_mode="reflect")
    assert C.dtype == dtype
    x = rng.integers(-3, 4, size=(2, 3, 5, 5)).astype(np.complex128 if np.iscomplexobj(w) else np.float64)
    conv = torch.nn.Conv2d(3, 2, 3, padding=1, padding_mode="reflect", bias=False, dtype=torch.from_numpy(x).dtype)
    conv.weight.data = torch.from_numpy(w.astype(x.dtype))
    ref = conv(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(C @ flat(x, 2), flat(ref, 2), **TOL)


@pytest.mark.parametrize("mode", MODES)
def test_int32_indices_for_normal_sizes(mode):
    w = rand(8, 3, 3, 3, seed=23).numpy()
    C = tc.conv_matrix(w, (3, 16, 16), padding=1, padding_mode=mode)
    assert C.indices.dtype == np.int32 and C.indptr.dtype == np.int32
    T = tc.conv_transpose_matrix(w, (8, 6, 6), stride=2, padding=1)
    assert T.indices.dtype == np.int32 and T.indptr.dtype == np.int32
    J = tc.conv_weight_jacobian(np.ones((3, 16, 16)), w.shape, padding=1, padding_mode=mode)
    assert J.indices.dtype == np.int32 and J.indptr.dtype == np.int32


def test_index_dtype_switches_past_int32():
    i32 = np.iinfo(np.int32).max
    assert index_dtype(0) is np.int32
    assert index_dtype(i32) is np.int32
    assert index_dtype(i32 + 1) is np.int64
    assert index_dtype(5, i32 + 1, 7) is np.int64  # any one index past int32 decides
    assert index_dtype(5, 113_000_000, 200_704) is np.int32  # the 64x56x56 layer fits


def test_int64_index_path_builds_the_same_matrix(monkeypatch):
    """With the int32 limit lowered, the core takes its int64 path: same matrix, same products."""
    import toeplitz_conv.indexing as indexing
    import toeplitz_conv.pattern as pattern

    w = rand(3, 2, 3, 2, seed=24).numpy()
    x = rand(2, 2, 6, 5, seed=25)
    kw = dict(stride=(1, 2), padding=1, padding_mode="reflect")
    ref = torch_conv(x, torch.from_numpy(w), "reflect", stride=(1, 2), padding=1)(x).detach()
    pattern.conv_pattern.cache_clear()
    monkeypatch.setattr(indexing, "_INT32_MAX", 10)
    try:
        C = tc.conv_matrix(w, (2, 6, 5), **kw)
        g = tc.conv_geometry(w.shape, (2, 6, 5), stride=(1, 2), padding=1, padding_mode="reflect")
        assert tc.conv_pattern(g).src.dtype == np.int64
    finally:
        pattern.conv_pattern.cache_clear()
    np.testing.assert_allclose(C @ flat(x, 2), flat(ref, 2), **TOL)
    C32 = tc.conv_matrix(w, (2, 6, 5), **kw)
    assert np.array_equal(C.toarray(), C32.toarray())


# --------------------------------------------------------------------------- formats


@pytest.mark.filterwarnings("ignore::scipy.sparse.SparseEfficiencyWarning")
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "bsr", "dia", "dok", "lil"])
def test_format(fmt):
    w = rand(3, 2, 3, 2, seed=26).numpy()
    ref = tc.conv_matrix(w, (2, 5, 6), padding=1, padding_mode="circular").toarray()
    C = tc.conv_matrix(w, (2, 5, 6), padding=1, padding_mode="circular", format=fmt)
    assert C.format == fmt and isinstance(C, sp.sparray)
    assert np.array_equal(C.toarray(), ref)

    refT = tc.conv_transpose_matrix(w, (3, 4, 5), stride=2).toarray()
    T = tc.conv_transpose_matrix(w, (3, 4, 5), stride=2, format=fmt)
    assert T.format == fmt and isinstance(T, sp.sparray)
    assert np.array_equal(T.toarray(), refT)

    x = rand(2, 5, 6, seed=27).numpy()
    refJ = tc.conv_weight_jacobian(x, w.shape, padding=1).toarray()
    J = tc.conv_weight_jacobian(x, w.shape, padding=1, format=fmt)
    assert J.format == fmt and isinstance(J, sp.sparray)
    assert np.array_equal(J.toarray(), refJ)


def _assert_canonical(M):
    assert M.has_canonical_format
    indptr, indices = M.indptr, M.indices
    for r in range(M.shape[0]):
        row = indices[indptr[r]:indptr[r + 1]]
        assert np.all(np.diff(row) > 0), f"row {r} not sorted/unique: {row}"
    # scipy agrees: summing duplicates changes nothing
    M2 = sp.csr_array((M.data.copy(), M.indices.copy(), M.indptr.copy()), shape=M.shape)
    M2.sum_duplicates()
    assert M2.nnz == M.nnz


@pytest.mark.parametrize("mode", MODES)
def test_canonical_csr(mode):
    # a tiny input under a wide kernel: reflect/replicate/circular taps pile onto one column
    w = rand(2, 2, 3, 4, seed=28).numpy()
    C = tc.conv_matrix(w, (2, 3, 4), padding=(1, 2), dilation=(1, 2) if mode != "reflect" else 1,
                       padding_mode=mode)
    _assert_canonical(C)
    _assert_canonical(tc.conv_transpose_matrix(w, (2, 3, 4), stride=2, padding=1, output_padding=1))
    _assert_canonical(tc.conv_weight_jacobian(np.ones((2, 3, 4)), w.shape, padding=1, padding_mode=mode))


# --------------------------------------------------------------------------- torch inputs


def test_torch_tensor_inputs():
    w = rand(4, 2, 3, 3, seed=29, requires_grad=True)
    x = rand(2, 4, 6, 7, seed=30, requires_grad=True)
    kw = dict(stride=(1, 2), padding=1, groups=2)
    y = F.conv2d(x, w, **kw)
    delta = rand(*y.shape, seed=31, requires_grad=True)
    y.backward(delta)

    C = tc.conv_matrix(w, x.shape[1:], **kw)  # requires_grad weight, torch.Size input_shape
    np.testing.assert_allclose(C @ flat(x, 2), flat(y, 2), **TOL)
    Cl = tc.conv_matrix(w, list(x.shape[1:]), **kw)  # a list is a shape too
    assert (C != Cl).nnz == 0
    dW = tc.conv_weight_grad(x, delta, w.shape, **kw)  # requires_grad x and grad_output
    assert isinstance(dW, np.ndarray)
    np.testing.assert_allclose(dW, w.grad.numpy(), **TOL)
    J = tc.conv_weight_jacobian(x[0], w.shape, **kw)
    np.testing.assert_allclose(J @ w.detach().numpy().ravel(), y[0].detach().numpy().ravel(), **TOL)

    wt = rand(4, 3, 2, 2, seed=32, requires_grad=True)
    xt = rand(2, 4, 3, 3, seed=33, requires_grad=True)
    yt = F.conv_transpose2d(xt, wt, stride=2, groups=2)
    T = tc.conv_transpose_matrix(wt, xt.shape[1:], stride=2, groups=2)
    np.testing.assert_allclose(T @ flat(xt, 2), flat(yt, 2), **TOL)
    yt.backward(torch.ones_like(yt))
    dWt = tc.conv_transpose_weight_grad(xt, torch.ones_like(yt), wt.shape, stride=2, groups=2)
    np.testing.assert_allclose(dWt, wt.grad.numpy(), **TOL)


def test_non_contiguous_weight():
    base = rand(3, 4, 3, 3, seed=34)
    w = base.transpose(0, 1)  # (4, 3, 3, 3), not contiguous
    x = rand(1, 3, 5, 6, seed=35)
    ref = F.conv2d(x, w, padding=1)
    for weight in (w, w.numpy(), np.asfortranarray(w.numpy())):
        C = tc.conv_matrix(weight, (3, 5, 6), padding=1)
        np.testing.assert_allclose(C @ flat(x, 1), flat(ref, 1), **TOL)


# --------------------------------------------------------------------------- ConvPattern readings


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("c", [c for c in CASES if c.id in (
    "1d", "2d-dilation-pad", "2d-depthwise-multiplier", "2d-kernel-eq-padded-input",
    "2d-same-even-kernel", "3d-depthwise-dilated-strided", "3d-cube-pad1")])
def test_pattern_values_rebuild_for_new_weights(c, mode):
    g = tc.conv_geometry(c["w"], c["inp"], padding_mode=mode, **options(c))
    p = tc.conv_pattern(g)
    w1, w2 = rand(*c["w"], seed=36).numpy(), rand(*c["w"], seed=37).numpy()
    C1 = tc.conv_matrix(w1, c["inp"], padding_mode=mode, **options(c))
    C2 = tc.conv_matrix(w2, c["inp"], padding_mode=mode, **options(c))
    data = p.values(w2)
    assert np.array_equal(data.reshape(-1), C2.data)
    rebuilt = sp.csr_array((data.reshape(-1), C1.indices, C1.indptr), shape=C1.shape)
    assert np.array_equal(rebuilt.toarray(), C2.toarray())
    # and the rebuilt matrix is the convolution with the new weight
    x = rand(2, *c["inp"], seed=38)
    ref = torch_conv(x, torch.from_numpy(w2), mode, **options(c))(x).detach()
    np.testing.assert_allclose(rebuilt @ flat(x, 2), flat(ref, 2), **TOL)


def test_pattern_values_accepts_torch_weight():
    w = rand(2, 3, 3, 3, seed=39)
    p = tc.conv_pattern(tc.conv_geometry(w.shape, (3, 5, 5), padding=1))
    data = p.values(w)
    assert np.array_equal(np.asarray(data).reshape(-1), tc.conv_matrix(w, (3, 5, 5), padding=1).data)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("c", [c for c in CASES if c.id in (
    "1d-dilation-pad-groups", "2d-kernel-eq-padded-input", "2d-groups", "2d-same-even-dilated",
    "3d", "3d-depthwise-dilated-strided")])
def test_pattern_triples_reproduce_matrix(c, mode):
    # integer-valued weights: sums of duplicate taps are exact in any order
    W = np.random.default_rng(40).integers(-9, 10, size=c["w"]).astype(np.float64)
    g = tc.conv_geometry(c["w"], c["inp"], padding_mode=mode, **options(c))
    row, col, tap = tc.conv_pattern(g).triples()
    C = tc.conv_matrix(W, c["inp"], padding_mode=mode, **options(c))
    assert row.shape == col.shape == tap.shape
    assert 0 <= tap.min() and tap.max() < W.size
    assert 0 <= row.min() and row.max() < C.shape[0] and 0 <= col.min() and col.max() < C.shape[1]
    M = sp.coo_array((W.flat[tap], (row, col)), shape=C.shape)
    assert np.array_equal(M.toarray(), C.toarray())
    taps_per_row = np.prod(c["w"][1:])
    if mode == "zeros":
        assert row.size == C.nnz  # one triple per stored entry
    else:  # every tap of every output reads a real input column
        assert row.size == C.shape[0] * taps_per_row
