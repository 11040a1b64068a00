"""The LU of a square layer by nested dissection of its grid: solves with ``C``, ``C^T`` and
``C^H`` against dense ones, on trees cut down to single positions, for every padding mode,
dilation, groups, even kernels and 1D/2D/3D; the cost estimate against what is stored; and the
refusals (a layer that is not square on one grid, a breakdown of the pivots kept in a front)."""

import numpy as np
import pytest

import toeplitz_conv as tc
from helpers import MODES
from toeplitz_conv import dissection
from toeplitz_conv.geometry import conv_geometry

EPS = np.finfo(np.float64).eps

SQUARE = {
    "3x3": ((3, 3, 3, 3), (3, 9, 8), dict(padding=1)),
    "groups": ((4, 2, 3, 3), (4, 8, 7), dict(padding=1, groups=2)),
    "dilated": ((2, 2, 3, 3), (2, 9, 9), dict(padding=2, dilation=2)),
    "even-same": ((3, 3, 2, 4), (3, 7, 9), dict(padding="same")),
    "5-tap-1d": ((2, 2, 5), (2, 30), dict(padding=2)),
    "3d": ((2, 2, 3, 3, 3), (2, 5, 4, 6), dict(padding=1)),
    # a 1-tap axis: rows of the grid no tap joins, so parts of the tree touch nothing else
    "1x3": ((2, 2, 1, 3), (2, 9, 6), dict(padding="same", dilation=(1, 2))),
}


@pytest.mark.parametrize("leaf", [1, 64, 10**6])  # a front per position ... one front in all
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", SQUARE.values(), ids=SQUARE.keys())
def test_solves_match_dense_ones(case, mode, leaf, monkeypatch):
    monkeypatch.setattr(dissection, "LEAF_VARS", leaf)
    wshape, shape, kw = case
    rng = np.random.default_rng(3)
    for w in (rng.standard_normal(wshape), rng.standard_normal(wshape) + 1j * rng.standard_normal(wshape)):
        C = tc.conv_matrix(w, shape, padding_mode=mode, **kw).toarray()
        lu = dissection.GridLU(w, conv_geometry(w.shape, shape, padding_mode=mode, **kw))
        tol = 1e4 * EPS * np.linalg.cond(C)  # a forward error eps * cond, with room for pivot growth
        assert not lu.singular and lu.backward_error < 1e-11  # (circular fronts pivot least well)
        b = rng.standard_normal((C.shape[0], 3))
        for trans, M in (("N", C), ("T", C.T), ("H", C.conj().T)):
            ref = np.linalg.solve(M, b)
            scale = np.abs(ref).max()
            np.testing.assert_allclose(lu.solve(b, trans), ref, rtol=0, atol=tol * scale)
            np.testing.assert_allclose(lu.solve(b[:, 0], trans), ref[:, 0], rtol=0, atol=tol * scale)
            # refined once: backward stable, the residual at rounding level
            x = lu.solve(b, trans, refine=1)
            assert np.linalg.norm(M @ x - b) <= 64 * EPS * np.linalg.norm(M, 2) * np.linalg.norm(x)


def test_the_tree_cuts_the_grid_into_fronts(monkeypatch):
    """A 2D grid cut down to leaves of 2 positions: many fronts, each separator's front smaller
    than the grid's, and every position eliminated exactly once."""
    monkeypatch.setattr(dissection, "LEAF_VARS", 4)
    geom = conv_geometry((2, 2, 3, 3), (2, 16, 16), padding=1)
    tree = dissection._Tree(geom, 2)
    own, bnd = tree.sizes()
    assert len(tree.nodes) > 50 and np.all(own <= 16) and np.all(own + bnd < 16 * 16)
    assert np.array_equal(np.sort(np.concatenate([n.own for n in tree.nodes])), np.arange(256))
    # a separator (the last node) is one row or column of the grid
    assert own[-1] == 16 and bnd[-1] == 0


def test_cost_counts_what_is_stored():
    w = np.random.default_rng(0).standard_normal((8, 8, 3, 3))
    geom = conv_geometry(w.shape, (8, 20, 20), padding=1)
    macs, factors, front = dissection.lu_cost(geom)
    lu = dissection.GridLU(w, geom)
    stored = sum(f[3].nbytes + f[5].nbytes + f[6].nbytes for f in lu._fronts)
    assert stored == factors and macs > 0 and front > 0
    assert dissection.lu_cost(geom, itemsize=16)[1] == 2 * factors


@pytest.mark.parametrize("wshape, shape, kw, why", [
    ((3, 2, 3, 3), (2, 8, 8), dict(padding=1), "2 input channels but 3 output channels"),
    ((2, 2, 3, 3), (2, 8, 8), dict(padding=1, stride=2), r"input positions \(8, 8\) but output positions \(4, 4\)"),
    ((2, 2, 3, 3), (2, 8, 8), dict(), r"input positions \(8, 8\) but output positions \(6, 6\)"),
])
def test_applies_only_to_square_layers_on_one_grid(wshape, shape, kw, why):
    import re

    reason = dissection.lu_applies(conv_geometry(wshape, shape, **kw))
    assert reason is not None and re.fullmatch(why, reason)


def test_a_singular_own_block_is_reported(monkeypatch):
    """``y[i] = x[i-1] + x[i+1]`` on 6 positions is invertible, but a front of one position
    has the zero centre tap as its own block: pivots kept inside fronts break down, and the
    LU says so (its caller takes another route)."""
    w = np.array([[[1.0, 0.0, 1.0]]])
    geom = conv_geometry(w.shape, (1, 6), padding=1)
    assert abs(np.linalg.det(tc.conv_matrix(w, (1, 6), padding=1).toarray())) == pytest.approx(1.0)
    monkeypatch.setattr(dissection, "LEAF_VARS", 1)
    assert dissection.GridLU(w, geom).singular
    monkeypatch.setattr(dissection, "LEAF_VARS", 512)  # one front: LAPACK pivots across it
    lu = dissection.GridLU(w, geom)
    assert not lu.singular and lu.backward_error < 1e-15
