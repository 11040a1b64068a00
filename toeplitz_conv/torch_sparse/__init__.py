"""Convolution layers executed as torch.sparse matrix products, on CPU and CUDA.

The same triples as the scipy core, read by torch:

- :mod:`.structure`: every index tensor of one geometry on one device (C, C.T and the weight
  gradient's gather), built once; new weights refill the values by one gather;
- :mod:`.runtime`: how a call runs (activations as ``(features, N)`` rows, the products, the
  weight gradient), every CPU/CUDA difference as one field of its ``Policy``;
- :mod:`.function`: the autograd Functions (the product, its transpose, the weight gradient:
  each other's derivatives);
- :mod:`.modules`: ``ToeplitzConv1d/2d/3d`` (drop-in ``nn.ConvNd`` subclasses),
  :func:`convert` and :func:`sparse_conv`;
- :mod:`.report`: :func:`memory_report`, what a model's matrices will cost before they exist;
- :mod:`.tensors`: :func:`to_torch_sparse`, any scipy matrix as a torch sparse tensor.

Conventions follow PyTorch: cross-correlation, weight ``(C_out, C_in/groups, *kernel)``.
"""

from __future__ import annotations

import re

import torch

#: The oldest torch whose calls the modules make (per-device autocast queries, torch.compiler).
MIN_TORCH = (2, 4)
if tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2]) < MIN_TORCH:
    raise ImportError(
        f"toeplitz_conv.torch_sparse needs torch >= {'.'.join(map(str, MIN_TORCH))}; found torch "
        f"{torch.__version__}. Upgrade it (pip install -U torch), or use the scipy core, which "
        f"needs no torch."
    )

from .modules import ToeplitzConv1d, ToeplitzConv2d, ToeplitzConv3d, convert, sparse_conv  # noqa: E402
from .report import memory_report  # noqa: E402
from .tensors import to_torch_sparse  # noqa: E402

__all__ = ["to_torch_sparse", "sparse_conv", "ToeplitzConv1d", "ToeplitzConv2d",
           "ToeplitzConv3d", "convert", "memory_report"]
