"""Jacobian benchmark: the exact network Jacobian by each method, against torch.func.

Run from the repository root::

    python benchmarks/bench_jacobian.py            # DnCNN-8 at 32-256 (+512 with --big), ResNet-18 (~6 min)
    python benchmarks/bench_jacobian.py --quick    # smoke run: the DnCNN at 8x8
    python benchmarks/bench_jacobian.py --targets  # 48x48 vs jacrev, 256x256, 512x512, ResNet-18 (~4 min)
    python benchmarks/bench_jacobian.py --calibrate  # the plan's estimates against the times and peaks, float64 and float32 (~20 min)

1. A bias-free 8-layer DnCNN (16 channels, 3x3, ``x - f(x)``), float64, one sample: the
   Jacobian by ``tc.jacobian(net, x, method=...)`` for ``'auto'`` (it resolves to
   ``'middle'``: forward cones to the fourth layer, reverse cones from the output, multiplied
   where they meet), ``'packed'`` (column colouring with each colour's tangents packed into
   its cones), ``'forward'`` (the same colouring, whole images, ``vmap(jvp)``) and
   ``'chain'`` (the product of the nodes' sparse matrices); against ``torch.func.jacrev``
   and ``torch.func.jacfwd`` (``vmap`` of JVPs), both dense.
2. A CIFAR ResNet-18 (width 64, float64): the 10 x 3072 input-output Jacobian (dense) by
   ``tc.jacobian(model, x)`` (``'model'``: a model with at most 32 outputs is not compiled, its
   own 10 vector-Jacobian products run), by ``'auto'`` on the compiled network (it resolves to
   ``'reverse'``: 10 row colours) and by jacrev.

Each cell runs in a fresh subprocess: *time* is compile + Jacobian (the compile alone in
brackets), *peak* the process's peak resident set (``ru_maxrss``: imports, model, compile and
the Jacobian, all of it). A dense reference is not run where its result alone would exceed
6 GiB. Every method's result is compared with the first one in its row (max abs difference).

``--calibrate`` holds ``jacobian_plan``'s estimates against what each method takes, float64
and float32, each method in its own process: the time (the fastest of two calls after a first)
and the memory (a second call's peak resident set above the process's before it, ``VmHWM``
reset: what the method holds, which the estimate and the up-front refusal speak of; the
first call also pays torch.func's one-time imports and code).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _timing import fmt_bytes, fmt_time, hwm, machine_info, markdown_table, peak_rss, reset_peak  # noqa: E402
from bench_network import dncnn, resnet18  # noqa: E402

DENSE_LIMIT = 6 * 2**30


def _model(name: str, size: int, dtype_name: str):
    """``(model, input_shape, x)``: the benchmark's DnCNN-8 or ResNet-18 (seed 0) in eval mode and
    one sample, in ``dtype_name``."""
    import torch

    torch.manual_seed(0)
    dtype = getattr(torch, dtype_name)
    model = (dncnn() if name == "dncnn" else resnet18()).to(dtype).eval()
    shape = (1, size, size) if name == "dncnn" else (3, size, size)
    return model, shape, torch.randn(1, *shape, dtype=dtype)


def worker(model_name: str, side: str, size: int, out_path: str) -> dict:
    import scipy.sparse as sp
    import torch

    import toeplitz_conv as tc

    model, shape, x = _model(model_name, size, "float64")
    t0 = time.perf_counter()
    compile_s = 0.0
    if side == "model":  # as a user calls it: the model itself, 'auto' (it compiles if it needs to)
        J = tc.jacobian(model, x)
        total = time.perf_counter() - t0
        plan = tc.jacobian_plan(model, x)  # after the clock: what ran
        info = {"method": plan.method, "colours": plan.colours}
    elif side in ("forward", "packed", "middle", "reverse", "chain", "auto"):
        net = tc.compile(model, shape)
        compile_s = time.perf_counter() - t0
        J = tc.jacobian(net, x, method=side)
        total = time.perf_counter() - t0
        plan = tc.jacobian_plan(net, x, method=side)  # after the clock: what ran
        info = {"method": plan.method, "colours": plan.colours}
    else:
        f = (lambda v: model(v[None])[0])
        jac = torch.func.jacrev(f) if side == "jacrev" else torch.func.jacfwd(f)
        with torch.no_grad() if side == "jacfwd" else torch.enable_grad():
            D = jac(x[0]).reshape(-1, x[0].numel()).detach().numpy()
        J = sp.csr_array(D)
        J.eliminate_zeros()
        total = time.perf_counter() - t0
        info = {"method": side}
    sp.save_npz(out_path, J)
    return {"time": total, "compile": compile_s, "peak": peak_rss(),
            "nnz": int(J.nnz), **info}


def _spawn(model_name, side, size, tmp):
    path = os.path.join(tmp, f"{model_name}-{side}-{size}.npz")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", model_name, side, str(size), path]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["path"] = path
    return out


def _cell(r, first):
    import scipy.sparse as sp

    if "error" in r:
        return [r["error"][:60], "-", "-"]
    diff = "-"
    if first is not None and "path" in first and r is not first:
        A, B = sp.load_npz(r["path"]), sp.load_npz(first["path"])
        diff = f"{abs(A - B).max() if (A - B).nnz else 0.0:.1e}"
        del A, B
    t = fmt_time(r["time"]) + (f" ({fmt_time(r['compile'])})" if r.get("compile") else "")
    return [t, fmt_bytes(r["peak"]), diff]


def table(model_name, sizes, sides, tmp):
    rows = []
    for size in sizes:
        n = size * size * (3 if model_name == "resnet" else 1)
        m = 10 if model_name == "resnet" else n
        results = {}
        for side in sides:
            if side in ("jacrev", "jacfwd") and m * n * 8 * 2 > DENSE_LIMIT:
                results[side] = {"error": f"not run (dense {fmt_bytes(m * n * 8)})"}
                continue
            results[side] = _spawn(model_name, side, size, tmp)
        first = next((r for r in results.values() if "path" in r), None)
        ref = results.get("jacrev") or results.get("jacfwd")
        for side, r in results.items():
            cell = _cell(r, first)
            ratio = "-"
            if ref and "time" in ref and "time" in r and r is not ref:
                ratio = f"{ref['time'] / r['time']:.1f}x / {ref['peak'] / r['peak']:.1f}x"
            what = r.get("method", side)
            colours = r.get("colours", {}).get(what, "") if isinstance(r.get("colours"), dict) else ""
            rows.append([f"{size}x{size}", side, f"{what}" + (f" ({colours} colours)" if colours else ""),
                         f"{r.get('nnz', 0):,}" if "nnz" in r else "-", *cell, ratio])
    print(markdown_table(["input", "asked", "ran", "nnz(J)", "time (compile)", "peak RSS",
                          "max diff vs first", "jac* / ours: time, peak"], rows))


def _calibration_net(dtype_name: str, name: str, size: int):
    import toeplitz_conv as tc

    model, shape, x = _model(name, size, dtype_name)
    return tc.compile(model, shape), x


def calibration_worker(dtype_name: str, name: str, size: int, method: str, repeats: int = 2) -> dict:
    """One method in this (fresh) process: the plan's estimates, the peak resident set a call adds
    to the process (:func:`reset_peak`; after a first call, which pays torch.func's one-time
    imports and code, 25-75 MiB), and the fastest of ``repeats`` calls."""
    import toeplitz_conv as tc

    net, x = _calibration_net(dtype_name, name, size)
    plan = tc.jacobian_plan(net, x, method=method)
    tc.jacobian(net, x, method=method)
    gc.collect()
    start = reset_peak()
    tc.jacobian(net, x, method=method)
    held = hwm() - start
    ran = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        tc.jacobian(net, x, method=method)
        ran = min(ran, time.perf_counter() - t0)
    return {"seconds": plan.seconds[method], "nbytes": plan.nbytes[method], "ran": ran, "held": held}


def calibrate(cases, longest=60.0):
    """The cost model against the clock and the memory: every method ``jacobian_plan``
    estimates, each in a fresh process (:func:`calibration_worker`), in float64 and float32;
    estimates past ``longest`` seconds are not run."""
    import toeplitz_conv as tc

    rows = []
    for dtype_name in ("float64", "float32"):
        for name, size in cases:
            net, x = _calibration_net(dtype_name, name, size)
            plan = tc.jacobian_plan(net, x)
            for method, estimate in sorted(plan.seconds.items()):
                cell = ["not run", "-", "-", "-"]
                if estimate <= longest:
                    cmd = [sys.executable, os.path.abspath(__file__), "--calibration-worker",
                           dtype_name, name, str(size), method]
                    done = subprocess.run(cmd, capture_output=True, text=True)
                    if done.returncode:
                        cell = [(done.stderr.strip().splitlines() or ["failed"])[-1][:60], "-", "-", "-"]
                    else:
                        r = json.loads(done.stdout.strip().splitlines()[-1])
                        cell = [fmt_time(r["ran"]), f"{r['seconds'] / r['ran']:.2f}", fmt_bytes(r["held"]),
                                f"{r['nbytes'] / max(r['held'], 1):.2f}"]
                rows.append([dtype_name, f"{name} {size}x{size}", method + (" (auto)" if method == plan.method else ""),
                             f"{estimate:.3g} s", cell[0], cell[1], fmt_bytes(plan.nbytes[method]), *cell[2:]])
    print(markdown_table(["dtype", "model", "method", "estimate", "ran", "estimate / ran", "memory estimate",
                          "held (peak above the start)", "estimate / held"], rows))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--big", action="store_true", help="also 512x512 (auto only)")
    ap.add_argument("--targets", action="store_true",
                    help="only the targets' cells: DnCNN 48x48 auto/packed/jacrev, 256x256 auto/packed, "
                         "512x512 auto; ResNet-18 model/jacrev")
    ap.add_argument("--calibrate", action="store_true",
                    help="the plan's estimated time and memory of each method against its time and peak, float64 and float32")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--calibration-worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.calibration_worker:
        dtype_name, name, size, method = args.calibration_worker
        print(json.dumps(calibration_worker(dtype_name, name, int(size), method)))
        return
    if args.worker:
        name, side, size, path = args.worker
        print(json.dumps(worker(name, side, int(size), path)))
        return
    import tempfile

    import torch  # noqa: F401  (machine_info reports its version)

    print(machine_info() + "\n")
    if args.calibrate:
        print("## The cost model: jacobian_plan's estimates against the times\n")
        calibrate([("dncnn", 8)] if args.quick else
                  [("dncnn", 32), ("dncnn", 64), ("dncnn", 128), ("dncnn", 256), ("resnet", 32)])
        return
    with tempfile.TemporaryDirectory() as tmp:
        print("## Exact Jacobian of a bias-free 8-layer DnCNN (16 channels, 3x3, x - f(x)), float64\n")
        if args.quick:
            table("dncnn", [8], ["auto", "chain", "jacrev"], tmp)
        elif args.targets:
            table("dncnn", [48], ["auto", "packed", "jacrev"], tmp)
            table("dncnn", [256], ["auto", "packed"], tmp)
            table("dncnn", [512], ["auto"], tmp)
            print("\n## Input-output Jacobian of a CIFAR ResNet-18 (width 64), float64\n")
            table("resnet", [32], ["model", "jacrev"], tmp)
        else:
            table("dncnn", [32, 48], ["auto", "packed", "forward", "chain", "jacrev", "jacfwd"], tmp)
            table("dncnn", [128], ["auto", "packed", "forward", "chain"], tmp)
            table("dncnn", [256], ["auto", "packed", "forward"], tmp)
            if args.big:
                table("dncnn", [512], ["auto"], tmp)
        if not args.quick and not args.targets:
            print("\n## Input-output Jacobian of a CIFAR ResNet-18 (width 64), float64\n")
            table("resnet", [32], ["model", "auto", "jacrev"], tmp)


if __name__ == "__main__":
    main()
