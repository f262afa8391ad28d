"""Helpers for the browser tests (keyboard login, reading the coding page)."""

from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
STUDY = "MBT demo study"
RATER = "rater1@demo.example.org"
COORDINATOR = "coordinator@demo.example.org"


def log_in(page, email: str, password: str) -> None:
    """Sign in by keyboard: the e-mail field has focus, Tab to the password, Enter."""
    page.goto("/auth/login")
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/auth/login" not in page.url, page.inner_text("main")


def assignment_links(page) -> dict[str, str]:
    """Session label → coding page URL, from the rater's queue."""
    page.goto("/assignments/")
    return dict(page.eval_on_selector_all(
        "table.queue tbody tr",
        "rows => rows.map(r => [r.cells[0].textContent.trim(), r.querySelector('a').getAttribute('href')])",
    ))


def row_codes(page) -> dict[str, str]:
    """utterance id → data-code of every codable row."""
    return dict(page.eval_on_selector_all(
        "li.utt.codable", "rows => rows.map(r => [r.dataset.uid, r.dataset.code])"))


def wait_all_saved(page, timeout: float = 5000) -> None:
    page.wait_for_function(
        "() => document.getElementById('save-summary').textContent.includes('all changes saved')"
        " && !document.querySelector('li.utt.unsaved')",
        timeout=timeout,
    )


def coding_config(page) -> dict:
    """The coding page's key and label tables (the legend's data)."""
    return page.evaluate("JSON.parse(document.getElementById('coding-config').textContent)")


def current_row(page) -> dict:
    """The selected utterance: uid, code set, code, position."""
    return page.evaluate(
        "() => { const r = document.querySelector('li.utt.current');"
        " return {uid: r.dataset.uid, codeSet: r.dataset.codeSet || null, code: r.dataset.code,"
        " pos: r.querySelector('.pos').textContent, focused: document.activeElement === r}; }"
    )


def open_coding_page(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("li.utt.current")


# ---- keyboard and screenshots (the fidelity, quality, export and API token pages) ----------


def focused(page, predicate: str) -> bool:
    """Whether ``predicate`` (JS, of the focused element) holds."""
    return page.evaluate(f"() => {{ const e = document.activeElement; return !!e && ({predicate})(e); }}")


def tab_to(page, predicate: str, *, limit: int = 80) -> None:
    """Press Tab until ``predicate`` (JS, of the focused element) holds."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if focused(page, predicate):
            return
    raise AssertionError(f"Tab never reached: {predicate}")


def tab_to_link(page, text: str, *, limit: int = 80) -> None:
    """Tab to the first link whose visible text (or aria-label) is ``text``."""
    tab_to(page, f"e => e.tagName === 'A' && (e.getAttribute('aria-label') || e.textContent.trim()) === {text!r}",
           limit=limit)


def screenshot(page, name: str) -> None:
    # caret="initial": Playwright's caret hiding leaves style="" on inputs, which htmx would
    # copy onto swapped content (a CSP violation of the test's own making)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True, caret="initial")


def sign_out(page) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
