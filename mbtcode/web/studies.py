"""Studies: the list and one study's sessions, assignments and members."""

from __future__ import annotations

from flask import Blueprint, redirect, url_for
from flask_login import current_user, login_required

from ..services.assignments import progress_for, rater_queue, study_assignments
from ..services.permissions import can, members, study_role, visible_studies
from ..services.sessions import list_sessions
from ..services.studies import session_counts
from .access import load_study_or_404
from .rendering import render

bp = Blueprint("studies", __name__, url_prefix="/studies")


@bp.route("/")
@login_required
def index():
    """The studies the user belongs to, with their session counts."""
    studies = visible_studies(current_user)
    counts = session_counts([s.id for s in studies])
    return render("studies/index.html", studies=[(s, counts.get(s.id, 0), study_role(s, current_user)) for s in studies])


def home():
    """Raters start at their coding queue, everyone else at the study list."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    if current_user.role == "rater":
        return redirect(url_for("coding.queue"))
    return redirect(url_for("studies.index"))


@bp.route("/<int:study_id>")
@login_required
def detail(study_id: int):
    """Sessions with their metadata; coordinators also assign and follow progress here."""
    study = load_study_or_404(study_id)
    if not can(current_user, "view_sessions", study):
        mine = [a for a in rater_queue(current_user) if a.study_id == study.id]
        return render("studies/rater_detail.html", study=study, assignments=mine,
                      progress=progress_for(mine))
    assignments = study_assignments(study)
    by_session: dict[int, list] = {}
    for a in assignments:
        by_session.setdefault(a.session_id, []).append(a)
    return render(
        "studies/detail.html",
        study=study,
        summaries=list_sessions(study),
        by_session=by_session,
        progress=progress_for(assignments),
        raters=[u for u, _ in members(study, "rater")],
        study_members=members(study),
        can_manage=can(current_user, "manage_assignments", study),
        can_read=can(current_user, "read_transcripts", study),
        can_reliability=can(current_user, "manage_reliability", study),
        can_adjudicate=can(current_user, "adjudicate", study),
        can_view_reliability=can(current_user, "view_reliability", study),
    )
