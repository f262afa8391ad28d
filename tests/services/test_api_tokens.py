"""API tokens: made by their owner, stored as a hash, revocable, checked on every use."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from mbtcode.extensions import db
from mbtcode.models import ApiToken, AuditEvent
from mbtcode.services import ServiceError
from mbtcode.services.api_tokens import (
    MAX_ACTIVE_TOKENS,
    MAX_NAME_LENGTH,
    authenticate,
    create_token,
    find_token,
    get_own_token,
    revoke_token,
    token_status,
    tokens_for,
    touch,
)
from tests.conftest import check_each


@pytest.fixture
def owner(make_user):
    return make_user("analyst")


def _make(user, name="R pipeline", **kwargs):
    token, secret = create_token(user, name, actor=user, **kwargs)
    db.session.commit()
    return token, secret


def _raw_rows() -> list[tuple]:
    """Every api_token row as the database holds it (no ORM conversions)."""
    return list(db.session.execute(text("SELECT * FROM api_token")).all())


# ----------------------------------------------------------------------------- create


def test_a_new_token_is_shown_once_and_stored_as_its_sha256(owner):
    token, secret = _make(owner)
    assert secret.startswith("mbt_") and len(secret) == 4 + 43
    assert token.prefix == secret[:12]
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token.user_id == owner.id and token.revoked_at is None and token.expires_at is None
    assert token.created_at <= datetime.now(UTC)
    # Nothing in the row (in any column) holds the secret or its secret part.
    for row in _raw_rows():
        for value in row:
            assert secret not in str(value) and secret[12:] not in str(value)


def test_every_secret_is_new(owner):
    secrets = {_make(owner, f"t{i}")[1] for i in range(5)}
    assert len(secrets) == 5


def test_creation_is_audited_without_the_secret(owner):
    token, secret = _make(owner, "Lab server")
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "api_token.create"))
    assert (event.actor_id, event.entity, event.entity_id) == (owner.id, "api_token", token.id)
    assert event.detail["name"] == "Lab server" and event.detail["prefix"] == token.prefix
    for row in db.session.execute(text("SELECT * FROM audit_event")).all():
        dumped = json.dumps([str(v) for v in row])
        assert secret not in dumped and secret[12:] not in dumped


def test_the_service_flushes_and_never_commits(owner):
    token, _secret = create_token(owner, "uncommitted", actor=owner)
    assert token.id is not None
    db.session.rollback()
    assert db.session.scalar(select(ApiToken).where(ApiToken.name == "uncommitted")) is None


def test_names_are_trimmed_and_checked(owner):
    token, _ = _make(owner, "  R   pipeline\n on lab ")
    assert token.name == "R pipeline on lab"
    assert _make(owner, "x" * MAX_NAME_LENGTH)[0].name == "x" * MAX_NAME_LENGTH

    def refused(name):
        with pytest.raises(ServiceError):
            create_token(owner, name, actor=owner)

    check_each(["", "   ", "\n\t", None, "x" * (MAX_NAME_LENGTH + 1), "bad\x00name", "a\x1bb"],
               refused)


def test_expiry_is_a_whole_number_of_days(owner):
    before = datetime.now(UTC)
    token, _ = _make(owner, expires_in_days=30)
    assert before + timedelta(days=30) <= token.expires_at <= datetime.now(UTC) + timedelta(days=30)

    def refused(days):
        with pytest.raises(ServiceError):
            create_token(owner, "x", expires_in_days=days, actor=owner)

    check_each([0, -1, 3651, 1.5, "30", True], refused)


def test_only_the_owner_makes_their_tokens(owner, make_user):
    for actor in (make_user("analyst"), make_user("admin"), None):
        with pytest.raises(ServiceError):
            create_token(owner, "for someone else", actor=actor)
    assert db.session.scalar(select(ApiToken)) is None


def test_a_deactivated_account_makes_no_token(owner):
    owner.active = False
    db.session.commit()
    with pytest.raises(ServiceError):
        create_token(owner, "x", actor=owner)


def test_at_most_so_many_active_tokens(owner):
    tokens = [_make(owner, f"t{i}")[0] for i in range(MAX_ACTIVE_TOKENS)]
    with pytest.raises(ServiceError, match="revoke"):
        create_token(owner, "one too many", actor=owner)
    db.session.rollback()
    revoke_token(tokens[0], actor=owner)
    db.session.commit()
    _make(owner, "after a revoke")
    tokens[1].expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db.session.commit()
    _make(owner, "after an expiry")  # expired tokens do not count either
    with pytest.raises(ServiceError):
        create_token(owner, "full again", actor=owner)


def test_the_limit_is_per_user(owner, make_user):
    for i in range(MAX_ACTIVE_TOKENS):
        _make(owner, f"t{i}")
    other = make_user("coordinator")
    assert _make(other)[0].user_id == other.id


# ----------------------------------------------------------------------------- authenticate


def test_a_working_token_authenticates_its_owner(owner):
    token, secret = _make(owner)
    assert authenticate(secret) == owner
    assert find_token(secret) == token


def test_anything_else_authenticates_nobody(owner):
    _token, secret = _make(owner)

    def nobody(candidate):
        assert authenticate(candidate) is None

    check_each([
        None, "", " ", secret[:-1], secret + "x", secret.upper(), " " + secret, secret + "\n",
        "mbt_" + "A" * 43, f"Bearer {secret}", secret[4:], "mbt_", 42, b"mbt_" + b"A" * 43,
        hashlib.sha256(secret.encode()).hexdigest(),  # the stored hash is not a password
    ], nobody)


def test_revoked_expired_and_deactivated_tokens_do_not_work(owner, make_user):
    revoked, revoked_secret = _make(owner, "revoked")
    expired, expired_secret = _make(owner, "expired", expires_in_days=1)
    revoke_token(revoked, actor=owner)
    expired.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db.session.commit()
    assert authenticate(revoked_secret) is None and authenticate(expired_secret) is None
    assert token_status(revoked) == "revoked" and token_status(expired) == "expired"

    other = make_user("coordinator")
    _token, other_secret = _make(other)
    assert authenticate(other_secret) == other
    other.active = False
    db.session.commit()
    assert authenticate(other_secret) is None


def test_a_token_not_yet_expired_works(owner):
    token, secret = _make(owner, expires_in_days=1)
    token.expires_at = datetime.now(UTC) + timedelta(seconds=30)
    db.session.commit()
    assert authenticate(secret) == owner and token_status(token) == "active"


def test_last_use_is_noted_at_most_once_a_minute(owner):
    token, secret = _make(owner)
    assert token.last_used_at is None
    authenticate(secret)
    db.session.commit()
    first = token.last_used_at
    assert first is not None and datetime.now(UTC) - first < timedelta(seconds=5)

    authenticate(secret)
    assert not db.session.dirty  # no write within the minute
    db.session.commit()
    assert token.last_used_at == first

    token.last_used_at = first - timedelta(seconds=61)
    db.session.commit()
    authenticate(secret)
    db.session.commit()
    assert token.last_used_at > first


def test_touch_says_whether_it_wrote(owner):
    token, _secret = _make(owner)
    now = datetime.now(UTC)
    assert touch(token, now) is True
    assert touch(token, now + timedelta(seconds=59)) is False
    assert touch(token, now + timedelta(seconds=60)) is True


def test_find_token_writes_nothing(owner):
    token, secret = _make(owner)
    assert find_token(secret) == token
    assert not db.session.dirty and token.last_used_at is None


# ----------------------------------------------------------------------------- revoke, list


def test_revoking_is_immediate_audited_and_once(owner):
    token, secret = _make(owner)
    revoke_token(token, actor=owner)
    db.session.commit()
    assert token.revoked_at is not None and authenticate(secret) is None
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "api_token.revoke"))
    assert event.entity_id == token.id and event.actor_id == owner.id
    assert secret not in json.dumps(event.detail) and secret[12:] not in json.dumps(event.detail)
    with pytest.raises(ServiceError, match="already"):
        revoke_token(token, actor=owner)


def test_only_the_owner_or_an_admin_revokes(owner, make_user):
    token, _secret = _make(owner)
    with pytest.raises(ServiceError):
        revoke_token(token, actor=make_user("coordinator"))
    with pytest.raises(ServiceError):
        revoke_token(token, actor=None)
    db.session.rollback()
    assert token.revoked_at is None
    revoke_token(token, actor=make_user("admin"))
    assert token.revoked_at is not None


def test_tokens_for_lists_only_the_users_own_newest_first(owner, make_user):
    other = make_user("coordinator")
    first, _ = _make(owner, "first")
    _make(other, "someone else's")
    second, _ = _make(owner, "second")
    assert tokens_for(owner) == [second, first]
    assert get_own_token(owner, first.id) == first
    assert get_own_token(other, first.id) is None
    assert get_own_token(owner, 999_999) is None
