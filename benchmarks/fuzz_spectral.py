"""Fuzz every layer's spectrum by every method against the dense SVD.

Random layers: 1D/2D/3D, 1-4 channels in and out (groups 1-3), kernels 1-4, stride 1-3,
dilation 1-2, padding as an int, per side, ``'same'``, ``'valid'`` or TensorFlow's
``'SAME'``, every padding mode, a tenth complex; up to 1200 rows and columns. For each:

- ``singular_values(k=k, which=...)`` for ``which`` in largest/smallest and a random ``k``
  (or all of them), by ``'auto'`` and by each method that applies (``'blocks'``, ``'fft'``,
  ``'svds'``: ``k`` below the rank);
- ``operator_norm`` and ``condition_number`` by ``'auto'``;

against ``np.linalg.svd`` of the explicit matrix, put through the library's own rank rule
(values below ``max(shape) * eps * sigma_max`` are 0). A value passes when it agrees to
``1e-7`` relative or ``1000 eps sigma_max`` absolute, or lies within its certificate
(``'svds'``); a method that does not apply must say so with a ``ValueError``.

    python benchmarks/fuzz_spectral.py --seed 1 --cases 300
    python benchmarks/fuzz_spectral.py --seed 1 --cases 300 --tight   # 'auto' takes Lanczos nearly always

Prints each failure and, at the end, how often each method ran, was refused, or failed.
(``fuzz_spectra.py`` fuzzes the bottom of square layers with the dissection tree cut at
random depths.)
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import toeplitz_conv as tc  # noqa: E402
from _fuzz import print_failed, print_totals, tally  # noqa: E402

EPS = np.finfo(np.float64).eps
METHODS = ("auto", "blocks", "fft", "svds", "dense")


def case(rng: np.random.Generator):
    """A random layer: ``(weight, input_shape, options)``."""
    nd = int(rng.choice([1, 2, 2, 3]))
    groups = int(rng.choice([1, 1, 2, 3]))
    cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    k = tuple(int(x) for x in rng.integers(1, 5, nd))
    s = tuple(int(x) for x in rng.integers(1, 4, nd)) if rng.random() < 0.5 else (1,) * nd
    d = tuple(int(x) for x in rng.integers(1, 3, nd)) if rng.random() < 0.3 else (1,) * nd
    hi = {1: 40, 2: 14, 3: 7}[nd]
    spatial = tuple(int(x) for x in rng.integers(max(2, max(k) * max(d) - 1), hi + 1, nd))
    mode = str(rng.choice(["zeros", "zeros", "reflect", "replicate", "circular", "symmetric"]))
    kind = rng.random()
    if kind < 0.2 and all(x == 1 for x in s):
        padding: object = "same"
    elif kind < 0.3:
        padding = "valid"
    elif kind < 0.4:
        padding = "SAME"
    elif kind < 0.55:
        padding = tuple((int(rng.integers(0, kk)), int(rng.integers(0, kk))) for kk in k)
    else:
        padding = int(rng.integers(0, max(k)))
    w = rng.standard_normal((cout, cin // groups) + k)
    if rng.random() < 0.1:
        w = w + 1j * rng.standard_normal(w.shape)
    if rng.random() < 0.1:  # repeated values: a kernel of one tap
        w = np.zeros_like(w)
        w[(slice(None), slice(None)) + tuple(kk // 2 for kk in k)] = rng.standard_normal(w.shape[:2])
    return w, (cin,) + spatial, dict(stride=s, padding=padding, dilation=d, groups=groups, padding_mode=mode)


def agree(got: np.ndarray, want: np.ndarray, top: float, residuals: np.ndarray | None) -> bool:
    close = np.abs(got - want) <= np.maximum(1e-7 * np.abs(want), 1e3 * EPS * top)
    if residuals is not None:  # a certified value may be that far off and no more
        close |= np.abs(got - want) <= residuals + 64 * EPS * top
    return bool(close.all())


def main(argv=None) -> int:
    """Run the cases; the number of layers with a failure."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", type=int, default=300)
    p.add_argument("--tight", action="store_true",
                   help="'auto' past the dense SVD at 4 rows and columns (Lanczos and the LUs for nearly "
                        "every layer), the dissection tree's fronts of 4 unknowns")
    args = p.parse_args(argv)
    if args.tight:
        from toeplitz_conv import dissection, spectral

        spectral.DENSE_AUTO_MAX = spectral.DENSE_SMALLEST_MAX = 4
        dissection.LEAF_VARS = 4
    rng = np.random.default_rng(args.seed)
    counts = tally((*METHODS, "operator_norm", "condition_number"))
    failures = layers = 0
    for i in range(args.cases):
        w, shape, kw = case(rng)
        try:
            M = tc.conv_matrix(w, shape, **kw).toarray()
        except ValueError:  # a padding or a size the layer cannot take
            continue
        if min(M.shape) < 1 or max(M.shape) > 1200:
            continue
        layers += 1
        ref = np.linalg.svd(M, compute_uv=False)
        top = float(ref[0]) if ref.size else 0.0
        ref[ref <= max(M.shape) * EPS * top] = 0.0
        n = ref.size
        which = str(rng.choice(["largest", "smallest"]))
        k = None if rng.random() < 0.3 or n < 3 else int(rng.integers(1, n - 1))
        want = ref if k is None else (ref[:k] if which == "largest" else ref[-k:])
        bad = []
        for m in METHODS:
            if m == "svds" and k is None:
                continue
            try:
                s = tc.singular_values(w, shape, k=k, which=which, method=m, **kw)
            except ValueError as e:
                counts[m]["failed" if m == "auto" else "refused"] += 1
                if m == "auto":
                    bad.append(f"auto refused: {str(e)[:160]}")
                elif m == "svds":  # it applies to every layer: say why it did not run
                    print(f"case {i}: svds refused {w.shape} {shape} {kw}, k={k}, {which}: {str(e)[:300]}")
                continue
            except Exception as e:  # noqa: BLE001 - a fuzz reports every failure
                counts[m]["failed"] += 1
                bad.append(f"{m}: {type(e).__name__}: {str(e)[:160]}")
                continue
            ok = s.values.shape == want.shape and agree(s.values, want, top, s.residuals)
            counts[m]["ran" if ok else "failed"] += 1
            if not ok:
                bad.append(f"{m} ({s.method}): {np.asarray(s.values)[:4]} vs {want[:4]} "
                           f"(certificates {None if s.residuals is None else s.residuals[:4]}; {s.route})")
        for name, f, value in (("operator_norm", tc.operator_norm, top),
                               ("condition_number", tc.condition_number,
                                np.inf if ref[-1] == 0 else top / ref[-1])):
            try:
                got = f(w, shape, **kw)
            except Exception as e:  # noqa: BLE001
                counts[name]["failed"] += 1
                bad.append(f"{name}: {type(e).__name__}: {str(e)[:160]}")
                continue
            ok = (np.isinf(value) and np.isinf(got)) or bool(np.isclose(got, value, rtol=1e-6, atol=1e3 * EPS * top))
            if name == "condition_number" and not ok and ref[-1] < 1e-8 * top:  # ill-conditioned: loose
                ok = got > 1e6
            counts[name]["ran" if ok else "failed"] += 1
            if not ok:
                bad.append(f"{name}: {got} vs {value}")
        if bad:
            failures += 1
            print_failed(i, f"{w.shape} {w.dtype} {shape} {kw} -> {M.shape}, k={k}, {which}", bad)
    print_totals(layers, "layers", failures, counts)
    return failures


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
