"""An independent oracle: the matrix probed column by column from torch, compared exactly.

For a linear map f, column j of its matrix is f(e_j). All basis vectors go through torch as
one batch. Weights (and, for the Jacobian, inputs) are small positive integers in float64,
so every entry is an exact integer however the taps are summed — several taps landing on one
column under reflect/replicate/circular padding included — and no sum can cancel to zero:
the stored pattern must then equal the nonzero pattern of the probe, entry for entry.

The torch route here is ``F.pad`` + ``F.convNd`` (test_conv.py uses ``nn.ConvNd``).
"""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import toeplitz_conv as tc
from helpers import MODES, per_axis


def pads(w_shape, padding, dilation):
    n = len(w_shape) - 2
    k, d = w_shape[2:], per_axis(dilation, n)
    if padding == "same":
        total = [di * (ki - 1) for di, ki in zip(d, k)]
        return [t // 2 for t in total], [t - t // 2 for t in total]
    p = per_axis(0 if padding == "valid" else padding, n)
    return list(p), list(p)


def torch_conv_fn(w_shape, mode, stride, padding, dilation, groups):
    """f(x, W): F.pad in the padding mode, then an unpadded F.convNd."""
    n = len(w_shape) - 2
    lo, hi = pads(w_shape, padding, dilation)
    rev = [v for j in reversed(range(n)) for v in (lo[j], hi[j])]
    conv = getattr(F, f"conv{n}d")

    def f(x, W):
        xp = F.pad(x, rev, mode="constant" if mode == "zeros" else mode)
        return conv(xp, W, stride=stride, dilation=dilation, groups=groups)

    return f


def int_weights(shape, seed):
    return np.random.default_rng(seed).integers(1, 10, size=shape).astype(np.float64)


def probe(f, in_shape):
    """Dense matrix of the linear map f: (N, *in_shape) -> (N, ...), column j = f(e_j)."""
    n_in = int(np.prod(in_shape))
    E = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
    with torch.no_grad():
        Y = f(E)
    return Y.reshape(n_in, -1).T.numpy()


def assert_exact(M, P):
    assert M.shape == P.shape
    D = M.toarray()
    assert np.array_equal(D, P), f"max |diff| {np.abs(D - P).max()}"
    # no spurious stored entries, none missing (entries are positive sums, never cancel)
    stored = np.zeros(M.shape, dtype=bool)
    coo = M.tocoo()
    stored[coo.row, coo.col] = True
    assert np.array_equal(stored, P != 0)
    assert M.nnz == np.count_nonzero(P)  # and no duplicate entries


def ocase(id, w, inp, *, stride=1, padding=0, dilation=1, groups=1):
    return pytest.param(dict(w=w, inp=inp, stride=stride, padding=padding, dilation=dilation,
                             groups=groups), id=id)


CASES = [
    ocase("1d", (2, 3, 3), (3, 8), padding=2),
    ocase("1d-stride-dilation", (3, 1, 2), (3, 9), stride=2, padding=1, dilation=3, groups=3),
    ocase("1d-wide-kernel", (1, 1, 5), (1, 3), padding=2),
    ocase("2d", (3, 2, 3, 3), (2, 5, 4), padding=1),
    ocase("2d-stride-nonsquare", (2, 2, 2, 3), (2, 6, 5), stride=(2, 3), padding=(1, 2)),
    ocase("2d-groups-dilation", (4, 1, 3, 2), (2, 6, 5), padding=(2, 1), dilation=(2, 3), groups=2),
    ocase("2d-same-even", (2, 2, 4, 2), (2, 5, 4), padding="same"),
    ocase("2d-kernel-eq-padded", (1, 2, 4, 5), (2, 2, 3), padding=1),
    ocase("3d", (2, 2, 2, 3, 2), (2, 3, 4, 3), stride=(1, 2, 1), padding=1),
    ocase("3d-depthwise-dilated", (2, 1, 2, 2, 2), (2, 4, 3, 4), padding=(1, 1, 2), dilation=(2, 1, 3),
          groups=2),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("c", CASES)
def test_conv_matrix_equals_probe(c, mode):
    W = int_weights(c["w"], seed=0)
    f = torch_conv_fn(c["w"], mode, c["stride"], c["padding"], c["dilation"], c["groups"])
    P = probe(lambda E: f(E, torch.from_numpy(W)), c["inp"])
    C = tc.conv_matrix(W, c["inp"], stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                       groups=c["groups"], padding_mode=mode)
    assert_exact(C, P)
    assert np.array_equal(C.T.toarray(), P.T)  # the input gradient is the same matrix


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("c", [c for c in CASES if c.id in ("1d-stride-dilation", "2d-groups-dilation",
                                                             "2d-same-even", "3d")])
def test_weight_jacobian_equals_probe(c, mode):
    """J[:, t] = conv(x, e_t): probed over the weights, x fixed (integer-valued)."""
    x = torch.from_numpy(int_weights(c["inp"], seed=1))[None]
    f = torch_conv_fn(c["w"], mode, c["stride"], c["padding"], c["dilation"], c["groups"])
    n_w = int(np.prod(c["w"]))
    Ew = torch.eye(n_w, dtype=torch.float64).reshape(n_w, *c["w"])
    with torch.no_grad():
        Y = torch.vmap(lambda W: f(x, W))(Ew)
    P = Y.reshape(n_w, -1).T.numpy()
    J = tc.conv_weight_jacobian(x[0].numpy(), c["w"], stride=c["stride"], padding=c["padding"],
                                dilation=c["dilation"], groups=c["groups"], padding_mode=mode)
    assert J.shape == P.shape
    assert np.array_equal(J.toarray(), P)


TCASES = [
    ocase("1d-stride2", (2, 2, 3), (2, 4), stride=2, padding=1),
    ocase("1d-dilation3", (1, 2, 2), (1, 5), dilation=3, padding=1),
    ocase("2d-groups", (4, 1, 3, 2), (4, 3, 3), stride=(2, 1), padding=(1, 0), groups=2),
    ocase("2d-nonsquare", (2, 3, 2, 3), (2, 3, 2), stride=(3, 2), dilation=(1, 2)),
    ocase("3d", (2, 1, 2, 2, 3), (2, 2, 3, 2), stride=2, padding=(0, 1, 1)),
]


@pytest.mark.parametrize("c", TCASES)
def test_conv_transpose_matrix_equals_probe(c):
    n = len(c["w"]) - 2
    s, d = per_axis(c["stride"], n), per_axis(c["dilation"], n)
    W = int_weights(c["w"], seed=2)
    for a in itertools.product(*[range(max(sj, dj)) for sj, dj in zip(s, d)]):
        ct = getattr(F, f"conv_transpose{n}d")
        P = probe(lambda E: ct(E, torch.from_numpy(W), stride=s, padding=c["padding"], output_padding=a,
                               dilation=d, groups=c["groups"]), c["inp"])
        T = tc.conv_transpose_matrix(W, c["inp"], stride=s, padding=c["padding"], output_padding=a,
                                     dilation=d, groups=c["groups"])
        assert_exact(T, P)
