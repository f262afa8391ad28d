"""The reliability pages in a real browser: the analyst's report, the coordinator's sample.

The demo's two simulated double-codings (rater3@, rater4@) give the report something to show:
the analyst opens it from the study page, sees the forest plots (SVG, role=img) beside the
tables of the same figures, recomputes with another number of bootstrap replicates (htmx), and
downloads the JSON. The coordinator draws a seeded double-coding sample and assigns second
raters, by keyboard, and watches the progress move. Any console error or CSP violation fails.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .support import ARTIFACTS, COORDINATOR, STUDY, log_in

ANALYST = "analyst@demo.example.org"
REPORT_TIMEOUT = 30_000  # the report with 1,000 bootstrap replicates takes a few seconds
DRAW_SEED = "2"  # in the demo: two single-coded and the two double-coded sessions
ASSIGN_SEED = "7"
SECOND_RATERS = ("Demo Rater Four (simulated)", "Demo Rater Three (simulated)")


def tab_to(page, predicate: str, *, limit: int = 60) -> None:
    """Press Tab until ``predicate`` (JS, of the focused element) holds."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => {{ const e = document.activeElement; return !!e && ({predicate})(e); }}"):
            return
    raise AssertionError(f"Tab never reached: {predicate}")


def screenshot(page, name: str) -> None:
    # caret="initial": Playwright's caret hiding leaves style="" on inputs, which htmx would
    # copy onto swapped content (a CSP violation of the test's own making)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True, caret="initial")


def report_json_checks(data: dict) -> None:
    assert data["format"] == 1 and data["study"] == STUDY
    assert len(data["raters"]) >= 2 and all(re.fullmatch(r"R\d+", r) for r in data["raters"])
    assert data["sessions"]["double_coded"] >= 2
    assert {cs["id"] for cs in data["code_sets"]} == {"intervention-spectrum", "nonmentalizing-modes"}
    assert "Demo Rater" not in json.dumps(data)  # pseudonyms only


# ---- the analyst's report ------------------------------------------------------------------


def test_the_analyst_reads_the_report_with_charts_and_downloads_the_json(browser_page, live_server):
    page = browser_page
    log_in(page, ANALYST, live_server.passwords[ANALYST])
    with page.expect_navigation():
        page.get_by_role("link", name=STUDY).click()
    with page.expect_navigation(timeout=REPORT_TIMEOUT) as navigation:
        page.locator("nav.study-tools").get_by_role("link", name="Reliability report").click()
    response = navigation.value
    assert response.ok
    csp = response.headers.get("content-security-policy", "")
    assert "script-src" in csp and "unsafe-inline" not in csp, csp  # violations would show
    assert page.url.endswith("/reliability")
    assert page.inner_text("h1").startswith("Reliability report")

    summary = page.inner_text(".rel-report-summary")
    match = re.search(r"(\d+) of (\d+) session\(s\) double-coded", summary)
    assert match and int(match.group(1)) >= 2, summary
    assert "1000 bootstrap replicates" in page.inner_text(".rel-report-header")

    # The charts: one forest plot per code set and one for the items, each an image with a name.
    charts = page.get_by_role("img")
    assert charts.count() == page.locator("svg.forest").count() >= 3
    for i in range(charts.count()):
        chart = charts.nth(i)
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box["width"] > 300 and box["height"] > 60, box
        assert chart.locator("title").first.text_content().strip(), "a chart without a title"
        assert chart.locator("circle.dot").count() > 0
    # named by their titles (aria-labelledby), as a screen reader announces them
    assert page.get_by_role("img", name="ICC(1) per item and overall rating").is_visible()
    per_code = page.get_by_role("img", name=re.compile(r"^Therapist interventions .*per code$"))
    assert per_code.count() == 1
    assert page.get_by_role("img", name=re.compile(r"per code$")).count() == 2  # both code sets

    # The same figures as tables.
    for selector in (".rel-stats-table", ".rel-codes-table", ".rel-coincidence",
                     ".rel-pairs-table", "#rating-items", "#rating-means", "#rating-overall"):
        table = page.locator(selector).first
        assert table.is_visible(), selector
        assert table.locator("tbody tr").count() > 0, selector
    assert page.locator(".rel-stats-table").count() == 2  # one per code set
    stats = page.inner_text(".rel-stats-table >> nth=0")
    assert "Krippendorff's α" in stats and "Cohen's κ" in stats
    assert page.locator(".rel-estimate").count() > 20
    screenshot(page, "reliability-report.png")

    # The JSON link: a JSON attachment, by request and as the browser's download.
    link = page.get_by_role("link", name="Download the report as JSON")
    href = link.get_attribute("href")
    assert href.endswith("/reliability/report.json?boot=1000")
    answer = page.request.get(href, timeout=REPORT_TIMEOUT)
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert re.fullmatch(r'attachment; filename="reliability-mbt-demo-study-\d{8}\.json"',
                        answer.headers["content-disposition"])
    report_json_checks(answer.json())
    with page.expect_download(timeout=REPORT_TIMEOUT) as download:
        link.click()
    assert re.fullmatch(r"reliability-mbt-demo-study-\d{8}\.json", download.value.suggested_filename)
    report_json_checks(json.loads(Path(download.value.path()).read_text(encoding="utf-8")))

    # Recompute with 0 replicates (htmx swaps the report body; the charts are still there).
    page.fill("#report-boot", "0")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('.rel-report-header').textContent.includes('0 bootstrap replicates')"
        " && !document.querySelector('.rel-report-header').textContent.includes('1000 bootstrap')",
        timeout=REPORT_TIMEOUT)
    assert page.get_by_role("img").count() == charts.count()
    assert link.get_attribute("href").endswith("report.json?boot=0")


# ---- the coordinator's sample ----------------------------------------------------------------


def progress(page) -> dict[str, int]:
    text = page.inner_text(".rel-progress-summary")
    match = re.search(r"(\d+) of (\d+)\s+sessions double-coded; (\d+) sampled, (\d+) staffed", text)
    assert match, text
    return dict(zip(("complete", "target", "sampled", "staffed"), map(int, match.groups())))


def sample_rows(page) -> list[dict]:
    return page.eval_on_selector_all(
        "table.rel-sample-table tbody tr",
        "rows => rows.map(r => ({label: r.cells[0].textContent.trim(),"
        " raters: parseInt(r.cells[2].textContent), status: r.cells[4].textContent.trim()}))")


def test_the_coordinator_draws_a_sample_and_assigns_second_raters_by_keyboard(
        browser_page, live_server):
    page = browser_page
    log_in(page, COORDINATOR, live_server.passwords[COORDINATOR])
    for name in (STUDY, "Double-coding sample"):
        tab_to(page, f"e => e.tagName === 'A' && e.textContent.trim() === {name!r}")
        with page.expect_navigation():
            page.keyboard.press("Enter")
    assert page.url.endswith("/reliability/sample")
    assert "No sessions sampled yet" in page.inner_text("#sample-progress")

    # Draw: Tab to the seed, type it, Tab to the fraction, type it, Enter.
    tab_to(page, "e => e.id === 'draw-seed'")
    page.keyboard.press("Control+a")
    page.keyboard.type(DRAW_SEED)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "draw-fraction"
    page.keyboard.press("Control+a")
    page.keyboard.type("0.5")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    flash = page.inner_text("#flash")
    drawn = re.search(r"Drew (\d+) session\(s\) \(seed 2, 50% of (\d+) eligible session\(s\)\); "
                      r"the sample now holds (\d+)\. Next: assign second raters\.", flash)
    assert drawn, flash
    n_drawn, eligible, held = map(int, drawn.groups())
    before = progress(page)
    assert before["sampled"] == held == n_drawn == before["target"] == -(-eligible // 2)
    rows = sample_rows(page)
    assert len(rows) == n_drawn
    needing = [r for r in rows if r["status"].startswith("needs ")]
    assert needing, rows  # the seed draws single-coded sessions too
    missing = sum(int(re.match(r"needs (\d) more rater", r["status"]).group(1)) for r in needing)
    assert before["staffed"] == n_drawn - len(needing)
    assert before["complete"] == sum(r["status"] == "double-coded" for r in rows)

    # Assign second raters: Space on two raters' boxes, Tab to the seed, Enter.
    for name in SECOND_RATERS:
        tab_to(page, f"e => e.type === 'checkbox' && e.name === 'rater_id'"
                     f" && e.parentElement.textContent.trim() === {name!r}")
        page.keyboard.press("Space")
    tab_to(page, "e => e.id === 'assign-seed'")
    page.keyboard.press("Control+a")
    page.keyboard.type(ASSIGN_SEED)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    flash = page.inner_text("#flash")
    assert (f"Created {missing} assignment(s) for {len(needing)} sampled session(s) "
            f"(seed {ASSIGN_SEED}).") in flash, flash

    after = progress(page)
    assert after == {**before, "staffed": n_drawn}
    rows_after = {r["label"]: r for r in sample_rows(page)}
    for row in needing:
        assert rows_after[row["label"]]["raters"] == 2
        assert re.fullmatch(r"coding: [01] of 2 submitted", rows_after[row["label"]]["status"])
    assert not any(r["status"].startswith("needs") for r in rows_after.values())
    bar = page.locator("#sample-progress-bar")
    assert int(bar.get_attribute("value")) == after["complete"]
    assert int(bar.get_attribute("max")) == after["target"]
    screenshot(page, "reliability-sample.png")

    # The adjudication queue lists the newly staffed sessions as waiting for their raters.
    page.goto(page.url.removesuffix("/reliability/sample") + "/adjudication")
    waiting = dict(page.eval_on_selector_all(
        "table.adj-waiting tbody tr",
        "rows => rows.map(r => [r.cells[0].textContent.trim(), r.cells[1].textContent.trim()])"))
    for row in needing:
        assert re.fullmatch(r"[12] of 2 raters have not submitted yet", waiting[row["label"]])
