"""The random programs of the fuzzing: one interpreter module runs a list of ops, so that
torch.fx traces exactly the ops it picks. Shared by ``fuzz_totals.py`` and the test suite's
property-based fuzz (``tests/test_fuzz_models.py``).
"""

import torch
import torch.nn.functional as F
from torch import nn

C = 2  # channels of every tensor in a program (so any op may follow any other)
OPS = ("conv", "relu", "tanh", "skip", "cat_halve", "slice_cat", "view_add_", "slice_mul_", "alias_iadd",
       "res_iadd", "literal_batch", "numel_scale", "no_grad", "self_sub", "avg_pool", "upsample", "mean_keep",
       "mul_const", "square", "dead_product", "relu_")


class Program(nn.Module):
    """Runs ``ops`` in order on a (N, C, H, W) tensor; each op keeps the shape's channels."""

    def __init__(self, ops, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.ops = list(ops)
        self.convs = nn.ModuleList(nn.Conv2d(C, C, 3, padding=1) for op in ops if op in ("conv", "no_grad"))
        self.mix = nn.Conv2d(2 * C, C, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.4)

    def forward(self, x):
        k = 0
        for op in self.ops:
            if op == "conv":
                x = self.convs[k](x)
                k += 1
            elif op == "relu":
                x = F.relu(x)
            elif op == "tanh":
                x = torch.tanh(x)
            elif op == "skip":
                x = x + F.relu(x)
            elif op == "cat_halve":
                x = self.mix(torch.cat([x, -x], 1))
            elif op == "slice_cat":
                x = torch.cat([x[:, 1:], x[:, :1]], 1)
            elif op == "view_add_":
                y = x.view(x.size(0), -1)
                y.add_(1.0)
            elif op == "slice_mul_":
                x = x * 1.0
                x[:, :1].mul_(3.0)
            elif op == "alias_iadd":
                out = x * 2.0
                identity = out
                out += x
                x = out + identity
            elif op == "res_iadd":
                out = x * 2.0
                out += x
                x = out
            elif op == "literal_batch":
                x = x.reshape(2, -1).reshape(x.shape)
            elif op == "numel_scale":
                x = x * (16.0 / x.numel())
            elif op == "no_grad":
                with torch.no_grad():
                    y = self.convs[k](x)
                k += 1
                x = x + y
            elif op == "self_sub":
                x = x - x + x
            elif op == "avg_pool":
                x = F.avg_pool2d(x, 3, 1, 1)
            elif op == "upsample":
                x = F.avg_pool2d(F.interpolate(x, scale_factor=2, mode="bilinear"), 2)
            elif op == "mean_keep":
                x = x - x.mean((2, 3), keepdim=True)
            elif op == "mul_const":
                x = x * 0.5 + 1.0
            elif op == "square":
                x = x * x
            elif op == "dead_product":
                unused = x * x  # noqa: F841 - never read by the output
            elif op == "relu_":
                x = x.clone()
                x.relu_()
        return x
