"""Studies, pseudonymous participants, therapy sessions, transcripts and utterances."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship

from ..extensions import db
from ._types import UTCDateTime, utcnow
from .scheme import SchemeVersion

MODALITIES = ("individual", "group", "psychoeducation")
PHASES = ("initial", "main", "final")
SPEAKER_ROLES = ("therapist", "patient", "other")
PARTICIPANT_KINDS = ("therapist", "patient")


class Study(db.Model):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    #: The scheme revision the study codes with; pinned, so later revisions change nothing here.
    scheme_version_id: Mapped[int] = mapped_column(ForeignKey("scheme_version.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    scheme_version: Mapped[SchemeVersion] = relationship()
    sessions: WriteOnlyMapped[TherapySession] = relationship(
        back_populates="study", order_by="TherapySession.id"
    )


STUDY_ROLES = ("coordinator", "rater", "analyst")


class StudyMember(db.Model):
    """A user's role in one study; site admins need no membership to see a study."""

    __tablename__ = "study_member"
    __table_args__ = (
        UniqueConstraint("study_id", "user_id"),
        CheckConstraint("role IN ('coordinator', 'rater', 'analyst')", name="role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Participant(db.Model):
    """A therapist or patient, known to mbtcode only by a pseudonymous study code."""

    __tablename__ = "participant"
    __table_args__ = (
        UniqueConstraint("study_id", "kind", "code"),
        CheckConstraint("kind IN ('therapist', 'patient')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    #: Pseudonymous code such as ``TH-04`` or ``PT-013``; never a name.
    code: Mapped[str] = mapped_column(String(64))


class SessionParticipant(db.Model):
    __tablename__ = "session_participant"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("therapy_session.id", ondelete="CASCADE"), primary_key=True
    )
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), primary_key=True)

    participant: Mapped[Participant] = relationship(lazy="joined")


class TherapySession(db.Model):
    """One recorded therapy session of a study."""

    __tablename__ = "therapy_session"
    __table_args__ = (
        UniqueConstraint("study_id", "label"),
        CheckConstraint(
            "modality IN ('individual', 'group', 'psychoeducation')", name="modality"
        ),
        CheckConstraint("phase IS NULL OR phase IN ('initial', 'main', 'final')", name="phase"),
        CheckConstraint("session_number IS NULL OR session_number > 0", name="session_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    #: Human label unique within the study, e.g. ``TH-01/PT-101 #14``.
    label: Mapped[str] = mapped_column(String(200))
    session_date: Mapped[date | None] = mapped_column(Date)
    modality: Mapped[str] = mapped_column(String(20), default="individual")
    #: Treatment phase: initial, main or final (None when unknown).
    phase: Mapped[str | None] = mapped_column(String(20))
    #: Ordinal number of the session in the patient's (or group's) treatment.
    session_number: Mapped[int | None]
    #: BCP-47 language tag of the transcript, e.g. ``en``, ``de``.
    language: Mapped[str | None] = mapped_column(String(35))
    #: Where the session took place (clinic or site code); a merge key of exports.
    site: Mapped[str | None] = mapped_column(String(100))
    #: The therapist team; fidelity is also followed per team.
    team: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    study: Mapped[Study] = relationship(back_populates="sessions")
    participant_links: Mapped[list[SessionParticipant]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    transcript: Mapped[Transcript | None] = relationship(back_populates="session")

    def participant_codes(self, kind: str) -> list[str]:
        """Codes of this session's therapists or patients, sorted."""
        return sorted(
            link.participant.code
            for link in self.participant_links
            if link.participant.kind == kind
        )


class Transcript(db.Model):
    """The imported text of a session; identical files are detected by hash."""

    __tablename__ = "transcript"
    __table_args__ = (UniqueConstraint("study_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("therapy_session.id", ondelete="CASCADE"), unique=True
    )
    #: Denormalised from the session, so the hash is unique per study.
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    #: Original file name: metadata only, never used as a path.
    original_filename: Mapped[str] = mapped_column(String(300))
    format: Mapped[str] = mapped_column(String(10))
    #: SHA-256 of the file's bytes as imported.
    sha256: Mapped[str] = mapped_column(String(64))
    n_utterances: Mapped[int]
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    imported_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    session: Mapped[TherapySession] = relationship(back_populates="transcript")
    utterances: WriteOnlyMapped[Utterance] = relationship(
        order_by="Utterance.position", passive_deletes=True
    )


class Utterance(db.Model):
    """One speaker turn, in transcript order."""

    __tablename__ = "utterance"
    __table_args__ = (
        UniqueConstraint("transcript_id", "position"),
        CheckConstraint("role IN ('therapist', 'patient', 'other')", name="role"),
        Index("ix_utterance_transcript_role", "transcript_id", "role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    transcript_id: Mapped[int] = mapped_column(ForeignKey("transcript.id", ondelete="CASCADE"))
    #: 1-based order in the transcript; what exports and code imports refer to.
    position: Mapped[int]
    #: Speaker label as written in the transcript (``T``, ``P2``, ``Th``…).
    speaker: Mapped[str] = mapped_column(String(64))
    #: Role the label was mapped to at import; decides which code set applies.
    role: Mapped[str] = mapped_column(String(20))
    start_s: Mapped[float | None] = mapped_column(Float)
    end_s: Mapped[float | None] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
