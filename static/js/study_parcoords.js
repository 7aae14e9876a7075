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

  function draw(el, data, lowerIsBetter) {
    if (typeof Plotly === "undefined") { message(el, "Charts need plotly (static/vendor/plotly)."); return; }
    if (!data.n) { message(el, "No counted run has logged " + (data.outcome || "a metric") + " yet."); return; }
    const outcome = data.dimensions[data.dimensions.length - 1].values;
    const dims = data.dimensions.map(function (d) {
      const dim = { label: d.label, values: d.values };
      if (d.tickvals) { dim.tickvals = d.tickvals; dim.ticktext = d.ticktext; }
      return dim;
    });
    const trace = {
      type: "parcoords", dimensions: dims,
      line: { color: outcome, colorscale: SCALE, reversescale: lowerIsBetter, showscale: true,
              colorbar: { title: { text: data.outcome, side: "right" }, thickness: 12 } },
      labelfont: { size: 12 }, tickfont: { size: 10 },
    };
    el.replaceChildren();
    Plotly.newPlot(el, [trace], { font: FONT, margin: { l: 60, r: 90, t: 40, b: 24 } },
                   { displaylogo: false, responsive: true });
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
