"""The page :func:`~toeplitz_conv.plot.explorer.explore` writes: HTML, CSS and JavaScript.

Everything is inline (no external script, style, font or image), so the file works offline.
:func:`page` fills in the title and the data (JSON); the script draws the rest:

- the input and output grids, one bordered grid per channel, with 0-based row and column
  indices; cells are ``data-role="input"``/``"output"`` elements with ``data-index`` the
  flat C-order index, and the cells of the lit row or column carry the class ``lit``;
- ``C`` on a canvas that draws only what is in view (any size scrolls and zooms), with
  ``(c, i, j)`` axis labels, channel separators and a colour legend;
- controls: layer, stride, padding, dilation, padding mode (a convolution's matrix is
  recomputed in the page from its weights and geometry, as ``conv_matrix`` does), the channel
  shown, zoom (buttons, ``+``/``-``/``0``, Ctrl+wheel); arrow keys move the selected pixel.

The script's first part (here) holds the data, the convolution's matrix and the grids; the
second (:mod:`.explorer_view`) draws ``C`` and wires the controls. ``window.explorer.matrix()``
returns the matrix shown (CSR arrays), for tests.
"""

from __future__ import annotations

import html
import json
from typing import Any

from .explorer_view import VIEW_SCRIPT

_CSS = """
:root { --cell: 32px; }
* { box-sizing: border-box; }
body { font: 16px/1.35 system-ui, sans-serif; margin: 0; padding: 6px 16px 24px; color: #222; }
h1 { font-size: 22px; margin: 4px 0; } h2 { font-size: 19px; margin: 10px 0 2px; }
h3 { font-size: 17px; margin: 0 0 6px; } p { margin: 3px 0; }
.help { color: #444; }
.controls { display: flex; flex-wrap: wrap; gap: 8px 18px; align-items: center; padding: 6px 10px;
  background: #f1f1f1; border-radius: 6px; position: sticky; top: 0; z-index: 5; margin: 6px 0; }
.controls label.off { color: #999; }
select, button { font: inherit; padding: 1px 6px; }
#status { color: #b00020; font-weight: 600; min-height: 1.35em; }
#refused { color: #8a4b00; }
.panels { display: flex; gap: 16px; width: 100%; margin-top: 6px; }
.panel { flex: 1 1 0; min-width: 0; overflow: auto; max-height: 80vh; border: 1px solid #ddd;
  border-radius: 6px; padding: 6px 8px; }
.grids { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.grid { display: grid; grid-auto-rows: var(--cell); border: 3px solid #333; background: #fff;
  content-visibility: auto; }  /* a channel out of view is not laid out */
.grid .cap { grid-column: 1 / -1; font-weight: 600; padding: 0 6px; display: flex; align-items: center;
  background: #eee; font-size: max(14px, calc(var(--cell) * .3)); }
.ax { font-size: max(11px, calc(var(--cell) * .38)); color: #555; display: flex; align-items: center;
  justify-content: center; padding: 0 4px; }
.cell { width: var(--cell); height: var(--cell); border: 1px solid #d5d5d5; background: #fff;
  font-size: calc(var(--cell) * .36); line-height: calc(var(--cell) - 2px); text-align: center; color: #777;
  cursor: pointer; user-select: none; overflow: hidden; white-space: nowrap; }
.cell.dtop { border-top: 3px solid #777; }
.cell:hover { outline: 2px solid #555; outline-offset: -2px; }
.cell.lit { box-shadow: inset 0 0 0 3px #ff8c00; color: #000; font-weight: 700; }
.cell.lit.dark { color: #fff; }
.cell.sel { background: #222 !important; color: #fff; box-shadow: inset 0 0 0 3px #ff8c00; }
#info { min-height: 1.35em; margin: 6px 0; font-weight: 600; }
#legend { display: flex; gap: 8px 22px; align-items: center; flex-wrap: wrap; margin: 4px 0 6px; }
#legend .bar { width: 280px; height: 18px; border: 1px solid #999; display: inline-block;
  vertical-align: middle; margin: 0 6px; }
.sw { display: inline-block; width: 20px; height: 20px; vertical-align: middle; margin-right: 5px;
  border: 1px solid #999; }
#cbox { position: relative; width: 100%; border: 1px solid #bbb; }
#cwrap { overflow: auto; width: 100%; cursor: crosshair; }
#C { position: absolute; left: 0; top: 0; pointer-events: none; }
#hover { min-height: 1.35em; margin-top: 4px; font-family: ui-monospace, monospace; }
"""

_BODY = """
<h1 id="title">__TITLE__</h1>
<p class="help">Click a pixel of the output y: its receptive field lights on the input x (its row of C).
Click a pixel of the input: its projective field lights on the output (its column of C: the transposed
convolution). Lit cells are filled with the entry of C. Arrow keys move the selected pixel
(PageUp/PageDown: the channel); + and &minus; or Ctrl+wheel zoom, 0 fits the width. Click C to select
its row (Shift+click: its column). Indices are 0-based, (c, i, j); a sample is flattened in C order
(channel, then rows, then columns).</p>
<div class="controls" id="controls">
<label id="layerbox">layer <select id="layer"></select></label>
<label>stride <select id="stride"></select></label>
<label>padding <select id="padding"></select></label>
<label>dilation <select id="dilation"></select></label>
<label>padding mode <select id="mode"></select></label>
<label>input channel <select id="cin"></select></label>
<label>output channel <select id="cout"></select></label>
<span>zoom <button id="zoomout" title="zoom out (-)">&minus;</button> <span id="zoomval">100%</span>
<button id="zoomin" title="zoom in (+)">+</button> <button id="fit" title="fit the width (0)">fit</button></span>
</div>
<div id="status" role="status"></div>
<p id="refused"></p>
<h2 id="layertitle"></h2>
<p id="setting"></p>
<div class="panels">
<section class="panel"><h3>input x, shape <span id="inshape"></span></h3><div class="grids" id="input"></div></section>
<section class="panel"><h3>output y = C x, shape <span id="outshape"></span></h3><div class="grids" id="output"></div></section>
</div>
<p id="info"></p>
<section><h3>C: row = output index, column = input index, each labelled with its (c, i, j)</h3>
<div id="legend"></div>
<div id="cbox"><div id="cwrap"><div id="cspace"></div></div><canvas id="C"></canvas></div>
<div id="hover"></div></section>
"""

_SCRIPT = r"""
"use strict";
const D = __DATA__;
const RDBU = [[5,48,97],[33,102,172],[67,147,195],[146,197,222],[209,229,240],[247,247,247],
              [253,219,199],[244,165,130],[214,96,77],[178,24,43],[103,0,31]];  // RdBu_r, as the figures
const MODES = ["zeros", "reflect", "replicate", "circular", "symmetric"];
const $ = (id) => document.getElementById(id);
const cv = $("C"), ctx = cv.getContext("2d"), wrap = $("cwrap"), space = $("cspace");
const S = {L: null, M: null, sel: null, cin: -1, cout: -1, zoom: 1, vmax: 0, lit: [], cells: {},
           s: 1, ML: 60, MT: 60, cw: 0, ch: 0, conv: null};
const FONT = "15px system-ui, sans-serif";
const prod = (a) => a.reduce((x, y) => x * y, 1);
const fmt = (v) => String(Number(v.toPrecision(4)));
const shapeText = (s) => s.join("x");
function unravel(k, shape) {
  const out = [];
  for (let a = shape.length - 1; a >= 0; a--) { out.unshift(k % shape[a]); k = Math.floor(k / shape[a]); }
  return out;
}
const LUT = [], LUT_CSS = [];  // 257 shades of RdBu_r over [-vmax, vmax]: a colour is one lookup
for (let n = 0; n <= 256; n++) {
  const u = n / 25.6, k = Math.min(9, Math.floor(u)), f = u - k, a = RDBU[k], b = RDBU[k + 1];
  LUT.push([0, 1, 2].map((q) => Math.round(a[q] + (b[q] - a[q]) * f)));
  LUT_CSS.push("rgb(" + LUT[n].join(",") + ")");
}
const shade = (v) => S.vmax ? Math.round((Math.max(-1, Math.min(1, v / S.vmax)) + 1) * 128) : 128;
const colour = (v) => LUT_CSS[shade(v)];
// How a sample shape is laid out: one grid per channel, rows x cols (a vector wraps).
function info(shape) {
  const F = prod(shape);
  if (shape.length < 2) {
    const cols = Math.min(F, Math.max(16, Math.ceil(Math.sqrt(F)))), rows = Math.ceil(F / cols);
    return {F, C: 1, rows, cols, per: F, slice: 0, vec: true, label: (k) => "(" + k + ")",
      pos: (k) => ({c: 0, r: Math.floor(k / cols), q: k % cols}),
      at: (c, r, q) => (c === 0 && r >= 0 && q >= 0 && q < cols && r * cols + q < F) ? r * cols + q : -1,
      rowLabel: (r) => String(r * cols)};
  }
  const C = shape[0], cols = shape[shape.length - 1], mid = shape.slice(1, -1), rows = prod(mid);
  const per = rows * cols, slice = mid.length > 1 ? prod(mid.slice(1)) : 0;
  return {F, C, rows, cols, per, slice, vec: false, label: (k) => "(" + unravel(k, shape).join(", ") + ")",
    pos: (k) => ({c: Math.floor(k / per), r: Math.floor((k % per) / cols), q: k % cols}),
    at: (c, r, q) => (c >= 0 && c < C && r >= 0 && r < rows && q >= 0 && q < cols) ? c * per + r * cols + q : -1,
    rowLabel: (r) => unravel(r, mid).join(",")};
}
// ---------------------------------------------------------------- the convolution, as conv_matrix
function axisTable(n, k, s, d, lo, o, mode) {  // input position read by tap t of output p; -1: zero
  const T = new Int32Array(o * k);
  for (let p = 0; p < o; p++) for (let t = 0; t < k; t++) {
    let q = p * s - lo + t * d;
    if (q < 0 || q >= n) {
      if (mode === "zeros") q = -1;
      else if (mode === "replicate") q = Math.min(n - 1, Math.max(0, q));
      else if (mode === "circular") q = ((q % n) + n) % n;
      else if (mode === "symmetric") q = q < 0 ? -q - 1 : 2 * n - 1 - q;
      else q = q < 0 ? -q : 2 * (n - 1) - q;  // reflect
    }
    T[p * k + t] = q;
  }
  return T;
}
function convMatrix(G, stride, lo, hi, dil, mode) {
  const ins = G.in_shape.slice(1), ker = G.kernel, nd = ker.length, outs = [], tabs = [];
  for (let a = 0; a < nd; a++) {
    const n = ins[a], ax = nd > 1 ? " along spatial axis " + a : "";
    const o = Math.floor((n + lo[a] + hi[a] - dil[a] * (ker[a] - 1) - 1) / stride[a]) + 1;
    if (o < 1) throw new Error("no output" + ax + ": the padded input (" + (n + lo[a] + hi[a]) + ") is " +
      "shorter than the dilated kernel (" + (dil[a] * (ker[a] - 1) + 1) + ")");
    const over = mode === "reflect" ? Math.max(lo[a], hi[a]) >= n : Math.max(lo[a], hi[a]) > n;
    if (mode !== "zeros" && mode !== "replicate" && over)
      throw new Error("padding " + Math.max(lo[a], hi[a]) + " is too large for padding_mode='" + mode +
        "' on an input of size " + n + ax + " (reflect needs padding < size; circular, symmetric <= size)");
    outs.push(o); tabs.push(axisTable(n, ker[a], stride[a], dil[a], lo[a], o, mode));
  }
  const cout = G.wshape[0], cg = G.wshape[1], perGroup = cout / G.groups;
  const Pin = prod(ins), Pout = prod(outs), K = prod(ker), m = cout * Pout, n = G.in_shape[0] * Pin;
  if (m > D.limit) throw new Error("the output would have " + m + " entries, more than the " + D.limit + " shown");
  const taps = [], outIdx = [];
  for (let t = 0; t < K; t++) taps.push(unravel(t, ker));
  for (let p = 0; p < Pout; p++) outIdx.push(unravel(p, outs));
  const indptr = [0], indices = [], data = [];
  for (let oc = 0; oc < cout; oc++) {
    const g = Math.floor(oc / perGroup);
    for (let p = 0; p < Pout; p++) {
      const acc = new Map(), op = outIdx[p];
      for (let ci = 0; ci < cg; ci++) {
        const base = (g * cg + ci) * Pin, wbase = (oc * cg + ci) * K;
        for (let t = 0; t < K; t++) {
          let col = 0, ok = true;
          for (let a = 0; a < nd; a++) {
            const q = tabs[a][op[a] * ker[a] + taps[t][a]];
            if (q < 0) { ok = false; break; }
            col = col * ins[a] + q;
          }
          if (ok) acc.set(base + col, (acc.get(base + col) || 0) + G.weight[wbase + t]);
        }
      }
      for (const col of [...acc.keys()].sort((x, y) => x - y))
        if (acc.get(col) !== 0) { indices.push(col); data.push(acc.get(col)); }
      indptr.push(indices.length);
    }
  }
  return {m, n, in_shape: G.in_shape, out_shape: [cout, ...outs], indptr, indices, data};
}
function withColumns(M) {  // CSC of M: the columns, for the projective fields
  const colptr = new Int32Array(M.n + 1), rowidx = new Int32Array(M.indices.length);
  const colval = new Float64Array(M.indices.length);
  for (const j of M.indices) colptr[j + 1]++;
  for (let j = 0; j < M.n; j++) colptr[j + 1] += colptr[j];
  const next = colptr.slice(0, M.n);
  for (let i = 0; i < M.m; i++) for (let k = M.indptr[i]; k < M.indptr[i + 1]; k++) {
    const at = next[M.indices[k]]++;
    rowidx[at] = i; colval[at] = M.data[k];
  }
  M.colptr = colptr; M.rowidx = rowidx; M.colval = colval;
  return M;
}
function entry(i, j) {
  const M = S.M;
  for (let k = M.indptr[i]; k < M.indptr[i + 1]; k++) if (M.indices[k] === j) return M.data[k];
  return 0;
}
// ---------------------------------------------------------------- grids
function cellPx() {
  const w = Math.min(...["input", "output"].map((r) => $(r).parentElement.clientWidth - 24));
  const cols = Math.max(S.inI.cols, S.outI.cols);
  const fit = Math.max(28, Math.min(56, Math.floor(w / (cols + 1.6))));
  return Math.max(12, Math.min(96, Math.round(fit * S.zoom)));  // the zoom is for C: the grids stay readable
}
function grids(role) {
  const I = role === "input" ? S.inI : S.outI, only = role === "input" ? S.cin : S.cout, root = $(role);
  root.innerHTML = ""; S.cells[role] = [];
  const div = (cls, text) => { const e = document.createElement("div"); e.className = cls; e.textContent = text; return e; };
  for (let c = 0; c < I.C; c++) {
    if (only >= 0 && c !== only) continue;
    const g = div("grid", "");
    g.style.gridTemplateColumns = "auto repeat(" + I.cols + ", var(--cell))";
    g.appendChild(div("cap", I.vec ? "features (k)" : "channel c = " + c));
    g.appendChild(div("ax", I.slice ? (role === "input" ? "x" : "y") : ""));
    for (let q = 0; q < I.cols; q++) g.appendChild(div("ax", String(q)));
    for (let r = 0; r < I.rows; r++) {
      g.appendChild(div("ax", I.rowLabel(r)));
      for (let q = 0; q < I.cols; q++) {
        const k = I.at(c, r, q);
        if (k < 0) { g.appendChild(div("ax", "")); continue; }
        const e = div("cell" + (I.slice && r > 0 && r % I.slice === 0 ? " dtop" : ""), String(k));
        e.dataset.role = role; e.dataset.index = k; e.title = role + " " + k + " = " + I.label(k);
        g.appendChild(e); S.cells[role][k] = e;
      }
    }
    root.appendChild(g);
  }
}
// A grid out of view is not laid out (content-visibility): it takes the size of the first grid,
// measured laid out, so that nothing moves as grids scroll into view (a click lands where aimed).
function sizeGrids() {
  for (const role of ["input", "output"]) {
    const root = $(role), first = root.firstElementChild;
    if (!first) continue;
    first.style.contentVisibility = "visible";
    const size = "auto " + first.clientWidth + "px auto " + first.clientHeight + "px";
    first.style.contentVisibility = "";
    for (const g of root.children) g.style.containIntrinsicSize = size;
  }
}
function clearLit() {
  for (const e of S.lit) { e.classList.remove("lit", "sel", "dark"); e.style.background = ""; }
  S.lit = [];
}
function light(role, idx, v) {
  const e = S.cells[role][idx];
  if (!e) return;
  e.classList.add("lit"); e.style.background = colour(v);
  if (S.vmax && Math.abs(v) / S.vmax > 0.55) e.classList.add("dark");
  S.lit.push(e);
}
function pick(role, idx, reveal) {
  const I = role === "input" ? S.inI : S.outI;
  if (!(idx >= 0 && idx < I.F)) return;
  const c = I.pos(idx).c, M = S.M;
  if (!S.cells[role][idx]) { setChannel(role, c); }
  clearLit(); S.sel = {role, idx};
  const e = S.cells[role][idx]; e.classList.add("sel"); S.lit.push(e);
  let count = 0;
  if (role === "output") {
    for (let k = M.indptr[idx]; k < M.indptr[idx + 1]; k++, count++) light("input", M.indices[k], M.data[k]);
    $("info").textContent = "output " + idx + " = y" + I.label(idx) + " reads " + count + " input" +
      (count === 1 ? "" : "s") + ": row " + idx + " of C (its receptive field)";
  } else {
    for (let k = M.colptr[idx]; k < M.colptr[idx + 1]; k++, count++) light("output", M.rowidx[k], M.colval[k]);
    $("info").textContent = "input " + idx + " = x" + I.label(idx) + " is read by " + count + " output" +
      (count === 1 ? "" : "s") + ": column " + idx + " of C (its projective field, the transposed convolution)";
  }
  if (reveal) { e.scrollIntoView({block: "nearest", inline: "nearest"}); revealC(); }
  draw();
}
"""


def page(title: str, data: dict[str, Any]) -> str:
    """The whole HTML file: ``title`` (plain text, escaped here) and ``data`` as JSON.

    ``data`` holds ``limit`` (the most entries a recomputed output may have), ``first`` (the
    layer shown first) and ``layers``: per layer its ``name``, ``title``, ``m``, ``n``,
    ``in_shape``, ``out_shape``, the CSR arrays ``indptr``, ``indices``, ``data``, ``refused``
    (None, or why it is not shown) and ``conv`` (None, or the weights and geometry the page
    recomputes the matrix from).
    """
    text = json.dumps(data).replace("</", "<\\/")  # no '</script>' inside the script
    script = (_SCRIPT + VIEW_SCRIPT).replace("__DATA__", text)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style></head>\n<body>"
            + _BODY.replace("__TITLE__", html.escape(title))
            + f"<script>{script}</script>\n</body></html>\n")
