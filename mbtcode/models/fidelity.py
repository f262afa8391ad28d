"""Data that feeds fidelity monitoring and outcome analyses.

* ``ApiToken``: a per-user secret for the JSON API (``/api/v1``). Only its SHA-256 is stored;
  the token itself is shown once, when it is created.
* ``Outcome``: one outcome measurement (BSI, GAF, WAI…) of one patient, by date or study day,
  imported so that exports can merge it with the nearest fidelity scores.
* ``QualityAudit`` and ``QualityAuditRating``: one audit of a treatment program against a
  program-level instrument (``target: "program"`` in the scheme, e.g. the 20 MBT program
  quality criteria), rated per audit and followed over time.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ._types import UTCDateTime, utcnow
from .scheme import SchemeVersion
from .study import Participant, Study
from .user import User


class ApiToken(db.Model):
    """A revocable bearer token for the JSON API, acting with its owner's rights."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    #: What the owner calls it, e.g. "R pipeline on the lab server".
    name: Mapped[str] = mapped_column(String(100))
    #: SHA-256 (hex) of the secret; the secret itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The first characters of the token, shown in lists so the owner can tell tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class Outcome(db.Model):
    """One outcome value of one patient, dated by calendar date and/or study day."""

    __tablename__ = "outcome"
    __table_args__ = (
        CheckConstraint(
            "outcome_date IS NOT NULL OR study_day IS NOT NULL", name="dated"
        ),
        Index("ix_outcome_study_patient", "study_id", "patient_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("participant.id"))
    #: Name of the measure as the study uses it, e.g. ``BSI-GSI`` or ``GAF``.
    measure: Mapped[str] = mapped_column(String(64))
    outcome_date: Mapped[date | None] = mapped_column(Date)
    #: Days since the patient's first session in the study (day 0), negative before it.
    study_day: Mapped[int | None]
    value: Mapped[float] = mapped_column(Float)
    #: Line of the imported file the value came from (for tracing back).
    source: Mapped[str] = mapped_column(String(300), default="")
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    imported_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    patient: Mapped[Participant] = relationship()


class QualityAudit(db.Model):
    """One audit of a program (or team) against a program-level instrument."""

    __tablename__ = "quality_audit"
    __table_args__ = (
        UniqueConstraint("study_id", "instrument", "unit", "audit_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    #: The scheme version holding the instrument (e.g. the shipped ``mbt-program-quality``).
    scheme_version_id: Mapped[int] = mapped_column(ForeignKey("scheme_version.id"))
    #: Id of an instrument of that scheme whose target is ``program``.
    instrument: Mapped[str] = mapped_column(String(64))
    #: The audited unit: the program, or a site or team name ("" for the whole program).
    unit: Mapped[str] = mapped_column(String(100), default="")
    audit_date: Mapped[date] = mapped_column(Date)
    auditor_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    study: Mapped[Study] = relationship()
    scheme_version: Mapped[SchemeVersion] = relationship()
    auditor: Mapped[User] = relationship()
    ratings: Mapped[list[QualityAuditRating]] = relationship(
        cascade="all, delete-orphan", order_by="QualityAuditRating.id"
    )

    __mapper_args__ = {"version_id_col": version}


class QualityAuditRating(db.Model):
    """The value of one criterion in one audit (None with ``not_applicable``, or not rated)."""

    __tablename__ = "quality_audit_rating"
    __table_args__ = (
        UniqueConstraint("audit_id", "item"),
        CheckConstraint("NOT (not_applicable AND value IS NOT NULL)", name="na_has_no_value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("quality_audit.id", ondelete="CASCADE"))
    item: Mapped[str] = mapped_column(String(64))
    value: Mapped[int | None]
    not_applicable: Mapped[bool] = mapped_column(default=False)
