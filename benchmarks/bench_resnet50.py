"""A ResNet-50 at 3x224x224: compile, the exact input-output Jacobian, every node's norm and
the Lipschitz bound, each in its own process, with its time and peak memory.

Run from the repository root::

    python benchmarks/bench_resnet50.py            # ResNet-50, 3x224x224, float32 (~30-60 min)
    python benchmarks/bench_resnet50.py --quick    # smoke run: width 4, 3x32x32, 10 classes
    python benchmarks/bench_resnet50.py --only compile,jacobian

The model has torchvision's layout (written out here: the library does not need
torchvision): a 7x7 stride-2 stem, batch norm, ReLU and 3x3 stride-2 max pooling, then
3, 4, 6 and 3 bottleneck blocks (1x1, 3x3 with the stride, 1x1 to 4x the width, a projected
shortcut where the shape changes), global average pooling and a 1000-class linear head;
25,557,032 parameters at width 64. Eval mode, default batch-norm statistics, seeded weights.

Each phase runs in a fresh process that compiles the model first (the compile's own row is
that alone): *time* is the phase's wall time, *peak* the process's peak resident set
(``ru_maxrss``: imports, model, compile and the phase, all of it), *above* the peak above
what the process held after compiling. The Jacobian is dense (1000 x 150,528), by whatever
``'auto'`` resolves to (``jacobian_plan`` says which, with its estimates); three of its rows
are checked against torch's autograd of those outputs in the same process.
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

from _timing import fmt_bytes, fmt_time, machine_info, markdown_table, peak_rss  # noqa: E402

PHASES = ("compile", "plan", "jacobian", "layer_norms", "lipschitz_bound")


def resnet50(width: int = 64, classes: int = 1000, blocks=(3, 4, 6, 3)):
    """torchvision's ResNet-50 layout; ``width`` scales every channel count (64: the real one)."""
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, w, stride):
            super().__init__()
            cout = 4 * w
            self.conv1, self.bn1 = nn.Conv2d(cin, w, 1, bias=False), nn.BatchNorm2d(w)
            self.conv2, self.bn2 = nn.Conv2d(w, w, 3, stride, 1, bias=False), nn.BatchNorm2d(w)
            self.conv3, self.bn3 = nn.Conv2d(w, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return self.relu(y + (x if self.downsample is None else self.downsample(x)))

    layers = [nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = width
    for stage, n in enumerate(blocks):
        w = width * 2 ** stage
        for j in range(n):
            layers.append(Bottleneck(cin, w, 2 if j == 0 and stage > 0 else 1))
            cin = 4 * w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def _colours(plan) -> str:
    n = plan.colours.get(plan.method)
    return "no colouring" if n is None else f"{n:,} colours"


def worker(phase: str, width: int, size: int, classes: int) -> dict:
    """One phase, in this (fresh) process."""
    import numpy as np
    import torch

    import toeplitz_conv as tc

    torch.manual_seed(0)
    model = resnet50(width, classes).eval()
    x = torch.randn(1, 3, size, size)
    t0 = time.perf_counter()
    net = tc.compile(model, (3, size, size))
    out: dict = {"compile_s": time.perf_counter() - t0, "params": sum(p.numel() for p in model.parameters())}
    base = peak_rss()
    t0 = time.perf_counter()
    if phase == "compile":
        out["what"] = f"{len(net.layers)} nodes; matrices if all built: {fmt_bytes(net.memory_report().total)}"
    elif phase == "plan":
        plan = tc.jacobian_plan(net, x)
        out["what"] = f"'{plan.method}' ({_colours(plan)}); estimated " + ", ".join(
            f"{k} {v:.3g} s / {fmt_bytes(plan.nbytes[k])}" for k, v in plan.seconds.items())
    elif phase == "jacobian":
        J = tc.jacobian(net, x)
        seconds = time.perf_counter() - t0
        plan = tc.jacobian_plan(net, x)  # after the clock: what ran
        xr = x.clone().requires_grad_(True)
        y = model(xr)[0]
        err = 0.0
        for r in (0, classes // 2, classes - 1):  # three rows against autograd
            (g,) = torch.autograd.grad(y[r], xr, retain_graph=True)
            ref = g.reshape(-1).numpy().astype(np.float64)
            row = J[[r]].toarray().ravel()
            err = max(err, float(np.abs(row - ref).max() / np.abs(ref).max()))
        out.update(seconds=seconds, what=f"'{plan.method}' ({_colours(plan)}), {J.shape[0]:,} x "
                   f"{J.shape[1]:,}, {J.nnz:,} nonzeros ({fmt_bytes(J.data.nbytes + J.indices.nbytes)}); "
                   f"3 rows vs autograd: {err:.1e} rel.")
    elif phase == "layer_norms":
        table = net.layer_norms()
        known = [r.constant for r in table if r.constant is not None]
        out["what"] = f"{len(table)} nodes, constants {min(known):.3g} to {max(known):.3g}"
    elif phase == "lipschitz_bound":
        bound = net.lipschitz_bound()
        out["what"] = f"{float(bound):.4g} by '{bound.method}'"
    out.setdefault("seconds", time.perf_counter() - t0)
    out.update(peak=peak_rss(), above=max(peak_rss() - base, 0))
    return out


def _spawn(phase: str, width: int, size: int, classes: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", phase, "--width", str(width),
           "--size", str(size), "--classes", str(classes)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="width 4, 3x32x32, 10 classes")
    ap.add_argument("--only", default=",".join(PHASES), help=f"phases, comma-separated, of {', '.join(PHASES)}")
    ap.add_argument("--worker", choices=PHASES, help=argparse.SUPPRESS)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000)
    args = ap.parse_args(argv)
    if args.quick:
        args.width, args.size, args.classes = 4, 32, 10
    if args.worker:
        print(json.dumps(worker(args.worker, args.width, args.size, args.classes)))
        return
    phases = [p for p in args.only.split(",") if p]
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        ap.error(f"--only takes phases of {', '.join(PHASES)}; got {', '.join(unknown)}")
    print(machine_info())
    print(f"\nResNet-50 layout, width {args.width}, 3x{args.size}x{args.size}, {args.classes} classes, float32\n")
    rows = []
    for phase in phases:
        r = _spawn(phase, args.width, args.size, args.classes)
        if "error" in r:
            rows.append([phase, "failed", "-", "-", r["error"]])
            continue
        rows.append([phase, fmt_time(r["compile_s"] if phase == "compile" else r["seconds"]),
                     fmt_bytes(r["peak"]), fmt_bytes(r["above"]), r["what"]])
        print(f"  {phase}: done", file=sys.stderr, flush=True)
    print(markdown_table(["phase", "time", "peak RSS", "above the compiled model", "what"], rows))


if __name__ == "__main__":
    main()
