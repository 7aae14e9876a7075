// Runs list: remembered columns (query string + localStorage), selection, Compare and bulk cancel.
(function () {
  "use strict";

  const table = document.getElementById("run-table-form");
  const filters = document.getElementById("run-filters");
  const projectId = (table && table.dataset.project) || (filters && filters.dataset.project) ||
    (location.pathname.match(/projects\/(\d+)\//) || [])[1];
  const storageKey = "psl.runs.cols." + projectId;
  const params = new URLSearchParams(location.search);

  function store(value) {
    try {
      if (value) localStorage.setItem(storageKey, value);
      else localStorage.removeItem(storageKey);
    } catch (e) { /* private mode: the query string still carries the choice */ }
  }

  function stored() {
    try { return localStorage.getItem(storageKey); } catch (e) { return null; }
  }

  // The query string wins; without one, the columns this browser chose last time are restored.
  if (params.get("cols")) {
    store(params.getAll("cols").join(","));
  } else if (stored()) {
    params.set("cols", stored());
    location.replace(location.pathname + "?" + params.toString());
    return;
  }

  const reset = document.getElementById("reset-columns");
  if (reset) reset.addEventListener("click", function () { store(null); });

  // Apply columns keeping the current order; newly ticked columns go at the end.
  const apply = document.getElementById("apply-columns");
  if (apply) {
    apply.addEventListener("click", function (event) {
      event.preventDefault();
      const current = (table ? table.dataset.cols : (params.get("cols") || "")).split(",").filter(Boolean);
      const ticked = Array.from(document.querySelectorAll("#column-chooser input[name=cols]:checked"))
        .map(function (el) { return el.value; });
      const kept = current.filter(function (c) { return c === "name" || ticked.includes(c); });
      const added = ticked.filter(function (c) { return !kept.includes(c); });
      params.set("cols", kept.concat(added).join(","));
      params.delete("page");
      store(params.get("cols"));
      location.assign(location.pathname + "?" + params.toString());
    });
  }

  if (!table) return;
  const boxes = Array.from(table.querySelectorAll("input[name=run]"));
  const all = document.getElementById("select-all");
  const count = document.getElementById("selection-count");
  const compare = document.getElementById("compare-selected");
  const cancel = document.getElementById("cancel-selected");

  function selected() {
    return boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
  }

  function refresh() {
    const n = selected().length;
    count.textContent = n ? n + " selected" : "Select runs to compare or cancel them.";
    compare.disabled = n < 1;
    if (cancel) cancel.disabled = n < 1;
    if (all) {
      all.checked = n > 0 && n === boxes.length;
      all.indeterminate = n > 0 && n < boxes.length;
    }
  }

  boxes.forEach(function (b) { b.addEventListener("change", refresh); });
  if (all) {
    all.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = all.checked; });
      refresh();
    });
  }
  compare.addEventListener("click", function (event) {
    event.preventDefault();
    location.assign(table.dataset.compareUrl + "?runs=" + selected().join(","));
  });
  if (cancel) {
    cancel.addEventListener("click", function (event) {
      const n = selected().length;
      if (!window.confirm("Cancel " + n + " run" + (n === 1 ? "" : "s") + "? Queued runs stop at once; running ones stop at their next step.")) {
        event.preventDefault();
      }
    });
  }
  refresh();
})();
