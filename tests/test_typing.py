"""The package passes ``mypy --strict`` (``mypy.ini`` names it in ``files``), and user code
reads as typed: ``typecheck/usage.py`` gets the types it asserts, ``typecheck/misuse.py`` an
error on each line it marks.

mypy keeps its cache in ``.mypy_cache`` (it writes a ``.gitignore`` there itself), shared with
a ``mypy`` run by hand.
"""

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

def _version(module: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", importlib.metadata.version(module))[:2])


#: The annotations are checked against these libraries' own type information: older numpy
#: (before 2.4) wants type arguments on every ndarray, older matplotlib types an Axes' figure
#: as optional and ``subplots`` differently.
STUBS = {"numpy": (2, 4), "matplotlib": (3, 10)}

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("mypy") is None,
        reason="mypy is not installed (pip install mypy): the annotations are not checked",
    ),
    pytest.mark.skipif(
        any(_version(m) < v for m, v in STUBS.items()),
        reason="the annotations are checked against numpy >= 2.4 and matplotlib >= 3.10 (their "
               "type information differs before); installed: " + ", ".join(
                   f"{m} {importlib.metadata.version(m)}" for m in STUBS),
    ),
]


TYPECHECK = Path(__file__).resolve().parent / "typecheck"


def mypy(*paths: Path) -> subprocess.CompletedProcess[str]:
    """``mypy`` with the repository's configuration (``--strict``) on ``paths``, or on what
    ``mypy.ini`` names. Run from the repository root: the paths in ``files`` are relative to it."""
    config = ROOT / "mypy.ini"
    assert config.is_file(), f"{config} is missing: it points mypy at the package"
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), *map(str, paths)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


def test_package_passes_mypy_strict():
    result = mypy()
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "Success: no issues found" in result.stdout, (
        f"mypy --strict on the package (mypy.ini) reported errors:\n{report}"
    )


def test_user_code_gets_the_public_types():
    """Return types a user relies on (a Spectrum, a ToeplitzConv2d that is an nn.Conv2d, a
    Network, an Axes): each ``assert_type`` in typecheck/usage.py fails if one is lost."""
    result = mypy(TYPECHECK / "usage.py")
    assert result.returncode == 0, f"typecheck/usage.py:\n{result.stdout}{result.stderr}"


def test_type_checker_refuses_misuse():
    """Each line of typecheck/misuse.py marked ``# error`` gets a mypy error, and no other
    line does (a ``Literal`` widened to ``str``, or a lazy name typed as ``object``, would
    let a wrong call through)."""
    source = TYPECHECK / "misuse.py"
    marked = {i for i, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1)
              if "  # error:" in line}
    result = mypy(source)
    found = {int(m) for m in re.findall(r"misuse\.py:(\d+): error", result.stdout)}
    assert marked, "typecheck/misuse.py marks no line"
    assert found == marked, (
        f"lines with a mypy error {sorted(found)}, lines marked '# error:' {sorted(marked)}:\n"
        f"{result.stdout}{result.stderr}"
    )
