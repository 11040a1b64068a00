"""Norms benchmark: ``lipschitz_bound("product")`` and ``layer_norms()`` of a CIFAR ResNet-18, matrix-free
against the explicit matrices, compile included.

Run from the repository root::

    python benchmarks/bench_norms.py            # ~3 min: new at width 64, new and old at width 16
    python benchmarks/bench_norms.py --quick    # smoke run: widths 8 and 4, 16x16 input
    python benchmarks/bench_norms.py --old-width 64   # also the old way at width 64 (~6 min, ~7 GiB)

The model is ``bench_network.resnet18`` (3x32x32, float64, eval, batch-norm statistics drawn
as there) with its width (64 = the standard ResNet-18) scaled. Each measurement runs in a
fresh subprocess, so its time and peak memory are its own: peak resident set
(``ru_maxrss``) of the whole process, and above what it held after importing torch and
building the model.

- **new**: ``tc.compile`` (no matrix built: each node checked against torch matrix-free),
  then ``lipschitz_bound("product")`` and ``layer_norms()``: every run of linear nodes as a composed
  ``LinearOperator`` (a convolution from its pattern table), Lanczos in float64.
- **old**: what the library did before: compile with every node's CSR matrix built and held,
  runs of linear nodes multiplied into one sparse matrix, Lanczos on the CSR products (the
  same tolerance, start vector and rounding). Emulated here: the compiled network's matrices
  are all read (built) first, then the old composition runs on them.

The two bounds must agree to the Lanczos tolerance (the table shows the relative difference).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _timing import fmt_bytes, fmt_time, machine_info, markdown_table, peak_rss, rss  # noqa: E402


def resnet18(width: int):
    """bench_network's ResNet-18 with every channel count scaled by ``width / 64``, float64,
    eval, with trained-like batch norm statistics."""
    import torch
    from torch import nn

    from bench_network import resnet18 as scaled

    torch.manual_seed(0)
    model = scaled(width=width).double().eval()
    for m in model.modules():  # trained-like batch norm statistics, as bench_network
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return model


# --------------------------------------------------------------------------- the old way


def old_norm(M) -> float:
    """The old ``matrix_norm``: dense SVD up to 2**18 entries, else ARPACK on the CSR products."""
    import numpy as np
    import scipy.sparse as sp
    from scipy.sparse.linalg import LinearOperator, eigsh

    m, n = M.shape
    if m * n <= 2**18:
        return float(np.linalg.norm(M.toarray(), 2))
    M = sp.csr_array(M)
    MT = sp.csr_array(M.T)
    k = min(m, n)
    op = LinearOperator((k, k), dtype=M.dtype,
                        matvec=(lambda x: MT @ (M @ x)) if n <= m else (lambda x: M @ (MT @ x)))
    lam = eigsh(op, k=1, which="LA", tol=1e-10, v0=np.random.default_rng(0).standard_normal(k),
                ncv=min(k, 24), return_eigenvectors=False)[0]
    return float(np.sqrt(max(lam, 0.0) * (1 + 2e-10)))


def old_bound(net) -> float:
    """The old composition: runs of linear nodes multiplied into one CSR matrix (every one
    of ResNet-18's runs is under the old merge budget), the bound along the graph."""
    import numpy as np

    from toeplitz_conv.network.nodes import Combine

    layers = net.layers
    readers = [0] * (len(layers) + 1)
    for layer in layers:
        for p in layer.inputs:
            readers[p] += 1
    bound, chain = {0: 1.0}, {}

    def at(p):
        if p not in bound:
            M, q = chain.pop(p)
            bound[p] = old_norm(M) * at(q)
        return bound[p]

    for i, layer in enumerate(layers):
        p = i + 1
        if layer.linear and not isinstance(layer, Combine):
            r, W = layer.inputs[0], layer.matrix
            if r in chain and readers[r] == 1 and r != net.output:
                M, q = chain.pop(r)
                chain[p] = ((W @ M).tocsr(), q)
            else:
                chain[p] = (W, r)
        elif isinstance(layer, Combine):
            L = [at(q) for q in layer.inputs]
            bound[p] = min(sum(old_norm(W) * l for W, l in zip(layer.matrices, L)),
                           old_norm(layer.matrix) * float(np.sqrt(sum(l * l for l in L))))
        else:  # activations: the same constant both ways
            bound[p] = layer.function.lipschitz * at(layer.inputs[0])
    return float(at(net.output))


# --------------------------------------------------------------------------- workers


def worker(how: str, width: int, size: int) -> dict:
    import torch  # noqa: F401  (its import is part of the baseline, not of the measurement)

    import toeplitz_conv as tc

    model = resnet18(width)
    base = rss()
    t0 = time.perf_counter()
    net = tc.compile(model, (3, size, size))
    if how == "old":
        for layer in net.layers:  # the old compile built and held every matrix
            if layer.linear:
                layer.matrix  # noqa: B018
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    bound = old_bound(net) if how == "old" else net.lipschitz_bound("product")
    t_bound = time.perf_counter() - t0
    t0 = time.perf_counter()
    if how == "old":
        norms = [old_norm(layer.matrix) for layer in net.layers if layer.linear]
    else:
        norms = [r.constant for r in net.layer_norms() if r.constant is not None]
    t_norms = time.perf_counter() - t0
    held = net.memory_report()
    return {"compile": t_compile, "bound_t": t_bound, "norms_t": t_norms, "bound": bound,
            "norms": len(norms), "peak": peak_rss(), "above": peak_rss() - base, "held": held.built,
            "all": held.total}


def run(how: str, width: int, size: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", how, "--width", str(width),
           "--size", str(size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small widths and input (smoke run)")
    ap.add_argument("--old-width", type=int, default=None, help="also run the old way at this width")
    ap.add_argument("--worker", choices=["new", "old"], help=argparse.SUPPRESS)
    ap.add_argument("--width", type=int, default=64, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=32, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.width, args.size)))
        return
    import torch  # noqa: F401  (machine_info reports its version and threads)

    print(machine_info())
    print(time.strftime("%Y-%m-%d %H:%M"))
    size = 16 if args.quick else 32
    cases = [("new", 8 if args.quick else 64), ("new", 4 if args.quick else 16), ("old", 4 if args.quick else 16)]
    if args.old_width:
        cases.append(("old", args.old_width))
    results = {(how, w): run(how, w, size) for how, w in cases}
    rows = []
    for (how, w), r in results.items():
        ref = results.get(("new", w))
        diff = "" if ref is None or how == "new" else f"{abs(r['bound'] - ref['bound']) / ref['bound']:.1e}"
        total = r["compile"] + r["bound_t"] + r["norms_t"]
        rows.append([f"ResNet-18 width {w}, 3x{size}x{size}", how, fmt_time(r["compile"]), fmt_time(r["bound_t"]),
                     fmt_time(r["norms_t"]), fmt_time(total), fmt_bytes(r["peak"]), fmt_bytes(r["above"]),
                     fmt_bytes(r["held"]), f"{r['bound']:.6g}", diff])
    print(markdown_table(["model", "way", "compile", "lipschitz_bound", "layer_norms", "total",
                          "peak RSS", "peak above model", "matrices held at the end", "bound",
                          "bound vs new (rel.)"], rows))
    for w in sorted({w for _, w in cases}):
        if ("old", w) in results and ("new", w) in results:
            o, n = results[("old", w)], results[("new", w)]
            t_old, t_new = (sum(r[k] for k in ("compile", "bound_t", "norms_t")) for r in (o, n))
            print(f"width {w}: old/new time {t_old / t_new:.1f}x, peak above model {o['above'] / max(n['above'], 1):.1f}x")


if __name__ == "__main__":
    main()
