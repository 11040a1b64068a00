"""The torch benchmark script still runs and checks itself (a smoke run: a few repeats, small
batches; nothing about speed is asserted here, speed lives in benchmarks/RESULTS.md)."""

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")


def _load(name):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_torch_quick_prints_both_tables(capsys):
    _load("bench_torch").main(["--quick", "--layers", "1", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "| 1x28x28 -> 3@5x5 | 4 | csr | 43,200 |" in out
    assert "| 1x28x28 -> 3@5x5 | 4 | `C.T @ D` |" in out
    assert "WARNING" not in out  # the script compares its output with nn.Conv2d first


def test_bench_torch_refuses_cuda_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")
    with pytest.raises(SystemExit):
        _load("bench_torch").main(["--device", "cuda"])


@pytest.mark.slow
def test_bench_network_quick_prints_its_tables(capsys):
    _load("bench_network").main(["--quick"])
    out = capsys.readouterr().out
    assert re.search(r"\| 8x8 +\| 4,096 +\|", out), out  # nnz of the 8x8 denoiser's Jacobian (dense: its cone is 17x17), checked against jacrev
    assert "| ResNet-18 (width 4) 3x8x8 float32 | 68 " in out
    assert "| ResNet-18 (width 4) 3x8x8 float64 |" in out  # the Lipschitz table


@pytest.mark.slow
def test_bench_model_quick_prints_the_sgd_table(capsys):
    _load("bench_model").main(["--quick"])
    out = capsys.readouterr().out
    assert "| batch | nn.Conv2d step ms | Toeplitz step ms |" in out and "\n| 4 |" in out


@pytest.mark.slow
def test_bench_jacobian_quick_prints_its_tables(capsys):
    _load("bench_jacobian").main(["--quick"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 8x8 ")]
    assert len(rows) == 3 and all("| 4,096 " in row for row in rows)  # the same nonzeros each way (dense at 8x8)
    diffs = [float(row.split("|")[7]) for row in rows[1:]]  # each method against the first one
    assert max(diffs) < 1e-12


@pytest.mark.slow
def test_bench_jacobian_calibrate_quick_runs_every_estimated_method(capsys):
    _load("bench_jacobian").main(["--calibrate", "--quick"])
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if "| dncnn 8x8 |" in line]
    assert {row[1].strip() for row in rows} == {"float64", "float32"}
    assert {row[3].split()[0] for row in rows} >= {"forward", "reverse", "chain"}  # 8x8: no cones narrower than the image
    assert all(float(row[6]) > 0 for row in rows)  # each estimate run and timed


@pytest.mark.slow
def test_bench_lipschitz_quick_prints_its_table(capsys):
    _load("bench_lipschitz").main(["--quick"])
    out = capsys.readouterr().out
    assert "| model" in out and "windowed" in out and "empirical lower bound" in out
    assert "ResNet-18" in out and "refused: max pooling" in out  # LeNet's pooling: no LipSDP


def test_fuzz_totals_smoke_prints_its_table(capsys):
    import os

    if not hasattr(os, "fork") or not os.path.exists("/proc/self/status"):
        pytest.skip("the fuzz runs each case in a forked child (Linux)")
    code = _load("fuzz_totals").main(["--cases", "2"])
    out = capsys.readouterr().out
    assert "| family" in out and "refused (clear)" in out and "| **total**" in out
    assert "| programs (`tc.compile`)" in out and "| callables (`probe_matrix`, `assert_conv_equal`)" in out
    assert code == 0, out  # no WRONG answer and no crash in the first cases of each family


def test_fuzz_jacobian_first_cases_agree_with_jacrev(capsys):
    """Random stencil networks and programs: every Jacobian method equals jacrev, or refuses."""
    code = _load("fuzz_jacobian").main(["--seed", "3", "--cases", "12"])
    out = capsys.readouterr().out
    assert re.search(r"^1[0-2] models, 0 with a failure$", out, re.M), out
    counts = {m: int(n) for m, n in re.findall(r"^  (\w+(?: \w+)?) +ran +(\d+)", out, re.M)}
    assert counts["middle"] > 0 and counts["packed"] > 0, out  # the stencil methods ran on some
    assert code == 0


def test_fuzz_spectral_first_cases_agree_with_the_dense_svd(capsys):
    """Random layers: every spectral method that applies equals the dense SVD, or refuses."""
    code = _load("fuzz_spectral").main(["--seed", "5", "--cases", "16"])
    out = capsys.readouterr().out
    assert re.search(r"^1[0-6] layers, 0 with a failure$", out, re.M), out
    counts = {m: int(n) for m, n in re.findall(r"^  (\w+) +ran +(\d+)", out, re.M)}
    assert counts["svds"] > 0 and counts["blocks"] + counts["fft"] > 0, out
    assert code == 0


@pytest.mark.slow
def test_bench_architectures_quick_prints_its_table(capsys):
    module = _load("bench_architectures")
    module.main(["--quick"])
    out = capsys.readouterr().out
    header = [c.strip() for c in next(ln for ln in out.splitlines() if ln.startswith("| architecture")).split("|")]
    rows = {cells[1]: dict(zip(header, cells)) for cells in
            ([c.strip() for c in ln.split("|")] for ln in out.splitlines() if ln.startswith("| "))
            if cells[1] in module.QUICK}
    assert sorted(rows) == sorted(module.QUICK), out
    for name, row in rows.items():
        assert row["notes"] == "ok", (name, row["notes"])  # compiled, forward and gradients as autograd's
        assert float(row["max diff vs jacrev"]) < 1e-12, (name, row)
        assert row["chain check"] == "(auto is)" or float(row["chain check"]) < 1e-12, (name, row)


@pytest.mark.slow
def test_bench_resnet50_quick_runs_every_phase(capsys):
    _load("bench_resnet50").main(["--quick", "--only", "compile,jacobian,layer_norms"])
    out = capsys.readouterr().out
    assert "| compile " in out and "175 nodes" in out and "failed" not in out, out
    row = next(line for line in out.splitlines() if line.startswith("| jacobian "))
    err = float(row.split("3 rows vs autograd: ")[1].split(" rel.")[0])
    assert err < 1e-5, row  # float32: its rounding, summed in another order


def test_reset_peak_measures_the_peak_of_what_runs_after_it():
    import numpy as np

    timing = _load("_timing")
    big = np.ones(2**24)  # 128 MiB, touched
    del big
    start = timing.reset_peak()
    assert timing.hwm() < start + 32 * 2**20  # the earlier peak is forgotten
    block = np.ones(2**23)  # 64 MiB
    assert timing.hwm() - start >= 60 * 2**20
    del block
