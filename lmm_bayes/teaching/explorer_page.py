"""The partial-pooling explorer's page: its HTML, CSS and JavaScript, inline, with no server and no CDN.

:func:`page_html` fills the template with the explorer's settings, the per-cluster data of a fit
(or none) and the JavaScript function generated from the formulas of
:mod:`lmm_bayes.teaching.explorer`; the page computes nothing else of its own.
"""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["page_html"]

_CSS = """
.lbx { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; max-width: 860px; }
.lbx h2 { font-size: 1.3em; margin: .2em 0 .4em; } .lbx h3 { font-size: 1.1em; margin: 1.2em 0 .3em; }
.lbx .controls { display: grid; grid-template-columns: 15em 1fr 6em; gap: .35em .8em; align-items: center; }
.lbx input[type=range] { width: 100%; } .lbx output { font-variant-numeric: tabular-nums; text-align: right; }
.lbx table { border-collapse: collapse; margin: .6em 0; } .lbx td, .lbx th { padding: .15em .7em; text-align: right; }
.lbx td:first-child, .lbx th:first-child { text-align: left; } .lbx tr { border-bottom: 1px solid #eee; }
.lbx .num { font-variant-numeric: tabular-nums; } .lbx .note { color: #555; font-size: .92em; }
.lbx svg { display: block; width: 100%; height: auto; touch-action: none; }
.lbx .own { fill: #d95f02; stroke: #d95f02; } .lbx .partial { fill: #1b6fb3; stroke: #1b6fb3; }
.lbx .pop { stroke: #555; } .lbx .complete { stroke: #999; stroke-dasharray: 4 3; }
.lbx .cluster:hover, .lbx .cluster.chosen { opacity: 1; } .lbx .cluster { opacity: .75; cursor: pointer; }
.lbx #lbx-hover { min-height: 1.5em; font-variant-numeric: tabular-nums; }
"""

_BODY = """
<div class="lbx">
<h2>__TITLE__</h2>
<p>__LEAD__</p>
<div class="controls" id="lbx-controls"></div>
<svg id="lbx-line" viewBox="0 0 800 120" role="img" aria-label="the three estimates on one axis"></svg>
<table><thead><tr><th></th><th>estimate</th><th>__PROB__% interval width</th></tr></thead>
<tbody id="lbx-numbers"></tbody></table>
<p class="note">__NOTE__</p>
<div id="lbx-clusters" hidden>
<h3>Every cluster of __GROUP__: from its own estimate (open) to the model's (filled)</h3>
<p class="note">Hover over a cluster for its numbers; click it to load it into the sliders above.
Solid line: the population value; dashed: complete pooling (ordinary least squares on all rows).</p>
<div id="lbx-hover">&nbsp;</div>
<svg id="lbx-chart" viewBox="0 0 800 100" role="img" aria-label="every cluster's shrinkage arrow"></svg>
</div>
</div>
"""

_SCRIPT = r"""
"use strict";
const CONFIG = __CONFIG__;
const CLUSTERS = __CLUSTERS__;
__COMPUTE__
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
// estimates to 4 significant digits, B_j and the ICC to 3 decimals (the test reads them so)
const fmt = (x) => Number(x.toPrecision(4)).toString();
const fmt3 = (x) => x.toFixed(3);
const state = {};
for (const s of CONFIG.sliders) {
  const label = document.createElement("label"); label.htmlFor = "lbx-in-" + s.key; label.textContent = s.label;
  const input = document.createElement("input");
  Object.assign(input, {type: "range", id: "lbx-in-" + s.key, min: s.min, max: s.max, step: s.step, value: s.value});
  const out = document.createElement("output"); out.id = "lbx-val-" + s.key;
  input.addEventListener("input", update);
  $("lbx-controls").append(label, input, out);
}
const ROWS = [
  ["no_pooling", "No pooling: the cluster's own estimate", "width_no_pooling"],
  ["complete_pooling", "Complete pooling: the population mean \u03bc", null],
  ["partial_pooling", "Partial pooling: the model's estimate", "width_partial_pooling"],
  ["B", "B_j: the weight on the population mean", null],
  ["icc", "ICC = \u03c4\u00b2 / (\u03c4\u00b2 + \u03c3\u00b2)", null],
];
for (const [key, label, width] of ROWS) {
  const tr = document.createElement("tr");
  const a = document.createElement("td"); a.textContent = label;
  const b = document.createElement("td"); b.className = "num"; b.id = "lbx-out-" + key;
  const c = document.createElement("td"); c.className = "num"; c.id = width ? "lbx-out-" + width : "";
  c.textContent = key === "complete_pooling" ? "\u03bc taken as known" : "";
  tr.append(a, b, c); $("lbx-numbers").append(tr);
}
function read() {
  for (const s of CONFIG.sliders) {
    state[s.key] = Number($("lbx-in-" + s.key).value);
    $("lbx-val-" + s.key).textContent = s.key === "n" ? String(state.n) : fmt(state[s.key]);
  }
  return compute(state.n, state.tau, state.sigma, state.ybar, state.mu);
}
function xscale(lo, hi, left, right) { return (v) => left + (right - left) * (v - lo) / (hi - lo); }
function drawLine(v) {
  const svg = $("lbx-line"); svg.replaceChildren();
  const yb = CONFIG.sliders.find((s) => s.key === "ybar");
  const x = xscale(yb.min, yb.max, 40, 760);
  el("line", {x1: 40, x2: 760, y1: 100, y2: 100, stroke: "#bbb"}, svg);
  for (const t of [yb.min, (yb.min + yb.max) / 2, yb.max]) {
    el("text", {x: x(t), y: 116, "text-anchor": "middle", "font-size": 11, fill: "#666"}, svg).textContent = fmt(t);
  }
  el("line", {x1: x(v.complete_pooling), x2: x(v.complete_pooling), y1: 10, y2: 100, class: "pop"}, svg);
  el("text", {x: x(v.complete_pooling) + 4, y: 20, "font-size": 11}, svg).textContent = "\u03bc (complete pooling)";
  const bar = (mid, width, y, cls) => el("line", {x1: x(mid - width / 2), x2: x(mid + width / 2), y1: y, y2: y,
    class: cls, "stroke-width": 3}, svg);
  bar(v.no_pooling, v.width_no_pooling, 50, "own");
  bar(v.partial_pooling, v.width_partial_pooling, 78, "partial");
  el("circle", {cx: x(v.no_pooling), cy: 50, r: 7, class: "own", id: "lbx-handle", style: "cursor: grab"}, svg);
  el("circle", {cx: x(v.partial_pooling), cy: 78, r: 6, class: "partial"}, svg);
  el("text", {x: 44, y: 44, "font-size": 11, class: "own"}, svg).textContent = "own estimate (drag me)";
  el("text", {x: 44, y: 72, "font-size": 11, class: "partial"}, svg).textContent = "partial pooling";
  return x;
}
let scale = null;
function update() {
  const v = read();
  for (const [key, , width] of ROWS) {
    $("lbx-out-" + key).textContent = (key === "B" || key === "icc") ? fmt3(v[key]) : fmt(v[key]);
    $("lbx-out-" + key).dataset.value = v[key];
    if (width) { $("lbx-out-" + width).textContent = fmt(v[width]); $("lbx-out-" + width).dataset.value = v[width]; }
  }
  scale = drawLine(v);
}
// dragging the cluster's own estimate moves the ybar slider
let dragging = false;
$("lbx-line").addEventListener("pointerdown", (e) => { dragging = true; drag(e); });
window.addEventListener("pointerup", () => { dragging = false; });
$("lbx-line").addEventListener("pointermove", (e) => { if (dragging) drag(e); });
function drag(e) {
  const svg = $("lbx-line"), box = svg.getBoundingClientRect();
  const px = (e.clientX - box.left) * 800 / box.width;
  const yb = CONFIG.sliders.find((s) => s.key === "ybar");
  const value = yb.min + (yb.max - yb.min) * (px - 40) / 720;
  $("lbx-in-ybar").value = Math.min(yb.max, Math.max(yb.min, value));
  update();
}
function choose(c, row) {
  for (const [key, value] of [["n", c.n], ["ybar", c.own]]) $("lbx-in-" + key).value = value;
  document.querySelectorAll(".cluster.chosen").forEach((g) => g.classList.remove("chosen"));
  row.classList.add("chosen");
  update();
}
function drawClusters() {
  if (!CLUSTERS) return;
  $("lbx-clusters").hidden = false;
  const rows = CLUSTERS.rows, h = 16, top = 10, svg = $("lbx-chart");
  svg.setAttribute("viewBox", `0 0 800 ${top + rows.length * h + 30}`);
  const values = rows.flatMap((c) => [c.own, c.partial]).filter(Number.isFinite)
    .concat([CLUSTERS.population, CLUSTERS.complete]);
  const lo = Math.min(...values), hi = Math.max(...values), pad = 0.05 * (hi - lo || 1);
  const x = xscale(lo - pad, hi + pad, 150, 780), bottom = top + rows.length * h;
  el("line", {x1: x(CLUSTERS.population), x2: x(CLUSTERS.population), y1: top, y2: bottom, class: "pop"}, svg);
  el("line", {x1: x(CLUSTERS.complete), x2: x(CLUSTERS.complete), y1: top, y2: bottom, class: "complete"}, svg);
  for (const t of [lo, (lo + hi) / 2, hi]) {
    el("text", {x: x(t), y: bottom + 16, "text-anchor": "middle", "font-size": 11, fill: "#666"}, svg)
      .textContent = fmt(t);
  }
  rows.forEach((c, i) => {
    const y = top + i * h + h / 2;
    const g = el("g", {class: "cluster", "data-level": c.level}, svg);
    el("rect", {x: 0, y: y - h / 2, width: 800, height: h, fill: "transparent"}, g);
    el("text", {x: 140, y: y + 4, "text-anchor": "end", "font-size": 11}, g).textContent = c.level;
    if (Number.isFinite(c.own)) {
      el("line", {x1: x(c.own), x2: x(c.partial), y1: y, y2: y, class: "partial", "stroke-width": 1.5}, g);
      el("circle", {cx: x(c.own), cy: y, r: 4, style: "fill: white", class: "own", "stroke-width": 1.5}, g);
    }
    el("circle", {cx: x(c.partial), cy: y, r: 4, class: "partial"}, g);
    const own = Number.isFinite(c.own) ? fmt(c.own) : "none (" + c.note + ")";
    const text = `${c.level}: n_j = ${c.n}; own estimate ${own}; partial pooling ${fmt(c.partial)}; ` +
      `B_j = ${fmt3(c.B)}`;
    el("title", {}, g).textContent = text;
    g.addEventListener("mouseenter", () => { $("lbx-hover").textContent = text; });
    g.addEventListener("click", () => { if (Number.isFinite(c.own)) choose(c, g); });
  });
}
drawClusters();
update();
document.body.dataset.lbxReady = "yes";
"""


def page_html(*, title: str, lead: str, note: str, group: str, prob: float, config: dict[str, Any],
              clusters: dict[str, Any] | None, compute_js: str) -> str:
    """The whole page, one string: the template filled in (text escaped, data as JSON).

    Examples
    --------
    >>> page = page_html(title="T", lead="<b>", note="", group="g", prob=0.94, config={"sliders": []},
    ...                  clusters=None, compute_js="function compute() { return {}; }")
    >>> "&lt;b&gt;" in page, page.count("<script>")
    (True, 1)
    """
    def data(value: Any) -> str:  # JSON inside a script: "</" could close it
        return json.dumps(value, allow_nan=False).replace("</", "<\\/")

    body = (_BODY.replace("__TITLE__", html.escape(title)).replace("__LEAD__", html.escape(lead))
            .replace("__NOTE__", html.escape(note)).replace("__GROUP__", html.escape(group))
            .replace("__PROB__", f"{100 * prob:g}"))
    script = (_SCRIPT.replace("__CONFIG__", data(config)).replace("__CLUSTERS__", data(clusters))
              .replace("__COMPUTE__", compute_js))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<style>{_CSS}</style></head>\n'
            f"<body>{body}<script>{script}</script></body></html>\n")
