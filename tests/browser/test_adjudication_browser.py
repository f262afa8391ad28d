"""Adjudication in a real browser: a supervisor resolves a double-coded demo session by keyboard.

The demo's simulated raters (rater3@, rater4@) double-coded and submitted two sessions, so the
coordinator (who coded neither) finds both in the adjudication queue. One is adjudicated from
start to final by keyboard only (j/k, 1–9, e, /, Esc); on the other a code is entered through
the select with a note, and two tabs race on one row (the second save gets the conflict row).
Blinding: a rater of those sessions reaches neither the adjudication nor the reliability pages,
and nothing on the rater's own pages speaks of consensus, gold standards or reliability.
"""

from __future__ import annotations

import re

from .support import ARTIFACTS, COORDINATOR, STUDY, log_in

RATER3 = "rater3@demo.example.org"
NOTE_CODE = "Both readings defensible; the affect is named first – discuss in supervision."
NOTE_ENTERED = "Neither rater's code: the therapist offers an alternative view here."
FAILED_LOAD = r"Failed to load resource"
BLINDING_WORDS = re.compile(r"consensus|adjudicat|double-cod|gold|reliab", re.IGNORECASE)


# ---- helpers ------------------------------------------------------------------------------


def tab_to(page, predicate: str, *, backwards: bool = False, limit: int = 60) -> None:
    """Press Tab (Shift+Tab) until ``predicate`` (JS, of the focused element) holds."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        if page.evaluate(f"() => {{ const e = document.activeElement; return !!e && ({predicate})(e); }}"):
            return
    raise AssertionError(f"{'Shift+' if backwards else ''}Tab never reached: {predicate}")


def link_named(text: str) -> str:
    return f"e => e.tagName === 'A' && e.textContent.trim() === {text!r}"


def follow_by_keyboard(page, predicate: str, **kwargs) -> None:
    """Tab to a link or button and press Enter; waits for the page it leads to."""
    tab_to(page, predicate, **kwargs)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def queue_rows(page) -> list[dict]:
    """The ready sessions of the adjudication queue, in the page's order."""
    return page.eval_on_selector_all(
        "table.adj-queue tbody tr",
        """rows => rows.map(r => ({
            label: r.cells[0].textContent.trim(),
            href: r.cells[0].querySelector('a').getAttribute('href'),
            disagreements: parseInt(r.cells[2].textContent),
            share: parseInt(r.cells[3].textContent),
            status: r.cells[4].textContent.trim()}))""",
    )


def by_disagreement(rows: list[dict]) -> list[dict]:
    """The queue's order when no session is final: share, then count, then label."""
    return sorted(rows, key=lambda r: (-r["share"], -r["disagreements"], r["label"]))


def open_queue(page) -> list[dict]:
    page.goto("/studies/")
    with page.expect_navigation():
        page.get_by_role("link", name=STUDY).click()
    with page.expect_navigation():
        page.locator("nav.study-tools").get_by_role("link", name="Adjudication").click()
    return queue_rows(page)


def second_session_url(page) -> str:
    """The ready session with the second-most disagreement (the first one is test 1's)."""
    rows = by_disagreement(open_queue(page))
    assert len(rows) >= 2, rows
    return rows[1]["href"]


def ensure_started(page) -> None:
    start = page.get_by_role("button", name="Start adjudication")
    if start.count():
        with page.expect_navigation():
            start.click()
    page.wait_for_selector(".adj-row .adj-form")


def row_ids(page, selector: str = ".adj-row") -> list[str]:
    return page.eval_on_selector_all(selector, "rows => rows.map(r => r.id)")


def counter(page) -> tuple[int, int]:
    text = page.inner_text("#adj-progress .adj-count")
    match = re.search(r"(\d+) of (\d+)\s+disagreements resolved", text)
    assert match, text
    return int(match.group(1)), int(match.group(2))


def current(page) -> dict:
    return page.evaluate(
        "() => { const r = document.querySelector('.adj-row.current');"
        " return r ? {id: r.id, focused: document.activeElement === r} : null; }")


def rater_values(page, rid: str) -> list[str]:
    """Each rater's value on a row as shown (code badge, "no code", rating, "N/A")."""
    return page.eval_on_selector_all(
        f"#{rid} .adj-rater",
        "ds => ds.map(d => d.querySelector('.code-badge, .uncoded, .adj-value').textContent.trim())")


def consensus_of(page, rid: str) -> dict:
    """What the row shows as the consensus: value, basis, note (None when unresolved)."""
    return page.eval_on_selector(
        f"#{rid} .adj-consensus",
        """c => { const v = c.querySelector('.code-badge, .uncoded, .adj-value');
                  const b = c.querySelector('.adj-basis'); const n = c.querySelector('.note');
                  return v ? {value: v.textContent.trim(), basis: b ? b.textContent.trim() : null,
                              note: n ? n.textContent.trim() : null} : null; }""")


def wait_saved(page, rid: str, resolved: int | None = None) -> None:
    """The row came back from the server resolved and saying "saved" (and the counter moved)."""
    page.wait_for_function(
        """([rid, n]) => { const r = document.getElementById(rid);
             const s = r && r.querySelector('.save-state');
             const c = document.querySelector('#adj-progress .adj-count').textContent;
             return r && r.classList.contains('resolved') && s && s.textContent.trim() === 'saved'
                    && (n === null || new RegExp('\\\\b' + n + ' of ').test(c)); }""",
        arg=[rid, resolved],
    )


def screenshot(page, name: str) -> None:
    """A screenshot that leaves the page as it was: Playwright's default caret hiding leaves
    ``style=""`` on every input, which htmx's settle then copies onto the swapped-in row (a
    CSP violation of the test's own making)."""
    page.screenshot(path=str(ARTIFACTS / name), caret="initial")


def entered_value(values: list[str]) -> str:
    """A rating value no rater gave (1–7)."""
    return next(str(v) for v in range(1, 8) if str(v) not in values)


# ---- 1. adjudicate a whole session by keyboard --------------------------------------------


def test_adjudicate_a_session_by_keyboard_and_finalize(browser_page, live_server):
    page = browser_page
    log_in(page, COORDINATOR, live_server.passwords[COORDINATOR])
    assert page.url.endswith("/studies/")

    # Studies → the study → Adjudication → the first queued session, by Tab and Enter.
    follow_by_keyboard(page, link_named(STUDY))
    follow_by_keyboard(page, link_named("Adjudication"))
    assert page.url.endswith("/adjudication")
    rows = queue_rows(page)
    assert len(rows) >= 2, rows  # the demo's two simulated double-codings
    assert rows == by_disagreement(rows)  # the most disagreement first
    first = rows[0]
    assert first["status"] == "to do" and first["disagreements"] > 5
    follow_by_keyboard(page, f"e => e.tagName === 'A' && e.getAttribute('href') === {first['href']!r}")
    assert page.url.endswith(first["href"])
    assert page.inner_text("h1") == f"Adjudicate {first['label']}"
    total = first["disagreements"]
    assert f"{total} disagreements to resolve" in page.inner_text("#adj-progress")
    assert page.locator(".adj-form").count() == 0  # nothing to change before the start

    # Start adjudication (Tab to the button, Enter): the agreed values are filled in.
    follow_by_keyboard(page, "e => e.tagName === 'BUTTON' && e.textContent.trim() === 'Start adjudication'")
    assert "Adjudication started" in page.inner_text("#flash")
    assert counter(page) == (0, total)
    assert page.is_disabled("#finalize")
    codes = row_ids(page, ".adj-code")
    ratings = row_ids(page, ".adj-rating")
    order = codes + ratings
    assert len(order) == total and codes and ratings
    # Side by side: one column per rater, named "Rater 1/2" (the demo hides names).
    assert page.eval_on_selector_all(
        f"#{order[0]} .adj-rater-name", "ns => ns.map(n => n.textContent)") == ["Rater 1", "Rater 2"]

    expected: dict[str, dict] = {}
    resolved = 0

    def pick(rid: str, n: int, note: str | None = None) -> None:
        nonlocal resolved
        was_resolved = consensus_of(page, rid) is not None
        page.keyboard.press(str(n))
        resolved += 0 if was_resolved else 1
        wait_saved(page, rid, resolved)
        page.wait_for_selector(f"#{rid}-pick-{n}[aria-pressed='true']")  # a re-pick was "saved" before
        expected[rid] = {"value": rater_values(page, rid)[n - 1], "basis": f"(picked from Rater {n})",
                         "note": note}
        assert current(page) == {"id": rid, "focused": True}  # focus stays on the row

    for i, rid in enumerate(order):
        page.keyboard.press("j")  # the first j (focus on the page) selects the first row
        assert current(page) == {"id": rid, "focused": True}, (i, rid)
        values = rater_values(page, rid)
        assert len(values) == 2 and values[0] != values[1]
        if rid == codes[1]:
            # "/" opens the note, Esc returns to the row; the pick saves the note with it.
            page.keyboard.press("/")
            assert page.evaluate("document.activeElement.id") == f"{rid}-note"
            page.keyboard.type(NOTE_CODE)
            page.keyboard.press("Escape")
            assert current(page) == {"id": rid, "focused": True}
            pick(rid, 2, NOTE_CODE)
            # k back to the first row, change its pick to the other rater: the count stays
            page.keyboard.press("k")
            assert current(page)["id"] == codes[0]
            pick(codes[0], 2)
            assert counter(page) == (resolved, total)
            page.keyboard.press("j")
            assert current(page)["id"] == rid
        elif rid == ratings[0]:
            # "e": enter a value no rater gave; Enter in the field saves it (not Rater 1's).
            value = entered_value(values)
            page.keyboard.press("e")
            assert page.evaluate("document.activeElement.id") == f"{rid}-value"
            page.keyboard.type(value)
            page.keyboard.press("Enter")
            resolved += 1
            wait_saved(page, rid, resolved)
            expected[rid] = {"value": value, "basis": "(entered by the adjudicator)", "note": None}
            # a successful save gives the row its focus back, so j/k/1–9 work at once
            assert current(page) == {"id": rid, "focused": True}
        else:
            pick(rid, 1 + i % 2)
        if i == 2:  # the head with the counter, and the first rows (one with the note)
            page.evaluate("window.scrollTo(0, 0)")
            screenshot(page, "adjudication.png")
        assert consensus_of(page, rid) == expected[rid]

    assert counter(page) == (total, total)
    assert "Everything is resolved" in page.inner_text("#adj-progress")
    assert not page.is_disabled("#finalize")

    # Finalize by keyboard: k back to the first row, Shift+Tab up to the button, Enter.
    for _ in order:
        page.keyboard.press("k")
    assert current(page)["id"] == order[0]
    follow_by_keyboard(page, "e => e.id === 'finalize'", backwards=True, limit=10)
    assert "The consensus is final." in page.inner_text("#flash")

    # Reload: final, nothing to change, every chosen value and the note shown.
    page.reload()
    assert page.inner_text(".adj-head .status") == "final"
    assert page.locator(".adj-form").count() == 0
    assert row_ids(page) == order
    shown = {rid: consensus_of(page, rid) for rid in order}
    assert shown == expected
    assert page.get_by_role("textbox", name="Reason to reopen").is_visible()

    # The queue lists it as final, at the end, with "View".
    with page.expect_navigation():
        page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="Adjudication").click()
    final = next(r for r in queue_rows(page) if r["href"] == first["href"])
    assert final["status"] == "final"
    assert queue_rows(page)[-1]["href"] == first["href"]
    assert page.get_by_role("link", name="View").get_attribute("href") == first["href"]


# ---- 2. a code entered through the select, with a note --------------------------------------


def test_a_code_entered_with_a_note_is_kept_after_a_reload(browser_page, live_server):
    page = browser_page
    log_in(page, COORDINATOR, live_server.passwords[COORDINATOR])
    page.goto(second_session_url(page))
    ensure_started(page)
    rid, other = row_ids(page, ".adj-code:not(.resolved)")[:2]
    done, total = counter(page)

    # With the mouse: choose a code no rater gave, write the note, "Save entered code".
    values = rater_values(page, rid)
    options = page.eval_on_selector_all(
        f"#{rid}-code option", "os => os.map(o => [o.value, o.textContent.trim()])")
    code, label = next((v, t) for v, t in options if v not in ("", "-") and t not in values)
    page.select_option(f"#{rid}-code", code)
    page.fill(f"#{rid}-note", NOTE_ENTERED)
    page.click(f"#{rid}-save")
    wait_saved(page, rid, done + 1)
    entered = {"value": label, "basis": "(entered by the adjudicator)", "note": NOTE_ENTERED}
    assert consensus_of(page, rid) == entered

    # By keyboard on the next row: e, End (the last option, "no code"), Tab to save, Enter.
    page.locator(f"#{other}").focus()
    page.keyboard.press("e")
    assert page.evaluate("document.activeElement.id") == f"{other}-code"
    page.keyboard.press("End")
    assert page.input_value(f"#{other}-code") == "-"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == f"{other}-save"
    page.keyboard.press("Enter")
    wait_saved(page, other, done + 2)
    no_code = {"value": "no code", "basis": "(entered by the adjudicator)", "note": None}
    assert consensus_of(page, other) == no_code

    page.reload()
    page.wait_for_selector(f"#{rid} .adj-form")
    assert consensus_of(page, rid) == entered
    assert page.input_value(f"#{rid}-code") == code  # the select shows the entered code
    assert page.input_value(f"#{rid}-note") == NOTE_ENTERED
    assert consensus_of(page, other) == no_code
    assert page.input_value(f"#{other}-code") == "-"
    assert counter(page) == (done + 2, total)


# ---- 3. two tabs save the same row -------------------------------------------------------------


def test_two_tabs_on_one_row_the_second_save_gets_the_conflict_and_can_save_again(
        browser_page, browser_context, live_server, console):
    console.allow(FAILED_LOAD + r".*status of 409")
    first = browser_page
    log_in(first, COORDINATOR, live_server.passwords[COORDINATOR])
    url = second_session_url(first)
    first.goto(url)
    ensure_started(first)
    second = browser_context.new_page()
    second.goto(url)
    rid = row_ids(first, ".adj-rating:not(.resolved)")[0]
    r1, r2 = rater_values(first, rid)
    done, _ = counter(first)

    # Tab one uses Rater 1's value.
    first.locator(f"#{rid}").focus()
    first.keyboard.press("1")
    wait_saved(first, rid, done + 1)

    # Tab two still shows the row unresolved; its pick of Rater 2 is refused with the conflict.
    second.locator(f"#{rid}").focus()
    assert consensus_of(second, rid) is None
    second.keyboard.press("2")
    conflict = second.locator(f"#{rid} .conflict")
    conflict.wait_for()
    assert conflict.inner_text() == (
        f"Your choice was Rater 2's value; stored now: {r1} (picked from Rater 1).")
    assert consensus_of(second, rid) == {"value": r1, "basis": "(picked from Rater 1)", "note": None}
    state = second.inner_text(f"#{rid}-s")
    assert state.startswith("Not saved:") and "Save again to replace it" in state
    assert "has-conflict" in second.get_attribute(f"#{rid}", "class")
    assert counter(second)[0] == done + 1  # the counter came along (out of band)
    screenshot(second, "adjudication-conflict.png")

    # The conflict row carries the stored version: saving again replaces the value.
    assert current(second) == {"id": rid, "focused": True}
    second.keyboard.press("2")
    wait_saved(second, rid, done + 1)
    assert second.locator(f"#{rid} .conflict").count() == 0
    assert consensus_of(second, rid) == {"value": r2, "basis": "(picked from Rater 2)", "note": None}

    first.reload()
    assert consensus_of(first, rid) == {"value": r2, "basis": "(picked from Rater 2)", "note": None}


# ---- 4. blinding -------------------------------------------------------------------------------


def test_a_rater_of_the_session_sees_no_adjudication_and_no_reliability(
        browser_page, live_server, console):
    console.allow(FAILED_LOAD + r".*status of 40[34]")
    page = browser_page
    # The coordinator's links, then sign out (the same browser, like a shared workstation).
    log_in(page, COORDINATOR, live_server.passwords[COORDINATOR])
    rows = open_queue(page)
    study_url = page.url.removesuffix("/adjudication")
    reliability = study_url + "/reliability"
    forbidden = [study_url + "/adjudication"] + [r["href"] for r in rows] + [
        reliability, reliability + "/sample", reliability + "/gold", reliability + "/report.json"]
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()

    log_in(page, RATER3, live_server.passwords[RATER3])
    for url in forbidden:
        response = page.goto(url)
        assert response.status in (403, 404), (url, response.status)
        text = page.inner_text("body")
        assert page.inner_text("h1") in ("Not allowed", "Not found"), (url, text)
        assert not BLINDING_WORDS.search(text), (url, BLINDING_WORDS.findall(text))
        assert "Rater 1" not in text and "Use " not in text
    assert page.request.get(reliability + "/report.json").status == 403

    # The rater's own pages: the queue, the study, each coding page and rating form.
    page.goto("/assignments/")
    mine = page.eval_on_selector_all(
        "table.queue tbody tr",
        "rows => rows.map(r => [r.cells[0].textContent.trim(), r.querySelector('a').getAttribute('href')])")
    labels = {label for label, _ in mine}
    assert {r["label"] for r in rows} <= labels  # the double-coded sessions are theirs
    pages = ["/assignments/", "/studies/", study_url]
    for _, href in mine:
        pages += [href, href + "/rating/", href + "/submit"]
    for url in pages:
        response = page.goto(url)
        assert response.ok, (url, response.status)
        for where, content in (("text", page.inner_text("body")), ("html", page.content()),
                               ("title", page.title())):
            assert not BLINDING_WORDS.search(content), (url, where, BLINDING_WORDS.findall(content))
        assert not page.locator("a[href*='/adjudication'], a[href*='/reliability']").count(), url
