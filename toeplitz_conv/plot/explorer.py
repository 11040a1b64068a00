"""An interactive explorer of conv layers: a single self-contained HTML file.

The file holds each layer's matrix ``C`` (CSR) as JSON and inline JavaScript
(:mod:`.explorer_page`); it needs no network and no Python. It shows the input grids and the
output grids (one per channel, with 0-based indices) and ``C`` with ``(c, i, j)`` axes, channel
separators and a colour legend, full width and zoomable. Clicking an output pixel lights its
receptive field on the input (row ``i`` of ``C``: the entries ``C[i, j] != 0``) and that row of
``C``; clicking an input pixel lights its projective field on the output (column ``j``: the
transposed convolution) and that column; arrow keys move the selection. A convolution's stride,
padding, dilation and padding mode can be changed in the page: its matrix is recomputed there
from the weights, exactly as :func:`~toeplitz_conv.conv_matrix` builds it (the tests check this
in a browser). That keeps the file one matrix large whatever the settings, where precomputing
every setting would multiply it. A compiled network gets a selector over its layers.

The contract the tests rely on: every input and output cell is an element with
``data-role="input"`` or ``"output"`` and ``data-index`` its flat C-order index into
``x[n].reshape(-1)`` / ``y[n].reshape(-1)``; after a click the cells of the lit row or column
(and only those) carry the class ``lit``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ..conv import conv_matrix, csr_size
from ..geometry import ConvGeometry, check_weight, conv_geometry
from .explorer_page import page
from .matrices import check_real

if TYPE_CHECKING:
    from ..network.base import Layer
    from ..network.model import Network

#: The explorer is for layers a student can look at: at most this many input or output entries.
EXPLORER_MAX_ENTRIES = 4096
#: The most nonzeros of one layer's matrix (about 25 bytes each in the file: 6 MB).
EXPLORER_MAX_NONZEROS = 250_000
#: The most nonzeros of all the layers one file holds (a network's): about 25 MB.
EXPLORER_MAX_FILE_NONZEROS = 1_000_000


def _x(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _layer_entry(name: str, title: str, C: Any, in_shape: Sequence[int], out_shape: Sequence[int],
                 conv: ConvGeometry | None = None, weight: np.ndarray | None = None) -> dict[str, Any]:
    """One layer of the page: its matrix as CSR lists (float64, duplicates summed, zeros
    dropped: a zero weight connects nothing) and, for a convolution, what the page needs to
    recompute it."""
    C = sp.csr_array(C, dtype=np.float64)
    C.sum_duplicates()  # also sorts each row's columns, as the page's own matrices are
    C.eliminate_zeros()
    m, n = C.shape
    entry: dict[str, Any] = {
        "name": name, "title": title, "m": m, "n": n, "in_shape": list(in_shape), "out_shape": list(out_shape),
        "indptr": C.indptr.tolist(), "indices": C.indices.tolist(), "data": C.data.tolist(),
        "refused": None, "conv": None}
    if conv is not None and weight is not None:
        entry["conv"] = {"weight": np.asarray(weight, dtype=np.float64).ravel().tolist(),
                         "wshape": list(conv.weight_shape), "kernel": list(conv.kernel),
                         "in_shape": list(conv.in_shape), "groups": conv.groups, "stride": list(conv.stride),
                         "pad_lo": list(conv.pad_lo), "pad_hi": list(conv.pad_hi),
                         "dilation": list(conv.dilation), "mode": conv.padding_mode}
    return entry


def _refused(name: str, in_shape: Sequence[int], out_shape: Sequence[int], why: str) -> dict[str, Any]:
    return {"name": name, "title": f"{name}: {_x(in_shape)} -> {_x(out_shape)}", "refused": why, "conv": None,
            "in_shape": list(in_shape), "out_shape": list(out_shape)}


def _too_large(m: int, n: int, nnz: int) -> str | None:
    """Why a matrix of ``m`` x ``n`` with ``nnz`` nonzeros is not drawn, or None."""
    if max(m, n) > EXPLORER_MAX_ENTRIES:
        return (f"too large: {n:,} inputs and {m:,} outputs (at most {EXPLORER_MAX_ENTRIES:,} each, "
                f"to stay readable)")
    if nnz > EXPLORER_MAX_NONZEROS:
        return f"too large: {nnz:,} nonzeros (at most {EXPLORER_MAX_NONZEROS:,} per layer)"
    return None


def explore(weight: npt.ArrayLike | Network, input_shape: Sequence[int] | None = None, *,
            stride: int | Sequence[int] = 1, padding: int | Sequence[int] | str = 0,
            dilation: int | Sequence[int] = 1, groups: int = 1, padding_mode: str = "zeros",
            layer: int | str | None = None, path: str | os.PathLike[str] = "layer.html",
            title: str | None = None) -> Path:
    """Write an interactive explorer of a conv layer, or of every layer of a network: ONE
    self-contained HTML file that works offline.

    Open it in any browser: the input grids, the output grids and the matrix ``C``, full
    width. Click an output pixel to light its receptive field (its row of ``C``), an input
    pixel to light its projective field (its column: the transposed convolution); arrow keys
    move the selection (PageUp/PageDown: the channel); hover over ``C`` for its values. The
    controls change a convolution's stride, padding, dilation and padding mode (the page
    recomputes ``C`` from the weights as :func:`~toeplitz_conv.conv_matrix` does), show one
    channel, zoom (also ``+``/``-``, Ctrl+wheel) and, for a network, pick the layer.

    Parameters
    ----------
    weight : (C_out, C_in/groups, *kernel) array_like, torch.Tensor, or Network
        A conv layer's real weights (for a complex weight pass ``w.real``, ``w.imag`` or
        ``abs(w)``), or a network from :func:`toeplitz_conv.compile`: then every node with a
        matrix (convolution, transposed convolution, pooling, linear, batch norm, padding, ...;
        max pooling once a forward has run) gets an entry in the layer selector, and nodes
        too large to draw are listed, disabled, with their size.
    input_shape : (C_in, *spatial) tuple of int
        The input of one sample; required with weights, not given with a network (its nodes
        have their shapes).
    stride, padding, dilation, groups, padding_mode
        As in :func:`toeplitz_conv.conv_matrix` (the layer's, with weights; a network's
        nodes have their own).
    layer : int or str, optional
        For a network: the node shown first, by name or by index into ``network.layers``
        (default: the first one drawn).
    path : str or Path, default 'layer.html'
    title : str, optional
        Default: the layer, e.g. ``Conv2d(1, 1, 3, stride=2, padding=1) on 1x5x5``.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        A layer with more than :data:`EXPLORER_MAX_ENTRIES` (4096) inputs or outputs, or more
        than :data:`EXPLORER_MAX_NONZEROS` (250,000) nonzeros; a network none of whose layers
        fits (the file holds at most :data:`EXPLORER_MAX_FILE_NONZEROS`, 1,000,000, in all).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> out = explore(np.ones((1, 1, 3, 3)), (1, 5, 5), stride=2, padding=1,
    ...               path=os.path.join(tempfile.mkdtemp(), "layer.html"))
    >>> text = out.read_text()
    >>> '"out_shape": [1, 3, 3]' in text and '<script src' not in text   # self-contained
    True
    """
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None; got {type(title).__name__}.")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}.")
    from ..network.model import Network  # no torch behind it

    if isinstance(weight, Network):
        given = {k: v for k, v, default in (("stride", stride, 1), ("padding", padding, 0),
                                             ("dilation", dilation, 1), ("groups", groups, 1),
                                             ("padding_mode", padding_mode, "zeros")) if v != default}
        if input_shape is not None or given:
            got = ", ".join(f"{k}={v!r}" for k, v in ({"input_shape": input_shape} | given).items()
                            if v is not None)
            raise TypeError(f"input_shape, stride, padding, dilation, groups and padding_mode describe one "
                            f"layer; a Network's nodes have their own: leave them out; got {got}.")
        layers, first = _network_layers(weight, layer)
        if title is None:
            shown = sum(entry["refused"] is None for entry in layers)
            title = (f"Network {_x(weight.input_shape)} -> {_x(weight.output_shape)}: "
                     f"{shown} of {len(layers)} layers with a matrix shown")
    else:
        if layer is not None:
            raise TypeError(f"layer picks a node of a Network; with weights leave it out; got layer={layer!r}.")
        if input_shape is None:
            raise TypeError("input_shape is required with weights: the (C_in, *spatial) shape of one sample; "
                            "got None.")
        entry = _conv_layer(weight, input_shape, stride, padding, dilation, groups, padding_mode)
        layers, first = [entry], 0
        title = entry["title"] if title is None else title
    out = Path(path)
    out.write_text(page(title, {"limit": EXPLORER_MAX_ENTRIES, "first": first, "layers": layers}),
                   encoding="utf-8")
    return out


def _conv_layer(weight: npt.ArrayLike, input_shape: Sequence[int], stride: int | Sequence[int],
                padding: int | Sequence[int] | str, dilation: int | Sequence[int], groups: int,
                padding_mode: str) -> dict[str, Any]:
    w = check_weight(weight)
    check_real(w, "weight")
    geom = conv_geometry(w.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, padding_mode=padding_mode)
    m, n = geom.shape
    if max(m, n) > EXPLORER_MAX_ENTRIES:
        raise ValueError(f"explore is for small layers (at most {EXPLORER_MAX_ENTRIES:,} input and output "
                         f"entries, to stay readable); got {n:,} inputs and {m:,} outputs "
                         f"(input_shape={geom.in_shape}, output {geom.out_shape}).")
    nnz = csr_size(geom, 8)[0]
    if nnz > EXPLORER_MAX_NONZEROS:
        raise ValueError(f"explore is for small layers (at most {EXPLORER_MAX_NONZEROS:,} nonzeros in C, to keep "
                         f"the file small); got {nnz:,} nonzeros (input_shape={geom.in_shape}, weight "
                         f"{geom.weight_shape}).")
    w64 = w.astype(np.float64)
    C = conv_matrix(w64, geom.in_shape, stride=stride, padding=padding, dilation=dilation, groups=groups,
                    padding_mode=padding_mode)
    title = _layer_title(geom, stride, padding, dilation, groups, padding_mode)
    return _layer_entry(title, title, C, geom.in_shape, geom.out_shape, geom, w64)


def _network_layers(net: Network, layer: int | str | None) -> tuple[list[dict[str, Any]], int]:
    """The page's layers of a network (refused ones with the reason) and the one shown first."""
    from ..network.affine import Affine
    from ..network.layers import MaxPool, Reshape

    entries: list[dict[str, Any]] = []
    index: dict[int, int] = {}  # net.layers position -> entry
    total = 0
    for k, node in enumerate(net.layers):
        if isinstance(node, Reshape) or not isinstance(node, (Affine, MaxPool)):
            continue  # the identity, nonlinearities, combinations: no matrix to see
        name = node.name or node.node or f"layer {k}"
        m, n = prod(node.out_shape), prod(node.in_shape)
        if isinstance(node, Affine):
            nnz = node.matrix_size()[0]  # from the geometry: builds nothing
        else:
            nnz = m  # one 1 per output
        why = _too_large(m, n, nnz)
        if why is None and total + nnz > EXPLORER_MAX_FILE_NONZEROS:
            why = (f"left out: the file already holds {total:,} nonzeros and this layer's {nnz:,} would pass "
                   f"{EXPLORER_MAX_FILE_NONZEROS:,}")
        if why is None and isinstance(node, MaxPool) and node.matrix is None:
            why = "max pooling: its matrix is the argmax of an input; run net.forward(x) first to see x[0]'s"
        index[k] = len(entries)
        if why is not None:
            entries.append(_refused(name, node.in_shape, node.out_shape, f"{node.kind} {why}"))
            continue
        entries.append(_node_entry(name, node))
        total += len(entries[-1]["indices"])
    shown = [i for i, e in enumerate(entries) if e["refused"] is None]
    if not shown:
        sizes = "; ".join(f"{e['name']}: {e['refused']}" for e in entries) or "no node has a matrix"
        raise ValueError(f"explore found no layer of the network it can show ({sizes}).")
    if layer is None:
        return entries, shown[0]
    where = net.position(layer, "layer") - 1 if isinstance(layer, str) else layer
    if isinstance(where, bool) or not isinstance(where, (int, np.integer)):
        raise TypeError(f"layer must be a node name or an index into network.layers; got {type(layer).__name__}.")
    where = int(where) + (len(net.layers) if where < 0 else 0)
    if where not in index or entries[index[where]]["refused"] is not None:
        drawn = ", ".join(repr(e["name"]) for e in entries if e["refused"] is None)
        why = (entries[index[where]]["refused"] if where in index
               else "it has no matrix to draw" if 0 <= where < len(net.layers) else "out of range")
        raise ValueError(f"layer must be a node the explorer shows ({drawn}); got layer={layer!r}: {why}.")
    return entries, index[where]


def _node_entry(name: str, node: Layer) -> dict[str, Any]:
    """A network node's page entry; a matrix built for it is released after (as before)."""
    from ..network.affine import Affine, Conv

    kept = isinstance(node, Affine) and node.built
    matrix = node.matrix
    try:
        shapes = f"{_x(node.in_shape)} -> {_x(node.out_shape)}"
        if isinstance(matrix, tuple):  # max pooling: the selection of the last forward's samples
            return _layer_entry(name, f"{name}: {node.kind} {shapes} (argmax of the last forward's first sample)",
                                matrix[0], node.in_shape, node.out_shape)
        if isinstance(node, Conv) and not node.transposed:
            return _layer_entry(name, f"{name}: {node.geometry.describe()} on {shapes}", matrix, node.in_shape,
                                node.out_shape, node.geometry, node.weight)
        return _layer_entry(name, f"{name}: {node.kind} {shapes}", matrix, node.in_shape, node.out_shape)
    finally:
        if isinstance(node, Affine) and not kept:
            node.release()


def _layer_title(geom: ConvGeometry, stride: int | Sequence[int],
                 padding: int | Sequence[int] | str, dilation: int | Sequence[int], groups: int,
                 padding_mode: str) -> str:
    nd = geom.ndim
    k = geom.kernel[0] if len(set(geom.kernel)) == 1 else tuple(geom.kernel)
    parts = [f"Conv{nd}d({geom.in_channels}, {geom.out_channels}, {k}"]
    for name, value, default in (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1),
                                 ("groups", groups, 1)):
        if value != default:
            parts.append(f"{name}={value!r}")
    if padding_mode != "zeros":
        parts.append(f"padding_mode={padding_mode!r}")
    return ", ".join(parts) + f") on {_x(geom.in_shape)} ({prod(geom.out_shape)} outputs)"
