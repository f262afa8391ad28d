"""The fidelity, program quality, export and API token pages in a real browser.

The demo's second study, "MBT fidelity demo (simulated history)", has a year of rated sessions
per therapist (TH-02 drifts below the cut-off) and two program quality audits. The
coordinator follows the flagged therapist from the dashboard to the chart with the cut-off
line; a rater of that study gets no link and a 403. The coordinator records an audit by
keyboard only and edits it in two tabs (the stale save is a 409 that overwrites nothing). The
analyst downloads the session table as SPSS and reads it back with pyreadstat, then makes an
API token, reads the live API with it and revokes it. Any console error or CSP violation fails.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from .support import (
    COORDINATOR,
    STUDY,
    focused,
    log_in,
    screenshot,
    sign_out,
    tab_to,
    tab_to_link,
)

FIDELITY_STUDY = "MBT fidelity demo (simulated history)"
ANALYST = "analyst@demo.example.org"
HISTORY_RATER = "rater4@demo.example.org"  # the fidelity study's rater (it rated the history)
DEMO_RATER = "rater1@demo.example.org"  # a rater of the transcript demo study
FAILED_LOAD = r"Failed to load resource"
FLAGGED = "TH-02"
CUTOFF = 4  # the MBT-ACS cut-off of the demo scheme

# The keyboard audit: one value per criterion (0 = left "not rated"), and the levels of the
# shipped program instrument (criteria 1-6, 7-10, 11-18, 19-20).
AUDIT_DATE = "2026-09-09"  # typed as 09092026: the same in month/day and day/month order
AUDIT_VALUES = (4, 3, 5, 2, 3, 4, 4, 3, 5, 2, 3, 4, 1, 3, 4, 2, 3, 5, 4, 0)
AUDIT_LEVELS = {"Organization": range(1, 7), "Organization / team": range(7, 11),
                "Team": range(11, 19), "Therapist": range(19, 21)}


def open_study(page, name: str) -> str:
    """From the studies list, by keyboard; returns the study page's URL."""
    page.goto("/studies/")
    tab_to_link(page, name)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.inner_text("h1") == name
    return page.url


def listed_study(page, name: str) -> tuple[str, int]:
    """(URL, number of sessions) of a study, from the studies list."""
    page.goto("/studies/")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))
    href = row.get_by_role("link", name=name, exact=True).get_attribute("href")
    cells = row.get_by_role("cell").all_inner_texts()
    return live_url(page, href), int(cells[3])


def live_url(page, href: str) -> str:
    return page.evaluate("href => new URL(href, location.href).href", href)


def follow(page, link_text: str, **kwargs):
    """Tab to a link and press Enter; returns the response."""
    tab_to_link(page, link_text)
    with page.expect_navigation(**kwargs) as navigation:
        page.keyboard.press("Enter")
    return navigation.value


def assert_strict_csp(response) -> None:
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp, csp


def table_rows(table) -> list[list[str]]:
    """The body rows of a table as lists of cell texts (header cells included)."""
    return table.evaluate(
        "t => [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.textContent.trim()))")


def check_charts(page) -> int:
    """Every chart is a visible, named SVG image whose figures also stand in a table."""
    charts = page.get_by_role("img")
    assert charts.count() == page.locator("svg.fid-chart").count() > 0
    for i in range(charts.count()):
        chart = charts.nth(i)
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box["width"] > 600 and box["height"] > 80, box
        assert chart.locator("title").first.text_content().strip(), "a chart without a title"
        # aria-describedby: the chart's <desc> and the table with the same figures
        described = chart.get_attribute("aria-describedby").split()
        assert len(described) == 2, described
        assert page.locator(f"#{described[0]}").text_content().strip()
        assert page.locator(f"table#{described[1]}").count() == 1, described
    return charts.count()


def check_bar_chart(page, chart) -> None:
    """A stacked bar chart: per bar, the shares add up to 100% and n is the table's n."""
    bars = chart.evaluate(
        """svg => [...svg.querySelectorAll('g.bar')].map(b => ({
             label: b.querySelector('.bar-label').textContent,
             note: b.querySelector('.bar-note').textContent,
             shares: [...b.querySelectorAll('.segment title')].map(t => t.textContent)}))""")
    table = page.locator("table#" + chart.get_attribute("aria-describedby").split()[1])
    headers = table.evaluate("t => [...t.tHead.rows[0].cells].map(c => c.textContent.trim())")
    n_column = headers.index("n")
    rows = {row[0]: row for row in table_rows(table)}
    assert [b["label"] for b in bars] == list(rows)
    for bar in bars:
        shares = [float(re.search(r" (\d+)% \(", s).group(1)) for s in bar["shares"]]
        assert abs(sum(shares) - 100) <= len(shares), bar  # whole percentages, rounded
        assert bar["note"] == f"n = {rows[bar['label']][n_column]}", (bar, rows[bar["label"]])


# ---- 1. the fidelity dashboard ---------------------------------------------------------------------


def test_the_coordinator_follows_the_flagged_therapist_to_the_cutoff_chart(browser_page, live_server):
    page = browser_page
    log_in(page, COORDINATOR, live_server.passwords[COORDINATOR])
    study_url = open_study(page, FIDELITY_STUDY)
    assert page.get_by_role("navigation", name="Fidelity").get_by_role("link").all_inner_texts() == [
        "Fidelity dashboard", "Program quality audits"]
    assert page.get_by_role("navigation", name="Exports").get_by_role("link").all_inner_texts() == [
        "Export tables (CSV, Excel, SPSS, Stata, Parquet)"]
    response = follow(page, "Fidelity dashboard")
    assert response.status == 200 and page.url == study_url + "/fidelity"
    assert_strict_csp(response)
    assert page.inner_text("h1").startswith("Fidelity dashboard")
    scored = re.search(r"(\d+) of (\d+) session\(s\) scored", page.inner_text("main"))
    assert scored and int(scored.group(2)) - int(scored.group(1)) == 4, scored  # one unrated each

    # Needs attention: TH-02 only, with its flags.
    attention = page.get_by_role("region", name=re.compile(r"^Needs attention"))
    assert attention.get_by_role("heading").inner_text() == "Needs attention: 1 therapist(s) flagged"
    assert attention.get_by_role("link").all_inner_texts() == [FLAGGED]
    for flag in ("Adherence below cut-off", "Adherence trending down"):
        assert flag in attention.inner_text()

    # The therapists table: flagged first, then the others by code, with their flags.
    therapists = page.get_by_role("table", name=re.compile(r"^Per therapist"))
    rows = table_rows(therapists)
    assert [r[0] for r in rows] == [FLAGGED, "TH-01", "TH-03", "TH-04"]
    flags = rows[0][-1]
    assert re.search(r"Adherence: below cut-off\s+mean \d\.\d\d over the last 3 scored session\(s\) "
                     r"is below the cut-off 4", flags), flags
    assert "Adherence: trending down" in flags and "Competence / quality: below cut-off" in flags
    assert [r[-1] for r in rows[1:]] == ["none"] * 3
    assert re.fullmatch(r"\d+ of \d+", rows[0][1])
    assert therapists.get_by_role("row", name=re.compile(FLAGGED)).get_attribute("class") == "fid-flagged"

    # The charts: the spectrum level profile and the responsiveness, figures as tables.
    assert check_charts(page) >= 2
    levels = page.get_by_role("img", name=re.compile(r"^Spectrum level profile: Therapist interventions"))
    responsiveness = page.get_by_role("img", name="Mode-contingent responsiveness, whole study")
    for chart in (levels, responsiveness):
        check_bar_chart(page, chart)
    assert levels.locator(".bar-label").all_text_contents() == ["Whole study", FLAGGED, "TH-01", "TH-03",
                                                                "TH-04"]
    screenshot(page, "fidelity-dashboard.png")

    # TH-02's page: the adherence chart with the cut-off line, points as in its table.
    response = follow(page, FLAGGED)  # the first TH-02 link: the one under "Needs attention"
    assert response.status == 200 and page.url == study_url + f"/fidelity/therapists/{FLAGGED}"
    assert page.inner_text("h1").startswith(f"Therapist {FLAGGED}")
    summary = page.get_by_role("table", name="Mean, trend and flags per dimension")
    adherence_row = summary.get_by_role("row", name=re.compile(r"^Adherence"))
    assert "Adherence: below cut-off" in adherence_row.inner_text()
    assert "Adherence: trending down" in adherence_row.inner_text()

    assert check_charts(page) == 4  # adherence, competence, levels, responsiveness
    chart = page.get_by_role("img", name=f"Adherence of {FLAGGED} per session")
    figure = chart.evaluate(
        """svg => {
          const grid = {};
          const lines = svg.querySelectorAll('.y-axis .grid'), labels = svg.querySelectorAll('.y-axis .tick-label');
          lines.forEach((l, i) => { grid[labels[i].textContent] = +l.getAttribute('y1'); });
          const cut = svg.querySelector('.cutoff-line');
          return {grid, cutoff: cut && +cut.getAttribute('y1'), dashed: cut && cut.getAttribute('stroke-dasharray'),
                  cutoffLabel: svg.querySelector('.cutoff-label')?.textContent,
                  points: [...svg.querySelectorAll('.series .point')].map(g => {
                    const b = g.querySelector(':scope > :not(title)').getBBox();
                    return {title: g.querySelector('title').textContent, below: g.classList.contains('below'),
                            y: b.y + b.height / 2}; })};
        }""")
    assert figure["cutoffLabel"] == f"cut-off {CUTOFF}" and figure["dashed"]
    assert figure["cutoff"] == figure["grid"][str(CUTOFF)]  # the line sits at 4 on the axis
    assert chart.locator(".cutoff-label").is_visible()  # (a horizontal line has no height to "see")
    y1, y7 = figure["grid"]["1"], figure["grid"]["7"]

    # The same figures as a table, opened by keyboard.
    tab_to(page, "e => e.tagName === 'SUMMARY' && e.textContent.trim() === 'Adherence per session as a table'")
    page.keyboard.press("Enter")
    points_table = page.get_by_role("table", name=f"Adherence of {FLAGGED} per scored session")
    assert points_table.is_visible()
    table = table_rows(points_table)
    assert len(table) == len(figure["points"]) >= 4
    for (order, day, session, value, below), point in zip(table, figure["points"], strict=True):
        assert point["title"].startswith(f"{session}, {day}: Adherence {value}"), (point, session)
        assert point["below"] == (below == "yes") == (float(value) < CUTOFF), (point, value, below)
        drawn = 1 + (y1 - point["y"]) / (y1 - y7) * 6  # the point's height, read back on the scale
        assert abs(drawn - float(value)) < 0.05, (point, value, drawn)
    assert table[-1][-1] == "yes"  # the drift: the latest session is below the cut-off
    screenshot(page, "fidelity-therapist.png")


def test_a_rater_sees_no_fidelity_or_export_links_and_gets_a_403(browser_page, live_server, console):
    console.allow(FAILED_LOAD + r".*status of 403")
    page = browser_page
    # The fidelity study's own rater (it rated the history), then a rater of the transcript demo.
    checks = ((HISTORY_RATER, FIDELITY_STUDY, ("/fidelity", f"/fidelity/therapists/{FLAGGED}", "/quality",
                                               "/export")),
              (DEMO_RATER, STUDY, ("/fidelity", "/export")))
    for rater, study, forbidden in checks:
        log_in(page, rater, live_server.passwords[rater])
        study_url = open_study(page, study)
        assert page.get_by_role("heading", name="Your assignments").is_visible()
        for name in ("Fidelity dashboard", "Program quality audits", re.compile("^Export")):
            assert page.get_by_role("link", name=name).count() == 0, (rater, name)
        for path in forbidden:
            response = page.goto(study_url + path)
            assert response.status == 403, (rater, path, response.status)
            assert page.inner_text("h1") == "Not allowed"
            text = page.inner_text("main")
            assert "permission" in text and "cut-off" not in text and "flagged" not in text, text
        sign_out(page)


# ---- 2. a program quality audit by keyboard; two tabs ----------------------------------------------


def form_values(page) -> dict[str, str]:
    return page.evaluate(
        "() => Object.fromEntries([...new FormData(document.querySelector('form.fid-audit-form'))]"
        ".filter(([k]) => k !== 'csrf_token'))")


def audit_row(page, day: str) -> list[str]:
    table = page.get_by_role("table", name=re.compile(r"^Per audit"))
    rows = [r for r in table_rows(table) if r[0] == day]
    assert len(rows) == 1, rows
    return rows[0]


def change_criterion(page, number: int, key: str) -> None:
    """Tab to criterion ``number``'s chosen value, move it one step with an arrow key."""
    tab_to(page, f"e => e.name === 'item-{number}' && e.checked")
    page.keyboard.press(key)


def save_by_keyboard(page, button: str, **kwargs):
    tab_to(page, f"e => e.tagName === 'BUTTON' && e.textContent.trim() === {button!r}")
    with page.expect_navigation(**kwargs) as navigation:
        page.keyboard.press("Enter")
    return navigation.value


def test_the_coordinator_records_an_audit_by_keyboard_and_a_stale_edit_is_refused(
        browser_page, browser_context, live_server, console):
    console.allow(FAILED_LOAD + r".*status of 409")
    page = browser_page
    log_in(page, COORDINATOR, live_server.passwords[COORDINATOR])
    study_url, _ = listed_study(page, FIDELITY_STUDY)
    page.goto(study_url + "/quality")  # (the links to it: the first test)
    assert page.inner_text("h1").startswith("Program quality audits")
    before = page.get_by_role("img").locator(".series-0 .point").count()
    follow(page, "Record a new audit")
    assert page.inner_text("h1").startswith("New program quality audit")

    # The date, then every criterion: Tab into its radio group, arrows choose the value.
    tab_to(page, "e => e.id === 'audit-date'")
    assert focused(page, "e => e.labels[0].textContent.startsWith('Date')")
    page.keyboard.type(AUDIT_DATE[5:7] + AUDIT_DATE[8:] + AUDIT_DATE[:4])
    assert page.get_by_label("Date").input_value() == AUDIT_DATE
    tab_to(page, "e => e.name === 'item-1'")
    for number, value in enumerate(AUDIT_VALUES, start=1):
        if number > 1:
            page.keyboard.press("Tab")
        assert focused(page, f"e => e.name === 'item-{number}' && e.checked && e.value === ''"), number
        for _ in range(value):
            page.keyboard.press("ArrowRight")
    expected = {f"item-{n}": str(v) if v else "" for n, v in enumerate(AUDIT_VALUES, start=1)}
    assert form_values(page) == {"audit_date": AUDIT_DATE, "unit": "", "note": "", **expected}
    first = page.get_by_role("group", name="1. Board committed to the MBT program")
    assert first.get_by_role("radio", name="4 Good").is_checked()
    tab_to(page, "e => e.tagName === 'BUTTON'")
    assert focused(page, "e => e.textContent.trim() === 'Record the audit'")
    screenshot(page, "quality-audit-form.png")
    with page.expect_navigation() as navigation:
        page.keyboard.press("Enter")
    assert navigation.value.status == 200 and page.url.endswith("/quality")

    # The list and the chart have it, with the means of the rated criteria.
    rated = [v for v in AUDIT_VALUES if v]
    assert (f"Audit of the whole program on {AUDIT_DATE} saved ({len(rated)} of 20 criteria rated)."
            in page.inner_text("#flash"))
    row = audit_row(page, AUDIT_DATE)
    level_means = [f"{sum(v) / len(v):.2f}" for v in
                   ([AUDIT_VALUES[n - 1] for n in numbers if AUDIT_VALUES[n - 1]] for numbers in AUDIT_LEVELS.values())]
    assert row[1:3 + len(AUDIT_LEVELS)] == ["whole program", f"{sum(rated) / len(rated):.2f}", *level_means]
    assert row[-6:-2] == [f"{len(rated)} of 20", "0", str(sum(v < 3 for v in rated)), "yes"]
    assert check_charts(page) == 1
    chart = page.get_by_role("img", name="MBT program quality criteria: whole program over time")
    overall = chart.locator(".series-0 .point")
    assert overall.count() == before + 1
    assert overall.last.locator("title").text_content() == (
        f"{AUDIT_DATE}: Mean, all criteria {sum(rated) / len(rated):.2f}")
    assert chart.locator(".x-axis .tick-label").last.text_content() == AUDIT_DATE

    # Two tabs of the same audit: the first saves, the second (stale) gets the 409.
    follow(page, AUDIT_DATE)
    audit_url = page.url
    second = browser_context.new_page()
    second.goto(audit_url)
    assert second.inner_text("h1").startswith(f"Audit of the whole program, {AUDIT_DATE}")

    change_criterion(page, 1, "ArrowRight")  # 4 → 5
    save_by_keyboard(page, "Save the audit")
    assert f"Audit of the whole program on {AUDIT_DATE} saved." in page.inner_text("#flash")

    change_criterion(second, 2, "ArrowLeft")  # 3 → 2, on the stale copy
    response = save_by_keyboard(second, "Save the audit")
    assert response.status == 409
    conflict = second.get_by_role("alert").filter(has_text="Someone else changed this audit meanwhile")
    assert conflict.is_visible()
    assert "Your changes were not saved" in conflict.inner_text()
    differences = table_rows(conflict.get_by_role("table"))
    assert differences == [["1. Board committed to the MBT program", "5", "4"],
                           ["2. Management supports and facilitates the program", "3", "2"]], differences
    assert form_values(second)["item-2"] == "2"  # the user's values stay in the form
    screenshot(second, "quality-audit-conflict.png")
    second.close()

    # Nothing was overwritten: the first tab's change stands, the stale one was not saved.
    page.goto(audit_url)
    saved = form_values(page)
    assert saved["item-1"] == "5" and saved["item-2"] == "3"
    assert {k: v for k, v in saved.items() if k not in ("item-1", "version")} == {
        "audit_date": AUDIT_DATE, "unit": "", "note": "", **{k: v for k, v in expected.items() if k != "item-1"}}


# ---- 3. the export page -----------------------------------------------------------------------------


def test_the_analyst_downloads_the_session_table_as_spss(browser_page, live_server, tmp_path):
    pyreadstat = pytest.importorskip("pyreadstat")
    page = browser_page
    log_in(page, ANALYST, live_server.passwords[ANALYST])
    study_url, n_sessions = listed_study(page, FIDELITY_STUDY)
    tab_to_link(page, FIDELITY_STUDY)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    response = follow(page, "Export tables (CSV, Excel, SPSS, Stata, Parquet)")
    assert response.status == 200 and page.url == study_url + "/export"
    assert_strict_csp(response)
    assert page.inner_text("h1").startswith("Export")
    # Analysts export de-identified tables only: the identifying boxes are not offered.
    assert page.get_by_role("checkbox").count() == 0
    assert page.get_by_label("Utterance text and speaker labels (utterance level)").count() == 0
    assert "unless you tick them" not in page.inner_text("main")

    # Sessions (the default), SPSS, download: by keyboard.
    tab_to(page, "e => e.name === 'level'")
    assert focused(page, "e => e.value === 'session' && e.checked")
    page.keyboard.press("Tab")
    assert focused(page, "e => e.id === 'export-format'")
    for _ in range(5):
        if page.get_by_label("File format").input_value() == "sav":
            break
        page.keyboard.press("ArrowDown")
    assert page.get_by_label("File format").input_value() == "sav"
    page.keyboard.press("Tab")
    assert focused(page, "e => e.textContent.trim() === 'Download (.zip)'")
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    name = download.value.suggested_filename
    assert re.fullmatch(r"mbtcode-mbt-fidelity-demo-[a-z0-9-]+-session-sav\.zip", name), name
    stem = name.removesuffix("-sav.zip")
    zipped = tmp_path / name
    download.value.save_as(zipped)

    with zipfile.ZipFile(zipped) as archive:
        members = archive.namelist()
        assert members == [f"{stem}.sav", f"{stem}.sav.codebook.md", f"{stem}.sav.codebook.json",
                           f"{stem}.sav.manifest.json"]
        files = {m: archive.read(m) for m in members}
    manifest = json.loads(files[f"{stem}.sav.manifest.json"])
    assert manifest["study"] == FIDELITY_STUDY and manifest["level"] == "session"
    assert manifest["rows"] == n_sessions and manifest["include_text"] is manifest["include_notes"] is False
    assert manifest["files"] == {m: {"sha256": hashlib.sha256(files[m]).hexdigest(), "bytes": len(files[m])}
                                 for m in members[:3]}
    codebook = json.loads(files[f"{stem}.sav.codebook.json"])
    assert codebook["rows"] == n_sessions
    assert f"{n_sessions} rows." in files[f"{stem}.sav.codebook.md"].decode("utf-8")

    sav = tmp_path / f"{stem}.sav"
    sav.write_bytes(files[f"{stem}.sav"])
    frame, meta = pyreadstat.read_sav(str(sav))
    assert len(frame) == n_sessions
    labels = meta.column_names_to_labels
    assert len(labels) == len(codebook["columns"]) and all(labels.values()), labels
    assert {c["name"]: c["label"] for c in codebook["columns"]} == labels
    assert labels["therapist"] == "Therapist code(s)"
    assert set(frame["therapist"]) == {"TH-01", "TH-02", "TH-03", "TH-04"}
    assert "single_rater" in meta.variable_value_labels["source"].values()
    assert not any("Demo " in str(v) for v in frame.to_numpy().ravel())  # codes, not names

    # The coordinator may include utterance text and notes: the boxes are offered, unticked.
    sign_out(page)
    log_in(page, COORDINATOR, live_server.passwords[COORDINATOR])
    page.goto(study_url + "/export")
    for box in ("Utterance text and speaker labels (utterance level)", "Raters' notes and rationales (utterance and rating levels)"):
        checkbox = page.get_by_role("checkbox", name=box)
        assert checkbox.is_visible() and not checkbox.is_checked()


# ---- 4. API tokens ------------------------------------------------------------------------------------


def api_get(url: str, token: str) -> tuple[int, dict, object]:
    """(status, JSON body, headers) of a GET with the bearer token."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read()), answer.headers
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), error.headers


def test_the_analyst_makes_an_api_token_uses_it_and_revokes_it(browser_page, live_server):
    page = browser_page
    log_in(page, ANALYST, live_server.passwords[ANALYST])
    token_name = "R pipeline (browser test)"
    response = follow(page, "API tokens")  # in the header, on every page
    assert response.headers["cache-control"] == "no-store"
    assert page.inner_text("h1") == "API tokens"

    # Create: name, 30 days, Enter.
    tab_to(page, "e => e.id === 'token-name'")
    page.keyboard.type(token_name)
    page.keyboard.press("Tab")
    assert focused(page, "e => e.id === 'token-expires'")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.get_by_label("Expires").input_value() == "30"
    page.keyboard.press("Tab")
    assert focused(page, "e => e.textContent.trim() === 'Create token'")
    with page.expect_navigation() as navigation:
        page.keyboard.press("Enter")
    assert navigation.value.status == 200 and navigation.value.headers["cache-control"] == "no-store"
    assert page.inner_text("h1") == f"Token “{token_name}” created"
    assert "it is shown only this once" in page.get_by_role("status").inner_text()
    secret_box = page.get_by_label("Your new API token")
    assert focused(page, "e => e.id === 'token-secret' && e.readOnly")  # autofocus: ready to copy
    secret = secret_box.input_value()
    assert re.fullmatch(r"mbt_[A-Za-z0-9_-]{30,}", secret), secret
    prefix = page.get_by_role("definition").first.inner_text().removesuffix("…")
    assert secret.startswith(prefix) and len(prefix) < len(secret)
    in_30_days = datetime.now(UTC).date() + timedelta(days=30)
    shown = page.get_by_role("definition").nth(2).inner_text()  # Expires
    assert any((in_30_days + timedelta(days=d)).isoformat() in shown for d in (-1, 0, 1)), shown

    # The live API with the token: the studies, then a page of the session table.
    status, body, _ = api_get(live_server.url + "/api/v1/studies", secret)
    assert status == 200
    studies = {s["name"]: s for s in body["studies"]}
    assert {STUDY, FIDELITY_STUDY} <= set(studies)
    fidelity = studies[FIDELITY_STUDY]
    assert fidelity["role"] == "analyst" and fidelity["capabilities"] == ["export"]
    table_url = f"{live_server.url}/api/v1/studies/{fidelity['id']}/tables/session"
    assert fidelity["tables"]["session"] == table_url
    status, body, headers = api_get(table_url + "?limit=5", secret)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert body["level"] == "session" and body["limit"] == 5 and body["offset"] == 0
    assert len(body["rows"]) == 5 and body["total"] > 5
    assert body["next"] == table_url + "?limit=5&offset=5"
    assert {"session", "therapist", "source"} <= {c["name"] for c in body["columns"]}
    status, following, _ = api_get(body["next"], secret)
    assert status == 200 and following["offset"] == 5 and len(following["rows"]) == 5
    assert {r["session"] for r in following["rows"]}.isdisjoint(r["session"] for r in body["rows"])

    # Back to the list: the token is there by its prefix; the secret is on no page any more.
    follow(page, "I have copied it — back to my API tokens")
    tokens = page.get_by_role("table")
    row = tokens.get_by_role("row", name=re.compile(re.escape(token_name)))
    assert prefix + "…" in row.inner_text() and "active" in row.inner_text()
    assert secret not in page.content()

    # Revoke, with the confirmation step.
    response = follow(page, f"Revoke {token_name}")
    assert response.headers["cache-control"] == "no-store"
    assert page.inner_text("h1") == f"Revoke token “{token_name}”?"
    assert "stop working" in page.inner_text("main")
    tab_to(page, "e => e.tagName === 'BUTTON' && e.textContent.trim() === 'Revoke token'")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/account/api-tokens/")
    assert f"Token “{token_name}” is revoked" in page.inner_text("#flash")
    row = page.get_by_role("table").get_by_role("row", name=re.compile(re.escape(token_name)))
    assert "revoked" in row.inner_text()
    assert row.get_by_role("link", name=f"Revoke {token_name}").count() == 0

    # The API refuses it now.
    for url in (live_server.url + "/api/v1/studies", table_url + "?limit=5"):
        status, body, headers = api_get(url, secret)
        assert status == 401, (url, status, body)
        assert body["error"]["status"] == 401
        assert headers["www-authenticate"].startswith("Bearer")  # (case-insensitive)


# ---- a layout problem found while writing these tests (legend widths, now measured per character) --


LEGEND_OVERLAPS = """() => [...document.querySelectorAll('svg.fid-chart .chart-legend')].flatMap(g => {
  const labels = [...g.querySelectorAll('.legend-label')];
  const marks = [...g.children].filter(e => !e.classList.contains('legend-label'));
  return labels.flatMap((t, i) => {
    const next = marks[i + 1];
    if (!next) return [];
    const a = t.getBBox(), b = next.getBBox();
    const sameRow = Math.abs((b.y + b.height / 2) - (a.y + a.height / 2)) < 8;
    return sameRow && b.x > a.x && b.x < a.x + a.width
      ? [`${g.closest('svg').id}: "${t.textContent}" runs into the next legend entry`] : [];
  });
})"""


def test_chart_legend_labels_do_not_overlap(browser_page, live_server):
    page = browser_page
    log_in(page, COORDINATOR, live_server.passwords[COORDINATOR])
    study_url, _ = listed_study(page, FIDELITY_STUDY)
    overlaps = []
    for path in ("/fidelity", "/quality"):  # bar legends, line legends
        page.goto(study_url + path)
        overlaps += page.evaluate(LEGEND_OVERLAPS)
    assert not overlaps, overlaps
