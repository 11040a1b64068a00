"""Whole models through the drop-in layers: an SGD step of a CIFAR CNN, and a ResNet-18's
first call at 3x224x224.

1. SGD step (forward, backward, optimizer step) of a CIFAR-size CNN (four 3x3 convs, two
   max-pools, a linear head, float32) with nn.Conv2d and after ``tc.convert``, at batch 1 and
   64: each side the minimum of many runs, interleaved. Then where the time goes: the same
   step with every conv replaced by an identity-cost stub is subtracted, giving the convs'
   share on each side.
2. A hand-written ResNet-18 at 3x224x224: ``tc.memory_report`` (its estimate, and how long
   it takes), then the first forward and the first forward+backward after ``convert`` (the
   matrices are built then), in a fresh process each: wall time and peak resident memory.

    python benchmarks/bench_model.py           # both tables (~3 min)
    python benchmarks/bench_model.py --quick   # smoke run
"""

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import toeplitz_conv as tc  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _timing import peak_rss  # noqa: E402
from bench_network import resnet18  # noqa: E402


def cifar_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 8 * 8, 10))


class _Stub(nn.Module):
    """A conv's output shape at no cost (a slice of a zero-padded, channel-repeated input)."""

    def __init__(self, conv):
        super().__init__()
        self.cout = conv.out_channels
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x[:, :1].expand(-1, self.cout, -1, -1) * self.scale


def step_fn(model, x, target):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), target).backward()
        opt.step()
    return step


def interleaved_min(fns, reps, budget_s):
    best = {k: float("inf") for k in fns}
    for f in fns.values():
        for _ in range(3):
            f()
    start = time.perf_counter()
    for r in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
        if r >= 5 and time.perf_counter() - start > budget_s:
            break
    return best


def stubbed(model):
    return nn.Sequential(*[_Stub(m) if isinstance(m, nn.Conv2d) else m for m in model])


def sgd_table(batches, reps, budget_s):
    print("## SGD step of a CIFAR-size CNN (float32, CPU)\n")
    print("| batch | nn.Conv2d step ms | Toeplitz step ms | ratio | convs' share: nn.Conv2d ms | Toeplitz ms | ratio | rest ms |")
    print("|---|---|---|---|---|---|---|---|")
    for n in batches:
        x, target = torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,))
        ref, ours, rest = cifar_cnn(), tc.convert(cifar_cnn()), stubbed(cifar_cnn())
        t = interleaved_min({"ref": step_fn(ref, x, target), "ours": step_fn(ours, x, target),
                             "rest": step_fn(rest, x, target)}, reps, budget_s)
        cr, co = t["ref"] - t["rest"], t["ours"] - t["rest"]
        print(f"| {n} | {1e3 * t['ref']:.2f} | {1e3 * t['ours']:.2f} | {t['ours'] / t['ref']:.2f} | "
              f"{1e3 * cr:.2f} | {1e3 * co:.2f} | {co / max(cr, 1e-9):.2f} | {1e3 * t['rest']:.2f} |")


class ImageNetResNet18(nn.Module):
    """ResNet-18 with the ImageNet stem (7x7 stride-2 conv, 3x3 stride-2 max-pool) around the
    residual blocks of the CIFAR one in bench_network."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.blocks = resnet18().blocks
        self.fc = nn.Linear(512, 1000)

    def forward(self, x):
        out = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        out = F.adaptive_avg_pool2d(self.blocks(out), 1)
        return self.fc(torch.flatten(out, 1))


def first_call_worker(what: str) -> dict:
    model = ImageNetResNet18()
    if what == "forward":
        model.eval()
    x = torch.randn(1, 3, 224, 224)
    t0 = time.perf_counter()
    try:
        report = tc.memory_report(model, (3, 224, 224), backward=what != "forward")
    except ValueError as e:  # past the memory limit: refused before anything is built
        peak = peak_rss()
        return dict(report_s=time.perf_counter() - t0, refused=str(e).split(". Largest")[0], peak=peak)
    t_report = time.perf_counter() - t0
    tc.convert(model)
    t0 = time.perf_counter()
    if what == "forward":
        with torch.no_grad():
            model(x)
    else:
        model(x).sum().backward()
    t_call = time.perf_counter() - t0
    peak = peak_rss()
    nnz = sum(c.nnz for c in report.layers)
    return dict(report_s=t_report, estimate=report.total_bytes, call_s=t_call, peak=peak, nnz=nnz)


def floor_worker(nbytes: int) -> dict:
    """The memory-write floor of a first call: fresh memory of the matrices' size, filled
    once (page faults included, as the first call pays them), in chunks of 256 MiB."""
    t0 = time.perf_counter()
    chunks = []
    for a in range(0, nbytes, 2**28):
        chunks.append(torch.empty(min(2**28, nbytes - a) // 4).fill_(1.0))
    return dict(floor_s=time.perf_counter() - t0)


def first_call_table():
    print("\n## ResNet-18 at 3x224x224: the first call after convert (fresh process each)\n")
    print("| first call | nonzeros of C | memory_report s | its estimate | call s | peak RSS | "
          "write floor s | call / floor |")
    print("|---|---|---|---|---|---|---|---|")
    for what in ("forward", "forward+backward"):
        out = subprocess.run([sys.executable, __file__, "--worker", what], capture_output=True,
                             text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        if "refused" in r:
            print(f"| {what} | | {r['report_s']:.2f} | refused: {r['refused']} | | "
                  f"{r['peak'] / 2**30:.2f} GiB | | |")
            continue
        out = subprocess.run([sys.executable, __file__, "--worker", "floor", "--bytes", str(r["estimate"])],
                             capture_output=True, text=True, check=True).stdout
        floor = json.loads(out.strip().splitlines()[-1])["floor_s"]
        print(f"| {what} | {r['nnz']:,} | {r['report_s']:.2f} | {r['estimate'] / 2**30:.2f} GiB | "
              f"{r['call_s']:.1f} | {r['peak'] / 2**30:.2f} GiB | {floor:.1f} | {r['call_s'] / floor:.1f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--worker", choices=("forward", "forward+backward", "floor"), help=argparse.SUPPRESS)
    ap.add_argument("--bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(floor_worker(args.bytes) if args.worker == "floor" else first_call_worker(args.worker)))
        return
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    if args.quick:
        sgd_table([1, 4], reps=5, budget_s=1)
        return
    sgd_table([1, 64], reps=200, budget_s=20)
    first_call_table()


if __name__ == "__main__":
    main()
