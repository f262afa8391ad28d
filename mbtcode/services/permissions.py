"""Who may do what in a study: plain functions the web loaders and the CLI share."""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import STUDY_ROLES, Study, StudyMember, User
from . import ServiceError, audit

#: What each study role may do. Site admins may do everything in every study.
CAPABILITIES = {
    "coordinator": {
        "view_sessions", "read_transcripts", "manage_assignments", "view_progress",
        "manage_reliability", "adjudicate", "view_reliability",
        # fidelity dashboards, exports, program quality audits
        "view_fidelity", "export", "export_identifying", "manage_quality_audits",
    },
    "rater": {"code"},
    # Analysts read results, never transcripts or individual codings: they export
    # de-identified tables (rater codes, no utterance text, no free-text notes).
    "analyst": {"view_sessions", "view_progress", "view_reliability", "view_fidelity", "export"},
}


def study_role(study: Study, user: User) -> str | None:
    """``admin`` for site admins, the user's role in the study, or None for non-members."""
    if not user.is_authenticated or not user.active:
        return None
    if user.role == "admin":
        return "admin"
    return db.session.scalar(
        select(StudyMember.role).where(StudyMember.study_id == study.id, StudyMember.user_id == user.id)
    )


def can(user: User, capability: str, study: Study) -> bool:
    """Whether ``user`` has ``capability`` in ``study``."""
    role = study_role(study, user)
    if role is None:
        return False
    return role == "admin" or capability in CAPABILITIES.get(role, set())


def visible_studies(user: User) -> list[Study]:
    """Studies the user is a member of (all of them for site admins), by name."""
    query = select(Study).order_by(Study.name)
    if user.role != "admin":
        query = query.join(StudyMember, StudyMember.study_id == Study.id).where(
            StudyMember.user_id == user.id
        )
    return list(db.session.scalars(query))


def add_member(study: Study, user: User, role: str, *, actor: User | None) -> StudyMember:
    """Give ``user`` a role in ``study`` (or change it)."""
    if role not in STUDY_ROLES:
        raise ServiceError(f"unknown study role '{role}': choose one of {', '.join(STUDY_ROLES)}")
    member = db.session.scalar(
        select(StudyMember).where(StudyMember.study_id == study.id, StudyMember.user_id == user.id)
    )
    old = member.role if member else None
    if member is None:
        member = StudyMember(study_id=study.id, user_id=user.id, role=role)
        db.session.add(member)
    member.role = role
    db.session.flush()
    if old != role:
        audit.record(
            "study.member", actor=actor, entity="study_member", entity_id=member.id,
            study_id=study.id, detail={"user_id": user.id, "old": old, "new": role},
        )
    return member


def members(study: Study, role: str | None = None) -> list[tuple[User, str]]:
    """The study's members with their roles, by name."""
    query = (
        select(User, StudyMember.role)
        .join(StudyMember, StudyMember.user_id == User.id)
        .where(StudyMember.study_id == study.id)
        .order_by(User.name)
    )
    if role is not None:
        query = query.where(StudyMember.role == role)
    return [(user, r) for user, r in db.session.execute(query)]
