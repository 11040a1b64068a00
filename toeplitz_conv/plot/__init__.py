"""Figures that show the structure: spy plots, receptive fields, gradients, networks, symbols.

matplotlib (and sympy, for the symbolic view) is imported inside the functions that draw, so
``import toeplitz_conv`` never loads it. Every drawing function returns its matplotlib
``Axes`` or ``Figure``; nothing is written to disk here (call ``fig.savefig``), except by
:func:`explore`, whose product is a file.

- :mod:`.matrices`: :func:`spy`, and the checks every matrix figure shares;
- :mod:`.fields`: :func:`field_figure` (a row and a column of ``C`` as images);
- :mod:`.diff`: :func:`diff_figure`, where two matrices differ (equivalence test reports);
- :mod:`.gradients`: :func:`gradient_figure`, input, kernel, weight and input gradients;
- :mod:`.network`: :func:`network_figure`, each layer's matrix of a network;
- :mod:`.symbolic`: the matrix with the kernel's entries as sympy symbols, printable as LaTeX;
- :mod:`.animation`: :func:`animate`, the kernel sliding and the matrix row it is (a GIF);
- :mod:`.blit`: its GIFs, written by redrawing only what each frame moves;
- :mod:`.explorer`: :func:`explore`, one self-contained HTML file to click through a layer;
- :mod:`.style`: what the figures share (colormap, constrained layout).
"""

from __future__ import annotations

from .animation import animate
from .diff import diff_figure
from .explorer import explore
from .gradients import gradient_figure
from .fields import field_figure
from .matrices import spy
from .network import network_figure
from .symbolic import (symbolic_conv_matrix, symbolic_conv_transpose_matrix, symbolic_figure, to_latex,
                       weight_symbols)

__all__ = ["spy", "diff_figure", "field_figure", "explore", "animate", "gradient_figure", "network_figure", "weight_symbols",
           "symbolic_conv_matrix", "symbolic_conv_transpose_matrix", "symbolic_figure", "to_latex"]
