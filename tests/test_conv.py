"""conv_matrix and its readings against PyTorch in float64 (a first grid; see also the sweeps)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import toeplitz_conv as tc

MODES = ["zeros", "reflect", "replicate", "circular"]


def torch_conv(x, w, mode, **kw):
    """torch's convolution with a padding mode, as nn.ConvNd applies it."""
    n = w.ndim - 2
    conv = getattr(torch.nn, f"Conv{n}d")(w.shape[1] * kw.get("groups", 1), w.shape[0], w.shape[2:],
                                          bias=False, padding_mode=mode, **kw).double()
    conv.weight.data = w
    return conv


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("groups", [1, 2])
def test_forward_backward_2d(mode, groups):
    torch.manual_seed(0)
    w = torch.randn(4, 4 // groups, 3, 2, dtype=torch.float64)
    x = torch.randn(3, 4, 7, 6, dtype=torch.float64, requires_grad=True)
    kw = dict(stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=groups)
    conv = torch_conv(x, w, mode, **kw)
    y = conv(x)
    delta = torch.randn_like(y)
    y.backward(delta)
    C = tc.conv_matrix(w, x.shape[1:], padding_mode=mode, **kw)
    X = x.detach().reshape(3, -1).numpy().T
    D = delta.reshape(3, -1).numpy().T
    np.testing.assert_allclose((C @ X).T, y.detach().reshape(3, -1).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((C.T @ D).T, x.grad.reshape(3, -1).numpy(), rtol=1e-12, atol=1e-12)
    dW = tc.conv_weight_grad(x.detach(), delta, w.shape, padding_mode=mode, **kw)
    np.testing.assert_allclose(dW, conv.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
