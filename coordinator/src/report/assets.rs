//! The page's inline style and scripts (vanilla, no external resource: it opens from
//! `file://` with no network).

/// The style sheet.
pub const CSS: &str = r##"
:root { --fg: #1d232b; --muted: #5c6773; --line: #d7dde3; --accent: #2f5d8a; --bg2: #f4f6f8; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: #fff; }
header { background: #1f3b57; color: #fff; padding: 18px 28px 14px; }
header h1 { margin: 0 0 10px; font-size: 22px; font-weight: 600; }
header .sub { color: #c9d7e6; }
dl.meta { display: grid; grid-template-columns: repeat(auto-fill, minmax(270px, 1fr)); gap: 6px 22px; margin: 0; }
dl.meta div { display: flex; gap: 8px; }
dl.meta dt { color: #a9c0d8; min-width: 110px; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line); padding: 8px 28px; z-index: 2; }
nav a { margin-right: 16px; color: var(--accent); text-decoration: none; }
main { padding: 4px 28px 40px; }
section { margin-top: 26px; }
h2 { font-size: 18px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
.note { color: var(--muted); max-width: 980px; }
.warn { color: #8a4b00; }
.controls { display: flex; flex-wrap: wrap; gap: 18px; align-items: center; margin: 8px 0; }
.legend { display: inline-flex; gap: 6px; align-items: center; color: var(--muted); font-size: 12px; }
.heatmap-wrap { position: relative; overflow: auto; max-height: 92vh; border: 1px solid var(--line); display: inline-block; max-width: 100%; }
#phi-canvas { display: block; cursor: crosshair; }
.tip { position: absolute; pointer-events: none; background: rgba(20,28,36,.92); color: #fff; padding: 4px 8px; border-radius: 4px; font-size: 12px; white-space: nowrap; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: left; vertical-align: top; }
th { background: var(--bg2); position: sticky; top: 37px; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " ↕"; color: #9aa5b1; font-size: 11px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.unexplained td { background: #fff4e0; }
.tree, .tree ul { list-style: none; margin: 0; padding-left: 20px; }
.tree { padding-left: 0; }
.tree li { margin: 3px 0; }
.tree summary { cursor: pointer; }
.tree .name { font-weight: 600; }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; background: var(--bg2); color: var(--muted); margin-left: 4px; }
.f1 { display: inline-block; font-size: 12px; padding: 0 6px; border-radius: 8px; color: #fff; margin-left: 4px; }
.chips { margin: 2px 0 4px 14px; }
.chip { display: inline-block; font-size: 12px; font-variant-numeric: tabular-nums; padding: 0 6px; margin: 1px 2px; border-radius: 4px; border: 1px solid var(--line); }
.chip.pos { background: #fbe3e0; } .chip.neg { background: #e1ecf7; }
.ref { color: var(--muted); font-style: italic; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.gallery figure { margin: 0; width: 180px; }
.gallery img { width: 180px; height: auto; border: 1px solid var(--line); }
.gallery figcaption { font-size: 12px; color: var(--muted); word-break: break-all; }
.galleries { display: flex; flex-wrap: wrap; gap: 4px 36px; }
.concept-gallery h3 { font-size: 14px; margin: 14px 0 6px; }
pre { background: var(--bg2); padding: 10px; overflow: auto; font-size: 12px; }
#script-errors { background: #fde2e1; color: #7a1010; border: 1px solid #e9a5a3; padding: 8px 28px; }
.charts { display: flex; flex-wrap: wrap; gap: 10px 18px; }
svg.chart { font-size: 11px; background: #fff; }
svg.chart .chart-title { font-size: 12px; font-weight: 600; fill: var(--fg); }
svg.chart .tick { fill: var(--muted); }
svg.chart .axis { fill: var(--fg); }
svg.chart .grid { stroke: #e6eaee; }
svg.chart .zero { stroke: #8c96a0; stroke-dasharray: 3 3; }
svg.chart .frame { fill: none; stroke: var(--line); }
.band { opacity: .22; }
.chart-legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 4px 0 6px; font-size: 12px; }
.chart-legend .legend svg { margin-right: 4px; vertical-align: middle; }
p.summary { font-weight: 600; max-width: 980px; }
td.verdict.better { background: #e0f2e4; color: #1b5e2a; }
td.verdict.noise { color: var(--muted); }
td.verdict.worse { background: #fbe3e0; color: #8a1c1c; }
button { font: inherit; font-size: 12px; padding: 2px 10px; }
"##;

/// Installed first: any later script error is shown on the page and counted in
/// `body[data-script-errors]` (the report test reads both).
pub const ERROR_HANDLER: &str = r##"
window.onerror = function (message, source, line, column) {
  var n = Number(document.body.dataset.scriptErrors || 0) + 1;
  document.body.dataset.scriptErrors = String(n);
  var box = document.getElementById("script-errors");
  box.hidden = false;
  var item = document.createElement("li");
  item.textContent = message + " (line " + line + ", column " + column + ")";
  box.querySelector("ul").appendChild(item);
};
"##;

/// The heatmap, sortable tables and the tree buttons; sets `body[data-ready="yes"]` last, so
/// a page whose script stopped half-way is never "ready".
pub const SCRIPT: &str = r##"
"use strict";
(function () {
  function colour(v, scale) {
    if (v === null) return "rgb(205,205,205)";
    var t = Math.max(-1, Math.min(1, v / scale));
    // White to red (178,24,43) for positive φ, white to blue (33,102,172) for negative.
    var to = t >= 0 ? [178, 24, 43] : [33, 102, 172];
    t = Math.abs(t);
    return "rgb(" + to.map(function (c) { return Math.round(255 + t * (c - 255)); }).join(",") + ")";
  }

  function fmt(v) {
    if (v === null) return "—";
    var a = Math.abs(v);
    return a !== 0 && (a < 0.01 || a >= 1e4) ? v.toExponential(2) : v.toPrecision(3);
  }

  function heatmap(d) {
    var canvas = document.getElementById("phi-canvas");
    var tip = document.getElementById("phi-tip");
    var select = document.getElementById("phi-sort");
    var nc = d.concepts.length, nr = d.neurons.length;
    var cw = Math.max(3, Math.min(28, Math.floor(1100 / nc)));
    var ch = Math.max(3, Math.min(14, Math.floor(900 / nr)));
    var columnLabels = cw >= 9, rowLabels = ch >= 9;
    var left = rowLabels ? 48 : 8, top = columnLabels ? 120 : 8;
    var variance = d.phi.map(function (row) {
      var xs = row.filter(function (v) { return v !== null; });
      if (!xs.length) return -Infinity;
      var m = xs.reduce(function (a, b) { return a + b; }, 0) / xs.length;
      return xs.reduce(function (a, b) { return a + (b - m) * (b - m); }, 0) / xs.length;
    });
    var order = d.neurons.map(function (_, i) { return i; });
    var sortedBy = -1;
    // Room on the right for the last rotated column labels.
    canvas.width = left + nc * cw + (columnLabels ? 110 : 4);
    canvas.height = top + nr * ch + 4;
    var ctx = canvas.getContext("2d");

    function draw() {
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.font = "11px sans-serif";
      ctx.fillStyle = "#1d232b";
      if (columnLabels) {
        for (var j = 0; j < nc; j++) {
          var name = d.concepts[j].name;
          ctx.save();
          ctx.translate(left + j * cw + cw / 2 + 3, top - 5);
          ctx.rotate(-Math.PI / 3);
          ctx.fillText(name.length > 20 ? name.slice(0, 19) + "…" : name, 0, 0);
          ctx.restore();
        }
      }
      for (var i = 0; i < nr; i++) {
        var r = order[i];
        if (rowLabels) {
          ctx.fillStyle = "#5c6773";
          ctx.textAlign = "right";
          ctx.fillText(String(d.neurons[r]), left - 5, top + i * ch + ch - 2);
          ctx.textAlign = "left";
        }
        for (var k = 0; k < nc; k++) {
          ctx.fillStyle = colour(d.phi[r][k], d.scale);
          ctx.fillRect(left + k * cw, top + i * ch, cw, ch);
        }
      }
      if (sortedBy >= 0) {
        ctx.strokeStyle = "#000";
        ctx.lineWidth = 2;
        ctx.strokeRect(left + sortedBy * cw + 1, top + 1, cw - 2, nr * ch - 2);
      }
    }

    function sort(how) {
      order = d.neurons.map(function (_, i) { return i; });
      sortedBy = -1;
      if (how === "variance") {
        order.sort(function (a, b) { return variance[b] - variance[a] || a - b; });
      } else if (how !== "index") {
        var c = Number(how);
        sortedBy = c;
        order.sort(function (a, b) {
          var x = d.phi[a][c], y = d.phi[b][c];
          if (x === null || y === null) return (x === null) - (y === null) || a - b;
          return y - x || a - b;
        });
      }
      draw();
    }

    function cell(event) {
      var box = canvas.getBoundingClientRect();
      var x = event.clientX - box.left, y = event.clientY - box.top;
      var j = Math.floor((x - left) / cw), i = Math.floor((y - top) / ch);
      if (x < left || y < top || j >= nc || i >= nr) return null;
      return { row: order[i], column: j, x: x, y: y };
    }

    canvas.addEventListener("mousemove", function (event) {
      var at = cell(event);
      if (!at) { tip.hidden = true; return; }
      var c = d.concepts[at.column];
      tip.textContent = "neuron " + d.neurons[at.row] + " · " + c.name + " (level " + c.level +
        "): φ = " + fmt(d.phi[at.row][at.column]) + " ± " + fmt(d.stderr[at.row][at.column]);
      tip.style.left = (at.x + canvas.offsetLeft + 14) + "px";
      tip.style.top = (at.y + canvas.offsetTop + 10) + "px";
      tip.hidden = false;
    });
    canvas.addEventListener("mouseleave", function () { tip.hidden = true; });
    canvas.addEventListener("click", function (event) {
      var at = cell(event);
      if (at) { select.value = String(at.column); sort(select.value); }
    });
    select.addEventListener("change", function () { sort(select.value); });

    var legend = document.getElementById("phi-legend").getContext("2d");
    for (var x = 0; x < 160; x++) {
      legend.fillStyle = colour((x / 159 * 2 - 1) * d.scale, d.scale);
      legend.fillRect(x, 0, 1, 12);
    }
    draw();
  }

  function sortableTables() {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
      var body = table.tBodies[0];
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
        var descending = true; // the first click sorts ascending
        th.addEventListener("click", function () {
          descending = !descending;
          var rows = Array.prototype.slice.call(body.rows);
          rows.sort(function (a, b) {
            var x = a.cells[column], y = b.cells[column];
            var u = x.dataset.v, v = y.dataset.v, cmp;
            if (u !== undefined && v !== undefined) {
              var p = u === "" ? -Infinity : Number(u), q = v === "" ? -Infinity : Number(v);
              cmp = p < q ? -1 : p > q ? 1 : 0;
            } else {
              cmp = x.textContent.localeCompare(y.textContent);
            }
            return descending ? -cmp : cmp;
          });
          rows.forEach(function (row) { body.appendChild(row); });
        });
      });
    });
  }

  function treeButtons() {
    Array.prototype.forEach.call(document.querySelectorAll("button[data-tree]"), function (button) {
      button.addEventListener("click", function () {
        var open = button.dataset.tree === "open";
        Array.prototype.forEach.call(document.querySelectorAll(".tree details"), function (d) {
          d.open = open;
        });
      });
    });
  }

  var data = document.getElementById("phi-data");
  if (data) heatmap(JSON.parse(data.textContent));
  sortableTables();
  treeButtons();
  document.body.dataset.ready = "yes";
})();
"##;
