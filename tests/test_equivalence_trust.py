"""The equivalence API never passes a wrong answer: a nonlinear or affine callable, NaN or
inf, a tolerance that is no number, a dtype coarser than the tolerance, a user callable that
exits or raises, a shape too large to probe — each is refused or fails, saying why."""

import re

import numpy as np
import pytest

import toeplitz_conv as tc
from toeplitz_conv.probe import ProbeError

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.usefixtures("float64")

W_POS = torch.from_numpy(np.abs(np.random.default_rng(0).standard_normal((2, 3, 3, 3))))  # all > 0
W_ONES = torch.ones(2, 3, 3, 3, dtype=torch.float64)  # taps 0 or 1: e_j -> squares equal
W = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 3, 3)))


def conv(w):
    return lambda x: F.conv2d(x, w, padding=1)


# --------------------------------------------------------------------------- linearity

NONLINEAR = [  # each one equals the convolution on every identity column
    pytest.param(lambda x: F.relu(F.conv2d(x, W_POS, padding=1)), W_POS, "superposition", id="relu-positive"),
    pytest.param(lambda x: F.conv2d(x, W_ONES, padding=1) ** 2, W_ONES, "superposition", id="square-ones"),
    pytest.param(lambda x: F.conv2d(x, W_POS, padding=1).abs(), W_POS, "scaling", id="abs-positive"),
]


@pytest.mark.parametrize("fn, w, prop", NONLINEAR)
def test_a_nonlinear_callable_is_refused_by_probe_matrix(fn, w, prop):
    with pytest.raises(ProbeError, match=rf"fn must be linear; it is not:.*{prop}.*fails by [0-9.e+-]+"):
        tc.probe_matrix(fn, (3, 5, 5))


@pytest.mark.parametrize("fn, w, prop", NONLINEAR)
def test_a_nonlinear_callable_fails_assert_conv_equal(fn, w, prop):
    with pytest.raises(AssertionError, match=rf"fn must be linear; it is not:.*{prop}"):
        tc.testing.assert_conv_equal(fn, w, (3, 5, 5), padding=1)


def test_a_callable_whose_matrix_depends_on_the_batch_fails_the_matrix_check():
    """Linear within each call (superposition and scaling hold), but not the probed matrix."""
    def fn(x):
        y = F.conv2d(x, W, padding=1)
        return y if len(x) == 1 or len(x) > 4 else 2 * y

    with pytest.raises(ProbeError, match=r"fn\(x\) = A x.*fails by") as info:
        tc.probe_matrix(fn, (3, 5, 5))
    assert "superposition" not in str(info.value) and "scaling" not in str(info.value)


def test_an_affine_callable_reports_the_offset():
    with pytest.raises(ProbeError, match=r"fn\(0\) = 0.*50 nonzero outputs, up to 0.5 in size.*bias"):
        tc.probe_matrix(lambda x: F.conv2d(x, W, padding=1) + 0.5, (3, 5, 5))
    with pytest.raises(AssertionError, match=r"fn must be linear, fn\(0\) = 0.*up to 0.5"):
        tc.testing.assert_conv_equal(lambda x: F.conv2d(x, W, padding=1) + 0.5, W, (3, 5, 5), padding=1)


def test_the_linearity_check_passes_linear_maps_in_float32_and_costs_one_call():
    calls = []

    def fn(x):
        y = F.conv2d(x, W.float(), padding=1)  # numpy refused: then torch from the first call on
        calls.append(len(x))
        return y

    A = tc.probe_matrix(fn, (3, 5, 5), dtype=np.float32)
    assert A.dtype == np.float32
    assert calls == [1, 75, 4]  # the zero probe, the identity in one chunk, 4 random probes
    tc.testing.assert_conv_equal(conv(W.float()), W.float(), (3, 5, 5), padding=1, rtol=1e-6)


# --------------------------------------------------------------------------- NaN, inf, tolerances


def test_nan_or_inf_in_the_output_fails_saying_where():
    with pytest.raises(ProbeError, match=r"fn must return finite values.*nan at output \(0, 0, 0\).*zero input"):
        tc.probe_matrix(lambda x: F.conv2d(x, W, padding=1) * np.nan, (3, 5, 5))

    def inf_at(x):  # column 7 (input pixel (0, 1, 2)) hits output row 3 with inf
        y = F.conv2d(x, W, padding=1).clone()
        y.view(len(x), -1)[:, 3] += torch.where(x.reshape(len(x), -1)[:, 7] != 0, np.inf, 0.0)
        return y

    with pytest.raises(ProbeError, match=r"inf at output \(0, 0, 3\).*input pixel \(0, 1, 2\)"):
        tc.probe_matrix(inf_at, (3, 5, 5))
    with pytest.raises(AssertionError, match=r"fn must return finite values.*inf at output \(0, 0, 3\)"):
        tc.testing.assert_conv_equal(inf_at, W, (3, 5, 5), padding=1)


def test_nan_in_both_matrices_is_not_equal():
    A = np.array([[np.nan, 0.0], [0.0, np.inf]])
    with pytest.raises(AssertionError, match=r"2 of 4 entries differ.*\n.*expected nan, got nan"):
        tc.testing.assert_matrix_equal(A, A, (1, 2), (1, 2))
    w = W.clone()
    w[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"weight must be finite; got nan at weight\[0, 0, 0, 0\]"):
        tc.testing.assert_conv_equal(conv(w), w, (3, 5, 5), padding=1)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(rtol=float("nan")), ValueError, r"rtol must be a finite number >= 0; got rtol=nan"),
    (dict(rtol=-1e-7), ValueError, r"rtol must be a finite number >= 0; got rtol=-1e-07"),
    (dict(atol=float("inf")), ValueError, r"atol must be a finite number >= 0; got atol=inf"),
    (dict(atol="1e-6"), TypeError, r"atol must be a finite number >= 0; got '1e-6'"),
    (dict(rtol=True), TypeError, r"rtol must be a finite number >= 0; got True"),
])
def test_bad_tolerances_are_refused(kw, exc, match):
    with pytest.raises(exc, match=match):
        tc.testing.assert_conv_equal(conv(W), W, (3, 5, 5), padding=1, **kw)
    with pytest.raises(exc, match=match):
        tc.testing.assert_matrix_equal(np.eye(2), np.eye(2), (1, 2), (1, 2), **kw)


# --------------------------------------------------------------------------- dtype resolution


def test_a_float32_callable_at_a_float64_tolerance_says_the_dtype_is_why():
    fn = lambda x: F.conv2d(x.float(), W.float(), padding=1)  # noqa: E731
    with pytest.raises(AssertionError, match=r"fn returns float32, whose resolution ~1\.2e-07.*"
                                             r"too coarse for rtol=0, atol=1e-10.*use rtol=1e-05, atol=") as info:
        tc.testing.assert_conv_equal(fn, W, (3, 5, 5), padding=1, rtol=0, atol=1e-10)
    assert "kernel flipped" not in str(info.value)  # no structural diagnosis for rounding
    tc.testing.assert_conv_equal(fn, W, (3, 5, 5), padding=1, rtol=None, atol=None)  # by the dtype
    assert tc.testing.default_tolerance(np.float64, np.float32) == 1e-5
    assert tc.testing.default_tolerance(np.float64) == 1e-10


# --------------------------------------------------------------------------- memory, return types, shapes


def test_a_huge_input_shape_is_refused_before_any_call():
    def fn(x):
        raise AssertionError("called")

    with pytest.raises(ValueError, match=r"probe_matrix would need about .*TiB \(one probe input of "
                                         r"1,000,000,000,000 values"):
        tc.probe_matrix(fn, (1, 10**6, 10**6))


def test_a_dense_result_is_refused_from_the_first_columns():
    calls = []

    def dense(x):  # every output reads every input: a dense 4000 x 4000 matrix, 192 MB of triples
        calls.append(len(x))
        return x.reshape(len(x), -1).sum(1, keepdims=True) + x.reshape(len(x), -1)

    tc.set_memory_limit(20_000_000)
    try:
        with pytest.raises(ValueError, match=r"probe_matrix would need about .* \(about 4,000 nonzeros per "
                                             r"column in the first 100 of 4,000 columns"):
            tc.probe_matrix(dense, (4000,), batch=100)
    finally:
        tc.set_memory_limit(None)
    assert calls == [1, 100]


class ArrayLike:  # as jax.Array: converts through __array__
    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.a, dtype=dtype)


class Eager:  # as tf.Tensor: converts through .numpy()
    def __init__(self, a):
        self.a = a

    def numpy(self):
        return np.asarray(self.a)


def test_array_likes_are_accepted_and_other_types_named():
    C = tc.conv_matrix(np.arange(1.0, 7.0).reshape(2, 1, 3), (1, 8))
    base = lambda x: (C @ np.asarray(x).reshape(len(x), -1).T).T.reshape(len(x), 2, 6)  # noqa: E731
    for wrap in (ArrayLike, Eager, lambda a: a.tolist()):
        assert (tc.probe_matrix(lambda x, wrap=wrap: wrap(base(x)), (1, 8)) != C).nnz == 0
    with pytest.raises(TypeError, match=r"fn must return a numeric array .*; got object for a numpy input"):
        tc.probe_matrix(lambda x: object(), (1, 8))
    with pytest.raises(TypeError, match=r"fn must return a numeric array .*; got ndarray of dtype bool"):
        tc.probe_matrix(lambda x: x > 0, (1, 8))


@pytest.mark.parametrize("shape, match", [
    ((True, 5, 5), r"input_shape must be a non-empty tuple of positive ints .*; got input_shape=\(True, 5, 5\): "
                   r"entry 0 is a bool"),
    ((3, 5, 5.0), r"got input_shape=\(3, 5, 5\.0\): entry 2 is a float"),
    ((3, 0, 5), r"got input_shape=\(3, 0, 5\): entry 1 is 0"),
    ((3, 5, -2), r"got input_shape=\(3, 5, -2\): entry 2 is -2"),
    ((), r"input_shape must be a non-empty tuple.*; got input_shape=\(\)"),
])
def test_input_shape_entries_are_named(shape, match):
    with pytest.raises(ValueError, match=match):
        tc.probe_matrix(lambda x: x, shape)
    with pytest.raises(ValueError, match=match):
        tc.testing.assert_conv_equal(conv(W), W, shape, padding=1)


def test_input_shape_as_an_array_is_accepted():
    A = tc.probe_matrix(conv(W), np.array([3, 5, 5]))
    assert A.shape == (50, 75)


# --------------------------------------------------------------------------- verify --against


USER = """\
import sys
import torch
import torch.nn.functional as F

def relu(x, w, **kw):
    return F.relu(F.conv2d(x, w.abs(), **kw))

def float32(x, w, **kw):
    return F.conv2d(x.float(), w.float(), **kw)

def exits(x, w, **kw):
    sys.exit(0)

def interrupted(x, w, **kw):
    raise KeyboardInterrupt

def helper(x):
    raise RuntimeError("my own bug")

def raises(x, w, **kw):
    return helper(x)

def value_error(x, w, **kw):
    raise ValueError("bad value inside")
"""

LAYER = ["--input", "3x5x5", "--kernel", "2x3x3x3", "--padding", "1"]


def verify(tmp_path, capsys, name, *extra):
    from toeplitz_conv.cli import main

    (tmp_path / "user_conv.py").write_text(USER)
    code = main(["verify", "--against", f"{tmp_path / 'user_conv.py'}:{name}", *LAYER, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_against_a_nonlinear_callable_exits_1(tmp_path, capsys):
    code, out, _ = verify(tmp_path, capsys, "relu")
    assert code == 1 and "is NOT the Conv2d" in out and "fn must be linear; it is not" in out


def test_verify_against_follows_the_dtype(tmp_path, capsys):
    code, out, _ = verify(tmp_path, capsys, "float32")
    assert code == 0, out
    assert "rtol 1e-05, atol 1e-05: the default for float32 output" in out
    code, out, _ = verify(tmp_path, capsys, "float32", "--atol", "1e-10")
    assert code == 1 and "fn returns float32, whose resolution" in out and "rtol 0, atol 1e-10 from --atol" in out
    from toeplitz_conv.cli import main

    assert main(["verify", "--against", "torch.nn.functional:conv2d", *LAYER]) == 0
    assert "rtol 1e-10, atol 1e-10: the default for float64 output" in capsys.readouterr().out


@pytest.mark.parametrize("name, match", [
    ("exits", r"called sys\.exit\(0\)"),
    ("interrupted", r"raised KeyboardInterrupt"),
    ("raises", r"raised RuntimeError: my own bug"),
    ("value_error", r"raised ValueError: bad value inside"),
])
def test_verify_against_a_callable_that_exits_or_raises_exits_1(tmp_path, capsys, name, match):
    code, out, err = verify(tmp_path, capsys, name)
    assert code == 1, (out, err)
    assert re.search(match, err) and "nothing was verified" in err, err
    assert "Traceback (most recent call last)" in err and "user_conv.py" in err
    assert "toeplitz_conv" not in err.split("Traceback")[1]  # the user's frames only
    if name == "raises":
        assert "in helper" in err and 'raise RuntimeError("my own bug")' in err


def test_the_dtype_note_only_when_the_dtype_is_why():
    A = np.array([[1.0, 2.0], [0.0, 3.0]])
    with pytest.raises(AssertionError, match=r"got is float32, whose resolution ~1\.2e-07.*too coarse for "
                                             r"rtol=0, atol=0"):
        tc.testing.assert_matrix_equal(A, (A * (1 + 2**-23)).astype(np.float32) + 0, (1, 2), (1, 2), rtol=0, atol=0)
    with pytest.raises(AssertionError) as info:  # float64 off by 1e-11 at atol=1e-12: not its resolution
        tc.testing.assert_matrix_equal(A, A + 1e-11, (1, 2), (1, 2), rtol=0, atol=1e-12)
    assert "resolution" not in str(info.value)
