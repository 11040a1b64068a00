"""Spectra at the edges found by fuzzing: repeated singular values by Lanczos, zero layers,
non-finite and extreme weights.

Every spectrum is compared with numpy's SVD of the explicit dense matrix, in float64.
"""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator

import toeplitz_conv as tc
from helpers import MODES
from toeplitz_conv import lanczos, svds


def dense_sv(w, shape, **kw):
    C = tc.conv_matrix(np.asarray(w, dtype=np.result_type(np.asarray(w).dtype, np.float64)), shape, **kw)
    return np.linalg.svd(C.toarray(), compute_uv=False)


def ends(ref, k, which):
    return ref[:k] if which == "largest" else ref[ref.size - k:]


def repeated(values, scale):
    """Whether some value comes twice (to ``1e-10 * scale``)."""
    return bool(np.any(np.abs(np.diff(values)) <= 1e-10 * scale))


# --------------------------------------------------------------------------- repeated values


def equal_groups(seed, copies, group_shape, boost=0.0):
    """A grouped weight whose groups are ``copies`` equal draws (``boost`` on the centre tap
    keeps the layer well conditioned, so that its smallest values are clear of 0)."""
    g = np.random.default_rng(seed).standard_normal(group_shape)
    g[(slice(None), slice(None), *(k // 2 for k in group_shape[2:]))] += boost
    return np.concatenate([g] * copies)


def mixed_groups():
    """Three groups: two equal, one different."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 2, 3, 3))
    return np.concatenate([a, b, a])


def seeded(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


REPEATED = {
    # the fuzzer's case: groups=2, both groups one kernel (ARPACK alone returned 5.58894,
    # 5.58879, 5.57122, 5.57027 where the SVD gives 5.58894, 5.58894, 5.58879, 5.58879)
    "groups2-equal": (equal_groups(6, 2, (2, 2, 3, 3), 3), (4, 12, 12), dict(padding=1, groups=2), 4),
    "groups2-equal-seed11": (equal_groups(11, 2, (2, 2, 3, 3), 3), (4, 12, 12), dict(padding=1, groups=2), 4),
    "groups2-equal-k-straddles": (equal_groups(6, 2, (2, 2, 3, 3), 3), (4, 12, 12), dict(padding=1, groups=2), 3),
    "depthwise-equal": (equal_groups(1, 3, (1, 1, 3, 3), 4), (3, 12, 12), dict(padding=1, groups=3), 6),
    "depthwise-equal-k-straddles": (equal_groups(1, 3, (1, 1, 3, 3), 4), (3, 12, 12), dict(padding=1, groups=3), 4),
    "depthwise-equal-strided": (equal_groups(2, 4, (1, 1, 3, 3), 4), (4, 16, 16),
                                dict(padding=1, stride=2, groups=4), 5),
    "groups3-two-equal": (mixed_groups(), (6, 10, 10), dict(padding=1, groups=3, padding_mode="reflect"), 5),
    "complex-groups2-equal": (equal_groups(3, 2, (2, 2, 3, 3), 3) * (1 + 0.5j), (4, 10, 10),
                              dict(padding=1, groups=2), 4),
    # one group: each value of W repeated once per position (C = W kron I)
    "1x1-kernel": (seeded((4, 3, 1, 1), 0), (3, 10, 10), dict(), 5),
    # one group, circular: the frequencies f and -f give each value twice
    "1d-circular-seed3": (seeded((3, 2, 3), 3), (2, 40), dict(padding=1, padding_mode="circular"), 4),
    "1d-circular-seed0": (seeded((3, 2, 3), 0), (2, 40), dict(padding=1, padding_mode="circular"), 4),
    "1d-circular-k-straddles": (seeded((3, 2, 3), 5), (2, 40), dict(padding=1, padding_mode="circular"), 5),
}


@pytest.mark.parametrize("which", ["largest", "smallest"])
@pytest.mark.parametrize("case", REPEATED.values(), ids=REPEATED.keys())
def test_svds_finds_every_copy_of_a_repeated_value(case, which):
    w, shape, kw, k = case
    ref = dense_sv(w, shape, **kw)
    assert repeated(ends(ref, k + 1, which), ref[0])  # the case has a multiplicity at this end
    s = tc.singular_values(w, shape, k=k, which=which, method="svds", **kw)
    assert s.method == "svds" and s.values.shape == (k,)
    np.testing.assert_allclose(s.values, ends(ref, k, which), rtol=0, atol=1e-9 * ref[0])


def test_the_fuzzers_grouped_layer_by_auto():
    w = equal_groups(6, 2, (2, 2, 3, 3))
    ref = dense_sv(w, (4, 12, 12), padding=1, groups=2)
    assert ref[0] == pytest.approx(ref[1], rel=1e-12) and ref[2] == pytest.approx(ref[3], rel=1e-12)
    s = tc.singular_values(w, (4, 12, 12), padding=1, groups=2, k=4)
    assert s.method == "svds"
    np.testing.assert_allclose(s.values, ref[:4], rtol=1e-10)
    assert tc.condition_number(w, (4, 12, 12), padding=1, groups=2, method="svds") == \
        pytest.approx(ref[0] / ref[-1], rel=1e-6)


def test_repeated_smallest_without_a_sparse_lu(monkeypatch):
    """The other branch for the bottom (Lanczos on ``c I - N``) is checked for copies too."""
    monkeypatch.setattr(svds, "SHIFT_INVERT_MAX_NNZ", 0)
    monkeypatch.setattr(svds, "SHIFT_INVERT_C_MAX_NNZ", 0)
    for key in ("1d-circular-seed3", "1d-circular-k-straddles"):
        w, shape, kw, k = REPEATED[key]
        ref = dense_sv(w, shape, **kw)
        s = tc.singular_values(w, shape, k=k, which="smallest", method="svds", **kw)
        np.testing.assert_allclose(s.values, ref[-k:], rtol=0, atol=1e-8 * ref[0])


def test_groups_with_fewer_values_than_k_take_their_dense_svd():
    a, b = seeded((1, 1, 3, 3), 7), seeded((1, 1, 3, 3), 8)
    w = np.concatenate([a, b, a, b])  # four groups, two distinct, of one output: each block is 1 x 9
    ref = dense_sv(w, (4, 3, 3), groups=4)
    for k, which in [(3, "largest"), (2, "smallest"), (3, "smallest")]:
        s = tc.singular_values(w, (4, 3, 3), groups=4, k=k, which=which, method="svds")
        np.testing.assert_allclose(s.values, ends(ref, k, which), rtol=1e-12)


def test_top_eigenpairs_of_a_diagonal_operator_with_multiplicities():
    """A diagonal operator never mixes coordinates: one Krylov space holds one direction of each
    eigenspace. The deflated check must still return every copy, with orthonormal vectors."""
    d = np.concatenate([[9.0, 9.0, 9.0, 7.0, 7.0, 5.0], np.linspace(0.0, 3.0, 194)])
    op = LinearOperator((200, 200), matvec=lambda x: d * x, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(200)
    lam, V = lanczos.top_eigenpairs(op, 6, 1e-12, v0, 20)
    np.testing.assert_allclose(lam, [9, 9, 9, 7, 7, 5], rtol=1e-10)
    np.testing.assert_allclose(V.T @ V, np.eye(6), atol=1e-8)
    np.testing.assert_allclose(d[:, None] * V, V * lam, atol=1e-8)


@settings(max_examples=30, deadline=None)
@given(groups=st.integers(1, 3), cout_g=st.integers(1, 2), cin_g=st.integers(1, 2),
       kernel=st.sampled_from([(3,), (2,), (3, 3), (1, 2)]), n=st.integers(5, 9),
       mode=st.sampled_from(MODES), equal=st.booleans(), k=st.integers(1, 4),
       which=st.sampled_from(["largest", "smallest"]), seed=st.integers(0, 2**16))
def test_svds_matches_the_dense_svd_on_random_grouped_layers(groups, cout_g, cin_g, kernel, n, mode,
                                                            equal, k, which, seed):
    shape_g = (cout_g, cin_g, *kernel)
    w = equal_groups(seed, groups, shape_g, 2) if equal else seeded((groups * cout_g, cin_g, *kernel), seed)
    shape = (groups * cin_g, *(n,) * len(kernel))
    kw = dict(padding=1, groups=groups, padding_mode=mode)
    ref = dense_sv(w, shape, **kw)
    assume(k < ref.size)
    s = tc.singular_values(w, shape, k=k, which=which, method="svds", **kw)
    np.testing.assert_allclose(s.values, ends(ref, k, which), rtol=0, atol=1e-8 * ref[0])


# --------------------------------------------------------------------------- zero layers


def padding_only():
    """Only the off-centre taps are nonzero, and with dilation = padding = 25 on a 20 x 20
    input they read nothing but zero padding: the matrix is 0."""
    w = np.ones((3, 2, 3, 3))
    w[:, :, 1, 1] = 0
    return w, (2, 20, 20), dict(padding=25, dilation=25)


ZERO = {
    "all-zero": (np.zeros((3, 2, 3, 3)), (2, 20, 20), dict(padding=1)),
    "all-zero-wide": (np.zeros((2, 3, 3, 3)), (3, 20, 20), dict(padding=1, stride=2)),
    "taps-read-only-padding": padding_only(),
    "all-zero-circular": (np.zeros((2, 2, 3, 3)), (2, 12, 12), dict(padding=1, padding_mode="circular")),
    "all-zero-complex": (np.zeros((2, 2, 3), dtype=complex), (2, 300), dict(padding=1)),
    "all-zero-depthwise": (np.zeros((4, 1, 3, 3)), (4, 10, 10), dict(padding=1, groups=4)),
}


@pytest.mark.parametrize("case", ZERO.values(), ids=ZERO.keys())
def test_a_zero_layer_has_zero_singular_values_everywhere(case):
    w, shape, kw = case
    assert not dense_sv(w, shape, **kw).any()
    fft = kw.get("padding_mode") == "circular"
    methods = ["auto", "dense", "svds"] + (["fft"] if fft else [])
    for method in methods:
        assert tc.operator_norm(w, shape, method=method, **kw) == 0.0, method
        assert tc.condition_number(w, shape, method=method, **kw) == np.inf, method
        for which in ("largest", "smallest"):
            s = tc.singular_values(w, shape, k=3, which=which, method=method, **kw)
            np.testing.assert_array_equal(s.values, np.zeros(3))
        if method != "svds":
            assert not tc.singular_values(w, shape, method=method, **kw).values.any()


def test_a_zero_group_next_to_a_live_one():
    w = np.concatenate([seeded((2, 2, 3, 3), 8), np.zeros((2, 2, 3, 3))])
    kw = dict(padding=1, groups=2)
    ref = dense_sv(w, (4, 12, 12), **kw)
    for which in ("largest", "smallest"):
        s = tc.singular_values(w, (4, 12, 12), k=4, which=which, method="svds", **kw)
        np.testing.assert_allclose(s.values, ends(ref, 4, which), rtol=0, atol=1e-9 * ref[0])
    assert tc.condition_number(w, (4, 12, 12), method="svds", **kw) == np.inf


# --------------------------------------------------------------------------- weights


def with_one(value, dtype=float):
    w = np.ones((3, 2, 3, 3), dtype=dtype)
    w[0, 1, 2, 0] = value
    return w


CALLS = {
    "operator_norm": lambda w: tc.operator_norm(w, (2, 20, 20), padding=1),
    "operator_norm-fft": lambda w: tc.operator_norm(w, (2, 20, 20), padding=1, padding_mode="circular"),
    "singular_values-auto-k": lambda w: tc.singular_values(w, (2, 20, 20), padding=1, k=2),
    "singular_values-svds-smallest": lambda w: tc.singular_values(w, (2, 20, 20), padding=1, k=2,
                                                                  which="smallest", method="svds"),
    "singular_values-dense": lambda w: tc.singular_values(w, (2, 6, 6), padding=1, method="dense"),
    "singular_values-fft": lambda w: tc.singular_values(w, (2, 6, 6), padding=1, padding_mode="circular"),
    "condition_number": lambda w: tc.condition_number(w, (2, 20, 20), padding=1),
    "condition_number-svds": lambda w: tc.condition_number(w, (2, 20, 20), padding=1, method="svds"),
}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_non_finite_weight_is_refused_by_name(call, bad):
    with pytest.raises(ValueError, match=r"weight must be finite \(no NaN or inf\) to have singular "
                                         r"values; got 1 non-finite entry of 54, the first "
                                         r"weight\[0, 1, 2, 0\] = -?(nan|inf)\."):
        call(with_one(bad))


def test_non_finite_weight_counts_every_entry_complex_and_torch():
    w = np.full((3, 2, 3, 3), np.nan)
    with pytest.raises(ValueError, match=r"got 54 non-finite entries of 54, the first weight\[0, 0, 0, 0\] = nan"):
        tc.operator_norm(w, (2, 20, 20), padding=1)
    with pytest.raises(ValueError, match=r"got 1 non-finite entry .*weight\[0, 1, 2, 0\] = \(1\+nanj\)"):
        tc.singular_values(with_one(complex(1, np.nan), complex), (2, 20, 20), padding=1, k=2)
    with pytest.raises(ValueError, match=r"weight must be finite .*got 1 non-finite entry"):
        tc.condition_number(torch.from_numpy(with_one(np.inf)), (2, 20, 20), padding=1)


@pytest.mark.parametrize("scale", [1e200, 1e-200], ids=["huge", "tiny"])
def test_extreme_weights_scale_exactly(scale):
    """Squaring 1e200 overflows and 1e-200 underflows in ``A^H A``: the weight is scaled by a
    power of two first, and the values back."""
    w = seeded((3, 2, 3, 3), 9)
    ref = dense_sv(w, (2, 20, 20), padding=1)
    for which in ("largest", "smallest"):
        s = tc.singular_values(w * scale, (2, 20, 20), padding=1, k=2, which=which, method="svds")
        np.testing.assert_allclose(s.values / scale, ends(ref, 2, which), rtol=1e-9)
    assert tc.operator_norm(w * scale, (2, 20, 20), padding=1) / scale == pytest.approx(ref[0], rel=1e-9)
    assert tc.condition_number(w * scale, (2, 20, 20), padding=1, method="svds") == \
        pytest.approx(ref[0] / ref[-1], rel=1e-6)
    dense = tc.singular_values(w * scale, (2, 8, 8), padding=1, padding_mode="circular", method="dense")
    np.testing.assert_allclose(dense.values / scale, dense_sv(w, (2, 8, 8), padding=1, padding_mode="circular"),
                               rtol=1e-12, atol=1e-14)


def test_lanczos_that_does_not_converge_says_what_to_do(monkeypatch):
    def no_convergence(*args, **kwargs):
        raise ArpackNoConvergence("ARPACK error -1: No convergence", np.zeros(0), np.zeros((1, 0)))

    monkeypatch.setattr(lanczos, "eigsh", no_convergence)
    w = seeded((3, 2, 3, 3), 10)
    with pytest.raises(ValueError, match=r"Lanczos did not converge to the 2 largest singular values of this "
                                         r"1,200 x 800 layer in \d+ restarts: use a larger tol \(got tol=1e-12\), "
                                         r"or method='dense'"):
        tc.singular_values(w, (2, 20, 20), padding=1, k=2, method="svds")
    with pytest.raises(ValueError, match=r"Lanczos did not converge to the 1 largest singular values"):
        tc.singular_values(w, (2, 20, 20), padding=1, k=2, which="smallest", method="svds")
