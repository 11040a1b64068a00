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


def chromium(*args: str, capabilities: dict | None = None):
    """A headless Chromium driven by selenium (Debian's chromium and chromium-driver), with
    ``args`` added to the usual flags; the test skips, saying why, where either is missing."""
    import shutil

    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not chrome or not driver_path:
        pytest.skip("no Chromium and chromedriver on this machine (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *args):
        opts.add_argument(arg)
    for key, value in (capabilities or {}).items():
        opts.set_capability(key, value)
    return webdriver.Chrome(service=Service(driver_path), options=opts)
