"""The data model; import models from here."""

from .audit import AuditEvent
from .scheme import SchemeVersion
from .study import (
    MODALITIES,
    PARTICIPANT_KINDS,
    PHASES,
    SPEAKER_ROLES,
    Participant,
    SessionParticipant,
    Study,
    TherapySession,
    Transcript,
    Utterance,
)
from .user import ROLES, User

__all__ = [
    "MODALITIES",
    "PARTICIPANT_KINDS",
    "PHASES",
    "ROLES",
    "SPEAKER_ROLES",
    "AuditEvent",
    "Participant",
    "SchemeVersion",
    "SessionParticipant",
    "Study",
    "TherapySession",
    "Transcript",
    "User",
    "Utterance",
]
