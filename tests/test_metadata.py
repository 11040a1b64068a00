"""The project's metadata agrees with itself: one version everywhere, a valid citation file,
a changelog entry for the version, the typing marker shipped."""

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import toeplitz_conv as tc

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_version():
    return re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def test_one_version_from_pyproject_to_the_command():
    v = _pyproject_version()
    assert version("toeplitz-conv") == v == tc.__version__
    out = subprocess.run([sys.executable, "-m", "toeplitz_conv", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"toeplitz-conv {v}"


def test_citation_validates_against_its_schema():
    """cffconvert's schema check where it is installed (the docs extra), else the YAML and its
    required keys."""
    import shutil

    exe = shutil.which("cffconvert") or (Path(sys.executable).parent / "cffconvert")
    if Path(exe).exists():
        out = subprocess.run([str(exe), "--validate", "-i", str(ROOT / "CITATION.cff")],
                             capture_output=True, text=True)
        assert out.returncode == 0 and "valid" in out.stdout, out.stdout + out.stderr
    yaml = __import__("pytest").importorskip("yaml")
    data = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    for key in ("cff-version", "message", "title", "authors", "version", "license"):
        assert key in data, key
    assert all("name" in a or "family-names" in a for a in data["authors"])
    assert str(data["version"]) == _pyproject_version()


def test_citation_and_changelog_name_the_version():
    v = _pyproject_version()
    cff = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^cff-version: 1\.2\.0$", cff, re.M)
    assert re.search(rf"^version: {re.escape(v)}$", cff, re.M)
    for key in ("title:", "authors:", "license: MIT"):
        assert key in cff
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{v}] - " in changelog and "## [Unreleased]" in changelog
    readme = (ROOT / "README.md").read_text()
    assert f"version = {{{v}}}" in readme  # the BibTeX entry


def test_typing_marker_is_in_the_package():
    assert (Path(tc.__file__).parent / "py.typed").exists()
