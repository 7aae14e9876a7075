// Every page: what the templates would otherwise write as inline style attributes, which the
// Content-Security-Policy forbids (style-src has no 'unsafe-inline'). Progress bars carry their
// percentage in data-width and colour swatches their colour in data-color; setting them through
// the CSSOM is allowed. Partials swapped in later (the run header's polling) are handled too.
(function () {
  "use strict";

  function apply(root) {
    if (!root.querySelectorAll) return;
    const nodes = [root, ...root.querySelectorAll("[data-width], [data-color]")];
    nodes.forEach(function (el) {
      if (!el.dataset) return;
      if (el.dataset.width !== undefined) el.style.width = Math.max(0, Math.min(100, Number(el.dataset.width) || 0)) + "%";
      if (el.dataset.color) el.style.background = el.dataset.color;
    });
  }

  apply(document.body);
  new MutationObserver(function (records) {
    records.forEach(function (r) { r.addedNodes.forEach(apply); });
  }).observe(document.body, { childList: true, subtree: true });
})();

// Selects marked data-autosubmit (a queued run's priority) submit their form when changed.
document.addEventListener("change", function (event) {
  const el = event.target;
  if (el && el.matches && el.matches("select[data-autosubmit]") && el.form) el.form.requestSubmit();
});

// A field marked data-mode-from="<select id>" follows that select (the grid form's search mode):
// its help text and placeholder become its data-help-<value> and data-placeholder-<value>.
(function () {
  "use strict";

  function follow(select) {
    document.querySelectorAll('[data-mode-from="' + select.id + '"]').forEach(function (field) {
      const help = field.closest(".run-field") && field.closest(".run-field").querySelector(".help");
      const text = field.getAttribute("data-help-" + select.value);
      const example = field.getAttribute("data-placeholder-" + select.value);
      if (help && text) help.textContent = text;
      if (example) field.placeholder = example;
    });
  }

  document.addEventListener("change", function (event) {
    const el = event.target;
    if (el && el.matches && el.matches("select[id]") && document.querySelector('[data-mode-from="' + el.id + '"]')) {
      follow(el);
    }
  });
})();
