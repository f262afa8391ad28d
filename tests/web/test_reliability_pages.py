"""The coordinator and analyst pages of issue 4: double-coding sample, gold standard, report.

Who may open what, CSRF on every write, what each form does (and refuses without changing
anything), the figures of the report as the service computes them, escaping, the JSON
download and the empty state.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from markupsafe import escape
from sqlalchemy import func, select

from mbtcode.extensions import db
from mbtcode.models import (
    Assignment,
    AuditEvent,
    GoldStandard,
    ReliabilitySample,
    SampledSession,
    TherapySession,
)
from tests.conftest import _counter, check_each, code_everything, csrf_token_from, rate_everything, row_counts
from tests.web.conftest import XSS_SCRIPT

#: Boot replicates used for the report in tests (the figures depend on them; seed 0).
BOOT = 50
THERAPIST_CODES = ["EV", "CLA", "EXP", "CHA"]
PATIENT_CODES = ["PE", "MENT", "TM"]


# --------------------------------------------------------------------------- helpers


def url(w, path: str = "") -> str:
    return f"/studies/{w.study.id}/reliability{path}"


def token_of(browser, w) -> str:
    return csrf_token_from(browser.get(f"/studies/{w.study.id}").get_data(as_text=True))


def html(response) -> str:
    assert response.status_code == 200, (response.status_code, response.get_data(as_text=True)[:500])
    return response.get_data(as_text=True)


def flashes(browser, w, page: str = "/sample") -> str:
    """The flash messages shown on the next page view."""
    body = html(browser.get(url(w, page)))
    return " ".join(re.findall(r'<p class="flash flash-\w+"[^>]*>(.*?)</p>', body, re.S))


def post(browser, w, path: str, data: dict | None = None, *, token: str | None = None):
    return browser.post(url(w, path), data={"csrf_token": token or token_of(browser, w), **(data or {})})


def counts() -> dict[str, int]:
    db.session.expire_all()
    return row_counts()


def add_sessions(w, n: int, *, lines: int = 10, manifest: str | None = None) -> list[TherapySession]:
    """Import ``n`` sessions of alternating therapist/patient turns into the world's study."""
    from mbtcode.services.imports import SourceFile, apply_import, plan_import

    files = []
    for i in range(n):
        k = next(_counter)
        text = "".join(f"{'T' if j % 2 == 0 else 'P'}: line {j} of session {k}\n" for j in range(lines))
        files.append(SourceFile(f"extra{i}.txt", text.encode()))
    kwargs = {"manifest": SourceFile("manifest.csv", manifest.encode())} if manifest else {}
    plan = plan_import(w.study, files, **kwargs)
    assert plan.ok, [str(p) for p in plan.problems]
    sessions = apply_import(plan, actor=None)
    db.session.commit()
    return sessions


def code_rate_submit(assignment, actor, *, shift: int = 0, rating_offset: int = 0) -> None:
    """Code every codable utterance (``shift`` changes every third code), rate, submit."""
    from mbtcode.services.assignments import required_ratings, submit
    from mbtcode.services.coding import codes_by_utterance, record_code
    from mbtcode.services.ratings import ratings_of, record_rating
    from mbtcode.services.sessions import all_utterances

    rows = codes_by_utterance(assignment)
    for u in all_utterances(assignment.session):
        if u.role not in ("therapist", "patient"):
            continue
        pool = THERAPIST_CODES if u.role == "therapist" else PATIENT_CODES
        k = u.position + (shift if u.position % 3 == 0 else 0)
        row = rows.get(u.id)
        record_code(assignment, u, pool[k % len(pool)], expected_version=row.version if row else 0,
                    actor=actor)
    current = ratings_of(assignment)
    for i, (instrument, item, dimension) in enumerate(required_ratings(assignment.study)):
        value = 2 + (assignment.session_id * 3 + i) % 5 + (rating_offset if i % 4 == 0 else 0)
        row = current.get((instrument, item, dimension))
        record_rating(assignment, instrument, item, dimension, str(max(1, min(7, value))),
                      expected_version=row.version if row else 0, actor=actor)
    assert submit(assignment, actor=actor).complete
    db.session.commit()


def submit_plainly(assignment, actor, value: str = "4") -> None:
    """Code every utterance the same way (code_everything), rate everything ``value``, submit."""
    from mbtcode.services.assignments import submit

    code_everything(assignment, actor)
    rate_everything(assignment, actor, value)
    assert submit(assignment, actor=actor).complete
    db.session.commit()


def double_code(w, extra: int = 3) -> list[TherapySession]:
    """The world's session and ``extra`` more, each coded by A and B (partly disagreeing)."""
    from mbtcode.services.assignments import assign_sessions

    sessions = [w.session, *add_sessions(w, extra)]
    firsts, seconds = [w.a], [w.b]
    for s in sessions[1:]:
        a, b = assign_sessions(w.study, [s], [w.rater_a, w.rater_b], actor=w.coordinator)
        firsts.append(a)
        seconds.append(b)
    db.session.commit()
    for a in firsts:
        code_rate_submit(a, w.rater_a)
    for b in seconds:
        code_rate_submit(b, w.rater_b, shift=1, rating_offset=1)
    return sessions


def mark(w, assignment) -> GoldStandard:
    from mbtcode.services.gold import mark_gold

    gold = mark_gold(assignment.session, assignment, actor=w.coordinator)
    db.session.commit()
    return gold


def audit_actions(prefix: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action.like(f"{prefix}%")).order_by(AuditEvent.id)))


@pytest.fixture
def coord(w, client_for):
    """The coordinator's browser."""
    return client_for(w.coordinator)


# --------------------------------------------------------------------------- access

#: route → (method, path, roles allowed); paths are below /studies/<id>/reliability.
ROUTES = {
    "report": ("GET", "", {"admin", "coordinator", "analyst"}),
    "report_json": ("GET", "/report.json", {"admin", "coordinator", "analyst"}),
    "sample": ("GET", "/sample", {"admin", "coordinator"}),
    "gold": ("GET", "/gold", {"admin", "coordinator"}),
    "draw": ("POST", "/sample/draw", {"admin", "coordinator"}),
    "assign_second": ("POST", "/sample/assign", {"admin", "coordinator"}),
    "settings": ("POST", "/settings", {"admin", "coordinator"}),
    "mark_gold": ("POST", "/gold", {"admin", "coordinator"}),
    "unmark_gold": ("POST", "/gold/unmark", {"admin", "coordinator"}),
}
POSTS = [name for name, (method, _, _) in ROUTES.items() if method == "POST"]
GETS = [name for name, (method, _, _) in ROUTES.items() if method == "GET"]


def test_every_route_is_listed_here(app):
    endpoints = {r.endpoint.split(".", 1)[1] for r in app.url_map.iter_rules()
                 if r.endpoint.startswith("reliability.")}
    assert endpoints == set(ROUTES)


def _people(w) -> dict:
    return {"admin": w.admin, "coordinator": w.coordinator, "analyst": w.analyst,
            "rater": w.rater_a, "other_rater": w.rater_b, "outsider": w.outsider}


@pytest.fixture
def gold_world(w):
    """The world with rater A's coding of the world session as gold (so unmark has a target)."""
    submit_plainly(w.a, w.rater_a)
    gold = mark(w, w.a)
    return w, gold


@pytest.mark.parametrize("name", list(ROUTES))
def test_each_role_gets_only_what_it_may(gold_world, client_for, name):
    """Raters get 403, outsiders 404, analysts only the report; nothing is written or shown."""
    w, gold = gold_world
    method, path, allowed = ROUTES[name]
    hostile = {"seed": "1", "fraction": "1", "rater_id": str(w.rater_b.id), "reason": "a reason",
               "gold_id": str(gold.id), "assignment_id": str(w.a.id), "sample_fraction": "0.9"}
    for role, user in _people(w).items():
        browser = client_for(user)
        token = csrf_token_from(browser.get("/assignments/").get_data(as_text=True))
        before = {k: v for k, v in counts().items() if k != "audit_event"}
        audit_before = len(audit_actions("reliability")) + len(audit_actions("gold"))
        response = browser.open(url(w, path), method=method, data={"csrf_token": token, **hostile}
                                if method == "POST" else None)
        body = response.get_data(as_text=True)
        if role in allowed:
            assert response.status_code == (200 if method == "GET" else 303), (role, response.status_code)
            continue
        assert response.status_code == (404 if role == "outsider" else 403), (role, response.status_code)
        secrets = ["Blinded study"] + [n for n in ("Alice Rater", "Bertha Blindtest") if n != user.name]
        assert not [x for x in secrets if x in body], role
        assert {k: v for k, v in counts().items() if k != "audit_event"} == before, role
        assert len(audit_actions("reliability")) + len(audit_actions("gold")) == audit_before, role


@pytest.mark.parametrize("name", list(ROUTES))
def test_anonymous_is_sent_to_sign_in(w, client, name):
    method, path, _ = ROUTES[name]
    if method == "GET":
        response = client.get(url(w, path))
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/auth/login?next=")
        background = client.get(url(w, path), headers={"HX-Request": "true"})
        assert background.status_code == 401
    else:
        assert client.post(url(w, path)).status_code == 400  # no CSRF token
        token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
        response = client.post(url(w, path), data={"csrf_token": token})
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/auth/login")


@pytest.mark.parametrize("name", POSTS)
def test_every_write_without_a_csrf_token_is_refused(gold_world, coord, name):
    w, gold = gold_world
    before = counts()
    response = coord.post(url(w, ROUTES[name][1]), data={
        "seed": "1", "fraction": "1", "rater_id": str(w.rater_b.id), "reason": "a reason",
        "gold_id": str(gold.id), "assignment_id": str(w.a.id), "sample_fraction": "0.9"})
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
    assert counts() == before


def test_get_pages_refuse_post_and_posts_refuse_get(w, coord):
    token = token_of(coord, w)
    for name in GETS:
        if name != "gold":  # POST /gold marks a session gold
            assert coord.post(url(w, ROUTES[name][1]), data={"csrf_token": token}).status_code == 405, name
    for name in POSTS:
        if name != "mark_gold":  # GET /gold is the page
            assert coord.get(url(w, ROUTES[name][1])).status_code == 405, name


def test_analyst_sees_only_the_report_in_the_nav(w, client_for):
    body = html(client_for(w.analyst).get(url(w)))
    nav = re.search(r'<nav class="tabs reliability-nav".*?</nav>', body, re.S)
    assert nav is None or "sample" not in nav.group(0)
    assert url(w, "/sample") not in body and url(w, "/gold") not in body


def test_pages_have_breadcrumbs_and_the_in_page_nav(w, coord):
    for path, current in (("/sample", "Double-coding sample"), ("/gold", "Gold standard"),
                          ("", "Reliability report")):
        body = html(coord.get(url(w, path)))
        crumbs = re.search(r'<nav class="breadcrumbs".*?</nav>', body, re.S).group(0)
        assert 'href="/studies/"' in crumbs and f'href="/studies/{w.study.id}"' in crumbs
        assert "Blinded study" in crumbs
        nav = re.search(r'<nav class="tabs reliability-nav".*?</nav>', body, re.S).group(0)
        for target in ("/sample", "/gold", ""):
            assert f'href="{url(w, target)}"' in nav
        assert re.search(rf'aria-current="page">{current}', nav)


# --------------------------------------------------------------------------- sample


def test_sample_page_shows_progress_forms_and_settings(w, coord):
    body = html(coord.get(url(w, "/sample")))
    assert "0 of 1</strong> sessions double-coded; 0 sampled, 0 staffed" in body
    assert re.search(r'<progress id="sample-progress-bar" max="1" value="0">', body)
    assert "style=" not in body
    seed = re.search(r'id="draw-seed" name="seed"[^>]*value="(\d+)"', body)
    assert seed, "the seed is prefilled with a suggestion"
    assert re.search(r'id="draw-fraction" name="fraction"[^>]*value="0.2"', body)
    for stratifier in ("therapist", "phase"):
        assert f'name="stratify" value="{stratifier}"' in body
    for rater in (w.rater_a, w.rater_b):
        assert f'name="rater_id" value="{rater.id}"> {rater.name}' in body
    for field in ("sample_fraction", "raters_per_session", "rating_threshold", "hide_rater_names",
                  "certify_min_kappa", "certify_min_within_one", "certify_min_sessions"):
        assert f'<label for="set-{field}">' in body, field
        assert f'id="set-{field}-help"' in body, field
    # Every input has a label: by for= or by wrapping.
    for input_id in re.findall(r'<input id="([^"]+)"', body):
        assert f'for="{input_id}"' in body, input_id
    assert body.count('name="csrf_token"') >= 3


def test_draw_creates_sampled_sessions_and_an_audit_event(w, coord):
    add_sessions(w, 9)  # 10 sessions
    response = post(coord, w, "/sample/draw", {"seed": "4711", "fraction": "0.5"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(url(w, "/sample"))
    assert db.session.scalar(select(func.count()).select_from(SampledSession)) == 5
    sample = db.session.scalar(select(ReliabilitySample))
    assert (sample.seed, sample.fraction, sample.stratify) == (4711, 0.5, "")
    (event,) = audit_actions("reliability.sample")
    assert event.actor_id == w.coordinator.id and event.detail["seed"] == 4711
    assert len(event.detail["session_ids"]) == 5
    page = html(coord.get(url(w, "/sample")))
    assert "Drew 5 session(s) (seed 4711, 50% of 10 eligible session(s))" in page
    # Progress is measured against the latest draw's share (50%: 5 of 10), not the setting's 20%.
    assert re.search(r"0 of 5</strong> sessions double-coded; 5 sampled, [01] staffed", page)
    assert "the sample now holds 5. Next: assign second raters." in page
    labels = db.session.scalars(select(TherapySession.label).join(
        SampledSession, SampledSession.session_id == TherapySession.id)).all()
    for label in labels:
        assert f"<td>{escape(label)}</td>" in page
    assert "needs 1 more rater(s)" in page or "needs 2 more rater(s)" in page


def test_draw_with_strata_and_the_settings_fraction(w, coord, client_for):
    from mbtcode.services.double_coding import update_settings

    add_sessions(w, 3)
    update_settings(w.study, {"sample_fraction": 0.5}, actor=None)
    db.session.commit()
    post(coord, w, "/sample/draw", {"seed": "7", "fraction": "", "stratify": ["therapist", "phase"]})
    sample = db.session.scalar(select(ReliabilitySample))
    assert (sample.fraction, sample.stratify) == (0.5, "therapist,phase")
    assert db.session.scalar(select(func.count()).select_from(SampledSession)) == 2
    assert "stratified by therapist and phase" in flashes(coord, w)


def test_drawing_again_when_the_sample_is_full_says_so(w, coord):
    post(coord, w, "/sample/draw", {"seed": "1", "fraction": "1"})
    before = counts()
    post(coord, w, "/sample/draw", {"seed": "2", "fraction": "1"})
    assert counts() == before
    assert "Nothing was drawn: the sample already holds 1 of the 1" in flashes(coord, w)


BAD_DRAWS = [
    {"fraction": "0"}, {"fraction": "1.5"}, {"fraction": "abc"}, {"fraction": "-0.2"},
    {"fraction": "nan"}, {"fraction": "inf"}, {"fraction": "1e400"}, {"fraction": "9" * 5000},
    {"seed": "-1"}, {"seed": "abc"}, {"seed": "1.5"}, {"seed": "1e3"}, {"seed": ""},
    {"seed": str(2**63)}, {"seed": "9" * 5000}, {"stratify": "diagnosis"},
    {"stratify": ["therapist", "<script>"]}, {"stratify": "x" * 5000},
]


def test_bad_draw_inputs_flash_an_error_and_change_nothing(w, coord):
    add_sessions(w, 4)
    token = token_of(coord, w)

    def check(bad):
        before = counts()
        response = post(coord, w, "/sample/draw", {"seed": "5", "fraction": "0.5", **bad}, token=token)
        assert response.status_code == 303
        message = flashes(coord, w)
        assert "Nothing was drawn" in message, message
        assert "<script>" not in message
        assert len(message) < 300  # flash messages travel in the session cookie
        assert counts() == before

    check_each(BAD_DRAWS, check)


def test_settings_round_trip(w, coord):
    from mbtcode.services.double_coding import settings_for

    response = post(coord, w, "/settings", {
        "sample_fraction": "0.35", "raters_per_session": "3", "rating_threshold": "1",
        "certify_min_kappa": "0.65", "certify_min_within_one": "0.9", "certify_min_sessions": "2",
        "hide_rater_names": "0",  # unchecked: only the hidden field before the box
    })
    assert response.status_code == 303
    db.session.expire_all()
    s = settings_for(w.study)
    assert (s.sample_fraction, s.raters_per_session, s.rating_threshold, s.hide_rater_names,
            s.certify_min_kappa, s.certify_min_within_one, s.certify_min_sessions) == \
        (0.35, 3, 1, False, 0.65, 0.9, 2)
    (event,) = audit_actions("reliability.settings")
    assert event.detail["new"]["raters_per_session"] == 3
    page = html(coord.get(url(w, "/sample")))
    assert "Settings saved." in page
    assert re.search(r'id="set-sample_fraction"[^>]*value="0.35"', page)
    assert re.search(r'id="set-raters_per_session"[^>]*value="3"', page)
    assert not re.search(r'id="set-hide_rater_names"[^>]*checked', page)
    assert re.search(r'id="draw-fraction"[^>]*value="0.35"', page)
    post(coord, w, "/settings", {"hide_rater_names": ["0", "1"], "sample_fraction": "0.35"})
    db.session.expire_all()
    assert settings_for(w.study).hide_rater_names is True
    post(coord, w, "/settings", {"rating_threshold": "2"})  # fields left out stay as they are
    db.session.expire_all()
    s = settings_for(w.study)
    assert (s.hide_rater_names, s.rating_threshold, s.raters_per_session) == (True, 2, 3)


@pytest.mark.parametrize("bad", [
    {"raters_per_session": "1"}, {"sample_fraction": "abc"}, {"sample_fraction": "0"},
    {"certify_min_kappa": "2"}, {"certify_min_sessions": "2.5"}, {"rating_threshold": "-1"},
    {"certify_min_within_one": "nan"}, {"sample_fraction": "0.2" + " " * 97 + "x"},
    {"raters_per_session": "9" * 5000},
])
def test_bad_settings_change_nothing(w, coord, bad):
    before = counts()
    post(coord, w, "/settings", {"sample_fraction": "0.5", "raters_per_session": "2", **bad})
    assert counts() == before
    message = flashes(coord, w)
    assert "Settings not saved" in message and len(message) < 300


def test_assign_second_raters_never_assigns_the_first_rater(w, coord, make_user, make_member):
    from mbtcode.services.assignments import assign_sessions

    third = make_user("rater", name="Carla Third")
    make_member(w.study, third, "rater")
    extra = add_sessions(w, 3)
    assign_sessions(w.study, extra, [w.rater_a], actor=None)  # A is everyone's first rater
    db.session.commit()
    post(coord, w, "/sample/draw", {"seed": "3", "fraction": "1"})
    response = post(coord, w, "/sample/assign", {
        "seed": "9", "rater_id": [str(w.rater_a.id), str(w.rater_b.id), str(third.id)]})
    assert response.status_code == 303
    assert "Created 3 assignment(s) for 3 sampled session(s) (seed 9)." in flashes(coord, w)
    db.session.expire_all()
    for session in [w.session, *extra]:
        raters = db.session.scalars(select(Assignment.rater_id).where(
            Assignment.session_id == session.id, Assignment.status != "withdrawn")).all()
        assert len(raters) == 2 and len(set(raters)) == 2, session.label
    new = db.session.scalars(select(Assignment).where(Assignment.session_id.in_([s.id for s in extra])
                                                       , Assignment.rater_id != w.rater_a.id)).all()
    assert {a.rater_id for a in new} <= {w.rater_b.id, third.id}
    assert len(audit_actions("assignment.create")) >= 3
    page = html(coord.get(url(w, "/sample")))
    assert "4 sampled, 4 staffed" in page


def test_sessions_that_cannot_be_staffed_are_named(w, coord):
    post(coord, w, "/settings", {"sample_fraction": "1", "raters_per_session": "3"})
    post(coord, w, "/sample/draw", {"seed": "3"})
    post(coord, w, "/sample/assign", {"seed": "1", "rater_id": [str(w.rater_a.id), str(w.rater_b.id)]})
    message = flashes(coord, w)
    assert "1 session(s) could not be staffed: not enough raters who did not code them" in message
    assert w.session.label in message


@pytest.mark.parametrize("form", [
    {"rater_id": []}, {"rater_id": ["outsider"]}, {"rater_id": ["abc"]},
    {"rater_id": ["rater_a"], "seed": "-4"},
])
def test_bad_second_rater_requests_change_nothing(w, coord, form):
    post(coord, w, "/sample/draw", {"seed": "3", "fraction": "1"})
    before = counts()
    ids = {"outsider": str(w.outsider.id), "rater_a": str(w.rater_a.id)}
    data = {"seed": "1", **form, "rater_id": [ids.get(r, r) for r in form["rater_id"]]}
    post(coord, w, "/sample/assign", data)
    assert counts() == before
    assert "No rater was assigned" in flashes(coord, w)


def test_assigning_before_drawing_says_what_to_do(w, coord):
    post(coord, w, "/sample/assign", {"seed": "1", "rater_id": [str(w.rater_a.id)]})
    assert "draw a double-coding sample first" in flashes(coord, w)


def test_sample_progress_counts_double_coded_sessions(w, coord):
    submit_plainly(w.a, w.rater_a)
    submit_plainly(w.b, w.rater_b)
    post(coord, w, "/sample/draw", {"seed": "3", "fraction": "1"})
    page = html(coord.get(url(w, "/sample")))
    assert "1 of 1</strong> sessions double-coded; 1 sampled, 1 staffed" in page
    assert '<progress id="sample-progress-bar" max="1" value="1">' in page
    assert ">double-coded</span>" in page
    fragment = html(coord.get(url(w, "/sample"), headers={"HX-Request": "true"}))
    assert "<html" not in fragment and "1 sampled, 1 staffed" in fragment


# --------------------------------------------------------------------------- gold


def test_mark_and_unmark_gold_with_a_reason(w, coord):
    submit_plainly(w.a, w.rater_a)
    page = html(coord.get(url(w, "/gold")))
    assert f'<option value="{w.a.id}">{w.session.label} — Alice Rater</option>' in page
    assert f'<option value="{w.b.id}">' not in page  # B has not submitted
    response = post(coord, w, "/gold", {"assignment_id": str(w.a.id)}, token=csrf_token_from(page))
    assert response.status_code == 303
    gold = db.session.scalar(select(GoldStandard))
    assert (gold.session_id, gold.assignment_id) == (w.session.id, w.a.id)
    assert [e.detail["new"] for e in audit_actions("gold.mark")] == [w.a.id]
    page = html(coord.get(url(w, "/gold")))
    assert f"{w.session.label} is now a gold-standard session (coding by Alice Rater)" in page
    row = re.search(r'<table class="data rel-gold-table">.*?</table>', page, re.S).group(0)
    assert w.session.label in row and "Alice Rater" in row
    assert datetime.now(UTC).strftime("%Y-%m-%d") in row
    assert f'<option value="{w.a.id}">' not in page  # gold sessions are no candidates

    before = counts()
    post(coord, w, "/gold/unmark", {"gold_id": str(gold.id), "reason": ""})
    assert counts() == before
    assert "Not unmarked: state a reason" in flashes(coord, w, "/gold")
    post(coord, w, "/gold/unmark", {"gold_id": str(gold.id), "reason": "expert changed her mind"})
    assert db.session.scalar(select(func.count()).select_from(GoldStandard)) == 0
    (event,) = audit_actions("gold.unmark")
    assert event.reason == "expert changed her mind"
    assert "is no longer a gold-standard session" in flashes(coord, w, "/gold")


@pytest.mark.parametrize("which", ["unsubmitted", "other_study", "garbage", "missing", "sampled"])
def test_marking_gold_refuses_what_cannot_be_gold(w, coord, make_assignment, which):
    submit_plainly(w.a, w.rater_a)
    if which == "sampled":
        post(coord, w, "/sample/draw", {"seed": "3", "fraction": "1"})
    other = make_assignment(w.other_session, w.rater_b)
    value = {"unsubmitted": str(w.b.id), "other_study": str(other.id), "garbage": "12abc",
             "missing": "", "sampled": str(w.a.id)}[which]
    before = counts()
    post(coord, w, "/gold", {"assignment_id": value})
    assert counts() == before
    assert "Not marked:" in flashes(coord, w, "/gold")


def test_unmarking_a_gold_of_another_study_or_none_changes_nothing(w, coord):
    before = counts()
    post(coord, w, "/gold/unmark", {"gold_id": "999", "reason": "a reason"})
    assert counts() == before
    assert "not a gold standard" in flashes(coord, w, "/gold")


def test_agreement_with_gold_table(w, coord):
    """B against A's gold: same codes (kappa not estimable), ratings one point higher."""
    submit_plainly(w.a, w.rater_a, "4")
    mark(w, w.a)
    submit_plainly(w.b, w.rater_b, "5")
    page = html(coord.get(url(w, "/gold")))
    table = re.search(r'<table class="data rel-agreement-table">.*?</table>', page, re.S).group(0)
    assert "Bertha Blindtest" in table
    assert ">+1.00<" in table  # bias, signed, 2 decimals
    assert ">1.00<" in table  # mean |diff|
    assert ">0%<" in table and ">100%<" in table  # exact, within one
    assert "not certified" in table
    assert "kappa not estimable" in table  # the reason is shown
    assert "Therapist interventions" in table  # code set titles as column groups
    assert "at least 0.70 on every code set" in page and "at least 80%" in page
    assert "over at least 1 submitted gold session(s)" in page


def test_gold_page_empty_states(w, coord):
    page = html(coord.get(url(w, "/gold")))
    assert "No gold-standard sessions yet" in page
    assert "No submitted coding can be marked" in page
    assert "Mark a gold-standard session first" in page


# --------------------------------------------------------------------------- report


def _service_report(w):
    from mbtcode.services.reliability_report import reliability_report

    db.session.expire_all()
    return reliability_report(w.study, n_boot=BOOT)


def test_empty_report_says_what_to_do(w, coord, client_for):
    page = html(coord.get(url(w)))
    assert "No double-coded sessions yet" in page
    assert "Draw a double-coding sample" in page and f'href="{url(w, "/sample")}"' in page
    assert "assign second raters" in page and "wait until the raters submit" in page
    assert "0 of 1</strong> session(s) double-coded" in page
    analyst = html(client_for(w.analyst).get(url(w)))
    assert "A coordinator draws a double-coding sample" in analyst
    assert url(w, "/sample") not in analyst


def test_report_shows_the_figures_the_service_computes(w, coord):
    double_code(w)
    report = _service_report(w)
    page = html(coord.get(url(w, f"?boot={BOOT}")))
    assert "style=" not in page
    s = report["sessions"]
    assert f"{s['double_coded']} of {s['total']}</strong> session(s) double-coded" in page
    therapist = report["code_sets"][0]
    alpha = therapist["overall"]["statistics"]["krippendorff_alpha"]
    assert f'<span class="rel-estimate">{alpha["estimate"]:.3f}</span>' in page
    assert f'[{alpha["ci_low"]:.3f}, {alpha["ci_high"]:.3f}]' in page
    agreement = therapist["overall"]["statistics"]["percent_agreement"]["estimate"]
    assert f"{100 * agreement:.1f}%" in page
    item = report["ratings"]["items"][0]
    icc1 = item["statistics"]["icc1"]
    assert f'<span class="rel-estimate">{icc1["estimate"]:.3f}</span>' in page
    assert escape(item["label"]) in page
    pair = therapist["pairs"][0]
    kappa = pair["statistics"]["cohen_kappa"]["estimate"]
    assert f"{kappa:.3f}" in page
    # Rater names with their codes, for coordinators.
    for code in report["raters"]:
        assert re.search(rf'(Alice Rater|Bertha Blindtest) <span class="muted">\({code}\)</span>', page)
    # The coincidence matrix: diagonal marked, counts as computed.
    labels = therapist["confusion"]["labels"]
    matrix = therapist["confusion"]["matrix"]
    i = labels.index("CLA")
    assert f'<td class="num rel-diag"><strong>{int(matrix[i][i])}</strong>' in page
    # Side by side: utterance level and session tally.
    assert ">utterance level</th>" in page and ">session tally</th>" in page
    assert "ICC(2,1)" in page and "Weighted κ (quadratic)" in page


def test_report_shows_bands_with_their_scale(w, coord):
    double_code(w)
    report = _service_report(w)
    page = html(coord.get(url(w, f"?boot={BOOT}")))
    shown = 0
    for cs in report["code_sets"]:
        for name, d in cs["overall"]["statistics"].items():
            if d.get("band"):
                assert f'{escape(d["band"])}</span> <span class="rel-scale">({escape(d["scale"])})</span>' \
                    in page, name
                shown += 1
    assert shown >= 2


def test_null_estimates_show_their_reason_as_text(w, coord):
    double_code(w)
    report = _service_report(w)
    reasons = {
        d["reason"]
        for cs in report["code_sets"] for c in cs["codes"] if c["prevalence"]
        for d in [c["session_tally"]["statistics"].get("icc1"), c["utterance"]["statistics"].get(
            "krippendorff_alpha")]
        if d and d["estimate"] is None
    }
    assert reasons, "the test data should have a statistic that cannot be estimated"
    page = html(coord.get(url(w, f"?boot={BOOT}")))
    for reason in reasons:
        assert f'<span class="rel-na">—</span> <span class="rel-reason">{escape(reason)}</span>' in page


def test_report_charts_are_accessible_svg_without_styles_or_scripts(w, coord):
    double_code(w)
    page = html(coord.get(url(w, f"?boot={BOOT}")))
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 3  # two code sets, one for the items
    for svg in svgs:
        assert 'role="img"' in svg and "<title id=" in svg
        described = re.search(r'aria-describedby="([^"]+)"', svg).group(1).split()
        for target in described:
            assert f'id="{target}"' in page, target
        assert "style" not in svg and "<script" not in svg and not re.search(r"\son\w+=", svg)
        assert "<circle" in svg
    assert "The same figures are in the table" in page
    assert ".667" in svgs[0] and ".800" in svgs[0] and ".75" in svgs[0]


def test_report_fragment_for_htmx(w, coord):
    double_code(w, extra=1)
    fragment = html(coord.get(url(w, f"?boot={BOOT}"), headers={"HX-Request": "true"}))
    assert "<html" not in fragment and "rel-report-summary" in fragment
    assert f"{BOOT} bootstrap replicates" in fragment


def test_report_for_analyst_has_names(w, client_for):
    double_code(w, extra=1)
    page = html(client_for(w.analyst).get(url(w, f"?boot={BOOT}")))
    assert "Alice Rater" in page and "Bertha Blindtest" in page


@pytest.mark.parametrize("boot", ["abc", "-1", "10001", "1.5", "9" * 400])
def test_bad_boot_is_a_400_with_a_clear_message(w, coord, boot):
    for path in ("", "/report.json"):
        response = coord.get(url(w, path), query_string={"boot": boot})
        assert response.status_code == 400, path
        body = response.get_data(as_text=True)
        assert "bootstrap replicates" in body and "0 to 10,000" in body


def test_boot_zero_and_empty_are_accepted(w, coord):
    assert "0 bootstrap replicates" in html(coord.get(url(w, "?boot=0")))
    assert "1000 bootstrap replicates" in html(coord.get(url(w, "?boot=")))


def test_json_download(w, coord):
    double_code(w, extra=1)
    response = coord.get(url(w, f"/report.json?boot={BOOT}"))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="reliability-blinded-study-\d{8}\.json"', disposition)
    data = json.loads(response.get_data(as_text=True))
    expected = _service_report(w)
    assert set(data) == {"format", "study", "scheme", "generated_at", "conventions", "sessions",
                         "raters", "code_sets", "ratings"}
    assert data["sessions"] == expected["sessions"] == {"total": 2, "double_coded": 2, "gold_excluded": 0}
    assert data["raters"] == [f"R{w.rater_a.id}", f"R{w.rater_b.id}"]
    assert data["code_sets"] == expected["code_sets"]
    assert "Alice Rater" not in response.get_data(as_text=True)  # pseudonyms only
    page = html(coord.get(url(w, f"?boot={BOOT}")))
    assert f'href="{url(w, "/report.json")}?boot={BOOT}" download' in page


def test_gold_sessions_are_left_out_of_the_report(w, coord):
    double_code(w, extra=1)
    mark(w, w.a)
    page = html(coord.get(url(w, f"?boot={BOOT}")))
    assert "1 of 2</strong> session(s) double-coded" in page
    assert "1 gold-standard session(s) left out" in page


# --------------------------------------------------------------------------- escaping


def test_markup_in_session_labels_and_rater_names_is_escaped_everywhere(w, coord, make_user,
                                                                        make_member):
    from mbtcode.services.assignments import assign_sessions

    x = make_user("rater", name=XSS_SCRIPT)
    make_member(w.study, x, "rater")
    manifest = f"file,label\nextra0.txt,{XSS_SCRIPT} one\nextra1.txt,{XSS_SCRIPT} two\n"
    one, two = add_sessions(w, 2, manifest=manifest)
    a1, x1 = assign_sessions(w.study, [one], [w.rater_a, x], actor=None)
    (x2,) = assign_sessions(w.study, [two], [x], actor=None)
    db.session.commit()
    code_rate_submit(a1, w.rater_a)
    code_rate_submit(x1, x, shift=1)
    code_rate_submit(x2, x)
    mark(w, x2)  # gold: session two, expert x
    post(coord, w, "/sample/draw", {"seed": "1", "fraction": "1"})  # samples one (and the world's)
    for path in ("/sample", "/gold", f"?boot={BOOT}"):
        page = html(coord.get(url(w, path)))
        assert XSS_SCRIPT not in page, path
        assert str(escape(XSS_SCRIPT)) in page, path
    sample = html(coord.get(url(w, "/sample")))
    assert f"<td>{escape(XSS_SCRIPT)} one</td>" in sample
    gold = html(coord.get(url(w, "/gold")))
    assert f"<td>{escape(XSS_SCRIPT)} two</td>" in gold


def test_markup_in_a_drawn_flash_or_reason_is_escaped(w, coord):
    post(coord, w, "/gold/unmark", {"gold_id": XSS_SCRIPT, "reason": XSS_SCRIPT})
    page = html(coord.get(url(w, "/gold")))
    assert XSS_SCRIPT not in page


