"""Build benchmark for issue 2: how fast and how lean is ``tc.conv_matrix``?

Run from the repository root::

    THP_MEM_ALLOC_ENABLE=1 python benchmarks/bench_build.py            # the four layers, ~2-3 min
    THP_MEM_ALLOC_ENABLE=1 python benchmarks/bench_build.py --quick    # the two small layers only

One table, everything measured in this run (float32 weights, as in a real model). Columns:

- nnz, CSR bytes: ``C.nnz`` and ``data + indices + indptr`` bytes of the result.
- cold: ``tc.conv_matrix`` with an empty pattern cache (``conv_pattern.cache_clear()``), so the
  index pattern is computed too; warm: the pattern already cached (a second layer of the same
  geometry, or a new weight).
- floor: allocating and writing numpy arrays of the CSR's final size (data, indices, indptr)
  -- no build can be faster than that; ``x floor`` = build time / floor.
- values: a values-only rebuild for new weights of the same geometry,
  ``tc.conv_pattern(geometry).values(W_new, out=C.data)``.
- peak/CSR: tracemalloc's peak during the build (numpy reports its buffers to tracemalloc)
  divided by the CSR's own bytes; the result itself counts, so 1.0 is the minimum.
- naive loop: a straightforward Python loop over output channels, positions and taps that
  collects COO lists and converts them to CSR. On the big layers it is timed on the first k
  of C_out output channels (every channel has the same pattern) and scaled by C_out/k --
  marked "(est. from k/C_out ch)". ``x naive`` = naive / cold build.
- jacrev: ``torch.func.jacrev`` of ``F.conv2d`` w.r.t. the input, the dense Jacobian (which is
  C as a dense array). Skipped, with its size, where the dense result alone would exceed
  ``--jacrev-max-gib`` (default 4 GiB). ``x jacrev`` = jacrev / cold build.

All times are minima over repeated runs (see ``_timing.py``).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch is imported
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import toeplitz_conv as tc  # noqa: E402
from toeplitz_conv.pattern import conv_pattern  # noqa: E402

from _timing import (LAYERS, QUICK_LAYERS, fmt_bytes, fmt_time, machine_info,  # noqa: E402
                     markdown_table, min_time)


def csr_bytes(C) -> int:
    return C.data.nbytes + C.indices.nbytes + C.indptr.nbytes


# ---------------------------------------------------------------------------- the floor
def floor_build(nnz: int, n_rows: int, data_dtype, idx_dtype):
    """Allocate and write arrays of the CSR's final size: the least any builder must do."""
    data = np.empty(nnz, dtype=data_dtype)
    data.fill(1)
    indices = np.empty(nnz, dtype=idx_dtype)
    indices.fill(1)
    indptr = np.empty(n_rows + 1, dtype=idx_dtype)
    indptr.fill(1)
    return data, indices, indptr


# ---------------------------------------------------------------------------- naive builder
def naive_conv_matrix(w: np.ndarray, in_shape, stride: int, pad: int, channels=None):
    """The textbook loop: for each output channel, position and tap, append one COO entry.

    Only the output channels in ``channels`` (default: all) are built; the shape is the full one.
    """
    c_out, c_in, kh, kw = w.shape
    _, H, W = in_shape
    Ho, Wo = (H + 2 * pad - kh) // stride + 1, (W + 2 * pad - kw) // stride + 1
    wl = w.tolist()
    rows, cols, vals = [], [], []
    for co in range(c_out) if channels is None else channels:
        wc = wl[co]
        for oh in range(Ho):
            for ow in range(Wo):
                r = (co * Ho + oh) * Wo + ow
                for ci in range(c_in):
                    for i in range(kh):
                        ih = oh * stride - pad + i
                        if ih < 0 or ih >= H:
                            continue
                        for j in range(kw):
                            iw = ow * stride - pad + j
                            if 0 <= iw < W:
                                rows.append(r)
                                cols.append((ci * H + ih) * W + iw)
                                vals.append(wc[ci][i][j])
    coo = sp.coo_array((np.array(vals, dtype=w.dtype), (np.array(rows), np.array(cols))),
                       shape=(c_out * Ho * Wo, c_in * H * W))
    return coo.tocsr()


def time_naive(w, in_shape, stride, pad, entries_budget: float):
    """Time the naive builder on all channels if cheap, else on a first few and scale up."""
    c_out = w.shape[0]
    per_channel = conv_pattern(tc.conv_geometry(w.shape, in_shape, stride=stride, padding=pad)).cols.size
    k = max(1, min(c_out, int(entries_budget // max(per_channel, 1))))
    t0 = time.perf_counter()
    naive_conv_matrix(w, in_shape, stride, pad, channels=range(k))
    t = time.perf_counter() - t0
    if k == c_out:
        return t, ""
    return t * c_out / k, f" (est. from {k}/{c_out} ch)"


# ---------------------------------------------------------------------------- jacrev
def time_jacrev(w: np.ndarray, in_shape, stride, pad, max_gib: float):
    """Dense Jacobian of the conv w.r.t. its input via torch.func.jacrev, if it fits."""
    import torch
    import torch.nn.functional as F

    n_out = w.shape[0] * ((in_shape[1] + 2 * pad - w.shape[2]) // stride + 1) * \
        ((in_shape[2] + 2 * pad - w.shape[3]) // stride + 1)
    n_in = int(np.prod(in_shape))
    need = n_out * n_in * w.dtype.itemsize  # the dense result alone
    if need > max_gib * 2**30:
        return None, f"would need {need / 2**30:.0f} GiB"
    wt = torch.from_numpy(w)
    x = torch.randn(n_in, dtype=wt.dtype)

    def f(xf):
        return F.conv2d(xf.view(1, *in_shape), wt, stride=stride, padding=pad).reshape(-1)

    # vmap over chunks of the output basis, so that the basis (n_out x n_out) is never whole
    chunk = max(1, min(n_out, int(2**28 // (4 * max(n_out, n_in)))))
    jac = torch.func.jacrev(f, chunk_size=chunk)
    t = min_time(lambda: jac(x), warmup=1, min_runs=3, max_runs=10, budget=3.0)
    return t, ""


# ---------------------------------------------------------------------------- one layer
def bench_layer(name, in_shape, c_out, k, stride, pad, args, rng):
    w = rng.standard_normal((c_out, in_shape[0], k, k)).astype(np.float32)
    w_new = rng.standard_normal(w.shape).astype(np.float32)
    geom = tc.conv_geometry(w.shape, in_shape, stride=stride, padding=pad)
    build = lambda: tc.conv_matrix(w, in_shape, stride=stride, padding=pad)  # noqa: E731

    conv_pattern.cache_clear()
    C = build()
    # check the result once against the naive builder on the first channel (cheap) and torch
    ref = naive_conv_matrix(w, in_shape, stride, pad, channels=range(1))
    n1 = ref.indptr[ref.indptr.size - 1]
    assert np.array_equal(C.indices[:n1], ref.indices[:n1]) and np.array_equal(C.data[:n1], ref.data[:n1])
    nnz, nbytes, shape = C.nnz, csr_bytes(C), C.shape
    data_dtype, idx_dtype = C.data.dtype, C.indices.dtype
    del C, ref
    gc.collect()

    big = nnz > 5e6
    runs = dict(min_runs=3, max_runs=5 if big else 50, budget=2.0 if big else 0.5)

    # cold and floor interleaved, so that both see the same load and the same page faults
    def cold():
        conv_pattern.cache_clear()
        build()

    t_floor, t_cold = [float("inf")] * 2
    for _ in range(runs["min_runs"] if big else 10):
        t0 = time.perf_counter(); floor_build(nnz, shape[0], data_dtype, idx_dtype)
        t_floor = min(t_floor, time.perf_counter() - t0)
        t0 = time.perf_counter(); cold()
        t_cold = min(t_cold, time.perf_counter() - t0)
    t_floor = min(t_floor, min_time(lambda: floor_build(nnz, shape[0], data_dtype, idx_dtype), **runs))
    t_warm = min_time(build, **runs)  # pattern cached by the last cold()

    C = build()
    t_values = min_time(lambda: conv_pattern(geom).values(w_new, out=C.data), **runs)
    assert np.array_equal(C.data, tc.conv_matrix(w_new, in_shape, stride=stride, padding=pad).data)
    del C
    gc.collect()

    # peak memory, cold (pattern computed inside) and warm
    peaks = []
    for clear in (True, False):
        if clear:
            conv_pattern.cache_clear()
        gc.collect()
        tracemalloc.start()
        C = build()
        peaks.append(tracemalloc.get_traced_memory()[1] / nbytes)
        tracemalloc.stop()
        del C
    gc.collect()

    t_naive, naive_note = (None, "skipped") if args.no_naive else \
        time_naive(w, in_shape, stride, pad, args.naive_entries)
    if args.no_jacrev:
        t_jac, jac_note = None, "skipped"
    else:
        t_jac, jac_note = time_jacrev(w, in_shape, stride, pad, args.jacrev_max_gib)

    ratio = lambda t: "-" if t is None else f"{t / t_cold:,.0f}x"  # noqa: E731
    return [
        name, f"{nnz:,}", fmt_bytes(nbytes), fmt_time(t_cold), fmt_time(t_warm),
        fmt_time(t_floor), f"{t_cold / t_floor:.2f} / {t_warm / t_floor:.2f}",
        fmt_time(t_values), f"{peaks[0]:.2f} / {peaks[1]:.2f}",
        fmt_time(t_naive) + naive_note, ratio(t_naive),
        fmt_time(t_jac) if t_jac is not None else jac_note, ratio(t_jac),
    ], idx_dtype


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the two small layers only (smoke run)")
    p.add_argument("--no-naive", action="store_true", help="skip the naive loop builder")
    p.add_argument("--no-jacrev", action="store_true", help="skip torch.func.jacrev")
    p.add_argument("--naive-entries", type=float, default=2e6,
                   help="entries the naive builder builds before extrapolating (default 2e6)")
    p.add_argument("--jacrev-max-gib", type=float, default=4.0,
                   help="largest dense Jacobian to attempt, GiB (default 4)")
    args = p.parse_args(argv)

    if not args.no_jacrev:
        import torch  # noqa: F401  (imported after THP_MEM_ALLOC_ENABLE is set)
    print("# bench_build:", machine_info())
    rng = np.random.default_rng(0)
    rows, dtypes = [], []
    for layer in QUICK_LAYERS if args.quick else LAYERS:
        print(f"  measuring {layer[0]} ...", file=sys.stderr, flush=True)
        row, idx = bench_layer(*layer, args=args, rng=rng)
        rows.append(row)
        dtypes.append(str(np.dtype(idx)))
    header = ["layer (float32)", "nnz", "CSR bytes", "build cold", "build warm", "floor",
              "x floor cold / warm", "values rebuild", "peak/CSR cold / warm",
              "naive loop", "x naive", "jacrev (dense)", "x jacrev"]
    print()
    print(markdown_table(header, rows))
    print()
    print("C.indices.dtype per layer:", ", ".join(dtypes))
    print("cold = empty pattern cache; warm = pattern cached; x naive and x jacrev are relative "
          "to the cold build; times are minima of repeated runs.")


if __name__ == "__main__":
    main()
