"""Rater work: assignments, utterance codes, MBT-ACS item ratings and rationales.

Every editable row carries a ``version`` (SQLAlchemy ``version_id_col``): clients send the
version they saw, a stale write is refused, and an UPDATE that races another one raises
StaleDataError instead of silently overwriting it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ._types import UTCDateTime, utcnow
from .study import Study, TherapySession, Utterance
from .user import User

ASSIGNMENT_STATUSES = ("assigned", "submitted", "withdrawn")


class Assignment(db.Model):
    """One rater's independent coding and rating of one session."""

    __tablename__ = "assignment"
    __table_args__ = (
        UniqueConstraint("session_id", "rater_id"),
        CheckConstraint("status IN ('assigned', 'submitted', 'withdrawn')", name="status"),
        Index("ix_assignment_rater_status", "rater_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("therapy_session.id"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    #: assigned (open for editing), submitted (locked) or withdrawn (hidden from the rater).
    status: Mapped[str] = mapped_column(String(20), default="assigned")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Why a coordinator last reopened the assignment (the full history is in the audit log).
    reopen_reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(default=1)

    study: Mapped[Study] = relationship()
    session: Mapped[TherapySession] = relationship()
    rater: Mapped[User] = relationship(foreign_keys=[rater_id])

    __mapper_args__ = {"version_id_col": version}

    @property
    def locked(self) -> bool:
        return self.status != "assigned"


class UtteranceCode(db.Model):
    """The code (and note) one rater gave one utterance; ``code`` None means cleared."""

    __tablename__ = "utterance_code"
    __table_args__ = (UniqueConstraint("assignment_id", "utterance_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id"), index=True)
    utterance_id: Mapped[int] = mapped_column(ForeignKey("utterance.id"))
    #: Code set id from the study's scheme (decided by the utterance's role).
    code_set: Mapped[str] = mapped_column(String(64))
    code: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    utterance: Mapped[Utterance] = relationship()

    __mapper_args__ = {"version_id_col": version}


class ItemRating(db.Model):
    """One value of one instrument item (or overall rating) on one dimension."""

    __tablename__ = "item_rating"
    __table_args__ = (
        UniqueConstraint("assignment_id", "instrument", "item", "dimension"),
        CheckConstraint("NOT (not_applicable AND value IS NOT NULL)", name="na_has_no_value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id"), index=True)
    instrument: Mapped[str] = mapped_column(String(64))
    #: Item id, or the id of an overall rating (e.g. ``overall_adherence``).
    item: Mapped[str] = mapped_column(String(64))
    dimension: Mapped[str] = mapped_column(String(64))
    value: Mapped[int | None]
    not_applicable: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class ItemRationale(db.Model):
    """A rater's free-text rationale for one item."""

    __tablename__ = "item_rationale"
    __table_args__ = (UniqueConstraint("assignment_id", "instrument", "item"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id"), index=True)
    instrument: Mapped[str] = mapped_column(String(64))
    item: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}
