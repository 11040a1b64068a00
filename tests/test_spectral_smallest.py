"""The smallest singular value by Lanczos, both branches (shift-invert on the sparse LU of the
normal matrix, and matrix-free on ``c I - N`` past ``SHIFT_INVERT_MAX_NNZ``), against the dense
SVD of the explicit matrix, with the residual certificate of each value."""

import numpy as np
import pytest

import toeplitz_conv as tc
from helpers import MODES
from toeplitz_conv import lanczos

EPS = np.finfo(np.float64).eps


def dense_sv(w, shape, **kw):
    return np.linalg.svd(tc.conv_matrix(w, shape, **kw).toarray(), compute_uv=False)


GEOMETRIES = {
    "same": ((3, 2, 3, 3), (2, 9, 8), dict(padding=1)),
    "stride2": ((3, 2, 3, 3), (2, 9, 8), dict(padding=1, stride=2)),  # tall: N = C^T C is larger
    "stride-1x2": ((4, 2, 3, 3), (2, 8, 9), dict(padding=1, stride=(1, 2))),
    "dilated": ((3, 2, 3, 3), (2, 9, 9), dict(padding=2, dilation=2)),
    "groups2": ((4, 1, 3, 3), (2, 8, 8), dict(padding=1, groups=2)),
    "wide": ((2, 3, 3, 3), (3, 8, 8), dict(padding=1)),  # C_out < C_in: N = C C^T
    "1d": ((2, 2, 5), (2, 30), dict(padding=2)),
}


@pytest.mark.parametrize("branch", ["shift-invert", "lu-of-c", "matrix-free"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_smallest_matches_the_dense_svd_with_a_certificate(case, mode, branch, monkeypatch):
    if branch != "shift-invert":  # past the LU of N: the LU of a square C, else c I - N
        monkeypatch.setattr(lanczos, "SHIFT_INVERT_MAX_NNZ", 0)
    if branch == "matrix-free":
        monkeypatch.setattr(lanczos, "SHIFT_INVERT_C_MAX_NNZ", 0)
    wshape, shape, kw = case
    w = np.random.default_rng(11).standard_normal(wshape)
    ref = dense_sv(w, shape, padding_mode=mode, **kw)
    s = tc.singular_values(w, shape, k=2, which="smallest", method="svds", padding_mode=mode, **kw)
    assert s.method == "svds" and s.residuals is not None and s.residuals.shape == (2,)
    np.testing.assert_allclose(s.values, ref[-2:], rtol=1e-8)
    # the certificate: a squared singular value within the residual of each sigma^2 (rounding aside)
    assert np.all(np.abs(s.values ** 2 - ref[-2:] ** 2) <= s.residuals + 64 * EPS * ref[0] ** 2)
    assert np.all(s.residuals <= 1e-9 * ref[0] ** 2)
    top = tc.singular_values(w, shape, k=1, method="svds", padding_mode=mode, **kw)
    assert top.residuals[0] <= 1e-9 * ref[0] ** 2
    cond = tc.condition_number(w, shape, method="svds", padding_mode=mode, **kw)
    assert cond == pytest.approx(ref[0] / ref[-1], rel=1e-8)


def test_direct_methods_have_no_residuals():
    w = np.random.default_rng(1).standard_normal((2, 2, 3, 3))
    assert tc.singular_values(w, (2, 6, 6), padding=1).residuals is None
    assert tc.singular_values(w, (2, 6, 6), padding=1, padding_mode="circular").residuals is None
    assert tc.singular_values(w, (2, 6, 6), stride=3).residuals is None  # blocks


def test_residuals_scale_with_the_weight():
    """The weight is scaled by a power of two inside; the residuals of ``N`` scale back by its
    square."""
    w = np.random.default_rng(2).standard_normal((3, 2, 3, 3))
    a = tc.singular_values(w, (2, 12, 12), padding=1, k=1, which="smallest", method="svds")
    b = tc.singular_values(w * 2.0**40, (2, 12, 12), padding=1, k=1, which="smallest", method="svds")
    assert b.values[0] == pytest.approx(a.values[0] * 2.0**40, rel=1e-10)
    assert b.residuals[0] == pytest.approx(a.residuals[0] * 2.0**80, rel=1e-3, abs=1e-30 * 2.0**80)


def test_the_matrix_free_bottom_stops_at_its_budget_and_says_so(monkeypatch):
    """Past the sparse LU, Lanczos on c I - N gets a budget of multiply-adds (a clustered bottom
    could otherwise run for days): past it, a ValueError with the way out and the dense size."""
    monkeypatch.setattr(lanczos, "SHIFT_INVERT_MAX_NNZ", 0)
    monkeypatch.setattr(lanczos, "SHIFT_INVERT_C_MAX_NNZ", 0)
    monkeypatch.setattr(lanczos, "SMALLEST_LANCZOS_MACS", 1.0)
    monkeypatch.setattr(lanczos, "SMALLEST_LANCZOS_MIN_PRODUCTS", 1)
    w = np.random.default_rng(0).standard_normal((8, 8, 3, 3))
    with pytest.raises(ValueError, match=r"did not converge to the 1 smallest singular values of this 1,568 x 1,568 "
                                         r"layer .* about 1e\+00 multiply-adds .* method='dense' if it fits in "
                                         r"memory \(56\.3 MiB\)"):
        tc.singular_values(w, (8, 14, 14), padding=1, k=1, which="smallest", method="svds", tol=1e-14)
    monkeypatch.setattr(lanczos, "SMALLEST_LANCZOS_MACS", 5e11)  # the default budget: it converges
    monkeypatch.setattr(lanczos, "SMALLEST_LANCZOS_MIN_PRODUCTS", 3000)
    s = tc.singular_values(w, (8, 14, 14), padding=1, k=1, which="smallest", method="svds")
    np.testing.assert_allclose(s.values, dense_sv(w, (8, 14, 14), padding=1)[-1:], rtol=1e-8)


def test_auto_takes_the_dense_svd_where_lanczos_gives_up(monkeypatch):
    """'auto' past the dense size for the bottom runs Lanczos; where it gives up (its budget
    spent at a clustered bottom), the dense SVD, if it fits in memory, gives the values."""
    from toeplitz_conv import spectral

    monkeypatch.setattr(spectral, "DENSE_SMALLEST_MAX", 16)  # so that 'auto' takes Lanczos first
    monkeypatch.setattr(lanczos, "SHIFT_INVERT_MAX_NNZ", 0)
    monkeypatch.setattr(lanczos, "SHIFT_INVERT_C_MAX_NNZ", 0)
    monkeypatch.setattr(lanczos, "SMALLEST_LANCZOS_MACS", 1.0)
    monkeypatch.setattr(lanczos, "SMALLEST_LANCZOS_MIN_PRODUCTS", 1)
    w = np.random.default_rng(1).standard_normal((4, 4, 3, 3))
    s = tc.singular_values(w, (4, 10, 10), padding=1, k=2, which="smallest", tol=1e-14)
    assert s.method == "dense"
    np.testing.assert_allclose(s.values, dense_sv(w, (4, 10, 10), padding=1)[-2:], rtol=1e-12)
    with pytest.raises(ValueError, match="did not converge"):  # asked for Lanczos: it says so
        tc.singular_values(w, (4, 10, 10), padding=1, k=2, which="smallest", method="svds", tol=1e-14)


def test_the_lu_of_c_is_skipped_past_the_memory_limit(monkeypatch):
    """Where the LU of C would not fit (its fill estimated up front), Lanczos on c I - N runs
    instead: the same values, no refusal, and no LU attempted."""
    from scipy.sparse import linalg as sla

    monkeypatch.setattr(lanczos, "SHIFT_INVERT_MAX_NNZ", 0)
    monkeypatch.setattr(lanczos, "memory_limit", lambda: (1000, "a test's"))
    tried = []
    real = sla.splu
    monkeypatch.setattr(sla, "splu", lambda *a, **k: tried.append(1) or real(*a, **k))
    w = np.random.default_rng(2).standard_normal((3, 3, 3, 3))
    s = tc.singular_values(w, (3, 9, 8), padding=1, k=2, which="smallest", method="svds")
    np.testing.assert_allclose(s.values, dense_sv(w, (3, 9, 8), padding=1)[-2:], rtol=1e-8)
    assert not tried
    monkeypatch.setattr(lanczos, "memory_limit", lambda: (2**40, "a test's"))  # fits: the LU runs
    tc.singular_values(w, (3, 9, 8), padding=1, k=2, which="smallest", method="svds")
    assert tried
