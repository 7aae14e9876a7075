// Compare and study pages: overlay charts (one colour per run or group, mean line + band across
// seeds), a shared legend that hides/shows a line on every chart, zoom synced across charts, and
// the settings form (auto-apply, list filters, run search, copy permalink). The chart data is fetched
// from the URL in data-charts-url (the HTML carries none of it: its size grows with the points drawn).
(function () {
  "use strict";

  const FONT = window.PSLPlot.FONT;
  const ema = window.PSLPlot.ema;
  const rgba = window.PSLPlot.rgba;

  // Plotly renders a small HTML subset in labels; run names must stay plain text.
  function plain(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  // Per group: an invisible lower edge, the filled upper edge, then the mean line on top. A mean
  // line with the same points as an earlier one is dashed over it, and its name says so.
  function traces(chart) {
    const out = [];
    const means = chart.traces.map(function (t) { return { x: t.steps, y: t.values, name: t.name, line: {} }; });
    window.PSLPlot.markCoinciding(means);
    chart.traces.forEach(function (t, i) {
      const same = means[i].coincidesWith;
      const name = plain(t.name) + (same ? " (same points as " + plain(same) + ")" : "");
      const meta = { group: t.group };
      if (t.band) {
        out.push({ x: t.steps, y: t.band.low, mode: "lines", line: { width: 0, color: t.color }, hoverinfo: "skip",
                   showlegend: false, meta: meta, type: "scatter" });
        out.push({ x: t.steps, y: t.band.high, mode: "lines", line: { width: 0, color: t.color }, fill: "tonexty",
                   fillcolor: rgba(t.color, 0.16), hoverinfo: "skip", showlegend: false, meta: meta, type: "scatter" });
      }
      out.push({
        x: t.steps, y: t.values, mode: "lines", name: name, meta: meta, type: "scatter",
        line: Object.assign({ color: t.color, width: 1.8 }, same ? means[i].line : {}), customdata: t.n || null,
        hovertemplate: t.n ? "%{y:.4g} (n=%{customdata})<extra>" + name + "</extra>"
                           : "%{y:.4g}<extra>" + name + "</extra>",
      });
    });
    return out;
  }

  function layout() {
    return {
      margin: { l: 52, r: 12, t: 6, b: 34 }, font: FONT, showlegend: false, hovermode: "x unified",
      xaxis: { title: { text: "step", font: { size: 11 } }, zeroline: false, gridcolor: "#f1f3f5" },
      yaxis: { zeroline: false, gridcolor: "#f1f3f5", automargin: true },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    };
  }

  function drawCharts(data) {
    if (typeof Plotly === "undefined") return [];
    const config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
    const plots = [];
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      const chart = data.charts[Number(el.dataset.chart)];
      el.classList.remove("is-loading");
      if (!chart || !chart.traces.length) {
        el.classList.add("chart-empty", "subtle");
        el.textContent = "No points logged for this metric.";
        return;
      }
      const lines = traces(chart);
      el.pslRaw = lines.map(function (t) { return t.y; });
      Plotly.newPlot(el, lines, layout(), config);
      window.PSLPlot.integerSteps(el);
      noteCoinciding(el, lines);
      plots.push(el);
    });
    syncZoom(plots);
    return plots;
  }

  // Under the chart, in words: which lines lie on top of one another (drawn dashed over the first).
  function noteCoinciding(el, lines) {
    const notes = lines.filter(function (t) { return t.line && t.line.dash && t.line.dash !== "solid"; });
    if (!notes.length) return;
    const p = document.createElement("p");
    p.className = "chart-note subtle";
    p.textContent = notes.map(function (t) { return t.name.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&"); })
      .join("; ") + ": drawn dashed, since the lines coincide.";
    el.insertAdjacentElement("afterend", p);
  }

  // Zooming one chart zooms all of them to the same steps (double-click resets all).
  function syncZoom(plots) {
    let syncing = false;
    plots.forEach(function (el) {
      el.on("plotly_relayout", function (ev) {
        if (syncing) return;
        let update = null;
        if (ev["xaxis.range[0]"] !== undefined) {
          update = { "xaxis.range": [ev["xaxis.range[0]"], ev["xaxis.range[1]"]] };
        } else if (Array.isArray(ev["xaxis.range"])) {
          update = { "xaxis.range": ev["xaxis.range"].slice() };
        } else if (ev["xaxis.autorange"]) {
          update = { "xaxis.autorange": true, "yaxis.autorange": true };
        }
        if (!update) return;
        syncing = true;
        Promise.all(plots.filter(function (p) { return p !== el; }).map(function (p) {
          return Plotly.relayout(p, update);
        })).finally(function () { syncing = false; });
      });
    });
  }

  // Clicking a legend entry hides/shows that run or group on every chart.
  function wireLegend(plots) {
    document.querySelectorAll(".legend-item[data-group]").forEach(function (button) {
      button.addEventListener("click", function () {
        const group = Number(button.dataset.group);
        const visible = button.getAttribute("aria-pressed") !== "true";
        button.setAttribute("aria-pressed", visible ? "true" : "false");
        button.classList.toggle("is-off", !visible);
        plots.forEach(function (el) {
          const idx = [];
          el.data.forEach(function (trace, i) { if (trace.meta && trace.meta.group === group) idx.push(i); });
          if (idx.length) Plotly.restyle(el, { visible: visible }, idx);
        });
      });
    });
  }

  function smooth(plots, alpha) {
    plots.forEach(function (el) {
      Plotly.restyle(el, { y: el.pslRaw.map(function (y) { return ema(y, alpha); }) });
    });
  }

  // The slider smooths in place; the URL keeps the value so that the link reproduces the view.
  function wireSmoothing(plots) {
    const input = document.getElementById("cmp-smooth");
    if (!input) return;
    const output = input.parentElement.querySelector("output");
    const apply = function () {
      const alpha = Number(input.value) || 0;
      if (output) output.textContent = String(alpha);
      smooth(plots, alpha);
    };
    input.addEventListener("input", apply);
    input.addEventListener("change", function () {
      const url = new URL(window.location.href);
      if (Number(input.value)) url.searchParams.set("smooth", input.value);
      else url.searchParams.delete("smooth");
      window.history.replaceState(null, "", url.pathname + url.search.replace(/%2C/g, ",").replace(/%2F/g, "/") + url.hash);
    });
    if (Number(input.value)) apply();
  }

  function wireForm() {
    const form = document.getElementById("compare-form");
    if (form) {
      // Checkbox and select changes apply at once; typing in a filter box does not.
      form.addEventListener("change", function (ev) {
        if (ev.target.matches("input[type=checkbox], input[type=radio], select")) form.requestSubmit();
      });
      form.addEventListener("submit", function () { form.classList.add("is-loading"); });
    }
    document.querySelectorAll("input[data-filter]").forEach(function (input) {
      const list = document.getElementById(input.dataset.filter);
      if (!list) return;
      input.addEventListener("input", function () {
        const q = input.value.trim().toLowerCase();
        list.querySelectorAll("li[data-text]").forEach(function (li) {
          li.hidden = q !== "" && li.dataset.text.indexOf(q) === -1;
        });
      });
    });
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        const done = function () {
          const label = button.textContent;
          button.textContent = "Link copied";
          setTimeout(function () { button.textContent = label; }, 1500);
        };
        if (navigator.clipboard) navigator.clipboard.writeText(window.location.href).then(done);
      });
    });
  }

  // The run picker searches the project (name or id) instead of listing every run: matches
  // replace the unticked entries, ticked ones stay. Without JavaScript the form's Apply does it.
  function wireRunSearch() {
    const input = document.querySelector("input[data-search]");
    const list = input && document.getElementById(input.dataset.search);
    if (!list) return;
    let timer = null;
    let asked = 0;
    function entry(run) {
      const li = document.createElement("li");
      const label = document.createElement("label");
      label.title = run.name;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.name = "runs";
      box.value = String(run.id);
      const swatch = document.createElement("span");
      swatch.className = "swatch swatch-off";
      const name = document.createElement("span");
      name.className = "picker-name";
      name.textContent = run.name;
      const badge = document.createElement("span");
      badge.className = "badge status-" + run.status;
      badge.textContent = run.status.slice(0, 1).toUpperCase();
      label.append(box, swatch, name, badge);
      li.appendChild(label);
      return li;
    }
    function search() {
      const ticket = ++asked;
      const url = input.dataset.searchUrl + "?q=" + encodeURIComponent(input.value.trim());
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (data) {
          if (ticket !== asked) return;  // a newer search answered first
          const ticked = new Set();
          list.querySelectorAll("li").forEach(function (li) {
            const box = li.querySelector("input[type=checkbox]");
            if (box && box.checked) ticked.add(box.value);
            else li.remove();
          });
          data.results.forEach(function (run) { if (!ticked.has(String(run.id))) list.appendChild(entry(run)); });
        })
        .catch(function () { /* the Apply button still searches on the server */ });
    }
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(search, 200);
    });
    input.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { ev.preventDefault(); search(); } });
  }

  function init() {
    wireForm();
    wireRunSearch();
    const box = document.querySelector("[data-charts-url]");
    if (!box || !box.querySelector("[data-chart]")) return;
    fetch(box.dataset.chartsUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        const plots = drawCharts(data);
        wireLegend(plots);
        wireSmoothing(plots);
      })
      .catch(function () {
        box.querySelectorAll("[data-chart]").forEach(function (el) {
          el.classList.remove("is-loading");
          el.textContent = "Could not load the chart data; reload the page.";
        });
      });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
