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

from .modules import ToeplitzConv1d, ToeplitzConv2d, ToeplitzConv3d, convert, sparse_conv
from .report import memory_report
from .tensors import to_torch_sparse

__all__ = ["to_torch_sparse", "sparse_conv", "ToeplitzConv1d", "ToeplitzConv2d",
           "ToeplitzConv3d", "convert", "memory_report"]
