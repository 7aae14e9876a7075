// Metric line charts on plotly: EMA smoothing, live appends that keep the zoom (uirevision),
// and zoom-driven refetches (the page supplies onZoom, which asks the server to re-bucket the
// visible step range at full resolution).
(function () {
  "use strict";

  const FONT = window.PSLPlot.FONT;
  const ema = window.PSLPlot.ema;
  const hexToRgba = window.PSLPlot.rgba;
  let smoothing = 0;
  const charts = [];

  function Chart(el, spec, options) {
    this.el = el;
    this.spec = spec;
    this.options = options || {};
    this.lines = {};  // key -> {steps, values} (overview) and optional detail for the zoomed range
    this.detail = null;  // {lo, hi, lines: {key -> {steps, values}}}
    this.plotted = false;
    this.zoomTimer = null;
    spec.lines.forEach(function (line) { this.lines[line.key] = { steps: [], values: [] }; }, this);
  }

  Chart.prototype.keys = function () {
    return this.spec.lines.map(function (line) { return line.key; });
  };

  Chart.prototype.setSeries = function (key, steps, values) {
    if (this.lines[key]) this.lines[key] = { steps: steps.slice(), values: values.slice() };
  };

  Chart.prototype.lastStep = function () {
    let last = -1;
    Object.values(this.lines).forEach(function (s) {
      if (s.steps.length) last = Math.max(last, s.steps[s.steps.length - 1]);
    });
    return last;
  };

  // New points from polling: only steps after the line's last one are kept (polls overlap a little).
  Chart.prototype.append = function (key, points) {
    const line = this.lines[key];
    if (!line) return false;
    const last = line.steps.length ? line.steps[line.steps.length - 1] : -Infinity;
    let added = false;
    points.forEach(function (p) {
      if (p[0] > last) { line.steps.push(p[0]); line.values.push(p[1]); added = true; }
    });
    return added;
  };

  Chart.prototype.setDetail = function (lo, hi, series) {
    this.detail = { lo: lo, hi: hi, lines: series };
    this.render();
  };

  Chart.prototype.clearDetail = function () {
    if (!this.detail) return;
    this.detail = null;
    this.render();
  };

  // Overview outside the zoomed range, full-resolution detail inside it.
  Chart.prototype.visible = function (key) {
    const line = this.lines[key];
    const d = this.detail && this.detail.lines[key];
    if (!d) return line;
    const lo = this.detail.lo;
    const hi = this.detail.hi;
    const steps = [];
    const values = [];
    for (let i = 0; i < line.steps.length && line.steps[i] < lo; i++) { steps.push(line.steps[i]); values.push(line.values[i]); }
    for (let i = 0; i < d.steps.length; i++) { steps.push(d.steps[i]); values.push(d.values[i]); }
    for (let i = 0; i < line.steps.length; i++) {
      if (line.steps[i] > hi) { steps.push(line.steps[i]); values.push(line.values[i]); }
    }
    return { steps: steps, values: values };
  };

  Chart.prototype.traces = function () {
    const traces = [];
    const stacked = !!this.spec.stacked;
    this.spec.lines.forEach(function (line) {
      // Fresh arrays on every render: Plotly.react compares data arrays by reference, so points
      // appended in place by live polling would not be drawn until a reload.
      const v = this.visible(line.key);
      const s = { steps: v.steps.slice(), values: v.values.slice() };
      const smooth = smoothing > 0 && !stacked;
      if (smooth) {
        traces.push({ x: s.steps, y: s.values, type: "scatter", mode: "lines", name: line.label,
          line: { color: hexToRgba(line.color, 0.25), width: 1 }, hoverinfo: "skip", showlegend: false });
      }
      const trace = { x: s.steps, y: smooth ? ema(s.values, smoothing) : s.values, name: line.label,
        mode: "lines", line: { color: line.color, width: 1.6, dash: line.dash || "solid" },
        hovertemplate: "%{y:.4g}<extra>" + line.label + "</extra>" };
      if (stacked) {
        trace.type = "scatter";
        trace.stackgroup = "one";
        trace.fillcolor = hexToRgba(line.color, 0.45);
      } else {
        trace.type = "scatter";
      }
      traces.push(trace);
    }, this);
    if (!stacked) window.PSLPlot.markCoinciding(traces);  // stacked areas never hide one another
    traces.forEach(function (t) {  // dashed over the first; the hover says why (the name stays the label)
      if (t.coincidesWith) t.hovertemplate = t.hovertemplate.replace("</extra>", " (same points as " + t.coincidesWith + ")</extra>");
    });
    return traces;
  };

  Chart.prototype.hasData = function () {
    return Object.values(this.lines).some(function (s) { return s.steps.length > 0; });
  };

  Chart.prototype.layout = function () {
    const layout = {
      uirevision: this.spec.id,  // keeps the user's zoom and legend toggles across updates
      margin: { l: 48, r: 12, t: 8, b: 34 },
      font: FONT,
      hovermode: "x unified",
      showlegend: true,
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 11 } },
      xaxis: { title: { text: this.spec.xTitle || "step", standoff: 4 }, zeroline: false, gridcolor: "#f1f3f5" },
      yaxis: { zeroline: false, gridcolor: "#f1f3f5", automargin: true },
      plot_bgcolor: "#fff",
      paper_bgcolor: "#fff",
    };
    if (!this.hasData()) {
      layout.annotations = [{ text: "No data yet", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5,
        font: { size: 13, color: "#868e96" } }];
      layout.xaxis.showticklabels = false;
      layout.yaxis.showticklabels = false;
    }
    return layout;
  };

  Chart.prototype.render = function () {
    if (!window.Plotly) return;
    if (!this.plotted) this.el.textContent = "";
    window.Plotly.react(this.el, this.traces(), this.layout(),
      { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] });
    if (!this.plotted) {
      this.plotted = true;
      this.el.on("plotly_relayout", this.onRelayout.bind(this));
      window.PSLPlot.integerSteps(this.el);
    }
  };

  Chart.prototype.onRelayout = function (ev) {
    let lo = ev["xaxis.range[0]"];
    let hi = ev["xaxis.range[1]"];
    if (lo === undefined && Array.isArray(ev["xaxis.range"])) { lo = ev["xaxis.range"][0]; hi = ev["xaxis.range"][1]; }
    const self = this;
    if (ev["xaxis.autorange"]) {
      this.clearDetail();
      return;
    }
    if (lo === undefined || hi === undefined || !this.options.onZoom) return;
    clearTimeout(this.zoomTimer);
    this.zoomTimer = setTimeout(function () { self.options.onZoom(self, Math.floor(lo), Math.ceil(hi)); }, 200);
  };

  Chart.prototype.resetZoom = function () {
    if (!this.plotted) return;
    window.Plotly.relayout(this.el, { "xaxis.autorange": true, "yaxis.autorange": true });
  };

  window.PSLCharts = {
    create: function (el, spec, options) {
      const chart = new Chart(el, spec, options);
      charts.push(chart);
      return chart;
    },
    setSmoothing: function (value) {
      smoothing = Math.max(0, Math.min(0.99, Number(value) || 0));
      charts.forEach(function (c) { if (c.plotted) c.render(); });
    },
    ema: ema,
  };
})();
