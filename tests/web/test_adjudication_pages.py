"""The adjudication pages over HTTP: access, blinding, the side-by-side view, resolving
codes and ratings (htmx and plain forms), conflicts, finalize/reopen/discard, escaping."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import (
    Assignment,
    AuditEvent,
    Consensus,
    ConsensusCode,
    ConsensusRating,
    ItemRating,
    UtteranceCode,
)
from mbtcode.services import ServiceError
from mbtcode.services.assignments import assign_sessions, submit
from mbtcode.services.coding import codes_by_utterance, record_code, record_note
from mbtcode.services.double_coding import update_settings
from mbtcode.services.permissions import add_member
from mbtcode.services.ratings import ratings_of, record_rating
from mbtcode.services.sessions import all_utterances
from tests.conftest import code_everything, csrf_token_from, rate_everything, row_counts
from tests.web.conftest import XSS_SCRIPT

AGREED_TEXT = "What makes you so sure?"  # position 3: both raters code it EV
#: Rater B differs from rater A (EV / MENT everywhere, 4 on every rating) here:
B_CODES = {1: "SUP", 2: "PE"}
B_RATINGS = {("2", "adherence"): "6", ("3", "competence"): "na"}
N_UNITS = 5 + 33  # codable utterances + required ratings


# --------------------------------------------------------------------------- helpers


def _text(response) -> str:
    return response.get_data(as_text=True)


def _recode(assignment, position: int, code: str | None, actor) -> None:
    u = all_utterances(assignment.session)[position - 1]
    row = codes_by_utterance(assignment).get(u.id)
    record_code(assignment, u, code, expected_version=row.version if row else 0, actor=actor)


def _rerate(assignment, item: str, dimension: str, value: str, actor) -> None:
    row = ratings_of(assignment).get(("mbt-acs", item, dimension))
    record_rating(assignment, "mbt-acs", item, dimension, value,
                  expected_version=row.version if row else 0, actor=actor)


def _code_and_rate(assignment, actor, codes=None, ratings=None, *, submit_it=True) -> None:
    code_everything(assignment, actor)
    rate_everything(assignment, actor)
    for position, code in (codes or {}).items():
        _recode(assignment, position, code, actor)
    for (item, dimension), value in (ratings or {}).items():
        _rerate(assignment, item, dimension, value, actor)
    if submit_it:
        assert submit(assignment, actor=actor).complete
    db.session.commit()


@pytest.fixture
def w(coding_world):
    """The coding world with both raters submitted: 2 codes and 2 ratings disagree."""
    w = coding_world
    _code_and_rate(w.a, w.rater_a)
    _code_and_rate(w.b, w.rater_b, B_CODES, B_RATINGS)
    return w


@pytest.fixture
def coord(w, client_for):
    """The coordinator's browser."""
    return client_for(w.coordinator)


def _page_url(w, session=None) -> str:
    return f"/studies/{w.study.id}/adjudication/{(session or w.session).id}"


def _code_url(w, position: int) -> str:
    return f"{_page_url(w)}/codes/{w.utterance(position).id}"


def _rating_url(w, item: str, dimension: str) -> str:
    return f"{_page_url(w)}/ratings/mbt-acs/{item}/{dimension}"


def _token(browser, w) -> str:
    return csrf_token_from(_text(browser.get(f"/studies/{w.study.id}/adjudication")))


def _post(browser, w, url, data=None, *, htmx=False, token=None):
    headers = {"HX-Request": "true"} if htmx else {}
    body = {"csrf_token": token or _token(browser, w), **(data or {})}
    return browser.post(url, data=body, headers=headers)


def _start(browser, w):
    response = _post(browser, w, f"{_page_url(w)}/start")
    assert response.status_code == 303, _text(response)
    return response


def _consensus(w) -> Consensus | None:
    db.session.expire_all()
    return db.session.scalar(select(Consensus).where(Consensus.session_id == w.session.id))


def _ccode(w, position: int) -> ConsensusCode | None:
    consensus = _consensus(w)
    return None if consensus is None else db.session.scalar(select(ConsensusCode).where(
        ConsensusCode.consensus_id == consensus.id,
        ConsensusCode.utterance_id == w.utterance(position).id))


def _crating(w, item: str, dimension: str) -> ConsensusRating | None:
    consensus = _consensus(w)
    return None if consensus is None else db.session.scalar(select(ConsensusRating).where(
        ConsensusRating.consensus_id == consensus.id, ConsensusRating.instrument == "mbt-acs",
        ConsensusRating.item == item, ConsensusRating.dimension == dimension))


def _raters_rows() -> list[tuple]:
    """Every column of every rater's code and rating row, for byte-for-byte comparison."""
    db.session.expire_all()
    tables = [UtteranceCode.__table__, ItemRating.__table__]
    return [tuple(row) for table in tables
            for row in db.session.execute(select(table).order_by(table.c.id)).all()]


def _audit(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def _section(page: str, heading_id: str) -> str:
    match = re.search(rf'<section class="adj-section" aria-labelledby="{heading_id}">(.*?)</section>',
                      page, re.DOTALL)
    assert match, f"no section {heading_id}"
    return match.group(1)


def _resolve_everything(browser, w) -> None:
    for position in B_CODES:
        assert _post(browser, w, _code_url(w, position), {"pick": str(w.a.id), "expected_version": "0"},
                     htmx=True).status_code == 200
    for item, dimension in B_RATINGS:
        assert _post(browser, w, _rating_url(w, item, dimension),
                     {"pick": str(w.a.id), "expected_version": "0"}, htmx=True).status_code == 200


# --------------------------------------------------------------------------- access


def _routes(w) -> list[tuple[str, str]]:
    page = _page_url(w)
    return [
        ("GET", f"/studies/{w.study.id}/adjudication"),
        ("GET", page),
        ("POST", f"{page}/start"),
        ("POST", _code_url(w, 1)),
        ("POST", _rating_url(w, "2", "adherence")),
        ("POST", f"{page}/finalize"),
        ("POST", f"{page}/reopen"),
        ("POST", f"{page}/discard"),
    ]


def test_anonymous_is_sent_to_login_and_background_requests_get_401(w, client):
    token = csrf_token_from(_text(client.get("/auth/login")))
    before = row_counts()
    for method, url in _routes(w):
        response = client.open(url, method=method, data={"csrf_token": token})
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"], url
        background = client.open(url, method=method, data={"csrf_token": token},
                                 headers={"HX-Request": "true"})
        assert background.status_code == 401, url
        assert "Alice Rater" not in _text(background) + _text(response)
    assert {k: v for k, v in row_counts().items() if k != "audit_event"} == \
        {k: v for k, v in before.items() if k != "audit_event"}


@pytest.mark.parametrize("who, status", [
    ("rater_a", 403), ("rater_b", 403), ("analyst", 403), ("outsider", 404)])
def test_raters_analysts_and_outsiders_never_reach_any_route(w, client_for, who, status):
    browser = client_for(getattr(w, who))
    token = csrf_token_from(_text(browser.get("/assignments/")))
    before = row_counts()
    for method, url in _routes(w):
        response = browser.open(url, method=method, data={
            "csrf_token": token, "pick": str(w.a.id), "expected_version": "0", "reason": "because",
            "confirm": "yes"})
        assert response.status_code == status, (method, url, response.status_code)
        body = _text(response)
        for secret in ("Alice Rater", "Bertha Blindtest", "He never listens", "Support / reassurance"):
            if secret != getattr(w, who).name:  # the header names whoever is signed in
                assert secret not in body, (url, secret)
    assert {k: v for k, v in row_counts().items() if k != "audit_event"} == \
        {k: v for k, v in before.items() if k != "audit_event"}


@pytest.mark.parametrize("who", ["coordinator", "admin"])
def test_coordinators_and_admins_reach_the_queue_and_the_page(w, client_for, who):
    browser = client_for(getattr(w, who))
    assert browser.get(f"/studies/{w.study.id}/adjudication").status_code == 200
    page = browser.get(_page_url(w))
    assert page.status_code == 200
    assert "Start adjudication" in _text(page)


def test_session_of_another_study_or_unknown_is_404(w, coord, make_session):
    elsewhere = f"/studies/{w.study.id}/adjudication/{w.other_session.id}"
    assert coord.get(elsewhere).status_code == 404
    assert coord.get(f"/studies/{w.study.id}/adjudication/999999").status_code == 404
    assert _post(coord, w, elsewhere + "/start").status_code == 404
    assert coord.get(f"/studies/{w.other_study.id}/adjudication").status_code == 404
    assert _consensus(w) is None


def test_unknown_utterance_or_rating_is_404(w, coord):
    _start(coord, w)
    obs = w.utterance(5)  # the observer's turn is not codable
    for url in (f"{_page_url(w)}/codes/{obs.id}", f"{_page_url(w)}/codes/{w.other_session.id * 1000}",
                f"{_page_url(w)}/ratings/mbt-acs/2/nonsense", f"{_page_url(w)}/ratings/x/2/adherence",
                f"{_page_url(w)}/ratings/mbt-acs/1/adherence"):
        response = _post(coord, w, url, {"code": "EV", "expected_version": "0"}, htmx=True)
        assert response.status_code == 404, url


def test_coordinator_who_coded_the_session_gets_the_reason_and_cannot_post(w, client_for):
    add_member(w.study, w.rater_a, "coordinator", actor=None)  # promoted after coding it
    db.session.commit()
    browser = client_for(w.rater_a)
    page = _text(browser.get(_page_url(w)))
    assert "You coded this session" in page
    for secret in ("Bertha Blindtest", "Support / reassurance", "Psychic equivalence",
                   "He never listens", "Start adjudication", "Rater 2"):
        assert secret not in page
    queue = _text(browser.get(f"/studies/{w.study.id}/adjudication"))
    assert "you coded it" in queue
    token = csrf_token_from(page)
    before = row_counts()
    for method, url in _routes(w)[2:]:
        response = browser.post(url, data={"csrf_token": token, "pick": str(w.a.id),
                                           "expected_version": "0", "reason": "because",
                                           "confirm": "yes"})
        assert response.status_code == 403, (url, response.status_code)
        assert "Bertha Blindtest" not in _text(response)
    assert {k: v for k, v in row_counts().items() if k != "audit_event"} == \
        {k: v for k, v in before.items() if k != "audit_event"}
    # Another coordinator adjudicates it; the one who coded it still cannot change it.
    coordinator = client_for(w.coordinator)
    _start(coordinator, w)
    response = _post(browser, w, _code_url(w, 1), {"pick": str(w.a.id), "expected_version": "0"},
                     htmx=True, token=token)
    assert response.status_code == 403
    assert _ccode(w, 1) is None


def test_every_post_without_a_csrf_token_is_refused(w, coord):
    _start(coord, w)
    before = row_counts()
    for method, url in _routes(w)[2:]:
        for headers in ({}, {"HX-Request": "true"}):
            response = coord.post(url, data={"pick": str(w.a.id), "expected_version": "0",
                                             "reason": "because", "confirm": "yes"}, headers=headers)
            assert response.status_code == 400, (url, headers)
            response = coord.post(url, data={"csrf_token": "forged", "pick": str(w.a.id),
                                             "expected_version": "0"}, headers=headers)
            assert response.status_code == 400, (url, headers)
    assert row_counts() == before


def test_posts_accept_the_htmx_csrf_header(w, coord):
    _start(coord, w)
    token = _token(coord, w)
    response = coord.post(_code_url(w, 1), data={"pick": str(w.b.id), "expected_version": "0"},
                          headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 200
    assert _ccode(w, 1).code == "SUP"


# --------------------------------------------------------------------------- blinding


def test_before_every_rater_submits_the_page_shows_only_the_reason(coding_world, client_for):
    w = coding_world
    _code_and_rate(w.a, w.rater_a)
    _code_and_rate(w.b, w.rater_b, B_CODES, B_RATINGS, submit_it=False)
    browser = client_for(w.coordinator)
    page = _text(browser.get(_page_url(w)))
    assert "1 of 2 raters have not submitted yet" in page
    for secret in ("Alice Rater", "Bertha Blindtest", "Rater 1", "Rater 2", "Empathic validation",
                   "Support / reassurance", "Psychic equivalence", "Mentalizing", "He never listens",
                   "How was your week", "Start adjudication", "adj-row"):
        assert secret not in page, secret
    queue = _text(browser.get(f"/studies/{w.study.id}/adjudication"))
    assert "No session is ready for adjudication" in queue
    assert "1 of 2 raters have not submitted yet" in queue
    assert "Bertha Blindtest" not in queue and "Alice Rater" not in queue
    token = csrf_token_from(page)
    response = browser.post(f"{_page_url(w)}/start", data={"csrf_token": token})
    assert response.status_code == 303
    assert _consensus(w) is None
    followed = _text(browser.get(_page_url(w)))
    assert "Not started" in followed and "have not submitted yet" in followed


def test_htmx_requests_refused_by_state_reload_the_page(coding_world, client_for):
    w = coding_world
    _code_and_rate(w.a, w.rater_a)
    browser = client_for(w.coordinator)
    response = _post(browser, w, f"{_page_url(w)}/start", htmx=True)
    assert response.status_code == 409
    assert response.headers["HX-Redirect"] == _page_url(w)
    assert _text(response) == "" and _consensus(w) is None
    response = _post(browser, w, _code_url(w, 1), {"code": "EV", "expected_version": "0"}, htmx=True)
    assert response.status_code == 409 and response.headers["HX-Redirect"].startswith(_page_url(w))
    assert "Alice Rater" not in _text(response) and "Empathic" not in _text(response)


def test_resolving_before_the_start_is_refused(w, coord):
    response = _post(coord, w, _code_url(w, 1), {"pick": str(w.a.id), "expected_version": "0"},
                     htmx=True)
    assert response.status_code == 409 and "HX-Redirect" in response.headers
    assert "has not started" in _text(coord.get(_page_url(w)))
    assert _consensus(w) is None


def test_a_consensus_of_a_session_no_longer_ready_is_hidden_but_can_be_discarded(
        w, coord, make_user, make_member):
    _start(coord, w)
    _post(coord, w, _code_url(w, 1), {"pick": str(w.b.id), "expected_version": "0"}, htmx=True)
    third = make_user("rater", name="Third Rater")
    make_member(w.study, third, "rater")
    # The service refuses new raters on an adjudicated session; a row added behind its back
    # (say, by a database restore) must still not expose or accept consensus work.
    with pytest.raises(ServiceError, match="already adjudicated"):
        assign_sessions(w.study, [w.session], [third], actor=w.coordinator)
    db.session.rollback()
    db.session.add(Assignment(study_id=w.study.id, session_id=w.session.id, rater_id=third.id))
    db.session.commit()
    page = _text(coord.get(_page_url(w)))
    assert "1 of 3 raters have not submitted yet" in page
    assert "A consensus exists" in page and "Discard consensus" in page
    for secret in ("Rater 1", "Support / reassurance", "How was your week", "adj-row"):
        assert secret not in page, secret
    response = _post(coord, w, _code_url(w, 2), {"pick": str(w.a.id), "expected_version": "0"},
                     htmx=True)
    assert response.status_code == 409 and _ccode(w, 2) is None
    response = _post(coord, w, f"{_page_url(w)}/finalize")
    assert response.status_code == 303 and _consensus(w).status == "open"
    response = _post(coord, w, f"{_page_url(w)}/discard", {"reason": "third rater added",
                                                           "confirm": "yes"})
    assert response.status_code == 303 and _consensus(w) is None


def test_a_single_coded_session_is_not_adjudicated(coding_world, client_for):
    w = coding_world
    from mbtcode.services.assignments import withdraw

    withdraw(w.b, actor=w.coordinator, reason="only one rater")
    _code_and_rate(w.a, w.rater_a)
    browser = client_for(w.coordinator)
    page = _text(browser.get(_page_url(w)))
    assert "not double-coded" in page and "Alice Rater" not in page and "adj-row" not in page


def test_rater_names_are_hidden_by_default_and_shown_when_the_study_says_so(w, client_for):
    browser = client_for(w.coordinator)
    _start(browser, w)
    page = _text(browser.get(_page_url(w)))
    assert "Rater 1" in page and "Rater 2" in page
    assert "Use Rater 1's code" in page
    assert "Alice Rater" not in page and "Bertha Blindtest" not in page
    update_settings(w.study, {"hide_rater_names": False}, actor=w.coordinator)
    db.session.commit()
    page = _text(browser.get(_page_url(w)))
    assert "Alice Rater" in page and "Bertha Blindtest" in page
    assert "Rater 1" not in page
    assert "Use Alice Rater's code" in page
    # Provenance names the rater the same way.
    response = _post(browser, w, _code_url(w, 1), {"pick": str(w.b.id), "expected_version": "0"},
                     htmx=True)
    assert "picked from Bertha Blindtest" in _text(response)
    update_settings(w.study, {"hide_rater_names": True}, actor=w.coordinator)
    db.session.commit()
    page = _text(browser.get(_page_url(w)))
    assert "picked from Rater 2" in page and "Bertha Blindtest" not in page


# --------------------------------------------------------------------------- the page


def test_page_lists_only_the_disagreements_side_by_side(w, coord):
    page = _text(coord.get(_page_url(w)))
    codes, ratings = _section(page, "codes-h"), _section(page, "ratings-h")
    assert AGREED_TEXT not in page
    assert "How was your week?" in codes and "He never listens, I just know it." in codes
    assert len(re.findall(r'<li class="adj-row adj-code', codes)) == 2
    assert len(re.findall(r'<li class="adj-row adj-rating', ratings)) == 2
    # Each rater's code (label) side by side; the preceding utterance as context.
    assert "EV · Empathic validation" in codes and "SUP · Support / reassurance" in codes
    assert "MENT · Mentalizing" in codes and "PE · Psychic equivalence" in codes
    assert re.search(r'class="adj-context">.*How was your week\?', codes)
    # Ratings: item, dimension, each value or N/A.
    assert "2. Exploration, curiosity and a not-knowing stance" in ratings
    assert "3. Challenging unwarranted beliefs" in ratings
    assert "N/A" in ratings and ">6<" in ratings
    assert "<strong>4</strong> disagreements to resolve" in page
    assert "2 of 5 utterances, 2 of 33 ratings" in page
    # Before the start there is nothing to resolve with.
    assert "adj-form" not in page and "Start adjudication" in page


def test_start_fills_in_agreement_and_shows_controls(w, coord):
    response = _start(coord, w)
    assert response.headers["Location"].endswith(_page_url(w))
    consensus = _consensus(w)
    assert consensus.status == "open" and consensus.adjudicator_id == w.coordinator.id
    assert _ccode(w, 3).basis == "agreement" and _ccode(w, 1) is None
    page = _text(coord.get(_page_url(w)))
    assert "0 of 4</strong> disagreements resolved" in page
    assert page.count('class="adj-form"') == 4
    assert "Start adjudication" not in page
    assert "Cora Coordinator" in page  # the adjudicator
    # Every control is labelled.
    for control_id in re.findall(r'<(?:select|textarea|input) id="([^"]+)"', page):
        assert f'for="{control_id}"' in page, control_id
    # Starting again changes nothing.
    _start(coord, w)
    assert len(_audit("consensus.start")) == 1


def test_queue_orders_by_disagreement_share_and_links_the_session(w, coord, make_session):
    calm = make_session(w.study)
    wild = make_session(w.study)
    assign_sessions(w.study, [calm, wild], [w.rater_a, w.rater_b], actor=w.coordinator)
    db.session.commit()
    assignments = {(a.session_id, a.rater_id): a for a in
                   db.session.scalars(select(type(w.a)).where(type(w.a).session_id.in_([calm.id, wild.id])))}
    _code_and_rate(assignments[(calm.id, w.rater_a.id)], w.rater_a)
    _code_and_rate(assignments[(calm.id, w.rater_b.id)], w.rater_b)  # full agreement
    _code_and_rate(assignments[(wild.id, w.rater_a.id)], w.rater_a)
    _code_and_rate(assignments[(wild.id, w.rater_b.id)], w.rater_b, {1: "SUP", 2: "PE", 3: "CLA"},
                   {("1", "competence"): "7", ("2", "adherence"): "1", ("2", "competence"): "2",
                    ("3", "adherence"): "3"})
    page = _text(coord.get(f"/studies/{w.study.id}/adjudication"))
    order = re.findall(r'<tr>\s*<td><a href="/studies/\d+/adjudication/(\d+)">', page)
    assert order == [str(wild.id), str(w.session.id), str(calm.id)]
    assert f"4 <span class=\"muted\">of {N_UNITS}</span>" in page
    assert f"{round(4 / N_UNITS * 100)}%" in page
    assert "to do" in page and "Adjudicate" in page
    assert "Alice Rater" not in page and "Bertha Blindtest" not in page


def test_queue_explains_an_empty_state(coding_world, client_for):
    browser = client_for(coding_world.coordinator)
    page = _text(browser.get(f"/studies/{coding_world.study.id}/adjudication"))
    assert "No session is ready for adjudication" in page
    assert "2 of 2 raters have not submitted yet" in page


# --------------------------------------------------------------------------- resolving codes


def test_pick_a_raters_code_via_htmx_returns_the_row_and_progress(w, coord):
    _start(coord, w)
    before = _raters_rows()
    response = _post(coord, w, _code_url(w, 1), {"pick": str(w.b.id), "note": "B saw it right",
                                                 "expected_version": "0"}, htmx=True)
    assert response.status_code == 200
    body = _text(response)
    assert body.lstrip().startswith(f'<li class="adj-row adj-code resolved" id="c-{w.utterance(1).id}"')
    assert 'id="adj-progress" class="adj-progress" hx-swap-oob="true"' in body
    assert "1 of 4</strong> disagreements resolved" in body
    assert "picked from Rater 2" in body and "B saw it right" in body
    assert f'id="c-{w.utterance(1).id}-pick-1"' in body  # same ids: focus stays on the row
    assert "<html" not in body
    row = _ccode(w, 1)
    assert (row.code, row.basis, row.source_assignment_id, row.note) == (
        "SUP", "picked", w.b.id, "B saw it right")
    assert 'name="expected_version" value="1"' in body
    assert _raters_rows() == before


def test_enter_a_code_or_no_code_via_htmx(w, coord):
    _start(coord, w)
    response = _post(coord, w, _code_url(w, 1), {"code": "CLA", "expected_version": "0"}, htmx=True)
    assert response.status_code == 200
    assert "CLA · Clarification" in _text(response) and "entered by the adjudicator" in _text(response)
    assert (_ccode(w, 1).code, _ccode(w, 1).basis) == ("CLA", "entered")
    response = _post(coord, w, _code_url(w, 1), {"code": "-", "note": "not an intervention",
                                                 "expected_version": "1"}, htmx=True)
    assert response.status_code == 200
    row = _ccode(w, 1)
    assert (row.code, row.basis, row.note, row.version) == (None, "entered", "not an intervention", 2)


def test_plain_form_posts_redirect_back_to_the_row(w, coord):
    _start(coord, w)
    response = _post(coord, w, _code_url(w, 2), {"pick": str(w.a.id), "expected_version": "0"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"{_page_url(w)}#c-{w.utterance(2).id}")
    assert (_ccode(w, 2).code, _ccode(w, 2).basis) == ("MENT", "picked")
    page = _text(coord.get(_page_url(w)))
    assert "Saved." in page and "1 of 4</strong> disagreements resolved" in page
    response = _post(coord, w, _rating_url(w, "2", "adherence"), {"value": "5", "expected_version": "0"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("#r-mbt-acs-2-adherence")
    assert (_crating(w, "2", "adherence").value, _crating(w, "2", "adherence").basis) == (5.0, "entered")
    # An invalid plain post redirects with the message and changes nothing.
    response = _post(coord, w, _code_url(w, 1), {"code": "NOPE", "expected_version": "0"})
    assert response.status_code == 303
    assert "is not a code of" in _text(coord.get(_page_url(w)))
    assert _ccode(w, 1) is None


def test_stale_version_is_a_409_row_with_the_stored_value(w, coord):
    _start(coord, w)
    assert _post(coord, w, _code_url(w, 1), {"code": "CLA", "expected_version": "0"},
                 htmx=True).status_code == 200
    # A second tab still holds version 0.
    response = _post(coord, w, _code_url(w, 1), {"pick": str(w.a.id), "note": "my note",
                                                 "expected_version": "0"}, htmx=True)
    assert response.status_code == 409
    body = _text(response)
    assert "changed by someone else" in body and "stored value is shown" in body
    assert "Your choice was Rater 1's value" in body
    assert "stored now: <span class=\"code-badge\">CLA · Clarification</span>" in body
    assert 'name="expected_version" value="1"' in body  # saving again replaces it
    assert ">my note</textarea>" in body  # the note typed is not lost
    assert (_ccode(w, 1).code, _ccode(w, 1).version) == ("CLA", 1)
    # With the version the conflict row carries, the save goes through.
    response = _post(coord, w, _code_url(w, 1), {"pick": str(w.a.id), "expected_version": "1"},
                     htmx=True)
    assert response.status_code == 200 and _ccode(w, 1).code == "EV"


def test_stale_rating_version_is_a_409_row(w, coord):
    _start(coord, w)
    _post(coord, w, _rating_url(w, "2", "adherence"), {"value": "5", "expected_version": "0"}, htmx=True)
    response = _post(coord, w, _rating_url(w, "2", "adherence"), {"value": "3", "expected_version": "0"},
                     htmx=True)
    assert response.status_code == 409
    body = _text(response)
    assert "Your choice was “3”" in body
    assert re.search(r'stored now: <span class="adj-value">5</span>', body)
    assert _crating(w, "2", "adherence").value == 5.0


@pytest.mark.parametrize("data, message", [
    ({"code": "NOPE"}, "is not a code of"),
    ({"code": "MENT"}, "is not a code of"),  # a patient code on a therapist turn
    ({"code": ""}, "choose a code"),
    ({"pick": "999999"}, "pick the value of one of this session"),
    ({"pick": "abc"}, "pick the value of one of this session"),
    ({"code": "EV", "expected_version": "x"}, "invalid version"),
    ({"code": "EV", "note": "n" * 10_001}, "too long"),
])
def test_invalid_code_input_is_a_422_row_and_nothing_changes(w, coord, data, message):
    _start(coord, w)
    before = row_counts()
    response = _post(coord, w, _code_url(w, 1), {"expected_version": "0", **data}, htmx=True)
    assert response.status_code == 422
    body = _text(response)
    assert message in body and "Not saved" in body
    assert body.lstrip().startswith('<li class="adj-row adj-code has-error"')
    assert _ccode(w, 1) is None
    assert row_counts() == before


@pytest.mark.parametrize("value, message", [
    ("8", "outside the scale"), ("0", "outside the scale"), ("4.5", "whole number"),
    ("", "enter a rating"), ("<b>", "whole number"), ("٣", "whole number")])
def test_invalid_rating_value_is_a_422_row_and_nothing_changes(w, coord, value, message):
    _start(coord, w)
    before = row_counts()
    response = _post(coord, w, _rating_url(w, "2", "adherence"),
                     {"value": value, "expected_version": "0"}, htmx=True)
    assert response.status_code == 422
    assert message in _text(response)
    assert _crating(w, "2", "adherence") is None
    assert row_counts() == before


def test_agreed_units_cannot_be_adjudicated(w, coord):
    _start(coord, w)
    response = _post(coord, w, _code_url(w, 3), {"code": "CLA", "expected_version": "1"}, htmx=True)
    assert response.status_code == 422 and "nothing to adjudicate" in _text(response)
    assert _ccode(w, 3).code == "EV"
    response = _post(coord, w, _rating_url(w, "5", "competence"), {"value": "1", "expected_version": "1"},
                     htmx=True)
    assert response.status_code == 422
    assert _crating(w, "5", "competence").value == 4.0


# --------------------------------------------------------------------------- resolving ratings


def test_pick_and_enter_ratings_via_htmx(w, coord):
    _start(coord, w)
    response = _post(coord, w, _rating_url(w, "3", "competence"),
                     {"pick": str(w.b.id), "expected_version": "0"}, htmx=True)
    assert response.status_code == 200
    body = _text(response)
    assert body.lstrip().startswith(
        '<li class="adj-row adj-rating resolved" id="r-mbt-acs-3-competence"')
    assert "picked from Rater 2" in body and "1 of 4</strong>" in body
    row = _crating(w, "3", "competence")
    assert (row.value, row.not_applicable, row.basis, row.source_assignment_id) == (
        None, True, "picked", w.b.id)
    response = _post(coord, w, _rating_url(w, "2", "adherence"),
                     {"value": "na", "note": "not shown", "expected_version": "0"}, htmx=True)
    assert response.status_code == 200
    row = _crating(w, "2", "adherence")
    assert (row.value, row.not_applicable, row.basis, row.note) == (None, True, "entered", "not shown")
    response = _post(coord, w, _rating_url(w, "2", "adherence"), {"value": " 5 ", "expected_version": "1"},
                     htmx=True)
    assert response.status_code == 200
    assert (_crating(w, "2", "adherence").value, _crating(w, "2", "adherence").not_applicable) == (5.0, False)


def test_threshold_resolves_close_ratings_with_the_mean(coding_world, client_for):
    w = coding_world
    update_settings(w.study, {"rating_threshold": 2}, actor=w.coordinator)
    db.session.commit()
    _code_and_rate(w.a, w.rater_a)
    _code_and_rate(w.b, w.rater_b, None, {("2", "adherence"): "5"})
    browser = client_for(w.coordinator)
    page = _text(browser.get(_page_url(w)))
    assert "The raters coded every utterance the same." in page
    assert "No rating differs by more than the study's threshold." in page
    assert "The raters agree everywhere" in page
    _start(browser, w)
    assert _crating(w, "2", "adherence").value == 4.5
    assert _crating(w, "2", "adherence").basis == "within_threshold"
    page = _text(browser.get(_page_url(w)))
    assert 'id="finalize" class="primary"' in page


# --------------------------------------------------------------------------- finalize, reopen, discard


def test_finalize_is_refused_while_unresolved_then_accepted(w, coord):
    _start(coord, w)
    page = _text(coord.get(_page_url(w)))
    assert re.search(r'<button type="submit" id="finalize" disabled aria-describedby="finalize-why">', page)
    assert "4 disagreements are not resolved yet" in page
    response = _post(coord, w, f"{_page_url(w)}/finalize")
    assert response.status_code == 303
    assert _consensus(w).status == "open"
    assert "not resolved yet" in _text(coord.get(_page_url(w)))
    _resolve_everything(coord, w)
    page = _text(coord.get(_page_url(w)))
    assert "4 of 4</strong> disagreements resolved" in page
    assert 'id="finalize" class="primary"' in page
    response = _post(coord, w, f"{_page_url(w)}/finalize")
    assert response.status_code == 303
    assert _consensus(w).status == "final"
    page = _text(coord.get(_page_url(w)))
    assert "The consensus is final." in page
    assert "adj-form" not in page and "Reopen" in page
    # A final consensus cannot be changed (a stale tab is sent back to the page).
    response = _post(coord, w, _code_url(w, 1), {"code": "CLA", "expected_version": "1"}, htmx=True)
    assert response.status_code == 409 and response.headers["HX-Redirect"].endswith(f"#c-{w.utterance(1).id}")
    assert _ccode(w, 1).code == "EV"
    assert "final" in _text(coord.get(_page_url(w)))
    queue = _text(coord.get(f"/studies/{w.study.id}/adjudication"))
    assert "final" in queue and "View" in queue


def test_the_last_save_enables_finalize_out_of_band(w, coord):
    _start(coord, w)
    pick_a = {"pick": str(w.a.id), "expected_version": "0"}
    for position in B_CODES:
        _post(coord, w, _code_url(w, position), pick_a, htmx=True)
    _post(coord, w, _rating_url(w, "2", "adherence"), pick_a, htmx=True)
    response = _post(coord, w, _rating_url(w, "3", "competence"), pick_a, htmx=True)
    body = _text(response)
    assert "4 of 4</strong>" in body and 'id="finalize" class="primary"' in body


def test_reopen_needs_a_reason_and_discard_a_confirmation(w, coord):
    _start(coord, w)
    _resolve_everything(coord, w)
    _post(coord, w, f"{_page_url(w)}/finalize")
    response = _post(coord, w, f"{_page_url(w)}/reopen", {"reason": ""})
    assert response.status_code == 303
    assert _consensus(w).status == "final"
    assert "state a reason" in _text(coord.get(_page_url(w)))
    response = _post(coord, w, f"{_page_url(w)}/reopen", {"reason": "rater 2 misread item 3"})
    assert response.status_code == 303 and _consensus(w).status == "open"
    assert _audit("consensus.reopen")[-1].reason == "rater 2 misread item 3"
    response = _post(coord, w, f"{_page_url(w)}/discard", {"reason": "start over"})
    assert response.status_code == 303 and _consensus(w) is not None
    assert "tick the box to confirm" in _text(coord.get(_page_url(w)))
    response = _post(coord, w, f"{_page_url(w)}/discard", {"reason": "", "confirm": "yes"},
                     htmx=True)
    assert response.status_code == 422 and _consensus(w) is not None
    assert "HX-Redirect" in response.headers
    response = _post(coord, w, f"{_page_url(w)}/discard", {"reason": "start over", "confirm": "yes"})
    assert response.status_code == 303 and _consensus(w) is None
    assert _audit("consensus.discard")[-1].reason == "start over"
    assert "Start adjudication" in _text(coord.get(_page_url(w)))


def test_adjudication_leaves_the_raters_rows_untouched_and_audits_every_change(w, coord):
    before = _raters_rows()
    assert len(before) == 2 * 5 + 2 * 33
    _start(coord, w)
    _post(coord, w, _code_url(w, 1), {"pick": str(w.b.id), "expected_version": "0"}, htmx=True)
    _post(coord, w, _code_url(w, 1), {"code": "CLA", "note": "neither", "expected_version": "1"}, htmx=True)
    _post(coord, w, _code_url(w, 2), {"pick": str(w.a.id), "expected_version": "0"})
    _post(coord, w, _rating_url(w, "2", "adherence"), {"value": "5", "expected_version": "0"}, htmx=True)
    _post(coord, w, _rating_url(w, "3", "competence"), {"pick": str(w.b.id), "expected_version": "0"})
    _post(coord, w, _code_url(w, 2), {"code": "NOPE", "expected_version": "1"}, htmx=True)  # refused
    _post(coord, w, f"{_page_url(w)}/finalize")
    _post(coord, w, f"{_page_url(w)}/reopen", {"reason": "second look"})
    _post(coord, w, f"{_page_url(w)}/discard", {"reason": "start over", "confirm": "yes"})
    assert _raters_rows() == before
    codes = _audit("consensus.code")
    assert [(e.detail["old"] or {}).get("code") for e in codes] == [None, "SUP", None]
    assert [e.detail["new"]["code"] for e in codes] == ["SUP", "CLA", "MENT"]
    assert all(e.actor_id == w.coordinator.id and e.study_id == w.study.id for e in codes)
    ratings = _audit("consensus.rating")
    assert [(e.detail["item"], e.detail["new"]["basis"]) for e in ratings] == [
        ("mbt-acs:2:adherence", "entered"), ("mbt-acs:3:competence", "picked")]
    for action in ("consensus.start", "consensus.finalize", "consensus.reopen", "consensus.discard"):
        assert len(_audit(action)) == 1, action


# --------------------------------------------------------------------------- escaping


def test_text_notes_and_names_are_escaped(coding_world, client_for, import_files, make_user,
                                          make_member):
    w = coding_world
    name_rater = make_user("rater", name=f"Eve {XSS_SCRIPT}")
    make_member(w.study, name_rater, "rater")
    (session,) = import_files(w.study, {"xss.txt": f"T: hello {XSS_SCRIPT}\nP: fine {XSS_SCRIPT}\n"})
    a, b = assign_sessions(w.study, [session], [w.rater_a, name_rater], actor=w.coordinator)
    db.session.commit()
    _code_and_rate(a, w.rater_a, submit_it=False)
    u = all_utterances(session)[0]
    record_note(a, u, f"note {XSS_SCRIPT}", expected_version=codes_by_utterance(a)[u.id].version,
                actor=w.rater_a)
    assert submit(a, actor=w.rater_a).complete
    _code_and_rate(b, name_rater, {1: "SUP", 2: "PE"})
    update_settings(w.study, {"hide_rater_names": False}, actor=w.coordinator)
    db.session.commit()
    browser = client_for(w.coordinator)
    url = _page_url(w, session)
    _post(browser, w, f"{url}/start")
    page = _text(browser.get(url))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "hello &lt;script&gt;" in page and "note &lt;script&gt;" in page and "Eve &lt;script&gt;" in page
    assert XSS_SCRIPT not in page
    response = _post(browser, w, f"{url}/codes/{u.id}", {"pick": str(b.id), "note": XSS_SCRIPT,
                                                         "expected_version": "0"}, htmx=True)
    assert response.status_code == 200
    body = _text(response)
    assert XSS_SCRIPT not in body and "picked from Eve &lt;script&gt;" in body
    response = _post(browser, w, f"{url}/codes/{u.id}", {"code": XSS_SCRIPT, "note": XSS_SCRIPT,
                                                         "expected_version": "1"}, htmx=True)
    assert response.status_code == 422 and XSS_SCRIPT not in _text(response)
    response = _post(browser, w, f"{url}/codes/{u.id}", {"code": XSS_SCRIPT, "note": XSS_SCRIPT,
                                                         "expected_version": "0"}, htmx=True)
    assert response.status_code in (409, 422) and XSS_SCRIPT not in _text(response)
    queue = _text(browser.get(f"/studies/{w.study.id}/adjudication"))
    assert XSS_SCRIPT not in queue


def test_page_uses_no_inline_script_or_style(w, coord):
    _start(coord, w)
    page = _text(coord.get(_page_url(w)))
    assert "/static/js/adjudication.js" in page
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.replace(
        '<script type="application/json"', ""))
    assert " style=" not in page and " onclick=" not in page
    assert "hx-on" not in page
