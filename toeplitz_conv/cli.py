"""The ``toeplitz-conv`` command (also ``python -m toeplitz_conv``)."""

from __future__ import annotations

import argparse
import sys

import numpy as np


def _demo(args) -> int:
    """A 1x4x4 input, a 3x3 kernel: C, the output, C.T @ delta and the weight gradient."""
    import toeplitz_conv as tc

    x = np.arange(1.0, 17.0).reshape(1, 4, 4)
    w = np.array([[[[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]]])  # Sobel x
    C = tc.conv_matrix(w, x.shape)
    np.set_printoptions(linewidth=120, precision=4, suppress=True)
    print("A 3x3 kernel (Sobel) on a 4x4 image, no padding: y = C @ x with C of shape", C.shape)
    print(C.toarray())
    y = C @ x.ravel()
    print("\ny = C @ x.ravel() =", y, " (2x2 output)")
    delta = np.array([1.0, -1.0, 0.5, 2.0])
    print("\ninput gradient C.T @ delta, delta =", delta)
    print((C.T @ delta).reshape(4, 4))
    dW = tc.conv_weight_grad(x, delta.reshape(1, 2, 2), w.shape)
    print("\nweight gradient from the same (row, col, tap) triples:")
    print(dW.reshape(3, 3))
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("\n(torch is not installed: install toeplitz-conv[torch] to verify against PyTorch)")
        return 0
    xt, wt = torch.tensor(x[None]), torch.tensor(w, requires_grad=True)
    yt = F.conv2d(xt, wt)
    dt = torch.tensor(delta).reshape(1, 1, 2, 2)
    yt.backward(dt)
    checks = {
        "C @ x == F.conv2d": np.allclose(y, yt.detach().numpy().ravel()),
        "C.T @ delta == F.conv_transpose2d": np.allclose(C.T @ delta, F.conv_transpose2d(dt, wt.detach()).numpy().ravel()),
        "weight gradient == autograd": np.allclose(dW, wt.grad.numpy()),
    }
    print()
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toeplitz-conv",
        description="Every convolution layer as its explicit sparse matrix.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="a small conv layer as a matrix, checked against PyTorch")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
