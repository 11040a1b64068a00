"""diff_figure draws which side each mismatching entry is on: only in the expected matrix A,
only in the actual matrix B, or in both with other values, each kind in its own colour and
counted in the legend; a diagnosis goes in the title; equal matrices say so."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

import toeplitz_conv as tc  # noqa: E402
from toeplitz_conv.plot.diff import DIFF_KINDS  # noqa: E402

ONLY_A = [(0, 0), (1, 2), (3, 5)]
ONLY_B = [(2, 1), (0, 4)]
DIFFER = [(2, 3)]
EQUAL = [(1, 1), (3, 0)]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def small_pair():
    """4 x 6: 3 entries only in A, 2 only in B, 1 in both with other values, 2 equal in both,
    and one within the tolerance (1e-15 apart)."""
    A, B = np.zeros((4, 6)), np.zeros((4, 6))
    for r, c in ONLY_A:
        A[r, c] = r + c + 1.0
    for r, c in ONLY_B:
        B[r, c] = -(r + c + 1.0)
    for r, c in DIFFER:
        A[r, c], B[r, c] = 1.0, 2.0
    for r, c in EQUAL:
        A[r, c] = B[r, c] = 5.0
    A[0, 1], B[0, 1] = 3.0, 3.0 + 1e-15
    return A, B


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def kind_lines(ax):
    """{kind label: the Line2D that draws that kind}."""
    return {line.get_label().rsplit(":", 1)[0]: line for line in ax.lines
            if not line.get_label().startswith("_")}


def drawn(line):
    return sorted(zip(np.asarray(line.get_ydata(), int).tolist(), np.asarray(line.get_xdata(), int).tolist()))


def flat(text):
    return " ".join(text.split())


def test_legend_names_each_kind_with_its_count():
    A, B = small_pair()
    ax = tc.diff_figure(A, B)
    assert legend_texts(ax) == ["only in expected (A): 3", "only in actual (B): 2", "in both, values differ: 1"]
    assert ax.get_title().startswith("A vs B: 6 of 24 entries mismatch (circled)")


def test_each_kind_is_drawn_where_it_is():
    A, B = small_pair()
    lines = kind_lines(tc.diff_figure(A, B))
    assert set(lines) == {"only in expected (A)", "only in actual (B)", "in both, values differ"}
    assert drawn(lines["only in expected (A)"]) == sorted(ONLY_A)
    assert drawn(lines["only in actual (B)"]) == sorted(ONLY_B)
    assert drawn(lines["in both, values differ"]) == DIFFER


def test_the_three_kinds_have_three_distinct_colours_in_the_axes_and_the_legend():
    A, B = small_pair()
    ax = tc.diff_figure(A, B)
    lines = kind_lines(ax)
    colours = [to_rgba(lines[label].get_markerfacecolor()) for label, _ in DIFF_KINDS]
    assert len(set(colours)) == 3
    assert colours == [to_rgba(c) for _, c in DIFF_KINDS]
    assert all(line.get_marker() == "s" and line.get_linestyle() == "None" for line in lines.values())
    swatches = [to_rgba(h.get_markerfacecolor()) for h in ax.get_legend().legend_handles]
    assert swatches == colours
    # far apart: no two kinds within 0.25 of each other in RGB
    rgb = np.array(colours)[:, :3]
    assert min(np.linalg.norm(rgb[i] - rgb[j]) for i in range(3) for j in range(i + 1, 3)) > 0.25


def test_mismatches_are_still_circled():
    A, B = small_pair()
    ax = tc.diff_figure(A, B)
    circles = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(circles) == 1
    assert drawn(circles[0]) == sorted(ONLY_A + ONLY_B + DIFFER)


def test_tolerance_decides_what_differs():
    A, B = small_pair()
    exact = tc.diff_figure(A, B, rtol=0, atol=0)  # 3 + 1e-15 is a float other than 3
    assert legend_texts(exact)[2] == "in both, values differ: 2"
    loose = tc.diff_figure(A, B, atol=1.5)  # |1 - 2| = 1 agrees now, and A[0, 0] = 1 alone in A
    assert legend_texts(loose) == ["only in expected (A): 2", "only in actual (B): 2", "in both, values differ: 0"]


def test_nan_and_inf_differ():
    A = np.array([[1.0, np.inf, 2.0]])
    B = np.array([[np.nan, np.inf, np.inf]])
    assert legend_texts(tc.diff_figure(A, B)) == [
        "only in expected (A): 0", "only in actual (B): 0", "in both, values differ: 2"]


def test_sparse_and_integer_inputs():
    A, B = small_pair()
    ax = tc.diff_figure(sp.csr_matrix(A), sp.coo_array(B))
    assert legend_texts(ax) == ["only in expected (A): 3", "only in actual (B): 2", "in both, values differ: 1"]
    u, v = np.array([[3, 0, 1]], dtype=np.uint8), np.array([[5, 1, 9]], dtype=np.uint8)
    # unsigned: 3 - 5 is -2 (within atol=3), not 254
    assert legend_texts(tc.diff_figure(u, v, atol=3))[1:] == ["only in actual (B): 0", "in both, values differ: 1"]
    assert legend_texts(tc.diff_figure(u, v))[1:] == ["only in actual (B): 1", "in both, values differ: 2"]


def test_complex_kinds():
    A = np.array([[1 + 1j, 0, 2]])
    B = np.array([[1 + 1j, 1j, 2 + 1e-3j]])
    assert legend_texts(tc.diff_figure(A, B)) == [
        "only in expected (A): 0", "only in actual (B): 1", "in both, values differ: 1"]


def test_diagnosis_is_in_the_title():
    A, B = small_pair()
    line = "diagnosis: fn matches the matrix with: kernel flipped (rotated by 180 degrees)"
    ax = tc.diff_figure(A, B, diagnosis=line)
    title = flat(ax.get_title())  # long titles are wrapped
    assert title.startswith("A vs B: 6 of 24 entries mismatch (circled)")
    assert title.endswith(line) and title.count("diagnosis:") == 1
    ax = tc.diff_figure(A, B, title="case 1", diagnosis="kernel flipped")
    assert ax.get_title() == "case 1\ndiagnosis: kernel flipped"
    assert tc.diff_figure(A, B, title="case 1", diagnosis="").get_title() == "case 1"
    assert "diagnosis" not in tc.diff_figure(A, B).get_title()


def test_diagnosis_from_assert_conv_equal():
    w = np.random.default_rng(0).standard_normal((1, 1, 3, 3))
    flipped = w[..., ::-1, ::-1].copy()

    def fn(x):
        return (tc.conv_matrix(flipped, (1, 5, 5)) @ x.reshape(x.shape[0], -1).T).T.reshape(-1, 1, 3, 3)

    with pytest.raises(AssertionError) as info:
        tc.testing.assert_conv_equal(fn, w, (1, 5, 5))
    diagnosis = next(line for line in str(info.value).splitlines() if line.startswith("diagnosis:"))
    ax = tc.diff_figure(tc.conv_matrix(w, (1, 5, 5)), tc.probe_matrix(fn, (1, 5, 5)), (1, 5, 5), (1, 3, 3),
                        diagnosis=diagnosis)
    assert flat(diagnosis) in flat(ax.get_title())
    assert legend_texts(ax) == ["only in expected (A): 0", "only in actual (B): 0", "in both, values differ: 72"]


def test_equal_matrices_say_there_is_no_difference():
    A, _ = small_pair()
    ax = tc.diff_figure(A, sp.csr_array(A))
    assert ax.get_title() == "A vs B: no entry mismatches"
    assert legend_texts(ax) == ["only in expected (A): 0", "only in actual (B): 0", "in both, values differ: 0"]
    assert any("no difference" in t.get_text() for t in ax.texts)
    assert not [line for line in ax.lines if line.get_marker() == "o"]
    assert all(len(line.get_xdata()) == 0 for line in ax.lines)


def test_grid_lines_and_given_axes():
    w = np.random.default_rng(1).standard_normal((2, 2, 3, 3))
    C = tc.conv_matrix(w, (2, 5, 5), padding=1)
    R = tc.conv_matrix(w, (2, 5, 5), padding=1, padding_mode="reflect")
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    ax = tc.diff_figure(C, R, (2, 5, 5), (2, 5, 5), ax=axes[1], title="reflect")
    assert ax is axes[1] and ax.get_title() == "reflect" and not axes[0].lines
    assert ax.collections  # the channel and image-row lines of spy
    assert ax.get_legend() is not None
    fig.canvas.draw()  # renders


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(diagnosis=3), TypeError, r"diagnosis must be a str or None; got int"),
    (dict(diagnosis=["kernel flipped"]), TypeError, r"diagnosis must be a str or None; got list"),
    (dict(title=1.5), TypeError, r"title must be a str or None; got float"),
    (dict(ax="axes"), TypeError, r"ax must be a matplotlib Axes or None; got str"),
    (dict(rtol=-1), ValueError, r"rtol must be a finite number >= 0"),
    (dict(atol=float("nan")), ValueError, r"atol must be a finite number >= 0"),
    (dict(input_shape=(2, 2)), ValueError, r"input_shape must describe the 6 columns"),
    (dict(output_shape=(1, 3)), ValueError, r"output_shape must describe the 4 rows"),
], ids=["diagnosis-int", "diagnosis-list", "title", "ax", "rtol", "atol", "input_shape", "output_shape"])
def test_refusals(kwargs, exc, match):
    A, B = small_pair()
    with pytest.raises(exc, match=match):
        tc.diff_figure(A, B, **kwargs)
    assert not plt.get_fignums()  # refused before any figure is made


@pytest.mark.parametrize("A, B, exc, match", [
    (np.ones((4, 6)), np.ones((4, 5)), ValueError, r"A and B must have the same shape"),
    (np.ones((0, 3)), np.ones((0, 3)), ValueError, r"A and B must have at least one row and one column"),
    (np.ones(6), np.ones(6), ValueError, r"A must be a 2D matrix"),
    (np.ones((2, 2)), np.array([["a", "b"], ["c", "d"]]), TypeError, r"B must be a numeric array"),
], ids=["shapes", "empty", "1d", "strings"])
def test_matrix_refusals(A, B, exc, match):
    with pytest.raises(exc, match=match):
        tc.diff_figure(A, B)
