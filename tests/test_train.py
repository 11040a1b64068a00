"""A short training run in matrix form (examples/train_digits.py) against an identical torch run."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("train_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(example):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the torch twin's ops are tiny: threads only add overhead
    try:
        return example.train(epochs=3, check_steps=12, verbose=False)
    finally:
        torch.set_num_threads(threads)


def test_parameters_equal_torch_step_for_step(run):
    """SGD on Network.forward/backward == torch autograd + torch.optim.SGD, float64."""
    assert len(run["param_diffs"]) == 12
    assert max(run["param_diffs"]) < 1e-12
    assert max(run["loss_diffs"]) < 1e-12


def test_training_moves_the_parameters(example, run):
    """The agreement above is not vacuous: the parameters travelled far from their start."""
    start = example.make_model(0)
    change = max(np.abs(run["net"].params[name] - p.detach().numpy()).max()
                 for name, p in start.named_parameters())
    assert change > 0.05
    assert run["losses"][-1] < 0.5 * run["losses"][0]


def test_accuracy_clearly_better_than_chance(run):
    assert run["steps"] == 3 * (1347 // 32)
    assert run["test_accuracy"] > 0.8  # chance: 0.1
    assert run["train_accuracy"] > 0.8


def test_script_entry_point(example, capsys):
    result = example.main(["--epochs", "1", "--check-steps", "2"])
    out = capsys.readouterr().out
    assert "Conv2d (1, 8, 8) -> (8, 8, 8)  matrix 512 x 64" in out
    assert "first 2 steps: parameters equal torch's" in out
    assert result["test_accuracy"] > 0.5
