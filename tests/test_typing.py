"""The typed core passes ``mypy --strict``: the modules listed in ``mypy.ini`` (``files``).

The rest of the package is not typed yet; ``mypy.ini`` follows its imports silently, so only
the typed core's errors count. mypy keeps its cache in ``.mypy_cache`` (it writes a
``.gitignore`` there itself), shared with a ``mypy`` run by hand.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (pip install mypy): the typed core is not checked",
)


def test_typed_core_passes_mypy_strict():
    config = ROOT / "mypy.ini"
    assert config.is_file(), f"{config} is missing: it lists the typed core for mypy"
    # run from the repository root: the paths in mypy.ini's `files` are relative to it
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "Success: no issues found" in result.stdout, (
        f"mypy --strict on the typed core (mypy.ini) reported errors:\n{report}"
    )
