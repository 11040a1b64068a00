"""A catalogue of planted mistakes, each checked against the call the user meant: the diagnosis
must name the corrected call, and that call must then pass. The mistakes are the ones people
make when porting a convolution between frameworks or writing one by hand: a flip, swapped or
transposed kernel axes, another padding size, mode or side (TensorFlow's and ONNX's SAME,
one-sided crops of transposed convolutions), a stride or dilation forgotten, a loop bound off
by one, channels-last batches; some of them two or three at once. TensorFlow's, JAX's and ONNX's
rules are emulated with torch (explicit pads, permutes), so no other framework is needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import toeplitz_conv as tc
from toeplitz_conv import diagnose
from toeplitz_conv.testing import assert_conv_equal

rng = np.random.default_rng(3)
W = rng.standard_normal((4, 3, 3, 3))       # (C_out, C_in, k, k)
SQ = rng.standard_normal((3, 3, 3, 3))      # square channels
T = rng.standard_normal((3, 2, 3, 3))       # a transposed convolution's (C_in, C_out, k, k)
T5 = rng.standard_normal((3, 2, 5, 5))
X = (3, 7, 7)


def t(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a))


def tf_same(n: int, k: int, s: int, lower: bool = False) -> tuple[int, int]:
    """TensorFlow's SAME (ONNX's SAME_UPPER; SAME_LOWER when ``lower``): out = ceil(n / s)."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    lo = total - total // 2 if lower else total // 2
    return lo, total - lo


def tf_conv(w: np.ndarray, s: int, lower: bool = False) -> Callable[[Any], torch.Tensor]:
    """tf.nn.conv2d(x, w, s, 'SAME') on NCHW batches (ONNX Conv with auto_pad=SAME_UPPER/LOWER)."""
    def fn(x: Any) -> torch.Tensor:
        x = t(x)
        (a, b), (c, d) = (tf_same(n, w.shape[-1], s, lower) for n in x.shape[2:])
        return F.conv2d(F.pad(x, (c, d, a, b)), t(w), stride=s)
    return fn


def tf_conv_transpose(w: np.ndarray, s: int, lower: bool = False, flip: bool = False) -> Callable[[Any], torch.Tensor]:
    """tf.nn.conv2d_transpose(x, w, output_shape=n*s, s, 'SAME'): the full transposed convolution
    cropped to n*s, the odd crop at the end (at the start for ONNX's SAME_LOWER). ``flip``: JAX's
    lax.conv_transpose without transpose_kernel, which does not rotate the kernel."""
    k = w.shape[-1]

    def fn(x: Any) -> torch.Tensor:
        x = t(x)
        wt = t(w).flip(2, 3) if flip else t(w)
        full = F.conv_transpose2d(x, wt, stride=s)
        n = x.shape[-1]
        crop = (n - 1) * s + k - n * s
        lo = crop - crop // 2 if lower else crop // 2
        return full[..., lo:lo + n * s, lo:lo + n * s]
    return fn


def nhwc(f: Callable[[torch.Tensor], torch.Tensor], reads: bool = True, returns: bool = True) -> Callable[[Any], torch.Tensor]:
    def fn(x: Any) -> torch.Tensor:
        x = t(x)
        y = f(x.permute(0, 3, 1, 2) if reads else x)
        return y.permute(0, 2, 3, 1) if returns else y
    return fn


@dataclass
class Case:
    name: str
    fn: Callable[[Any], Any]
    call: dict[str, Any]              # what the user checks fn against (weight, input_shape, ...)
    said: list[str]                   # what the diagnosis must say (the corrected call's parts)
    corrected: dict[str, Any] = field(default_factory=dict)  # the call that then passes


def conv(w: np.ndarray, **kw: Any) -> Callable[[Any], torch.Tensor]:
    return lambda x: F.conv2d(t(x), t(w), **kw)


CASES = [
    # the kernel
    Case("a true convolution (flipped kernel)", conv(W[..., ::-1, ::-1].copy(), padding=1),
         dict(weight=W, input_shape=X, padding=1), ["kernel flipped"],
         dict(weight=W[..., ::-1, ::-1].copy())),
    Case("(C_in, C_out) read as (C_out, C_in)", conv(SQ.swapaxes(0, 1).copy(), padding=1),
         dict(weight=SQ, input_shape=X, padding=1), ["channels swapped"], dict(weight=SQ.swapaxes(0, 1).copy())),
    Case("swapped and flipped", conv(SQ.swapaxes(0, 1)[..., ::-1, ::-1].copy(), padding=1),
         dict(weight=SQ, input_shape=X, padding=1), ["channels swapped", "kernel flipped"],
         dict(weight=SQ.swapaxes(0, 1)[..., ::-1, ::-1].copy())),
    Case("a kernel read (kW, kH)", conv(W.swapaxes(2, 3).copy(), padding=1),
         dict(weight=W, input_shape=X, padding=1), ["kernel transposed"], dict(weight=W.swapaxes(2, 3).copy())),
    # padding modes
    Case("reflect where zeros", lambda x: F.conv2d(F.pad(t(x), (1,) * 4, mode="reflect"), t(W)),
         dict(weight=W, input_shape=X, padding=1), ["padding_mode='reflect'"], dict(padding_mode="reflect")),
    Case("numpy's symmetric where torch's reflect",
         lambda x: F.conv2d(t(np.pad(np.asarray(x), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="symmetric")), t(W)),
         dict(weight=W, input_shape=X, padding=2, padding_mode="reflect"), ["padding_mode='symmetric'"],
         dict(padding_mode="symmetric")),
    Case("circular where replicate", lambda x: F.conv2d(F.pad(t(x), (1,) * 4, mode="circular"), t(W)),
         dict(weight=W, input_shape=X, padding=1, padding_mode="replicate"), ["padding_mode='circular'"],
         dict(padding_mode="circular")),
    # padding sizes and sides
    Case("padding forgotten", conv(W), dict(weight=W, input_shape=X, padding=1),
         ["padding=((0, 0), (0, 0)) (= 'VALID')", "fn pads by 0, not 1"], dict(padding=0)),
    Case("padding on one side only", lambda x: F.conv2d(F.pad(t(x), (2, 0, 2, 0)), t(W)),
         dict(weight=W, input_shape=X, padding=1), ["padding=((2, 0), (2, 0))"], dict(padding=((2, 0), (2, 0)))),
    Case("TF's SAME (stride 2, even size) checked as padding=1", tf_conv(W, 2),
         dict(weight=W, input_shape=(3, 8, 8), stride=2, padding=1), ["(= 'SAME_UPPER')"], dict(padding="SAME")),
    Case("ONNX SAME_LOWER checked as SAME", tf_conv(W, 2, lower=True),
         dict(weight=W, input_shape=(3, 8, 8), stride=2, padding="SAME"), ["(= 'SAME_LOWER')"],
         dict(padding="SAME_LOWER")),
    # stride and dilation
    Case("stride ignored (CS231n loop with step 1)", conv(W, padding=1),
         dict(weight=W, input_shape=X, stride=2, padding=1), ["stride=1"], dict(stride=1)),
    Case("stride 2 where 1", conv(W, stride=2, padding=1), dict(weight=W, input_shape=X, padding=1),
         ["stride=2"], dict(stride=2)),
    Case("dilation forgotten", conv(W, padding=2), dict(weight=W, input_shape=X, padding=2, dilation=2),
         ["dilation=1"], dict(dilation=1)),
    Case("dilation 2 where 1", conv(W, padding=1, dilation=2), dict(weight=W, input_shape=(3, 8, 8), padding=1),
         ["dilation=2"], dict(dilation=2)),
    Case("a stride on the rows only", conv(W, stride=(2, 1), padding=1), dict(weight=W, input_shape=X, stride=2, padding=1),
         ["stride=(2, 1)"], dict(stride=(2, 1))),
    # loop bounds (hand-written, CS231n style)
    Case("out = (H + 2p - k) // s without + 1", lambda x: F.conv2d(t(x), t(W), stride=2, padding=1)[..., :-1, :-1],
         dict(weight=W, input_shape=X, stride=2, padding=1), ["padding=((1, 0), (1, 0))"],
         dict(padding=((1, 0), (1, 0)))),
    Case("the first output row and column skipped", lambda x: F.conv2d(t(x), t(W), padding=1)[..., 1:, 1:],
         dict(weight=W, input_shape=X, padding=1), ["padding=((0, 1), (0, 1))"], dict(padding=((0, 1), (0, 1)))),
    Case("a stride and a one-sided pad", lambda x: F.conv2d(F.pad(t(x), (0, 2, 0, 2)), t(W), stride=2),
         dict(weight=W, input_shape=X, padding=1), ["padding=((0, 2), (0, 2))", "stride=2"],
         dict(padding=((0, 2), (0, 2)), stride=2)),
    # layouts
    Case("an NHWC callable checked as NCHW", nhwc(lambda x: F.conv2d(x, t(W), padding=1)),
         dict(weight=W, input_shape=(3, 6, 3), padding=1), ["layout='NHWC'"], dict(layout="NHWC")),
    Case("an NCHW callable checked as NHWC", conv(W, padding=1),
         dict(weight=W, input_shape=(3, 5, 3), padding=1, layout="NHWC"), ["layout='NCHW'"], dict(layout="NCHW")),
    Case("NHWC and flipped", nhwc(lambda x: F.conv2d(x, t(W).flip(2, 3), padding=1)),
         dict(weight=W, input_shape=(3, 6, 3), padding=1), ["layout='NHWC'", "kernel flipped"],
         dict(layout="NHWC", weight=W[..., ::-1, ::-1].copy())),
    Case("TF's SAME, NHWC, checked as NCHW with padding=1", nhwc(tf_conv(W, 2)),
         dict(weight=W, input_shape=(3, 8, 3), stride=2, padding=1), ["layout='NHWC'", "(= 'SAME_UPPER')"],
         dict(layout="NHWC", padding="SAME")),
    # transposed convolutions
    Case("tf.nn.conv2d_transpose SAME checked as torch's padding=1, output_padding=1", tf_conv_transpose(T, 2),
         dict(weight=T, input_shape=(3, 4, 4), transposed=True, stride=2, padding=1, output_padding=1),
         ["padding=((0, 1), (0, 1)) (= 'SAME_UPPER'), output_padding=(0, 0)"], dict(padding="SAME", output_padding=0)),
    Case("Keras Conv2DTranspose same, kernel 5", tf_conv_transpose(T5, 2),
         dict(weight=T5, input_shape=(3, 4, 4), transposed=True, stride=2, padding=2, output_padding=1),
         ["(= 'SAME_UPPER')"], dict(padding="SAME", output_padding=0)),
    Case("ONNX ConvTranspose SAME_LOWER checked as SAME_UPPER", tf_conv_transpose(T, 2, lower=True),
         dict(weight=T, input_shape=(3, 4, 4), transposed=True, stride=2, padding="SAME_UPPER"),
         ["(= 'SAME_LOWER')"], dict(padding="SAME_LOWER")),
    Case("lax.conv_transpose SAME (kernel not rotated)", tf_conv_transpose(T, 2, flip=True),
         dict(weight=T, input_shape=(3, 4, 4), transposed=True, stride=2, padding=1, output_padding=1),
         ["kernel flipped", "(= 'SAME_UPPER')"],
         dict(weight=T[..., ::-1, ::-1].copy(), padding="SAME", output_padding=0)),
    Case("output_padding forgotten", lambda x: F.conv_transpose2d(t(x), t(T), stride=2, padding=1),
         dict(weight=T, input_shape=(3, 4, 4), transposed=True, stride=2, padding=1, output_padding=1),
         ["output_padding=(0, 0)", "one smaller"], dict(output_padding=0)),
    Case("a hand-written backward without the rotation", lambda x: F.conv_transpose2d(t(x), t(T).flip(2, 3), padding=1),
         dict(weight=T, input_shape=(3, 5, 5), transposed=True, padding=1), ["kernel flipped"],
         dict(weight=T[..., ::-1, ::-1].copy())),
    Case("a transposed stride forgotten", lambda x: F.conv_transpose2d(t(x), t(T), padding=1),
         dict(weight=T, input_shape=(3, 4, 4), transposed=True, stride=2, padding=1, output_padding=1),
         ["stride=1"], dict(stride=1, output_padding=0)),
    Case("(C_out, C_in) transposed weight with TF's SAME crop", tf_conv_transpose(SQ.swapaxes(0, 1).copy(), 2),
         dict(weight=SQ, input_shape=(3, 4, 4), transposed=True, stride=2, padding=1, output_padding=1),
         ["channels swapped", "(= 'SAME_UPPER')"],
         dict(weight=SQ.swapaxes(0, 1).copy(), padding="SAME", output_padding=0)),
]


def _report(case: Case) -> str:
    with pytest.raises(AssertionError) as err:
        assert_conv_equal(case.fn, **case.call)
    return str(err.value)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_planted_mistake_is_diagnosed_with_the_corrected_call(case: Case) -> None:
    report = _report(case)
    lines = [line for line in report.splitlines() if line.startswith("diagnosis")]
    text = "\n".join(lines)
    for part in case.said:
        assert part in text, f"{part!r} not in the diagnosis of {case.name}:\n{report}"
    assert_conv_equal(case.fn, **{**case.call, **case.corrected})  # the corrected call passes


def test_one_dimensional_and_three_dimensional_mistakes() -> None:
    w1 = rng.standard_normal((2, 3, 4))
    fn = lambda x: F.conv1d(F.pad(t(x).permute(0, 2, 1), tf_same(9, 4, 2)), t(w1), stride=2).permute(0, 2, 1)  # noqa: E731
    with pytest.raises(AssertionError, match=r"layout='NLC'"):
        assert_conv_equal(fn, w1, (3, 3), stride=2, padding=1)  # a length-3 signal of 3 channels
    with pytest.raises(ValueError, match=r"input_shape \(9, 3\) looks channels-last.*layout='NLC'"):
        assert_conv_equal(fn, w1, (9, 3), stride=2, padding=1)
    assert_conv_equal(fn, w1, (9, 3), stride=2, padding="SAME", layout="NLC")
    w3 = rng.standard_normal((2, 2, 3, 3, 3))
    flipped = lambda x: F.conv3d(t(x), t(w3).flip(2, 3, 4), padding=1)  # noqa: E731
    with pytest.raises(AssertionError, match="kernel flipped"):
        assert_conv_equal(flipped, w3, (2, 4, 4, 4), padding=1)


def test_a_channels_last_shape_without_layout_is_refused_with_the_layout_to_pass() -> None:
    with pytest.raises(ValueError, match=r"input_shape \(7, 7, 3\) looks channels-last: its last entry is the "
                                         r"3 input channels.*layout='NHWC'"):
        assert_conv_equal(nhwc(conv(W, padding=1)), W, (7, 7, 3), padding=1)


def test_the_smallest_explanation_is_the_one_reported() -> None:
    """A flip alone explains it: the search must not report a flip plus a compensating change."""
    said = _report(CASES[0])
    line = [x for x in said.splitlines() if "matches the matrix" in x][0]
    assert line.count("; and ") == 0 and "padding=" not in line, line
    assert "The corrected call: weight=np.flip(weight, axis=(2, 3)) (in torch's layout)." in line, line


def test_an_unexplained_mismatch_says_what_was_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    noisy = rng.standard_normal((4, 3, 3, 3))  # another weight altogether: nothing explains it
    said = _report(Case("other weight", conv(noisy, padding=1), dict(weight=W, input_shape=X, padding=1), []))
    assert "no combination of up to 3 changes" in said and "tried)" in said, said
    monkeypatch.setattr(diagnose, "MAX_TRIES", 5)
    said = _report(Case("other weight", conv(noisy, padding=1), dict(weight=W, input_shape=X, padding=1), []))
    assert "no explanation found in 5 candidates" in said and "stops at 5" in said, said


def test_the_catalogue_covers_the_kinds_of_mistake() -> None:
    """At least 29 planted mistakes, transposed ones and combined ones among them."""
    assert len(CASES) >= 29
    assert sum(c.call.get("transposed", False) for c in CASES) >= 7
    assert sum(len(c.said) >= 2 for c in CASES) >= 5
    assert tc.conv_matrix is not None
