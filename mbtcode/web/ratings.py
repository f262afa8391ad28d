"""The MBT-ACS (or any session instrument) rating form, saved field by field."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy.orm.exc import StaleDataError

from ..extensions import db, htmx
from ..services.assignments import ConflictError, LockedError
from ..services.coding import InvalidInput
from ..services.ratings import (
    item_means,
    rationales_of,
    ratings_of,
    record_rating,
    record_rationale,
    session_instruments,
)
from .access import load_own_assignment_or_404
from .transactions import commit_and_keep_loaded

bp = Blueprint("ratings", __name__, url_prefix="/assignments/<int:assignment_id>/rating")


def _instrument(assignment, instrument_id: str):
    found = next((i for i in session_instruments(assignment) if i.id == instrument_id), None)
    if found is None:
        abort(404)
    return found


def _entry(instrument, item_id: str):
    """The item or overall rating with this id, as (name, dimensions, is_overall)."""
    for item in instrument.items:
        if item.id == item_id:
            return item, tuple(item.rated_for), False
    for overall in instrument.overall:
        if overall.id == item_id:
            return overall, (overall.dimension,), True
    abort(404)


def _version(raw: str | None) -> int:
    raw = raw or "0"
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        abort(422)
    return int(raw)


@bp.route("/")
@login_required
def form(assignment_id: int):
    """Every item with its rated dimensions, N/A where allowed, and a rationale."""
    assignment = load_own_assignment_or_404(assignment_id)
    instruments = session_instruments(assignment)
    ratings = ratings_of(assignment)
    return render_template(
        "ratings/form.html", assignment=assignment, instruments=instruments, ratings=ratings,
        rationales=rationales_of(assignment),
        means={i.id: item_means(i, ratings) for i in instruments},
    )


@bp.post("/<instrument_id>/<item_id>/<dimension>")
@login_required
def save_rating(assignment_id: int, instrument_id: str, item_id: str, dimension: str):
    """Save one rating; answers with that field and the updated means (out of band)."""
    assignment = load_own_assignment_or_404(assignment_id, for_update=True)
    instrument = _instrument(assignment, instrument_id)
    entry, dimensions, _ = _entry(instrument, item_id)
    if dimension not in dimensions:
        abort(404)
    raw = request.form.get("value", "")
    status, message, error, mine = 200, "saved", None, None
    try:
        record_rating(assignment, instrument_id, item_id, dimension, raw,
                      expected_version=_version(request.form.get("version")), actor=current_user)
        commit_and_keep_loaded()
    except (ConflictError, StaleDataError) as exc:
        db.session.rollback()
        status, message, mine = 409, "changed in another tab or window: the saved value is shown", raw
        if isinstance(exc, ConflictError):
            message = f"{exc}: the saved value is shown"
    except LockedError as exc:
        db.session.rollback()
        status, message, error = 409, None, str(exc)
    except InvalidInput as exc:
        db.session.rollback()
        status, message, error = 422, None, str(exc)
    if not htmx:
        return redirect(url_for("ratings.form", assignment_id=assignment.id,
                                _anchor=f"item-{instrument_id}-{item_id}")), 303
    ratings = ratings_of(assignment)
    return render_template(
        "ratings/_dimension_response.html", assignment=assignment, instrument=instrument,
        entry=entry, dimension=dimension, row=ratings.get((instrument_id, item_id, dimension)),
        message=message, error=error, mine=mine, means=item_means(instrument, ratings),
    ), status


@bp.post("/<instrument_id>/<item_id>/rationale")
@login_required
def save_rationale(assignment_id: int, instrument_id: str, item_id: str):
    """Save one item's rationale; a conflict keeps the rater's text on the page."""
    assignment = load_own_assignment_or_404(assignment_id, for_update=True)
    instrument = _instrument(assignment, instrument_id)
    entry, _, _ = _entry(instrument, item_id)
    text = request.form.get("text", "")
    status, message, error, mine = 200, "saved", None, None
    try:
        record_rationale(assignment, instrument_id, item_id, text,
                         expected_version=_version(request.form.get("version")), actor=current_user)
        commit_and_keep_loaded()
    except (ConflictError, StaleDataError):
        db.session.rollback()
        status, message, mine = 409, "changed in another tab or window", text
    except LockedError as exc:
        db.session.rollback()
        status, error = 409, str(exc)
    except InvalidInput as exc:
        db.session.rollback()
        status, error, mine = 422, str(exc), text
    if not htmx:
        return redirect(url_for("ratings.form", assignment_id=assignment.id,
                                _anchor=f"item-{instrument_id}-{item_id}")), 303
    return render_template(
        "ratings/_rationale.html", assignment=assignment, instrument=instrument, entry=entry,
        row=rationales_of(assignment).get((instrument_id, item_id)), message=message,
        error=error, mine=mine, response=True,
    ), status
