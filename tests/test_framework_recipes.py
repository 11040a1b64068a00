"""The recipes of docs/guide/frameworks.md, run as they are printed there.

Each ```python block of that page follows a marker ``<!-- recipe: FRAMEWORK NAME -->`` (an
HTML comment: the site does not show it). The block runs in a fresh namespace, with its own
imports, once the framework imports; where it is not installed the recipe is skipped, with the
reason. The scipy recipes always run (scipy is a dependency). TensorFlow, Keras, JAX, ONNX and
ONNX Runtime are no dependencies of this project: install them to run theirs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "frameworks.md"

#: What each recipe's framework needs importable; scipy's always is.
NEEDS = {
    "tensorflow": ("tensorflow",),
    "keras": ("keras",),
    "jax": ("jax",),
    "onnxruntime": ("onnx", "onnxruntime"),
    "scipy": (),
}

MARKER = re.compile(r"^<!-- recipe: (\w+) (\w+) -->\n```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def recipes() -> list[tuple[str, str, int, str]]:
    """(framework, name, line of the code's first line, code) of every marked block."""
    text = PAGE.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start(3)) + 1, m.group(3)) for m in MARKER.finditer(text)]


RECIPES = recipes()


def test_every_python_block_is_a_recipe_of_a_known_framework():
    text = PAGE.read_text(encoding="utf-8")
    blocks = len(re.findall(r"^```python$", text, flags=re.MULTILINE))
    assert blocks == len(RECIPES), (f"{PAGE.name}: {blocks} python blocks, {len(RECIPES)} marked as recipes: "
                                    f"put <!-- recipe: FRAMEWORK NAME --> right above each")
    names = [f"{f}-{n}" for f, n, _, _ in RECIPES]
    assert len(set(names)) == len(names), f"recipe names repeat: {names}"
    assert {f for f, _, _, _ in RECIPES} == set(NEEDS), "a framework with no recipe, or a recipe of an unknown one"


@pytest.mark.parametrize("framework, name, line, code", RECIPES, ids=[f"{f}-{n}" for f, n, _, _ in RECIPES])
def test_recipe(framework, name, line, code, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notes
    for module in NEEDS[framework]:
        pytest.importorskip(module, reason=f"{module} is not installed: the {framework} recipe '{name}' of "
                                           f"{PAGE.name} is not run")
    # compiled at its line of the page: a traceback points into frameworks.md
    exec(compile("\n" * (line - 1) + code, str(PAGE), "exec"), {"__name__": f"recipe_{framework}_{name}"})
