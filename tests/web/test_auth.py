"""Sign in and out: redirects, failures, CSRF, revocation, session fixation."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import AuditEvent
from tests.conftest import PASSWORD, csrf_token_from


def _post_login(client, email: str, password: str, *, next_url: str | None = None):
    token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
    url = "/auth/login" + (f"?next={next_url}" if next_url is not None else "")
    return client.post(url, data={"email": email, "password": password, "csrf_token": token})


def _is_login_redirect(response) -> bool:
    return response.status_code == 302 and response.headers["Location"].startswith("/auth/login")


def _audit_actions() -> list[str]:
    return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def _logout(client):
    token = csrf_token_from(client.get("/studies/").get_data(as_text=True))
    return client.post("/auth/logout", data={"csrf_token": token})


def test_login_page(client):
    response = client.get("/auth/login")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<form method="post"' in html
    assert 'name="password"' in html and 'type="password"' in html
    assert csrf_token_from(html)


def test_login_success_redirects_to_the_start_page(client, make_user):
    user = make_user()
    response = _post_login(client, user.email, PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert client.get("/studies/").status_code == 200
    assert _audit_actions()[-1] == "auth.login"


def test_login_email_is_case_insensitive(client, make_user):
    make_user(email="mixed@example.org")
    assert _post_login(client, "Mixed@Example.ORG", PASSWORD).status_code == 302


def test_login_follows_a_local_next(client, make_user):
    user = make_user()
    response = _post_login(client, user.email, PASSWORD, next_url="/studies/7?x=1")
    assert response.headers["Location"] == "/studies/7?x=1"


@pytest.mark.parametrize("target", [
    "//evil.example",
    "https://evil.example",
    "http://evil.example/studies/",
    "javascript:alert(1)",
    "/\\evil",
    "\\\\evil.example",
    "///evil.example",
    "studies/",
    "%2F%2Fevil.example",
    "/%09/evil.example",
    "/%0A/evil.example",
    "/%0D%0ASet-Cookie:x=1",
    " //evil.example",
])
def test_login_refuses_open_redirects(client, make_user, target):
    user = make_user()
    response = _post_login(client, user.email, PASSWORD, next_url=target)
    assert response.status_code == 302
    assert response.headers["Location"] in ("/", "/studies/")


def test_wrong_password_is_401_and_audited(client, make_user):
    user = make_user()
    response = _post_login(client, user.email, PASSWORD + "x")
    assert response.status_code == 401
    assert "Wrong e-mail or password." in response.get_data(as_text=True)
    assert _audit_actions() == ["user.create", "auth.login_failed"]
    assert _is_login_redirect(client.get("/studies/"))


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(client, make_user):
    user = make_user()
    wrong = _post_login(client, user.email, "not the password at all")
    unknown = _post_login(client, "nobody@example.org", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401

    def page(response, email):  # the form echoes the typed e-mail; the CSRF token varies
        html = response.get_data(as_text=True).replace(email, "EMAIL")
        return html.replace(csrf_token_from(html), "TOKEN")

    assert page(wrong, user.email) == page(unknown, "nobody@example.org")


def test_failed_login_audit_records_the_email_not_the_password(client, make_user):
    user = make_user()
    _post_login(client, user.email, "a wrong password 123")
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.login_failed")).one()
    assert event.detail == {"email": user.email}
    assert event.actor_id is None


def test_inactive_user_cannot_sign_in(client, make_user):
    user = make_user()
    user.active = False
    db.session.commit()
    assert _post_login(client, user.email, PASSWORD).status_code == 401


def test_login_without_csrf_token_is_refused(client, make_user):
    user = make_user()
    client.get("/auth/login")
    response = client.post("/auth/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert _is_login_redirect(client.get("/studies/"))
    assert "auth.login" not in _audit_actions()


def test_signed_in_user_visiting_login_is_sent_on(client, signed_in):
    response = client.get("/auth/login")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_logout_is_post_only(client, signed_in):
    assert client.get("/auth/logout").status_code == 405
    assert client.get("/studies/").status_code == 200  # still signed in


def test_logout_needs_csrf_token(client, signed_in):
    response = client.post("/auth/logout")
    assert response.status_code == 400
    assert client.get("/studies/").status_code == 200  # still signed in


def test_logout_signs_out(client, signed_in):
    response = _logout(client)
    assert _is_login_redirect(response)
    assert _is_login_redirect(client.get("/studies/"))
    assert _audit_actions()[-1] == "auth.logout"


def test_old_session_cookie_is_dead_after_logout(app, client, signed_in):
    old_cookie = client.get_cookie("session").value
    _logout(client)
    replay = app.test_client()
    replay.set_cookie("session", old_cookie)
    assert _is_login_redirect(replay.get("/studies/"))


def test_logout_ends_the_users_other_sessions_too(app, client, signed_in, login):
    other = app.test_client()
    token = csrf_token_from(other.get("/auth/login").get_data(as_text=True))
    other.post("/auth/login", data={"email": signed_in.email, "password": PASSWORD, "csrf_token": token})
    assert other.get("/studies/").status_code == 200
    _logout(client)
    assert _is_login_redirect(other.get("/studies/"))


def test_session_cookie_changes_at_login(client, make_user):
    user = make_user()
    page = client.get("/auth/login")
    before = client.get_cookie("session").value
    client.post("/auth/login", data={
        "email": user.email, "password": PASSWORD,
        "csrf_token": csrf_token_from(page.get_data(as_text=True)),
    })
    after = client.get_cookie("session").value
    assert after != before


def test_pre_login_csrf_token_is_not_carried_into_the_signed_in_session(client, make_user):
    user = make_user()
    old_token = csrf_token_from(client.get("/auth/login").get_data(as_text=True))
    client.post("/auth/login", data={"email": user.email, "password": PASSWORD, "csrf_token": old_token})
    response = client.post("/auth/logout", data={"csrf_token": old_token})
    assert response.status_code == 400


def test_session_cookie_flags(client, make_user):
    user = make_user()
    response = _post_login(client, user.email, PASSWORD)
    (cookie,) = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
