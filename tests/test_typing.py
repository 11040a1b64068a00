"""The package passes ``mypy --strict`` (``mypy.ini`` names it in ``files``).

mypy keeps its cache in ``.mypy_cache`` (it writes a ``.gitignore`` there itself), shared with
a ``mypy`` run by hand.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (pip install mypy): the annotations are not checked",
)


def test_package_passes_mypy_strict():
    config = ROOT / "mypy.ini"
    assert config.is_file(), f"{config} is missing: it points mypy at the package"
    # run from the repository root: the paths in mypy.ini's `files` are relative to it
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "Success: no issues found" in result.stdout, (
        f"mypy --strict on the package (mypy.ini) reported errors:\n{report}"
    )
