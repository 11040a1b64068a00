"""Tiny timing helpers shared by the benchmark scripts (not part of the library).

Everything is reported as the *minimum* over repeated runs: on a busy machine the minimum is
the least noisy estimate of what the code costs, and ratios taken from minima measured in one
run (interleaved, so that both sides see the same load) are what the tables report.
"""

from __future__ import annotations

import os
import platform
import sys
import time

# torch reads this when it is imported: large CPU tensors get transparent huge pages, as a
# tuned PyTorch install would. Set before any script imports torch.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import numpy as np  # noqa: E402


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def min_time(fn, *, warmup: int = 1, min_runs: int = 3, max_runs: int = 50,
             budget: float = 1.0) -> float:
    """Minimum wall time of ``fn()`` over at least ``min_runs`` and at most ``max_runs`` runs,
    stopping once ``budget`` seconds have been spent (after ``min_runs``)."""
    for _ in range(warmup):
        fn()
    best, spent, runs = float("inf"), 0.0, 0
    while runs < min_runs or (runs < max_runs and spent < budget):
        t = _once(fn)
        best, spent, runs = min(best, t), spent + t, runs + 1
    return best


def compare_min(fns: dict, *, warmup: int = 2, min_runs: int = 3, max_runs: int = 100,
                budget: float = 2.0) -> dict:
    """Minimum wall time of each of several functions, run interleaved (round robin) so that
    all of them see the same background load. ``budget`` is the total for all of them.

    A cheap function (under 50 ms) gets one untimed call right before each timed one, so
    that a thread pool (torch's OpenMP, OpenBLAS) that went to sleep while the other side
    ran is woken before the timed call instead of being charged to it."""
    est = {k: float("inf") for k in fns}
    for _ in range(max(1, warmup)):
        for k, fn in fns.items():
            est[k] = min(est[k], _once(fn))
    best = {k: float("inf") for k in fns}
    spent, rounds = 0.0, 0
    while rounds < min_runs or (rounds < max_runs and spent < budget):
        for k, fn in fns.items():
            if est[k] < 0.05:
                spent += _once(fn)  # wake the thread pools, untimed
            t = _once(fn)
            best[k] = min(best[k], t)
            spent += t
        rounds += 1
    return best


def rss() -> int:
    """The process's resident set now, in bytes (Linux: ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """The process's peak resident set so far, in bytes (``ru_maxrss``). In a child started by
    a larger process it is at least the parent's, as Linux keeps it across exec: spawn the
    benchmarks' workers from a light parent."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> int:
    """Start the process's peak resident set (``VmHWM``) again from its resident set now, and
    return it (Linux: writing 5 to ``/proc/self/clear_refs``); :func:`hwm` reads the peak since.
    One process can then measure the peak of several calls in turn."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss()


def hwm() -> int:
    """The process's peak resident set (``VmHWM``) since it started or since :func:`reset_peak`."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def fmt_time(t: float | None) -> str:
    if t is None:
        return "-"
    if t >= 100:
        return f"{t:.0f} s"
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.3g} ms"
    return f"{t * 1e6:.3g} µs"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def machine_info() -> str:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import scipy

    parts = [f"nproc={os.cpu_count()}", f"CPU: {cpu}", f"python {platform.python_version()}",
             f"numpy {np.__version__}", f"scipy {scipy.__version__}"]
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    parts.append(f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')}")
    try:
        parts.append("load avg " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    except OSError:
        pass
    return ", ".join(parts)


# The layers of issue 2: (name, input_shape (C, H, W), C_out, kernel, stride, padding)
LAYERS = [
    ("1x28x28 -> 3@5x5", (1, 28, 28), 3, 5, 1, 0),
    ("3x32x32 -> 16@3x3 p1", (3, 32, 32), 16, 3, 1, 1),
    ("64x56x56 -> 64@3x3 p1", (64, 56, 56), 64, 3, 1, 1),
    ("64x56x56 -> 128@3x3 s2 p1", (64, 56, 56), 128, 3, 2, 1),
]
QUICK_LAYERS = LAYERS[:2]
