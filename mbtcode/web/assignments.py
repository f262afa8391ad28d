"""Coordinator actions: assign sessions to raters, reopen and withdraw assignments."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from ..extensions import db
from ..models import TherapySession, User
from ..services import ServiceError
from ..services import assignments as service
from ..services.permissions import add_member
from ..services.users import get_user_by_email
from .access import load_managed_assignment_or_404, load_study_or_404, require

bp = Blueprint("assignments", __name__)


def _ids(field: str) -> list[int]:
    return [int(v) for v in request.form.getlist(field) if v.isdigit() and len(v) < 10]


@bp.post("/studies/<int:study_id>/assignments")
@login_required
def assign(study_id: int):
    """Assign the chosen sessions to the chosen raters."""
    study = load_study_or_404(study_id)
    require("manage_assignments", study)
    sessions = db.session.scalars(
        select(TherapySession).where(
            TherapySession.id.in_(_ids("session_id")), TherapySession.study_id == study.id
        )
    ).all()
    raters = db.session.scalars(select(User).where(User.id.in_(_ids("rater_id")))).all()
    try:
        created = service.assign_sessions(study, sessions, raters, actor=current_user)
    except ServiceError as exc:
        flash(str(exc), "error")
        return redirect(url_for("studies.detail", study_id=study.id)), 303
    db.session.commit()
    flash(f"{len(created)} new assignment(s).", "info")
    return redirect(url_for("studies.detail", study_id=study.id)), 303


def _change_assignment(assignment_id: int, action, done: str):
    """Run a coordinator action that needs a reason; report the outcome on the study page."""
    assignment = load_managed_assignment_or_404(assignment_id)
    try:
        action(assignment, actor=current_user, reason=request.form.get("reason", ""))
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash(f"{done} {assignment.rater.name}.", "info")
    return redirect(url_for("studies.detail", study_id=assignment.study_id)), 303


@bp.post("/assignments/<int:assignment_id>/reopen")
@login_required
def reopen(assignment_id: int):
    """Unlock a submitted assignment, with a reason."""
    return _change_assignment(assignment_id, service.reopen, "Reopened for")


@bp.post("/assignments/<int:assignment_id>/withdraw")
@login_required
def withdraw(assignment_id: int):
    """Withdraw an assignment from its rater (their work is kept), with a reason."""
    return _change_assignment(assignment_id, service.withdraw, "Withdrawn from")


@bp.post("/studies/<int:study_id>/members")
@login_required
def add_study_member(study_id: int):
    """Give an existing account a role in this study."""
    study = load_study_or_404(study_id)
    require("manage_assignments", study)
    user = get_user_by_email(request.form.get("email", ""))
    if user is None:
        flash("No account with that e-mail; an administrator creates accounts.", "error")
        return redirect(url_for("studies.detail", study_id=study.id)), 303
    try:
        add_member(study, user, request.form.get("role", ""), actor=current_user)
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash(f"{user.name} is now a {request.form.get('role')} in this study.", "info")
    return redirect(url_for("studies.detail", study_id=study.id)), 303
