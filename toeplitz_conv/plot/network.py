"""A network as a chain of matrices: each layer's matrix side by side."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from .._args import as_tuple
from ..network.layers import Reshape
from .matrices import SpyMode, check_index_shape, check_matrix, spy
from .style import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..network.model import Network

    #: What network_figure draws: a compiled Network, or matrices, bare or named.
    Layers = Network | Iterable[sp.sparray | np.ndarray | tuple[str, sp.sparray | np.ndarray]]


def _network_layers(network: Layers, names: Iterable[object] | None) -> list[list[Any]]:
    """[(name, matrix, in_shape, out_shape)] from a Network or a sequence of matrices."""
    items: Any = getattr(network, "layers", network)  # checked by list() below
    try:
        items = list(items)
    except TypeError:
        raise TypeError(
            f"network must be a compiled Network (with .layers) or a sequence of sparse "
            f"matrices; got {type(network).__name__}."
        ) from None
    out: list[list[Any]] = []  # [name, matrix, in_shape, out_shape]
    for k, item in enumerate(items):
        name, in_shape, out_shape = None, None, None
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, mat = item
        elif sp.issparse(item) or isinstance(item, np.ndarray):
            mat = item
        else:
            if isinstance(item, Reshape):
                continue  # flatten, identity, eval dropout: an identity matrix, nothing to see
            mat = getattr(item, "matrix", None)
            if mat is None:
                continue  # a nonlinearity: no matrix to draw
            kind = getattr(item, "kind", type(item).__name__)
            name = f"{item.name}: {kind}" if getattr(item, "name", "") else kind
            if isinstance(mat, tuple):  # max pooling: one selection matrix per sample
                mat, name = mat[0], f"{name} (sample 0)"
            in_shape = getattr(item, "in_shape", None)
            out_shape = getattr(item, "out_shape", None)
        out.append([name or f"layer {k}", mat, in_shape, out_shape])
    if names is not None:
        if isinstance(names, str):  # a str is a sequence: of one-letter names
            raise TypeError(f"names must be a sequence of str, one per drawn layer; got the str {names!r}.")
        names = list(as_tuple(names, "names", "a sequence of str, one per drawn layer"))
        if not all(isinstance(nm, str) for nm in names):
            raise TypeError(f"names must be a sequence of str, one per drawn layer; got {names!r}.")
        if len(names) != len(out):
            raise ValueError(
                f"names must give one name per drawn layer ({len(out)}); got {len(names)} names."
            )
        for item, nm in zip(out, names):
            item[0] = nm
    if not out:
        raise ValueError("network has no layer with a matrix to draw.")
    return out


def network_figure(network: Layers, *, names: Sequence[str] | None = None, mode: SpyMode = "auto",
                   max_bins: int = 200) -> Figure:
    """Each layer's matrix side by side, with its shape: a CNN read as a chain of matrices.

    Parameters
    ----------
    network : Network (from :func:`toeplitz_conv.compile`) or sequence
        A compiled network (its layers with a ``.matrix``; nonlinearities are skipped), or a
        sequence of sparse matrices or ``(name, matrix)`` pairs.
    names : sequence of str, optional
        Panel titles, one per drawn layer.
    mode, max_bins
        As in :func:`spy`.

    Returns
    -------
    fig : matplotlib Figure
        One panel per drawn layer, titled with its name, shape and nonzeros.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, toeplitz_conv as tc
    >>> C1 = tc.conv_matrix(np.random.rand(2, 1, 3, 3), (1, 8, 8), padding=1)
    >>> C2 = tc.conv_matrix(np.random.rand(4, 2, 3, 3), (2, 8, 8), stride=2, padding=1)
    >>> fig = network_figure([("conv1", C1), ("conv2", C2)])
    >>> [ax.get_title().splitlines()[0] for ax in fig.axes if ax.get_title()]
    ['conv1', 'conv2']
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    layers = _network_layers(network, names)
    mats = [check_matrix(mat, f"matrix of {name}") for name, mat, _, _ in layers]
    # each panel shaped like its matrix (ratio clamped to 1:6 .. 6:1), its width from that
    boxes = [min(6.0, max(1 / 6, A.shape[0] / max(A.shape[1], 1))) for A in mats]
    widths = [min(2.5, max(0.5, 1 / b)) for b in boxes]
    fig = new_figure((min(4.0 * len(layers), 22.0), 4.6))
    axes = fig.subplots(1, len(layers), width_ratios=widths, squeeze=False)[0]
    for ax, (name, _, in_shape, out_shape), A, box in zip(axes, layers, mats, boxes):
        ax.set_box_aspect(box)
        try:
            in_shape = check_index_shape("input_shape", in_shape, A.shape[1], "columns")
            out_shape = check_index_shape("output_shape", out_shape, A.shape[0], "rows")
        except (TypeError, ValueError):
            in_shape = out_shape = None
        spy(A, ax=ax, mode=mode, max_bins=max_bins, colorbar=False, annotate=False, aspect="auto",
            title=f"{name}\n{A.shape[0]:,} x {A.shape[1]:,}, {A.nnz if sp.issparse(A) else np.count_nonzero(A):,} nnz",
            input_shape=in_shape, output_shape=out_shape)
        ax.set_xlabel("in" if in_shape is None else f"in {tuple(in_shape)}")
        ax.set_ylabel("out" if out_shape is None else f"out {tuple(out_shape)}")
        ax.tick_params(labelsize="x-small")
    fig.suptitle("the network as a chain of matrices, applied left to right: "
                 "the first panel acts on x first (y = ... C2 σ(C1 x))", fontsize="medium")
    return fig
