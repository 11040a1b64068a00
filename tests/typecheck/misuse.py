"""Calls a type checker must refuse: ``mypy --strict`` reports an error on each line marked
``# error``, and tests/test_typing.py checks that it does, line by line. Nothing here runs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import toeplitz_conv as tc


def misuse(w: np.ndarray, conv: nn.Conv2d, x: torch.Tensor) -> None:
    tc.singular_values(w, (3, 8, 8), which="middle")  # error: not a Literal choice
    tc.singular_values(w, (3, 8, 8), method="lanczos")  # error: not a Literal choice
    tc.spy(w, mode="heatmap")  # error: not a spy mode
    tc.ToeplitzConv2d.from_conv(conv, sparse_layout="coo")  # error: not a sparse layout
    tc.sparse_conv(x, conv.weight, padding_mode="mirror")  # error: not a padding mode
    tc.conv_output_size("8", 3)  # error: a size is an int
    tc.compile(conv, 3)  # error: input_shape is a sequence
    tc.lipschitz_bound(conv)  # error: a method of Network, not a name of the package
