"""Train a small CNN entirely in matrix form on scikit-learn's 8x8 digits (offline).

The model is written in PyTorch only to describe it: ``toeplitz_conv.compile`` turns it into
sparse matrices, and every step of training is the MLP equations on those matrices::

    forward    z = W a + b (the convolution as its sparse matrix C), a = relu(z), max pooling
               as a per-sample 0/1 selection matrix S, ...
    backward   delta = W.T delta * relu'(z), S.T delta, dL/dW from the matrix's structure
    update     plain SGD, then the convolution matrix is rebuilt from the new kernel
               (one gather into the cached sparsity pattern)

An identical PyTorch model trained by autograd and ``torch.optim.SGD`` on the same batches
runs alongside for the first steps, to show that the parameters agree step for step
(float64, to rounding error).

Run:  python examples/train_digits.py [--epochs 15] [--check-steps 20]
Needs scikit-learn (``pip install toeplitz-conv[examples]``) and torch.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import toeplitz_conv as tc


def load_digits_split(seed=0):
    """scikit-learn's bundled digits as (N, 1, 8, 8) float64 standardised, a stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float64)[:, None]
    x = (x - x.mean()) / x.std()  # zero mean, unit variance overall
    return train_test_split(x, digits.target, test_size=0.25, random_state=seed, stratify=digits.target)


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),  # 8x8 -> 8 maps of 8x8: a 512 x 64 sparse matrix
        nn.ReLU(),
        nn.MaxPool2d(2),  # -> 8 x 4 x 4, a selection matrix per sample
        nn.Flatten(),
        nn.Linear(128, 10),
    ).double()


def accuracy(net, x, y):
    return float((net.forward(x).argmax(axis=1) == y).mean())


def max_relative_diff(params, model):
    """Largest |p_matrix - p_torch| / max|p_torch| over all parameters."""
    return max(
        float(np.abs(params[name] - p.detach().numpy()).max() / np.abs(p.detach().numpy()).max())
        for name, p in model.named_parameters()
    )


def train(epochs=15, batch_size=32, lr=0.1, check_steps=20, seed=0, verbose=True):
    """Train in matrix form; return accuracies, losses and the step-by-step torch agreement.

    Returns
    -------
    dict with ``train_accuracy``, ``test_accuracy`` (final), ``losses`` (per step),
    ``param_diffs`` (max relative parameter difference from the torch twin after each of the
    first ``check_steps`` steps), ``loss_diffs`` (same for the loss) and the trained ``net``.
    """
    x_train, x_test, y_train, y_test = load_digits_split(seed)
    model = make_model(seed)
    twin = copy.deepcopy(model)  # trained by autograd, for the comparison
    opt = torch.optim.SGD(twin.parameters(), lr=lr)
    net = tc.compile(model, (1, 8, 8))
    if verbose:
        print(net)
        print(f"chance accuracy 0.10; initial test accuracy {accuracy(net, x_test, y_test):.3f}")
    rng = np.random.default_rng(seed)
    losses, param_diffs, loss_diffs, step = [], [], [], 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order) - batch_size + 1, batch_size):  # full batches only
            idx = order[start:start + batch_size]
            xb, yb = x_train[idx], y_train[idx]
            # ---- matrix form: forward, loss, backward, SGD
            logits = net.forward(xb)
            loss, dlogits = tc.softmax_cross_entropy(logits, yb)
            grads, _ = net.backward(dlogits)
            net.sgd_step(grads, lr)
            losses.append(loss)
            # ---- the torch twin, for the first steps
            if step < check_steps:
                opt.zero_grad()
                ref = F.cross_entropy(twin(torch.from_numpy(xb)), torch.from_numpy(yb))
                ref.backward()
                opt.step()
                loss_diffs.append(abs(loss - ref.item()) / abs(ref.item()))
                param_diffs.append(max_relative_diff(net.params, twin))
            step += 1
        if verbose:
            print(f"epoch {epoch + 1:2d}  loss {np.mean(losses[-(len(order) // batch_size):]):.4f}  "
                  f"test accuracy {accuracy(net, x_test, y_test):.3f}")
    result = dict(train_accuracy=accuracy(net, x_train, y_train), test_accuracy=accuracy(net, x_test, y_test),
                  losses=losses, param_diffs=param_diffs, loss_diffs=loss_diffs, steps=step,
                  seconds=time.perf_counter() - t0, net=net)
    if verbose:
        if param_diffs:
            print(f"first {len(param_diffs)} steps: parameters equal torch's to {max(param_diffs):.1e} "
                  f"(relative), losses to {max(loss_diffs):.1e}")
        print(f"{step} SGD steps in {result['seconds']:.1f} s; train accuracy {result['train_accuracy']:.3f}, "
              f"test accuracy {result['test_accuracy']:.3f}")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--check-steps", type=int, default=20,
                        help="steps compared with an identical torch run (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return train(args.epochs, args.batch_size, args.lr, args.check_steps, args.seed)


if __name__ == "__main__":
    main()
