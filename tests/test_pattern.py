"""Structural properties of the built matrices: canonical CSR, exact nonzero counts, dot test.

The nonzero count for zero padding is checked against an independent count: convolving an
all-ones input with an all-ones kernel counts, for every output entry, the taps that read
inside the input — one stored entry each.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import toeplitz_conv as tc
from helpers import MODES, assert_adjoint, case, options
from toeplitz_conv.pattern import estimate_nnz

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


CASES = [
    case("1d", (3, 2, 3), (2, 11), stride=2, padding=1),
    case("1d-wide-kernel-dilated", (2, 1, 4), (1, 5), padding=3, dilation=2),
    case("2d-1x1", (4, 3, 1, 1), (3, 5, 6)),
    case("2d-kernel-eq-padded-input", (2, 3, 5, 4), (3, 3, 2), padding=1),
    case("2d-stride-gt-kernel", (2, 2, 2, 3), (2, 9, 11), stride=(3, 4), padding=(1, 0)),
    case("2d-dilation-pad", (3, 2, 3, 3), (2, 8, 7), dilation=(2, 3), padding=(2, 3)),
    case("2d-depthwise", (4, 1, 3, 3), (4, 6, 6), padding=1, groups=4),
    case("2d-groups-nonsquare", (4, 3, 2, 3), (6, 6, 7), stride=(2, 1), padding=(1, 2), groups=2),
    case("2d-same-even", (2, 3, 4, 2), (3, 6, 5), padding="same"),
    case("2d-small-input-big-kernel", (2, 2, 3, 5), (2, 3, 3), padding=(2, 2)),
    case("3d", (2, 2, 2, 3, 1), (2, 4, 5, 3), stride=(1, 2, 1), padding=(1, 0, 1)),
    case("3d-depthwise-dilated", (3, 1, 2, 2, 2), (3, 5, 4, 6), stride=(2, 1, 2), padding=(1, 1, 2),
          dilation=(2, 1, 3), groups=3),
]


def valid_for(c, mode):
    """torch's padding limits: reflect < input, circular <= input (per side)."""
    n = len(c["w"]) - 2
    if mode == "zeros" or isinstance(c["padding"], str):
        return True
    p = (c["padding"],) * n if isinstance(c["padding"], int) else c["padding"]
    return all((pj < ij) if mode == "reflect" else (pj <= ij) for pj, ij in zip(p, c["inp"][1:]))


def build(c, mode, seed=0):
    """The weight (positive entries) and the matrix of a case; skipped where torch refuses
    the padding for this mode."""
    if not valid_for(c, mode):
        pytest.skip("torch refuses this padding for this mode")
    W = np.random.default_rng(seed).uniform(0.5, 1.5, size=c["w"])  # positive: sums never cancel
    return W, tc.conv_matrix(W, c["inp"], padding_mode=mode, **options(c))


def assert_rows_sorted_unique(C):
    indptr, indices = C.indptr.astype(np.int64), C.indices.astype(np.int64)
    assert indptr[0] == 0 and indptr[-1] == C.nnz and np.all(np.diff(indptr) >= 0)
    assert indices.size == C.nnz and (C.nnz == 0 or (indices.min() >= 0 and indices.max() < C.shape[1]))
    row_of = np.repeat(np.arange(C.shape[0]), np.diff(indptr))
    same_row = row_of[1:] == row_of[:-1]
    assert np.all(np.diff(indices)[same_row] > 0), "column indices not strictly increasing within a row"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("c", CASES)
def test_structure(c, mode):
    W, C = build(c, mode)
    assert_rows_sorted_unique(C)
    assert C.has_canonical_format
    g = tc.conv_geometry(c["w"], c["inp"], padding_mode=mode, **options(c))
    assert tc.conv_pattern(g).nnz == C.nnz
    # every stored entry is a real one (positive weights: a sum of taps > 0) and none is missing
    dense = C.toarray()
    assert np.count_nonzero(dense) == C.nnz
    assert np.all(C.data > 0)

    est = estimate_nnz(g)
    if mode == "zeros":
        assert C.nnz == est
        # independent count: taps reading inside the input, per output entry
        n = len(c["w"]) - 2
        ones = getattr(F, f"conv{n}d")(torch.ones(1, *c["inp"], dtype=torch.float64),
                                       torch.ones(c["w"], dtype=torch.float64), **options(c))
        assert C.nnz == int(ones.sum())
    else:
        assert C.nnz <= est
        # the taps of a row (C_in/groups * prod(kernel)) bound its stored entries
        assert np.diff(C.indptr).max() <= int(np.prod(c["w"][1:]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("c", CASES)
def test_dot_test(c, mode):
    """(C u) . v == u . (C.T v), the adjoint test of every linear operator."""
    _, C = build(c, mode)
    assert tc.dot_test(C, rtol=1e-12) < 1e-12


TCASES = [
    case("1d-stride3", (2, 3, 3), (2, 5), stride=3, padding=1),
    case("2d-stride2-pad1", (3, 2, 3, 3), (3, 4, 5), stride=2, padding=1),
    case("2d-groups-dilation", (4, 2, 3, 2), (4, 3, 3), stride=(2, 1), dilation=(1, 3), groups=2),
    case("3d", (2, 2, 2, 3, 2), (2, 3, 2, 3), stride=(2, 1, 2), padding=(0, 1, 1), dilation=(1, 2, 1)),
]


@pytest.mark.parametrize("c", TCASES)
def test_transpose_dot_test(c):
    """The transposed-conv matrix T (built on its own) is the adjoint of the conv matrix C:
    (T u) . v == u . (C v) with C = conv_matrix of the same weight on T's output size."""
    W = np.random.default_rng(2).standard_normal(c["w"])
    T = tc.conv_transpose_matrix(W, c["inp"], **options(c))
    assert_rows_sorted_unique(T)
    n = len(c["w"]) - 2
    out_sp = tc.conv_transpose_output_size(c["inp"][1:], c["w"][2:], stride=c["stride"],
                                           padding=c["padding"], dilation=c["dilation"])
    C = tc.conv_matrix(W, (c["w"][1] * c["groups"], *out_sp), **options(c))
    assert C.shape == T.shape[::-1], n
    assert_adjoint(T, C)


def test_pattern_is_cached_and_read_only():
    g = tc.conv_geometry((4, 2, 3, 3), (2, 6, 6), padding=1, padding_mode="reflect")
    p = tc.conv_pattern(g)
    assert tc.conv_pattern(tc.conv_geometry((4, 2, 3, 3), (2, 6, 6), padding=1, padding_mode="reflect")) is p
    assert not p.src.flags.writeable and not p.cols.flags.writeable and not p.indptr.flags.writeable
    with pytest.raises(ValueError):
        p.src[0, 0] = 0
    C = tc.conv_matrix(np.ones((4, 2, 3, 3)), (2, 6, 6), padding=1, padding_mode="reflect")
    C.data[:] = 0  # the user's matrix is theirs: editing it leaves the cached pattern intact
    C.indices[:] = 0
    C2 = tc.conv_matrix(np.ones((4, 2, 3, 3)), (2, 6, 6), padding=1, padding_mode="reflect")
    assert C2.data.min() > 0 and np.all(np.diff(C2.indices[C2.indptr[0]:C2.indptr[1]]) > 0)


def test_estimate_nnz_bounds_other_modes_tightly():
    """Reflect/replicate/circular: the bound is the zeros count plus the padded taps."""
    for mode in MODES:
        g = tc.conv_geometry((2, 2, 3, 3), (2, 5, 5), padding=1, padding_mode=mode)
        C = tc.conv_matrix(np.ones((2, 2, 3, 3)), (2, 5, 5), padding=1, padding_mode=mode)
        assert C.nnz <= estimate_nnz(g) <= 2 * 2 * 25 * 9
