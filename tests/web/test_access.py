"""Every route refuses anonymous and wrong-role users; security headers; CSRF on login."""

from __future__ import annotations

import pytest
from flask import url_for
from sqlalchemy import select

from mbtcode import create_app
from mbtcode.extensions import db
from mbtcode.models import AuditEvent, QualityAudit, UtteranceCode
from mbtcode.services.api_tokens import create_token
from mbtcode.services.coding import record_note
from tests.conftest import PASSWORD, csrf_token_from, row_counts

PUBLIC = "public"
ANY = "any signed-in user"
#: The JSON API: a bearer token only, never the session cookie, so the browser checks below
#: do not apply (see test_api_ignores_the_session_cookie and tests/web/test_api.py).
BEARER = "bearer token only"
#: Who may use each endpoint: PUBLIC, ANY, or the set of roles (keys of ``_people``) that may.
#: ``rater`` is the rater of the assignment in the URL; ``other_rater`` codes the same session
#: in their own assignment; ``outsider`` coordinates another study only.
#: Adding a route must be a conscious act: add it here, and the tests below cover it.
ACCESS = {
    "static": PUBLIC,
    "auth.login": PUBLIC,
    "index": ANY,
    "auth.logout": ANY,
    "auth.csrf_token": ANY,
    "studies.index": ANY,
    "coding.queue": ANY,
    "studies.detail": {"admin", "coordinator", "analyst", "rater", "other_rater"},
    "sessions.detail": {"admin", "coordinator", "rater", "other_rater"},
    "assignments.assign": {"admin", "coordinator"},
    "assignments.add_study_member": {"admin", "coordinator"},
    "assignments.reopen": {"admin", "coordinator"},
    "assignments.withdraw": {"admin", "coordinator"},
    "coding.workspace": {"rater"},
    "coding.save_code": {"rater"},
    "coding.save_note": {"rater"},
    "coding.utterance_row": {"rater"},
    "coding.submit_page": {"rater"},
    "ratings.form": {"rater"},
    "ratings.save_rating": {"rater"},
    "ratings.save_rationale": {"rater"},
    "reliability.report": {"admin", "coordinator", "analyst"},
    "reliability.report_json": {"admin", "coordinator", "analyst"},
    "reliability.sample": {"admin", "coordinator"},
    "reliability.draw": {"admin", "coordinator"},
    "reliability.assign_second": {"admin", "coordinator"},
    "reliability.settings": {"admin", "coordinator"},
    "reliability.gold": {"admin", "coordinator"},
    "reliability.mark_gold": {"admin", "coordinator"},
    "reliability.unmark_gold": {"admin", "coordinator"},
    "adjudication.queue": {"admin", "coordinator"},
    "adjudication.session": {"admin", "coordinator"},
    "adjudication.start": {"admin", "coordinator"},
    "adjudication.resolve_code": {"admin", "coordinator"},
    "adjudication.resolve_rating": {"admin", "coordinator"},
    "adjudication.finalize": {"admin", "coordinator"},
    "adjudication.reopen": {"admin", "coordinator"},
    "adjudication.discard": {"admin", "coordinator"},
    # API tokens page: everyone has their own; ``rater`` owns the token in the URL.
    "api_tokens.index": ANY,
    "api_tokens.create": ANY,
    "api_tokens.confirm_revoke": {"rater"},
    "api_tokens.revoke": {"rater"},
    "api.studies": BEARER,
    "api.table": BEARER,
    "api.openapi": PUBLIC,
    # fidelity dashboards and program quality audits (issue 5): no raters
    "fidelity.dashboard": {"admin", "coordinator", "analyst"},
    "fidelity.therapist": {"admin", "coordinator", "analyst"},
    "quality.index": {"admin", "coordinator", "analyst"},
    "quality.audit": {"admin", "coordinator", "analyst"},
    "quality.new": {"admin", "coordinator"},
    "quality.create": {"admin", "coordinator"},
    "quality.update": {"admin", "coordinator"},
    "quality.confirm_delete": {"admin", "coordinator"},
    "quality.delete": {"admin", "coordinator"},
    # exports (issue 5): de-identified for analysts; the POST without a choice is a 422
    "exports.form": {"admin", "coordinator", "analyst"},
    "exports.download": {"admin", "coordinator", "analyst"},
}
ROLES = ("admin", "coordinator", "analyst", "rater", "other_rater", "outsider")
#: Routes about one rater's work: for everyone else they do not exist (blinding).
RATER_ONLY = {e for e, who in ACCESS.items() if who == {"rater"}}
SECRET_TEXT = "He never listens"
WORLD_THERAPIST = "TH-W1"
PRIVATE_NOTE = "alice-private-note-7731"


def _rules() -> list[tuple[str, str]]:
    """(endpoint, method) for every rule and method of the app, collected at import time."""
    app = create_app({"TESTING": True, "DATABASE_URL": "sqlite://", "SECRET_KEY": "x"})
    with app.app_context():
        db.engine.dispose()
    return sorted(
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    )


RULES = _rules()
GUARDED = [(e, m) for e, m in RULES if ACCESS.get(e) not in (PUBLIC, BEARER)]
BY_ROLE = [(e, m) for e, m in RULES if isinstance(ACCESS.get(e), set)]


@pytest.fixture
def world(coding_world):
    """The coding world, with a note of rater A's that must never leak."""
    w = coding_world
    record_note(w.a, w.utterance(1), PRIVATE_NOTE, expected_version=0, actor=w.rater_a)
    db.session.commit()
    token, _secret = create_token(w.rater_a, "Alice's pipeline", actor=w.rater_a)
    db.session.commit()
    w.api_token_id = token.id
    # A therapist of the session and a program audit, so the fidelity pages have real targets.
    from mbtcode.models import Participant, SessionParticipant
    from mbtcode.services.quality_audits import create_audit

    therapist = Participant(study_id=w.study.id, kind="therapist", code=WORLD_THERAPIST)
    db.session.add(therapist)
    db.session.flush()
    db.session.add(SessionParticipant(session_id=w.session.id, participant_id=therapist.id))
    create_audit(w.study, audit_date="2026-03-01", values={"1": "4"}, actor=w.coordinator)
    db.session.commit()
    return w


@pytest.fixture
def url_for_rule(app, world):
    """Build a URL for an endpoint, with ids of real objects so that data exists to leak."""
    values = {
        "study_id": world.study.id, "session_id": world.session.id,
        "assignment_id": world.a.id, "utterance_id": world.utterance(1).id,
        "instrument_id": "mbt-acs", "item_id": "2", "dimension": "adherence",
        "filename": "css/app.css",
        "token_id": world.api_token_id, "level": "session",
        "code": WORLD_THERAPIST, "audit_id": db.session.scalar(select(QualityAudit.id)),
    }

    def build(endpoint: str) -> str:
        (rule,) = [r for r in app.url_map.iter_rules() if r.endpoint == endpoint]
        with app.test_request_context():
            return url_for(endpoint, **{arg: values[arg] for arg in rule.arguments})

    return build


def _people(world) -> dict:
    return {
        "admin": world.admin, "coordinator": world.coordinator, "analyst": world.analyst,
        "rater": world.rater_a, "other_rater": world.rater_b, "outsider": world.outsider,
    }


def _leaks(response, viewer=None) -> list[str]:
    """Secrets of the world (and rater A's name, unless A is looking) found in the body."""
    body = response.get_data(as_text=True)
    secrets = [SECRET_TEXT, "Blinded study", PRIVATE_NOTE]
    if viewer is None or viewer.name != "Alice Rater":
        secrets.append("Alice Rater")
    return [s for s in secrets if s in body]


def _writable_counts() -> dict[str, int]:
    """Row counts of every table but the audit log (sign-ins write audit rows)."""
    return {t: n for t, n in row_counts().items() if t != "audit_event"}


def _non_auth_audit() -> list[str]:
    return list(db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.action.not_like("auth.%")).order_by(AuditEvent.id)
    ))


def test_endpoint_list_is_what_we_expect():
    """Adding a route must be a conscious act: add it to ACCESS."""
    assert {endpoint for endpoint, _ in RULES} == set(ACCESS)


GUARDED_GETS = [(e, m) for e, m in GUARDED if m == "GET"]
GUARDED_WRITES = [(e, m) for e, m in GUARDED if m != "GET"]


def _each(rules, check) -> None:
    """Run ``check(endpoint, method)`` for every rule; report every rule that fails."""
    failures = []
    for endpoint, method in rules:
        try:
            check(endpoint, method)
        except AssertionError as exc:
            failures.append(f"{method} {endpoint}: {exc}")
    assert not failures, "\n".join(failures)


def test_rule_lists_are_not_empty():
    assert len(GUARDED_GETS) >= 10 and len(GUARDED_WRITES) >= 9 and len(BY_ROLE) >= 15


def test_anonymous_get_redirects_to_login(client, url_for_rule):
    def check(endpoint, method):
        response = client.get(url_for_rule(endpoint))
        assert response.status_code == 302, response.status_code
        expected = "/auth/login" if endpoint == "index" else "/auth/login?next="
        assert response.headers["Location"].startswith(expected), response.headers["Location"]
        assert not _leaks(response)

    _each(GUARDED_GETS, check)


def test_anonymous_background_get_is_401_not_a_login_page(client, url_for_rule):
    """An htmx request must not get the login page as if it were its fragment."""
    def check(endpoint, method):
        response = client.get(url_for_rule(endpoint), headers={"HX-Request": "true"})
        assert response.status_code == 401, response.status_code
        assert response.headers["X-Mbtcode-Error"] == "login"
        assert not _leaks(response)

    # The start page is a plain redirect and never loaded in the background.
    _each([(e, m) for e, m in GUARDED_GETS if e != "index"], check)


def test_anonymous_write_without_token_is_refused(client, url_for_rule):
    before = _writable_counts()

    def check(endpoint, method):
        response = client.open(url_for_rule(endpoint), method=method)
        assert response.status_code == 400, response.status_code
        assert not _leaks(response)

    _each(GUARDED_WRITES, check)
    assert _writable_counts() == before


def test_anonymous_write_with_a_valid_token_is_sent_to_login(client, url_for_rule):
    token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
    before = _writable_counts()

    def check(endpoint, method):
        response = client.open(url_for_rule(endpoint), method=method, data={"csrf_token": token})
        assert response.status_code == 302, response.status_code
        assert response.headers["Location"].startswith("/auth/login")

    _each(GUARDED_WRITES, check)
    assert _writable_counts() == before


def test_anonymous_background_write_is_401_for_the_page_to_act_on(client, url_for_rule):
    token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))

    def check(endpoint, method):
        response = client.open(url_for_rule(endpoint), method=method, data={"csrf_token": token},
                               headers={"HX-Request": "true"})
        assert response.status_code == 401, response.status_code
        assert response.headers["X-Mbtcode-Error"] == "login"

    _each(GUARDED_WRITES, check)


#: Form fields a wrong-role user sends along, to try every write the route could make.
HOSTILE_FORM = {"code": "EV", "note": "x", "value": "5", "text": "x", "reason": "a reason",
                "role": "coordinator", "version": "0"}


@pytest.mark.parametrize(("endpoint", "method"), BY_ROLE)
def test_every_role_gets_only_what_its_study_role_allows(world, client_for, url_for_rule,
                                                         endpoint, method):
    """Wrong-role users get 403/404 (404 on another rater's work) with no data and no write;
    then the roles allowed get through (which also proves the URL is real)."""
    url = url_for_rule(endpoint)
    people = _people(world)
    for role in [r for r in ROLES if r not in ACCESS[endpoint]]:
        user = people[role]
        browser = client_for(user)
        token = csrf_token_from(browser.get("/assignments/").get_data(as_text=True))
        before, audit_before = _writable_counts(), _non_auth_audit()
        versions = dict(db.session.execute(select(UtteranceCode.id, UtteranceCode.version)).all())
        response = browser.open(url, method=method, data={
            **HOSTILE_FORM, "csrf_token": token, "email": world.outsider.email,
            "session_id": str(world.session.id), "rater_id": str(world.rater_b.id)})
        allowed = {404} if endpoint in RATER_ONLY or role == "outsider" else {403, 404}
        assert response.status_code in allowed, (role, response.status_code)
        assert not _leaks(response, user), (role, _leaks(response, user))
        db.session.expire_all()
        assert _writable_counts() == before, role
        assert _non_auth_audit() == audit_before, role
        assert dict(db.session.execute(select(UtteranceCode.id, UtteranceCode.version)).all()) \
            == versions, role
    for role in sorted(ACCESS[endpoint]):
        browser = client_for(people[role])
        token = csrf_token_from(browser.get("/assignments/").get_data(as_text=True))
        version = db.session.scalar(select(UtteranceCode.version).where(
            UtteranceCode.assignment_id == world.a.id,
            UtteranceCode.utterance_id == world.utterance(1).id))
        response = browser.open(url, method=method, data={"csrf_token": token,
                                                           "version": str(version)})
        # 422: the submit of an incomplete assignment is refused on its merits, not for access.
        assert response.status_code in (200, 302, 303, 422), (role, response.status_code)
        assert b"There is nothing here" not in response.data, role


def test_pages_for_everyone_show_an_outsider_nothing_of_the_study(world, client_for,
                                                                  url_for_rule):
    browser = client_for(world.outsider)
    token = csrf_token_from(browser.get("/assignments/").get_data(as_text=True))

    def check(endpoint, method):
        response = browser.open(url_for_rule(endpoint), method=method,
                                data={"csrf_token": token})
        assert response.status_code in (200, 302), response.status_code
        assert not _leaks(response, world.outsider), _leaks(response, world.outsider)

    # Signing out last: it ends the session the other checks use.
    _each(sorted([(e, m) for e, m in RULES if ACCESS.get(e) is ANY],
                 key=lambda r: r[0] == "auth.logout"), check)


def test_api_ignores_the_session_cookie(world, client, client_for, url_for_rule):
    """No API endpoint but the public description answers a browser, signed in or not."""
    bearer = [(e, m) for e, m in RULES if ACCESS.get(e) is BEARER]
    assert {e for e, _ in bearer} >= {"api.studies", "api.table"}
    admin = client_for(world.admin)

    def check(endpoint, method):
        for browser in (client, admin):
            response = browser.open(url_for_rule(endpoint), method=method)
            assert response.status_code == 401, response.status_code
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.get_json()["error"]["status"] == 401
            assert not _leaks(response)

    _each(bearer, check)


def test_login_page_is_public(client):
    assert client.get("/auth/login").status_code == 200


def test_static_files_are_public(client):
    with client.get("/static/css/app.css") as response:
        assert response.status_code == 200


def test_get_only_routes_refuse_post(url_for_rule, client, signed_in):
    token = csrf_token_from(client.get("/assignments/").get_data(as_text=True))
    for endpoint in ("studies.index", "coding.queue", "studies.detail", "coding.workspace",
                     "ratings.form", "coding.utterance_row", "sessions.detail"):
        response = client.post(url_for_rule(endpoint), data={"csrf_token": token})
        assert response.status_code == 405, endpoint


# --------------------------------------------------------------------------- headers


def _assert_security_headers(response) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("Referrer-Policy") in ("no-referrer", "same-origin",
                                                       "strict-origin-when-cross-origin")


def test_security_headers_on_a_page(client):
    _assert_security_headers(client.get("/auth/login"))


def test_security_headers_on_an_authenticated_page(client, signed_in):
    _assert_security_headers(client.get("/studies/"))


def test_security_headers_on_an_error_page(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    _assert_security_headers(response)


def test_security_headers_on_a_405(client):
    response = client.get("/auth/logout")
    assert response.status_code == 405
    _assert_security_headers(response)


def test_security_headers_on_a_csrf_error(client):
    response = client.post("/auth/login")
    assert response.status_code == 400
    _assert_security_headers(response)


def test_security_headers_on_a_static_file(client):
    with client.get("/static/js/vendor/htmx-2.0.11.min.js") as response:
        assert response.status_code == 200
        _assert_security_headers(response)


def test_hsts_only_over_https(client):
    assert "Strict-Transport-Security" not in client.get("/auth/login").headers
    secure = client.get("/auth/login", base_url="https://localhost")
    assert "max-age=" in secure.headers["Strict-Transport-Security"]


def test_authenticated_pages_are_not_cached(world, client_for, url_for_rule):
    rater, admin = client_for(world.rater_a), client_for(world.admin)

    def check(endpoint, method):
        who = ACCESS[endpoint]
        browser = rater if not isinstance(who, set) or "rater" in who else admin
        response = browser.get(url_for_rule(endpoint))
        assert response.status_code in (200, 302), response.status_code
        assert response.headers["Cache-Control"] == "no-store"

    _each(GUARDED_GETS, check)


def test_authenticated_htmx_fragment_is_not_cached(world, client_for, url_for_rule):
    browser = client_for(world.coordinator)
    response = browser.get(url_for_rule("sessions.detail"), headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


def test_authenticated_error_page_is_not_cached(client, signed_in):
    assert client.get("/studies/424242").headers["Cache-Control"] == "no-store"


# --------------------------------------------------------------------------- CSRF on login


def test_login_without_csrf_token_is_400_and_signs_nobody_in(client, make_user):
    user = make_user()
    client.get("/auth/login")
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/studies/").status_code == 302
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert "auth.login" not in actions


def test_login_with_a_forged_csrf_token_is_400(client, make_user):
    user = make_user()
    client.get("/auth/login")
    response = client.post("/auth/login", data={
        "email": user.email, "password": PASSWORD, "csrf_token": "forged.token.value"})
    assert response.status_code == 400
    assert client.get("/studies/").status_code == 302


def test_csrf_token_from_another_browser_is_refused(app, client, make_user):
    user = make_user()
    other = app.test_client()
    foreign_token = csrf_token_from(other.get("/auth/login").get_data(as_text=True))
    client.get("/auth/login")
    response = client.post("/auth/login", data={
        "email": user.email, "password": PASSWORD, "csrf_token": foreign_token})
    assert response.status_code == 400
