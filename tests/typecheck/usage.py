"""What a type checker infers for user code of the public API: ``mypy --strict`` checks this
file (tests/test_typing.py); nothing in it runs. Each ``assert_type`` fails the check when an
annotation regresses (a return type lost to ``Any``, a class that is no longer itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from matplotlib.axes import Axes
from torch import nn
from typing_extensions import assert_type

import toeplitz_conv as tc


def core(w: npt.NDArray[np.float64]) -> None:
    geom = tc.conv_geometry(w.shape, (3, 8, 8), padding=1)
    assert_type(geom, tc.ConvGeometry)
    assert_type(geom.shape, tuple[int, int])
    assert_type(tc.conv_output_size(8, 3, stride=2), int)
    assert_type(tc.conv_operator(w, (3, 8, 8)), tc.ConvOperator)
    assert_type(tc.dot_test(tc.conv_operator(w, (3, 8, 8))), float)


def spectra(w: npt.NDArray[np.float64]) -> None:
    s = tc.singular_values(w, (3, 8, 8), k=2, which="smallest", method="svds")
    assert_type(s, tc.Spectrum)
    assert_type(s.method, Literal["blocks", "fft", "dense", "svds"])
    assert_type(s.residuals, npt.NDArray[np.float64] | None)
    assert_type(s[0], np.float64)
    assert_type(s[:2], npt.NDArray[np.float64])
    assert_type(tc.operator_norm(w, (3, 8, 8)), float)


def torch_layers(conv: nn.Conv2d, x: torch.Tensor) -> None:
    twin = tc.ToeplitzConv2d.from_conv(conv, sparse_layout="bsr")
    assert_type(twin, tc.ToeplitzConv2d)
    assert isinstance(twin, nn.Conv2d)  # a subclass to mypy too: no cast needed
    assert_type(twin.forward(x), torch.Tensor)
    assert_type(tc.sparse_conv(x, conv.weight, padding_mode="reflect"), torch.Tensor)
    assert_type(tc.convert(nn.Sequential(conv)), nn.Module)


def networks(model: nn.Module, x: npt.NDArray[np.float64]) -> None:
    net = tc.compile(model, (3, 8, 8))
    assert_type(net, tc.Network)
    bound: float = net.lipschitz_bound("windowed")  # a float that also says how it was found
    assert_type(net.lipschitz_bound().method, str)
    assert_type(tc.lipschitz_report(net, x).certified, float)
    del bound
    assert_type(net.forward(x), np.ndarray)


def figures(w: npt.NDArray[np.float64]) -> None:
    C = tc.conv_matrix(w, (3, 8, 8))
    assert_type(tc.spy(C, mode="density"), Axes)
    assert_type(tc.explore(w, (3, 8, 8), path="layer.html"), Path)
