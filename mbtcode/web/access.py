"""Loaders that fetch an object only if the current user may see it (404 otherwise)."""

from __future__ import annotations

from flask import abort
from flask_login import current_user

from ..extensions import db
from ..models import Study, TherapySession
from ..services.sessions import get_session


def load_study_or_404(study_id: int) -> Study:
    """The study, if the current user may see it.

    Until per-study roles exist, every signed-in account sees every study; this loader is
    the single place that rule will tighten.
    """
    study = db.session.get(Study, study_id)
    if study is None or not current_user.is_authenticated:
        abort(404)
    return study


def load_session_or_404(study_id: int, session_id: int) -> TherapySession:
    """A session of a study the current user may see."""
    session = get_session(load_study_or_404(study_id), session_id)
    if session is None:
        abort(404)
    return session
