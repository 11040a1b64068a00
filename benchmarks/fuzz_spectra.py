"""Fuzz the bottom of square layers' spectra against the dense SVD.

Random square layers (1D/2D/3D, kernels 1-4 per axis, dilation 1-2, groups 1-3, ``'same'``
padding of every mode, a fifth complex) at up to 1500 columns, with the nested-dissection
tree cut at random depths (``dissection.LEAF_VARS`` from a front per position to one front):
``singular_values(k=2, which='smallest', method='svds')`` against ``np.linalg.svd`` of the
explicit matrix, the reference put through the library's own rank rule (values below
``max(shape) * eps * sigma_max`` are 0). A case passes when the values agree to 1e-7 relative
or ``1000 eps sigma_max`` absolute and each lies within its certificate of the reference.

    python benchmarks/fuzz_spectra.py --seed 1 --cases 300

Prints each failure (a mismatch or an exception) and, at the end, how many cases each route
took.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import toeplitz_conv as tc  # noqa: E402
from toeplitz_conv import dissection  # noqa: E402

EPS = np.finfo(np.float64).eps


def case(rng: np.random.Generator):
    """A random square layer: ``(weight, input_shape, options, leaf)``."""
    nd = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 1, 2, 3]))
    cpg = int(rng.integers(1, 4))
    k = tuple(int(x) for x in rng.integers(1, 5, nd))
    d = tuple(int(x) for x in rng.integers(1, 3, nd))
    reach = max(k) * max(d)
    spatial = tuple(int(x) for x in rng.integers(reach, reach + (6 if nd < 3 else 3), nd))
    mode = str(rng.choice(["zeros", "reflect", "replicate", "circular"]))
    leaf = int(rng.choice([1, 4, 16, 512]))
    w = rng.standard_normal((groups * cpg, cpg) + k)
    if rng.random() < 0.2:
        w = w + 1j * rng.standard_normal(w.shape)
    return w, (groups * cpg,) + spatial, dict(padding="same", dilation=d, groups=groups, padding_mode=mode), leaf


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", type=int, default=300)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    failures, ran, routes = 0, 0, {}
    for _ in range(args.cases):
        w, shape, kw, leaf = case(rng)
        try:
            M = tc.conv_matrix(w, shape, **kw).toarray()
        except ValueError:  # a padding the mode cannot take at this size
            continue
        if not 3 <= M.shape[0] <= 1500:
            continue
        ref = np.linalg.svd(M, compute_uv=False)
        ref[ref <= max(M.shape) * EPS * ref[0]] = 0.0
        k = min(2, M.shape[0] - 1)
        dissection.LEAF_VARS = leaf
        ran += 1
        try:
            s = tc.singular_values(w, shape, k=k, which="smallest", method="svds", **kw)
        except Exception as e:  # noqa: BLE001 - a fuzz reports every failure
            failures += 1
            print(f"ERROR {w.shape} {shape} {kw} leaf={leaf}: {type(e).__name__}: {str(e)[:160]}")
            continue
        route = (s.route or "").split(" (")[0]
        routes[route] = routes.get(route, 0) + 1
        close = np.allclose(s.values, ref[-k:], rtol=1e-7, atol=1e3 * EPS * ref[0])
        certified = np.all(np.abs(s.values - ref[-k:]) <= s.residuals + 64 * EPS * ref[0])
        if not (close and certified):
            failures += 1
            print(f"MISMATCH {w.shape} {shape} {kw} leaf={leaf}: {s.values} vs {ref[-k:]} "
                  f"(certificates {s.residuals}; {s.route})")
    dissection.LEAF_VARS = 512
    print(f"\n{ran} cases, {failures} failures; routes: {routes}")


if __name__ == "__main__":
    main()
