"""Therapy sessions: read a transcript."""

from __future__ import annotations

from flask import Blueprint, current_app, request
from flask_login import login_required

from ..services.sessions import transcript_page
from .access import load_session_or_404
from .rendering import render

bp = Blueprint("sessions", __name__, url_prefix="/studies/<int:study_id>/sessions")


@bp.route("/<int:session_id>")
@login_required
def detail(study_id: int, session_id: int):
    """The transcript with speakers, roles and timestamps, a page at a time."""
    session = load_session_or_404(study_id, session_id)
    page_size = current_app.config["TRANSCRIPT_PAGE_SIZE"]
    transcript = session.transcript
    total = transcript.n_utterances if transcript else 0
    n_pages = max(1, -(-total // page_size))
    # Out-of-range pages show the nearest real page (also keeps OFFSET within SQL range).
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), n_pages)
    utterances = (
        transcript_page(transcript, offset=(page - 1) * page_size, limit=page_size)
        if transcript else []
    )
    return render(
        "sessions/detail.html",
        "sessions/_utterances.html",
        session=session,
        transcript=transcript,
        utterances=utterances,
        page=page,
        n_pages=n_pages,
        total=total,
    )
