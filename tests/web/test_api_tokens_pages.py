"""The API tokens page: make (secret shown once), list and revoke your own tokens."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import func, select, text

from mbtcode.extensions import db
from mbtcode.models import ApiToken, AuditEvent
from mbtcode.services.api_tokens import MAX_ACTIVE_TOKENS, create_token
from tests.conftest import check_each, csrf_token_from

PAGE = "/account/api-tokens/"


@pytest.fixture
def owner(make_user):
    return make_user("analyst", name="Olga Owner")


@pytest.fixture
def browser(owner, client_for):
    return client_for(owner)


def _token(browser) -> str:
    return csrf_token_from(browser.get(PAGE).get_data(as_text=True))


def _create(browser, name="R pipeline", expires="", **extra):
    return browser.post(PAGE, data={"csrf_token": _token(browser), "name": name,
                                    "expires": expires, **extra})


def _secret_on(response) -> str:
    match = re.search(r'id="token-secret"[^>]*value="(mbt_[A-Za-z0-9_-]{43})"',
                      response.get_data(as_text=True))
    assert match, "no secret on the page"
    return match.group(1)


def _count() -> int:
    return db.session.scalar(select(func.count()).select_from(ApiToken))


def _make(user, name="made elsewhere"):
    token, secret = create_token(user, name, actor=user)
    db.session.commit()
    return token, secret


# ----------------------------------------------------------------------------- list


def test_the_page_is_for_signed_in_users(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login")


def test_every_page_links_to_it(browser):
    html = browser.get("/studies/").get_data(as_text=True)
    assert f'href="{PAGE}"' in html


def test_the_page_lists_only_my_tokens_and_is_not_cached(browser, owner, make_user):
    mine, _ = _make(owner, "My R pipeline")
    _make(make_user("coordinator"), "Someone else's notebook")
    response = browser.get(PAGE)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "My R pipeline" in html and f"{mine.prefix}…" in html
    assert "Someone else" not in html
    assert "1 active of at most 20" in html


def test_pages_have_no_inline_scripts_or_styles(browser, owner):
    token, _ = _make(owner)
    for response in (browser.get(PAGE), _create(browser),
                     browser.get(f"{PAGE}{token.id}/revoke")):
        html = response.get_data(as_text=True)
        assert response.status_code == 200
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html)
        assert " style=" not in html and "<style" not in html and " on" + "click=" not in html
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]


# ----------------------------------------------------------------------------- create


def test_creating_shows_the_secret_once_and_stores_its_hash(browser, owner):
    response = _create(browser, "Lab server", "30")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    secret = _secret_on(response)
    html = response.get_data(as_text=True)
    assert "shown only this once" in html and "Lab server" in html
    token = db.session.scalar(select(ApiToken))
    assert token.user_id == owner.id and token.name == "Lab server"
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token.expires_at is not None
    for row in db.session.execute(text("SELECT * FROM api_token")).all():
        assert not any(secret in str(value) or secret[12:] in str(value) for value in row)
    for row in db.session.execute(text("SELECT * FROM audit_event")).all():
        assert not any(secret[12:] in str(value) for value in row)
    # Never again: not on the list, not in the session cookie.
    listing = browser.get(PAGE)
    assert secret[12:] not in listing.get_data(as_text=True)
    cookie = browser.get_cookie("session")
    assert cookie is None or secret[12:] not in cookie.value


def test_a_created_token_works_on_the_api_until_revoked(browser, client):
    secret = _secret_on(_create(browser))
    assert client.get("/api/v1/studies",
                      headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    token = db.session.scalar(select(ApiToken))
    response = browser.post(f"{PAGE}{token.id}/revoke", data={"csrf_token": _token(browser)})
    assert response.status_code == 303
    assert client.get("/api/v1/studies",
                      headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_creating_needs_csrf(browser):
    browser.get(PAGE)
    for data in ({"name": "no token"}, {"name": "forged", "csrf_token": "forged.token"}):
        assert browser.post(PAGE, data=data).status_code == 400
    assert _count() == 0


def test_bad_input_is_shown_on_the_form_and_creates_nothing(browser):
    def refused(data):
        response = _create(browser, **data)
        html = response.get_data(as_text=True)
        assert response.status_code == 200
        assert 'aria-invalid="true"' in html and 'class="field-error"' in html
        assert 'id="token-secret"' not in html
        assert _count() == 0

    check_each([{"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": "x" * 5000},
                {"name": "ok", "expires": "12"}, {"name": "ok", "expires": "-1"},
                {"name": "ok", "expires": "forever"}], refused)


def test_the_typed_name_is_kept_and_escaped(browser):
    html = _create(browser, '<b>"x"</b>' + "y" * 100).get_data(as_text=True)
    assert "<b>" not in html and "&lt;b&gt;" in html


def test_at_most_so_many_active_tokens(browser, owner):
    for i in range(MAX_ACTIVE_TOKENS):
        _make(owner, f"t{i}")
    html = _create(browser, "one too many").get_data(as_text=True)
    assert "revoke one" in html and _count() == MAX_ACTIVE_TOKENS


# ----------------------------------------------------------------------------- revoke


def test_revoking_asks_first_then_revokes(browser, owner):
    token, _ = _make(owner, "Old notebook")
    page = browser.get(f"{PAGE}{token.id}/revoke")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Old notebook" in html and "cannot be undone" in html
    assert page.headers["Cache-Control"] == "no-store"
    db.session.expire_all()
    assert token.revoked_at is None  # asking changes nothing
    response = browser.post(f"{PAGE}{token.id}/revoke", data={"csrf_token": _token(browser)})
    assert response.status_code == 303 and response.headers["Location"].endswith(PAGE)
    db.session.expire_all()
    assert token.revoked_at is not None
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "api_token.revoke"))
    listing = browser.get(PAGE).get_data(as_text=True)
    assert "is revoked" in listing and "revoked" in listing
    again = browser.post(f"{PAGE}{token.id}/revoke", data={"csrf_token": _token(browser)})
    assert again.status_code == 303
    assert "already revoked" in browser.get(PAGE).get_data(as_text=True)


def test_revoking_needs_csrf(browser, owner):
    token, _ = _make(owner)
    browser.get(PAGE)
    assert browser.post(f"{PAGE}{token.id}/revoke").status_code == 400
    assert browser.post(f"{PAGE}{token.id}/revoke",
                        data={"csrf_token": "forged"}).status_code == 400
    db.session.expire_all()
    assert token.revoked_at is None


def test_another_users_token_does_not_exist_for_me(browser, make_user):
    theirs, secret = _make(make_user("coordinator"), "Their pipeline")
    for method, path in (("GET", f"{PAGE}{theirs.id}/revoke"),
                         ("POST", f"{PAGE}{theirs.id}/revoke"),
                         ("GET", f"{PAGE}424242/revoke"),
                         ("POST", f"{PAGE}424242/revoke"),
                         ("GET", f"{PAGE}99999999999/revoke")):
        response = browser.open(path, method=method, data={"csrf_token": _token(browser)})
        assert response.status_code == 404, (method, path)
        assert "Their pipeline" not in response.get_data(as_text=True)
    db.session.expire_all()
    assert theirs.revoked_at is None
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "api_token.revoke")) \
        is None


def test_anonymous_revoke_is_refused(client, owner):
    token, _ = _make(owner)
    assert client.post(f"{PAGE}{token.id}/revoke").status_code == 400
    assert client.get(f"{PAGE}{token.id}/revoke").status_code == 302
    db.session.expire_all()
    assert token.revoked_at is None
