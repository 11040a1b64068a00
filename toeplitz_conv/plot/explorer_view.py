"""The second part of the explorer's script (:mod:`.explorer_page` holds the first): ``C`` drawn
on a canvas (only the part in view, so any size scrolls and zooms) with ``(c, i, j)`` axis
labels, channel separators and the selected row or column; the zoom (buttons, keys,
Ctrl+wheel), the colour legend, the controls (layer, stride, padding, dilation, padding mode,
channel), the arrow keys, and the start. Plain text: no Python runs in the page.
"""

VIEW_SCRIPT = r"""
// ---------------------------------------------------------------- C on a canvas: only what is in view
function view() {  // the rows and columns of C shown (one channel's block, or all)
  const r0 = S.cout < 0 ? 0 : S.cout * S.outI.per, c0 = S.cin < 0 ? 0 : S.cin * S.inI.per;
  return {r0, r1: S.cout < 0 ? S.M.m : r0 + S.outI.per, c0, c1: S.cin < 0 ? S.M.n : c0 + S.inI.per};
}
const rowText = (i) => i + " " + S.outI.label(i), colText = (j) => j + " " + S.inI.label(j);
function layoutC() {
  document.documentElement.style.setProperty("--cell", cellPx() + "px");  // the grids first: the page's
  sizeGrids();                                                            // height sets its scroll bar
  const v = view(), rows = v.r1 - v.r0, cols = v.c1 - v.c0;
  ctx.font = FONT;
  S.ML = Math.max(96, Math.ceil(ctx.measureText(rowText(S.M.m - 1)).width) + 18);
  S.MT = Math.max(64, Math.ceil(ctx.measureText(colText(S.M.n - 1)).width) + 18);
  const fit = Math.min(40, ($("cbox").clientWidth - S.ML - 24) / cols);  // the same with or without scroll bars
  S.s = fit * S.zoom;
  space.style.width = Math.ceil(S.ML + cols * S.s + 4) + "px";
  space.style.height = Math.ceil(S.MT + rows * S.s + 4) + "px";
  wrap.style.height = Math.round(Math.max(260, Math.min(window.innerHeight * 0.85, S.MT + rows * S.s + 24))) + "px";
  const dpr = window.devicePixelRatio || 1;
  S.cw = wrap.clientWidth; S.ch = wrap.clientHeight;
  cv.style.width = S.cw + "px"; cv.style.height = S.ch + "px";
  cv.width = Math.round(S.cw * dpr); cv.height = Math.round(S.ch * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  $("zoomval").textContent = Math.round(S.zoom * 100) + "%";
  draw();
}
function niceStep(x) {
  for (let e = 1; ; e *= 10) for (const b of [1, 2, 5]) if (b * e >= x) return b * e;
}
function draw() {
  const M = S.M, v = view(), s = S.s, sx = wrap.scrollLeft, sy = wrap.scrollTop, W = S.cw, H = S.ch;
  const ML = S.ML, MT = S.MT, X = (j) => ML + (j - v.c0) * s - sx, Y = (i) => MT + (i - v.r0) * s - sy;
  const i0 = Math.max(v.r0, v.r0 + Math.floor(sy / s)), i1 = Math.min(v.r1, v.r0 + Math.ceil((sy + H - MT) / s) + 1);
  const j0 = Math.max(v.c0, v.c0 + Math.floor(sx / s)), j1 = Math.min(v.c1, v.c0 + Math.ceil((sx + W - ML) / s) + 1);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  ctx.save(); ctx.beginPath(); ctx.rect(ML, MT, W - ML, H - MT); ctx.clip();
  ctx.fillStyle = "#fafafa"; ctx.fillRect(X(v.c0), Y(v.r0), (v.c1 - v.c0) * s, (v.r1 - v.r0) * s);
  const sel = S.sel, band = Math.max(s, 2);
  ctx.fillStyle = "rgba(255, 140, 0, 0.28)";
  if (sel && sel.role === "output") ctx.fillRect(X(v.c0), Y(sel.idx), (v.c1 - v.c0) * s, band);
  if (sel && sel.role === "input") ctx.fillRect(X(sel.idx), Y(v.r0), band, (v.r1 - v.r0) * s);
  if (s < 3) {  // many entries per pixel: write the pixels, one image
    const dpr = window.devicePixelRatio || 1, x0 = Math.round(ML * dpr), y0 = Math.round(MT * dpr);
    const img = ctx.getImageData(x0, y0, cv.width - x0, cv.height - y0), P = img.data, pw = img.width, ph = img.height;
    const size = Math.max(1, Math.round(s * dpr));
    for (let i = i0; i < i1; i++) {
      const py = Math.floor((Y(i) - MT) * dpr);
      for (let k = M.indptr[i]; k < M.indptr[i + 1]; k++) {
        const j = M.indices[k];
        if (j < j0 || j >= j1) continue;
        const px = Math.floor((X(j) - ML) * dpr), rgb = LUT[shade(M.data[k])];
        for (let y = Math.max(0, py); y < Math.min(ph, py + size); y++)
          for (let x = Math.max(0, px); x < Math.min(pw, px + size); x++) {
            const o = 4 * (y * pw + x);
            P[o] = rgb[0]; P[o + 1] = rgb[1]; P[o + 2] = rgb[2]; P[o + 3] = 255;
          }
      }
    }
    ctx.putImageData(img, x0, y0);
  } else {  // one fillStyle per shade
    const gap = s >= 6 ? 1 : 0, w = s - gap, byShade = new Map();
    for (let i = i0; i < i1; i++)
      for (let k = M.indptr[i]; k < M.indptr[i + 1]; k++) {
        const j = M.indices[k];
        if (j < j0 || j >= j1) continue;
        const c = shade(M.data[k]);
        if (!byShade.has(c)) byShade.set(c, []);
        byShade.get(c).push(X(j), Y(i));
      }
    for (const [c, xy] of byShade) {
      ctx.fillStyle = LUT_CSS[c];
      for (let q = 0; q < xy.length; q += 2) ctx.fillRect(xy[q], xy[q + 1], w, w);
    }
  }
  ctx.strokeStyle = "#222"; ctx.lineWidth = 2; ctx.beginPath();  // channel separators
  for (let c = 1; c < S.outI.C; c++) { const i = c * S.outI.per; if (i > v.r0 && i < v.r1) { ctx.moveTo(X(v.c0), Y(i)); ctx.lineTo(X(v.c1), Y(i)); } }
  for (let c = 1; c < S.inI.C; c++) { const j = c * S.inI.per; if (j > v.c0 && j < v.c1) { ctx.moveTo(X(j), Y(v.r0)); ctx.lineTo(X(j), Y(v.r1)); } }
  ctx.stroke();
  ctx.strokeStyle = "#888"; ctx.lineWidth = 1; ctx.strokeRect(X(v.c0), Y(v.r0), (v.c1 - v.c0) * s, (v.r1 - v.r0) * s);
  ctx.restore();
  ctx.font = FONT; ctx.fillStyle = "#333"; ctx.textBaseline = "middle";  // axes
  const rs = niceStep(19 / s);
  ctx.textAlign = "right";
  for (let i = Math.ceil(i0 / rs) * rs; i < i1; i += rs) {
    const y = Y(i) + s / 2;
    if (y < MT + 6 || (sel && sel.role === "output" && sel.idx === i)) continue;
    ctx.fillText(rowText(i), ML - 8, y); ctx.fillRect(ML - 5, y, 5, 1);
  }
  ctx.textAlign = "left";
  for (let j = Math.ceil(j0 / rs) * rs; j < j1; j += rs) {
    const x = X(j) + s / 2;
    if (x < ML + 6 || (sel && sel.role === "input" && sel.idx === j)) continue;
    ctx.save(); ctx.translate(x, MT - 8); ctx.rotate(-Math.PI / 2); ctx.fillText(colText(j), 0, 0); ctx.restore();
    ctx.fillRect(x, MT - 5, 1, 5);
  }
  ctx.fillStyle = "#c05000"; ctx.font = "bold " + FONT;  // the selected row or column's label
  if (sel && sel.role === "output" && Y(sel.idx) + s / 2 >= MT) { ctx.textAlign = "right"; ctx.fillText(rowText(sel.idx), ML - 8, Y(sel.idx) + s / 2); }
  if (sel && sel.role === "input" && X(sel.idx) + s / 2 >= ML) {
    ctx.save(); ctx.translate(X(sel.idx) + s / 2, MT - 8); ctx.rotate(-Math.PI / 2); ctx.textAlign = "left";
    ctx.fillText(colText(sel.idx), 0, 0); ctx.restore();
  }
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, ML, MT);
  ctx.fillStyle = "#333"; ctx.font = FONT; ctx.textAlign = "left";
  ctx.fillText("rows: y", 6, MT - 40); ctx.fillText("columns: x", 6, MT - 18);
}
function revealC() {  // scroll C to the selected row (and its first entry) or column (and its first)
  const v = view(), s = S.s, sel = S.sel, M = S.M;
  if (!sel) return;
  const show = (pos, scroll, room) => (pos < wrap[scroll] || pos + s > wrap[scroll] + room) ? pos - room / 3 : wrap[scroll];
  const [i, j] = sel.role === "output" ? [sel.idx, M.indptr[sel.idx + 1] > M.indptr[sel.idx] ? M.indices[M.indptr[sel.idx]] : v.c0]
    : [M.colptr[sel.idx + 1] > M.colptr[sel.idx] ? M.rowidx[M.colptr[sel.idx]] : v.r0, sel.idx];
  if (i < v.r0 || i >= v.r1 || j < v.c0 || j >= v.c1) return;
  wrap.scrollTop = show((i - v.r0) * s, "scrollTop", S.ch - S.MT);
  wrap.scrollLeft = show((j - v.c0) * s, "scrollLeft", S.cw - S.ML);
}
function where(ev) {  // (i, j) of C under the mouse, or null
  const r = wrap.getBoundingClientRect(), v = view();
  const x = ev.clientX - r.left - S.ML, y = ev.clientY - r.top - S.MT;
  if (x < 0 || y < 0) return null;
  const i = v.r0 + Math.floor((y + wrap.scrollTop) / S.s), j = v.c0 + Math.floor((x + wrap.scrollLeft) / S.s);
  return i < v.r1 && j < v.c1 ? {i, j} : null;
}
wrap.addEventListener("scroll", () => requestAnimationFrame(draw));
wrap.addEventListener("mousemove", (ev) => {
  const p = where(ev);
  $("hover").textContent = p ? "C[" + p.i + ", " + p.j + "] = " + fmt(entry(p.i, p.j)) + "   row " + p.i +
    ": output y" + S.outI.label(p.i) + "   column " + p.j + ": input x" + S.inI.label(p.j) : "";
});
wrap.addEventListener("click", (ev) => { const p = where(ev); if (p) pick(ev.shiftKey ? "input" : "output", ev.shiftKey ? p.j : p.i, true); });
// ---------------------------------------------------------------- zoom, legend, controls
function setZoom(z, ev) {
  z = Math.max(0.25, Math.min(64, z));
  const r = wrap.getBoundingClientRect(), old = S.s;
  const ax = ev ? ev.clientX - r.left - S.ML : (S.cw - S.ML) / 2, ay = ev ? ev.clientY - r.top - S.MT : (S.ch - S.MT) / 2;
  const mx = (wrap.scrollLeft + ax) / old, my = (wrap.scrollTop + ay) / old;
  S.zoom = z; layoutC();
  wrap.scrollLeft = mx * S.s - ax; wrap.scrollTop = my * S.s - ay; draw();
}
$("zoomin").onclick = () => setZoom(S.zoom * 1.25);
$("zoomout").onclick = () => setZoom(S.zoom / 1.25);
$("fit").onclick = () => setZoom(1);
window.addEventListener("wheel", (ev) => {
  if (!ev.ctrlKey) return;
  ev.preventDefault();
  setZoom(S.zoom * (ev.deltaY < 0 ? 1.25 : 0.8), wrap.contains(ev.target) ? ev : null);
}, {passive: false});
window.addEventListener("resize", () => layoutC());
function legend() {
  const stops = [];
  for (let k = 0; k <= 20; k++) stops.push(colour(S.vmax * (k / 10 - 1)) + " " + k * 5 + "%");
  $("legend").innerHTML = "";
  const add = (html) => { const e = document.createElement("span"); e.innerHTML = html; $("legend").appendChild(e); return e; };
  const bar = add("C[i, j]: " + fmt(-S.vmax) + '<span class="bar"></span>' + fmt(S.vmax) + " (0: white)");
  bar.querySelector(".bar").style.background = "linear-gradient(to right, " + stops.join(", ") + ")";
  add('<span class="sw" style="background:#222"></span>selected pixel');
  add('<span class="sw" style="box-shadow: inset 0 0 0 3px #ff8c00"></span>lit: its row / column of C');
  add('<span class="sw" style="background:rgba(255,140,0,.28)"></span>that row / column in C');
  add('<span class="sw" style="border: 0; border-top: 3px solid #222; height: 3px"></span>channel boundary');
}
function fill(id, items, value, enabled) {
  const el = $(id);
  el.innerHTML = "";
  for (const [val, text] of items) el.add(new Option(text, val));
  el.value = value; el.disabled = !enabled;
  el.parentElement.classList.toggle("off", !enabled);
}
const same = (a) => a.every((x) => x === a[0]);
const tupleText = (a) => same(a) ? String(a[0]) : "(" + a.join(", ") + ")";
function choices(current, from, to, make, text) {  // from..to on every axis, and the layer's own
  const out = [], key = JSON.stringify(current);
  for (let k = from; k <= to; k++) out.push([JSON.stringify(make(k)), String(k)]);
  if (!out.some((o) => o[0] === key)) out.push([key, text(current)]);
  return out;
}
function controls() {
  const G = S.conv;
  if (G) {
    const g = S.geo, P = g.lo.map((p, a) => [p, g.hi[a]]);
    fill("stride", choices(g.stride, 1, Math.max(4, ...G.stride), (k) => g.stride.map(() => k), tupleText),
         JSON.stringify(g.stride), true);
    fill("padding", choices(P, 0, Math.max(4, ...G.kernel.map((k) => 2 * (k - 1)), ...G.pad_lo, ...G.pad_hi),
         (k) => P.map(() => [k, k]), (q) => "(" + q.map(([l, h]) => l === h ? l : l + "|" + h).join(", ") + ")"),
         JSON.stringify(P), true);
    fill("dilation", choices(g.dil, 1, Math.max(3, ...G.dilation), (k) => g.dil.map(() => k), tupleText),
         JSON.stringify(g.dil), true);
    fill("mode", MODES.map((m) => [m, m]), g.mode, true);
  } else for (const id of ["stride", "padding", "dilation", "mode"]) fill(id, [["", "-"]], "", false);
  for (const [id, I, c] of [["cin", S.inI, S.cin], ["cout", S.outI, S.cout]])
    fill(id, [["-1", "all"]].concat(Array.from({length: I.vec ? 0 : I.C}, (_, k) => [String(k), String(k)])),
         String(c), !I.vec && I.C > 1);
}
function describe() {
  const M = S.M, g = S.geo;
  let text = "C is " + M.m + " x " + M.n + " with " + M.indices.length + " nonzeros; input " + shapeText(M.in_shape) +
    " -> output " + shapeText(M.out_shape);
  if (g) text += "; stride " + tupleText(g.stride) + ", padding " + $("padding").selectedOptions[0].text +
    ", dilation " + tupleText(g.dil) + ", padding mode " + g.mode + (S.L.conv.groups > 1 ? ", groups " + S.L.conv.groups : "");
  $("setting").textContent = text;
  $("inshape").textContent = shapeText(M.in_shape); $("outshape").textContent = shapeText(M.out_shape);
}
function setMatrix(M, keep) {
  S.M = withColumns(M); S.inI = info(M.in_shape); S.outI = info(M.out_shape);
  S.vmax = 0;
  for (const v of M.data) S.vmax = Math.max(S.vmax, Math.abs(v));
  if (S.cout >= S.outI.C) S.cout = -1;
  if (S.cin >= S.inI.C) S.cin = -1;
  const sel = keep && S.sel && S.sel.role === "input" ? S.sel : null;
  S.sel = null; S.lit = [];
  controls(); grids("input"); grids("output"); legend(); layoutC(); describe();
  $("info").textContent = "";
  if (sel) pick("input", sel.idx);
}
function setLayer(k) {
  const L = D.layers[k];
  S.L = L; S.conv = L.conv; S.cin = S.cout = -1; S.zoom = 1; S.sel = null;
  S.geo = L.conv ? {stride: L.conv.stride, lo: L.conv.pad_lo, hi: L.conv.pad_hi, dil: L.conv.dilation, mode: L.conv.mode} : null;
  $("layertitle").textContent = D.layers.length > 1 ? L.title : ""; $("layer").value = String(k);
  wrap.scrollLeft = wrap.scrollTop = 0;
  setMatrix({m: L.m, n: L.n, in_shape: L.in_shape, out_shape: L.out_shape, indptr: L.indptr, indices: L.indices, data: L.data});
}
function setGeometry() {  // a control changed: the convolution's matrix, recomputed here
  const old = S.geo, pads = JSON.parse($("padding").value);
  const g = {stride: JSON.parse($("stride").value), lo: pads.map((p) => p[0]), hi: pads.map((p) => p[1]),
             dil: JSON.parse($("dilation").value), mode: $("mode").value};
  try {
    const M = convMatrix(S.conv, g.stride, g.lo, g.hi, g.dil, g.mode);
    S.geo = g; $("status").textContent = "";
    setMatrix(M, true);
  } catch (err) {
    $("status").textContent = "not a valid layer: " + err.message + "; kept the previous setting.";
    S.geo = old; controls();
  }
}
function setChannel(role, c) {
  if (role === "input") S.cin = c; else S.cout = c;
  const sel = S.sel;
  clearLit(); S.sel = null; $(role === "input" ? "cin" : "cout").value = String(c);
  grids(role); layoutC();
  if (sel && S.cells[sel.role][sel.idx]) pick(sel.role, sel.idx);
}
for (const id of ["stride", "padding", "dilation", "mode"]) $(id).addEventListener("change", setGeometry);
$("cin").addEventListener("change", () => setChannel("input", +$("cin").value));
$("cout").addEventListener("change", () => setChannel("output", +$("cout").value));
$("layer").addEventListener("change", () => setLayer(+$("layer").value));
for (const role of ["input", "output"])
  $(role).addEventListener("click", (ev) => {
    const e = ev.target.closest(".cell");
    if (e) pick(e.dataset.role, +e.dataset.index);
  });
const MOVES = {ArrowLeft: [0, 0, -1], ArrowRight: [0, 0, 1], ArrowUp: [0, -1, 0], ArrowDown: [0, 1, 0],
               PageUp: [-1, 0, 0], PageDown: [1, 0, 0]};
document.addEventListener("keydown", (ev) => {
  if (["SELECT", "INPUT", "TEXTAREA", "BUTTON"].includes(ev.target.tagName) || ev.altKey || ev.metaKey) return;
  if (ev.ctrlKey) return;
  if (ev.key === "+" || ev.key === "=") { setZoom(S.zoom * 1.25); ev.preventDefault(); return; }
  if (ev.key === "-" || ev.key === "_") { setZoom(S.zoom / 1.25); ev.preventDefault(); return; }
  if (ev.key === "0") { setZoom(1); ev.preventDefault(); return; }
  const mv = MOVES[ev.key];
  if (!mv) return;
  ev.preventDefault();
  if (!S.sel) { pick("output", 0, true); return; }
  const I = S.sel.role === "input" ? S.inI : S.outI, p = I.pos(S.sel.idx);
  const k = I.at(p.c + mv[0], p.r + mv[1], p.q + mv[2]);
  if (k >= 0) pick(S.sel.role, k, true);
});
D.layers.forEach((L, k) => {
  const o = new Option(L.refused ? L.name + ": " + L.refused : L.title, String(k));
  o.disabled = !!L.refused; $("layer").add(o);
});
$("layerbox").style.display = D.layers.length > 1 ? "" : "none";
$("refused").textContent = D.layers.filter((L) => L.refused).map((L) => "not shown: " + L.name + ": " + L.refused).join("; ");
window.explorer = {S, pick, setZoom, setLayer, convMatrix,
  matrix: () => ({m: S.M.m, n: S.M.n, in_shape: S.M.in_shape, out_shape: S.M.out_shape,
                  indptr: Array.from(S.M.indptr), indices: Array.from(S.M.indices), data: Array.from(S.M.data)})};
setLayer(D.first);
"""
