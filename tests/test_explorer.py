"""The HTML explorer, driven in a real browser (headless Chromium through selenium): clicking an
output cell lights exactly its row of C on the input, clicking an input cell exactly its column
on the output, and the page logs no errors. Skipped, with the reason, where no browser is."""

import html
import shutil

import numpy as np
import pytest

import toeplitz_conv as tc


def test_explore_writes_one_self_contained_file(tmp_path):
    out = tc.explore(np.ones((2, 1, 3, 3)), (1, 5, 5), stride=2, padding=1, padding_mode="reflect",
                     path=tmp_path / "layer.html")
    text = html.unescape(out.read_text())
    assert "<script src" not in text and "http" not in text.split("<body>")[1]  # no network
    assert "Conv2d(1, 2, 3, stride=2, padding=1, padding_mode='reflect') on 1x5x5" in text
    with pytest.raises(ValueError, match=r"explore is for small layers \(at most 4,096 input and output entries"):
        tc.explore(np.ones((1, 1, 3, 3)), (1, 80, 80), path=tmp_path / "big.html")


def _driver():
    selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not chrome or not driver_path:
        pytest.skip("no Chromium and chromedriver on this machine (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    del selenium
    return webdriver.Chrome(service=Service(driver_path), options=opts)


@pytest.mark.parametrize("wshape,shape,kw", [
    ((2, 1, 3, 3), (1, 5, 5), dict(stride=2, padding=1, padding_mode="reflect")),
    ((2, 2, 3), (2, 7), dict(dilation=2, padding=1, padding_mode="circular")),
], ids=["2d-reflect-stride", "1d-circular-dilated"])
def test_explorer_lights_rows_and_columns_in_a_browser(tmp_path, wshape, shape, kw):
    from selenium.webdriver.common.by import By

    w = np.random.default_rng(0).standard_normal(wshape)
    path = tc.explore(w, shape, path=tmp_path / "layer.html", **kw)
    C = tc.conv_matrix(w, shape, **kw).tocsr()
    C.sum_duplicates()
    Ccsc = C.tocsc()
    driver = _driver()
    try:
        driver.get(path.resolve().as_uri())
        inputs = driver.find_elements(By.CSS_SELECTOR, '[data-role="input"]')
        outputs = driver.find_elements(By.CSS_SELECTOR, '[data-role="output"]')
        assert sorted(int(e.get_attribute("data-index")) for e in inputs) == list(range(C.shape[1]))
        assert sorted(int(e.get_attribute("data-index")) for e in outputs) == list(range(C.shape[0]))

        def lit(role):
            return {int(e.get_attribute("data-index"))
                    for e in driver.find_elements(By.CSS_SELECTOR, f'.lit[data-role="{role}"]')}

        for i in (0, C.shape[0] // 2, C.shape[0] - 1):
            driver.find_element(By.CSS_SELECTOR, f'[data-role="output"][data-index="{i}"]').click()
            assert lit("input") == set(C.indices[C.indptr[i]:C.indptr[i + 1]].tolist()) and not lit("output")
        for j in (0, C.shape[1] // 2, C.shape[1] - 1):
            driver.find_element(By.CSS_SELECTOR, f'[data-role="input"][data-index="{j}"]').click()
            assert lit("output") == set(Ccsc.indices[Ccsc.indptr[j]:Ccsc.indptr[j + 1]].tolist()) and not lit("input")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
