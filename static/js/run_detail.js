// Run page: loads the chart series, then polls the status endpoint every few seconds. Each
// answer carries a change token, server-rendered header and logs (swapped in only when the token
// changed) and the metric points after the last step the page has. Polling stops once the run
// is finished.
(function () {
  "use strict";

  const POLL_MS = 2500;
  const MAX_POINTS = 2000;
  const page = JSON.parse(document.getElementById("run-page-data").textContent);
  const header = document.getElementById("run-header");
  const logs = document.getElementById("run-logs");
  const checkpoints = document.getElementById("run-checkpoints");
  const live = document.getElementById("live-indicator");
  const logLevel = document.getElementById("log-level");
  const logDownload = document.getElementById("log-download");
  let token = page.token;
  let attempt = null;
  let finished = page.finished;
  let timer = null;

  const charts = page.charts.map(function (spec) {
    return window.PSLCharts.create(document.getElementById("chart-" + spec.id), spec, { onZoom: zoom });
  });
  // The System panel (seconds on the x axis, not steps): loaded when opened, polled while open.
  const systemPanel = document.getElementById("system-panel");
  const systemCharts = (page.systemCharts || []).map(function (spec) {
    return window.PSLCharts.create(document.getElementById("chart-" + spec.id), spec, { onZoom: zoom });
  });
  let systemLoaded = false;

  function seriesUrl(keys, extra) {
    const params = new URLSearchParams();
    keys.forEach(function (k) { params.append("key", k); });
    params.set("points", String(MAX_POINTS));
    Object.keys(extra || {}).forEach(function (k) { params.set(k, String(extra[k])); });
    return page.seriesUrl + "?" + params.toString();
  }

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  // One request per chart, so the charts fill in as their series arrive.
  function loadAll() {
    if (systemPanel && systemPanel.open) loadCharts(systemCharts);
    return loadCharts(charts);
  }

  function loadCharts(list) {
    return Promise.all(list.map(function (chart) {
      return getJson(seriesUrl(chart.keys())).then(function (data) {
        Object.keys(data.series).forEach(function (key) {
          chart.setSeries(key, data.series[key].steps, data.series[key].values);
        });
        chart.detail = null;
        chart.render();
      }).catch(function () { chart.render(); });
    }));
  }

  function zoom(chart, lo, hi) {
    getJson(seriesUrl(chart.keys(), { min_step: lo, max_step: hi })).then(function (data) {
      const lines = {};
      Object.keys(data.series).forEach(function (key) { lines[key] = data.series[key]; });
      chart.setDetail(lo, hi, lines);
    }).catch(function () { /* keep the overview */ });
  }

  function lastStep(list) {
    return (list || charts).reduce(function (m, c) { return Math.max(m, c.lastStep()); }, -1);
  }

  function appendPoints(list, points) {
    list.forEach(function (chart) {
      let changed = false;
      chart.keys().forEach(function (key) {
        if (points[key] && chart.append(key, points[key])) changed = true;
      });
      if (changed) chart.render();
    });
  }

  function swapLogs(html) {
    const atBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 24;
    logs.innerHTML = html;  // server-rendered partial: every value in it is escaped by the template
    if (atBottom) logs.scrollTop = logs.scrollHeight;
  }

  function applyStatus(data) {
    token = data.token;
    if (data.header_html !== undefined) header.innerHTML = data.header_html;  // escaped server partial
    if (data.logs_html !== undefined) swapLogs(data.logs_html);
    if (data.checkpoints_html !== undefined) checkpoints.innerHTML = data.checkpoints_html;  // escaped server partial
    const newAttempt = attempt !== null && data.attempt !== attempt;
    attempt = data.attempt;
    if (data.reset || newAttempt) return loadAll();
    if (data.system_reset) loadCharts(systemCharts);
    else if (data.system_points) appendPoints(systemCharts, data.system_points);
    appendPoints(charts, data.points || {});
    return Promise.resolve();
  }

  function poll() {
    if (document.hidden) { schedule(); return; }
    const params = new URLSearchParams({ token: token, since: String(Math.max(-1, lastStep() - 2)) });
    if (logLevel && logLevel.value !== "debug") params.set("log_level", logLevel.value);
    if (systemLoaded && systemPanel.open) params.set("system_since", String(Math.max(-1, lastStep(systemCharts) - 10)));
    getJson(page.statusUrl + "?" + params.toString()).then(function (data) {
      finished = data.finished;
      return applyStatus(data);
    }).catch(function () { /* network hiccup: try again next tick */ }).then(function () {
      if (finished) {
        if (live) live.textContent = "";
      } else {
        schedule();
      }
    });
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(poll, POLL_MS);
  }

  // Smoothing slider, remembered per browser like W&B's.
  const slider = document.getElementById("smoothing");
  const shown = document.getElementById("smoothing-value");
  function setSmoothing(value) {
    shown.textContent = Number(value).toFixed(2);
    window.PSLCharts.setSmoothing(value);
    try { localStorage.setItem("psl.smoothing", String(value)); } catch (e) { /* ignore */ }
  }
  try {
    const saved = localStorage.getItem("psl.smoothing");
    if (saved !== null) { slider.value = saved; shown.textContent = Number(saved).toFixed(2); window.PSLCharts.setSmoothing(saved); }
  } catch (e) { /* ignore */ }
  slider.addEventListener("input", function () { setSmoothing(slider.value); });

  document.getElementById("reset-zoom").addEventListener("click", function () {
    charts.forEach(function (c) { c.resetZoom(); });
  });

  // Forms inside the re-rendered header ask before cancelling.
  document.addEventListener("submit", function (event) {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // Level filter: the next poll asks for the filtered lines (an empty token forces a re-render),
  // also once the run has finished; the download follows the filter.
  if (logLevel) {
    logLevel.addEventListener("change", function () {
      const level = logLevel.value;
      logDownload.href = logDownload.dataset.base + (level === "debug" ? "" : "?level=" + encodeURIComponent(level));
      token = "";
      clearTimeout(timer);
      poll();
    });
  }

  if (systemPanel) {
    systemPanel.addEventListener("toggle", function () {
      if (!systemPanel.open) return;
      if (!systemLoaded) {
        systemLoaded = true;
        loadCharts(systemCharts);
      } else {
        systemCharts.forEach(function (c) { c.render(); });  // drawn while hidden: fit the width again
      }
    });
  }

  logs.scrollTop = logs.scrollHeight;  // newest lines at the bottom, in view
  loadAll().then(function () { if (!finished) schedule(); });
})();
