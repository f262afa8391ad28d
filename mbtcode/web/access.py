"""Loaders that fetch an object only if the current user may see it.

Anything a user may not see does not exist for them (404, same page as a missing id):
blinding means another rater's assignment is indistinguishable from no assignment.
A page of a study the user can see, but whose role does not allow it, is a 403.
"""

from __future__ import annotations

from flask import abort
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import Assignment, Study, TherapySession
from ..services.permissions import can, study_role
from ..services.sessions import get_session


def load_study_or_404(study_id: int) -> Study:
    """A study the current user is a member of (or any study for site admins)."""
    study = db.session.get(Study, study_id)
    if study is None or study_role(study, current_user) is None:
        abort(404)
    return study


def user_can(capability: str, study: Study) -> bool:
    """Template helper (``user_can("export", study)``): may the signed-in user do this?"""
    return can(current_user, capability, study)


def require(capability: str, study: Study) -> None:
    """403 unless the current user's role in ``study`` allows ``capability``."""
    if not can(current_user, capability, study):
        abort(403)


def load_session_or_404(study_id: int, session_id: int) -> TherapySession:
    """A session whose transcript the current user may read."""
    study = load_study_or_404(study_id)
    session = get_session(study, session_id)
    if session is None:
        abort(404)
    if not can(current_user, "read_transcripts", study) and not (
        can(current_user, "code", study) and _assigned(session)
    ):
        abort(404)
    return session


def _assigned(session: TherapySession) -> bool:
    return db.session.scalar(
        select(Assignment.id).where(
            Assignment.session_id == session.id,
            Assignment.rater_id == current_user.id,
            Assignment.status != "withdrawn",
        )
    ) is not None


def load_own_assignment_or_404(
    assignment_id: int, *, for_update: bool = False, exclusive: bool = False
) -> Assignment:
    """The current user's own, not withdrawn assignment in a study they still code in.

    ``for_update`` takes a shared row lock (PostgreSQL), so a save cannot slip past a
    concurrent submit or reopen; SQLite already serialises writers with BEGIN IMMEDIATE.
    ``exclusive`` takes an exclusive lock instead, for requests that change the assignment
    row itself (submit): two of them holding shared locks and then both updating the row
    would deadlock.
    """
    query = (
        select(Assignment)
        .where(
            Assignment.id == assignment_id,
            Assignment.rater_id == current_user.id,
            Assignment.status != "withdrawn",
        )
        # Every save needs the study and its scheme revision: one query, not three.
        .options(joinedload(Assignment.study, innerjoin=True)
                 .joinedload(Study.scheme_version, innerjoin=True))
    )
    if for_update or exclusive:
        query = query.with_for_update(read=not exclusive, of=Assignment)
    assignment = db.session.scalar(query)
    if assignment is None or not can(current_user, "code", assignment.study):
        abort(404)
    return assignment


def load_managed_assignment_or_404(assignment_id: int) -> Assignment:
    """An assignment in a study where the current user manages assignments."""
    assignment = db.session.scalar(
        select(Assignment).where(Assignment.id == assignment_id).with_for_update()
    )
    if assignment is None or not can(current_user, "manage_assignments", assignment.study):
        abort(404)
    return assignment
