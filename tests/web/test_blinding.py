"""Blinding (SECURITY A1–A5, A7–A10, A12): nothing of rater B ever reaches rater A.

Two raters double-code one session. Rater A crawls every page and fragment they can reach;
B's work must leave no trace there: no codes, notes, rationales, ratings, progress, name,
or even the fact that B exists. B's assignment is, for A, the same 404 as no assignment.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import Assignment, ItemRating, ItemRationale, UtteranceCode
from mbtcode.services.assignments import submit
from mbtcode.services.coding import record_code, record_note
from mbtcode.services.ratings import record_rationale
from tests.conftest import (
    check_each,
    code_everything,
    csrf_token_from,
    rate_everything,
    row_counts,
)
from tests.web.conftest import page_token

B_NOTE = "bertha-note-5519"
B_RATIONALE = "bertha-rationale-8841"
MISSING_ID = 987654



@pytest.fixture
def rater_a(w, client_for):
    return client_for(w.rater_a)



def _normalised(body: str) -> str:
    """The body with the (per-request signed) CSRF token blanked out."""
    body = re.sub(r'(name="csrf_token" (?:type="hidden" )?value=")[^"]+', r"\1TOKEN", body)
    body = re.sub(r'(name="csrf-token" content=")[^"]+', r"\1TOKEN", body)
    body = re.sub(r'(X-CSRFToken(?:"|&#34;): &#34;)[^&]+', r"\1TOKEN", body)
    return re.sub(r'("token":\s*")[^"]+', r"\1TOKEN", body)


def _pages_of_a(w) -> list[tuple[str, dict]]:
    """Every page and fragment rater A can GET: (url, headers)."""
    a, hx = w.a.id, {"HX-Request": "true"}
    urls = ["/", "/assignments/", "/studies/", f"/studies/{w.study.id}",
            f"/assignments/{a}", f"/assignments/{a}/rating/", f"/assignments/{a}/submit",
            f"/studies/{w.study.id}/sessions/{w.session.id}", "/auth/csrf"]
    urls += [f"/assignments/{a}/utterances/{u.id}" for u in w.utterances]
    return [(u, {}) for u in urls] + [(u, hx) for u in urls]


def _crawl(browser, w) -> dict[str, tuple[int, str]]:
    return {f"{url} {sorted(headers)}": (r.status_code, _normalised(r.get_data(as_text=True)))
            for url, headers in _pages_of_a(w)
            for r in [browser.get(url, headers=headers)]}


def _b_works_and_submits(w) -> None:
    """Rater B codes everything (other codes than A), notes, rates, explains and submits."""
    for u in w.utterances:
        if u.role == "therapist":
            record_code(w.b, u, "ADV", expected_version=0, actor=w.rater_b)
        elif u.role == "patient":
            record_code(w.b, u, "PM", expected_version=0, actor=w.rater_b)
    db.session.commit()
    record_note(w.b, w.utterance(1), B_NOTE, expected_version=1, actor=w.rater_b)
    record_rationale(w.b, "mbt-acs", "2", B_RATIONALE, expected_version=0, actor=w.rater_b)
    db.session.commit()
    rate_everything(w.b, w.rater_b, "2")
    assert submit(w.b, actor=w.rater_b).complete
    db.session.commit()


def _traces_of_b(body: str, w) -> list[str]:
    found = [s for s in (B_NOTE, B_RATIONALE, w.rater_b.name, w.rater_b.email) if s in body]
    found += re.findall(rf"/assignments/{w.b.id}(?!\d)", body)
    # A's rows never carry B's codes (the legend lists every code, so look at rows only).
    found += re.findall(r'<li id="u\d+"[^>]* data-code="(?:ADV|PM)"', body)
    return found


# --------------------------------------------------------------------------- crawl (A5)


def test_b_s_work_changes_nothing_that_a_can_see(w, rater_a, make_user, make_assignment):
    """A's every page and fragment is byte-identical before and after B (and a third rater C,
    assigned meanwhile) coded, rated and submitted the same session."""
    before = _crawl(rater_a, w)
    _b_works_and_submits(w)
    make_assignment(w.session, make_user("rater", name="Carla Third"))
    after = _crawl(rater_a, w)
    assert len(before) == len(after) == 2 * (9 + len(w.utterances))
    assert [key for key in before if before[key] != after[key]] == []


def test_no_page_of_a_contains_anything_of_b(w, rater_a):
    _b_works_and_submits(w)
    crawled = _crawl(rater_a, w)
    assert {status for status, _ in crawled.values()} <= {200, 302}
    assert sum(status == 200 for status, _ in crawled.values()) >= 20
    leaks = {key: _traces_of_b(body, w) for key, (_, body) in crawled.items()}
    assert {k: v for k, v in leaks.items() if v} == {}


def test_a_s_save_responses_carry_nothing_of_b(w, rater_a):
    _b_works_and_submits(w)
    token = page_token(rater_a)
    hx = {"HX-Request": "true", "X-CSRFToken": token}
    u1 = w.utterance(1).id
    responses = [
        rater_a.post(f"/assignments/{w.a.id}/utterances/{u1}/code",
                     data={"code": "EV", "version": "0"}, headers=hx),
        rater_a.post(f"/assignments/{w.a.id}/utterances/{u1}/code",      # a conflict
                     data={"code": "SUP", "version": "0"}, headers=hx),
        rater_a.post(f"/assignments/{w.a.id}/utterances/{u1}/code",      # a 422
                     data={"code": "PM", "version": "1"}, headers=hx),
        rater_a.post(f"/assignments/{w.a.id}/utterances/{u1}/note",
                     data={"note": "mine", "version": "1"}, headers=hx),
        rater_a.post(f"/assignments/{w.a.id}/rating/mbt-acs/2/adherence",
                     data={"value": "6", "version": "0"}, headers=hx),
        rater_a.post(f"/assignments/{w.a.id}/rating/mbt-acs/2/adherence",
                     data={"value": "5", "version": "0"}, headers=hx),   # a conflict
        rater_a.post(f"/assignments/{w.a.id}/rating/mbt-acs/2/rationale",
                     data={"text": "mine", "version": "0"}, headers=hx),
        rater_a.post(f"/assignments/{w.a.id}/rating/mbt-acs/2/rationale",
                     data={"text": "again", "version": "0"}, headers=hx),  # a conflict
        rater_a.post(f"/assignments/{w.a.id}/submit", data={"csrf_token": token}),
    ]
    assert [r.status_code for r in responses] == [200, 409, 422, 200, 200, 409, 200, 409, 422]
    for response in responses:
        assert _traces_of_b(response.get_data(as_text=True), w) == []


def test_a_s_means_and_progress_are_a_s_alone(w, rater_a):
    _b_works_and_submits(w)
    queue = rater_a.get("/assignments/").get_data(as_text=True)
    assert "0/5 coded, 0/33 rated" in queue and "not started" in queue
    form = rater_a.get(f"/assignments/{w.a.id}/rating/").get_data(as_text=True)
    assert "(0 of 14 items rated" in form and "<strong>2.00</strong>" not in form


# --------------------------------------------------------------------------- B's ids (A1–A4)


def _b_routes(w, assignment_id: int) -> list[tuple[str, str, dict]]:
    u1 = w.utterance(1).id
    base = f"/assignments/{assignment_id}"
    return [
        ("GET", base, {}),
        ("GET", f"{base}/rating/", {}),
        ("GET", f"{base}/submit", {}),
        ("GET", f"{base}/utterances/{u1}", {}),
        ("POST", f"{base}/utterances/{u1}/code", {"code": "EV", "version": "1"}),
        ("POST", f"{base}/utterances/{u1}/code", {"code": "EV", "version": "0"}),
        ("POST", f"{base}/utterances/{u1}/note", {"note": "overwritten", "version": "2"}),
        ("POST", f"{base}/rating/mbt-acs/2/adherence", {"value": "7", "version": "1"}),
        ("POST", f"{base}/rating/mbt-acs/2/rationale", {"text": "overwritten", "version": "1"}),
        ("POST", f"{base}/submit", {}),
        ("POST", f"{base}/reopen", {"reason": "a fine reason"}),
        ("POST", f"{base}/withdraw", {"reason": "a fine reason"}),
    ]


def _b_state(w) -> dict:
    db.session.expire_all()
    return {
        "codes": sorted(db.session.execute(select(UtteranceCode.id, UtteranceCode.code,
                                                  UtteranceCode.note, UtteranceCode.version)
                                           .where(UtteranceCode.assignment_id == w.b.id)).all()),
        "ratings": sorted(db.session.execute(select(ItemRating.id, ItemRating.value,
                                                    ItemRating.version)
                                             .where(ItemRating.assignment_id == w.b.id)).all()),
        "rationales": sorted(db.session.execute(select(ItemRationale.text, ItemRationale.version)
                                                .where(ItemRationale.assignment_id == w.b.id))
                             .all()),
        "assignment": db.session.execute(select(Assignment.status, Assignment.version)
                                         .where(Assignment.id == w.b.id)).one(),
    }


@pytest.mark.parametrize("htmx", [False, True])
def test_b_s_assignment_is_the_same_404_as_a_missing_one(w, rater_a, htmx):
    _b_works_and_submits(w)
    token = page_token(rater_a)
    headers = {"HX-Request": "true"} if htmx else {}
    for (method, b_url, data), (_, missing_url, _) in zip(_b_routes(w, w.b.id),
                                                          _b_routes(w, MISSING_ID)):
        kwargs = {"data": {**data, "csrf_token": token}} if method == "POST" else {}
        theirs = rater_a.open(b_url, method=method, headers=headers, **kwargs)
        missing = rater_a.open(missing_url, method=method, headers=headers, **kwargs)
        assert theirs.status_code == missing.status_code == 404, (method, b_url)
        theirs_body, missing_body = theirs.get_data(as_text=True), missing.get_data(as_text=True)
        assert len(theirs_body) == len(missing_body), (method, b_url)
        assert _normalised(theirs_body) == _normalised(missing_body), (method, b_url)
        assert _traces_of_b(theirs_body, w) == []


def test_writes_to_b_s_assignment_change_nothing(w, rater_a):
    _b_works_and_submits(w)
    # Reopened, so that a lock would not be what protects B's rows.
    from mbtcode.services.assignments import reopen

    reopen(w.b, actor=w.coordinator, reason="recheck")
    db.session.commit()
    before, counts = _b_state(w), row_counts()
    token = page_token(rater_a)
    for method, url, data in _b_routes(w, w.b.id):
        if method == "POST":
            for headers in ({}, {"HX-Request": "true"}):
                assert rater_a.post(url, data={**data, "csrf_token": token},
                                    headers=headers).status_code == 404, url
    assert _b_state(w) == before
    assert row_counts() == counts


def test_enumerating_assignment_ids_finds_only_a_s_own(w, rater_a, make_session, make_assignment):
    for _ in range(3):
        make_assignment(make_session(w.study), w.rater_b)
    own = {w.a.id}
    found = {i for i in range(1, 12) if rater_a.get(f"/assignments/{i}").status_code == 200}
    assert found == own
    lengths = {len(rater_a.get(f"/assignments/{i}/rating/").data) for i in range(1, 12)
               if i not in own}
    assert len(lengths) == 1


def test_a_s_assignment_is_404_for_b(w, client_for):
    record_note(w.a, w.utterance(1), "alice's own note", expected_version=0, actor=w.rater_a)
    db.session.commit()
    browser = client_for(w.rater_b)
    for method, url, data in _b_routes(w, w.a.id):
        kwargs = {"data": {**data, "csrf_token": page_token(browser)}} if method == "POST" else {}
        response = browser.open(url, method=method, **kwargs)
        assert response.status_code == 404, url
        assert b"alice's own note" not in response.data and b"Alice Rater" not in response.data


# --------------------------------------------------------------------------- withdrawn (A10)


def test_a_withdrawn_assignment_is_404_for_its_rater_and_a_save_writes_nothing(w, rater_a,
                                                                              client_for):
    token = page_token(rater_a)
    hx = {"HX-Request": "true", "X-CSRFToken": token}
    url = f"/assignments/{w.a.id}/utterances/{w.utterance(1).id}/code"
    assert rater_a.post(url, data={"code": "EV", "version": "0"}, headers=hx).status_code == 200
    coordinator = client_for(w.coordinator)
    response = coordinator.post(f"/assignments/{w.a.id}/withdraw", data={
        "csrf_token": csrf_token_from(coordinator.get("/studies/").get_data(as_text=True)),
        "reason": "rater is on leave"})
    assert response.status_code == 303
    counts = row_counts()
    response = rater_a.post(url, data={"code": "SUP", "version": "1"}, headers=hx)
    assert response.status_code == 404
    assert row_counts() == counts
    for method, page_url, _ in _b_routes(w, w.a.id)[:4]:
        assert rater_a.get(page_url).status_code == 404, page_url
    assert f"/assignments/{w.a.id}" not in rater_a.get("/assignments/").get_data(as_text=True)
    db.session.expire_all()
    assert db.session.scalar(select(UtteranceCode.code)
                             .where(UtteranceCode.assignment_id == w.a.id)) == "EV"


def test_a_rater_removed_from_the_study_loses_access(w, rater_a, make_member):
    make_member(w.study, w.rater_a, "analyst")
    assert rater_a.get(f"/assignments/{w.a.id}").status_code == 404


# --------------------------------------------------------------------------- roles (A6, A7, A12)


def _post(browser, url, data):
    token = csrf_token_from(browser.get("/assignments/").get_data(as_text=True))
    return browser.post(url, data={**data, "csrf_token": token})


@pytest.mark.parametrize("who", ["rater_a", "analyst"])
def test_raters_and_analysts_cannot_do_coordinator_actions(w, client_for, who):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    submit(w.a, actor=w.rater_a)
    db.session.commit()
    browser = client_for(getattr(w, who))
    counts = row_counts()
    attempts = [
        (f"/studies/{w.study.id}/assignments",
         {"session_id": str(w.session.id), "rater_id": str(w.rater_a.id)}),
        (f"/studies/{w.study.id}/members", {"email": w.rater_a.email, "role": "coordinator"}),
        (f"/assignments/{w.a.id}/reopen", {"reason": "I want to change it"}),
        (f"/assignments/{w.b.id}/withdraw", {"reason": "get rid of B"}),
    ]
    for url, data in attempts:
        assert _post(browser, url, data).status_code in (403, 404), url
    assert row_counts() == counts
    db.session.expire_all()
    assert db.session.get(Assignment, w.a.id).status == "submitted"   # A12: no self-unlock


def test_a_rater_does_not_see_the_coordinator_view_of_the_study(w, rater_a):
    page = rater_a.get(f"/studies/{w.study.id}").get_data(as_text=True)
    assert "Your assignments" in page
    assert "/reopen" not in page and "/withdraw" not in page and 'name="rater_id"' not in page
    assert "Members" not in page and w.coordinator.name not in page


def test_coordinator_of_another_study_gets_404_on_this_study(w, client_for):
    """A7: study Y's coordinator sees nothing of study X."""
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    submit(w.a, actor=w.rater_a)
    db.session.commit()
    browser = client_for(w.outsider)
    for url in (f"/studies/{w.study.id}", f"/studies/{w.study.id}/sessions/{w.session.id}",
                f"/assignments/{w.a.id}", f"/assignments/{w.a.id}/rating/"):
        assert browser.get(url).status_code == 404, url
    counts = row_counts()
    for url, data in [(f"/assignments/{w.a.id}/reopen", {"reason": "a fine reason"}),
                      (f"/assignments/{w.b.id}/withdraw", {"reason": "a fine reason"}),
                      (f"/studies/{w.study.id}/assignments",
                       {"session_id": str(w.session.id), "rater_id": str(w.rater_a.id)}),
                      (f"/studies/{w.study.id}/members",
                       {"email": w.outsider.email, "role": "coordinator"})]:
        assert _post(browser, url, data).status_code == 404, url
    assert row_counts() == counts
    # Their own study's session is no way into this study either.
    assert browser.get(f"/studies/{w.other_study.id}/sessions/{w.session.id}").status_code == 404
    assert "Blinded study" not in browser.get("/studies/").get_data(as_text=True)


def test_a_coordinator_cannot_assign_another_studys_sessions_or_raters(w, client_for,
                                                                      make_user, make_member):
    foreign_rater = make_user("rater")
    make_member(w.other_study, foreign_rater, "rater")
    browser = client_for(w.coordinator)
    counts = row_counts()
    _post(browser, f"/studies/{w.study.id}/assignments",
          {"session_id": str(w.other_session.id), "rater_id": str(w.rater_a.id)})
    _post(browser, f"/studies/{w.study.id}/assignments",
          {"session_id": str(w.session.id), "rater_id": str(foreign_rater.id)})
    after = row_counts()
    assert (after["assignment"], after["study_member"]) == (counts["assignment"],
                                                            counts["study_member"])


# --------------------------------------------------------------------------- mass assignment (A8, A9)


def test_extra_fields_on_a_save_are_ignored(w, rater_a):
    b_before = _b_state(w)
    url = f"/assignments/{w.a.id}/utterances/{w.utterance(1).id}/code"
    response = rater_a.post(
        url + f"?rater_id={w.rater_b.id}&session={w.rater_b.email}",
        data={"code": "EV", "version": "0", "rater_id": str(w.rater_b.id),
              "assignment_id": str(w.b.id), "status": "submitted", "study_id": str(
                  w.other_study.id), "code_set": "nonmentalizing-modes", "utterance_id": str(
                  w.utterance(2).id), "locked": "0", "role": "admin"},
        headers={"HX-Request": "true", "X-CSRFToken": page_token(rater_a),
                 "X-User": w.rater_b.email})
    assert response.status_code == 200
    db.session.expire_all()
    row = db.session.scalars(select(UtteranceCode)).one()
    assert (row.assignment_id, row.utterance_id, row.code_set, row.code) == (
        w.a.id, w.utterance(1).id, "intervention-spectrum", "EV")
    assert db.session.get(Assignment, w.a.id).status == "assigned"
    assert _b_state(w) == b_before


def test_version_hacks_are_refused(w, rater_a):
    url = f"/assignments/{w.a.id}/utterances/{w.utterance(1).id}/code"
    hx = {"HX-Request": "true", "X-CSRFToken": page_token(rater_a)}
    assert rater_a.post(url, data={"code": "EV", "version": "0"}, headers=hx).status_code == 200
    counts = row_counts()

    def check(version):
        response = rater_a.post(url, data={"code": "SUP", "version": version}, headers=hx)
        assert response.status_code == 422, response.status_code
        assert row_counts() == counts

    check_each(["-1", "1e3", "0x1", "1,2", "99999999999999999999"], check)


def test_a_second_version_field_does_not_win(w, rater_a):
    url = f"/assignments/{w.a.id}/utterances/{w.utterance(1).id}/code"
    hx = {"HX-Request": "true", "X-CSRFToken": page_token(rater_a)}
    rater_a.post(url, data={"code": "EV", "version": "0"}, headers=hx)
    rater_a.post(url, data={"code": "SUP", "version": "1"}, headers=hx)
    response = rater_a.post(url, data={"code": "CLA", "version": ["1", "2"]},
                            headers=hx)
    assert response.status_code == 409


def test_extra_fields_on_submit_and_assign_are_ignored(w, rater_a, client_for):
    response = _post(rater_a, f"/assignments/{w.a.id}/submit",
                     {"status": "submitted", "allow_uncoded": "0", "rater_id": str(w.rater_b.id)})
    assert response.status_code == 422
    db.session.expire_all()
    assert db.session.get(Assignment, w.a.id).status == "assigned"
    coordinator = client_for(w.coordinator)
    new_rater_session = w.session
    _post(coordinator, f"/studies/{w.study.id}/assignments",
          {"session_id": str(new_rater_session.id), "rater_id": str(w.rater_a.id),
           "status": "submitted", "study_id": str(w.other_study.id)})
    db.session.expire_all()
    assert [a.status for a in db.session.scalars(select(Assignment).order_by(Assignment.id))] \
        == ["assigned", "assigned"]


# --------------------------------------------------------------------------- sessions, routes (A6, A11)


def test_a_deactivated_rater_is_signed_out_at_the_next_save(w, rater_a):
    """A11: the next background save gets a 401 the page can act on; nothing is written."""
    token = page_token(rater_a)
    w.rater_a.active = False
    db.session.commit()
    counts = row_counts()
    response = rater_a.post(f"/assignments/{w.a.id}/utterances/{w.utterance(1).id}/code",
                            data={"code": "EV", "version": "0"},
                            headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 401
    assert response.headers["X-Mbtcode-Error"] == "login"
    assert row_counts() == counts


def test_a_rater_finds_no_reliability_export_or_adjudication_routes(w, rater_a):
    """A6: these do not exist yet; when they come, they must stay closed to raters."""
    for path in ("/irr", "/adherence", "/exports/codes.csv", "/adjudication/1",
                 f"/studies/{w.study.id}/exports", f"/studies/{w.study.id}/reliability"):
        assert rater_a.get(path).status_code in (403, 404), path
