"""Accounts: creation rules, authentication, audit."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import AuditEvent, User
from mbtcode.services import ServiceError
from mbtcode.services.users import authenticate, create_user
from tests.conftest import PASSWORD

LONG_PASSPHRASE = ("correct horse battery staple 🐴🔋 " * 4).strip()  # 127 characters


def _create(email: str = "alice@example.org", *, role: str = "rater", password: str = PASSWORD):
    user = create_user(email, name="Alice", role=role, password=password, actor=None)
    db.session.commit()
    return user


def test_email_is_trimmed_and_lower_cased(app):
    assert _create("  Alice@Example.ORG ").email == "alice@example.org"


def test_invalid_email_is_refused(app):
    with pytest.raises(ServiceError, match="not a valid e-mail"):
        _create("alice-at-example.org")


def test_duplicate_email_is_refused_case_insensitively(app):
    _create("alice@example.org")
    with pytest.raises(ServiceError, match="already exists"):
        _create("ALICE@example.org")
    assert db.session.scalar(select(db.func.count(User.id))) == 1


def test_unknown_role_is_refused(app):
    with pytest.raises(ServiceError, match="unknown role 'superuser'"):
        _create(role="superuser")


def test_short_password_is_refused(app):
    with pytest.raises(ServiceError, match="password too short"):
        _create(password="short pass")


def test_empty_name_is_refused(app):
    with pytest.raises(ServiceError, match="name must not be empty"):
        create_user("bob@example.org", name="   ", role="rater", password=PASSWORD, actor=None)


def test_password_is_stored_hashed(app):
    user = _create()
    assert PASSWORD not in user.password_hash


def test_long_passphrase_with_spaces_and_emoji_is_accepted_and_verified_exactly(app):
    assert len(LONG_PASSPHRASE) > 100
    user = _create(password=LONG_PASSPHRASE)
    assert authenticate(user.email, LONG_PASSPHRASE) == user
    assert authenticate(user.email, LONG_PASSPHRASE[:-1]) is None
    assert authenticate(user.email, LONG_PASSPHRASE.replace("🐴", "🐎", 1)) is None
    assert authenticate(user.email, LONG_PASSPHRASE + " ") is None


def test_authenticate_accepts_the_email_in_any_case(app):
    user = _create()
    assert authenticate(" ALICE@example.org", PASSWORD) == user


def test_authenticate_wrong_password(app):
    user = _create()
    assert authenticate(user.email, PASSWORD.upper()) is None


def test_authenticate_unknown_user(app):
    _create()
    assert authenticate("nobody@example.org", PASSWORD) is None


def test_authenticate_malformed_email_returns_none(app):
    assert authenticate("not an email", PASSWORD) is None


def test_authenticate_inactive_user(app):
    user = _create()
    user.active = False
    db.session.commit()
    assert authenticate(user.email, PASSWORD) is None


def test_create_writes_a_user_create_audit_row(app, make_user):
    admin = make_user("admin")
    user = create_user("carol@example.org", name="Carol", role="analyst", password=PASSWORD,
                       actor=admin)
    db.session.commit()
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "user.create", AuditEvent.entity_id == user.id)
    ).one()
    assert event.actor_id == admin.id
    assert event.entity == "user"
    assert event.detail["new"] == {"email": "carol@example.org", "name": "Carol", "role": "analyst"}
    assert PASSWORD not in str(event.detail)


def test_refused_create_writes_no_audit_row(app):
    with pytest.raises(ServiceError):
        _create(password="short")
    assert db.session.scalars(select(AuditEvent)).all() == []


def test_production_hash_method_is_a_slow_kdf(app, monkeypatch):
    from werkzeug.security import generate_password_hash

    from mbtcode.services import users

    monkeypatch.setattr(users, "generate_password_hash", generate_password_hash)  # undo the test speed-up
    assert _create().password_hash.startswith("scrypt:")
