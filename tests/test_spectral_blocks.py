"""Block-diagonal layers (windows that never overlap): every singular value, with its
multiplicity, against the dense SVD of the explicit matrix; 'auto' takes them."""

import numpy as np
import pytest

import toeplitz_conv as tc
from toeplitz_conv.blockdiag import blocks_apply


def dense_sv(w, shape, **kw):
    return np.linalg.svd(tc.conv_matrix(w, shape, **kw).toarray(), compute_uv=False)


BLOCKS = {
    "1x1-s2-shortcut": ((8, 4, 1, 1), (4, 7, 6), dict(stride=2)),  # odd size: a row never read
    "1x1-s1": ((3, 5, 1, 1), (5, 4, 3), dict()),  # W kron I: each value 12 times
    "patchify-4x4-s4": ((6, 3, 4, 4), (3, 16, 12), dict(stride=4)),
    "patchify-leftover": ((6, 3, 4, 4), (3, 18, 13), dict(stride=4)),  # columns read by no window
    "2x2-s2-pad1-border": ((4, 3, 2, 2), (3, 9, 8), dict(stride=2, padding=1)),  # border blocks keep 1-2 taps
    "3x3-s3-pad2-border": ((5, 3, 3, 3), (3, 10, 11), dict(stride=3, padding=(2, 1))),
    "window-in-padding-only": ((2, 2, 2), (2, 3), dict(stride=3, padding=3)),  # zero rows
    "wide-block": ((2, 3, 2, 2), (3, 8, 8), dict(stride=2)),  # C_out < C_in k: zeros fill
    "stride-beyond-kernel": ((3, 2, 2, 3), (2, 11, 13), dict(stride=(3, 4))),
    "dilated": ((4, 2, 2, 2), (4, 8, 8), dict(stride=3, dilation=2, padding=1, groups=2)),
    "groups-equal": (np.concatenate([np.ones((2, 1, 2, 2)), np.ones((2, 1, 2, 2))]), (2, 6, 6),
                     dict(stride=2, groups=2)),
    "depthwise": ((4, 1, 2, 2), (4, 6, 4), dict(stride=2, groups=4)),
    "1d": ((3, 2, 3), (2, 13), dict(stride=5, padding=4)),
    "3d": ((2, 5, 2, 2, 2), (5, 4, 5, 6), dict(stride=2, padding=1)),
    "circular-no-padding": ((4, 3, 2, 2), (3, 8, 8), dict(stride=2, padding_mode="circular")),
    "reflect-no-padding": ((4, 3, 1, 1), (3, 5, 5), dict(stride=2, padding_mode="reflect")),
}


@pytest.mark.parametrize("complex_weight", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("case", BLOCKS.values(), ids=BLOCKS.keys())
def test_blocks_equal_the_dense_svd_with_multiplicities(case, complex_weight):
    wshape, shape, kw = case
    rng = np.random.default_rng(2)
    w = rng.standard_normal(wshape) if isinstance(wshape, tuple) else wshape
    if complex_weight:
        w = w + 1j * rng.standard_normal(w.shape)
    ref = dense_sv(w, shape, **kw)
    s = tc.singular_values(w, shape, **kw)
    assert s.method == "blocks"
    assert s.values.shape == ref.shape  # every value, zeros included
    np.testing.assert_allclose(s.values, ref, rtol=0, atol=1e-12 * ref[0])
    assert np.count_nonzero(s.values) == np.linalg.matrix_rank(tc.conv_matrix(w, shape, **kw).toarray())
    for which in ("largest", "smallest"):
        top = tc.singular_values(w, shape, k=2, which=which, **kw)
        assert top.method == "blocks"
        np.testing.assert_allclose(top.values, ref[:2] if which == "largest" else ref[-2:], atol=1e-12 * ref[0])
    assert tc.operator_norm(w, shape, **kw) == pytest.approx(ref[0], rel=1e-12)
    cond = tc.condition_number(w, shape, **kw)
    assert cond == (np.inf if ref[-1] <= max(s.shape) * 2.3e-16 * ref[0] else pytest.approx(ref[0] / ref[-1], rel=1e-9))


def test_blocks_of_a_large_shortcut_without_the_matrix():
    """A 1x1 stride-2 256 -> 512 shortcut on 28x28 (a 100,352 x 200,704 matrix): one 512 x 256
    SVD, each value 196 times, then 100,352 - 50,176 zeros... and the dense answer of one
    position's block says the same."""
    w = np.random.default_rng(0).standard_normal((512, 256, 1, 1)) / 16
    s = tc.singular_values(w, (256, 28, 28), stride=2)
    assert s.method == "blocks" and s.shape == (512 * 14 * 14, 256 * 28 * 28) and len(s) == 100352
    block = np.linalg.svd(w[:, :, 0, 0], compute_uv=False)
    np.testing.assert_allclose(s.values[:256 * 196], np.repeat(block, 196), rtol=1e-13)
    assert not s.values[256 * 196:].any()  # C_out > C_in: the rest are zeros
    assert tc.operator_norm(w, (256, 28, 28), stride=2) == pytest.approx(block[0], rel=1e-14)


@pytest.mark.parametrize("kw, reason", [
    (dict(stride=2), r"the stride \(2, 2\) is smaller than the dilated kernel extent \(3, 3\) \(windows overlap\)"),
    (dict(stride=3, dilation=2), r"the stride \(3, 3\) is smaller than the dilated kernel extent \(5, 5\)"),
    (dict(stride=3, padding=1, padding_mode="reflect"), r"padding_mode='reflect' with padding"),
], ids=["overlap", "dilated-overlap", "reflect-padding"])
def test_blocks_refused_with_the_reason(kw, reason):
    w = np.ones((2, 2, 3, 3))
    geom = tc.conv_geometry(w.shape, (2, 12, 12), **kw)
    assert blocks_apply(geom) is not None
    with pytest.raises(ValueError, match=r"method='blocks' needs a block-diagonal layer: .*got " + reason):
        tc.singular_values(w, (2, 12, 12), method="blocks", **kw)
    assert tc.singular_values(w, (2, 12, 12), **kw).method != "blocks"


def test_auto_prefers_blocks_then_fft():
    w = np.random.default_rng(3).standard_normal((4, 4, 1, 1))
    # a circular 1x1 layer is both circulant and block diagonal: blocks (one SVD, not one per frequency)
    assert tc.singular_values(w, (4, 8, 8), padding_mode="circular").method == "blocks"
    np.testing.assert_allclose(tc.singular_values(w, (4, 8, 8), padding_mode="circular").values,
                               tc.singular_values(w, (4, 8, 8), padding_mode="circular", method="fft").values,
                               rtol=1e-12)
    w3 = np.random.default_rng(3).standard_normal((4, 4, 3, 3))
    assert tc.singular_values(w3, (4, 8, 8), padding=1, padding_mode="circular").method == "fft"
    assert tc.singular_values(w3, (4, 8, 8), padding=1).method == "dense"
