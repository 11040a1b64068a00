"""The HTML explorer in a real browser (headless Chromium through selenium, one session for the
module): clicks light exactly a row or column of ``conv_matrix``, the controls recompute the
matrix as ``conv_matrix`` builds it, the layer selector walks a compiled network, the arrow keys
move the selection, and the page is readable at 1280 px (cells of at least 28 px, full width,
zoom). Every page must log no error and fetch nothing. Skipped, with the reason, where no browser
is."""

import numpy as np
import pytest
from helpers import chromium

import toeplitz_conv as tc

WIDTH = 1280
pytestmark = pytest.mark.slow  # one Chromium session: about a minute


@pytest.fixture(scope="module")
def driver():
    d = chromium(f"--window-size={WIDTH},900", "--force-device-scale-factor=1",
                 capabilities={"goog:loggingPrefs": {"browser": "ALL"}})
    d.set_window_size(WIDTH, 900)
    yield d
    d.quit()


def _open(driver, path):
    driver.get(path.resolve().as_uri())
    driver.get_log("browser")  # start each page with an empty log


def _check_clean(driver):
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0  # offline


def _csr(C):
    C = tc.conv_matrix(*C) if isinstance(C, tuple) else C
    C = C.tocsr().astype(np.float64)
    C.sum_duplicates()
    C.eliminate_zeros()
    return C


def _assert_shown(driver, C, in_shape=None, out_shape=None):
    """The page's matrix is C: the same pattern exactly, the same values to rounding."""
    M = driver.execute_script("return explorer.matrix()")
    assert (M["m"], M["n"]) == C.shape
    assert M["indptr"] == C.indptr.tolist() and M["indices"] == C.indices.tolist()
    np.testing.assert_allclose(M["data"], C.data, rtol=1e-12, atol=1e-14)
    if in_shape is not None:
        assert tuple(M["in_shape"]) == tuple(in_shape) and tuple(M["out_shape"]) == tuple(out_shape)


def _lit(driver, role):
    from selenium.webdriver.common.by import By

    return {int(e.get_attribute("data-index"))
            for e in driver.find_elements(By.CSS_SELECTOR, f'.lit[data-role="{role}"]')}


def _row(C, i):
    return set(C.indices[C.indptr[i]:C.indptr[i + 1]].tolist())


def _col(C, j):
    return _row(C.tocsc(), j)


def _click(driver, role, idx):
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f'[data-role="{role}"][data-index="{idx}"]').click()


def _select(driver, id, value=None, text=None):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    s = Select(driver.find_element(By.ID, id))
    s.select_by_visible_text(text) if text is not None else s.select_by_value(value)


@pytest.mark.parametrize("wshape,shape,kw", [
    ((2, 1, 3, 3), (1, 5, 5), dict(stride=2, padding=1, padding_mode="reflect")),
    ((2, 2, 3), (2, 7), dict(dilation=2, padding=1, padding_mode="circular")),
    ((4, 1, 2, 2, 2), (2, 3, 4, 4), dict(groups=2, padding=1)),
], ids=["2d-reflect-stride", "1d-circular-dilated", "3d-groups"])
def test_clicks_light_rows_and_columns(driver, tmp_path, wshape, shape, kw):
    from selenium.webdriver.common.by import By

    w = np.random.default_rng(0).standard_normal(wshape)
    path = tc.explore(w, shape, path=tmp_path / "layer.html", **kw)
    C = _csr(tc.conv_matrix(w, shape, **kw))
    _open(driver, path)
    inputs = driver.find_elements(By.CSS_SELECTOR, '[data-role="input"]')
    outputs = driver.find_elements(By.CSS_SELECTOR, '[data-role="output"]')
    assert sorted(int(e.get_attribute("data-index")) for e in inputs) == list(range(C.shape[1]))
    assert sorted(int(e.get_attribute("data-index")) for e in outputs) == list(range(C.shape[0]))
    _assert_shown(driver, C)
    for i in (0, C.shape[0] // 2, C.shape[0] - 1):
        _click(driver, "output", i)
        assert _lit(driver, "input") == _row(C, i) and not _lit(driver, "output")
    for j in (0, C.shape[1] // 2, C.shape[1] - 1):
        _click(driver, "input", j)
        assert _lit(driver, "output") == _col(C, j) and not _lit(driver, "input")
    _check_clean(driver)


# settings: (stride, padding (lo, hi) per axis, dilation, mode) as the page's controls give them
SWEEP = [
    ((2, 1, 3, 3), (1, 6, 5), 1, [
        ((2, 2), [[1, 1], [1, 1]], (1, 1), "zeros"), ((3, 3), [[0, 0], [0, 0]], (1, 1), "zeros"),
        ((1, 1), [[2, 2], [2, 2]], (2, 2), "zeros"), ((2, 2), [[1, 1], [1, 1]], (1, 1), "reflect"),
        ((1, 1), [[2, 2], [2, 2]], (1, 1), "circular"), ((2, 2), [[3, 3], [3, 3]], (1, 1), "replicate"),
        ((1, 1), [[2, 2], [2, 2]], (2, 2), "symmetric"), ((2, 1), [[1, 2], [0, 1]], (1, 2), "reflect")]),
    ((4, 1, 3), (2, 9), 2, [((2,), [[2, 2]], (2,), "circular"), ((3,), [[1, 1]], (1,), "reflect")]),
    ((2, 2, 2, 3, 2), (2, 3, 5, 4), 1, [((1, 2, 1), [[1, 1], [1, 1], [1, 1]], (1, 1, 2), "zeros"),
                                         ((2, 1, 1), [[1, 1], [2, 2], [1, 1]], (1, 1, 1), "replicate")]),
]


@pytest.mark.parametrize("wshape,shape,groups,settings", SWEEP, ids=["2d", "1d-groups", "3d"])
def test_page_computes_conv_matrix_for_every_setting(driver, tmp_path, wshape, shape, groups, settings):
    w = np.random.default_rng(1).standard_normal(wshape)
    _open(driver, tc.explore(w, shape, groups=groups, path=tmp_path / "layer.html"))
    G = driver.execute_script("return explorer.S.conv")
    for stride, pads, dilation, mode in settings:
        M = driver.execute_script("const m = explorer.convMatrix(arguments[0], arguments[1], arguments[2], "
                                  "arguments[3], arguments[4], arguments[5]); return m;",
                                  G, list(stride), [p[0] for p in pads], [p[1] for p in pads], list(dilation), mode)
        C = _csr(tc.conv_matrix(w, shape, stride=stride, padding=[tuple(p) for p in pads], dilation=dilation,
                                groups=groups, padding_mode=mode))
        assert (M["m"], M["n"]) == C.shape and M["out_shape"] == [wshape[0], *tc.conv_geometry(
            wshape, shape, stride=stride, padding=[tuple(p) for p in pads], dilation=dilation, groups=groups).out_spatial]
        assert M["indptr"] == C.indptr.tolist() and M["indices"] == C.indices.tolist(), (stride, pads, dilation, mode)
        np.testing.assert_allclose(M["data"], C.data, rtol=1e-12, atol=1e-14)
    _check_clean(driver)


def test_controls_change_the_layer(driver, tmp_path):
    from selenium.webdriver.common.by import By

    w = np.random.default_rng(2).standard_normal((2, 1, 3, 3))
    shape = (1, 4, 4)
    _open(driver, tc.explore(w, shape, padding=1, path=tmp_path / "layer.html"))
    _click(driver, "input", 5)
    _select(driver, "stride", text="2")
    C = _csr(tc.conv_matrix(w, shape, stride=2, padding=1))
    _assert_shown(driver, C, shape, (2, 2, 2))
    assert len(driver.find_elements(By.CSS_SELECTOR, '[data-role="output"]')) == 8
    assert _lit(driver, "output") == _col(C, 5)  # the input pixel stays selected: its new column
    assert "stride 2, padding 1" in driver.find_element(By.ID, "setting").text
    _select(driver, "mode", "reflect")
    _select(driver, "dilation", text="2")
    C = _csr(tc.conv_matrix(w, shape, stride=2, padding=1, dilation=2, padding_mode="reflect"))
    _assert_shown(driver, C, shape, (2, 1, 1))
    _click(driver, "output", 1)
    assert _lit(driver, "input") == _row(C, 1)
    _select(driver, "padding", text="4")  # reflect needs padding < 4: refused, the setting kept
    status = driver.find_element(By.ID, "status").text
    assert "padding_mode='reflect'" in status and "kept the previous setting" in status
    _assert_shown(driver, C)
    assert driver.find_element(By.ID, "padding").get_attribute("value") == "[[1,1],[1,1]]"
    _select(driver, "cout", "1")  # one output channel: its grid, and its block of C
    outputs = driver.find_elements(By.CSS_SELECTOR, '[data-role="output"]')
    assert sorted(int(e.get_attribute("data-index")) for e in outputs) == list(range(C.shape[0] // 2, C.shape[0]))
    _check_clean(driver)


def _network():
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 72, 1), nn.AvgPool2d(2),
                          nn.Conv2d(72, 2, 1), nn.Flatten(), nn.Linear(32, 5)).double().eval()
    return tc.compile(model, (1, 8, 8))


def test_layer_selector_walks_the_network(driver, tmp_path):
    from selenium.webdriver.common.by import By

    net = _network()
    _open(driver, tc.explore(net, path=tmp_path / "net.html"))
    options = driver.find_elements(By.CSS_SELECTOR, "#layer option")
    texts = [o.text for o in options]
    disabled = [o.get_attribute("disabled") is not None for o in options]
    assert disabled == [False, True, True, False, False], texts
    assert "4,608 outputs" in texts[1] and "4,608 inputs" in texts[2]
    assert "not shown" in driver.find_element(By.ID, "refused").text
    drawn = [net.layers[k] for k in (0, 4, 6)]
    for option, node in zip([0, 3, 4], drawn):
        _select(driver, "layer", str(option))
        C = _csr(node.matrix)
        _assert_shown(driver, C, node.in_shape, node.out_shape)
        _click(driver, "output", C.shape[0] - 1)
        assert _lit(driver, "input") == _row(C, C.shape[0] - 1)
        stride = driver.find_element(By.ID, "stride")
        assert (stride.get_attribute("disabled") is None) == (node.kind == "Conv2d")
    assert "features (k)" in driver.find_element(By.ID, "input").text  # the linear layer's vector input
    _select(driver, "layer", "0")  # a network's convolution: what if its stride were 2
    _select(driver, "stride", text="2")
    _assert_shown(driver, _csr(tc.conv_matrix(net.layers[0].weight, (1, 8, 8), stride=2, padding=1)))
    _check_clean(driver)


def test_arrow_keys_move_the_selection(driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    w = np.random.default_rng(3).standard_normal((2, 2, 3, 3))
    shape = (2, 5, 5)
    C = _csr(tc.conv_matrix(w, shape, padding=1))
    _open(driver, tc.explore(w, shape, padding=1, path=tmp_path / "layer.html"))
    body = driver.find_element(By.TAG_NAME, "body")

    def selected():
        return driver.execute_script("const s = explorer.S.sel; return [s.role, s.idx];")

    _click(driver, "output", 0)
    for key, idx in ((Keys.ARROW_RIGHT, 1), (Keys.ARROW_DOWN, 6), (Keys.PAGE_DOWN, 31), (Keys.ARROW_LEFT, 30),
                     (Keys.ARROW_LEFT, 30), (Keys.PAGE_UP, 5), (Keys.ARROW_UP, 0)):
        body.send_keys(key)
        assert selected() == ["output", idx]
        assert _lit(driver, "input") == _row(C, idx)
    _click(driver, "input", 12)
    body.send_keys(Keys.ARROW_UP)
    assert selected() == ["input", 7] and _lit(driver, "output") == _col(C, 7)
    _check_clean(driver)


def test_page_is_readable_at_1280_and_zooms(driver, tmp_path):
    from selenium.webdriver.common.by import By

    w = np.random.default_rng(4).standard_normal((4, 3, 3, 3))
    shape = (3, 16, 16)  # 768 inputs, 1024 outputs: more than fits, the grids scroll
    _open(driver, tc.explore(w, shape, padding=1, path=tmp_path / "layer.html"))
    assert driver.execute_script("return window.innerWidth") >= WIDTH - 20

    def box(css):
        return driver.execute_script("const r = document.querySelector(arguments[0]).getBoundingClientRect();"
                                     "return [r.left, r.width, r.height];", css)

    inner = driver.execute_script("return document.documentElement.clientWidth")
    cell = box('[data-role="input"][data-index="0"]')
    assert cell[1] >= 28 and cell[2] >= 28
    left, width, _ = box("#cbox")
    assert left <= 20 and width >= inner - 40  # C uses the full width
    assert box(".panels")[1] >= inner - 40
    canvas = box("#C")
    assert width - 25 <= canvas[1] <= width  # all of it but the scroll bar
    # the canvas is drawn: the first entry of row 0 is coloured, with (c, i, j) labels beside it
    pixel = driver.execute_script(
        "const S = explorer.S, M = S.M, j = M.indices[0];"
        "const x = Math.round(S.ML + (j + 0.5) * S.s), y = Math.round(S.MT + 0.5 * S.s);"
        "return Array.from(document.getElementById('C').getContext('2d').getImageData(x, y, 1, 1).data);")
    assert pixel[:3] != [255, 255, 255] and pixel[:3] != [250, 250, 250]
    assert "(2, 15, 15)" in driver.execute_script("return explorer.S.inI.label(767)")
    legend = driver.find_element(By.ID, "legend").text
    assert "selected pixel" in legend and "channel boundary" in legend
    s0 = driver.execute_script("return explorer.S.s")
    driver.find_element(By.ID, "zoomin").click()
    assert driver.execute_script("return explorer.S.s") == pytest.approx(1.25 * s0)
    assert box('[data-role="input"][data-index="0"]')[1] >= 1.2 * cell[1]
    driver.execute_script("document.getElementById('cwrap').dispatchEvent(new WheelEvent('wheel', "
                          "{deltaY: -100, ctrlKey: true, bubbles: true, cancelable: true, clientX: 400, clientY: 400}))")
    assert driver.execute_script("return explorer.S.zoom") == pytest.approx(1.25 ** 2)
    driver.find_element(By.ID, "fit").click()
    assert driver.execute_script("return explorer.S.s") == pytest.approx(s0)
    png = driver.get_screenshot_as_png()
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(png))
    assert image.size[0] == WIDTH and len(image.convert("L").getcolors(256)) > 20  # drawn, not blank
    _check_clean(driver)
