/* mbtcode: feedback for htmx autosave forms (class "autosave").
 * A failed save keeps what the user entered, says "not saved – retrying", and retries:
 * after a back-off when the server is unreachable (at once when the browser is back online),
 * after a fresh CSRF token when the token died with an expired login, and on "Retry now".
 */
(function () {
  "use strict";
  const failures = new WeakMap();

  function state(form, text, bad) {
    const el = form.querySelector(".save-state");
    if (el) { el.textContent = text; el.classList.toggle("bad", bad); }
    form.classList.toggle("unsaved", bad);
  }

  function banner(text, withLogin) {
    const el = document.getElementById("connection");
    if (!el) return;
    el.hidden = false;
    el.replaceChildren(document.createTextNode(text + " "));
    if (withLogin) {
      const link = document.createElement("a");
      link.href = "/auth/login";
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = "Sign in again (new tab)";
      el.append(link, document.createTextNode(", then come back: saving resumes. "));
    }
    const retry = document.createElement("button");
    retry.type = "button";
    retry.textContent = "Retry now";
    retry.addEventListener("click", function () {
      document.querySelectorAll("form.autosave.unsaved").forEach(function (f) { htmx.trigger(f, "retry"); });
    });
    el.append(retry);
  }

  function later(form) {
    const n = (failures.get(form) || 0) + 1;
    failures.set(form, n);
    setTimeout(function () { if (form.isConnected) htmx.trigger(form, "retry"); },
      Math.min(30000, 1000 * Math.pow(2, Math.min(n, 5))));
  }

  async function refreshToken() {
    try {
      const r = await fetch("/auth/csrf", { headers: { "Accept": "application/json" }, credentials: "same-origin" });
      if (!r.ok) return false;
      const value = (await r.json()).token;
      document.querySelector('meta[name="csrf-token"]').content = value;
      document.body.setAttribute("hx-headers", JSON.stringify({ "X-CSRFToken": value }));
      document.querySelectorAll('input[name="csrf_token"]').forEach(function (i) { i.value = value; });
      return true;
    } catch (err) { return false; }
  }

  document.addEventListener("htmx:beforeRequest", function (e) {
    const form = e.detail.elt.closest && e.detail.elt.closest("form.autosave");
    if (form) state(form, "saving…", false);
  });
  document.addEventListener("htmx:sendError", function (e) {
    const form = e.detail.elt.closest && e.detail.elt.closest("form.autosave");
    if (!form) return;
    state(form, "not saved – retrying", true);
    banner("Not saved – the server cannot be reached. Your entries are kept and retried.", false);
    later(form);
  });
  document.addEventListener("htmx:responseError", async function (e) {
    const form = e.detail.elt.closest && e.detail.elt.closest("form.autosave");
    if (!form) return;
    const xhr = e.detail.xhr;
    if (xhr.status === 400 && xhr.getResponseHeader("X-Mbtcode-Error") === "csrf" && await refreshToken()) {
      htmx.trigger(form, "retry");
      return;
    }
    if (xhr.status === 401 || xhr.status === 400) {
      state(form, "not saved – sign in again", true);
      banner("Your login has expired. What you entered is kept on this page.", true);
      return;
    }
    if (xhr.status === 403 || xhr.status === 404) {  // withdrawn: retrying cannot help
      state(form, "not saved – assignment withdrawn or closed", true);
      banner("Not saved – this assignment was withdrawn or is no longer open to you. " +
        "What you entered is kept on this page; ask your study coordinator.", false);
      return;
    }
    state(form, "not saved – retrying", true);
    later(form);
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (!document.querySelector("form.autosave.unsaved")) {
      const el = document.getElementById("connection");
      if (el && !document.getElementById("workspace")) { el.hidden = true; el.replaceChildren(); }
    }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    const form = e.detail.elt.closest && e.detail.elt.closest("form.autosave");
    if (form && e.detail.successful) failures.delete(form);  // the next failure backs off from 2 s again
  });
  function retryUnsaved() {
    document.querySelectorAll("form.autosave.unsaved").forEach(function (f) { htmx.trigger(f, "retry"); });
  }
  window.addEventListener("focus", retryUnsaved);
  window.addEventListener("online", retryUnsaved);  // back online: do not wait for the back-off
  window.addEventListener("beforeunload", function (e) {
    if (document.querySelector("form.autosave.unsaved")) { e.preventDefault(); e.returnValue = ""; }
  });
})();
