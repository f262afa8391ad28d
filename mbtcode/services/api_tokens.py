"""Personal API tokens for the JSON API (``/api/v1``).

A token acts with its owner's rights, so it is as good as the owner's password for reading
data: the secret is shown once, when it is made, and only its SHA-256 is stored. Looking a
token up by its hash needs no constant-time comparison (an attacker who can time the index
lookup learns about hashes, not secrets).

Secrets look like ``mbt_`` + 43 URL-safe characters (256 random bits), so a leaked one is
easy to recognise in logs and by secret scanners. ``prefix`` (the first 12 characters) is
kept in clear so that owners can tell their tokens apart.

``last_used_at`` is written at most once a minute per token (:data:`TOUCH_INTERVAL`): a
pipeline paging through a table must not turn every read into a write.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import ApiToken, User
from . import ServiceError, audit

#: What every secret starts with.
SECRET_PREFIX = "mbt_"
#: Characters of the secret kept in clear (``mbt_`` and 8 random characters, 48 bits).
PREFIX_LENGTH = 12
#: The longest token name.
MAX_NAME_LENGTH = 100
#: Active (neither revoked nor expired) tokens one user may hold.
MAX_ACTIVE_TOKENS = 20
#: The longest lifetime a token may be given, in days.
MAX_EXPIRY_DAYS = 3650
#: ``last_used_at`` is updated when it is older than this.
TOUCH_INTERVAL = timedelta(minutes=1)

#: ``mbt_`` and the output of ``secrets.token_urlsafe(32)`` (43 characters, no padding).
_SECRET_RE = re.compile(re.escape(SECRET_PREFIX) + r"[A-Za-z0-9_-]{43}")


def _now() -> datetime:
    return datetime.now(UTC)


def hash_secret(secret: str) -> str:
    """The SHA-256 (hex) under which a secret is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_status(token: ApiToken, now: datetime | None = None) -> str:
    """``revoked``, ``expired`` or ``active``."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= (now or _now()):
        return "expired"
    return "active"


def _clean_name(name: str | None) -> str:
    text = " ".join((name or "").split())
    if not text:
        raise ServiceError("give the token a name, e.g. “R pipeline on the lab server”")
    if len(text) > MAX_NAME_LENGTH:
        raise ServiceError(f"the name is too long: at most {MAX_NAME_LENGTH} characters "
                           f"(got {len(text):,})")
    if not text.isprintable():
        raise ServiceError("the name contains control characters")
    return text


def _active_count(user: User, now: datetime) -> int:
    return db.session.scalar(
        select(func.count()).select_from(ApiToken).where(
            ApiToken.user_id == user.id,
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
        )
    ) or 0


def create_token(
    user: User, name: str, *, expires_in_days: int | None = None, actor: User | None
) -> tuple[ApiToken, str]:
    """Make a token for ``user``; return it with its secret (shown once, stored hashed).

    Only the user makes their own tokens: a token made by someone else would let them read
    with the user's rights.
    """
    if actor is None or actor.id != user.id:
        raise ServiceError("API tokens are made by their owner only")
    if not user.active:
        raise ServiceError("this account is deactivated")
    clean = _clean_name(name)
    if expires_in_days is not None and (
        isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int)
        or not 1 <= expires_in_days <= MAX_EXPIRY_DAYS
    ):
        raise ServiceError(f"the expiry must be a whole number of days from 1 to "
                           f"{MAX_EXPIRY_DAYS:,}, or none")
    now = _now()
    if _active_count(user, now) >= MAX_ACTIVE_TOKENS:
        raise ServiceError(f"you already have {MAX_ACTIVE_TOKENS} active tokens: revoke one "
                           "you no longer use first")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=clean,
        token_hash=hash_secret(secret),
        prefix=secret[:PREFIX_LENGTH],
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    db.session.add(token)
    db.session.flush()
    audit.record(
        "api_token.create", actor=actor, entity="api_token", entity_id=token.id,
        detail={"user_id": user.id, "name": clean, "prefix": token.prefix,
                "expires_at": token.expires_at.isoformat() if token.expires_at else None},
    )
    return token, secret


def revoke_token(token: ApiToken, *, actor: User | None) -> ApiToken:
    """Stop ``token`` working at once (its owner, or a site admin)."""
    if actor is None or (actor.id != token.user_id and actor.role != "admin"):
        raise ServiceError("only the token's owner can revoke it")
    if token.revoked_at is not None:
        raise ServiceError("this token was already revoked")
    token.revoked_at = _now()
    db.session.flush()
    audit.record(
        "api_token.revoke", actor=actor, entity="api_token", entity_id=token.id,
        detail={"user_id": token.user_id, "name": token.name, "prefix": token.prefix},
    )
    return token


def tokens_for(user: User) -> list[ApiToken]:
    """The user's tokens, newest first (revoked and expired ones included)."""
    return list(db.session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    ))


def get_own_token(user: User, token_id: int) -> ApiToken | None:
    """One of the user's own tokens, or None (another user's token does not exist for them)."""
    return db.session.scalar(
        select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user.id)
    )


def find_token(secret: str | None) -> ApiToken | None:
    """The working token for ``secret`` (owner loaded), or None; reads only.

    None for anything that is not a well-formed secret, an unknown, revoked or expired
    token, and a token of a deactivated account.
    """
    if not isinstance(secret, str) or not _SECRET_RE.fullmatch(secret):
        return None
    token = db.session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_secret(secret))
        .options(joinedload(ApiToken.user, innerjoin=True))
    )
    if token is None or token_status(token) != "active" or not token.user.active:
        return None
    return token


def touch(token: ApiToken, now: datetime | None = None) -> bool:
    """Note that ``token`` was used, unless that was noted less than a minute ago.

    Returns whether the row changed (then flushed).
    """
    now = now or _now()
    if token.last_used_at is not None and now - token.last_used_at < TOUCH_INTERVAL:
        return False
    token.last_used_at = now
    db.session.flush()
    return True


def authenticate(secret: str | None) -> User | None:
    """The owner of the working token ``secret`` (and note the use), or None."""
    token = find_token(secret)
    if token is None:
        return None
    touch(token)
    return token.user
