"""The data model; import models from here."""

from .audit import AuditEvent
from .coding import ASSIGNMENT_STATUSES, Assignment, ItemRating, ItemRationale, UtteranceCode
from .fidelity import ApiToken, Outcome, QualityAudit, QualityAuditRating
from .reliability import (
    CONSENSUS_BASES,
    CONSENSUS_STATUSES,
    Consensus,
    ConsensusCode,
    ConsensusRating,
    GoldStandard,
    ReliabilitySample,
    ReliabilitySettings,
    SampledSession,
)
from .scheme import SchemeVersion
from .study import (
    MODALITIES,
    PARTICIPANT_KINDS,
    PHASES,
    SPEAKER_ROLES,
    STUDY_ROLES,
    Participant,
    SessionParticipant,
    Study,
    StudyMember,
    TherapySession,
    Transcript,
    Utterance,
)
from .user import ROLES, User

__all__ = [
    "ApiToken",
    "Outcome",
    "QualityAudit",
    "QualityAuditRating",
    "CONSENSUS_BASES",
    "CONSENSUS_STATUSES",
    "Consensus",
    "ConsensusCode",
    "ConsensusRating",
    "GoldStandard",
    "ReliabilitySample",
    "ReliabilitySettings",
    "SampledSession",
    "ASSIGNMENT_STATUSES",
    "STUDY_ROLES",
    "Assignment",
    "ItemRating",
    "ItemRationale",
    "StudyMember",
    "UtteranceCode",
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
