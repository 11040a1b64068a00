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


def test_dependency_floors_are_the_checked_minimum_versions():
    """pyproject.toml's floors of numpy, scipy and matplotlib are the versions
    scripts/check_min_versions.sh installs (scripts/min-versions.txt): a floor moved in one
    place only would claim support nothing checks."""
    deps = re.search(r"^dependencies = \[(.*)\]", (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    floors = dict(re.findall(r'"([\w-]+)>=([\d.]+)"', deps))
    pins = dict(re.findall(r"^([\w-]+)==([\d.]+)$", (ROOT / "scripts" / "min-versions.txt").read_text(), re.M))
    assert set(floors) == set(pins) == {"numpy", "scipy", "matplotlib"}, (floors, pins)
    for name, floor in floors.items():
        # the floor names a minor version (1.23); the check pins a release of it (1.23.5)
        assert pins[name].split(".")[:2] == floor.split(".")[:2], (name, floor, pins[name])


def test_torch_floor_is_the_one_the_modules_refuse_below():
    """The extras' torch floor and the version toeplitz_conv.torch_sparse refuses below agree."""
    from toeplitz_conv.torch_sparse import MIN_TORCH

    floors = set(re.findall(r'"torch>=([\d.]+),<3"', (ROOT / "pyproject.toml").read_text()))
    assert floors == {".".join(map(str, MIN_TORCH))}, (floors, MIN_TORCH)
