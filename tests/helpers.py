"""What several test files share: the geometry cases of the parametrize grids and the adjoint
check of a matrix against the one that should be its transpose."""

import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator

import toeplitz_conv as tc

MODES = ["zeros", "reflect", "replicate", "circular"]


def case(id, w, inp, *, stride=1, padding=0, dilation=1, groups=1):
    """One geometry of a grid: weight shape, one sample's input shape and the options."""
    return pytest.param(dict(w=w, inp=inp, stride=stride, padding=padding, dilation=dilation,
                             groups=groups), id=id)


def options(c):
    """The geometry options of a case, as keyword arguments."""
    return {k: c[k] for k in ("stride", "padding", "dilation", "groups")}


def per_axis(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def assert_adjoint(forward, adjoint, rtol=1e-12):
    """The dot test of two matrices built independently: ``adjoint`` must be ``forward``'s
    transpose, ``(F u) . v == u . (A v)`` (vectors and blocks, :func:`toeplitz_conv.dot_test`)."""
    assert adjoint.shape == forward.shape[::-1]
    pair = LinearOperator(forward.shape, dtype=np.result_type(forward.dtype, adjoint.dtype),
                          matvec=lambda u: forward @ u, rmatvec=lambda v: adjoint.conj() @ v,
                          matmat=lambda U: forward @ U, rmatmat=lambda V: adjoint.conj() @ V)
    tc.dot_test(pair, rtol=rtol)
