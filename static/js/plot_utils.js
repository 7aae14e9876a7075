// Shared by the run charts (charts.js) and the compare/study overlays (compare.js).
(function () {
  "use strict";

  const FONT = { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 11, color: "#495057" };

  // W&B-style debiased exponential moving average (alpha = weight of the past; 0 = raw).
  function ema(values, alpha) {
    if (!alpha || !values) return values;
    const out = new Array(values.length);
    let last = 0;
    let weight = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v === null || !isFinite(v)) { out[i] = null; continue; }
      last = last * alpha + (1 - alpha) * v;
      weight = weight * alpha + (1 - alpha);
      out[i] = last / weight;
    }
    return out;
  }

  function rgba(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  // Steps are whole numbers, so an axis of steps never gets a tick at 1.5. Plotly's automatic ticks
  // are 1, 2 or 5 × 10^n apart, i.e. fractional only on a short span: there the axis switches to one
  // tick per step, and back to automatic ticks once a zoom out makes the span long again.
  function integerSteps(el) {
    if (el.pslIntegerSteps) return;
    el.pslIntegerSteps = true;
    el.on("plotly_afterplot", function () {
      const ax = el._fullLayout && el._fullLayout.xaxis;
      if (!ax || !Array.isArray(ax.range)) return;
      const span = Math.abs(Number(ax.range[1]) - Number(ax.range[0]));
      const unit = ax.tickmode === "linear" && ax.dtick === 1;
      if (!unit && typeof ax.dtick === "number" && ax.dtick < 1) {
        window.Plotly.relayout(el, { "xaxis.tickmode": "linear", "xaxis.tick0": 0, "xaxis.dtick": 1 });
      } else if (unit && span > 30) {
        window.Plotly.relayout(el, { "xaxis.tickmode": "auto" });
      }
    });
  }

  // Lines with the same points would hide one another: each later copy of a line is drawn dashed
  // (then dotted, ...) over the first and its name says which line it coincides with.
  const DASHES = ["dash", "dot", "dashdot", "longdash"];

  function markCoinciding(traces) {
    const seen = {};
    let copies = 0;
    traces.forEach(function (t) {
      if (!t.name || t.showlegend === false) return;
      const key = JSON.stringify([t.x, (t.y || []).map(function (v) { return v === null ? null : Number(v).toPrecision(6); })]);
      if (seen[key] === undefined) { seen[key] = t; return; }
      t.line = Object.assign({}, t.line, { dash: DASHES[copies % DASHES.length], width: 2.6 });
      t.coincidesWith = seen[key].name;
      copies += 1;
    });
    return copies;
  }

  window.PSLPlot = { FONT: FONT, ema: ema, rgba: rgba, integerSteps: integerSteps, markCoinciding: markCoinciding };
})();
