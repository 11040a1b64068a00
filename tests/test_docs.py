"""The documentation site: every equivalence its guide states, its API pages, its strict build.

- The "coming from" page (docs/guide/coming-from.md) maps calls of scipy, MATLAB and PyLops to
  ours; each mapping is asserted here, over odd and even sizes (PyLops' where it is installed).
- The conventions page (docs/guide/conventions.md): each statement checked on small layers.
- Every name of ``toeplitz_conv.__all__`` has an entry on an API page (docs/api/*.md).
- ``mkdocs build --strict`` of the whole site, notebooks not executed (the notebooks' own test
  runs them), where the docs tools are installed (``pip install -e ".[docs]"``), and the built
  site offline: no page fetches anything from the network, every link opens from disk, every
  formula is MathML, and (headless Chromium, where installed) the maths lays out, a figure
  zooms and search works with the network off.
- The first-model page's code (docs/guide/first-model.md, the same in README.md) runs and
  prints what the page shows.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
from helpers import chromium

import toeplitz_conv as tc

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RNG = np.random.default_rng(2026)


def dense(C) -> np.ndarray:
    return C.toarray()


def flipped(h) -> np.ndarray:
    """A single-channel filter as our weight, flipped: true convolution -> cross-correlation."""
    return np.flip(np.asarray(h))[None, None]


# --------------------------------------------------------------------------- scipy.linalg

FILTER_AND_SIGNAL = [(m, n) for m in (1, 2, 3, 4, 5) for n in (1, 2, 3, 4, 7, 8)]
IDS = [f"m{m}-n{n}" for m, n in FILTER_AND_SIGNAL]


@pytest.mark.parametrize("m, n", FILTER_AND_SIGNAL, ids=IDS)
def test_convolution_matrix_full(m, n):
    a = RNG.standard_normal(m)
    np.testing.assert_array_equal(scipy.linalg.convolution_matrix(a, n, "full"),
                                  dense(tc.conv_matrix(flipped(a), (1, n), padding=m - 1)))


@pytest.mark.parametrize("m, n", FILTER_AND_SIGNAL, ids=IDS)
def test_convolution_matrix_valid(m, n):
    a = RNG.standard_normal(m)
    ours = tc.conv_matrix(flipped(a), (1, n), padding=m - n if n < m else 0)
    np.testing.assert_array_equal(scipy.linalg.convolution_matrix(a, n, "valid"), dense(ours))


@pytest.mark.parametrize("m, n", FILTER_AND_SIGNAL, ids=IDS)
def test_convolution_matrix_same(m, n):
    a = RNG.standard_normal(m)
    ref = scipy.linalg.convolution_matrix(a, n, "same")
    if n >= m:
        if m % 2:
            ours = dense(tc.conv_matrix(flipped(a), (1, n), padding="same"))
        else:
            ours = dense(tc.conv_matrix(flipped(a), (1, n), padding=m // 2))[:n]
            # torch's 'same' puts the extra tap on the other side: not scipy's matrix
            assert not np.array_equal(ref, dense(tc.conv_matrix(flipped(a), (1, n), padding="same")))
        np.testing.assert_array_equal(ref, ours)


@pytest.mark.parametrize("m, n", FILTER_AND_SIGNAL, ids=IDS)
def test_convolution_matrix_modes_are_rows_of_full(m, n):
    a = RNG.standard_normal(m)
    full = dense(tc.conv_matrix(flipped(a), (1, n), padding=m - 1))
    t = min(m, n) - 1
    np.testing.assert_array_equal(scipy.linalg.convolution_matrix(a, n, "same"),
                                  full[t // 2: t // 2 + max(m, n)])
    np.testing.assert_array_equal(scipy.linalg.convolution_matrix(a, n, "valid"),
                                  full[t: m + n - 1 - t])


@pytest.mark.skipif(tuple(int(v) for v in scipy.__version__.split(".")[:2]) < (1, 15),
                    reason=f"scipy {scipy.__version__}: convolution_matrix takes one filter only "
                           f"before scipy 1.15")
def test_convolution_matrix_of_several_filters_is_output_channels():
    a, n = RNG.standard_normal((3, 4)), 9
    ours = dense(tc.conv_matrix(np.flip(a, -1)[:, None], (1, n), padding=3))
    np.testing.assert_array_equal(np.vstack(scipy.linalg.convolution_matrix(a, n, "full")), ours)


# --------------------------------------------------------------------------- scipy.signal

FILTERS_2D = [(1, 1), (1, 3), (3, 3), (3, 5), (5, 3), (2, 2), (2, 3), (4, 1)]


@pytest.mark.parametrize("mh, nh", FILTERS_2D, ids=[f"{a}x{b}" for a, b in FILTERS_2D])
def test_convolve2d_and_correlate2d(mh, nh):
    M, N = 7, 8
    X, H = RNG.standard_normal((M, N)), RNG.standard_normal((mh, nh))
    x = X.ravel()
    np.testing.assert_allclose(tc.conv_matrix(H[None, None], (1, M, N)) @ x,
                               scipy.signal.correlate2d(X, H, "valid").ravel(), atol=1e-12)
    k = flipped(H)
    np.testing.assert_allclose(tc.conv_matrix(k, (1, M, N), padding=(mh - 1, nh - 1)) @ x,
                               scipy.signal.convolve2d(X, H, "full").ravel(), atol=1e-12)
    np.testing.assert_allclose(tc.conv_matrix(k, (1, M, N)) @ x,
                               scipy.signal.convolve2d(X, H, "valid").ravel(), atol=1e-12)
    if mh % 2 and nh % 2:
        same = {mode: tc.conv_matrix(k, (1, M, N), padding="same", padding_mode=mode) @ x
                for mode in ("zeros", "circular", "replicate", "reflect")}
        np.testing.assert_allclose(same["zeros"], scipy.signal.convolve2d(X, H, "same").ravel(), atol=1e-12)
        np.testing.assert_allclose(same["circular"],
                                   scipy.signal.convolve2d(X, H, "same", boundary="wrap").ravel(), atol=1e-12)
        symm = scipy.signal.convolve2d(X, H, "same", boundary="symm").ravel()
        np.testing.assert_allclose(tc.conv_matrix(k, (1, M, N), padding="same", padding_mode="symmetric") @ x,
                                   symm, atol=1e-12)
        if max(mh, nh) <= 3:  # one sample padded: mirroring the edge sample is repeating it
            np.testing.assert_allclose(same["replicate"], symm, atol=1e-12)
        else:
            assert not np.allclose(same["replicate"], symm)
        if max(mh, nh) > 1:
            assert not np.allclose(same["reflect"], symm)
    # "same" for any size: the centred block of the full output, the extra on the low side
    full = scipy.signal.convolve2d(X, H, "full")
    lo = ((mh - 1) - (mh - 1) // 2, (nh - 1) - (nh - 1) // 2)  # padding before the first output
    start = (mh - 1 - lo[0], nh - 1 - lo[1])
    np.testing.assert_allclose(scipy.signal.convolve2d(X, H, "same"),
                               full[start[0]: start[0] + M, start[1]: start[1] + N], atol=1e-12)
    if mh % 2 == 0:  # torch's 'same' puts the extra on the high side instead
        ours = tc.conv_matrix(k, (1, M, N), padding="same") @ x
        assert not np.allclose(ours, scipy.signal.convolve2d(X, H, "same").ravel())


# --------------------------------------------------------------------------- MATLAB convmtx2

CONVMTX2 = [(3, 2, 4, 5), (1, 1, 2, 3), (2, 4, 3, 3), (5, 3, 2, 2), (3, 3, 6, 4)]


@pytest.mark.parametrize("mh, nh, m, n", CONVMTX2, ids=[f"H{a}x{b}-X{c}x{d}" for a, b, c, d in CONVMTX2])
def test_convmtx2_is_full_convolution_in_fortran_order(mh, nh, m, n):
    """convmtx2(H, m, n) * X(:) == conv2(X, H)(:), MATLAB's columns-first vectorisation."""
    H, X = RNG.standard_normal((mh, nh)), RNG.standard_normal((m, n))
    full_f = scipy.signal.convolve2d(X, H, "full").ravel(order="F")
    T = tc.conv_matrix(np.flip(H.T)[None, None], (1, n, m), padding=(nh - 1, mh - 1))
    assert T.shape == ((m + mh - 1) * (n + nh - 1), m * n)
    np.testing.assert_allclose(T @ X.ravel(order="F"), full_f, atol=1e-12)
    # the same matrix as the C-order one with rows and columns permuted
    C = tc.conv_matrix(flipped(H), (1, m, n), padding=(mh - 1, nh - 1))
    p_in = np.arange(m * n).reshape(m, n).ravel(order="F")
    p_out = np.arange((m + mh - 1) * (n + nh - 1)).reshape(m + mh - 1, n + nh - 1).ravel(order="F")
    np.testing.assert_array_equal(dense(C[p_out][:, p_in]), dense(T))


# --------------------------------------------------------------------------- PyLops

PYLOPS_FILTERS = [(3, 3), (2, 4), (3, 2), (1, 5), (4, 4)]


@pytest.mark.parametrize("hs", PYLOPS_FILTERS, ids=[f"{a}x{b}" for a, b in PYLOPS_FILTERS])
def test_pylops_convolve2d_and_nd(hs):
    pylops = pytest.importorskip("pylops", reason="PyLops is not installed: its mappings are not checked")
    from pylops.signalprocessing import Convolve2D, ConvolveND

    dims, h = (6, 7), RNG.standard_normal(hs)
    centre = tuple(s // 2 for s in hs)
    C = dense(tc.conv_matrix(flipped(h), (1, *dims), padding="same"))
    np.testing.assert_allclose(Convolve2D(dims, h, offset=centre).todense(), C, atol=1e-12)
    op = ConvolveND(dims, h, offset=centre, axes=(0, 1))
    np.testing.assert_allclose(op.todense(), C, atol=1e-12)
    np.testing.assert_allclose(op.H.todense(), C.T, atol=1e-12)
    # any other offset: a block of output positions of the full convolution
    full = tc.conv_matrix(flipped(h), (1, *dims), padding=[s - 1 for s in hs])
    grid = np.arange(full.shape[0]).reshape(dims[0] + hs[0] - 1, dims[1] + hs[1] - 1)
    for offset in [(0, 0), (hs[0] - 1, 0), (0, hs[1] - 1), centre]:
        rows = grid[offset[0]: offset[0] + dims[0], offset[1]: offset[1] + dims[1]].ravel()
        np.testing.assert_allclose(Convolve2D(dims, h, offset=offset).todense(), dense(full[rows]),
                                   atol=1e-12, err_msg=f"offset {offset}")
    # the default offset is 0 on every axis: the first output positions of the full convolution
    np.testing.assert_allclose(Convolve2D(dims, h).todense(), Convolve2D(dims, h, offset=(0, 0)).todense())
    assert pylops.__version__


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_pylops_convolve1d(k):
    pytest.importorskip("pylops", reason="PyLops is not installed: its mappings are not checked")
    from pylops.signalprocessing import Convolve1D

    h = RNG.standard_normal(k)
    np.testing.assert_allclose(Convolve1D(9, h, offset=k // 2).todense(),
                               dense(tc.conv_matrix(flipped(h), (1, 9), padding="same")), atol=1e-12)


def test_pylops_convolvend_3d():
    pytest.importorskip("pylops", reason="PyLops is not installed: its mappings are not checked")
    from pylops.signalprocessing import ConvolveND

    h, dims = RNG.standard_normal((3, 2, 3)), (4, 5, 6)
    op = ConvolveND(dims, h, offset=[s // 2 for s in h.shape], axes=range(h.ndim))
    np.testing.assert_allclose(op.todense(), dense(tc.conv_matrix(flipped(h), (1, *dims), padding="same")),
                               atol=1e-12)


# --------------------------------------------------------------------------- conventions


def test_cross_correlation_and_flattening_order():
    x, w = RNG.standard_normal((2, 5, 6)), RNG.standard_normal((3, 2, 3, 3))
    C = dense(tc.conv_matrix(w, x.shape, padding=1))
    # y[co, i, j] reads x[ci, i - 1 + kh, j - 1 + kw] with weight w[co, ci, kh, kw]: no flip
    co, i, j, ci, kh, kw = 2, 1, 3, 1, 2, 0
    h, v = i - 1 + kh, j - 1 + kw
    assert C[(co * 5 + i) * 6 + j, (ci * 5 + h) * 6 + v] == w[co, ci, kh, kw]
    one = tc.conv_matrix(w[:1, :1], (1, 5, 6))
    np.testing.assert_allclose(one @ x[0].ravel(), scipy.signal.correlate2d(x[0], w[0, 0], "valid").ravel(),
                               atol=1e-12)


def test_groups_make_c_block_diagonal():
    C = dense(tc.conv_matrix(RNG.standard_normal((4, 3, 3, 3)), (6, 5, 5), groups=2, padding=1))
    assert not C[:50, 75:].any() and not C[50:, :75].any()
    assert C[:50, :75].any() and C[50:, 75:].any()


def test_batch_is_columns():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w = RNG.standard_normal((4, 2, 5, 6)), RNG.standard_normal((3, 2, 3, 3))
    C = tc.conv_matrix(w, x.shape[1:], padding=1)
    Y = (C @ x.reshape(4, -1).T).T.reshape(4, 3, 5, 6)
    np.testing.assert_allclose(Y, F.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy(), atol=1e-12)


def test_transposed_layout_and_output_padding():
    w = RNG.standard_normal((4, 3, 3, 3))  # ConvTranspose2d(4, 3, 3): (C_in, C_out/groups, k, k)
    assert tc.conv_output_size(7, 3, stride=2, padding=1) == tc.conv_output_size(8, 3, stride=2, padding=1) == 4
    for a, size in [(0, 7), (1, 8)]:
        assert tc.conv_transpose_output_size(4, 3, stride=2, padding=1, output_padding=a) == size
        T = tc.conv_transpose_matrix(w, (4, 4, 4), stride=2, padding=1, output_padding=a)
        C = tc.conv_matrix(w, (3, size, size), stride=2, padding=1)
        np.testing.assert_array_equal(dense(T), dense(C).T)
    # zero padding only, as torch's ConvTranspose: no padding_mode argument
    assert "padding_mode" not in inspect.signature(tc.conv_transpose_matrix).parameters
    with pytest.raises(ValueError, match="output_padding must be smaller than either stride or dilation"):
        tc.conv_transpose_matrix(w, (4, 4, 4), stride=2, output_padding=2)


def test_padding_rules():
    geom = tc.conv_geometry((1, 1, 4), (1, 10), padding="same")
    assert (geom.pad_lo, geom.pad_hi) == ((1,), (2,))  # the odd extra on the high side
    assert tc.conv_geometry((1, 1, 3, 3), (1, 5, 5), padding="valid").out_spatial == (3, 3)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        tc.conv_matrix(np.ones((1, 1, 3)), (1, 10), padding="same", stride=2)
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        tc.conv_matrix(np.ones((1, 1, 3)), (1, 2), padding=2, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding_mode='circular'"):
        tc.conv_matrix(np.ones((1, 1, 3)), (1, 2), padding=3, padding_mode="circular")
    # reflect: the first output reads x[1], x[0], x[1], so w0 and w2 add on column 1
    row = dense(tc.conv_matrix(np.array([[[1.0, 2.0, 4.0]]]), (1, 5), padding=1, padding_mode="reflect"))[0]
    np.testing.assert_array_equal(row, [2.0, 5.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_are_torchs(mode):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w = RNG.standard_normal((3, 6, 5)), RNG.standard_normal((2, 3, 3, 3))
    C = tc.conv_matrix(w, x.shape, padding=(1, 2), padding_mode=mode)
    xt = torch.tensor(x)[None]
    conv = torch.nn.Conv2d(3, 2, 3, padding=(1, 2), padding_mode=mode, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(w))
        np.testing.assert_allclose(C @ x.ravel(), conv(xt).numpy().ravel(), atol=1e-12)
        padded = F.conv2d(F.pad(xt, (2, 2, 1, 1), mode=mode), torch.tensor(w))
    np.testing.assert_allclose(C @ x.ravel(), padded.numpy().ravel(), atol=1e-12)


def test_dtype_and_index_width():
    C = tc.conv_matrix(np.ones((2, 1, 3, 3), np.float32), (1, 8, 8))
    assert C.dtype == np.float32 and C.indices.dtype == np.int32 and C.indptr.dtype == np.int32


def test_complex_weights():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    w = RNG.standard_normal((2, 1, 3, 3)) + 1j * RNG.standard_normal((2, 1, 3, 3))
    x = RNG.standard_normal((1, 5, 5)) + 1j * RNG.standard_normal((1, 5, 5))
    C = tc.conv_matrix(w, x.shape)
    parts = tc.conv_matrix(w.real, x.shape) + 1j * tc.conv_matrix(w.imag, x.shape)
    assert abs(C - parts).max() < 1e-14  # linear: no conjugation
    wt, xt = torch.tensor(w, requires_grad=True), torch.tensor(x, requires_grad=True)
    y = F.conv2d(xt[None], wt)
    np.testing.assert_allclose(C @ x.ravel(), y.detach().numpy().ravel(), atol=1e-12)
    delta = RNG.standard_normal(tuple(y.shape)) + 1j * RNG.standard_normal(tuple(y.shape))
    y.backward(torch.tensor(delta))
    np.testing.assert_allclose(xt.grad.numpy().ravel(), C.conj().T @ delta.ravel(), atol=1e-12)
    np.testing.assert_allclose(tc.conv_weight_grad(x, delta[0], w.shape), wt.grad.numpy(), atol=1e-12)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="padding_mode"):
        tc.conv_matrix(np.ones((1, 1, 3)), (1, 5), padding_mode="mirror")
    with pytest.raises(TypeError, match="weight shape"):
        tc.conv_geometry("1x1x3", (1, 5))


# --------------------------------------------------------------------------- the pages


def api_identifiers() -> list[str]:
    """Every ``::: identifier`` of docs/api/*.md."""
    return [m for page in sorted((DOCS / "api").glob("*.md"))
            for m in re.findall(r"^:::\s*(\S+)", page.read_text(encoding="utf-8"), flags=re.MULTILINE)]


def test_every_public_name_has_one_api_entry():
    documented = api_identifiers()
    public = [f"toeplitz_conv.{name}" for name in tc.__all__]
    missing = sorted(set(public) - set(documented))
    assert not missing, f"public names with no entry in docs/api/*.md: {missing}"
    stale = sorted(set(documented) - set(public))
    assert not stale, f"docs/api/*.md documents names that are not in toeplitz_conv.__all__: {stale}"
    twice = sorted({name for name in documented if documented.count(name) > 1})
    assert not twice, f"documented twice: {twice}"


def public_objects():
    """Every public name and the public members of the public classes, with their dotted names."""
    for name in tc.__all__:
        obj = getattr(tc, name)
        yield name, obj
        if inspect.isclass(obj):
            for member, value in vars(obj).items():
                if not member.startswith("_") and getattr(value, "__doc__", None):
                    yield f"{name}.{member}", value


def test_public_docstrings_are_uniformly_indented():
    """A line of a docstring's body less indented than the rest stops ``inspect.cleandoc`` from
    dedenting it, and numpydoc then no longer sees its sections (the site shows them as text)."""
    ragged = []
    for name, obj in public_objects():
        doc = inspect.getdoc(obj) if inspect.isclass(obj) else getattr(obj, "__doc__", None)
        if not isinstance(doc, str):
            continue
        body = [line for line in doc.expandtabs().splitlines()[1:] if line.strip()]
        indents = [len(line) - len(line.lstrip()) for line in body]
        if body and min(indents) < indents[0]:
            ragged.append(f"{name}: {body[indents.index(min(indents))].strip()[:60]!r}")
    assert not ragged, "docstrings with a line less indented than their body:\n" + "\n".join(ragged)


def documented_parameters(doc: str) -> set[str]:
    """The names a numpydoc docstring's Parameters and Other Parameters sections document."""
    lines = inspect.cleandoc(doc).splitlines()
    names, section = set(), None
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1]) and line.strip():
            section = line.strip()
        elif section in ("Parameters", "Other Parameters") and line[:1].strip() and not line.startswith("-"):
            names |= {name.strip() for name in line.partition(" : ")[0].split(",")}
    return names


def test_every_public_parameter_is_documented():
    """Each parameter of each public function and method has an entry in its docstring's
    Parameters section (the site's table lists those; a parameter told of in prose only has no
    row)."""
    missing = []
    for name, obj in public_objects():
        func = getattr(obj, "__func__", obj)  # a classmethod's function
        func = getattr(func, "__wrapped__", func)  # a cached function's own signature
        if not (inspect.isfunction(func) or inspect.ismethod(func)) or not func.__doc__:
            continue
        params = [p for p in inspect.signature(func).parameters.values()
                  if p.name not in ("self", "cls") and not p.name.startswith("_")
                  and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        undocumented = [p.name for p in params if p.name not in documented_parameters(func.__doc__)]
        if undocumented:
            missing.append(f"{name}: {', '.join(undocumented)}")
    assert not missing, "parameters with no entry under Parameters:\n" + "\n".join(missing)


def test_section_items_read_as_the_site_shows_them():
    """The site's docstring extension: an item naming several parameters becomes one item per
    name (each then shows its own annotation and default), and a type loses its reST markup
    (the site prints a type verbatim)."""
    pytest.importorskip("griffe", reason="the docs tools are not installed: no extension to test")
    sys.path.insert(0, str(DOCS))
    try:
        from griffe_rst import plain_item_types
    finally:
        sys.path.remove(str(DOCS))
    doc = ("Summary.\n\nParameters\n----------\nx : array_like\n    Input.\n"
           "stride, padding\n    As in :func:`conv_matrix`.\nrtol, atol : float, as ``np.allclose``\n\n"
           "Returns\n-------\n(M, N) array, from :func:`~toeplitz_conv.conv_matrix`\n    The matrix.\n\n"
           "Notes\n-----\na, b : ``c``\n")
    assert plain_item_types(doc).split("\n") == [
        "Summary.", "", "Parameters", "----------", "x : array_like", "    Input.",
        "stride", "    As in :func:`conv_matrix`.", "padding", "    As in :func:`conv_matrix`.",
        "rtol : float, as np.allclose", "", "atol : float, as np.allclose", "",
        "Returns", "-------", "(M, N) array, from conv_matrix", "    The matrix.", "",
        "Notes", "-----", "a, b : ``c``", "",  # not a section of items: left alone
    ]


def test_nav_lists_every_page():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted(DOCS.rglob("*.md")):
        assert page.relative_to(DOCS).as_posix() in config, f"{page} is not in mkdocs.yml's nav"


MKDOCS_TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter",
                "latex2mathml")


def _missing_tools() -> list[str]:
    missing = []
    for name in MKDOCS_TOOLS:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # the parent package of a dotted name is absent
            found = False
        if not found:
            missing.append(name)
    return missing


needs_docs_tools = pytest.mark.skipif(
    bool(_missing_tools()),
    reason=f"the docs tools are not installed ({', '.join(_missing_tools())}): "
           f'pip install -e ".[docs]" to build the site')


def built_site_test(test):
    """A test of the built site: it needs the docs tools, and the build takes tens of seconds."""
    return pytest.mark.slow(needs_docs_tools(test))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """``mkdocs build --strict`` (warnings are errors) with the notebooks rendered unexecuted,
    once for the tests of the built site."""
    pytest.importorskip("torch", reason="the API pages import toeplitz_conv.torch_sparse")
    work = tmp_path_factory.mktemp("docs")
    site = work / "site"
    env = {**os.environ, "TOEPLITZ_DOCS_EXECUTE": "false", "NO_MKDOCS_2_WARNING": "1"}
    env.pop("COLUMNS", None)
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=work,  # mkdocs-jupyter's cache goes to the working folder: keep it out of the repository
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout[-4000:]}\n{run.stderr[-8000:]}"
    return site


@built_site_test
def test_site_builds_strict(site):
    pages = {  # use_directory_urls: false, so that the site works opened from disk
        "landing page": site / "index.html",
        "first model": site / "guide" / "first-model.html",
        "API page": site / "api" / "conv.html",
        "torch.sparse API page": site / "api" / "torch-sparse.html",
        "notebook page": site / "notebooks" / "01_1d_toeplitz.html",
        "CLI page": site / "cli.html",
        "benchmarks": site / "benchmarks.html",
        "changelog": site / "changelog.html",
    }
    for what, path in pages.items():
        assert path.is_file(), f"no {what}: {path.relative_to(site)}"
    assert 'id="toeplitz_conv.conv_matrix"' in pages["API page"].read_text(encoding="utf-8")
    for page in sorted((site / "api").rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        # reST that reached the reader: literal double backticks, a role's markup shown as text
        # (a section item's type is printed verbatim), a numpydoc section left unparsed
        for leak in ("``", "&lt;autoref", ":func:`", ":class:`", 'class="----'):
            assert leak not in html, f"{page.relative_to(site)} shows {leak!r} as text"
    torch_page = pages["torch.sparse API page"].read_text(encoding="utf-8")  # names loaded lazily
    for name in ("ToeplitzConv2d", "ToeplitzConv2d.from_conv", "convert"):
        assert f'id="toeplitz_conv.{name}"' in torch_page, f"no entry for {name} on the torch.sparse page"
    cli_page = pages["CLI page"].read_text(encoding="utf-8")
    for command in ("demo", "spy", "explore", "animate", "verify"):
        assert f'id="toeplitz-conv-{command}"' in cli_page, f"the CLI page has no section for {command}"
    assert "--atol" in cli_page and "--padding-mode" in cli_page
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert (site / "notebooks" / f"{notebook.stem}.html").is_file(), f"no page for {notebook.name}"
    patched = [p.relative_to(site).as_posix() for p in site.rglob("*")
               if p.suffix in (".html", ".json") and "GEOMETRY_PARAMETERS" in p.read_text(encoding="utf-8")]
    assert not patched, f"the unpatched placeholder GEOMETRY_PARAMETERS is shown on {patched}"


# --------------------------------------------------------------------------- the site offline

#: A URL that leaves the site: ``http://``, ``https://``, any other scheme's ``//``, or ``//host``.
REMOTE = re.compile(r"^\s*(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//")
#: ``<link rel=...>`` kinds that make the browser fetch their ``href`` (``prev``/``next`` don't).
LOADING_RELS = frozenset({"stylesheet", "preload", "prefetch", "preconnect", "dns-prefetch", "modulepreload",
                          "icon", "shortcut", "apple-touch-icon", "mask-icon", "manifest"})
_ATTR = r"""\b{0}\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))"""


def _attr(tag: str, name: str) -> str | None:
    m = re.search(_ATTR.format(name), tag, flags=re.IGNORECASE)
    return None if m is None else next(g for g in m.groups() if g is not None)


def css_urls(css: str) -> list[str]:
    """What a style sheet fetches: ``url(...)`` and ``@import``."""
    return (re.findall(r"""url\(\s*["']?([^"')]+)""", css)
            + re.findall(r"""@import\s+["']([^"']+)""", css))


def loaded_urls(html: str) -> list[str]:
    """Every URL a page fetches by itself (not the links a reader may follow): scripts,
    images, frames and media, ``<link>`` of the loading kinds, styles (inline and
    attributes), and the modules inline scripts import."""
    urls = []
    for tag in re.findall(r"<(?:script|img|iframe|source|video|audio|embed|track|input)\b[^>]*>", html, re.I):
        urls += [u for u in (_attr(tag, "src"), _attr(tag, "poster")) if u is not None]
        srcset = _attr(tag, "srcset")
        urls += [part.split()[0] for part in (srcset or "").split(",") if part.strip()]
    for tag in re.findall(r"<link\b[^>]*>", html, re.I):
        if set((_attr(tag, "rel") or "").lower().split()) & LOADING_RELS and _attr(tag, "href") is not None:
            urls.append(_attr(tag, "href"))
    urls += [u for tag in re.findall(r"<object\b[^>]*>", html, re.I) if (u := _attr(tag, "data")) is not None]
    styles = re.findall(r"<style\b[^>]*>(.*?)</style>", html, re.I | re.S) + re.findall(r'\bstyle\s*=\s*"([^"]*)"', html)
    urls += css_urls(" ".join(styles))
    for body in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.I | re.S):
        urls += re.findall(r"""\b(?:import|importScripts)\s*\(\s*["'`]([^"'`]+)""", body)
    return urls


def test_loaded_urls_finds_what_a_page_fetches():
    page = ('<link rel="preconnect" href="https://fonts.gstatic.com"><link rel="next" href="https://x.org/n">'
            '<script src="https://cdn.example/MathJax.js"></script><img src="//img.example/a.png" '
            'srcset="b.png 1x, https://img.example/c.png 2x"><style>@import "https://f.example/a.css";'
            ' p { background: url(\'http://i.example/b.png\') }</style><script type="module">'
            'const m = (await import("https://cdn.example/mermaid.mjs")).default;</script>'
            '<a href="https://example.org/">a link is not a fetch</a><script src="../local.js"></script>')
    remote = [u for u in loaded_urls(page) if REMOTE.match(u)]
    assert sorted(remote) == sorted(["https://cdn.example/MathJax.js", "//img.example/a.png",
                                     "https://img.example/c.png", "https://fonts.gstatic.com",
                                     "https://f.example/a.css", "http://i.example/b.png",
                                     "https://cdn.example/mermaid.mjs"])
    assert "../local.js" in loaded_urls(page) and "https://example.org/" not in loaded_urls(page)


@built_site_test
def test_site_loads_nothing_from_the_network(site):
    """A classroom with no network sees the whole site: no page, style sheet of ours or inline
    script fetches a remote script, style, font or image."""
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    remote = {p.relative_to(site).as_posix(): urls for p in pages
              if (urls := sorted({u for u in loaded_urls(p.read_text(encoding="utf-8")) if REMOTE.match(u)}))}
    assert not remote, f"pages that fetch from the network: {remote}"
    sheets = {p.relative_to(site).as_posix(): urls for p in sorted(site.rglob("*.css"))
              if (urls := [u for u in css_urls(p.read_text(encoding="utf-8")) if REMOTE.match(u)])}
    assert not sheets, f"style sheets that fetch from the network: {sheets}"


@built_site_test
def test_site_links_work_from_disk(site):
    """Opened as files (file://), every page's relative link and resource is a file: no
    directory URL (``guide/``), which a browser shows as a folder listing from disk."""
    broken = set()
    for page in sorted(set(site.rglob("*.html")) - {site / "404.html"}):  # a server's page, absolute links
        html = page.read_text(encoding="utf-8")
        targets = re.findall(r'\b(?:href|src)="([^"#?]*)[^"]*"', html)
        for target in targets:
            if not target or REMOTE.match(target) or re.match(r"^[a-z]+:", target):
                continue  # an anchor on the page, a remote link (a reader's choice), data:, mailto:
            path = (page.parent / target).resolve()
            if target.endswith("/") or not path.is_file():
                broken.add(f"{page.relative_to(site)} -> {target}")
    assert not broken, "links that do not open from disk:\n" + "\n".join(sorted(broken)[:30])
    assert (site / "search" / "search_index.js").is_file(), "no inlined search index: search fails from disk"


def _hooks():
    """docs/hooks.py as a module (it imports mkdocs)."""
    pytest.importorskip("mkdocs", reason="the docs tools are not installed")
    pytest.importorskip("latex2mathml", reason='latex2mathml is not installed (pip install -e ".[docs]")')
    spec = importlib.util.spec_from_file_location("toeplitz_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_formulas_become_mathml_outside_code(caplog):
    hooks = _hooks()
    page = ('<p>The map $y = C\\,x$ costs \\$5, and $$\\sum_k w[k]\\, x[o + k]$$</p>'
            '<pre><code>print("$a$")</code></pre><p><code>$b$</code> $a &lt; b$</p>'
            '<div class="jp-RenderedLatex">$\\displaystyle \\left[\\begin{matrix}w_{0} &amp; w_{1}'
            '\\\\0 &amp; w_{0}\\end{matrix}\\right]$</div>')
    out = hooks.render_maths(page, hooks._NOTEBOOK_MATH, "test")
    assert out.count("<math") == 4 and out.count('display="block"') == 1
    assert 'alttext="y = C\\,x"' in out and 'alttext="a &lt; b"' in out  # the LaTeX kept, unescaped once
    assert "costs \\$5" in out  # an escaped dollar is a dollar
    assert '<pre><code>print("$a$")</code></pre>' in out and "<code>$b$</code>" in out
    assert "<mtable>" in out and out.count("<mtr>") == 2  # sympy's matrix output
    copy = '<div class="clipboard-copy-txt" id="cell-3">plt.title(r"$\\sigma$ <div>$x$</div>")</div><p>$z$</p>'
    out = hooks.render_maths(copy, hooks._NOTEBOOK_MATH, "test")  # the copy button's text is code
    assert out.startswith(copy[:-len("<p>$z$</p>")]) and out.count("<math") == 1 and 'alttext="z"' in out
    md = hooks.render_maths('<p><span class="arithmatex">\\(x^2\\)</span> and \\[\\sqrt 2\\]</p>',
                            hooks._MARKDOWN_MATH, "test")
    assert "<msup>" in md and "<msqrt>" in md and "\\(" not in md
    with caplog.at_level("WARNING"):
        bad = hooks.render_maths("<p>$\\notacommand x$</p>", hooks._NOTEBOOK_MATH, "page.md")
    assert bad == "<p>$\\notacommand x$</p>"  # left as it was, and a warning fails the strict build
    assert "page.md" in caplog.text and "\\notacommand" in caplog.text


def _notebook_formulas(path: Path) -> list[str]:
    """The ``$...$`` and ``$$...$$`` of a notebook's Markdown cells, whitespace collapsed."""
    import json

    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is no formula
    found = re.findall(r"\$\$(.+?)\$\$|(?<!\\)\$((?:\\.|[^$\\])+?)\$", text, flags=re.S)
    return [" ".join((a or b).split()) for a, b in found]


@built_site_test
def test_site_formulas_are_mathml(site):
    """Every formula of every notebook is MathML on its page, no ``$`` is left in the text
    outside code, no page loads MathJax; the Markdown pages' formulas too (arithmatex)."""
    import html as html_lib

    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = (site / "notebooks" / f"{notebook.stem}.html").read_text(encoding="utf-8")
        alts = {html_lib.unescape(a) for a in re.findall(r'<math alttext="([^"]*)"', page)}
        missing = [f for f in _notebook_formulas(notebook) if f not in alts]
        assert not missing, f"{notebook.name}: formulas not rendered: {missing[:5]}"
        copies = re.findall(r'<div class="clipboard-copy-txt"[^>]*>(.*?)</div>', page, flags=re.S)
        assert copies and not any("<math" in c for c in copies), f"{notebook.name}: MathML in a cell's copy text"
        text = re.sub(r"<(pre|code|script|style|math|svg)\b.*?</\1>", "", page, flags=re.S | re.I)
        text = re.sub(r'<div class="clipboard-copy-txt"[^>]*>.*?</div>', "", text, flags=re.S)
        text = re.sub(r"<[^>]+>", "", text)
        assert "$" not in text, f"{notebook.name}: a $ left as text: ...{text[text.index('$') - 60:][:120]}..."
        assert "MathJax" not in page, f"{notebook.name}'s page still configures MathJax"
    assert sum(len(_notebook_formulas(n)) for n in (ROOT / "notebooks").glob("*.ipynb")) > 100
    first = (site / "guide" / "first-model.html").read_text(encoding="utf-8")
    assert first.count("<math") >= 5 and "\\(" not in re.sub(r"<(pre|code)\b.*?</\1>", "", first, flags=re.S)
    assert 'alttext="J(x) = D_2(x)\\,\\big(I + B_2 C_2 D_1(x) B_1 C_1\\big)"' in first


def _browser():
    driver = chromium("--window-size=1600,1000", "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves
                      capabilities={"goog:loggingPrefs": {"performance": "ALL"}})
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                           {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    return driver


def _requested(driver) -> list[str]:
    import json

    return [m["params"]["request"]["url"] for e in driver.get_log("performance")
            if (m := json.loads(e["message"])["message"])["method"] == "Network.requestWillBeSent"]


@built_site_test
def test_site_offline_in_a_browser(site):
    """Headless Chromium, offline, the site opened from disk: a notebook page requests nothing
    but files, its formulas are laid out as maths (a fraction's numerator above its
    denominator), a figure opens at its own size on a click, and search finds pages."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser()
    try:
        driver.get((site / "notebooks" / "08_lipschitz_and_strided_spectra.html").as_uri())
        WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
        maths = driver.execute_script("""
            const ms = [...document.querySelectorAll('.md-content math')];
            const f = document.querySelector('.md-content mfrac');
            const [num, den] = [f.children[0].getBoundingClientRect(), f.children[1].getBoundingClientRect()];
            return {n: ms.length, empty: ms.filter(m => m.getBoundingClientRect().width === 0).length,
                    stacked: num.bottom <= den.top + 1, text: document.querySelector('.md-content').innerText};""")
        assert maths["n"] > 100 and maths["empty"] == 0 and maths["stacked"]
        assert "$" not in maths["text"] and "\\sigma" not in maths["text"]
        driver.get((site / "guide" / "first-model.html").as_uri())
        WebDriverWait(driver, 20).until(lambda d: d.execute_script("return !!document.querySelector('img.tc-figure')"))
        zoom = driver.execute_script("""
            const img = document.querySelector('img.tc-figure');
            const shown = img.getBoundingClientRect().width;
            const column = document.querySelector('.md-content__inner').getBoundingClientRect().width;
            img.click();
            const big = document.querySelector('.tc-zoom img');
            return {shown, column, natural: img.naturalWidth, big: big && big.getBoundingClientRect().width};""")
        assert abs(zoom["shown"] - zoom["column"]) < 2, zoom  # the figure spans the column
        assert zoom["big"] == zoom["natural"], zoom  # and opens at its own size
        driver.find_element(By.CSS_SELECTOR, ".tc-zoom").click()
        assert driver.execute_script("return document.querySelector('.tc-zoom') === null")
        driver.find_element(By.CSS_SELECTOR, "input.md-search__input").send_keys("doubly block Toeplitz")
        WebDriverWait(driver, 20).until(lambda d: d.execute_script(
            "return document.querySelectorAll('.md-search-result__item').length > 0"))
        remote = [u for u in _requested(driver) if not u.startswith(("file:", "data:", "blob:", "about:"))]
        assert not remote, f"requests that left the disk: {remote}"
    finally:
        driver.quit()


# --------------------------------------------------------------------------- the first model

FIRST_MODEL = re.compile(r"^<!-- first-model: [^\n]*-->\n```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def first_model_code() -> str:
    (code,) = FIRST_MODEL.findall((DOCS / "guide" / "first-model.md").read_text(encoding="utf-8"))
    return code


def test_readme_has_the_first_model_page_code():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## First model: a small ResNet with BatchNorm" in readme
    blocks = re.findall(r"^```python\n(.*?)^```$", readme, flags=re.MULTILINE | re.DOTALL)
    assert first_model_code() in blocks, "README.md's first-model code differs from docs/guide/first-model.md's"


def test_first_model_runs(tmp_path, monkeypatch, capsys):
    """The page's code as printed: its checks against PyTorch pass, and what it prints is what
    the page shows."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    exec(compile(first_model_code(), str(DOCS / "guide" / "first-model.md"), "exec"), {"__name__": "first_model"})
    assert (tmp_path / "conv1.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    page = (DOCS / "guide" / "first-model.md").read_text(encoding="utf-8")
    printed_net = out[: out.index("  output: _4") + len("  output: _4")]
    assert printed_net in page, "the page's print(net) is not what the code prints"
    assert "1.conv1 (256, 256) 7744" in out and "0.2299 by 'windowed'" in out
    assert "The Lipschitz constant lies in [0.0915017, 0.22986]" in out
    import matplotlib.pyplot as plt

    plt.close("all")
