"""Studies: the list and one study's sessions."""

from __future__ import annotations

from flask import Blueprint
from flask_login import login_required

from ..services.sessions import list_sessions
from ..services.studies import list_studies_with_counts
from .access import load_study_or_404
from .rendering import render

bp = Blueprint("studies", __name__, url_prefix="/studies")


@bp.route("/")
@login_required
def index():
    """All studies the user can see, with their session counts."""
    return render("studies/index.html", studies=list_studies_with_counts())


@bp.route("/<int:study_id>")
@login_required
def detail(study_id: int):
    """A study's sessions with their metadata."""
    study = load_study_or_404(study_id)
    return render("studies/detail.html", study=study, summaries=list_sessions(study))
