"""Accounts."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ._types import UTCDateTime, utcnow

ROLES = ("admin", "coordinator", "rater", "analyst")


class User(UserMixin, db.Model):
    __tablename__ = "user_account"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'coordinator', 'rater', 'analyst')", name="role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stored lower-case; the login name.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    #: Display name; shown to coordinators, never in de-identified exports.
    name: Mapped[str] = mapped_column(String(200))
    #: Site-wide role; per-study roles build on it.
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    #: Bumped to end every login session of this user at once (logout, password change).
    session_epoch: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def is_active(self) -> bool:  # flask-login
        return self.active

    def get_id(self) -> str:
        """Identify the login session; a bumped epoch invalidates old cookies."""
        return f"{self.id}:{self.session_epoch}"

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role}>"
