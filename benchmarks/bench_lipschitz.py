"""Lipschitz certificates benchmark: 'product', 'windowed' and LipSDP beside the empirical lower
bound, and LipSDP on the sparse matrices against the textbook dense formulation.

Run from the repository root::

    python benchmarks/bench_lipschitz.py            # ~10 min: tiny CNN, LeNet, VGG-11, ResNet-18
    python benchmarks/bench_lipschitz.py --quick    # smoke run: LeNet, a width-4 ResNet-18 on 8x8

1. For each model (float64, eval; batch norms with statistics drawn as after training: running
   variance in [0.5, 2], gamma in [0.5, 1.5]), in a fresh subprocess so that its time and
   peak memory are its own: ``lipschitz_bound`` with each method, and the empirical lower
   bound of :func:`toeplitz_conv.lipschitz_report` (max ``||J(x)||_2`` over random samples
   plus ascent steps). The true constant lies between the empirical value and the smallest
   certificate.
2. LipSDP-Neuron of the tiny CNN (1x8x8 -> conv 4@3x3 -> ReLU -> conv 4@3x3 -> ReLU -> linear
   10): the library's programme (its constant assembled from the sparse rows) against the
   paper's dense formulation written directly in cvxpy (``[A; B]^T Q [A; B]``, dense ``A``
   from torch's autograd), both solved by SCS with the same settings; the library's value is
   its verified certificate.
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
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from _timing import fmt_bytes, machine_info, markdown_table, peak_rss  # noqa: E402


def tiny_cnn():
    from torch import nn
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(64, 10)), (1, 8, 8)


def lenet():
    from torch import nn
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84),
                         nn.ReLU(), nn.Linear(84, 10)), (1, 28, 28)


def vgg11(width=64):
    from torch import nn
    layers, c = [], 3
    for v in (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v * width, 3, padding=1, bias=False), nn.BatchNorm2d(v * width), nn.ReLU()]
            c = v * width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c, 10)), (3, 32, 32)


def resnet18(width=64, trained_bn=True, size=32):
    from bench_network import resnet18 as make
    model = make(width=width)
    if not trained_bn:  # batch norms as initialised: running mean 0, variance 1, gamma 1
        from torch import nn
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
                m.reset_running_stats()
    return model, (3, size, size)


MODELS = {
    "tiny CNN 1x8x8": lambda w: tiny_cnn(),
    "LeNet 1x28x28": lambda w: lenet(),
    "VGG-11 3x32x32": lambda w: vgg11(w),
    "ResNet-18 3x32x32, trained-like BN": lambda w: resnet18(w, True),
    "ResNet-18 3x32x32, BN at init": lambda w: resnet18(w, False),
}
QUICK = {  # the smoke run's: seconds, not minutes
    "LeNet 1x28x28": MODELS["LeNet 1x28x28"],
    "ResNet-18 3x8x8, trained-like BN": lambda w: resnet18(w, True, size=8),
}


def worker(name: str, width: int, samples: int, steps: int) -> dict:
    import numpy as np
    import torch

    import toeplitz_conv as tc

    torch.manual_seed(0)
    model, shape = {**MODELS, **QUICK}[name](width)
    from test_lipschitz_certificates import _trained_like_bn

    model = _trained_like_bn(model.double().eval()) if "at init" not in name else model.double().eval()
    net = tc.compile(model, shape)
    out: dict = {"model": name, "width": width}
    for method in ("product", "windowed", "lipsdp"):
        t = time.perf_counter()
        try:
            out[method] = float(net.lipschitz_bound(method))
        except (ValueError, ImportError) as e:
            msg = str(e)
            why = ("a graph (sums)" if "inputs" in msg else "max pooling" if "MaxPool" in msg
                   else msg.split("N = ")[1].split(" ")[0].join(["N = ", " too large"]) if "N = " in msg else msg[:60])
            out[method] = f"refused: {why}"
        out[method + "_s"] = time.perf_counter() - t
        out[method + "_peak"] = peak_rss()
    x = np.random.default_rng(0).standard_normal((samples, *shape))
    t = time.perf_counter()
    from toeplitz_conv.network.analysis.bounds import empirical_lower_bound
    out["empirical"] = empirical_lower_bound(net, x, steps)[0]
    out["empirical_s"] = time.perf_counter() - t
    out["samples"], out["steps"] = samples, steps
    return out


ACCURATE = {"eps_abs": 1e-6, "eps_rel": 1e-6, "max_iters": 20000}


def sdp_worker(side: str) -> dict:
    import torch

    import toeplitz_conv as tc
    from toeplitz_conv.network.analysis import lipsdp

    torch.manual_seed(0)
    model, shape = tiny_cnn()
    model = model.double().eval()
    t = time.perf_counter()
    if side == "ours":
        net = tc.compile(model, shape)
        value = float(net.lipschitz_bound("lipsdp"))
    else:
        import cvxpy as cp
        from test_lipschitz_certificates import _dense_lipsdp, _dense_weights_of  # the paper's formulation

        settings = ACCURATE if side == "dense-accurate" else lipsdp.SCS_SETTINGS
        value = _dense_lipsdp(_dense_weights_of(model, shape), [(0.0, 1.0)] * 2, solver=cp.SCS, **settings)
    return {"side": side, "value": value, "s": time.perf_counter() - t, "peak": peak_rss()}


def _run(args: list[str]) -> dict:
    env = dict(os.environ, THP_MEM_ALLOC_ENABLE="1")
    res = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="LeNet and a width-4 ResNet-18 on 8x8, one sample: a smoke run")
    p.add_argument("--worker", nargs=4, metavar=("MODEL", "WIDTH", "SAMPLES", "STEPS"), help=argparse.SUPPRESS)
    p.add_argument("--sdp-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], *map(int, args.worker[1:]))))
        return
    if args.sdp_worker:
        print(json.dumps(sdp_worker(args.sdp_worker)))
        return
    print(machine_info())
    width = 4 if args.quick else 64
    rows = []
    names = list(QUICK) if args.quick else list(MODELS)
    for name in names:
        big = "ResNet" in name or "VGG" in name
        samples, steps = (1, 0) if args.quick else ((2, 1) if big else (8, 3))
        r = _run(["--worker", name, str(width), str(samples), str(steps)])
        finite = [r[m] for m in ("product", "windowed", "lipsdp") if isinstance(r[m], float)]
        rows.append([name + (f" (width {width})" if big else ""),
                     *(f"{_fmt(r[m])} ({r[m + '_s']:.1f} s)" for m in ("product", "windowed", "lipsdp")),
                     f"{r['empirical']:.4g} ({r['empirical_s']:.0f} s, {r['samples']} x {r['steps']})",
                     f"{r['product'] / min(finite):.3g}x", f"{min(finite) / r['empirical']:.3g}x",
                     fmt_bytes(r["windowed_peak"])])
        print(rows[-1], flush=True)
    print(markdown_table(["model", "product", "windowed", "LipSDP", "empirical lower bound",
                          "product / best", "best / empirical", "peak RSS"], rows))
    if args.quick:
        return
    sides = {s: min((_run(["--sdp-worker", s]) for _ in range(2)), key=lambda d: d["s"])
             for s in ("ours", "dense", "dense-accurate")}
    o, d, a = sides["ours"], sides["dense"], sides["dense-accurate"]
    print(markdown_table(["LipSDP-Neuron, tiny CNN (N = 272)", "value", "time (min of 2, incl. build)", "peak RSS",
                          "library vs this"],
                         [["library: sparse rows, SCS 1e-4, verified", f"{o['value']:.6g}", f"{o['s']:.2f} s",
                           fmt_bytes(o["peak"]), ""],
                          ["dense reference, SCS 1e-4 (same settings)", f"{d['value']:.6g}", f"{d['s']:.2f} s",
                           fmt_bytes(d["peak"]), f"{o['value'] / d['value'] - 1:+.2e} rel., {d['s'] / o['s']:.2f}x time"],
                          ["dense reference, SCS 1e-6 (accurate)", f"{a['value']:.6g}", f"{a['s']:.2f} s",
                           fmt_bytes(a["peak"]), f"{o['value'] / a['value'] - 1:+.2e} rel., {a['s'] / o['s']:.2f}x time"]]))


if __name__ == "__main__":
    main()
