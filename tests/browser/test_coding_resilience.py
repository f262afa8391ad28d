"""A rater never loses a code: network drops, an expired login, two tabs; and no script runs
from a transcript or a scheme (SECURITY.md B1, B2, B3, B6).
"""

from __future__ import annotations

import csv
import io
import json

from .support import (
    ARTIFACTS,
    COORDINATOR,
    RATER,
    STUDY,
    assignment_links,
    current_row,
    log_in,
    open_coding_page,
    row_codes,
    wait_all_saved,
)

NETWORK_SESSION = "TH-01/PT-101 #14"
TWO_TABS_SESSION = "TH-02/PT-102 #9"
FAILED_LOAD = r"Failed to load resource"


def key_for(page, code_set: str, index: int = 0) -> tuple[str, str]:
    """The index-th (key, code) of a code set, from the legend."""
    pairs = page.eval_on_selector_all(
        f'.legend[data-code-set="{code_set}"] .code-btn',
        "bs => bs.map(b => [b.querySelector('kbd').textContent, b.dataset.code])",
    )
    return tuple(pairs[index])


def press_code(page, index: int = 0) -> tuple[str, str]:
    """Apply a code to the selected utterance by its key; returns (uid, code)."""
    row = current_row(page)
    key, code = key_for(page, row["codeSet"], index)
    page.keyboard.press(key)
    return row["uid"], code


def save_state(page, uid: str) -> str:
    return page.inner_text(f'li.utt[data-uid="{uid}"] .save-state')


def banner(page) -> str:
    return page.inner_text("#connection") if page.is_visible("#connection") else ""


# ---- (a) the network drops ---------------------------------------------------------------


def test_a_dropped_save_is_kept_and_retried_until_it_is_stored(browser_page, browser_context,
                                                              live_server, console):
    console.allow(FAILED_LOAD + r".*net::ERR_(FAILED|INTERNET_DISCONNECTED)")
    console.allow(r"^console error: htmx:(sendError|afterRequest), ")  # htmx logs failed sends
    page = browser_page
    log_in(page, RATER, live_server.passwords[RATER])
    url = assignment_links(page)[NETWORK_SESSION]
    open_coding_page(page, url)

    # Saves are aborted: the change stays on the page, marked, with the banner.
    aborted = []

    def abort(route):
        aborted.append(route.request.url)
        route.abort()

    page.route("**/utterances/*/code", abort)
    uid, code = press_code(page, 1)
    page.wait_for_function(
        "uid => document.querySelector(`li.utt[data-uid=\"${uid}\"] .save-state`).textContent"
        ".startsWith('not saved')", arg=uid)
    assert aborted
    assert "not saved" in save_state(page, uid)
    assert page.get_attribute(f'li.utt[data-uid="{uid}"]', "data-code") == code
    assert "unsaved" in page.get_attribute(f'li.utt[data-uid="{uid}"]', "class")
    assert "server cannot be reached" in banner(page)
    assert "1 change(s) not saved yet" in page.inner_text("#save-summary")

    # The network is back: the next retry (after a back-off of a few seconds) stores it.
    page.unroute("**/utterances/*/code")
    wait_all_saved(page, timeout=10000)
    assert save_state(page, uid) == "saved"
    assert not page.is_visible("#connection")

    # Offline while coding; back online: saving resumes at once (the "online" event).
    browser_context.set_offline(True)
    uid2, code2 = press_code(page, 2)
    page.wait_for_function(
        "uid => document.querySelector(`li.utt[data-uid=\"${uid}\"] .save-state`).textContent"
        ".startsWith('not saved')", arg=uid2)
    assert "server cannot be reached" in banner(page)
    browser_context.set_offline(False)
    wait_all_saved(page, timeout=3000)  # well before the first back-off retry would run

    page.reload()
    page.wait_for_selector("li.utt.current")
    codes = row_codes(page)
    assert codes[uid] == code and codes[uid2] == code2

    # The rating form (htmx autosave) keeps and retries a rating the same way.
    page.goto(url + "/rating/")
    page.wait_for_selector("form.dimension")
    page.route("**/rating/**", abort)
    form_id = page.eval_on_selector("form.dimension", "f => f.id")
    page.locator(f"#{form_id} input[value='1']").focus()
    page.keyboard.press("ArrowRight")  # 2, saved at once
    page.wait_for_function(
        "id => document.getElementById(id + '-s').textContent.startsWith('not saved')", arg=form_id)
    assert "server cannot be reached" in banner(page)
    page.unroute("**/rating/**")
    page.wait_for_function(
        "id => document.getElementById(id + '-s').textContent.trim() === 'saved'", arg=form_id,
        timeout=10000)
    assert not page.locator("form.autosave.unsaved").count()
    assert not page.is_visible("#connection")
    # offline, then online again: saved at once, not after the back-off
    browser_context.set_offline(True)
    page.keyboard.press("ArrowRight")  # 3
    page.wait_for_function(
        "id => document.getElementById(id + '-s').textContent.startsWith('not saved')", arg=form_id)
    browser_context.set_offline(False)
    page.wait_for_function(
        "id => document.getElementById(id + '-s').textContent.trim() === 'saved'", arg=form_id,
        timeout=1500)
    page.reload()
    assert page.eval_on_selector(f"#{form_id}", "f => f.querySelector('input:checked').value") == "3"


# ---- (b) the login expires mid-work --------------------------------------------------------


def test_codes_made_after_the_login_expired_are_saved_after_a_new_login(
        browser_page, browser_context, live_server, console):
    console.allow(FAILED_LOAD + r".*status of 40[01]")
    page = browser_page
    log_in(page, RATER, live_server.passwords[RATER])
    url = assignment_links(page)[NETWORK_SESSION]
    open_coding_page(page, url)
    page.keyboard.press("End")
    page.keyboard.press("p")  # the last uncoded utterance, away from test (a)'s codes

    browser_context.clear_cookies()  # the session cookie is gone
    made = {}
    for index in (3, 4):
        uid, code = press_code(page, index)
        made[uid] = code
        page.keyboard.press("k")
        page.keyboard.press("p")
    assert len(made) == 2
    page.wait_for_function(
        "uids => uids.every(u => document.querySelector(`li.utt[data-uid=\"${u}\"] .save-state`)"
        ".textContent.includes('sign in again'))", arg=list(made), timeout=15000)  # a loaded CI box
    assert "login has expired" in banner(page)
    assert "Sign in again" in banner(page)
    for uid, code in made.items():
        assert page.get_attribute(f'li.utt[data-uid="{uid}"]', "data-code") == code
    assert "2 change(s) not saved yet" in page.inner_text("#save-summary")

    # Sign in again in a second tab of the same browser, then come back and retry.
    other = browser_context.new_page()
    log_in(other, RATER, live_server.passwords[RATER])
    other.close()
    page.bring_to_front()
    page.get_by_role("button", name="Retry now").click()
    wait_all_saved(page)
    assert not page.is_visible("#connection")

    page.reload()
    page.wait_for_selector("li.utt.current")
    codes = row_codes(page)
    assert {uid: codes[uid] for uid in made} == made


# ---- (c) two tabs -------------------------------------------------------------------------


def test_two_tabs_coding_the_same_utterance_get_a_conflict_not_an_overwrite(
        browser_page, browser_context, live_server, console):
    console.allow(FAILED_LOAD + r".*status of 409")
    first = browser_page
    log_in(first, RATER, live_server.passwords[RATER])
    url = assignment_links(first)[TWO_TABS_SESSION]
    second = browser_context.new_page()
    open_coding_page(first, url)
    open_coding_page(second, url)
    auto_advance_off(first)
    auto_advance_off(second)

    for choice in ("Keep mine", "Use saved"):
        row = current_row(first)
        assert current_row(second)["uid"] == row["uid"]
        uid = row["uid"]
        _, code_first = press_code(first, 0)
        wait_all_saved(first)
        _, code_second = press_code(second, 1)
        assert code_first != code_second
        conflict = second.locator(f'li.utt[data-uid="{uid}"] .conflict')
        conflict.wait_for()
        text = conflict.inner_text()
        assert "Your choice" in text and "saved now" in text
        assert second.get_attribute(f'li.utt[data-uid="{uid}"]', "data-code") == code_first
        if choice == "Keep mine":
            ARTIFACTS.mkdir(exist_ok=True)
            second.screenshot(path=str(ARTIFACTS / "coding-conflict.png"))
        conflict.get_by_role("button", name=choice).click()
        wait_all_saved(second)
        second.wait_for_selector(f'li.utt[data-uid="{uid}"]:not(.has-conflict)')
        winner = code_second if choice == "Keep mine" else code_first
        assert second.get_attribute(f'li.utt[data-uid="{uid}"]', "data-code") == winner
        first.reload()
        first.wait_for_selector("li.utt.current")
        assert row_codes(first)[uid] == winner
        # both tabs move on to the next uncoded utterance for the next round
        for page in (first, second):
            page.locator(f'li.utt[data-uid="{uid}"] .text').click()
            page.keyboard.press("n")
    second.reload()
    assert row_codes(second) == row_codes(first)


def auto_advance_off(page) -> None:
    page.uncheck("#auto-advance")
    page.locator("li.utt.current").focus()


# ---- (d) scripts in a transcript, a session label and a scheme ------------------------------

XSS_SCHEME = {
    "id": "xss-test",
    "version": "1",
    "title": "Scheme <img src=x onerror=alert('scheme')>",
    "code_sets": [{
        "id": "moves",
        "title": "Moves </script><script>alert('set')</script>",
        "applies_to_roles": ["therapist"],
        "codes": [
            {"id": "EVIL", "label": "</script><script>alert('B6')</script>", "key": "1", "mbt": True,
             "description": "\" autofocus onfocus=\"alert('B4')"},
            {"id": "OK", "label": "Fine", "key": "2", "mbt": True},
        ],
    }],
}
XSS_LINES = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<div hx-get="/auth/logout" hx-trigger="load">htmx gadget</div>',
    "</li></ol><b>closing tags</b> &amp; entities",
]
XSS_LABEL = "<img src=x onerror=alert('label')> #1"
XSS_STUDY = "XSS <b>study</b>"
EVIL_BADGE = "EVIL · </script><script>alert('B6')</script>"


def test_scripts_in_transcripts_labels_and_schemes_render_literally(
        chromium_browser, browser_page, live_server, console, tmp_path):
    dialogs = []
    requests = []
    (tmp_path / "scheme.json").write_text(json.dumps(XSS_SCHEME))
    transcript = tmp_path / "xss.txt"
    transcript.write_text(
        "".join(f"{'T' if i % 2 == 0 else 'P'}: {line}\n" for i, line in enumerate(XSS_LINES)))
    manifest = io.StringIO()
    csv.writer(manifest).writerows([["file", "label", "speaker_map"],
                                    ["xss.txt", XSS_LABEL, "T=therapist;P=patient"]])
    (tmp_path / "manifest.csv").write_text(manifest.getvalue())
    live_server.mbtcode_each(
        ["scheme", "add", str(tmp_path / "scheme.json")],
        ["study", "create", XSS_STUDY, "--scheme", "xss-test"],
        ["study", "member", XSS_STUDY, COORDINATOR, "--role", "coordinator"],
        ["study", "member", XSS_STUDY, RATER, "--role", "rater"],
    )
    live_server.mbtcode("import", str(transcript), "--study", XSS_STUDY,
                        "--manifest", str(tmp_path / "manifest.csv"))

    # The coordinator assigns it to rater 1 on the study page (own browser context).
    coordinator = chromium_browser.new_context(base_url=live_server.url)
    try:
        cpage = coordinator.new_page()
        console.watch(cpage)
        watch(cpage, dialogs, requests)
        log_in(cpage, COORDINATOR, live_server.passwords[COORDINATOR])
        cpage.goto("/studies/")
        cpage.get_by_role("link", name=XSS_STUDY).click()
        cpage.wait_for_selector("form.assign-form")
        assert XSS_LABEL in cpage.inner_text("table.sessions")
        cpage.get_by_label(f"Select {XSS_LABEL}").check()
        cpage.get_by_label("Demo Rater One").check()
        with cpage.expect_navigation():
            cpage.get_by_role("button", name="Assign").click()
        assert "1 new assignment" in cpage.inner_text("#flash")
        cpage.get_by_role("link", name=XSS_LABEL).click()  # the transcript viewer
        cpage.wait_for_selector("main")
        viewer = cpage.inner_text("main")
        for line in XSS_LINES:
            assert line in viewer
    finally:
        coordinator.close()

    page = browser_page
    watch(page, dialogs, requests)
    log_in(page, RATER, live_server.passwords[RATER])
    url = assignment_links(page)[XSS_LABEL]
    open_coding_page(page, url)
    texts = page.eval_on_selector_all("li.utt .text", "ps => ps.map(p => p.textContent)")
    assert texts == XSS_LINES
    assert page.locator("ol.utterances img, ol.utterances script, ol.utterances b, main h1 img").count() == 0
    assert XSS_LABEL in page.inner_text("h1")
    legend = page.inner_text(".legend")
    assert "</script><script>alert('B6')</script>" in legend
    assert "Moves </script><script>alert('set')</script>" in legend
    config = page.text_content("#coding-config")
    assert "</script>" not in config and "\\u003c/script\\u003e" in config
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 1  # the JSON block

    # Code the first utterance with the hostile code: its badge is text too, before and after save.
    uid, code = press_code(page, 0)
    assert code == "EVIL"
    wait_all_saved(page)
    assert page.inner_text(f'li.utt[data-uid="{uid}"] .code-badge') == EVIL_BADGE
    page.reload()
    page.wait_for_selector("li.utt.current")
    assert page.inner_text(f'li.utt[data-uid="{uid}"] .code-badge') == EVIL_BADGE
    for path in ("/assignments/", url + "/rating/", url + "/submit"):
        page.goto(path)
        assert XSS_LABEL in page.inner_text("main")
        assert page.locator("main img").count() == 0
    page.wait_for_timeout(100)
    assert dialogs == []
    assert not [r for r in requests if r.endswith("/x") or "/auth/logout" in r]


def watch(page, dialogs: list, requests: list) -> None:
    def on_dialog(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda r: requests.append(r.url))


# ---- (e) the assignment is withdrawn while the rater has it open (SECURITY.md A10) ----------

WITHDRAWN_SESSION = "TH-01+TH-03/MBT-G #71"


def test_a_save_to_a_withdrawn_assignment_says_so_and_keeps_the_code(
        chromium_browser, browser_page, live_server, console):
    console.allow(FAILED_LOAD + r".*status of 404")
    page = browser_page
    log_in(page, RATER, live_server.passwords[RATER])
    url = assignment_links(page)[WITHDRAWN_SESSION]
    assignment_id = url.rstrip("/").rsplit("/", 1)[1]
    open_coding_page(page, url)
    rating = page.context.new_page()
    rating.goto(url + "/rating/")
    rating.wait_for_selector("form.dimension")

    coordinator = chromium_browser.new_context(base_url=live_server.url)
    try:
        cpage = coordinator.new_page()
        console.watch(cpage)
        log_in(cpage, COORDINATOR, live_server.passwords[COORDINATOR])
        cpage.goto("/studies/")
        cpage.get_by_role("link", name=STUDY).click()
        cpage.fill(f"#withdraw-{assignment_id}", "rater on leave")
        with cpage.expect_navigation():
            cpage.locator(f"#withdraw-{assignment_id} ~ button").click()
        assert "Withdrawn from Demo Rater One" in cpage.inner_text("#flash")
    finally:
        coordinator.close()

    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    uid, code = press_code(page, 0)
    page.wait_for_function(
        "uid => document.querySelector(`li.utt[data-uid=\"${uid}\"] .save-state`).textContent"
        ".startsWith('not saved')", arg=uid)
    assert "withdrawn" in save_state(page, uid)
    assert "withdrawn" in banner(page)
    assert page.get_attribute(f'li.utt[data-uid="{uid}"]', "data-code") == code

    # the rating form says the same
    console.allow(r"^console error: (htmx:(responseError|afterRequest), |Response Status Error Code 404 )")
    rating.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    form_id = rating.eval_on_selector("form.dimension", "f => f.id")
    rating.locator(f"#{form_id} input[value='1']").focus()
    rating.keyboard.press("Space")
    rating.wait_for_function(
        "id => document.getElementById(id + '-s').textContent.startsWith('not saved')", arg=form_id)
    assert "withdrawn" in rating.inner_text(f"#{form_id}-s")
    assert "withdrawn" in banner(rating)
    assert rating.is_checked(f"#{form_id} input[value='1']")

    page.wait_for_timeout(2500)  # no retry loop against a door that stays shut
    assert len(posts) == 2, posts
