// Side by side: keyboard navigation, an instant heatmap toggle, the step slider and permalink upkeep.
// The page works without this script (every control is a link or a GET form); the script only makes
// it faster to use. Untrusted text (responses, token pieces) is only ever set through textContent.
(function () {
  "use strict";

  const root = document.getElementById("sbs");
  if (!root) return;
  document.documentElement.classList.add("js");

  const head = root.querySelector(".sbs-head");
  const form = document.getElementById("sbs-form");
  const help = document.getElementById("sbs-help");
  const readout = document.getElementById("sbs-readout");
  const heatToggle = document.getElementById("sbs-heat-toggle");
  let edges = (root.dataset.heatEdges || "").split(",").filter(Boolean).map(Number);
  let heatOn = root.classList.contains("heat-on");
  let tokenData = null;

  // --- state in the address bar ------------------------------------------------------------------

  function withHeat(url) {
    // Links were rendered with the heatmap state of page load; carry the current one instead.
    if (!url || url.charAt(0) !== "?") return url;
    const params = new URLSearchParams(url.slice(1));
    if (heatOn) params.delete("heat"); else params.set("heat", "0");
    const qs = params.toString();
    return qs ? "?" + qs : location.pathname;
  }

  function syncState() {
    const canonical = withHeat("?" + (root.dataset.canonical || ""));
    history.replaceState(null, "", (canonical.charAt(0) === "?" ? location.pathname + canonical : canonical) + location.hash);
    root.querySelectorAll('a[href^="?"]').forEach(function (a) { a.setAttribute("href", withHeat(a.getAttribute("href"))); });
    const here = location.pathname + location.search;
    const permalink = document.getElementById("sbs-permalink");
    if (permalink) permalink.setAttribute("href", here);
    // Review forms return to this exact view (keeping their #sample-… anchor).
    root.querySelectorAll('input[name="next"]').forEach(function (input) {
      const hash = input.value.indexOf("#");
      input.value = here + (hash >= 0 ? input.value.slice(hash) : "");
    });
    let hidden = form && form.querySelector('input[name="heat"]');
    if (form && !heatOn && !hidden) {
      hidden = document.createElement("input");
      hidden.type = "hidden";
      hidden.name = "heat";
      hidden.value = "0";
      form.appendChild(hidden);
    } else if (hidden && heatOn) {
      hidden.remove();
    }
  }

  function go(url) {
    if (url) location.href = withHeat(url);
  }

  // --- heatmap -----------------------------------------------------------------------------------

  function bucket(s) {
    if (!(s > 0)) return 0;
    let i = 0;
    while (i < edges.length && s >= edges[i]) i++;
    return i;
  }

  function relabelLegend() {
    const labels = [0].concat(edges);
    document.querySelectorAll(".heat-legend .heat-swatch").forEach(function (swatch, i) {
      if (i >= labels.length) return;
      const label = String(Number(labels[i].toFixed(2)));
      swatch.title = "≥ " + label + " nats";
      if (swatch.textContent) swatch.textContent = label;
    });
  }

  function buildHeat(box) {
    if (box.querySelector(".resp-heat") || !tokenData) return;
    const entry = tokenData[box.dataset.sample];
    if (!entry) return;
    const tokens = entry[0] || [];
    const surprisal = entry[1] || [];
    const pre = document.createElement("pre");
    pre.className = "resp-heat";
    const n = Math.min(tokens.length, surprisal.length);
    for (let i = 0; i < n; i++) {
      const s = Number(surprisal[i]);
      const span = document.createElement("span");
      span.className = "tok h" + bucket(s);
      span.title = s.toFixed(2) + " nats";
      span.textContent = String(tokens[i]);
      pre.appendChild(span);
    }
    box.appendChild(pre);
    box.classList.add("has-heat");
  }

  // The heatmap's token data is not in the page when it was rendered without the heatmap: fetch it
  // (only the shown samples) the first time the heatmap is switched on.
  function withTokens(then) {
    if (tokenData !== null || !root.dataset.tokensUrl) return then();
    fetch(root.dataset.tokensUrl, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : {}; })
      .then(function (data) {
        // The auto colour scale of this view, computed by the server over the same samples.
        if (Array.isArray(data.edges)) { edges = data.edges; relabelLegend(); delete data.edges; }
        tokenData = data;
        then();
      })
      .catch(function () { tokenData = {}; then(); });
  }

  function setHeat(on) {
    heatOn = on;
    if (on) withTokens(function () { root.querySelectorAll(".response[data-sample]").forEach(buildHeat); });
    root.classList.toggle("heat-on", on);
    root.classList.toggle("heat-off", !on);
    if (heatToggle) {
      heatToggle.classList.toggle("is-on", on);
      heatToggle.setAttribute("aria-pressed", String(on));
    }
    syncState();
  }

  if (heatToggle) {
    heatToggle.addEventListener("click", function (e) {
      e.preventDefault();
      setHeat(!heatOn);
    });
  }

  root.addEventListener("mouseover", function (e) {
    const tok = e.target.closest ? e.target.closest(".tok") : null;
    if (!tok || !readout) return;
    const s = parseFloat(tok.title);
    readout.textContent = JSON.stringify(tok.textContent) + "  " + s.toFixed(2) + " nats · p≈" + Math.exp(-s).toFixed(3);
  });
  root.addEventListener("mouseout", function (e) {
    if (readout && e.target.closest && e.target.closest(".tok")) readout.textContent = "";
  });

  // --- step slider and the controls form -----------------------------------------------------------

  const slider = document.getElementById("sbs-step");
  const sliderOut = document.getElementById("sbs-step-out");
  if (slider) {
    const steps = (slider.dataset.steps || "").split(",").filter(Boolean).map(Number);
    const nearest = function (v) {
      return steps.reduce(function (best, s) { return Math.abs(s - v) < Math.abs(best - v) ? s : best; }, steps[0]);
    };
    slider.addEventListener("input", function () { if (sliderOut) sliderOut.textContent = nearest(Number(slider.value)); });
    slider.addEventListener("change", function () {
      const params = new URLSearchParams(root.dataset.canonical || "");
      params.set("step", nearest(Number(slider.value)));
      go("?" + params.toString());
    });
  }
  if (form) {
    form.querySelectorAll("select").forEach(function (sel) {
      sel.addEventListener("change", function () {
        // A new run B starts from the same mode on both sides; one run starts from normal vs HE.
        const modeB = form.querySelector('select[name="mode_b"]');
        if (sel.name === "compare" && modeB) modeB.value = sel.value ? "normal" : "he";
        form.requestSubmit ? form.requestSubmit() : form.submit();
      });
    });
  }

  // The run picker lists the newest runs; typing in its search box asks the project for others.
  const runSearch = root.querySelector(".sbs-run-search");
  const runSelect = form && form.querySelector('select[name="compare"]');
  if (runSearch && runSelect) {
    let timer = null;
    let asked = 0;
    runSearch.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        const ticket = ++asked;
        fetch(runSearch.dataset.searchUrl + "?q=" + encodeURIComponent(runSearch.value.trim()), { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
          .then(function (data) {
            if (ticket !== asked) return;
            Array.from(runSelect.options).forEach(function (opt) { if (opt.value && !opt.selected) opt.remove(); });
            const have = new Set(Array.from(runSelect.options).map(function (o) { return o.value; }));
            data.results.forEach(function (r) {
              if (have.has(String(r.id))) return;
              const opt = document.createElement("option");
              opt.value = String(r.id);
              opt.textContent = r.name;
              runSelect.appendChild(opt);
            });
          })
          .catch(function () {});
      }, 200);
    });
    runSearch.addEventListener("keydown", function (ev) { if (ev.key === "Enter") ev.preventDefault(); });
  }

  // --- copy link, help -----------------------------------------------------------------------------

  const copy = document.getElementById("sbs-copy");
  if (copy) {
    copy.addEventListener("click", function () {
      const done = function () {
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = "Copy link"; }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(location.href).then(done, function () { window.prompt("Copy this link", location.href); });
      } else {
        window.prompt("Copy this link", location.href);
      }
    });
  }

  function toggleHelp(show) {
    if (!help) return;
    help.hidden = !show;
    if (show) document.getElementById("sbs-help-close").focus();
  }
  const helpOpen = document.getElementById("sbs-help-open");
  if (helpOpen) helpOpen.addEventListener("click", function () { toggleHelp(true); });
  if (help) {
    document.getElementById("sbs-help-close").addEventListener("click", function () { toggleHelp(false); });
    help.addEventListener("click", function (e) { if (e.target === help) toggleHelp(false); });
  }

  // --- keyboard ------------------------------------------------------------------------------------

  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t && t.closest && t.closest("input, textarea, select, [contenteditable]")) {
      if (e.key === "Escape") t.blur();
      return;
    }
    if (help && !help.hidden) {
      if (e.key === "Escape" || e.key === "?") { e.preventDefault(); toggleHelp(false); }
      return;
    }
    const actions = {
      j: function () { go(root.dataset.nextQ); }, ArrowDown: function () { go(root.dataset.nextQ); },
      k: function () { go(root.dataset.prevQ); }, ArrowUp: function () { go(root.dataset.prevQ); },
      ArrowRight: function () { go(root.dataset.nextStep); }, ArrowLeft: function () { go(root.dataset.prevStep); },
      h: function () { setHeat(!heatOn); },
      "?": function () { toggleHelp(true); },
      "/": function () { const s = form && form.querySelector('input[name="search"]'); if (s) s.focus(); },
    };
    const action = actions[e.key];
    if (action) {
      e.preventDefault();
      action();
    }
  });

  // --- layout --------------------------------------------------------------------------------------

  function measureHead() {
    if (head) root.style.setProperty("--sbs-head-h", head.offsetHeight + "px");
  }
  measureHead();
  if (window.ResizeObserver && head) new ResizeObserver(measureHead).observe(head);
  const active = root.querySelector(".qitem.active");
  if (active) active.scrollIntoView({ block: "nearest" });

  syncState();
})();
