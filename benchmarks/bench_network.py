"""Network benchmark: the exact Jacobian of a compiled network, compiling a ResNet-18, and its
certified Lipschitz bound.

Run from the repository root::

    python benchmarks/bench_network.py           # full run (~5 min; jacrev at 48x48 needs ~6 GiB)
    python benchmarks/bench_network.py --quick   # smoke run: small sizes

1. ``net.jacobian(x)`` of a bias-free 8-layer DnCNN (16 channels, 3x3, ``x - f(x)``) against
   ``torch.func.jacrev`` of the same model, float64, one sample. Each side runs in a fresh
   subprocess, so its peak memory is its own: the peak resident set above what the process
   held before the call (``ru_maxrss`` minus the RSS after setup). jacrev is not run where it
   would need more memory than the machine has (its dense ``out x in`` result alone is
   ``(H W)^2 * 8`` bytes); the table says so.
2. A CIFAR-size ResNet-18 (3x32x32, float32): compile time and peak memory against the sum
   of its nodes' CSR bytes (the floor: writing each matrix once), and forward+backward of
   the compiled network at batch 8 against autograd.
3. Its ``lipschitz_bound("product")`` (float64): the time for every node's exact norm and for the
   bound, against the product of the exact node norms, the naive product of kernel-reshape
   norms (what spectral-norm layers multiply; not an upper bound of a conv layer's norm) and
   the empirical lower bound, the largest ``||J(x)||_2`` over a few random inputs.

Times are minima over repeated runs where cheap, single runs for the slow cases.
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


def dncnn(depth=8, c=16):
    from torch import nn

    class DnCNN(nn.Module):
        def __init__(self):
            super().__init__()
            layers = [nn.Conv2d(1, c, 3, padding=1, bias=False), nn.ReLU()]
            for _ in range(depth - 2):
                layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.ReLU()]
            layers.append(nn.Conv2d(c, 1, 3, padding=1, bias=False))
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return x - self.body(x)

    return DnCNN()


def worker(side: str, size: int, repeats: int) -> dict:
    """One side of the Jacobian table, in this (fresh) process."""
    import numpy as np
    import torch

    import toeplitz_conv as tc

    torch.manual_seed(0)
    model = dncnn().double()
    x = torch.randn(1, size, size, dtype=torch.float64)
    if side == "ours":
        net = tc.compile(model, (1, size, size))

        def run():
            return net.jacobian(x)
    else:
        def run():
            return torch.func.jacrev(lambda v: model(v[None])[0])(x)
    base = rss()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        J = run()
        best = min(best, time.perf_counter() - t0)
    out = {"time": best, "peak": max(peak_rss() - base, 0)}
    if side == "ours":
        out["nnz"] = int(J.nnz)
        if size <= 32:  # the independent check: jacrev's dense Jacobian, same process
            ref = torch.func.jacrev(lambda v: model(v[None])[0])(x).reshape(J.shape).detach().numpy()
            out["err"] = float(np.abs(J.toarray() - ref).max() / np.abs(ref).max())
    else:
        out["nnz"] = int((J != 0).sum())
    return out


def _spawn(side, size, repeats):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", side, "--size", str(size),
           "--repeats", str(repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def jacobian_table(sizes, jacrev_sizes):
    rows = []
    for size in sizes:
        ours = _spawn("ours", size, 3 if size <= 64 else 1)
        ref = _spawn("jacrev", size, 2) if size in jacrev_sizes else None
        dense = (size * size) ** 2 * 8
        rows.append([
            f"{size}x{size}", f"{ours['nnz']:,}", fmt_time(ours["time"]), fmt_bytes(ours["peak"]),
            fmt_time(ref["time"]) if ref else f"not run (dense result alone {fmt_bytes(dense)})",
            fmt_bytes(ref["peak"]) if ref else "-",
            f"{ref['time'] / ours['time']:.1f}x" if ref else "-",
            f"{ref['peak'] / max(ours['peak'], 1):.1f}x" if ref else "-",
            f"{ours['err']:.1e}" if "err" in ours else "-",
        ])
    print(markdown_table(["input", "nnz(J)", "ours", "ours peak", "jacrev", "jacrev peak",
                          "time ratio", "memory ratio", "max rel. diff vs jacrev"], rows))


def resnet18(classes=10, width=64):
    """A CIFAR ResNet-18 (3x32x32 input); ``width`` scales every channel count (64: the real one)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out += self.shortcut(x)
            return F.relu(out)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            blocks, c = [], width
            for w, s in ((width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)):
                blocks += [Block(c, w, s), Block(w, w, 1)]
                c = w
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(8 * width, classes)

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.blocks(out)
            out = F.adaptive_avg_pool2d(out, 1)
            return self.fc(torch.flatten(out, 1))

    return ResNet18()


def resnet_worker(size: int, batch: int, width: int = 64) -> dict:
    import numpy as np
    import torch

    import toeplitz_conv as tc
    from _timing import compare_min

    torch.manual_seed(0)
    model = resnet18(width=width).eval()
    base = rss()
    t0 = time.perf_counter()
    net = tc.compile(model, (3, size, size))
    t_compile = time.perf_counter() - t0
    peak = max(peak_rss() - base, 0)
    mats = [layer.matrix for layer in net.layers if layer.linear]
    csr = sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in mats)
    nnz = sum(m.nnz for m in mats)
    x = torch.randn(batch, 3, size, size)
    g = torch.randn(batch, 10)

    def ours():
        net.forward(x)
        net.backward(g)

    def autograd():
        model.zero_grad()
        xx = x.clone().requires_grad_(True)
        model(xx).backward(g)

    y = net.forward(x)
    err = float(np.abs(y - model(x).detach().numpy()).max() / np.abs(y).max())
    times = compare_min({"ours": ours, "autograd": autograd}, warmup=1, min_runs=2, budget=5.0)
    return {"compile": t_compile, "peak": peak, "csr": csr, "nnz": nnz, "nodes": len(net.layers),
            "ours": times["ours"], "autograd": times["autograd"], "err": err}


def lipschitz_worker(size: int, samples: int, width: int = 64) -> dict:
    """The certified bound of a ResNet-18, its nodes' exact norms, the naive product of
    kernel-reshape norms, and the empirical lower bound (max of ||J(x)||_2 over samples)."""
    import numpy as np
    import torch
    from torch import nn

    import toeplitz_conv as tc

    torch.manual_seed(0)
    model = resnet18(width=width).double().eval()
    for m in model.modules():  # trained-like batch norm statistics
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    net = tc.compile(model, (3, size, size))
    t0 = time.perf_counter()
    rows = net.layer_norms()
    t_norms = time.perf_counter() - t0
    t0 = time.perf_counter()
    bound = net.lipschitz_bound("product")
    t_bound = time.perf_counter() - t0
    naive = 1.0
    for m in model.modules():  # what spectral_norm-style bounds multiply
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            naive *= float(np.linalg.norm(m.weight.detach().reshape(m.weight.shape[0], -1).numpy(), 2))
        elif isinstance(m, nn.BatchNorm2d):
            naive *= float((m.weight / torch.sqrt(m.running_var + m.eps)).abs().max().detach())
    exact_product = float(np.prod([r.constant for r in rows]))
    t0 = time.perf_counter()
    local = max(net.local_lipschitz(torch.randn(3, size, size, dtype=torch.float64)) for _ in range(samples))
    t_local = (time.perf_counter() - t0) / samples
    return {"nodes": len(rows), "t_norms": t_norms, "t_bound": t_bound, "bound": bound, "naive": naive,
            "product": exact_product, "local": local, "t_local": t_local, "samples": samples}


def _width(width: int) -> str:
    return "" if width == 64 else f" (width {width})"


def lipschitz_table(size, samples, width=64):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "lipschitz", "--size", str(size),
           "--samples", str(samples), "--width", str(width)]
    r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    print(markdown_table(
        ["model", "every node's exact norm", "lipschitz_bound", "bound", "product of exact node norms",
         "naive product of kernel-reshape norms", f"empirical: max ||J(x)|| over {r['samples']}", "one ||J(x)||"],
        [[f"ResNet-18{_width(width)} 3x{size}x{size} float64", fmt_time(r["t_norms"]), fmt_time(r["t_bound"]),
          f"{r['bound']:.4g}", f"{r['product']:.4g}", f"{r['naive']:.4g}", f"{r['local']:.4g}",
          fmt_time(r["t_local"])]]))


def resnet_table(size, batch, width=64):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "resnet", "--size", str(size),
           "--batch", str(batch), "--width", str(width)]
    r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    print(markdown_table(
        ["model", "nodes", "nnz", "CSR bytes (floor)", "compile", "compile peak", "peak / CSR",
         f"fwd+bwd batch {batch}", "autograd", "ours / autograd", "max rel. diff"],
        [[f"ResNet-18{_width(width)} 3x{size}x{size} float32", str(r["nodes"]), f"{r['nnz']:,}", fmt_bytes(r["csr"]),
          fmt_time(r["compile"]), fmt_bytes(r["peak"]), f"{r['peak'] / r['csr']:.2f}",
          fmt_time(r["ours"]), fmt_time(r["autograd"]), f"{r['ours'] / r['autograd']:.1f}",
          f"{r['err']:.1e}"]]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--worker", choices=["ours", "jacrev", "resnet", "lipschitz"], help=argparse.SUPPRESS)
    ap.add_argument("--samples", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=48, help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    ap.add_argument("--width", type=int, default=64, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker == "resnet":
        print(json.dumps(resnet_worker(args.size, args.batch, args.width)))
        return
    if args.worker == "lipschitz":
        print(json.dumps(lipschitz_worker(args.size, args.samples, args.width)))
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.size, args.repeats)))
        return
    import torch  # noqa: F401  (machine_info reports its version)

    print(machine_info() + "\n")
    print("## Exact Jacobian of a bias-free 8-layer DnCNN (16 channels, 3x3, x - f(x)), float64\n")
    if args.quick:
        jacobian_table([8], {8})
    else:
        jacobian_table([32, 48, 256], {32, 48})
    print("\n## ResNet-18 (CIFAR-size), compiled\n")
    resnet_table(8 if args.quick else 32, 2 if args.quick else 8, 4 if args.quick else 64)
    print("\n## Lipschitz constant of a ResNet-18 (CIFAR-size)\n")
    lipschitz_table(8 if args.quick else 32, 2 if args.quick else 3, 4 if args.quick else 64)


if __name__ == "__main__":
    main()
