"""Read therapy sessions and their transcripts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from ..extensions import db
from ..models import Study, TherapySession, Transcript, Utterance


@dataclass(frozen=True)
class SessionSummary:
    """What a session list shows about one session."""

    session: TherapySession
    n_utterances: int
    speakers: dict[str, str]

    def as_json(self) -> dict:
        s = self.session
        return {
            "id": s.id,
            "label": s.label,
            "n_utterances": self.n_utterances,
            "speakers": self.speakers,
            "date": s.session_date.isoformat() if s.session_date else None,
            "modality": s.modality,
            "phase": s.phase,
            "session_number": s.session_number,
            "language": s.language,
            "site": s.site,
            "team": s.team,
            "therapists": s.participant_codes("therapist"),
            "patients": s.participant_codes("patient"),
        }


def list_sessions(study: Study) -> list[SessionSummary]:
    """The study's sessions in import order, with utterance counts and speaker roles."""
    sessions = db.session.scalars(
        select(TherapySession).where(TherapySession.study_id == study.id).order_by(TherapySession.id)
    ).all()
    counts = dict(
        db.session.execute(
            select(Transcript.session_id, Transcript.n_utterances).where(
                Transcript.study_id == study.id
            )
        ).all()
    )
    speakers: dict[int, dict[str, str]] = {}
    rows = db.session.execute(
        select(Transcript.session_id, Utterance.speaker, Utterance.role, func.min(Utterance.position))
        .join(Utterance, Utterance.transcript_id == Transcript.id)
        .where(Transcript.study_id == study.id)
        .group_by(Transcript.session_id, Utterance.speaker, Utterance.role)
        .order_by(Transcript.session_id, func.min(Utterance.position))
    )
    for session_id, speaker, role, _first in rows:
        speakers.setdefault(session_id, {})[speaker] = role
    return [SessionSummary(s, counts.get(s.id, 0), speakers.get(s.id, {})) for s in sessions]


def get_session(study: Study, session_id: int) -> TherapySession | None:
    """A session of this study by id, or None (never another study's)."""
    return db.session.scalar(
        select(TherapySession).where(
            TherapySession.id == session_id, TherapySession.study_id == study.id
        )
    )


def transcript_page(
    transcript: Transcript, *, offset: int = 0, limit: int = 500
) -> list[Utterance]:
    """Utterances in order, one page at a time."""
    return list(
        db.session.scalars(
            transcript.utterances.select().offset(offset).limit(limit)
        )
    )


def all_utterances(session: TherapySession) -> list[Utterance]:
    """Every utterance of the session's transcript, in order (empty without a transcript)."""
    return list(
        db.session.scalars(
            select(Utterance)
            .join(Transcript, Transcript.id == Utterance.transcript_id)
            .where(Transcript.session_id == session.id)
            .order_by(Utterance.position)
        )
    )
