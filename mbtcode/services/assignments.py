"""Assign sessions to raters, track progress, submit, reopen and withdraw."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select

from ..extensions import db
from ..models import (
    Assignment,
    Consensus,
    ItemRating,
    Study,
    StudyMember,
    TherapySession,
    Transcript,
    User,
    Utterance,
    UtteranceCode,
)
from ..models._types import utcnow
from . import ServiceError, audit
from .schemes import as_scheme


class LockedError(ServiceError):
    """The assignment is submitted (or withdrawn); only a coordinator can reopen it."""


class ConflictError(ServiceError):
    """The row changed since the client saw it; ``current`` is what is stored now."""

    def __init__(self, message: str, current=None):
        super().__init__(message)
        self.current = current


def assign_sessions(
    study: Study, sessions: Iterable[TherapySession], raters: Iterable[User], *, actor: User | None
) -> list[Assignment]:
    """Assign each session to each rater; existing assignments are kept (withdrawn ones revived)."""
    sessions, raters = list(sessions), list(raters)
    if not sessions or not raters:
        raise ServiceError("choose at least one session and one rater")
    rater_ids = set(
        db.session.scalars(
            select(StudyMember.user_id).where(
                StudyMember.study_id == study.id, StudyMember.role == "rater"
            )
        )
    )
    for rater in raters:
        if rater.id not in rater_ids:
            raise ServiceError(f"{rater.name} is not a rater in study '{study.name}'")
    for session in sessions:
        if session.study_id != study.id:
            raise ServiceError("a session of another study was chosen")
    adjudicated = db.session.scalars(
        select(TherapySession.label).join(Consensus, Consensus.session_id == TherapySession.id)
        .where(TherapySession.id.in_([s.id for s in sessions]))
    ).all()
    if adjudicated:
        # A new rater would change the codings the consensus was built from.
        raise ServiceError(
            f"{', '.join(sorted(adjudicated))}: already adjudicated; discard the consensus first"
        )
    created = []
    for session in sessions:
        for rater in raters:
            existing = db.session.scalar(
                select(Assignment).where(
                    Assignment.session_id == session.id, Assignment.rater_id == rater.id
                )
            )
            if existing is not None and existing.status != "withdrawn":
                continue
            if existing is None:
                existing = Assignment(
                    study_id=study.id, session_id=session.id, rater_id=rater.id,
                    created_by_id=actor.id if actor else None,
                )
                db.session.add(existing)
            else:
                existing.status = "assigned"
            db.session.flush()
            audit.record(
                "assignment.create", actor=actor, entity="assignment", entity_id=existing.id,
                study_id=study.id,
                detail={"new": {"session_id": session.id, "rater_id": rater.id, "status": "assigned"}},
            )
            created.append(existing)
    return created


def withdraw(assignment: Assignment, *, actor: User | None, reason: str) -> None:
    """Take an assignment away from its rater; their work is kept but hidden from them.

    Withdrawing a withdrawn assignment changes nothing (no second audit entry).
    """
    reason = _require_reason(reason)
    old = assignment.status
    if old == "withdrawn":
        return
    if old == "submitted":
        # Submitted work is a finished, independent rating; hiding it would silently drop
        # it from double-coding and reliability. Reopen it first if it must go back.
        raise ServiceError("a submitted assignment cannot be withdrawn; reopen it first")
    assignment.status = "withdrawn"
    db.session.flush()
    audit.record(
        "assignment.withdraw", actor=actor, entity="assignment", entity_id=assignment.id,
        study_id=assignment.study_id, detail={"old": old, "new": "withdrawn"}, reason=reason,
    )


def reopen(assignment: Assignment, *, actor: User | None, reason: str) -> None:
    """Unlock a submitted assignment for its rater, with a stated reason."""
    reason = _require_reason(reason)
    if assignment.status != "submitted":
        raise ServiceError("only a submitted assignment can be reopened")
    if db.session.scalar(select(Consensus.id).where(Consensus.session_id == assignment.session_id)):
        # The consensus was built from this coding; changing it underneath would leave the
        # consensus citing values that no longer exist.
        raise ServiceError(
            "this session has an adjudicated consensus; discard the consensus first "
            "(the audit log keeps it), then reopen"
        )
    assignment.status = "assigned"
    assignment.reopen_reason = reason
    assignment.submitted_at = None
    db.session.flush()
    audit.record(
        "assignment.reopen", actor=actor, entity="assignment", entity_id=assignment.id,
        study_id=assignment.study_id, detail={"old": "submitted", "new": "assigned"}, reason=reason,
    )


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if len(reason) < 3:
        raise ServiceError("state a reason (it is kept in the audit log)")
    if len(reason) > 2000:
        raise ServiceError("the reason is too long: at most 2,000 characters")
    return reason


@dataclass(frozen=True)
class Progress:
    """How far a rater got: codable utterances coded, required ratings given."""

    coded: int
    codable: int
    rated: int
    ratable: int

    @property
    def percent(self) -> int:
        total = self.codable + self.ratable
        return 100 if total == 0 else round(100 * (self.coded + self.rated) / total)

    @property
    def started(self) -> bool:
        return self.coded + self.rated > 0


def codable_roles(study: Study) -> dict[str, str]:
    """Speaker role → code set id, from the study's scheme."""
    scheme = as_scheme(study.scheme_version)
    return {role: cs.id for cs in scheme.code_sets for role in cs.applies_to_roles}


def required_ratings(study: Study) -> list[tuple[str, str, str]]:
    """(instrument, item or overall id, dimension) that a submit needs, in form order."""
    scheme = as_scheme(study.scheme_version)
    needed = []
    for instrument in scheme.instruments:
        if instrument.target != "session":
            continue
        for item in instrument.items:
            needed.extend((instrument.id, item.id, dim) for dim in item.rated_for)
        needed.extend((instrument.id, o.id, o.dimension) for o in instrument.overall)
    return needed


def progress_for(assignments: list[Assignment]) -> dict[int, Progress]:
    """Progress of many assignments in a fixed number of queries."""
    if not assignments:
        return {}
    ids = [a.id for a in assignments]
    coded = dict(
        db.session.execute(
            select(UtteranceCode.assignment_id, func.count())
            .where(UtteranceCode.assignment_id.in_(ids), UtteranceCode.code.is_not(None))
            .group_by(UtteranceCode.assignment_id)
        ).all()
    )
    rated = dict(
        db.session.execute(
            select(ItemRating.assignment_id, func.count())
            .where(
                ItemRating.assignment_id.in_(ids),
                (ItemRating.value.is_not(None)) | ItemRating.not_applicable,
            )
            .group_by(ItemRating.assignment_id)
        ).all()
    )
    result = {}
    by_study: dict[int, tuple[set[str], int]] = {}
    codable_by_session: dict[tuple[int, frozenset[str]], int] = {}
    for a in assignments:
        if a.study_id not in by_study:
            by_study[a.study_id] = (set(codable_roles(a.study)), len(required_ratings(a.study)))
        roles, ratable = by_study[a.study_id]
        key = (a.session_id, frozenset(roles))
        if key not in codable_by_session:
            codable_by_session[key] = db.session.scalar(
                select(func.count(Utterance.id))
                .join(Transcript, Transcript.id == Utterance.transcript_id)
                .where(Transcript.session_id == a.session_id, Utterance.role.in_(roles))
            ) or 0
        result[a.id] = Progress(coded.get(a.id, 0), codable_by_session[key], rated.get(a.id, 0), ratable)
    return result


def rater_queue(user: User) -> list[Assignment]:
    """The rater's open assignments, then submitted ones (never withdrawn ones)."""
    return list(
        db.session.scalars(
            select(Assignment)
            .where(Assignment.rater_id == user.id, Assignment.status != "withdrawn")
            .order_by(Assignment.status, Assignment.id)
        )
    )


def study_assignments(study: Study) -> list[Assignment]:
    """Every assignment in a study (coordinator view), by session then rater."""
    return list(
        db.session.scalars(
            select(Assignment)
            .where(Assignment.study_id == study.id)
            .order_by(Assignment.session_id, Assignment.id)
        )
    )


@dataclass(frozen=True)
class Completeness:
    missing_ratings: list[tuple[str, str, str]]
    uncoded_positions: list[int]

    @property
    def complete(self) -> bool:
        return not self.missing_ratings and not self.uncoded_positions


def completeness(assignment: Assignment) -> Completeness:
    """Which required ratings are missing and which codable utterances are uncoded."""
    given = {
        (r.instrument, r.item, r.dimension)
        for r in db.session.scalars(select(ItemRating).where(ItemRating.assignment_id == assignment.id))
        if r.value is not None or r.not_applicable
    }
    missing = [key for key in required_ratings(assignment.study) if key not in given]
    roles = set(codable_roles(assignment.study))
    coded = select(UtteranceCode.utterance_id).where(
        UtteranceCode.assignment_id == assignment.id, UtteranceCode.code.is_not(None)
    )
    uncoded = list(
        db.session.scalars(
            select(Utterance.position)
            .join(Transcript, Transcript.id == Utterance.transcript_id)
            .where(
                Transcript.session_id == assignment.session_id,
                Utterance.role.in_(roles),
                Utterance.id.not_in(coded),
            )
            .order_by(Utterance.position)
        )
    )
    return Completeness(missing, uncoded)


def submit(assignment: Assignment, *, actor: User, allow_uncoded: bool = False) -> Completeness:
    """Lock the assignment if it is complete; submitting twice changes nothing."""
    if assignment.status == "submitted":
        return Completeness([], [])
    if assignment.status != "assigned":
        raise LockedError("this assignment was withdrawn")
    state = completeness(assignment)
    if state.missing_ratings or (state.uncoded_positions and not allow_uncoded):
        return state
    assignment.status = "submitted"
    assignment.submitted_at = utcnow()
    db.session.flush()
    audit.record(
        "assignment.submit", actor=actor, entity="assignment", entity_id=assignment.id,
        study_id=assignment.study_id,
        detail={"old": "assigned", "new": "submitted", "uncoded": len(state.uncoded_positions)},
    )
    return Completeness([], [])
