/* mbtcode coding page: keyboard-first coding with saves that are never lost.
 *
 * Every code or note change is queued per utterance and sent one at a time with the
 * version the page last saw. The server answers with the re-rendered row (200), a conflict
 * row (409), or an error row (422), which replaces the old one. Network failures and
 * expired logins keep the change queued, show "not saved – retry", and retry: after a
 * back-off for the network, after a new login for an expired session. A 403/404 (the
 * assignment was withdrawn) keeps the change on the page and says so, without a retry loop.
 * No eval, no inline handlers: the page runs under a strict Content-Security-Policy.
 */
(function () {
  "use strict";

  const workspace = document.getElementById("workspace");
  if (!workspace) return;
  const config = JSON.parse(document.getElementById("coding-config").textContent);
  const list = workspace.querySelector("ol.utterances");
  const locked = workspace.dataset.locked === "true";
  const baseUrl = workspace.dataset.baseUrl;
  const noteText = document.getElementById("note-text");
  const noteSave = document.getElementById("note-save");
  const notePos = document.getElementById("note-pos");
  const currentInfo = document.getElementById("current-info");
  const autoAdvance = document.getElementById("auto-advance");
  const banner = document.getElementById("connection");

  /** uid -> {ops: [{field, value}], busy, failures, timer} */
  const pending = new Map();
  let current = null;
  let loginLost = false;

  // ---- rows and selection -------------------------------------------------------------

  function rows() { return list.children; }
  function rowByUid(uid) { return list.querySelector('li[data-uid="' + uid + '"]'); }

  function select(row, focus) {
    if (!row) return;
    if (current) { current.classList.remove("current"); current.removeAttribute("aria-current"); }
    current = row;
    row.classList.add("current");
    row.setAttribute("aria-current", "true");
    if (focus !== false) row.focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
    showCurrent();
  }

  function showCurrent() {
    if (!current) return;
    const pos = current.querySelector(".pos").textContent;
    const speaker = current.querySelector(".speaker").textContent;
    const codeSet = current.dataset.codeSet;
    document.querySelectorAll(".legend").forEach(function (el) {
      el.classList.toggle("active", el.dataset.codeSet === codeSet);
    });
    currentInfo.textContent = "#" + pos + " " + speaker + (codeSet ? "" : " (not coded in this scheme)");
    notePos.textContent = "#" + pos;
    const editable = Boolean(codeSet) && !locked;
    noteText.disabled = !editable;
    noteSave.disabled = !editable;
    const queued = queuedValue(current.dataset.uid, "note");
    const saved = current.querySelector(".note");
    noteText.value = queued !== undefined ? queued : (saved ? saved.textContent : "");
    noteText.dataset.uid = current.dataset.uid;
  }

  function move(step) {
    const all = rows();
    if (!all.length) return;
    let index = current ? Array.prototype.indexOf.call(all, current) + step : 0;
    index = Math.max(0, Math.min(all.length - 1, index));
    select(all[index]);
  }

  function nextMatching(step, test) {
    const all = rows();
    let index = current ? Array.prototype.indexOf.call(all, current) : -1;
    for (let i = index + step; i >= 0 && i < all.length; i += step) {
      if (test(all[i])) { select(all[i]); return true; }
    }
    return false;
  }

  function isUncoded(row) { return row.classList.contains("codable") && !row.dataset.code; }
  function isCodable(row) { return row.classList.contains("codable"); }

  // ---- applying codes -------------------------------------------------------------

  function applyCode(code) {
    if (locked || !current || !current.dataset.codeSet) return;
    const row = current;
    row.dataset.code = code || "";
    row.classList.toggle("coded", Boolean(code));
    const coding = row.querySelector(".coding");
    const old = coding.querySelector(".code-badge, .uncoded");
    const badge = document.createElement("span");
    badge.className = code ? "code-badge" : "uncoded";
    badge.textContent = code ? (config.labels[row.dataset.codeSet][code] || code) : "uncoded";
    if (old) old.replaceWith(badge); else coding.prepend(badge);
    enqueue(row.dataset.uid, "code", code || "");
    updateProgress();
    if (code && autoAdvance && autoAdvance.checked) nextMatching(1, isCodable);
  }

  function saveNote() {
    const uid = noteText.dataset.uid;
    const row = uid && rowByUid(uid);
    if (!row || locked || !row.dataset.codeSet) return;
    const saved = row.querySelector(".note");
    const known = queuedValue(uid, "note");
    const before = known !== undefined ? known : (saved ? saved.textContent : "");
    if (noteText.value === before) return;
    enqueue(uid, "note", noteText.value);
  }

  // ---- the save queue ------------------------------------------------------------

  function queuedValue(uid, field) {
    const entry = pending.get(uid);
    if (!entry) return undefined;
    for (let i = entry.ops.length - 1; i >= 0; i--) {
      if (entry.ops[i].field === field) return entry.ops[i].value;
    }
    return undefined;
  }

  function enqueue(uid, field, value) {
    let entry = pending.get(uid);
    if (!entry) { entry = { ops: [], busy: false, failures: 0, timer: null }; pending.set(uid, entry); }
    // An unsent change of the same field is superseded; one in flight is not.
    entry.ops = entry.ops.filter(function (op, i) { return op.field !== field || (i === 0 && entry.busy); });
    entry.ops.push({ field: field, value: value });
    setState(uid, "saving…", false);
    pump(uid);
  }

  function token() { return document.querySelector('meta[name="csrf-token"]').content; }

  function setToken(value) {
    document.querySelector('meta[name="csrf-token"]').content = value;
    document.body.setAttribute("hx-headers", JSON.stringify({ "X-CSRFToken": value }));
  }

  async function refreshToken() {
    try {
      const response = await fetch(config.csrf, { headers: { "Accept": "application/json" }, credentials: "same-origin" });
      if (!response.ok) return false;
      setToken((await response.json()).token);
      return true;
    } catch (err) {
      return false;
    }
  }

  async function pump(uid) {
    const entry = pending.get(uid);
    if (!entry || entry.busy || entry.paused || !entry.ops.length) return;
    const row = rowByUid(uid);
    if (!row) { pending.delete(uid); return; }
    entry.busy = true;
    clearTimeout(entry.timer);
    const op = entry.ops[0];
    const body = new URLSearchParams();
    body.set(op.field, op.value);
    body.set("version", row.dataset.version);
    let response;
    try {
      response = await fetch(baseUrl + uid + "/" + op.field, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "X-CSRFToken": token(), "HX-Request": "true" },
      });
    } catch (err) {
      return failed(uid, entry, "network");
    }
    if (response.status === 401) return failed(uid, entry, "login");
    // Withdrawn, or no longer a rater in the study: retrying cannot help (SECURITY.md A10).
    if (response.status === 403 || response.status === 404) return failed(uid, entry, "gone");
    if (response.status === 400 && response.headers.get("X-Mbtcode-Error") === "csrf") {
      if (entry.failures < 1 && await refreshToken()) {
        entry.failures += 1;
        entry.busy = false;
        return pump(uid);
      }
      return failed(uid, entry, "login");
    }
    if (response.status !== 200 && response.status !== 409 && response.status !== 422) {
      return failed(uid, entry, "server");
    }
    const html = await response.text();
    entry.ops.shift();
    entry.busy = false;
    entry.failures = 0;
    if (response.status !== 200) {
      // The row now asks the rater what to do. Later changes of the same field are
      // superseded by that choice; a queued change of the other field (the note after a
      // code conflict) waits, so it is neither lost nor sent blindly over the other tab.
      const field = op.field;
      entry.ops = entry.ops.filter(function (o) { return o.field !== field; });
      entry.paused = entry.ops.length > 0;
    }
    replaceRow(uid, html);
    if (!entry.ops.length) pending.delete(uid); else pump(uid);
    if (loginLost) { loginLost = false; retryAll(); }
    updateProgress();
  }

  function failed(uid, entry, why) {
    entry.busy = false;
    entry.failures += 1;
    const row = rowByUid(uid);
    if (why === "login") {
      loginLost = true;
      setState(uid, "not saved – sign in again", true);
      showBanner("login");
      return;
    }
    if (why === "gone") {
      setState(uid, "not saved – assignment withdrawn or closed", true);
      showBanner("gone");
      return;
    }
    setState(uid, "not saved – retrying", true);
    showBanner("network");
    const delay = Math.min(30000, 1000 * Math.pow(2, Math.min(entry.failures, 5)));
    entry.timer = setTimeout(function () { pump(uid); }, delay);
    if (row) row.classList.add("unsaved");
  }

  function retryAll() {
    pending.forEach(function (entry, uid) { entry.failures = 0; pump(uid); });
  }

  function replaceRow(uid, html) {
    const old = rowByUid(uid);
    if (!old) return;
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    const fresh = template.content.firstElementChild;
    if (!fresh || fresh.dataset.uid !== String(uid)) return;
    const wasCurrent = old === current;
    const hadFocus = document.activeElement === old;
    old.replaceWith(fresh);
    if (wasCurrent) {
      current = fresh;
      fresh.classList.add("current");
      fresh.setAttribute("aria-current", "true");
      if (hadFocus) fresh.focus({ preventScroll: true });
      if (document.activeElement !== noteText) showCurrent();
    }
  }

  function setState(uid, text, bad) {
    const row = rowByUid(uid);
    if (!row) return;
    const state = row.querySelector(".save-state");
    state.textContent = text;
    state.classList.toggle("bad", bad);
    row.classList.toggle("unsaved", bad);
    updateSummary();
  }

  function updateSummary() {
    const summary = document.getElementById("save-summary");
    let waiting = 0;
    pending.forEach(function (entry) { waiting += entry.ops.length; });
    summary.textContent = waiting ? "· " + waiting + " change(s) not saved yet" : "· all changes saved";
    if (!waiting) hideBanner();
  }

  function updateProgress() {
    document.getElementById("n-coded").textContent = list.querySelectorAll("li.codable.coded").length;
    updateSummary();
  }

  function showBanner(kind) {
    banner.hidden = false;
    banner.replaceChildren();
    const text = document.createElement("span");
    const retry = document.createElement("button");
    retry.type = "button";
    retry.textContent = "Retry now";
    retry.addEventListener("click", retryAll);
    if (kind === "login") {
      text.textContent = "Your login has expired. Your unsaved codes are kept on this page. ";
      const link = document.createElement("a");
      link.href = config.login;
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = "Sign in again (new tab)";
      text.append(link, document.createTextNode(", then come back: saving resumes. "));
    } else if (kind === "gone") {
      text.textContent = "Not saved – this assignment was withdrawn or is no longer open to you. " +
        "Your unsaved codes are kept on this page; ask your study coordinator. ";
    } else {
      text.textContent = "Not saved – the server cannot be reached. Your changes are kept and retried. ";
    }
    banner.append(text, retry);
  }

  function hideBanner() { banner.hidden = true; banner.replaceChildren(); }

  // ---- events --------------------------------------------------------------------

  list.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-action]");
    const row = event.target.closest("li.utt");
    if (!row) return;
    if (button) {
      select(row);
      const waiting = pending.get(row.dataset.uid);
      if (waiting && waiting.paused) { waiting.paused = false; pump(row.dataset.uid); }
      if (button.dataset.action === "keep-mine") {
        if (button.dataset.field === "code") applyCode(button.dataset.value);
        else enqueue(row.dataset.uid, "note", button.dataset.value);
      } else {
        fetch(baseUrl + row.dataset.uid, { headers: { "HX-Request": "true" }, credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) { if (html) replaceRow(row.dataset.uid, html); updateProgress(); });
      }
      return;
    }
    if (!window.getSelection().toString()) select(row);
  });

  document.querySelectorAll(".code-btn").forEach(function (button) {
    button.addEventListener("click", function () {
      if (current && current.dataset.codeSet === button.dataset.codeSet) {
        applyCode(button.dataset.code);
        if (current) current.focus({ preventScroll: true });
      }
    });
  });

  noteSave.addEventListener("click", function () { saveNote(); if (current) current.focus(); });
  noteText.addEventListener("blur", saveNote);
  noteText.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      saveNote();
      if (current) current.focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      saveNote();
      if (current) current.focus();
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, textarea, select, button, a, [contenteditable]") &&
        !event.target.closest("li.utt")) return;
    let handled = true;
    switch (event.key) {
      case "j": case "ArrowDown": move(1); break;
      case "k": case "ArrowUp": move(-1); break;
      case "n": nextMatching(1, isUncoded); break;
      case "p": nextMatching(-1, isUncoded); break;
      case "x": case "Delete": case "Backspace": applyCode(""); break;
      case "/": if (!noteText.disabled) noteText.focus(); break;
      case "Home": select(rows()[0]); break;
      case "End": select(rows()[rows().length - 1]); break;
      default: {
        const keys = current && current.dataset.codeSet && config.keys[current.dataset.codeSet];
        const code = keys && keys[event.key.toLowerCase()];
        if (code) applyCode(code); else handled = false;
      }
    }
    if (handled) event.preventDefault();
  });

  window.addEventListener("beforeunload", function (event) {
    if (pending.size) { event.preventDefault(); event.returnValue = ""; }
  });
  window.addEventListener("focus", function () { if (pending.size) retryAll(); });
  window.addEventListener("online", retryAll);

  // Start at the utterance in the address (#u12), else at the first uncoded one.
  const start = (location.hash && document.getElementById(location.hash.slice(1))) ||
    Array.prototype.find.call(rows(), isUncoded) || rows()[0];
  select(start);
  updateProgress();
  document.getElementById("save-summary").textContent = "";
})();
