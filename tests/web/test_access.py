"""Every route refuses anonymous users; security headers; CSRF on login."""

from __future__ import annotations

import pytest
from flask import url_for
from sqlalchemy import select

from mbtcode import create_app
from mbtcode.extensions import db
from mbtcode.models import AuditEvent
from tests.conftest import PASSWORD, csrf_token_from

PUBLIC_ENDPOINTS = {"auth.login", "static"}
EXPECTED_ENDPOINTS = {
    "static",
    "index",
    "auth.login",
    "auth.logout",
    "studies.index",
    "studies.detail",
    "sessions.detail",
}
SECRET_TEXT = "the patient's secret sentence"


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


@pytest.fixture
def url_for_rule(app, make_study, make_session):
    """Build a URL for an endpoint, with ids of real objects so that data exists to leak."""
    study = make_study("Confidential study")
    session = make_session(study, [f"P: {SECRET_TEXT}", "T: ok"])
    values = {"study_id": study.id, "session_id": session.id}

    def build(endpoint: str) -> str:
        (rule,) = [r for r in app.url_map.iter_rules() if r.endpoint == endpoint]
        with app.test_request_context():
            return url_for(endpoint, **{arg: values[arg] for arg in rule.arguments})

    return build


def _leaks(response) -> bool:
    body = response.get_data(as_text=True)
    return SECRET_TEXT in body or "Confidential study" in body


def test_endpoint_list_is_what_we_expect():
    """Adding a route must be a conscious act: add it here and to the access tests."""
    assert {endpoint for endpoint, _ in RULES} == EXPECTED_ENDPOINTS


@pytest.mark.parametrize(
    ("endpoint", "method"),
    [(e, m) for e, m in RULES if e not in PUBLIC_ENDPOINTS and m == "GET"],
)
def test_anonymous_get_redirects_to_login(client, url_for_rule, endpoint, method):
    url = url_for_rule(endpoint)
    response = client.get(url)
    assert response.status_code == 302, url
    assert response.headers["Location"].startswith("/auth/login?next=")
    assert not _leaks(response)


@pytest.mark.parametrize(
    ("endpoint", "method"),
    [(e, m) for e, m in RULES if e not in PUBLIC_ENDPOINTS and m != "GET"],
)
def test_anonymous_write_without_token_is_refused(client, url_for_rule, endpoint, method):
    response = client.open(url_for_rule(endpoint), method=method)
    assert response.status_code in (302, 400, 401)
    assert not _leaks(response)


@pytest.mark.parametrize(
    ("endpoint", "method"),
    [(e, m) for e, m in RULES if e not in PUBLIC_ENDPOINTS and m != "GET"],
)
def test_anonymous_write_with_a_valid_token_is_sent_to_login(client, url_for_rule, endpoint, method):
    token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
    response = client.open(url_for_rule(endpoint), method=method, data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")


def test_login_page_is_public(client):
    assert client.get("/auth/login").status_code == 200


def test_static_files_are_public(client):
    with client.get("/static/css/app.css") as response:
        assert response.status_code == 200


def test_get_only_routes_refuse_post(client, signed_in, url_for_rule):
    assert client.post(url_for_rule("studies.index")).status_code in (400, 405)


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


@pytest.mark.parametrize("path", ["/", "/studies/", "study", "session"])
def test_authenticated_pages_are_not_cached(client, signed_in, url_for_rule, path):
    url = {"study": url_for_rule("studies.detail"), "session": url_for_rule("sessions.detail")}.get(path, path)
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


def test_authenticated_htmx_fragment_is_not_cached(client, signed_in, url_for_rule):
    response = client.get(url_for_rule("sessions.detail"), headers={"HX-Request": "true"})
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
