// Evaluations page: training-curve and pass@k charts (plotly) from the page's JSON blob, and a
// status poll that reloads the page when a queued or running evaluation changes state.
// Model text never passes through here; labels are set with textContent or as plotly strings.
(function () {
  "use strict";

  const COLORS = { normal: "#1c7ed6", he: "#e8590c" };
  const FONT = { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 11, color: "#495057" };
  const LINES = {
    "split/he_normal_kl": { name: "KL(HE‖normal) on HE rollouts", color: COLORS.he, mode: "he" },
    "split/normal_he_kl": { name: "KL(normal‖HE) on normal rollouts", color: COLORS.normal, mode: "normal" },
    "normal/entropy": { name: "normal mode", color: COLORS.normal, mode: "normal" },
    "he/entropy": { name: "HE mode", color: COLORS.he, mode: "he" },
  };

  function empty(el, text) {
    el.replaceChildren();
    const div = document.createElement("div");
    div.className = "empty";
    div.textContent = text;
    el.appendChild(div);
  }

  // Axis titles are pushed clear of the tick labels (automargin + standoff) and the legend sits
  // above the plot, where plotly grows the top margin for it, so long trace names never run
  // across the x axis or out of the chart's box.
  function layout(xTitle, yTitle) {
    return {
      font: FONT, margin: { l: 12, r: 12, t: 8, b: 12 }, hovermode: "x unified",
      xaxis: { title: { text: xTitle, standoff: 6 }, zeroline: false, automargin: true },
      yaxis: { title: { text: yTitle, standoff: 10 }, zeroline: false, automargin: true },
      legend: { orientation: "h", x: 0, xanchor: "left", y: 1.02, yanchor: "bottom" }, showlegend: true,
    };
  }

  function plot(el, traces, lay) {
    if (!window.Plotly) { empty(el, "Charts need plotly (static/vendor/plotly)."); return; }
    el.replaceChildren();
    window.Plotly.newPlot(el, traces, lay, { displaylogo: false, responsive: true });
  }

  function trainingChart(id, lines, points, field, yTitle, emptyText) {
    const el = document.getElementById(id);
    if (!el) return;
    const traces = Object.keys(lines).map(function (key) {
      const meta = LINES[key] || { name: key, color: "#868e96" };
      return { x: lines[key].steps, y: lines[key].values, name: meta.name, type: "scatter", mode: "lines",
               line: { color: meta.color, width: 1.6 } };
    });
    ["normal", "he"].forEach(function (mode) {
      const mine = points.filter(function (p) { return p.mode === mode; });
      if (!mine.length) return;
      traces.push({
        x: mine.map(function (p) { return p.step; }), y: mine.map(function (p) { return p[field]; }),
        text: mine.map(function (p) { return p.benchmark; }), name: "evaluation, " + (mode === "he" ? "HE" : "normal"),
        type: "scatter", mode: "markers", marker: { color: COLORS[mode], size: 9, symbol: "diamond" },
        hovertemplate: "%{text}: %{y:.4f}<extra></extra>",
      });
    });
    if (!traces.length) { empty(el, emptyText); return; }
    plot(el, traces, layout("step", yTitle));
    if (window.Plotly && window.PSLPlot) window.PSLPlot.integerSteps(el);  // steps: no tick at 1.5
  }

  function passkCharts(charts) {
    charts.forEach(function (chart) {
      const el = document.getElementById(chart.id);
      if (!el) return;
      const traces = ["normal", "he"].filter(function (m) { return chart.curves[m]; }).map(function (mode) {
        return { x: chart.curves[mode].k, y: chart.curves[mode].pass, name: mode === "he" ? "HE mode" : "normal mode",
                 type: "scatter", mode: "lines+markers", line: { color: COLORS[mode] } };
      });
      const lay = layout("k (samples drawn)", "pass@k (%)");
      lay.xaxis.dtick = 1;
      plot(el, traces, lay);
    });
  }

  function poll(data) {
    if (!data.active) return;
    const timer = window.setInterval(function () {
      fetch(data.status_url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (status) {
          if (status && status.token !== data.token) { window.clearInterval(timer); window.location.reload(); }
        })
        .catch(function () { /* a missed poll is retried by the next tick */ });
    }, 5000);
  }

  function init() {
    const blob = document.getElementById("eval-page-data");
    if (!blob) return;
    const data = JSON.parse(blob.textContent);
    const evalPoints = data.eval_kl || [];
    trainingChart("chart-kl", data.training.kl || {}, evalPoints, "kl", "nats",
                  "No inter-mode KL logged (Policy Split runs log split/he_normal_kl and split/normal_he_kl).");
    trainingChart("chart-entropy", data.training.entropy || {}, evalPoints, "entropy", "bits",
                  "No per-mode entropy logged yet.");
    passkCharts(data.passk || []);
    poll(data);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
