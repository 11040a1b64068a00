"""The smallest singular value by Lanczos, every branch (on ``C^-1 C^-H`` from the
nested-dissection LU of a square layer, shift-invert on the sparse LU of the normal matrix, on
SuperLU's LU of a square ``C``, and matrix-free on ``c I - N``), against the dense SVD of the
explicit matrix, with the residual certificate of each value."""

import numpy as np
import pytest

import toeplitz_conv as tc
from helpers import MODES
from toeplitz_conv import dissection, svds

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
    # square on one grid: the nested-dissection LU applies
    "square": ((3, 3, 3, 3), (3, 9, 8), dict(padding=1)),
    "square-groups": ((4, 2, 3, 3), (4, 8, 7), dict(padding=1, groups=2)),
    "square-even-same": ((3, 3, 2, 4), (3, 7, 9), dict(padding="same")),
    "square-3d": ((2, 2, 3, 3, 3), (2, 5, 4, 6), dict(padding=1)),
}


BRANCHES = ["grid-lu", "shift-invert", "lu-of-c", "matrix-free"]


def _branches(name):
    """The square cases run the nested-dissection LU, the others every other branch; the 1D case
    (square too) runs all four."""
    return BRANCHES if name == "1d" else BRANCHES[:1] if name.startswith("square") else BRANCHES[1:]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case, branch", [pytest.param(case, branch, id=f"{name}-{branch}")
                                          for name, case in GEOMETRIES.items() for branch in _branches(name)])
def test_smallest_matches_the_dense_svd_with_a_certificate(case, mode, branch, monkeypatch):
    wshape, shape, kw = case
    if branch == "grid-lu":  # cut into fronts of a few positions, not one front for the whole grid
        assert dissection.lu_applies(tc.conv_geometry(wshape, shape, padding_mode=mode, **kw)) is None
        monkeypatch.setattr(dissection, "LEAF_VARS", 8)
    else:
        monkeypatch.setattr(dissection, "MAX_MACS", 0)
    if branch in ("lu-of-c", "matrix-free"):  # past the LU of N: the LU of a square C, else c I - N
        monkeypatch.setattr(svds, "SHIFT_INVERT_MAX_NNZ", 0)
    if branch == "matrix-free":
        monkeypatch.setattr(svds, "SHIFT_INVERT_C_MAX_NNZ", 0)
    built = []
    real_lu = dissection.GridLU
    monkeypatch.setattr(dissection, "GridLU", lambda *a: built.append(1) or real_lu(*a))
    w = np.random.default_rng(11).standard_normal(wshape)
    ref = dense_sv(w, shape, padding_mode=mode, **kw)
    s = tc.singular_values(w, shape, k=2, which="smallest", method="svds", padding_mode=mode, **kw)
    assert s.method == "svds" and s.residuals is not None and s.residuals.shape == (2,)
    # Lanczos on c I - N resolves sigma^2 to tol * sigma_max^2: relative to sigma, cond^2 coarser
    rtol = max(1e-8, 1e-12 * (ref[0] / ref[-1]) ** 2) if branch == "matrix-free" else 1e-8
    np.testing.assert_allclose(s.values, ref[-2:], rtol=rtol, atol=64 * EPS * ref[0])  # both: eps sigma_max
    # the certificate: a singular value within the residual of each sigma (rounding aside)
    assert np.all(np.abs(s.values - ref[-2:]) <= s.residuals + 64 * EPS * ref[0])
    # (Lanczos on c I - N converges in N: its triplets' residuals are N's divided by sigma)
    assert np.all(s.residuals <= 1e-9 * ref[0] * (ref[0] / ref[-2:] if branch == "matrix-free" else 1))
    top = tc.singular_values(w, shape, k=1, method="svds", padding_mode=mode, **kw)
    assert top.residuals[0] <= 1e-9 * ref[0]
    cond = tc.condition_number(w, shape, method="svds", padding_mode=mode, **kw)
    assert cond == pytest.approx(ref[0] / ref[-1], rel=rtol + 64 * EPS * ref[0] / ref[-1])
    assert bool(built) == (branch == "grid-lu")


def test_direct_methods_have_no_residuals():
    w = np.random.default_rng(1).standard_normal((2, 2, 3, 3))
    assert tc.singular_values(w, (2, 6, 6), padding=1).residuals is None
    assert tc.singular_values(w, (2, 6, 6), padding=1, padding_mode="circular").residuals is None
    assert tc.singular_values(w, (2, 6, 6), stride=3).residuals is None  # blocks


def test_residuals_scale_with_the_weight():
    """The weight is scaled by a power of two inside; the residuals scale back with it."""
    w = np.random.default_rng(2).standard_normal((3, 2, 3, 3))
    a = tc.singular_values(w, (2, 12, 12), padding=1, k=1, which="smallest", method="svds")
    b = tc.singular_values(w * 2.0**40, (2, 12, 12), padding=1, k=1, which="smallest", method="svds")
    assert b.values[0] == pytest.approx(a.values[0] * 2.0**40, rel=1e-10)
    assert b.residuals[0] == pytest.approx(a.residuals[0] * 2.0**40, rel=1e-3, abs=1e-30 * 2.0**40)


def _only_lanczos_with_no_budget(monkeypatch):
    """Every LU out of reach, and Lanczos on c I - N allowed one product: it gives up."""
    monkeypatch.setattr(dissection, "MAX_MACS", 0)
    monkeypatch.setattr(svds, "SHIFT_INVERT_MAX_NNZ", 0)
    monkeypatch.setattr(svds, "SHIFT_INVERT_C_MAX_NNZ", 0)
    monkeypatch.setattr(svds, "SMALLEST_LANCZOS_MACS", 1.0)
    monkeypatch.setattr(svds, "SMALLEST_LANCZOS_MIN_PRODUCTS", 1)


def test_the_matrix_free_bottom_stops_at_its_budget_and_says_so(monkeypatch):
    """Past the sparse LU, Lanczos on c I - N gets a budget of multiply-adds (a clustered bottom
    could otherwise run for days): past it, a ValueError with the way out and the dense size."""
    _only_lanczos_with_no_budget(monkeypatch)
    w = np.random.default_rng(0).standard_normal((8, 8, 3, 3))
    with pytest.raises(ValueError, match=r"did not converge to the 1 smallest singular values of this 1,568 x 1,568 "
                                         r"layer .* about 1e\+00 multiply-adds .* method='dense' if it fits in "
                                         r"memory \(56\.3 MiB\)"):
        tc.singular_values(w, (8, 14, 14), padding=1, k=1, which="smallest", method="svds", tol=1e-14)
    monkeypatch.setattr(svds, "SMALLEST_LANCZOS_MACS", 5e11)  # the default budget: it converges
    monkeypatch.setattr(svds, "SMALLEST_LANCZOS_MIN_PRODUCTS", 3000)
    s = tc.singular_values(w, (8, 14, 14), padding=1, k=1, which="smallest", method="svds")
    np.testing.assert_allclose(s.values, dense_sv(w, (8, 14, 14), padding=1)[-1:], rtol=1e-8)


def _zero_sum_layer():
    """A 648-column 3D replicate-padded layer whose kernels each sum to 0: the constant image of
    each channel is a null vector, so its bottom is three zeros at rounding (and two values
    below 3e-7 sigma_max): shift-invert's ``(N + delta I)^-1`` has a cluster at ``1 / delta``
    that Lanczos cannot separate to ``tol``. Without a budget it ran 116,662 products (33 s)."""
    w = np.random.default_rng(0).standard_normal((3, 3, 3, 2, 2))
    w -= w.mean(axis=(2, 3, 4), keepdims=True)
    return w, (3, 6, 6, 6), dict(padding="same", padding_mode="replicate", dilation=(2, 1, 1))


def _counting_products(monkeypatch):
    """Count the products of every Lanczos run on an inverse (or any operator svds hands it)."""
    from scipy.sparse.linalg import LinearOperator

    count, real = [0], svds.top_eigenpairs

    def counted(op, *args, **kw):
        def matvec(x):
            count[0] += 1
            return op @ x
        return real(LinearOperator(op.shape, matvec=matvec, dtype=op.dtype), *args, **kw)
    monkeypatch.setattr(svds, "top_eigenpairs", counted)
    return count


def test_shift_invert_lanczos_stops_at_its_budget_of_products(monkeypatch):
    """Lanczos on ``(N + delta I)^-1`` at a bottom clustered below ``sqrt(delta)`` gives up after
    its budget of products, with the way out; 'auto' then takes the dense SVD."""
    monkeypatch.setattr(svds, "affordable_lu", lambda w, geom: (None, "(the grid LU left out here)"))
    monkeypatch.setattr(svds, "INVERSE_LANCZOS_MAX_PRODUCTS", 400, raising=False)  # (absent: no budget)
    count = _counting_products(monkeypatch)
    w, shape, kw = _zero_sum_layer()
    ref = dense_sv(w, shape, **kw)
    with pytest.raises(ValueError, match=r"did not converge to the 2 smallest singular values of this 648 x 648 "
                                         r"layer by shift-invert Lanczos .* in 400 products; .* method='dense'"):
        tc.singular_values(w, shape, k=2, which="smallest", method="svds", **kw)
    assert 0 < count[0] <= 400 + 2 * 20  # the restart under way finishes past the budget
    count[0] = 0
    s = tc.singular_values(w, shape, k=2, which="smallest", **kw)
    assert s.method == "dense" and count[0] <= 400 + 2 * 20
    np.testing.assert_array_equal(s.values, [0.0, 0.0])  # three zeros at rounding: the rank rule's 0
    assert ref[-3] <= 648 * EPS * ref[0]


def test_the_grid_lus_lanczos_stops_at_its_budget_and_the_next_route_takes_over(monkeypatch):
    """The grid LU's inverse gets a budget of products too: past it the routes after it run,
    and their values still match the dense SVD."""
    monkeypatch.setattr(svds, "GRID_LANCZOS_MAX_PRODUCTS", 1, raising=False)
    count = _counting_products(monkeypatch)
    w = np.random.default_rng(0).standard_normal((3, 3, 3, 3))  # one restart does not resolve it
    s = tc.singular_values(w, (3, 9, 8), padding=1, k=2, which="smallest", method="svds", tol=1e-14)
    assert "shift-invert" in s.route and "did not converge" in s.route
    np.testing.assert_allclose(s.values, dense_sv(w, (3, 9, 8), padding=1)[-2:], rtol=1e-8)
    assert count[0] > 0


def test_auto_takes_the_dense_svd_where_lanczos_gives_up(monkeypatch):
    """'auto' past the dense size for the bottom runs Lanczos; where it gives up (its budget
    spent at a clustered bottom), the dense SVD, if it fits in memory, gives the values."""
    from toeplitz_conv import spectral

    monkeypatch.setattr(spectral, "DENSE_SMALLEST_MAX", 16)  # so that 'auto' takes Lanczos first
    _only_lanczos_with_no_budget(monkeypatch)
    w = np.random.default_rng(1).standard_normal((4, 4, 3, 3))
    s = tc.singular_values(w, (4, 10, 10), padding=1, k=2, which="smallest", tol=1e-14)
    assert s.method == "dense"
    np.testing.assert_allclose(s.values, dense_sv(w, (4, 10, 10), padding=1)[-2:], rtol=1e-12)
    with pytest.raises(ValueError, match="did not converge"):  # asked for Lanczos: it says so
        tc.singular_values(w, (4, 10, 10), padding=1, k=2, which="smallest", method="svds", tol=1e-14)


def test_the_lus_of_c_are_skipped_past_the_memory_limit(monkeypatch):
    """Where neither LU of C would fit (the nested-dissection one's factors counted, SuperLU's
    fill estimated, both up front), Lanczos on c I - N runs instead: the same values, no
    refusal, and no LU attempted. Where they fit, the nested-dissection LU runs first, and
    SuperLU where it is not affordable."""
    from scipy.sparse import linalg as sla

    monkeypatch.setattr(svds, "SHIFT_INVERT_MAX_NNZ", 0)
    for module in (svds, dissection):
        monkeypatch.setattr(module, "memory_limit", lambda: (1000, "a test's"))
    tried = []
    real_splu, real_grid = sla.splu, dissection.GridLU
    monkeypatch.setattr(sla, "splu", lambda *a, **k: tried.append("superlu") or real_splu(*a, **k))
    monkeypatch.setattr(dissection, "GridLU", lambda *a: tried.append("grid") or real_grid(*a))
    w = np.random.default_rng(2).standard_normal((3, 3, 3, 3))
    ref = dense_sv(w, (3, 9, 8), padding=1)[-2:]
    s = tc.singular_values(w, (3, 9, 8), padding=1, k=2, which="smallest", method="svds")
    np.testing.assert_allclose(s.values, ref, rtol=1e-8)
    assert tried == []
    for module in (svds, dissection):  # fits: the LUs run
        monkeypatch.setattr(module, "memory_limit", lambda: (2**40, "a test's"))
    s = tc.singular_values(w, (3, 9, 8), padding=1, k=2, which="smallest", method="svds")
    np.testing.assert_allclose(s.values, ref, rtol=1e-8)
    assert tried == ["grid"]
    monkeypatch.setattr(dissection, "MAX_MACS", 0)  # past its budget: SuperLU
    s = tc.singular_values(w, (3, 9, 8), padding=1, k=2, which="smallest", method="svds")
    np.testing.assert_allclose(s.values, ref, rtol=1e-8)
    assert tried == ["grid", "superlu"]


def test_a_grid_lu_whose_pivots_break_down_is_not_used(monkeypatch):
    """``y[i] = x[i-1] + x[i+1]`` is invertible, but cut into fronts of one position its own
    blocks are the zero centre tap: the nested-dissection LU reports it, and SuperLU gives the
    values."""
    monkeypatch.setattr(dissection, "LEAF_VARS", 1)
    w = np.array([[[1.0, 0.0, 1.0]]])
    s = tc.singular_values(w, (1, 40), padding=1, k=2, which="smallest", method="svds")
    np.testing.assert_allclose(s.values, dense_sv(w, (1, 40), padding=1)[-2:], rtol=1e-8)


def test_auto_takes_the_grid_lu_for_the_bottom_of_a_square_layer(monkeypatch):
    """Past 256 columns 'auto' reads the bottom of a square layer off its nested-dissection LU
    (20-60x faster than the dense SVD it took up to 4096); other layers keep the dense SVD."""
    built = []
    real_lu = dissection.GridLU
    monkeypatch.setattr(dissection, "GridLU", lambda *a: built.append(1) or real_lu(*a))
    w = np.random.default_rng(4).standard_normal((8, 8, 3, 3))
    ref = dense_sv(w, (8, 10, 10), padding=1)
    s = tc.singular_values(w, (8, 10, 10), padding=1, k=2, which="smallest")
    assert s.method == "svds" and built
    np.testing.assert_allclose(s.values, ref[-2:], rtol=1e-10)
    assert tc.condition_number(w, (8, 10, 10), padding=1) == pytest.approx(ref[0] / ref[-1], rel=1e-10)
    assert tc.singular_values(w, (8, 5, 5), padding=1, k=2, which="smallest").method == "dense"  # 200 columns
    wide = np.random.default_rng(4).standard_normal((8, 4, 3, 3))
    assert tc.singular_values(wide, (4, 10, 10), padding=1, k=2, which="smallest").method == "dense"


def test_the_route_says_which_lu_ran_and_why_another_did_not(monkeypatch):
    """``Spectrum.route`` names the route of 'svds' and, past the nested-dissection LU, why it
    did not run (its cost against the limit); the direct methods have none."""
    w = np.random.default_rng(5).standard_normal((4, 4, 3, 3))
    s = tc.singular_values(w, (4, 9, 9), padding=1, k=1, which="smallest", method="svds")
    assert s.route.startswith("Lanczos on C^-1 C^-H (LU by nested dissection: ")
    assert "multiply-adds" in s.route and s.route.endswith("polished by refined inverse iteration")
    top = tc.singular_values(w, (4, 9, 9), padding=1, k=1, method="svds")
    assert top.route == "Lanczos on the normal operator"
    assert tc.singular_values(w, (4, 9, 9), padding=1).route is None
    monkeypatch.setattr(dissection, "MAX_MACS", 0)
    monkeypatch.setattr(svds, "SHIFT_INVERT_MAX_NNZ", 0)
    monkeypatch.setattr(svds, "SHIFT_INVERT_C_MAX_NNZ", 0)
    s = tc.singular_values(w, (4, 9, 9), padding=1, k=1, which="smallest", method="svds")
    assert s.route.startswith("Lanczos on c I - N (its LU by nested dissection would take ")
    assert "(at most 0e+00)" in s.route
    np.testing.assert_allclose(s.values, dense_sv(w, (4, 9, 9), padding=1)[-1:], rtol=1e-8)


@pytest.mark.parametrize("route", ["grid-lu", "shift-invert", "superlu-c"])
def test_complex_weights_at_the_bottom(route, monkeypatch):
    """Complex kernels: the LU solves with C^H, and the certificate's left vectors take the phase
    that makes u^H C v real and positive (SuperLU's LU of C: past shift-invert's size)."""
    if route != "grid-lu":
        monkeypatch.setattr(dissection, "MAX_MACS", 0)
    if route == "superlu-c":
        monkeypatch.setattr(svds, "SHIFT_INVERT_MAX_NNZ", 0)
    rng = np.random.default_rng(6)
    w = rng.standard_normal((3, 3, 3, 3)) + 1j * rng.standard_normal((3, 3, 3, 3))
    ref = dense_sv(w, (3, 8, 9), padding=1, padding_mode="reflect")
    s = tc.singular_values(w, (3, 8, 9), padding=1, padding_mode="reflect", k=2, which="smallest", method="svds")
    assert s.route.startswith({"grid-lu": "Lanczos on C^-1 C^-H (LU by nested dissection", "shift-invert": "shift-invert",
                               "superlu-c": "Lanczos on C^-1 C^-H (SuperLU's LU of C), polished"}[route]), s.route
    np.testing.assert_allclose(s.values, ref[-2:], rtol=1e-8)
    assert np.all(np.abs(s.values - ref[-2:]) <= s.residuals + 64 * EPS * ref[0])
    assert np.all(s.residuals <= 1e-9 * ref[0])


def test_superlus_lu_of_c_is_polished_like_the_grids(monkeypatch):
    """An ill-conditioned square layer (condition number 1e9) past shift-invert's size takes
    SuperLU's LU of C. Unpolished, its inverse's vectors certified the bottom only to 4e-9
    sigma_max, above the values themselves, which were then reported as 0; refined inverse
    iteration brings the certificates to rounding and the values to the dense SVD's."""
    monkeypatch.setattr(dissection, "MAX_MACS", 0)
    monkeypatch.setattr(svds, "SHIFT_INVERT_MAX_NNZ", 0)
    w = np.array([-2.647462003884479, -0.2772198864931002, -0.7992165848351771, 0.8177852162954359,
                  -2.680129182800545, 1.987967393188791, -0.33575092370807186, -1.575351648860976,
                  0.4226639770391049, 0.4862626899645115, 0.42431455149174147, 2.1616987039564033]).reshape(1, 1, 2, 3, 2)
    kw = dict(padding="same", dilation=(2, 1, 1))  # a fuzz case: the grid LU met a zero pivot
    ref = dense_sv(w, (1, 8, 8, 7), **kw)
    s = tc.singular_values(w, (1, 8, 8, 7), k=2, which="smallest", method="svds", **kw)
    assert s.route.startswith("Lanczos on C^-1 C^-H (SuperLU's LU of C), polished by refined inverse iteration")
    np.testing.assert_allclose(s.values, ref[-2:], rtol=1e-8)
    assert np.all(s.residuals <= 64 * EPS * ref[0])


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_all_but_one_value_of_a_tiny_layer(which):
    """``k = min(C.shape) - 1`` is allowed, but ARPACK's ``eigsh`` refuses ``k >= N - 1`` of an
    operator (a TypeError before): such a group takes its dense SVD."""
    w = np.random.default_rng(8).standard_normal((1, 1, 3))
    ref = dense_sv(w, (1, 3), padding="same", padding_mode="reflect")
    s = tc.singular_values(w, (1, 3), padding="same", padding_mode="reflect", k=2, which=which, method="svds")
    np.testing.assert_allclose(s.values, ref[:2] if which == "largest" else ref[-2:], rtol=1e-12)


def test_a_rank_deficient_layer_gets_zeros_with_a_usable_certificate():
    """Two equal output channels: C has repeated rows, so its bottom values are 0. Their
    vectors are null vectors, whose ``u = A v / ||A v||`` is rounding; the certificate is then
    the square root of ``||N v - sigma^2 v||``, small, not ``||A^H u||`` (about sigma_max)."""
    w = np.random.default_rng(3).standard_normal((4, 4, 3, 3))
    w[1] = w[0]
    ref = dense_sv(w, (4, 9, 8), padding=1)
    s = tc.singular_values(w, (4, 9, 8), padding=1, k=3, which="smallest", method="svds")
    assert np.all(s.values == 0) and np.all(ref[-3:] < 1e-14 * ref[0])
    assert np.all(s.residuals <= 1e-3 * ref[0])


def test_a_numerically_singular_grid_lu_leaves_the_values_above_its_null_space_to_another_route():
    """A 2-tap dilated kernel with replicate padding: one zero singular value, and the grid
    LU's pivots are tiny but not 0. The inverse's null direction (1 / eps^2) swamps its other
    eigenvalues: only the zero was resolved, the 13 values above it had certificates of about
    sigma_max and were reported as 0. The certificates send them to the next route."""
    w = np.array([[[0.7129130347106278, 2.0441190583934326]]])
    kw = dict(padding="same", dilation=2, padding_mode="replicate")
    ref = dense_sv(w, (1, 24), **kw)
    s = tc.singular_values(w, (1, 24), k=14, which="smallest", method="svds", **kw)
    assert ref[-1] < 1e-15 * ref[0] and ref[-2] > 0.4 * ref[0]
    np.testing.assert_allclose(s.values[:-1], ref[-14:-1], rtol=1e-10)
    assert s.values[-1] == 0 and np.all(s.residuals <= 1e-6 * ref[0])
    assert "the inverse from its LU by nested dissection left a value unresolved" in s.route
    assert "a numerically singular layer" in s.route


def test_values_no_route_resolved_are_refused_or_taken_densely(monkeypatch):
    """A route whose vectors are not singular vectors (here: random ones) gives certificates
    of about sigma_max: 'svds' refuses, saying how loose and what to do; 'auto' takes the
    dense SVD."""
    from toeplitz_conv import spectral

    def random_vectors(w, geom, A, N, size, k, *rest):
        return np.linalg.qr(np.random.default_rng(0).standard_normal((size, k)))[0], None, "a test's route"

    monkeypatch.setattr(dissection, "MAX_MACS", 0)
    monkeypatch.setattr(svds, "_bottom_past_the_grid", random_vectors)
    monkeypatch.setattr(spectral, "DENSE_SMALLEST_MAX", 16)  # so that 'auto' takes Lanczos first
    w = np.random.default_rng(2).standard_normal((3, 3, 3, 3))
    with pytest.raises(ValueError, match=r"the 2 smallest singular values of this 192 x 192 layer were not "
                                         r"resolved by a test's route.*certificate of .* sigma_max.*"
                                         r"method='dense'"):
        tc.singular_values(w, (3, 8, 8), padding=1, k=2, which="smallest", method="svds")
    s = tc.singular_values(w, (3, 8, 8), padding=1, k=2, which="smallest")
    assert s.method == "dense"
    np.testing.assert_allclose(s.values, dense_sv(w, (3, 8, 8), padding=1)[-2:], rtol=1e-12)


def test_superlus_lu_of_c_is_not_tried_where_the_grid_found_c_singular(monkeypatch):
    """On a C the grid LU found numerically singular, scipy's SuperLU was seen to write out of
    bounds (BLAS "illegal value" errors, then a crash): past shift-invert's size such a layer
    goes to Lanczos on c I - N, never to SuperLU's LU of C."""
    monkeypatch.setattr(svds, "SHIFT_INVERT_MAX_NNZ", 0)
    w = np.array([[[0.7129130347106278, 2.0441190583934326]]])
    kw = dict(padding="same", dilation=2, padding_mode="replicate")
    calls = []
    monkeypatch.setattr("scipy.sparse.linalg.splu", lambda *a, **k: calls.append(a) or pytest.fail("splu ran"))
    ref = dense_sv(w, (1, 24), **kw)
    s = tc.singular_values(w, (1, 24), k=3, which="smallest", method="svds", **kw)
    assert s.route.startswith("Lanczos on c I - N") and "a numerically singular layer" in s.route, s.route
    np.testing.assert_allclose(s.values[:-1], ref[-3:-1], rtol=1e-8)
    assert s.values[-1] == 0 and not calls
