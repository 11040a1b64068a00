"""Apply benchmark for issue 2: the built matrix in use, against PyTorch's own kernels.

Run from the repository root::

    THP_MEM_ALLOC_ENABLE=1 python benchmarks/bench_apply.py            # four layers, ~2-3 min
    THP_MEM_ALLOC_ENABLE=1 python benchmarks/bench_apply.py --quick    # two small layers only

``THP_MEM_ALLOC_ENABLE=1`` is also set by this script itself (``os.environ``, before torch is
imported), so torch's large CPU buffers use transparent huge pages. torch runs with its
default ``torch.get_num_threads()``; scipy's sparse products are single-threaded.

For each layer and batch size N (1 and 64), float32, one table with, ours vs torch:

- forward: scipy's ``C @ X`` vs ``F.conv2d(x, w)``. ``X`` is the batch as columns,
  ``(in_features, N)``: either the natural view ``x.reshape(N, -1).T`` (F-ordered; scipy
  copies it to C order inside the product) or a C-contiguous ``(in_features, N)`` array.
  Both are timed; the ratio uses the C-contiguous one (the faster one, and the layout a
  pipeline of sparse products produces: ``C @ X`` returns C-ordered ``(out_features, N)``).
- transposed: ``CT @ D`` with ``CT = C.T.tocsr()`` built once (not timed) vs
  ``F.conv_transpose2d(d, w)`` (with the ``output_padding`` that restores the input size);
  also scipy's plain ``C.T @ D`` (a CSC view of the same arrays: no copy, no sort per call).
- weight gradient: ``tc.conv_weight_grad(x, d, w.shape)`` (numpy in, numpy out) vs
  ``torch.ops.aten.convolution_backward(..., output_mask=[False, True, False])`` -- the weight
  gradient alone, what autograd runs when the input does not require grad.

Ratios are ours / torch (lower is better; 1.0 = as fast as torch). Every timing is the
minimum over many runs, ours and torch's interleaved so that both see the same load, each
cheap call preceded by an untimed one that wakes the thread pools (oneDNN's time on small
layers is bimodal on a busy 2-core machine; the minimum picks its fast mode).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch is imported
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import toeplitz_conv as tc  # noqa: E402

from _timing import (LAYERS, QUICK_LAYERS, compare_min, fmt_time, machine_info,  # noqa: E402
                     markdown_table)


def _close(a, b, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
    if err > 1e-4:
        raise AssertionError(f"{what}: relative error {err:.2e} against torch")


def bench(name, in_shape, c_out, k, stride, pad, n, budget_scale, rng):
    w = torch.from_numpy(rng.standard_normal((c_out, in_shape[0], k, k)).astype(np.float32))
    x = torch.from_numpy(rng.standard_normal((n, *in_shape)).astype(np.float32))
    y = F.conv2d(x, w, stride=stride, padding=pad)
    d = torch.from_numpy(rng.standard_normal(tuple(y.shape)).astype(np.float32))
    op = [in_shape[1 + a] - ((y.shape[2 + a] - 1) * stride - 2 * pad + k) for a in range(2)]

    C = tc.conv_matrix(w, in_shape, stride=stride, padding=pad)
    CT = C.T.tocsr()  # once, outside the timings
    wn, xn, dn = w.numpy(), x.numpy(), d.numpy()
    X_view, D_view = xn.reshape(n, -1).T, dn.reshape(n, -1).T
    X_c, D_c = np.ascontiguousarray(X_view), np.ascontiguousarray(D_view)

    # correctness, once
    _close((C @ X_c).T.reshape(y.shape), y, "C @ X")
    dx = F.conv_transpose2d(d, w, stride=stride, padding=pad, output_padding=op)
    _close((CT @ D_c).T.reshape(x.shape), dx, "CT @ D")
    _close((C.T @ D_view).T.reshape(x.shape), dx, "C.T @ D")
    dw_t = torch.ops.aten.convolution_backward(d, x, w, None, [stride] * 2, [pad] * 2, [1, 1],
                                               False, [0, 0], 1, [False, True, False])[1]
    _close(tc.conv_weight_grad(xn, dn, wn.shape, stride=stride, padding=pad), dw_t, "weight grad")

    # Small products: many rounds (torch's and OpenBLAS's 2-thread kernels are
    # bimodal under background load; the minimum needs enough runs to catch the undisturbed
    # mode). Big ones (seconds per call at N=64): a few rounds.
    big = C.nnz * n > 1e9
    opts = dict(warmup=1 if big else 3, min_runs=3 if big else 30, max_runs=1000,
                budget=budget_scale * (4.0 if big else 2.0))
    fwd = compare_min({
        "c": lambda: C @ X_c,
        "view": lambda: C @ X_view,
        "torch": lambda: F.conv2d(x, w, stride=stride, padding=pad),
    }, **opts)
    bwd = compare_min({
        "CT": lambda: CT @ D_c,
        "CT_view": lambda: CT @ D_view,
        "plain": lambda: C.T @ D_c,
        "torch": lambda: F.conv_transpose2d(d, w, stride=stride, padding=pad, output_padding=op),
    }, **opts)
    wg = compare_min({
        "ours": lambda: tc.conv_weight_grad(xn, dn, wn.shape, stride=stride, padding=pad),
        "torch": lambda: torch.ops.aten.convolution_backward(
            d, x, w, None, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], 1, [False, True, False]),
    }, **opts)
    r = lambda a, b: f"{a / b:.2f}"  # noqa: E731
    return [
        name, str(n),
        fmt_time(fwd["c"]), fmt_time(fwd["view"]), fmt_time(fwd["torch"]), r(fwd["c"], fwd["torch"]),
        fmt_time(bwd["CT"]), fmt_time(bwd["CT_view"]), fmt_time(bwd["plain"]), fmt_time(bwd["torch"]),
        r(bwd["CT"], bwd["torch"]), r(bwd["plain"], bwd["torch"]),
        fmt_time(wg["ours"]), fmt_time(wg["torch"]), r(wg["ours"], wg["torch"]),
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the two small layers only (smoke run)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    p.add_argument("--budget-scale", type=float, default=1.0,
                   help="multiply the per-measurement time budgets (more runs = steadier minima)")
    args = p.parse_args(argv)

    print("# bench_apply:", machine_info())
    rng = np.random.default_rng(0)
    rows = []
    for layer in QUICK_LAYERS if args.quick else LAYERS:
        for n in args.batches:
            print(f"  measuring {layer[0]}, N={n} ...", file=sys.stderr, flush=True)
            scale = args.budget_scale * (0.25 if args.quick else 1.0)
            rows.append(bench(*layer, n=n, budget_scale=scale, rng=rng))
    header = ["layer (float32)", "N",
              "C@X", "C@X (view)", "conv2d", "fwd ratio",
              "CT@D", "CT@D (view)", "C.T@D", "conv_transpose2d", "CT ratio", "C.T ratio",
              "wgrad ours", "wgrad torch", "wgrad ratio"]
    print()
    print(markdown_table(header, rows))
    print()
    print("Ratios are ours / torch (lower is better). C@X and CT@D: C-contiguous (features, N) "
          "operand; (view): the F-ordered view x.reshape(N, -1).T. CT = C.T.tocsr(), built once; "
          "C.T@D: scipy's CSC view of C, no per-call re-sort. wgrad torch: "
          "aten.convolution_backward, weight only. Minima over interleaved runs.")


if __name__ == "__main__":
    main()
