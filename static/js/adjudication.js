/* mbtcode adjudication page: keyboard moves between the disagreements and picks a rater's value.
 *
 * j / k: next / previous row; 1..9: "Use Rater N's value" on the current row; e: the field to
 * enter another value; /: the note; Esc (in a field): back to the row. Saving is plain htmx
 * (the row answers with itself); this script only keeps focus on the row across the swap and
 * says when a save did not reach the server. No eval, no inline handlers (strict CSP).
 */
(function () {
  "use strict";

  const ROW = ".adj-row";
  if (!document.querySelector(ROW)) return;
  let lastRowId = null;

  function rows() { return Array.prototype.slice.call(document.querySelectorAll(ROW)); }

  function rowOf(element) { return element && element.closest ? element.closest(ROW) : null; }

  function mark(row) {
    document.querySelectorAll(ROW + ".current").forEach(function (r) {
      if (r !== row) { r.classList.remove("current"); r.removeAttribute("aria-current"); }
    });
    if (row) { row.classList.add("current"); row.setAttribute("aria-current", "true"); lastRowId = row.id; }
  }

  function focusRow(row) {
    if (!row) return;
    row.focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
    mark(row);
  }

  function currentRow() {
    return rowOf(document.activeElement) || (lastRowId && document.getElementById(lastRowId)) || null;
  }

  function move(step) {
    const all = rows();
    if (!all.length) return;
    const current = currentRow();
    let index = current ? all.indexOf(current) + step : 0;
    index = Math.max(0, Math.min(all.length - 1, index));
    focusRow(all[index]);
  }

  function setState(row, text, bad) {
    const state = row && row.querySelector(".save-state");
    if (!state) return;
    state.textContent = text;
    state.classList.toggle("bad", bad);
  }

  document.addEventListener("focusin", function (event) {
    const row = rowOf(event.target);
    if (row) mark(row);
  });

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.closest && target.closest("input, textarea, select, summary, [contenteditable]")) {
      if (event.key === "Escape" && rowOf(target)) {
        event.preventDefault();
        focusRow(rowOf(target));
      }
      return;
    }
    const row = currentRow();
    let field = null;
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "e":
        field = row && row.querySelector('select[name="code"], input[name="value"]');
        if (!field) return;
        field.focus();
        break;
      case "/":
        field = row && row.querySelector('textarea[name="note"]');
        if (!field) return;
        field.focus();
        break;
      default: {
        if (!/^[1-9]$/.test(event.key) || !row) return;
        const button = row.querySelector('button[data-pick="' + event.key + '"]');
        if (!button || button.disabled) return;
        button.click();
      }
    }
    event.preventDefault();
  });

  // Focus stays on the row: htmx refocuses a control with the same id after the swap; when the
  // focused element had none (the row itself), focus the new row.
  document.addEventListener("htmx:beforeRequest", function (event) {
    const row = rowOf(event.detail.elt);
    if (!row) return;
    lastRowId = row.id;
    setState(row, "saving…", false);
  });
  let lastSaveOk = false;
  document.addEventListener("htmx:afterRequest", function (event) {
    lastSaveOk = event.detail.xhr && event.detail.xhr.status === 200;
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!lastRowId) return;
    const row = document.getElementById(lastRowId);
    if (!row) return;
    mark(row);
    const active = document.activeElement;
    // After a successful save the row has focus again, so j/k and 1–9 work at once; after
    // a refused one (409/422) focus stays in the field to correct it.
    const inField = active && row.contains(active) && active.matches("input, textarea, select");
    if (!active || active === document.body || (inField && lastSaveOk)) {
      row.focus({ preventScroll: true });
    }
  });
  document.addEventListener("htmx:sendError", function (event) {
    setState(rowOf(event.detail.elt), "not saved – the server cannot be reached; try again", true);
  });
  document.addEventListener("htmx:responseError", function (event) {
    const status = event.detail.xhr.status;
    let text = "not saved – reload the page and try again";
    if (status === 401 || (status === 400 && event.detail.xhr.getResponseHeader("X-Mbtcode-Error") === "csrf")) {
      text = "not saved – your login expired: sign in again in a new tab, then save again";
    } else if (status === 403 || status === 404) {
      text = "not saved – you may no longer adjudicate this session";
    }
    setState(rowOf(event.detail.elt), text, true);
  });
})();
