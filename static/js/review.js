// Review box: Ctrl/Cmd+Enter posts a comment; a form is never posted twice by a double click.
(function () {
  "use strict";
  if (window.pslReviewReady) return;  // the partial may be included more than once on a page
  window.pslReviewReady = true;

  document.addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || !(e.ctrlKey || e.metaKey)) return;
    const area = e.target.closest ? e.target.closest(".comment-form textarea") : null;
    if (area && area.value.trim()) {
      e.preventDefault();
      area.form.requestSubmit ? area.form.requestSubmit() : area.form.submit();
    }
  });
  document.addEventListener("submit", function (e) {
    const form = e.target;
    if (!form.matches || !form.matches(".comment-form, .verdict-form, .verdict-mini, .tag-add")) return;
    if (form.dataset.sent) { e.preventDefault(); return; }
    form.dataset.sent = "1";
  });
})();
