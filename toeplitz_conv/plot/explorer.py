"""An interactive explorer of one conv layer: a single self-contained HTML file.

The file holds the layer's matrix ``C`` (CSR, and its columns as CSC) as JSON and a little
inline JavaScript; it needs no network. It shows the input grids (one per channel), the output
grids, and ``C`` drawn on a canvas. Clicking an output pixel lights its receptive field on the
input (row ``i`` of ``C``: the entries ``C[i, j] != 0``) and that row of ``C``; clicking an input
pixel lights its projective field on the output (column ``j``: the transposed convolution) and
that column. Hovering over ``C`` shows the entry's value.

The contract the tests rely on: every input and output cell is an element with
``data-role="input"`` or ``"output"`` and ``data-index`` its flat C-order index into
``x[n].reshape(-1)`` / ``y[n].reshape(-1)``; after a click the cells of the lit row or column
(and only those) carry the class ``lit``.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from math import prod
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..conv import conv_matrix
from ..geometry import ConvGeometry, check_weight, conv_geometry
from .matrices import check_real

#: The explorer is for layers a student can look at: at most this many input or output entries.
EXPLORER_MAX_ENTRIES = 4096

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; } p { margin: 4px 0 12px; font-size: 13px; color: #555; }
.row { display: flex; gap: 28px; align-items: flex-start; flex-wrap: wrap; }
.panel h2 { font-size: 14px; margin: 0 0 6px; }
.grids { display: flex; gap: 10px; flex-wrap: wrap; }
.grid { display: grid; gap: 1px; background: #bbb; border: 1px solid #bbb; }
.grid .cap { grid-column: 1 / -1; background: #fff; font-size: 11px; color: #666; padding: 1px 3px; }
.cell { width: 22px; height: 22px; background: #fff; font-size: 9px; color: #888; display: flex;
        align-items: center; justify-content: center; cursor: pointer; user-select: none; }
.cell:hover { outline: 2px solid #999; }
.cell.lit { background: #f4a259; color: #000; }
.cell.sel { background: #c0392b; color: #fff; }
canvas { border: 1px solid #bbb; image-rendering: pixelated; cursor: crosshair; }
#hover { font-size: 12px; color: #333; min-height: 16px; margin-top: 4px; }
</style></head><body>
<h1>__TITLE__</h1>
<p>Click an output pixel: its receptive field lights on the input (its row of C). Click an input
pixel: its projective field lights on the output (its column of C: the transposed convolution).
Hover over C for its entries. C is __M__ x __N__ with __NNZ__ nonzeros; samples are flattened in
C order (channel, then rows, then columns).</p>
<div class="row">
<div class="panel"><h2>input x, shape __IN__</h2><div class="grids" id="input"></div></div>
<div class="panel"><h2>output y = C x, shape __OUT__</h2><div class="grids" id="output"></div></div>
</div>
<div class="panel" style="margin-top:16px"><h2>C (rows: output index, columns: input index)</h2>
<canvas id="C"></canvas><div id="hover"></div></div>
<script>
const D = __DATA__;
function grids(id, shape, role) {
  const root = document.getElementById(id);
  const ch = shape[0], sp = shape.slice(1);
  const w = sp.length ? sp[sp.length - 1] : 1;
  const per = sp.reduce((a, b) => a * b, 1);
  const planes = per / w;
  for (let c = 0; c < ch; c++) {
    const g = document.createElement("div");
    g.className = "grid";
    g.style.gridTemplateColumns = "repeat(" + w + ", 22px)";
    const cap = document.createElement("div");
    cap.className = "cap"; cap.textContent = "channel " + c;
    g.appendChild(cap);
    for (let k = 0; k < per; k++) {
      const e = document.createElement("div");
      const idx = c * per + k;
      e.className = "cell"; e.dataset.role = role; e.dataset.index = idx; e.textContent = idx;
      e.addEventListener("click", () => pick(role, idx));
      g.appendChild(e);
    }
    root.appendChild(g);
  }
}
const cv = document.getElementById("C"), ctx = cv.getContext("2d");
const scale = Math.max(1, Math.min(12, Math.floor(900 / Math.max(D.n, D.m))));
cv.width = D.n * scale; cv.height = D.m * scale;
let vmax = 0; for (const v of D.data) vmax = Math.max(vmax, Math.abs(v));
function colour(v) {
  const t = vmax ? Math.min(1, Math.abs(v) / vmax) : 0;
  const a = Math.round(255 - 200 * t);
  return v >= 0 ? "rgb(255," + a + "," + a + ")" : "rgb(" + a + "," + a + ",255)";
}
function draw(row, col) {
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, cv.width, cv.height);
  if (row !== null) { ctx.fillStyle = "#fde3c8"; ctx.fillRect(0, row * scale, cv.width, scale); }
  if (col !== null) { ctx.fillStyle = "#fde3c8"; ctx.fillRect(col * scale, 0, scale, cv.height); }
  for (let i = 0; i < D.m; i++)
    for (let k = D.indptr[i]; k < D.indptr[i + 1]; k++) {
      ctx.fillStyle = colour(D.data[k]); ctx.fillRect(D.indices[k] * scale, i * scale, scale, scale);
    }
}
function clear() {
  for (const e of document.querySelectorAll(".cell.lit, .cell.sel")) e.classList.remove("lit", "sel");
}
function cell(role, idx) {
  return document.querySelector('.cell[data-role="' + role + '"][data-index="' + idx + '"]');
}
function pick(role, idx) {
  clear();
  cell(role, idx).classList.add("sel");
  if (role === "output") {
    for (let k = D.indptr[idx]; k < D.indptr[idx + 1]; k++) cell("input", D.indices[k]).classList.add("lit");
    draw(idx, null);
  } else {
    for (let k = D.colptr[idx]; k < D.colptr[idx + 1]; k++) cell("output", D.rowidx[k]).classList.add("lit");
    draw(null, idx);
  }
}
cv.addEventListener("mousemove", (ev) => {
  const r = cv.getBoundingClientRect();
  const j = Math.floor((ev.clientX - r.left) / scale), i = Math.floor((ev.clientY - r.top) / scale);
  let v = 0;
  if (i >= 0 && i < D.m)
    for (let k = D.indptr[i]; k < D.indptr[i + 1]; k++) if (D.indices[k] === j) v = D.data[k];
  document.getElementById("hover").textContent = "C[" + i + ", " + j + "] = " + Number(v.toPrecision(6));
});
grids("input", D.in_shape, "input");
grids("output", D.out_shape, "output");
draw(null, null);
</script></body></html>
"""


def explore(weight: npt.ArrayLike, input_shape: Sequence[int], *, stride: int | Sequence[int] = 1,
            padding: int | Sequence[int] | str = 0, dilation: int | Sequence[int] = 1,
            groups: int = 1, padding_mode: str = "zeros",
            path: str | os.PathLike[str] = "layer.html", title: str | None = None) -> Path:
    """Write an interactive explorer of one conv layer: ONE self-contained HTML file.

    Open it in any browser (no network needed): the input grids, the output grids and the
    matrix ``C``. Click an output pixel to light its receptive field (its row of ``C``), an
    input pixel to light its projective field (its column: the transposed convolution);
    hover over ``C`` for its values.

    Parameters
    ----------
    weight : (C_out, C_in/groups, *kernel) array_like or torch.Tensor
        Real (for a complex weight pass ``w.real``, ``w.imag`` or ``abs(w)``).
    input_shape : (C_in, *spatial) tuple of int
        At most :data:`EXPLORER_MAX_ENTRIES` (4096) entries, and as many outputs.
    stride, padding, dilation, groups, padding_mode
        As in :func:`toeplitz_conv.conv_matrix`.
    path : str or Path, default 'layer.html'
    title : str, optional
        Default: the layer, e.g. ``Conv2d(1, 1, 3, stride=2, padding=1) on 1x5x5``.

    Returns
    -------
    Path
        The file written.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> out = explore(np.ones((1, 1, 3, 3)), (1, 5, 5), stride=2, padding=1,
    ...               path=os.path.join(tempfile.mkdtemp(), "layer.html"))
    >>> text = out.read_text()
    >>> 'data-role' in text and '<script src' not in text   # self-contained
    True
    """
    w = check_weight(weight)
    check_real(w, "weight")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None; got {type(title).__name__}.")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}.")
    geom = conv_geometry(w.shape, input_shape, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, padding_mode=padding_mode)
    m, n = geom.shape
    if max(m, n) > EXPLORER_MAX_ENTRIES:
        raise ValueError(f"explore is for small layers (at most {EXPLORER_MAX_ENTRIES:,} input and output "
                         f"entries, to stay readable); got {n:,} inputs and {m:,} outputs "
                         f"(input_shape={geom.in_shape}, output {geom.out_shape}).")
    C = conv_matrix(w.astype(np.float64), geom.in_shape, stride=stride,
                    padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode)
    C.sum_duplicates()
    C.eliminate_zeros()  # a zero weight connects nothing: C[i, j] != 0 is what lights
    T = C.tocsc()
    data = {"m": m, "n": n, "in_shape": list(geom.in_shape), "out_shape": list(geom.out_shape),
            "indptr": C.indptr.tolist(), "indices": C.indices.tolist(), "data": C.data.tolist(),
            "colptr": T.indptr.tolist(), "rowidx": T.indices.tolist()}
    if title is None:
        title = _layer_title(geom, stride, padding, dilation, groups, padding_mode)
    page = (_PAGE.replace("__TITLE__", html.escape(title))
            .replace("__M__", f"{m:,}").replace("__N__", f"{n:,}").replace("__NNZ__", f"{C.nnz:,}")
            .replace("__IN__", "x".join(map(str, geom.in_shape)))
            .replace("__OUT__", "x".join(map(str, geom.out_shape)))
            .replace("__DATA__", json.dumps(data)))
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out


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
    return ", ".join(parts) + f") on {'x'.join(map(str, geom.in_shape))} ({prod(geom.out_shape)} outputs)"
