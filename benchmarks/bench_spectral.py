"""Spectra benchmark for issue 6: exact singular values and operator norms of conv layers.

Run from the repository root::

    python benchmarks/bench_spectral.py            # full run: dense SVD of 8192 x 8192 (~2 min) included
    python benchmarks/bench_spectral.py --quick    # smoke run: smaller layers, no dense SVD of 8192^2
    python benchmarks/bench_spectral.py --skip-dense  # full layers, no dense SVD
    python benchmarks/bench_spectral.py --svds-big # also svds k=6 on the 64->64 @56x56 layer (minutes)
    python benchmarks/bench_spectral.py --grid-lu --cap 120  # the smallest sigma by nested dissection

Cases (the issue's; weights standard normal / sqrt(fan_in), seed 0, float64):

1. Circular padding, 8 -> 8 channels, 3x3, 32x32 (C is 8192 x 8192): all singular values by
   the dense SVD (``np.linalg.svd`` of ``C.toarray()``), the top 6 by ``scipy.sparse.linalg.svds``
   on the sparse matrix and by ``tc.singular_values(k=6, method='svds')`` (Lanczos on the
   matrix-free operator), and all 8192 by the FFT formula (``method='fft'``). Prototype:
   dense 108 s, svds 0.7 s, FFT 9.5 ms.
2. All 200,704 singular values of the circular 64 -> 64 @3x3 layer at 56x56 by FFT
   (prototype 1.26 s; target within 1.2x).
3. ``tc.operator_norm`` of the zero-padded 64x56x56 -> 64@3x3 (padding 1) layer at
   ``tol=1e-6``, its error against a ``tol=1e-12`` run (target: 1e-6 relative, under 30 s).
4. The circular-vs-zero-padded norm gap of that layer for growing image sizes.

5. ``--new-methods`` (only these): the three layers of the cheapest-exact-method work, each new
   against the old path run in a subprocess with a time cap (``--cap`` seconds): the smallest
   singular value of the zero-padded 64x56x56 -> 64@3x3 layer; the largest of a 1x1 stride-2
   256 -> 512 shortcut on 28x28 (new: ``'blocks'``; old: ``'auto'`` resolved to the FFT of all
   values); the largest of a zero-padded 512 -> 512 @3x3 layer on 7x7 (new: Lanczos from a
   random start; old: from the circular counterpart's top vector by power iterations, the
   warm start of ``circulant.py`` at ``WARM_COMMIT`` loaded from git, and counted).

6. ``--grid-lu`` (only these): the smallest singular value of zero-padded 64 -> 64 @3x3
   layers at 14x14, 28x28 and 56x56 by the LU of C by nested dissection of the grid, with the
   tree's cost estimate, against the route before it (capped) and the dense SVD at 14x14.

Timings are minima over repeated runs where cheap, single runs for the slow cases; on a
shared machine they are noisy (the load average is printed with the machine line), so the
ratios measured in one run are the numbers to read.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from scipy.sparse.linalg import svds  # noqa: E402

import toeplitz_conv as tc  # noqa: E402
from _timing import fmt_time, machine_info, markdown_table, min_time  # noqa: E402


def weight(c_out, c_in, k=3, seed=0):
    """Standard normal / sqrt(fan_in), seed 0."""
    return np.random.default_rng(seed).standard_normal((c_out, c_in, k, k)) / np.sqrt(c_in * k * k)


def once(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def case_small_circular(quick: bool, skip_dense: bool, rows: list):
    c, n = 8, 32
    w, shape = weight(c, c), (c, n, n)
    kw = dict(padding=1, padding_mode="circular")
    t_fft = min_time(lambda: tc.singular_values(w, shape, method="fft", **kw), budget=2.0)
    s_fft = tc.singular_values(w, shape, method="fft", **kw).values
    C = tc.conv_matrix(w, shape, **kw)
    t_svds, s_svds = once(lambda: svds(C, k=6, return_singular_vectors=False, random_state=0))
    t_ours, s_ours = once(lambda: tc.singular_values(w, shape, k=6, method="svds", **kw).values)
    err_svds = np.abs(np.sort(s_svds)[::-1] - s_fft[:6]).max()
    err_ours = np.abs(s_ours - s_fft[:6]).max()
    if quick or skip_dense:
        t_dense, err_dense = None, None
    else:
        t_dense, s_dense = once(lambda: np.linalg.svd(C.toarray(), compute_uv=False))
        err_dense = np.abs(s_dense - s_fft).max()
    name = f"circular {c}->{c}@3x3, {n}x{n} ({C.shape[0]}x{C.shape[1]})"
    rows += [
        [name, "dense SVD, all", fmt_time(t_dense), "108 s",
         "-" if t_dense is None else f"{t_dense / t_fft:.0f}x", "-" if err_dense is None else f"{err_dense:.1e}"],
        [name, "scipy svds on C, k=6", fmt_time(t_svds), "0.7 s", f"{t_svds / t_fft:.0f}x", f"{err_svds:.1e}"],
        [name, "tc svds (operator), k=6", fmt_time(t_ours), "-", f"{t_ours / t_fft:.0f}x", f"{err_ours:.1e}"],
        [name, "tc FFT, all", fmt_time(t_fft), "9.5 ms", "1x", "(reference)"],
    ]
    return t_fft


def case_big_circular(quick: bool, svds_big: bool, rows: list):
    c, n = (16, 28) if quick else (64, 56)
    w, shape = weight(c, c), (c, n, n)
    kw = dict(padding=1, padding_mode="circular")
    t_fft = min_time(lambda: tc.singular_values(w, shape, method="fft", **kw), min_runs=3, budget=5.0)
    s = tc.singular_values(w, shape, method="fft", **kw)
    name = f"circular {c}->{c}@3x3, {n}x{n}"
    rows.append([name, f"tc FFT, all {len(s):,}", fmt_time(t_fft), "1.26 s" if not quick else "-",
                 "1x", ""])
    if svds_big:
        t, top = once(lambda: tc.singular_values(w, shape, k=6, method="svds", **kw).values)
        rows.append([name, "tc svds (operator), k=6", fmt_time(t), "215 s (svds k=6)",
                     f"{t / t_fft:.0f}x", f"{np.abs(top - s.values[:6]).max():.1e}"])
    return t_fft


def case_norm(quick: bool, rows: list):
    c, n = (16, 28) if quick else (64, 56)
    w, shape = weight(c, c), (c, n, n)
    t, sigma = once(lambda: tc.operator_norm(w, shape, padding=1, tol=1e-6))
    t_ref, ref = once(lambda: tc.operator_norm(w, shape, padding=1, tol=1e-12))
    rows.append([f"zeros {c}x{n}x{n} -> {c}@3x3 p1", "operator_norm tol=1e-6", fmt_time(t),
                 "< 30 s", f"rel. err {abs(sigma - ref) / ref:.1e} (target 1e-6)",
                 f"tol=1e-12: {fmt_time(t_ref)}"])
    return ref


def case_strided(quick: bool, rows: list):
    """A stride-2 circular layer: the polyphase FFT against the dense SVD of its matrix."""
    c, n = 8, (16 if quick else 32)
    w, shape = weight(c, c), (c, n, n)
    kw = dict(stride=2, padding=1, padding_mode="circular")
    t_fft = min_time(lambda: tc.singular_values(w, shape, method="fft", **kw), budget=2.0)
    s_fft = tc.singular_values(w, shape, method="fft", **kw).values
    C = tc.conv_matrix(w, shape, **kw)
    t_dense, s_dense = once(lambda: np.linalg.svd(C.toarray(), compute_uv=False))
    name = f"circular {c}->{c}@3x3 s2, {n}x{n} ({C.shape[0]}x{C.shape[1]})"
    rows += [[name, "dense SVD, all", fmt_time(t_dense), "-", f"{t_dense / t_fft:.0f}x", "-"],
             [name, "tc FFT (polyphase), all", fmt_time(t_fft), ">= 100x faster than dense", "1x",
              f"{np.abs(s_dense - s_fft).max():.1e} vs dense"]]


def case_smallest(quick: bool, big: bool, rows: list):
    """The smallest singular value of a zero-padded layer: shift-invert Lanczos (a sparse LU of
    the normal matrix) vs the dense SVD; past the LU's size, Lanczos on c I - N (--smallest-big)."""
    for c, n in ([(8, 14)] if quick else [(16, 14), (16, 28)]) + ([(64, 56)] if big else []):
        w, shape = weight(c, c), (c, n, n)
        name = f"zeros {c}x{n}x{n} -> {c}@3x3 p1"
        t, s = once(lambda: tc.singular_values(w, shape, padding=1, k=1, which="smallest", method="svds",
                                                tol=1e-10).values[0])
        if c * n * n <= 4096:
            t_d, ref = once(lambda: tc.singular_values(w, shape, padding=1).values[-1])
            rows.append([name, "dense SVD, smallest", fmt_time(t_d), "-", "-", f"{ref:.6e}"])
            err = f"rel. err {abs(s - ref) / ref:.1e}"
        else:
            err = f"sigma_min {s:.6e}"
        rows.append([name, "tc svds smallest (shift-invert Lanczos), tol=1e-10", fmt_time(t), "1e-6 relative", "-", err])


def case_gap(quick: bool, ref_norm: float):
    c = 16 if quick else 64
    sizes = [7, 14, 28] if quick else [7, 14, 28, 56]
    w = weight(c, c)
    lines = []
    for n in sizes:
        tc_, circ = once(lambda: tc.operator_norm(w, (c, n, n), padding=1, padding_mode="circular"))
        if n == sizes[-1]:
            tz, zero = None, ref_norm  # measured by case_norm
        else:
            tz, zero = once(lambda: tc.operator_norm(w, (c, n, n), padding=1, tol=1e-12))
        lines.append([f"{n}x{n}", f"{circ:.6f}", f"{zero:.6f}", f"{(circ - zero) / zero:+.2e}",
                      fmt_time(tc_), fmt_time(tz) if tz is not None else "(above)"])
    return markdown_table(["image", "circular norm (FFT)", "zero-padded norm (exact)",
                           "(circ - zeros) / zeros", "time FFT", "time zeros"], lines), c


WARM_COMMIT = "b270c96"  # the last with Lanczos warm-started from the circular top vector


def _old_circulant(commit: str):
    """``toeplitz_conv/circulant.py`` at ``commit``, loaded from git."""
    import subprocess
    import types

    src = subprocess.run(["git", "show", f"{commit}:toeplitz_conv/circulant.py"], capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout
    mod = types.ModuleType("toeplitz_conv._old_circulant")
    mod.__dict__["__package__"] = "toeplitz_conv"
    exec(compile(src, "old circulant.py", "exec"), mod.__dict__)
    return mod


def _capped(code: str, cap: float):
    """``(seconds, value)`` of ``code`` (sets ``value``) run in a fresh interpreter, or
    ``(None, None)`` when it did not finish within ``cap`` seconds."""
    import json
    import subprocess

    prog = ("import json, sys, time; sys.path.insert(0, 'benchmarks'); import numpy as np; "
            "import toeplitz_conv as tc; from bench_spectral import weight, _old_circulant\n"
            "t0 = time.perf_counter()\n" + code + "\nprint(json.dumps([time.perf_counter() - t0, float(value)]))")
    try:
        out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=cap, check=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    except subprocess.TimeoutExpired:
        return None, None
    t, v = json.loads(out.stdout.strip().splitlines()[-1])
    return t, v


#: The previous top-value path: the circular counterpart's top vector (power iterations per
#: frequency) plus a little noise as Lanczos's start, the same ARPACK run and certificate.
WARM_STARTED = """from toeplitz_conv import lanczos
from toeplitz_conv.geometry import conv_geometry
from toeplitz_conv.operator import ConvOperator
w = weight(512, 512)
g = conv_geometry(w.shape, (512, 7, 7), padding=1)
A = ConvOperator(w, g)
N, size = lanczos.normal_operator(A)
v0 = _old_circulant('{commit}').warm_start(w, g) + 1e-2 * lanczos.start_vector(w.dtype, size)
with lanczos.blas_threads(lanczos.LANCZOS_BLAS_THREADS):
    V = lanczos.top_eigenpairs(N, 1, 1e-10, v0, 33, 1000)[1]  # operator_norm's tol
value = lanczos.certify(A, V)[0][0]"""


#: The routes before the nested-dissection LU: SuperLU's LU of C while it fits, else c I - N.
NO_GRID_LU = "from toeplitz_conv import dissection\ndissection.MAX_MACS = 0\n"


def _old_smallest(n: int) -> str:
    """The code of the old route's smallest value at ``n x n`` (NaN where it refuses)."""
    return (NO_GRID_LU + "try:\n    value = tc.singular_values(weight(64, 64), (64, {n}, {n}), padding=1, k=1, "
            "which='smallest').values[0]\nexcept ValueError:\n    value = float('nan')").format(n=n)


def _old_cell(t, v, cap: float) -> str:
    if t is None:
        return f"did not finish in {cap:.0f} s"
    return f"refused after {fmt_time(t)}" if np.isnan(v) else fmt_time(t)


def case_grid_lu(cap: float, rows: list):
    """The bottom of 64 -> 64 3x3 zero-padded layers by the LU of C by nested dissection: its
    cost estimated from the tree (dense multiply-adds, bytes of factors) before anything is
    built, the whole call timed, against the route before it (SuperLU's LU of C up to its size
    limit, then Lanczos on c I - N) in a capped subprocess, and the dense SVD where it fits."""
    from toeplitz_conv.dissection import lu_cost
    from toeplitz_conv.geometry import conv_geometry

    for n in (14, 28, 56):
        w, shape = weight(64, 64), (64, n, n)
        macs, factors, front = lu_cost(conv_geometry(w.shape, shape, padding=1))
        t_new, s = once(lambda: tc.singular_values(w, shape, padding=1, k=1, which="smallest"))
        t_old, v_old = _capped(_old_smallest(n), cap)
        check = "-" if v_old is None or np.isnan(v_old) else f"old {v_old:.12e}"
        if n <= 14:
            ref = np.linalg.svd(tc.conv_matrix(w, shape, padding=1).toarray(), compute_uv=False)[-1]
            check = f"dense SVD {ref:.12e} (rel. diff {abs(ref - s.values[0]) / ref:.0e}); " + check
        rows.append([f"64x{n}x{n}", f"{macs:.1e} MAC, {factors / 2**30:.2f} GiB factors",
                     _old_cell(t_old, v_old, cap), fmt_time(t_new),
                     f"{s.values[0]:.12e} +- {s.residuals[0]:.0e}", check])


def case_new_methods(cap: float, rows: list):
    """The three layers of the cheapest-exact-method work, new against old (capped)."""
    def old_cell(t):
        return f"did not finish in {cap:.0f} s" if t is None else fmt_time(t)

    # 1. smallest sigma, zero-padded 64x56x56 -> 64 @3x3: the nested-dissection LU of C against
    #    the routes before it (Lanczos on c I - N past SuperLU's size), capped
    t_new, s_new = once(lambda: tc.singular_values(weight(64, 64), (64, 56, 56), padding=1, k=1, which="smallest"))
    t_old, v_old = _capped(_old_smallest(56), cap)
    rows.append(["zeros 64x56x56 -> 64@3x3 p1", "smallest sigma",
                 "svds: LU by nested dissection, Lanczos on C^-1 C^-T (old: Lanczos on c I - N)",
                 _old_cell(t_old, v_old, cap), fmt_time(t_new), f"{s_new.values[0]:.12e} +- {s_new.residuals[0]:.1e}"
                 + ("" if v_old is None or np.isnan(v_old) else f", old {v_old:.6e}")])
    # 2. largest sigma, 1x1 stride-2 256 -> 512 on 28x28
    w, shape = weight(512, 256, k=1), (256, 28, 28)
    new = tc.singular_values(w, shape, stride=2, k=1)
    t_new = min_time(lambda: tc.operator_norm(w, shape, stride=2), min_runs=5, budget=2.0)
    t_old, v_old = _capped("value = tc.operator_norm(weight(512, 256, k=1), (256, 28, 28), stride=2, "
                           "method='fft')", cap)
    rows.append(["1x1 s2 256 -> 512, 28x28", "largest sigma", f"{new.method} (old: fft, all values)",
                 old_cell(t_old), fmt_time(t_new),
                 f"{new.values[0]:.12f}" + ("" if v_old is None else f", rel. diff {abs(v_old - new.values[0]) / v_old:.1e}")])
    # 3. largest sigma, zero-padded 512 -> 512 @3x3 on 7x7
    w, shape = weight(512, 512), (512, 7, 7)
    t_new = min_time(lambda: tc.operator_norm(w, shape, padding=1), min_runs=2, budget=1.0)
    v_new = tc.operator_norm(w, shape, padding=1)
    t_old, v_old = _capped(WARM_STARTED.format(commit=WARM_COMMIT), cap)
    rows.append(["zeros 512x7x7 -> 512@3x3 p1", "largest sigma",
                 "svds, random start (old: power-iteration warm start)", old_cell(t_old), fmt_time(t_new),
                 f"{v_new:.12f}" + ("" if v_old is None else f", rel. diff {abs(v_old - v_new) / v_old:.1e}")])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: small layers, no 8192^2 dense SVD")
    p.add_argument("--skip-dense", action="store_true", help="full layers, but no 8192^2 dense SVD")
    p.add_argument("--svds-big", action="store_true", help="also svds k=6 on the 64->64 @56x56 layer")
    p.add_argument("--smallest-big", action="store_true",
                   help="also the smallest singular value of the zero-padded 64->64 @56x56 layer (long)")
    p.add_argument("--new-methods", action="store_true",
                   help="only the three layers of the cheapest-exact-method work, new against old")
    p.add_argument("--grid-lu", action="store_true",
                   help="only the smallest singular value of 64->64 layers at 14-56 by the nested-dissection LU")
    p.add_argument("--cap", type=float, default=120.0,
                   help="seconds allowed to each old path (--new-methods, --grid-lu)")
    args = p.parse_args(argv)
    print(f"# bench_spectral{' --quick' if args.quick else ''}{' --new-methods' if args.new_methods else ''}\n")
    print(machine_info(), "\n")
    if args.grid_lu:
        lu_rows: list = []
        case_grid_lu(args.cap, lu_rows)
        print(markdown_table(["layer", "estimate (before building)", "old route", "nested-dissection LU",
                              "sigma_min +- certificate", "check"], lu_rows))
        return
    if args.new_methods:
        new_rows: list = []
        case_new_methods(args.cap, new_rows)
        print(markdown_table(["layer", "what", "method (new)", "old", "new", "value"], new_rows))
        return
    rows: list = []
    case_small_circular(args.quick, args.skip_dense, rows)
    case_big_circular(args.quick, args.svds_big, rows)
    ref = case_norm(args.quick, rows)
    case_strided(args.quick, rows)
    case_smallest(args.quick, args.smallest_big, rows)
    print(markdown_table(["layer", "method", "time", "prototype / target", "vs FFT", "max abs err"], rows))
    table, c = case_gap(args.quick, ref)
    print(f"\nNorm gap, {c}->{c}@3x3 padding 1, circular vs zero padding:\n")
    print(table)


if __name__ == "__main__":
    main()
