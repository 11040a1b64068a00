"""The matrix-free operator (matvec = convolution, rmatvec = transposed convolution) and the
dot test of any operator."""

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import LinearOperator, cg, lsqr

import toeplitz_conv as tc
from helpers import MODES


# --------------------------------------------------------------------------- the operator

OP_CASES = {
    "2d-zeros-stride": ((4, 3, 3, 2), (3, 7, 6), dict(stride=(2, 1), padding=(2, 1), dilation=(1, 2))),
    "2d-reflect-groups": ((4, 2, 3, 3), (4, 6, 6), dict(padding=1, groups=2, padding_mode="reflect")),
    "2d-replicate": ((2, 3, 2, 3), (3, 5, 7), dict(padding=(1, 2), padding_mode="replicate")),
    "2d-circular-wraps": ((2, 2, 5, 5), (2, 4, 4), dict(padding=4, padding_mode="circular")),
    "1d": ((3, 2, 4), (2, 10), dict(stride=3, padding=2)),
    "3d": ((2, 2, 2, 3, 2), (2, 3, 4, 5), dict(padding=1, stride=(1, 2, 1))),
}


@pytest.mark.parametrize("complex_weight", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("case", OP_CASES.values(), ids=OP_CASES.keys())
def test_operator_matches_matrix_and_dot_test(case, complex_weight):
    wshape, shape, kw = case
    rng = np.random.default_rng(9)
    w = rng.standard_normal(wshape) + (1j * rng.standard_normal(wshape) if complex_weight else 0)
    C = tc.conv_matrix(w, shape, **kw)
    A = tc.conv_operator(w, shape, **kw)
    assert A.shape == C.shape and A.dtype == C.dtype
    m, n = C.shape
    x, y = rng.standard_normal(n), rng.standard_normal(m)
    X, Y = rng.standard_normal((n, 3)), rng.standard_normal((m, 3))
    np.testing.assert_allclose(A @ x, C @ x, atol=1e-12)
    np.testing.assert_allclose(A.matvec(x), C @ x, atol=1e-12)
    np.testing.assert_allclose(A @ X, C @ X, atol=1e-12)
    np.testing.assert_allclose(A.rmatvec(y), C.conj().T @ y, atol=1e-12)
    np.testing.assert_allclose(A.H @ Y, C.conj().T @ Y, atol=1e-12)
    np.testing.assert_allclose(A.rmatmat(Y), C.conj().T @ Y, atol=1e-12)
    np.testing.assert_allclose(A.T @ y, C.T @ y, atol=1e-12)
    # the dot test (A u) . v == u . (A^H v), complex inputs too
    assert tc.dot_test(A, complex_vectors=True) < 1e-12


def test_operator_vs_torch_every_mode():
    rng = np.random.default_rng(10)
    w, x = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((3, 8, 9))
    for mode in MODES:
        conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False, padding_mode=mode).double()
        conv.weight.data = torch.from_numpy(w)
        ref = conv(torch.from_numpy(x)[None]).detach().numpy().ravel()
        np.testing.assert_allclose(tc.conv_operator(w, x.shape, padding=1, padding_mode=mode) @ x.ravel(),
                                   ref, atol=1e-12)


def test_operator_chunks_many_columns(monkeypatch):
    w = np.random.default_rng(11).standard_normal((3, 2, 3, 3))
    A = tc.conv_operator(w, (2, 6, 5), padding=1, padding_mode="reflect")
    monkeypatch.setattr(type(A), "chunk_bytes", 1)  # one column per chunk
    C = tc.conv_matrix(w, (2, 6, 5), padding=1, padding_mode="reflect")
    X = np.random.default_rng(0).standard_normal((60, 5))
    Y = np.random.default_rng(1).standard_normal((90, 5))
    np.testing.assert_allclose(A @ X, C @ X, atol=1e-12)
    np.testing.assert_allclose(A.H @ Y, C.T @ Y, atol=1e-12)


def test_operator_dtypes():
    w = np.random.default_rng(12).standard_normal((2, 2, 3, 3))
    assert tc.conv_operator(w.astype(np.float32), (2, 5, 5)).dtype == np.float32
    assert tc.conv_operator(np.ones((2, 2, 3, 3), dtype=np.int64), (2, 5, 5)).dtype == np.float64
    A = tc.conv_operator(torch.from_numpy(w), (2, 5, 5), padding=1)
    np.testing.assert_allclose(A @ np.ones(50), tc.conv_matrix(w, (2, 5, 5), padding=1) @ np.ones(50))


def test_lsqr_deconvolution_recovers_input():
    rng = np.random.default_rng(13)
    w = 0.2 * rng.standard_normal((4, 3, 3, 3))
    w[:3, :, 1, 1] += np.eye(3)  # well conditioned: close to the identity plus one channel
    x = rng.standard_normal((3, 16, 16))
    A = tc.conv_operator(w, x.shape, padding=1)
    b = A @ x.ravel()
    x_hat, istop, itn = lsqr(A, b, atol=1e-14, btol=1e-14, iter_lim=500)[:3]
    np.testing.assert_allclose(x_hat, x.ravel(), atol=1e-8)
    # the same through the normal equations with cg
    N = A.H @ A
    x_cg, info = cg(N, A.H @ b, rtol=1e-13, maxiter=500)
    assert info == 0
    np.testing.assert_allclose(x_cg, x.ravel(), atol=1e-7)


# --------------------------------------------------------------------------- the dot test


def test_dot_test_passes_exact_adjoints():
    w = np.random.default_rng(16).standard_normal((3, 2, 3, 3))
    for A in (tc.conv_matrix(w, (2, 7, 6), stride=2, padding=1),
              tc.conv_operator(w, (2, 7, 6), padding=2, padding_mode="circular"),
              tc.conv_operator(w + 1j * w[::-1], (2, 5, 5)),
              tc.conv_matrix(w, (2, 5, 5)).toarray()):
        assert tc.dot_test(A) < 1e-13
        assert tc.dot_test(A, complex_vectors=True, k=1, seed=np.random.default_rng(3)) < 1e-13


@pytest.mark.parametrize("which", ["vectors", "blocks"])
def test_dot_test_fails_a_wrong_adjoint(which):
    """The transposed convolution of the wrong padding is not the adjoint: the test says so."""
    w = np.random.default_rng(17).standard_normal((2, 2, 3, 3))
    C = tc.conv_matrix(w, (2, 6, 6), padding=1)
    wrong = tc.conv_matrix(w, (2, 6, 6), padding=1, padding_mode="reflect").T
    right = C.T
    rmatvec = (lambda v: wrong @ v) if which == "vectors" else (lambda v: right @ v)
    rmatmat = (lambda V: right @ V) if which == "vectors" else (lambda V: wrong @ V)
    A = LinearOperator(C.shape, matvec=lambda u: C @ u, rmatvec=rmatvec,
                       matmat=lambda U: C @ U, rmatmat=rmatmat, dtype=C.dtype)
    with pytest.raises(AssertionError, match=rf"dot test failed \({which if which == 'vectors' else 'blocks of 3 columns'}\).*"
                                             r"relative gap .* > rtol 1e-10"):
        tc.dot_test(A)


def test_dot_test_errors():
    with pytest.raises(TypeError, match=r"A must be a scipy.sparse array or matrix, a 2D ndarray or a "
                                        r"LinearOperator; got str"):
        tc.dot_test("C")
    with pytest.raises(ValueError, match=r"k must be a positive integer; got 0"):
        tc.dot_test(np.eye(3), k=0)
    with pytest.raises(TypeError, match=r"rtol must be a non-negative float; got '1e-6'"):
        tc.dot_test(np.eye(3), rtol="1e-6")
    with pytest.raises(ValueError, match=r"rtol must be a non-negative float; got rtol=-1"):
        tc.dot_test(np.eye(3), rtol=-1)


def test_dot_test_on_torchs_own_pair():
    """torch's conv2d and conv_transpose2d (float64) pass as a forward/adjoint pair; the
    transposed convolution with the flipped kernel (convolution vs cross-correlation) does not."""
    F = torch.nn.functional
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(18))
    shape_in, shape_out = (2, 7, 6), (3, 4, 3)

    def pair(w_adjoint):
        def fwd(U):
            x = torch.from_numpy(np.ascontiguousarray(U.T)).reshape(-1, *shape_in)
            return F.conv2d(x, w, stride=2, padding=1).reshape(U.shape[1], -1).numpy().T

        def adj(V):
            y = torch.from_numpy(np.ascontiguousarray(V.T)).reshape(-1, *shape_out)
            return F.conv_transpose2d(y, w_adjoint, stride=2, padding=1,
                                      output_padding=(0, 1)).reshape(V.shape[1], -1).numpy().T

        n, m = int(np.prod(shape_in)), int(np.prod(shape_out))
        return LinearOperator((m, n), matvec=lambda u: fwd(u[:, None])[:, 0], matmat=fwd,
                              rmatvec=lambda v: adj(v[:, None])[:, 0], rmatmat=adj, dtype=np.float64)

    assert tc.dot_test(pair(w)) < 1e-13
    assert tc.dot_test(tc.conv_matrix(w, shape_in, stride=2, padding=1)) < 1e-13
    with pytest.raises(AssertionError, match=r"dot test failed \(vectors\)"):
        tc.dot_test(pair(w.flip(-1, -2)))
