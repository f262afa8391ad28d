"""Issue 3's proof in a real browser: code, rate and submit a session by keyboard only.

Sign in, code more than ten utterances with the legend's keys (j/k, n, x, / for a note),
reload and find every code and the note kept; rate every MBT-ACS item and both overall
ratings with Tab and the arrow keys, reload and find them kept; submit with uncoded
utterances allowed; the coding page is then read-only.
"""

from __future__ import annotations

import re

from .support import (
    ARTIFACTS,
    RATER,
    assignment_links,
    coding_config,
    current_row,
    log_in,
    open_coding_page,
    row_codes,
    wait_all_saved,
)

SESSION = "TH-01/PT-101 #2"
RATIONALE = "Warm, but loses the patient's affect twice (#3, #9)."
NOTE = "Ambivalent: therapist half-validates – discuss in consensus meeting"


def legend_keys(page) -> dict[str, list[tuple[str, str]]]:
    """code set → [(key, code)] as the legend on the page shows them."""
    pairs = page.eval_on_selector_all(
        ".legend .code-btn",
        "bs => bs.map(b => [b.dataset.codeSet, b.querySelector('kbd').textContent, b.dataset.code])",
    )
    keys: dict[str, list[tuple[str, str]]] = {}
    for code_set, key, code in pairs:
        keys.setdefault(code_set, []).append((key, code))
    return keys


def badge(page, uid: str) -> str:
    return page.eval_on_selector(
        f'li.utt[data-uid="{uid}"] .coding', "c => c.querySelector('.code-badge, .uncoded').textContent")


def progress(page) -> tuple[int, int]:
    text = page.inner_text("#progress")
    match = re.match(r"(\d+) of (\d+) codable utterances coded", text)
    assert match, text
    return int(match.group(1)), int(match.group(2))


def code_current(page, keys, expected, i: int) -> str:
    """Press a code key for the selected utterance (from its code set's legend)."""
    row = current_row(page)
    assert row["codeSet"], f"#{row['pos']} is not codable"
    key, code = keys[row["codeSet"]][i % len(keys[row["codeSet"]])]
    page.keyboard.press(key)
    expected[row["uid"]] = code
    return row["uid"]


def test_code_rate_and_submit_a_session_by_keyboard(browser_page, live_server):
    page = browser_page
    log_in(page, RATER, live_server.passwords[RATER])
    links = assignment_links(page)
    assert next(iter(links)) == SESSION  # the first assignment in the queue
    coding_url = links[SESSION]
    open_coding_page(page, coding_url)
    assert page.get_attribute("#workspace", "data-locked") == "false"
    config = coding_config(page)
    keys = legend_keys(page)
    assert set(keys) == {"intervention-spectrum", "nonmentalizing-modes"}
    codable_before, n_codable = progress(page)
    assert codable_before == 0 and n_codable > 20

    # The page starts at the first uncoded utterance, with the keyboard focus on it.
    first = current_row(page)
    assert first["focused"] and first["code"] == ""

    # ---- code 12 utterances in a row (the page moves on after each code)
    expected: dict[str, str] = {}
    coded_order = []
    for i in range(12):
        uid = code_current(page, keys, expected, i)
        coded_order.append(uid)
        label = config["labels"][page.get_attribute(f'li.utt[data-uid="{uid}"]', "data-code-set")]
        assert badge(page, uid) == label[expected[uid]]
        assert progress(page)[0] == i + 1
    assert current_row(page)["uid"] not in expected  # moved on to the 13th

    # ---- k k: back two; x clears that one; j moves down again
    page.keyboard.press("k")
    page.keyboard.press("k")
    cleared = current_row(page)["uid"]
    assert cleared == coded_order[-2]
    page.keyboard.press("x")
    expected[cleared] = ""
    assert badge(page, cleared) == "uncoded"
    assert progress(page)[0] == 11
    page.keyboard.press("j")
    assert current_row(page)["uid"] == coded_order[-1]

    # ---- k back to the cleared one, then n: the next uncoded after it (the 13th row)
    page.keyboard.press("k")
    page.keyboard.press("n")
    thirteenth = current_row(page)
    assert thirteenth["uid"] not in expected and thirteenth["code"] == ""
    code_current(page, keys, expected, 3)
    code_current(page, keys, expected, 4)
    assert progress(page)[0] == 13

    # ---- recode one of the first utterances: j/k to it, a different key
    for _ in range(len(coded_order) + 3):
        page.keyboard.press("k")
    page.keyboard.press("Home")
    top = current_row(page)
    assert top["uid"] == coded_order[0]
    code_current(page, keys, expected, 7)
    page.keyboard.press("k")  # auto-advance moved on; back to it for the note

    # ---- / opens the note, Ctrl+Enter saves it and returns to the utterance
    noted = current_row(page)["uid"]
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "note-text"
    page.keyboard.type(NOTE)
    page.keyboard.press("Control+Enter")
    assert current_row(page)["focused"]
    page.wait_for_selector(f'li.utt[data-uid="{noted}"] .note')
    wait_all_saved(page)
    assert page.inner_text(f'li.utt[data-uid="{noted}"] .note') == NOTE
    assert progress(page)[0] == sum(1 for c in expected.values() if c)
    assert page.inner_text("#save-summary").strip() == "· all changes saved"
    page.keyboard.press("n")  # leave the selection on an uncoded row for the screenshot
    page.screenshot(path=str(ARTIFACTS / "coding-page.png"))

    # ---- reload: every code and the note are still there
    page.reload()
    page.wait_for_selector("li.utt.current")
    stored = row_codes(page)
    assert {uid: stored[uid] for uid in expected} == expected
    assert all(code == "" for uid, code in stored.items() if uid not in expected)
    assert page.inner_text(f'li.utt[data-uid="{noted}"] .note') == NOTE
    assert progress(page)[0] == sum(1 for c in expected.values() if c)
    cleared_pos = page.inner_text(f'li.utt[data-uid="{cleared}"] .pos')

    # ---- the rating form, by keyboard: Tab into each radio group, arrows choose and save
    page.goto(coding_url + "/rating/")
    rate_items_by_keyboard(page)
    page.screenshot(path=str(ARTIFACTS / "rating-form.png"), full_page=True)

    # ---- go to submit: it lists the uncoded utterances; submit with "allow uncoded"
    page.goto(coding_url + "/submit")
    problems = page.inner_text("main")
    assert "Ratings still missing" not in problems
    assert "Uncoded utterances" in problems
    uncoded_links = page.eval_on_selector_all(
        "section.problems a", "as => as.map(a => a.textContent)")
    assert f"#{cleared_pos}" in uncoded_links
    assert len(uncoded_links) == min(200, n_codable - sum(1 for c in expected.values() if c))
    page.screenshot(path=str(ARTIFACTS / "submit-page.png"), full_page=True)
    page.focus('input[name="allow_uncoded"]')
    page.keyboard.press("Space")
    assert page.is_checked('input[name="allow_uncoded"]')
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/assignments/" in page.url
    assert f"Submitted: {SESSION}" in page.inner_text("#flash")

    # ---- the coding page is now read-only: keys do nothing, nothing is sent
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    open_coding_page(page, coding_url)
    assert page.get_attribute("#workspace", "data-locked") == "true"
    assert "locked" in page.inner_text(".panel")
    before = row_codes(page)
    row = current_row(page)
    key, _ = legend_keys(page)[row["codeSet"]][0]
    for k in (key, "x", "j", key, "n", "/", key):
        page.keyboard.press(k)
    assert page.evaluate("document.activeElement.id") != "note-text"
    assert page.is_disabled("#note-text")
    page.wait_for_timeout(200)
    assert row_codes(page) == before
    assert posts == []
    page.reload()
    assert row_codes(page) == before

    # and the rating form is disabled
    page.goto(coding_url + "/rating/")
    assert page.eval_on_selector_all(
        "form.dimension fieldset", "fs => fs.every(f => f.disabled)")


def rate_items_by_keyboard(page) -> None:
    """Rate every item and both overall ratings by keyboard; check the means and the reload."""
    page.wait_for_selector("form.dimension")
    forms = page.eval_on_selector_all("form.dimension", "fs => fs.map(f => f.id)")
    assert len(forms) > 20
    overall = [f for f in forms if "-overall_" in f]
    assert len(overall) == 2
    items = [f for f in forms if f not in overall]
    means_before = page.inner_text(".means")
    assert "0 of" in means_before

    # Item values 1..7 in turn, one item N/A (ArrowLeft from the first point wraps to N/A).
    chosen: dict[str, str] = {}
    for n, form_id in enumerate(items):
        chosen[form_id] = "na" if n == 5 else str(n % 7 + 1)
    chosen[overall[0]] = "2"
    chosen[overall[1]] = "6"

    page.evaluate("document.activeElement && document.activeElement.blur()")
    done = []
    for form_id in forms:
        tab_into_group(page, form_id)
        value = chosen[form_id]
        if value == "1":
            page.keyboard.press("Space")
        elif value == "na":
            page.keyboard.press("ArrowLeft")
        else:
            for _ in range(int(value) - 1):
                page.keyboard.press("ArrowRight")
        assert page.eval_on_selector(f"#{form_id}", "f => f.querySelector('input:checked').value") == value
        done.append(form_id)
        if len(done) == 1:
            # the means update live after the first item is saved
            page.wait_for_function("() => document.querySelector('.means').textContent.includes('(1 of ')")
            # Tab on to the item's rationale and write it (saved while typing pauses)
            page.keyboard.press("Tab")
            rationale = page.evaluate("document.activeElement.id")
            assert rationale.startswith("why-"), rationale
            page.keyboard.type(RATIONALE)

    # Shift+Tab back to the last item and change it: the means follow, the overall ratings do not.
    wait_ratings_saved(page, forms, chosen)
    means_then = page.inner_text(".means")
    last = items[-1]
    tab_into_group(page, last, backwards=True)
    page.keyboard.press("ArrowLeft")
    chosen[last] = str(int(chosen[last]) - 1) if chosen[last] not in ("1", "na") else "na"
    page.wait_for_function("before => document.querySelector('.means').innerText !== before", arg=means_then)
    wait_ratings_saved(page, forms, chosen)
    page.wait_for_function(
        "id => document.getElementById(id + '-s').textContent.trim() === 'saved'", arg=rationale)
    check_means(page, items, chosen)
    # the overall ratings are the rater's own, whatever the means are
    assert checked_values(page, overall) == {overall[0]: "2", overall[1]: "6"}

    page.reload()
    page.wait_for_selector("form.dimension")
    assert checked_values(page, forms) == chosen
    assert page.input_value(f"#{rationale}") == RATIONALE
    check_means(page, items, chosen)


def tab_into_group(page, form_id: str, backwards: bool = False) -> None:
    """Press Tab (or Shift+Tab) until the focus is in this form's radio group (at most 40 presses)."""
    for _ in range(40):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        where = page.evaluate(
            "() => { const e = document.activeElement; const f = e && e.closest('form.dimension');"
            " return e && e.type === 'radio' && f ? f.id : null; }")
        if where == form_id:
            return
    raise AssertionError(f"Tab never reached {form_id}")


def checked_values(page, form_ids) -> dict[str, str | None]:
    return page.evaluate(
        "ids => Object.fromEntries(ids.map(id => {"
        " const c = document.querySelector('#' + id + ' input:checked');"
        " return [id, c ? c.value : null]; }))",
        list(form_ids),
    )


def wait_ratings_saved(page, forms, chosen) -> None:
    """Every field says "saved" and nothing is marked unsaved."""
    page.wait_for_function(
        "ids => ids.every(id => document.getElementById(id + '-s').textContent.trim() === 'saved')"
        " && !document.querySelector('form.autosave.unsaved')",
        arg=list(forms), timeout=10000,
    )
    assert checked_values(page, forms) == chosen


def check_means(page, items, chosen) -> None:
    text = page.inner_text(".means")
    for dimension, label in (("adherence", "adherence"), ("competence", "competence / quality")):
        values = [int(chosen[f]) for f in items if f.endswith("-" + dimension) and chosen[f] != "na"]
        n_items = sum(1 for f in items if f.endswith("-" + dimension))
        expected = f"Mean {label}\n{sum(values) / len(values):.2f}"
        assert expected in text or expected.replace("\n", " ") in text, text
        assert f"({len(values)} of {n_items} items rated" in text, text
