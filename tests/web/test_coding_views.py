"""The coding workspace over HTTP: rows, saves, conflicts, locks, submit, reopen, CSRF, escaping."""

from __future__ import annotations

import html as html_lib
import json
import re
import threading

import markupsafe
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import Assignment, AuditEvent
from mbtcode.services.assignments import submit
from mbtcode.services.coding import codes_by_utterance, record_code
from tests.conftest import (
    check_each,
    code_everything,
    csrf_token_from,
    rate_everything,
    row_counts,
)
from tests.web.conftest import XSS_ATTR, XSS_SCRIPT, page_token


def _hx_post(browser, url: str, data: dict, *, token: str | None = None):
    """A POST as htmx / coding.js sends it: HX-Request and the CSRF token in a header."""
    headers = {"HX-Request": "true"}
    if token is not False:
        headers["X-CSRFToken"] = token or page_token(browser)
    return browser.post(url, data=data, headers=headers)


def _save(browser, w, position: int, code: str | None = None, *, version: int = 0,
          note: str | None = None, assignment=None, token=None):
    a = assignment or w.a
    field = "note" if note is not None else "code"
    url = f"/assignments/{a.id}/utterances/{w.utterance(position).id}/{field}"
    value = note if note is not None else (code or "")
    return _hx_post(browser, url, {field: value, "version": str(version)}, token=token)


def _stored(w, assignment=None) -> dict[int, tuple]:
    """position -> (code, note, version) as stored now."""
    db.session.expire_all()
    by_id = {u.id: u.position for u in w.utterances}
    return {by_id[uid]: (r.code, r.note, r.version)
            for uid, r in codes_by_utterance(assignment or w.a).items()}


def _text(response) -> str:
    return response.get_data(as_text=True)


def _submit_done(w):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)


# --------------------------------------------------------------------------- the page


def _part(body: str, cls: str) -> str | None:
    found = re.search(rf'class="{cls}(?: [^"]*)?"[^>]*>([^<]*)<', body)
    return found.group(1).strip() if found else None


def _rows(page: str) -> list[dict]:
    """Each utterance row of the coding page: what it shows, read by class name."""
    rows = []
    for attrs, body in re.findall(r'<li id="u\d+" class="utt([^>]*)>(.*?)</li>', page, re.DOTALL):
        code_set = re.search(r'data-code-set="([^"]+)"', attrs)
        rows.append({"pos": _part(body, "pos"), "time": _part(body, "time"),
                     "speaker": _part(body, "speaker"), "role": _part(body, "role-name"),
                     "text": html_lib.unescape(_part(body, "text")),
                     "code_set": code_set.group(1) if code_set else None})
    return rows


def test_workspace_shows_every_utterance_with_speaker_role_and_time(w, rater):
    page = _text(rater.get(f"/assignments/{w.a.id}"))
    assert _rows(page) == [
        {"pos": "1", "time": "0:01", "speaker": "T", "role": "therapist",
         "text": "How was your week?", "code_set": "intervention-spectrum"},
        {"pos": "2", "time": "0:09", "speaker": "P", "role": "patient",
         "text": "He never listens, I just know it.", "code_set": "nonmentalizing-modes"},
        {"pos": "3", "time": "0:15", "speaker": "T", "role": "therapist",
         "text": "What makes you so sure?", "code_set": "intervention-spectrum"},
        {"pos": "4", "time": "0:21", "speaker": "P", "role": "patient",
         "text": "I can tell from his face.", "code_set": "nonmentalizing-modes"},
        {"pos": "5", "time": "0:30", "speaker": "Obs", "role": "other",
         "text": "(door opens)", "code_set": None},
        {"pos": "6", "time": "0:41", "speaker": "T", "role": "therapist",
         "text": "Let's stay with that for a moment.", "code_set": "intervention-spectrum"},
    ]


def test_workspace_shows_the_key_legend_of_both_code_sets(w, rater):
    from mbtcode.services.schemes import as_scheme

    page = _text(rater.get(f"/assignments/{w.a.id}"))
    for code_set in as_scheme(w.study.scheme_version).code_sets:
        legend = re.search(rf'<section class="legend" data-code-set="{code_set.id}">(.*?)</section>',
                           page, re.DOTALL).group(1)
        shown = re.findall(r'data-code="([^"]+)"[^>]*><kbd>([^<]+)</kbd>', legend)
        assert shown == [(c.id, c.key) for c in code_set.codes]
    assert "<kbd>j</kbd>" in page and "<kbd>n</kbd>" in page


def test_workspace_shows_progress_and_the_raters_own_codes(w, rater):
    assert _save(rater, w, 1, "EV").status_code == 200
    page = _text(rater.get(f"/assignments/{w.a.id}"))
    assert '<span id="n-coded">1</span> of <span id="n-codable">5</span>' in page
    row = re.search(r'<li id="u1" .*?</li>', page, re.DOTALL).group(0)
    assert 'data-code="EV"' in row and 'data-version="1"' in row and "EV · " in row


def test_coding_config_carries_keys_and_labels_as_json(w, rater):
    page = _text(rater.get(f"/assignments/{w.a.id}"))
    raw = re.search(r'<script type="application/json" id="coding-config">(.*?)</script>', page,
                    re.DOTALL).group(1)
    config = json.loads(raw)
    assert config["keys"]["intervention-spectrum"]["1"] == "EV"
    assert config["keys"]["nonmentalizing-modes"]["e"] == "PE"
    assert config["csrf"] == "/auth/csrf" and config["login"] == "/auth/login"


# --------------------------------------------------------------------------- saving


def test_saving_a_code_returns_the_row_fragment_with_the_new_version(w, rater):
    response = _save(rater, w, 1, "EV")
    assert response.status_code == 200
    body = _text(response)
    assert body.startswith('<li id="u1" ') and "<html" not in body
    assert 'data-version="1"' in body and 'data-code="EV"' in body and "saved" in body
    assert _stored(w) == {1: ("EV", "", 1)}


def test_saving_again_with_the_new_version_works(w, rater):
    _save(rater, w, 1, "EV")
    response = _save(rater, w, 1, "SUP", version=1)
    assert response.status_code == 200 and 'data-version="2"' in _text(response)
    assert _stored(w) == {1: ("SUP", "", 2)}


def test_clearing_a_code_by_posting_an_empty_value(w, rater):
    _save(rater, w, 1, "EV")
    response = _save(rater, w, 1, "", version=1)
    assert response.status_code == 200 and 'data-code=""' in _text(response)
    assert _stored(w) == {1: (None, "", 2)}


def test_saving_a_note(w, rater):
    response = _save(rater, w, 2, note="line 1\r\nline 2")
    assert response.status_code == 200
    assert '<p class="note">line 1\nline 2</p>' in _text(response)
    assert _stored(w) == {2: (None, "line 1\nline 2", 1)}


def test_invalid_utf8_in_a_note_does_not_crash(w, rater):
    token = page_token(rater)
    url = f"/assignments/{w.a.id}/utterances/{w.utterance(1).id}/note"
    response = rater.post(url, data=b"version=0&note=%FF%FEok%00",
                          content_type="application/x-www-form-urlencoded",
                          headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code in (200, 400, 422)
    if response.status_code == 200:
        assert "\x00" not in _stored(w)[1][1]


def test_the_row_can_be_fetched_as_stored(w, rater):
    _save(rater, w, 1, "EV")
    response = rater.get(f"/assignments/{w.a.id}/utterances/{w.utterance(1).id}",
                         headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'data-version="1"' in _text(response) and 'data-code="EV"' in _text(response)


# --------------------------------------------------------------------------- conflicts (G1)


def test_two_tabs_the_stale_save_is_a_409_showing_both_values(w, rater, client_for):
    tab2 = client_for(w.rater_a)
    _save(rater, w, 1, "EV")                             # both tabs now show v1
    assert _save(rater, w, 1, "SUP", version=1).status_code == 200   # tab 1: v1 -> v2
    response = _save(tab2, w, 1, "CLA", version=1)       # tab 2 still at v1
    assert response.status_code == 409
    body = _text(response)
    assert 'class="conflict"' in body
    assert "Your choice: <b>Clarification" in body or re.search(r"Your choice: <b>[^<]+</b>", body)
    mine = re.search(r"Your choice: <b>([^<]+)</b>", body).group(1)
    saved = re.search(r"saved now: <b>([^<]+)</b>", body).group(1)
    assert "CLA" in _label_ids(w, mine) and "SUP" in _label_ids(w, saved)
    assert 'data-version="2"' in body and 'data-code="SUP"' in body
    assert 'data-action="keep-mine"' in body and 'data-value="CLA"' in body
    assert _stored(w) == {1: ("SUP", "", 2)}


def _label_ids(w, label: str) -> set[str]:
    from mbtcode.services.schemes import as_scheme

    return {c.id for cs in as_scheme(w.study.scheme_version).code_sets for c in cs.codes
            if html_lib.unescape(label) == c.label}


def test_the_same_stale_save_twice_is_refused_twice(w, rater):
    _save(rater, w, 1, "EV")
    assert _save(rater, w, 1, "SUP", version=1).status_code == 200
    assert _save(rater, w, 1, "CLA", version=1).status_code == 409
    assert _save(rater, w, 1, "CLA", version=1).status_code == 409
    assert _stored(w) == {1: ("SUP", "", 2)}


def test_a_first_save_from_a_second_tab_does_not_overwrite(w, rater, client_for):
    tab2 = client_for(w.rater_a)
    _save(rater, w, 1, "EV")
    response = _save(tab2, w, 1, "SUP", version=0)
    assert response.status_code == 409
    assert _stored(w) == {1: ("EV", "", 1)}


def test_a_note_conflict_keeps_both_texts(w, rater):
    _save(rater, w, 1, note="saved text")
    _save(rater, w, 1, note="newer text", version=1)
    response = _save(rater, w, 1, note="my text", version=1)
    assert response.status_code == 409
    body = _text(response)
    assert '<p class="note">newer text</p>' in body
    assert '<textarea class="mine" readonly aria-label="Your note">my text</textarea>' in body
    assert _stored(w) == {1: (None, "newer text", 2)}


# --------------------------------------------------------------------------- refusals


def test_a_bad_code_is_422_with_the_row_and_nothing_written(w, rater):
    before = row_counts()
    token = page_token(rater)

    def check(case):
        position, code = case
        response = _save(rater, w, position, code, token=token)
        assert response.status_code == 422, response.status_code
        body = _text(response)
        assert body.startswith(f'<li id="u{position}" ') and 'class="save-state bad"' in body
        assert row_counts() == before

    check_each([(1, "PE"), (2, "EV"), (1, "GI"), (5, "EV"), (1, "x" * 100)], check)


def test_a_note_over_the_limit_is_422(w, rater):
    before = row_counts()
    response = _save(rater, w, 1, note="x" * 10_001)
    assert response.status_code == 422 and "too long" in _text(response)
    assert row_counts() == before


def test_a_malformed_version_is_422_and_nothing_written(w, rater):
    token = page_token(rater)
    _save(rater, w, 1, "EV", token=token)
    before = row_counts()

    def check(version):
        response = _hx_post(rater, f"/assignments/{w.a.id}/utterances/{w.utterance(1).id}/code",
                            {"code": "SUP", "version": version}, token=token)
        assert response.status_code == 422, response.status_code
        assert row_counts() == before and _stored(w) == {1: ("EV", "", 1)}

    check_each(["abc", "-1", "", "1.0", "\u0663", "9999999999", " 1", "1e3", "0x1"], check)


def test_an_utterance_of_another_session_is_404(w, rater):
    foreign = db.session.scalars(w.other_session.transcript.utterances.select()).first()
    before = row_counts()
    for suffix in ("/code", "/note"):
        response = _hx_post(rater, f"/assignments/{w.a.id}/utterances/{foreign.id}{suffix}",
                            {"code": "EV", "note": "x", "version": "0"})
        assert response.status_code == 404
    assert rater.get(f"/assignments/{w.a.id}/utterances/{foreign.id}").status_code == 404
    assert row_counts() == before


def test_after_submit_a_save_is_409_locked(w, rater):
    _submit_done(w)
    assert rater.post(f"/assignments/{w.a.id}/submit", data={"csrf_token": page_token(rater)}
                      ).status_code == 303
    before = row_counts()
    response = _save(rater, w, 1, "SUP", version=1)
    assert response.status_code == 409
    assert "locked" in _text(response) and 'class="conflict"' not in _text(response)
    assert _save(rater, w, 1, note="late", version=1).status_code == 409
    assert row_counts() == before


def test_a_submitted_workspace_is_read_only(w, rater):
    _submit_done(w)
    rater.post(f"/assignments/{w.a.id}/submit", data={"csrf_token": page_token(rater)})
    page = _text(rater.get(f"/assignments/{w.a.id}"))
    assert 'data-locked="true"' in page and "submitted and locked" in page
    assert all(" disabled" in b for b in re.findall(r'<button type="button" class="code-btn[^>]*>',
                                                    page))


# --------------------------------------------------------------------------- submit


def test_submit_page_lists_missing_ratings_and_uncoded_utterances(w, rater):
    code_everything(w.a, w.rater_a, skip=(3, 6))
    rate_everything(w.a, w.rater_a, skip={("1", "competence"), ("2", "adherence")})
    page = _text(rater.get(f"/assignments/{w.a.id}/submit"))
    missing = re.search(r"Ratings still missing \((\d+)\)</h2>\s*<ul>(.*?)</ul>", page, re.DOTALL)
    assert missing.group(1) == "2"
    items = re.findall(r"<li><a [^>]*>([^<]+)</a>: ([^<]+)</li>", missing.group(2))
    assert items == [("1. Engagement, interest and warmth", "competence / quality"),
                     ("2. Exploration, curiosity and a not-knowing stance", "adherence")]
    assert "Uncoded utterances (2)" in page
    assert re.findall(r'href="[^"]*#u(\d+)">#\d+</a>', page) == ["3", "6"]
    assert re.search(r'<button type="submit" class="primary" disabled>', page)


def test_an_incomplete_submit_is_422_and_changes_nothing(w, rater):
    code_everything(w.a, w.rater_a)
    before = row_counts()
    response = rater.post(f"/assignments/{w.a.id}/submit", data={"csrf_token": page_token(rater)})
    assert response.status_code == 422
    assert "Ratings still missing (33)" in _text(response)
    assert row_counts() == before
    assert db.session.get(Assignment, w.a.id).status == "assigned"


def test_uncoded_utterances_need_the_explicit_checkbox(w, rater):
    code_everything(w.a, w.rater_a, skip=(4,))
    rate_everything(w.a, w.rater_a)
    response = rater.post(f"/assignments/{w.a.id}/submit", data={"csrf_token": page_token(rater)})
    assert response.status_code == 422 and 'name="allow_uncoded"' in _text(response)
    response = rater.post(f"/assignments/{w.a.id}/submit",
                          data={"csrf_token": page_token(rater), "allow_uncoded": "1"})
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.get(Assignment, w.a.id).status == "submitted"


def test_a_complete_submit_locks_and_goes_back_to_the_queue(w, rater):
    _submit_done(w)
    response = rater.post(f"/assignments/{w.a.id}/submit", data={"csrf_token": page_token(rater)})
    assert response.status_code == 303 and response.headers["Location"] == "/assignments/"
    db.session.expire_all()
    assert db.session.get(Assignment, w.a.id).status == "submitted"
    assert "submitted" in _text(rater.get("/assignments/"))


def _submits() -> int:
    return len(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "assignment.submit")).all())


def test_double_submit_creates_one_submission(w, rater):
    _submit_done(w)
    version = db.session.get(Assignment, w.a.id).version
    token = page_token(rater)
    first = rater.post(f"/assignments/{w.a.id}/submit", data={"csrf_token": token})
    second = rater.post(f"/assignments/{w.a.id}/submit", data={"csrf_token": token})
    assert (first.status_code, second.status_code) == (303, 303)
    db.session.expire_all()
    assert _submits() == 1
    assert db.session.get(Assignment, w.a.id).version == version + 1


def test_parallel_submits_create_one_submission(app, w, client_for):
    """Two identical POSTs at the same moment (a double click): exactly one submission."""
    from flask.testing import FlaskClient

    _submit_done(w)
    browsers = [client_for(w.rater_a), client_for(w.rater_a)]
    tokens = [page_token(b) for b in browsers]
    url = f"/assignments/{w.a.id}/submit"
    db.session.commit()
    barrier = threading.Barrier(2)
    results: list = []

    def post(browser, token):
        barrier.wait()
        # The plain client: these threads have no test app context to commit first.
        response = FlaskClient.open(browser, url, method="POST",
                                    data={"csrf_token": token})
        results.append(response.status_code)

    threads = [threading.Thread(target=post, args=pair) for pair in zip(browsers, tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [303, 303]
    db.session.expire_all()
    assert _submits() == 1
    assert db.session.get(Assignment, w.a.id).status == "submitted"


def test_get_on_the_submit_page_changes_nothing(w, rater):
    _submit_done(w)
    before = row_counts()
    assert rater.get(f"/assignments/{w.a.id}/submit").status_code == 200
    assert row_counts() == before
    assert db.session.get(Assignment, w.a.id).status == "assigned"


# --------------------------------------------------------------------------- reopen


def _reopen(browser, assignment_id, reason):
    token = csrf_token_from(_text(browser.get("/studies/")))
    return browser.post(f"/assignments/{assignment_id}/reopen",
                        data={"csrf_token": token, "reason": reason})


def test_coordinator_reopens_with_a_reason_and_the_rater_can_edit_again(w, rater, client_for):
    _submit_done(w)
    rater.post(f"/assignments/{w.a.id}/submit", data={"csrf_token": page_token(rater)})
    coordinator = client_for(w.coordinator)
    response = _reopen(coordinator, w.a.id, "Item 3 needs a second look")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/studies/{w.study.id}"
    db.session.expire_all()
    assert db.session.get(Assignment, w.a.id).status == "assigned"
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "assignment.reopen")).one()
    assert (event.reason, event.actor_id) == ("Item 3 needs a second look", w.coordinator.id)
    assert _save(rater, w, 1, "SUP", version=1).status_code == 200
    assert _stored(w)[1] == ("SUP", "", 2)


def test_reopen_without_a_reason_keeps_the_lock(w, rater, client_for):
    _submit_done(w)
    rater.post(f"/assignments/{w.a.id}/submit", data={"csrf_token": page_token(rater)})
    coordinator = client_for(w.coordinator)

    def check(reason):
        response = _reopen(coordinator, w.a.id, reason)
        assert response.status_code == 303
        assert "state a reason" in _text(coordinator.get(f"/studies/{w.study.id}"))
        db.session.expire_all()
        assert db.session.get(Assignment, w.a.id).status == "submitted"
        assert _save(rater, w, 1, "SUP", version=1).status_code == 409

    check_each(["", "  ", "ok"], check)


def test_the_study_page_offers_reopen_for_submitted_assignments(w, rater, client_for):
    _submit_done(w)
    rater.post(f"/assignments/{w.a.id}/submit", data={"csrf_token": page_token(rater)})
    page = _text(client_for(w.coordinator).get(f"/studies/{w.study.id}"))
    assert f'action="/assignments/{w.a.id}/reopen"' in page
    assert f'action="/assignments/{w.b.id}/withdraw"' in page


# --------------------------------------------------------------------------- methods, CSRF


def test_get_on_a_mutation_url_is_405(w, rater):
    before = row_counts()

    def check(path):
        url = path.format(a=w.a.id, u=w.utterance(1).id, s=w.study.id)
        response = rater.get(url + "?code=EV&version=0&value=4&text=x&reason=because")
        assert response.status_code == 405, response.status_code
        assert row_counts() == before

    check_each([
        "/assignments/{a}/utterances/{u}/code",
        "/assignments/{a}/utterances/{u}/note",
        "/assignments/{a}/rating/mbt-acs/2/adherence",
        "/assignments/{a}/rating/mbt-acs/2/rationale",
        "/assignments/{a}/reopen",
        "/assignments/{a}/withdraw",
        "/studies/{s}/assignments",
        "/studies/{s}/members",
        "/auth/logout",
    ], check)


def test_an_htmx_save_without_csrf_token_is_400_and_writes_nothing(w, rater):
    before = row_counts()

    def check(field):
        response = _hx_post(rater, f"/assignments/{w.a.id}/utterances/{w.utterance(1).id}/{field}",
                            {field: "EV", "version": "0"}, token=False)
        assert response.status_code == 400, response.status_code
        assert response.headers["X-Mbtcode-Error"] == "csrf"
        assert row_counts() == before

    check_each(["code", "note"], check)


def test_a_save_with_a_forged_token_is_400(w, rater):
    before = row_counts()
    response = _save(rater, w, 1, "EV", token="forged.token")
    assert response.status_code == 400 and row_counts() == before


def test_a_token_of_another_user_is_400(w, rater, client_for):
    other_token = page_token(client_for(w.rater_b))
    response = _save(rater, w, 1, "EV", token=other_token)
    assert response.status_code == 400 and _stored(w) == {}


def test_submit_without_csrf_token_is_400_and_does_not_lock(w, rater):
    _submit_done(w)
    assert rater.post(f"/assignments/{w.a.id}/submit").status_code == 400
    assert db.session.get(Assignment, w.a.id).status == "assigned"


def test_a_fresh_token_from_auth_csrf_works_for_saves(w, rater):
    """C5: the page refreshes its token instead of losing the rater's work."""
    response = rater.get("/auth/csrf", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert _save(rater, w, 1, "EV", token=response.get_json()["token"]).status_code == 200


# --------------------------------------------------------------------------- escaping


def test_a_note_is_escaped_in_every_fragment(w, rater):
    token = page_token(rater)

    def check(case):
        position, payload = case
        saved = _save(rater, w, position, note=payload, token=token)
        conflict = _save(rater, w, position, note=payload + "!", version=0, token=token)
        page = rater.get(f"/assignments/{w.a.id}")
        row = rater.get(f"/assignments/{w.a.id}/utterances/{w.utterance(position).id}")
        assert conflict.status_code == 409
        escaped = str(markupsafe.escape(payload))
        for response in (saved, conflict, page, row):
            body = _text(response)
            assert payload not in body
            assert "<script>alert" not in body and "<img src=x" not in body
            assert escaped in body

    check_each([(1, XSS_SCRIPT), (2, XSS_ATTR), (3, "<img src=x onerror=alert(1)>")], check)


def test_the_conflict_keep_mine_attribute_is_escaped(w, rater):
    _save(rater, w, 1, "EV")
    response = _save(rater, w, 1, XSS_ATTR, version=0)
    assert response.status_code == 409
    assert 'onfocus="alert(1)"' not in _text(response)


def test_a_code_label_reaching_the_json_block_cannot_end_the_script(app, make_user, make_member,
                                                                    make_session, client_for,
                                                                    make_assignment):
    """B6: the codebook in the page's JSON block is escaped (\\u003c/script)."""
    from mbtcode.io.schemes import parse_scheme
    from mbtcode.services.schemes import register_scheme
    from mbtcode.services.studies import create_study
    from tests.conftest import MINIMAL_SCHEME

    doc = json.loads(json.dumps(MINIMAL_SCHEME))
    doc["code_sets"][0]["codes"][0]["label"] = "</script><script>alert(1)</script>"
    register_scheme(parse_scheme(json.dumps(doc).encode(), "evil.json"), actor=None)
    study = create_study("Evil codebook", actor=None, scheme_ref="test-scheme")
    db.session.commit()
    session = make_session(study, ["T: hello", "P: hi"])
    rater = make_user("rater")
    a = make_assignment(session, rater)
    page = _text(client_for(rater).get(f"/assignments/{a.id}"))
    block = re.search(r'<script type="application/json" id="coding-config">(.*?)</script>',
                      page, re.DOTALL).group(1)
    assert "\\u003c/script\\u003e" in block
    assert json.loads(block)["labels"]["moves"]["VAL"] == "VAL · </script><script>alert(1)</script>"
    assert "<script>alert(1)" not in page


# --------------------------------------------------------------------------- sizes, ids, typing


def test_a_one_megabyte_note_is_refused_without_a_500(w, rater):
    """E6: the form limit (413) or the note limit (422) answers; nothing is written."""
    before = row_counts()
    response = _save(rater, w, 1, note="x" * 1_000_000)
    assert response.status_code in (413, 422)
    assert row_counts() == before


def test_two_thousand_form_fields_never_cause_a_500(w, rater):
    """E6: multipart bodies are capped at MAX_FORM_PARTS (413). Werkzeug applies that cap to
    multipart only; an urlencoded body is bounded by MAX_FORM_MEMORY_SIZE, and its extra
    fields are ignored."""
    url = f"/assignments/{w.a.id}/utterances/{w.utterance(1).id}/code"
    data = {f"f{i}": "x" for i in range(2000)}
    before = row_counts()
    multipart = rater.post(url, data={**data, "code": "EV", "version": "0"},
                           content_type="multipart/form-data",
                           headers={"HX-Request": "true", "X-CSRFToken": page_token(rater)})
    assert multipart.status_code == 413
    assert row_counts() == before
    plain = _hx_post(rater, url, {**data, "code": "EV", "version": "0"})
    assert plain.status_code == 200
    assert _stored(w) == {1: ("EV", "", 1)}


def test_odd_assignment_ids_are_404(w, rater):
    """E9."""
    def check(path):
        assert rater.get(path).status_code == 404

    check_each(["/assignments/abc", "/assignments/-1", "/assignments/0",
                "/assignments/99999999999999999999", "/assignments/2147483648",
                "/assignments/1.0", f"/assignments/{w.a.id}/utterances/-1",
                f"/assignments/{w.a.id}/utterances/99999999999999999999",
                "/assignments/99999999999999999999/rating/"], check)


def test_rapid_saves_end_with_the_last_value_and_rising_versions(w, rater):
    """G2: each save carries the version the previous one returned; a late, stale one loses."""
    token = page_token(rater)
    versions, version = [], 0
    for text in ["H", "He", "Hel", "Hell", "Hello", "Hello!"]:
        response = _save(rater, w, 1, note=text, version=version, token=token)
        assert response.status_code == 200
        version = int(re.search(r'data-version="(\d+)"', _text(response)).group(1))
        versions.append(version)
    assert versions == [1, 2, 3, 4, 5, 6]
    late = _save(rater, w, 1, note="Hell", version=4, token=token)   # arrives out of order
    assert late.status_code == 409
    assert _stored(w) == {1: (None, "Hello!", 6)}


def test_line_separators_in_a_note_render(w, rater):
    """E7: U+2028/U+2029 are kept and rendered as text."""
    response = _save(rater, w, 1, note="one\u2028two\u2029three")
    assert response.status_code == 200
    assert "one\u2028two\u2029three" in _text(response)


# --------------------------------------------------------------------------- coordinator


def _coordinator_post(browser, url, data):
    token = csrf_token_from(_text(browser.get("/studies/")))
    return browser.post(url, data={**data, "csrf_token": token})


def test_coordinator_assigns_many_sessions_to_many_raters_at_once(w, client_for, make_session):
    s2, s3 = make_session(w.study), make_session(w.study)
    coordinator = client_for(w.coordinator)
    token = csrf_token_from(_text(coordinator.get("/studies/")))
    response = coordinator.post(f"/studies/{w.study.id}/assignments", data={
        "csrf_token": token, "session_id": [str(s2.id), str(s3.id), str(w.session.id)],
        "rater_id": [str(w.rater_a.id), str(w.rater_b.id)]})
    assert response.status_code == 303
    assert "4 new assignment(s)" in _text(coordinator.get(f"/studies/{w.study.id}"))
    db.session.expire_all()
    pairs = set(db.session.execute(select(Assignment.session_id, Assignment.rater_id)).all())
    assert pairs == {(s.id, r.id) for s in (w.session, s2, s3) for r in (w.rater_a, w.rater_b)}


def test_coordinator_sees_status_and_progress_of_each_assignment(w, client_for, make_session,
                                                                 make_assignment):
    s2 = make_session(w.study)
    make_assignment(s2, w.rater_a)                           # not started
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    submit(w.a, actor=w.rater_a)                             # submitted
    record_code(w.b, w.utterance(1), "EV", expected_version=0, actor=w.rater_b)   # started
    db.session.commit()
    page = _text(client_for(w.coordinator).get(f"/studies/{w.study.id}"))
    chips = [" ".join(c.split()) for c in
             re.findall(r'<span class="chip status-\w+">(.*?)</span>', page, re.DOTALL)]
    assert chips == ["Alice Rater: submitted", "Bertha Blindtest: 3%", "Alice Rater: not started"]
    rows = re.findall(r"<td>([^<]+)</td>\s*<td>([^<]+)</td>\s*<td><span class=\"status status-"
                      r"(\w+)\">\w+</span>.*?</td>\s*<td>([^<]+)</td>", page, re.DOTALL)
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("Alice Rater", "submitted", "5/5 coded, 33/33 rated"),
        ("Bertha Blindtest", "assigned", "1/5 coded, 0/33 rated"),
        ("Alice Rater", "assigned", "0/6 coded, 0/33 rated")]


def test_coordinator_adds_a_member_by_email(w, client_for, make_user):
    newcomer = make_user("rater", name="Nina Newcomer")
    coordinator = client_for(w.coordinator)
    response = _coordinator_post(coordinator, f"/studies/{w.study.id}/members",
                                 {"email": newcomer.email.upper(), "role": "rater"})
    assert response.status_code == 303
    page = _text(coordinator.get(f"/studies/{w.study.id}"))
    assert "Nina Newcomer is now a rater in this study." in page
    assert f'name="rater_id" value="{newcomer.id}"' in page


def test_adding_an_unknown_email_or_role_changes_nothing(w, client_for):
    coordinator = client_for(w.coordinator)
    before = row_counts()
    _coordinator_post(coordinator, f"/studies/{w.study.id}/members",
                      {"email": "nobody@example.org", "role": "rater"})
    _coordinator_post(coordinator, f"/studies/{w.study.id}/members",
                      {"email": w.outsider.email, "role": "admin"})
    assert row_counts() == before


def test_a_rater_moved_to_another_role_no_longer_reads_old_transcripts(coding_world, client_for):
    """Reading a transcript by assignment needs the rater role now, not just an old assignment."""
    from mbtcode.services.permissions import add_member

    w = coding_world
    url = f"/studies/{w.study.id}/sessions/{w.session.id}"
    rater = client_for(w.rater_a)
    assert rater.get(url).status_code == 200
    add_member(w.study, w.rater_a, "analyst", actor=w.coordinator)
    db.session.commit()
    assert rater.get(url).status_code == 404
