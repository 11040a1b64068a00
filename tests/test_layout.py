"""The layout of the package keeps the design readable: these tests fail when it drifts.

- no source file over 450 lines, the generic argument module under 300;
- one-way layering: a module imports only from its own floor or below
  (arithmetic -> geometry -> indexing/pattern -> readings -> networks, torch, figures -> the command);
- no module imports another's private names (what two modules share is a public name of
  the module that owns it);
- no control flow decided by reading an exception's text;
- figures know a layer by its class, not by its class name;
- the code speaks of the library, never of issue numbers.

Each check is a function of one module's source that lists what it finds, so that the last
test can show it finding each kind of fault in a made-up module.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "toeplitz_conv"
SOURCES = sorted(PACKAGE.rglob("*.py"))

# The floors, from the ground up: a module may import from its own floor or a lower one.
FLOORS = {
    "_args": 0, "memory": 1, "arithmetic": 2, "indexing": 2, "layouts": 2, "geometry": 3, "pool_geometry": 3,
    "pattern": 4,
    "_sparse": 4, "conv": 5, "pool": 5, "probe": 5,
    "operator": 6, "diagnose": 6, "testing": 6, "circulant": 7, "dissection": 7, "lanczos": 7, "svds": 7, "spectrum": 7, "blockdiag": 7, "spectral": 7, "network": 8, "torch_sparse": 8, "plot": 9, "verify": 10,
    "_cli_args": 11, "_cli_limits": 11, "_against": 11, "_cli_figures": 11, "cli": 11, "__init__": 12, "__main__": 12,
}


def module_name(path: Path) -> str:
    """'network.layers' for network/layers.py, 'network' for network/__init__.py."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


SUBPACKAGES = {module_name(p) for p in PACKAGE.glob("*/__init__.py")}


def package_imports(name: str, source: str):
    """``(target module, imported name, line)`` for each import of the package's own code.
    ``target`` is relative to the package ('conv', 'network.layers'); '' is the package."""
    parts = name.split(".")
    here = parts if name in SUBPACKAGES else parts[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - node.level + 1]
            for alias in node.names:
                target = [*base, *node.module.split(".")] if node.module else [*base, alias.name]
                yield ".".join(target), alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "toeplitz_conv":
            for alias in node.names:
                yield node.module.partition(".")[2], alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "toeplitz_conv":
                    yield alias.name.partition(".")[2], None, node.lineno


def layering_faults(name: str, source: str):
    me = FLOORS[name.split(".")[0]]
    for target, imported, line in package_imports(name, source):
        top = target.split(".")[0] or "__init__"
        if FLOORS[top] > me:
            yield f"{name}:{line} imports upward from {target or 'the package'}"
        if imported and imported.startswith("_") and not imported.startswith("__"):
            yield f"{name}:{line} imports the private name {imported} of {target}"


def private_attribute_faults(name: str, source: str):
    """``module._private`` where ``module`` is one of the package's modules."""
    modules = {imported for target, imported, _ in package_imports(name, source)
               if imported and target.endswith(imported)}
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            yield f"{name}:{node.lineno} reads {node.value.id}.{node.attr}"


def exception_text_faults(name: str, source: str):
    """A branch inside ``except ... as e`` whose condition reads the text of ``e``
    (``str(e)``, ``repr(e)``, ``e.args``, an f-string of it)."""
    def reads_text(test, e):
        for node in ast.walk(test):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("str", "repr", "format")
                    and any(isinstance(a, ast.Name) and a.id == e for a in node.args)):
                return True
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == e:
                return node.attr in ("args", "message", "msg")
            if isinstance(node, ast.FormattedValue) and any(
                    isinstance(n, ast.Name) and n.id == e for n in ast.walk(node.value)):
                return True
        return False

    for handler in ast.walk(ast.parse(source)):
        if isinstance(handler, ast.ExceptHandler) and handler.name:
            for node in ast.walk(handler):
                if isinstance(node, (ast.If, ast.IfExp, ast.While)) and reads_text(node.test, handler.name):
                    yield f"{name}:{node.lineno} decides on the text of {handler.name}"


def class_name_faults(name: str, source: str):
    """A comparison with a ``__name__`` (a layer recognised by its class name)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            if "__name__" in {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}:
                yield f"{name}:{node.lineno} compares a class name"


def issue_number_faults(name: str, source: str):
    for i, line in enumerate(source.splitlines(), 1):
        if re.search(r"\bissues? #?\d", line, re.IGNORECASE):
            yield f"{name}:{i} names an issue number"


CHECKS = [layering_faults, private_attribute_faults, exception_text_faults, issue_number_faults]


def test_file_sizes():
    sizes = {module_name(p): len(p.read_text().splitlines()) for p in SOURCES}
    assert {m: n for m, n in sizes.items() if n > 450} == {}
    assert sizes["_args"] < 300


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_package(check):
    faults = [f for p in SOURCES for f in check(module_name(p), p.read_text())]
    assert faults == []


def test_figures_know_layers_by_class_not_by_name():
    faults = [f for p in (PACKAGE / "plot").glob("*.py") for f in class_name_faults(module_name(p), p.read_text())]
    assert faults == []


def test_the_checks_find_what_they_look_for():
    bad = (
        "import toeplitz_conv as tc\n"
        "from ..plot import spy\n"
        "from ..pattern import _INT32_MAX\n"
        "from .. import conv\n"
        "x = conv._csr\n"
        "try:\n    pass\nexcept ValueError as e:\n    if str(e).startswith('module'):\n        raise\n"
        "except SystemExit as e:\n    code = e.code if isinstance(e.code, int) else 0  # not its text\n"
        "ok = type(layer).__name__ == 'Reshape'  # see issue 7\n"
    )
    found = [f for check in [*CHECKS, class_name_faults] for f in check("network.layers", bad)]
    assert found == [
        "network.layers:1 imports upward from the package",
        "network.layers:2 imports upward from plot",
        "network.layers:3 imports the private name _INT32_MAX of pattern",
        "network.layers:5 reads conv._csr",
        "network.layers:9 decides on the text of e",
        "network.layers:13 names an issue number",
        "network.layers:13 compares a class name",
    ]
