// Study page: a plotly parallel-coordinates chart of the study's factors against one outcome (a
// metric's final value per counted run). The data comes from data-parcoords-url; the outcome picker
// refetches it and keeps the choice in the page's URL (?outcome=), so the view is a permalink.
(function () {
  "use strict";

  const FONT = window.PSLPlot ? window.PSLPlot.FONT : { size: 11 };
  const SCALE = [[0, "#e03131"], [0.5, "#f59f00"], [1, "#2f9e44"]];

  function message(el, text) {
    el.replaceChildren();
    const div = document.createElement("div");
    div.className = "empty subtle";
    div.textContent = text;
    el.appendChild(div);
  }

  function fillPicker(select, outcomes, chosen) {
    select.replaceChildren();
    outcomes.forEach(function (key) {
      const option = document.createElement("option");
      option.value = key;
      option.textContent = key;
      option.selected = key === chosen;
      select.appendChild(option);
    });
    select.disabled = !outcomes.length;
  }

  function colourAt(t) {  // t in [0, 1] along SCALE (red, amber, green)
    const stops = SCALE.map(function (s) { return [s[0], parseInt(s[1].slice(1), 16)]; });
    let i = 0;
    while (i < stops.length - 2 && t > stops[i + 1][0]) i++;
    const [t0, c0] = stops[i], [t1, c1] = stops[i + 1];
    const f = t1 > t0 ? Math.min(1, Math.max(0, (t - t0) / (t1 - t0))) : 0;
    const mix = function (shift) { return Math.round(((c0 >> shift) & 255) * (1 - f) + ((c1 >> shift) & 255) * f); };
    return "rgb(" + mix(16) + "," + mix(8) + "," + mix(0) + ")";
  }

  // A dimension's value as a person reads it: a category's name, a log axis's value (its position
  // is log10 of it), or the number itself.
  function shown(d, i) {
    if (d.raw) {  // as the axis's tick labels read: 1e-5, 2.5e-5, 0.05
      const v = Number(d.raw[i].toPrecision(4));
      return Math.abs(v) < 1e-3 || Math.abs(v) >= 1e4 ? v.toExponential() : String(v);
    }
    return d.ticktext ? d.ticktext[d.values[i]] : d.values[i];
  }

  // One SVG line per run across the axes, each axis scaled to its own range, coloured by the outcome.
  // Not plotly's parcoords trace: it draws through regl, which compiles its WebGL commands with
  // Function(), and the Content-Security-Policy allows no eval (script-src 'self'), so it cannot draw here.
  function drawSvg(el, data, lowerIsBetter) {
    const dims = data.dimensions;
    const scaled = dims.map(function (d) {
      const lo = d.range ? d.range[0] : Math.min.apply(null, d.values);
      const hi = d.range ? d.range[1] : Math.max.apply(null, d.values);
      return { lo: lo, hi: hi, at: function (v) { return hi > lo ? (v - lo) / (hi - lo) : 0.5; } };
    });
    const out = scaled[scaled.length - 1];
    const traces = data.runs.map(function (name, i) {
      const score = out.at(dims[dims.length - 1].values[i]);
      return {
        type: "scatter", mode: "lines+markers", name: name, showlegend: false,
        x: dims.map(function (_, j) { return j; }), y: dims.map(function (d, j) { return scaled[j].at(d.values[i]); }),
        text: dims.map(function (d) { return d.label + " = " + shown(d, i); }),
        hovertemplate: "%{text}<extra></extra>",
        line: { color: colourAt(lowerIsBetter ? 1 - score : score), width: 2 }, marker: { size: 6 },
      };
    });
    const annotations = [], shapes = [];
    dims.forEach(function (d, j) {
      if (d.scale === "log") {  // the ticks of a log10 axis, labelled at their values, left of the axis
        d.tickvals.forEach(function (v, k) {
          const y = scaled[j].at(v);
          annotations.push({ x: j, y: y, text: d.ticktext[k], showarrow: false, xanchor: "right", xshift: -8,
                             font: { size: 10 }, name: "log-tick" });
          shapes.push({ type: "line", x0: j - 0.012, x1: j, y0: y, y1: y, line: { color: "#868e96", width: 1 } });
        });
        return;
      }
      const label = function (v) { return d.ticktext ? d.ticktext[v] : String(Number(v.toPrecision(4))); };
      annotations.push({ x: j, y: 1.04, text: label(scaled[j].hi), showarrow: false, font: { size: 10 } });
      if (scaled[j].hi > scaled[j].lo) {
        annotations.push({ x: j, y: -0.06, text: label(scaled[j].lo), showarrow: false, font: { size: 10 } });
      }
    });
    el.replaceChildren();
    Plotly.newPlot(el, traces, {
      font: FONT, margin: { l: 40, r: 40, t: 20, b: 40 }, hovermode: "closest", annotations: annotations, shapes: shapes,
      xaxis: { tickvals: dims.map(function (_, j) { return j; }), ticktext: dims.map(function (d) { return d.label; }),
               showgrid: true, gridcolor: "#adb5bd", zeroline: false, range: [-0.3, dims.length - 0.7] },
      yaxis: { visible: false, range: [-0.12, 1.1] },
    }, { displaylogo: false, responsive: true });
  }

  function draw(el, data, lowerIsBetter) {
    if (typeof Plotly === "undefined") { message(el, "Charts need plotly (static/vendor/plotly)."); return; }
    if (!data.n) { message(el, "No counted run has logged " + (data.outcome || "a metric") + " yet."); return; }
    drawSvg(el, data, lowerIsBetter);
  }

  function load(el, select, outcome) {
    const url = new URL(el.dataset.parcoordsUrl, window.location.href);
    if (outcome) url.searchParams.set("outcome", outcome);
    el.classList.add("is-loading");
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) {
        el.classList.remove("is-loading");
        fillPicker(select, data.outcomes, data.outcome);
        draw(el, data, data.direction < 0);
        el.dataset.outcome = data.outcome;
        document.getElementById("parcoords-n").textContent =
          data.n + " run" + (data.n === 1 ? "" : "s") + " counted";
      })
      .catch(function () { el.classList.remove("is-loading"); message(el, "Could not load the chart."); });
  }

  function init() {
    const el = document.getElementById("study-parcoords");
    const select = document.getElementById("parcoords-outcome");
    if (!el || !select) return;
    const initial = new URL(window.location.href).searchParams.get("outcome") || "";
    load(el, select, initial);
    select.addEventListener("change", function () {
      const url = new URL(window.location.href);
      url.searchParams.set("outcome", select.value);
      window.history.replaceState(null, "", url);
      load(el, select, select.value);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
