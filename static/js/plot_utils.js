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

  window.PSLPlot = { FONT: FONT, ema: ema, rgba: rgba };
})();
