"""Accounts: create and authenticate users."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import ROLES, User
from . import ServiceError, audit

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
# A hash to compare against when the user does not exist, so both paths cost the same.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def normalise_email(email: str) -> str:
    """Trim and lower-case an e-mail address, or raise ServiceError if it is not one."""
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 254:
        raise ServiceError(f"'{email}' is not a valid e-mail address")
    return email


def check_password_rules(password: str) -> None:
    """Raise ServiceError when a password is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ServiceError(
            f"password too short: use at least {MIN_PASSWORD_LENGTH} characters "
            "(a passphrase of several words is best)"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ServiceError(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")


def get_user_by_email(email: str) -> User | None:
    """Find a user by e-mail, case-insensitively."""
    return db.session.scalar(select(User).where(User.email == email.strip().lower()))


def create_user(
    email: str, *, name: str, role: str, password: str, actor: User | None
) -> User:
    """Create an account; refuses duplicates, unknown roles and weak passwords."""
    email = normalise_email(email)
    name = name.strip()
    if not name:
        raise ServiceError("name must not be empty")
    if role not in ROLES:
        raise ServiceError(f"unknown role '{role}': choose one of {', '.join(ROLES)}")
    check_password_rules(password)
    if get_user_by_email(email) is not None:
        raise ServiceError(f"a user with e-mail {email} already exists")
    user = User(email=email, name=name, role=role, password_hash=generate_password_hash(password))
    db.session.add(user)
    db.session.flush()
    audit.record(
        "user.create",
        actor=actor,
        entity="user",
        entity_id=user.id,
        detail={"new": {"email": email, "name": name, "role": role}},
    )
    return user


def authenticate(email: str, password: str) -> User | None:
    """Return the active user with these credentials, or None (same cost either way)."""
    try:
        user = get_user_by_email(email)
    except ServiceError:
        user = None
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password) or not user.active:
        return None
    return user


def count_users() -> int:
    """Number of accounts."""
    return db.session.scalar(select(func.count(User.id))) or 0
