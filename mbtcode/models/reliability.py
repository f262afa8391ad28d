"""Double-coding: the reliability sample, gold-standard sessions and adjudicated consensus.

None of these tables is ever shown to raters: which of a rater's sessions are double-coded or
gold is the coordinator's knowledge only. A consensus is its own record; the independent
codings it was built from are never changed by adjudication.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ._types import UTCDateTime, utcnow
from .study import Study, TherapySession, Utterance
from .user import User


class ReliabilitySettings(db.Model):
    """A study's double-coding, adjudication and certification settings (defaults if absent)."""

    __tablename__ = "reliability_settings"
    __table_args__ = (
        CheckConstraint("sample_fraction > 0 AND sample_fraction <= 1", name="fraction"),
        CheckConstraint("raters_per_session >= 2", name="raters"),
        CheckConstraint("rating_threshold >= 0", name="threshold"),
    )

    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), primary_key=True)
    #: Share of the study's sessions to double-code.
    sample_fraction: Mapped[float] = mapped_column(Float, default=0.2)
    #: Independent raters each sampled session gets.
    raters_per_session: Mapped[int] = mapped_column(default=2)
    #: Ratings that differ by more than this many scale points go to adjudication.
    rating_threshold: Mapped[int] = mapped_column(default=0)
    #: Show "Rater 1/2" instead of names on the adjudication pages.
    hide_rater_names: Mapped[bool] = mapped_column(default=True)
    #: Certification against gold: minimum Cohen's kappa on every code set ...
    certify_min_kappa: Mapped[float] = mapped_column(Float, default=0.7)
    #: ... and minimum share of item ratings within one point of gold ...
    certify_min_within_one: Mapped[float] = mapped_column(Float, default=0.8)
    #: ... over at least this many submitted gold sessions.
    certify_min_sessions: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ReliabilitySample(db.Model):
    """One draw of sessions for double-coding; re-drawing with the same seed is reproducible."""

    __tablename__ = "reliability_sample"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    seed: Mapped[int]
    fraction: Mapped[float] = mapped_column(Float)
    #: Comma-separated stratification variables: ``therapist``, ``phase`` (empty: none).
    stratify: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))


class SampledSession(db.Model):
    """A session in the study's double-coding sample (at most once per study)."""

    __tablename__ = "sampled_session"
    __table_args__ = (UniqueConstraint("session_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("reliability_sample.id"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("therapy_session.id"))
    #: The stratum the session was drawn from, e.g. ``therapist=TH-01|phase=main``.
    stratum: Mapped[str] = mapped_column(String(300), default="")

    session: Mapped[TherapySession] = relationship()


class GoldStandard(db.Model):
    """A session whose expert coding (one submitted assignment) is the reference for training."""

    __tablename__ = "gold_standard"
    __table_args__ = (UniqueConstraint("session_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("therapy_session.id"))
    #: The expert's submitted assignment that serves as gold.
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id"))
    marked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    marked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    session: Mapped[TherapySession] = relationship()


CONSENSUS_STATUSES = ("open", "final")
#: Where a consensus value came from: raters agreed, differences within the threshold
#: (the raters' mean), the adjudicator picked one rater's value, or entered another.
CONSENSUS_BASES = ("agreement", "within_threshold", "picked", "entered")
_BASIS_CHECK = "basis IN ('agreement', 'within_threshold', 'picked', 'entered')"


class Consensus(db.Model):
    """The adjudicated coding of one double-coded session."""

    __tablename__ = "consensus"
    __table_args__ = (
        UniqueConstraint("session_id"),
        CheckConstraint("status IN ('open', 'final')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("therapy_session.id"))
    adjudicator_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    status: Mapped[str] = mapped_column(String(10), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(default=1)

    study: Mapped[Study] = relationship()
    session: Mapped[TherapySession] = relationship()
    adjudicator: Mapped[User] = relationship()

    __mapper_args__ = {"version_id_col": version}


class ConsensusCode(db.Model):
    """The consensus code of one utterance, with its provenance."""

    __tablename__ = "consensus_code"
    __table_args__ = (
        UniqueConstraint("consensus_id", "utterance_id"),
        CheckConstraint(_BASIS_CHECK, name="basis"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    consensus_id: Mapped[int] = mapped_column(ForeignKey("consensus.id"), index=True)
    utterance_id: Mapped[int] = mapped_column(ForeignKey("utterance.id"))
    code_set: Mapped[str] = mapped_column(String(64))
    #: None: the consensus is that the utterance takes no code.
    code: Mapped[str | None] = mapped_column(String(64))
    basis: Mapped[str] = mapped_column(String(20))
    #: The rater's assignment whose value was picked (basis ``picked``).
    source_assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignment.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    utterance: Mapped[Utterance] = relationship()

    __mapper_args__ = {"version_id_col": version}


class ConsensusRating(db.Model):
    """The consensus value of one item on one dimension, with its provenance."""

    __tablename__ = "consensus_rating"
    __table_args__ = (
        UniqueConstraint("consensus_id", "instrument", "item", "dimension"),
        CheckConstraint(_BASIS_CHECK, name="basis"),
        CheckConstraint("NOT (not_applicable AND value IS NOT NULL)", name="na_has_no_value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    consensus_id: Mapped[int] = mapped_column(ForeignKey("consensus.id"), index=True)
    instrument: Mapped[str] = mapped_column(String(64))
    item: Mapped[str] = mapped_column(String(64))
    dimension: Mapped[str] = mapped_column(String(64))
    #: A float because values within the threshold resolve to the raters' mean.
    value: Mapped[float | None] = mapped_column(Float)
    not_applicable: Mapped[bool] = mapped_column(default=False)
    basis: Mapped[str] = mapped_column(String(20))
    source_assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignment.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}
