"""The rater workspace: queue, coding page, saving codes and notes, submitting."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy.orm.exc import StaleDataError

from ..extensions import db
from ..services import ServiceError
from ..services.assignments import (
    ConflictError,
    LockedError,
    completeness,
    progress_for,
    rater_queue,
    submit,
)
from ..services.coding import InvalidInput, codes_by_utterance, record_code, record_note, utterance_of
from ..services.schemes import as_scheme
from ..services.sessions import all_utterances
from .access import load_own_assignment_or_404
from .transactions import commit_and_keep_loaded

bp = Blueprint("coding", __name__, url_prefix="/assignments")


@bp.route("/")
@login_required
def queue():
    """The rater's assignments: open first, with progress."""
    assignments = rater_queue(current_user)
    return render_template("coding/queue.html", assignments=assignments,
                           progress=progress_for(assignments))


def _workspace_context(assignment):
    scheme = as_scheme(assignment.study.scheme_version)
    by_role = {role: cs for cs in scheme.code_sets for role in cs.applies_to_roles}
    return {
        "assignment": assignment,
        "session": assignment.session,
        "code_sets": scheme.code_sets,
        "code_set_by_role": by_role,
        "labels": {cs.id: {c.id: c for c in cs.codes} for cs in scheme.code_sets},
    }


@bp.route("/<int:assignment_id>")
@login_required
def workspace(assignment_id: int):
    """Code the session utterance by utterance, by keyboard or mouse."""
    assignment = load_own_assignment_or_404(assignment_id)
    context = _workspace_context(assignment)
    utterances = all_utterances(assignment.session)
    codes = codes_by_utterance(assignment)
    codable = [u for u in utterances if u.role in context["code_set_by_role"]]
    coded = sum(1 for u in codable if (r := codes.get(u.id)) is not None and r.code)
    coding_config = {
        "keys": {cs.id: {c.key: c.id for c in cs.codes} for cs in context["code_sets"]},
        "labels": {cs.id: {c.id: f"{c.id} · {c.label}" for c in cs.codes}
                   for cs in context["code_sets"]},
        "login": url_for("auth.login"),
        "csrf": url_for("auth.csrf_token"),
    }
    return render_template(
        "coding/workspace.html", utterances=utterances, codes=codes,
        n_codable=len(codable), n_coded=coded, coding_config=coding_config, **context,
    )


def _row_response(assignment, utterance, row, *, status=200, message=None, conflict=None,
                  error=None):
    context = _workspace_context(assignment)
    html = render_template(
        "coding/_utterance_response.html", u=utterance, row=row, message=message,
        conflict=conflict, error=error, **context,
    )
    return html, status


def _save(assignment_id: int, utterance_id: int, field: str):
    assignment = load_own_assignment_or_404(assignment_id, for_update=True)
    utterance = utterance_of(assignment, utterance_id)
    if utterance is None:
        abort(404)
    raw_version = request.form.get("version", "0")
    if not (raw_version.isascii() and raw_version.isdigit() and len(raw_version) < 10):
        abort(422)
    version = int(raw_version)
    value = request.form.get(field, "")
    try:
        if field == "code":
            row = record_code(assignment, utterance, value or None, expected_version=version,
                              actor=current_user)
        else:
            row = record_note(assignment, utterance, value, expected_version=version,
                              actor=current_user)
        commit_and_keep_loaded()
    except ConflictError as exc:
        db.session.rollback()
        current = codes_by_utterance(assignment).get(utterance.id)
        return _row_response(assignment, utterance, current, status=409, message=str(exc),
                             conflict={"field": field, "mine": value})
    except StaleDataError:
        db.session.rollback()
        current = codes_by_utterance(assignment).get(utterance.id)
        return _row_response(assignment, utterance, current, status=409,
                             message="this utterance was changed in another tab or window",
                             conflict={"field": field, "mine": value})
    except LockedError as exc:
        db.session.rollback()
        current = codes_by_utterance(assignment).get(utterance.id)
        return _row_response(assignment, utterance, current, status=409, error=str(exc))
    except InvalidInput as exc:
        db.session.rollback()
        current = codes_by_utterance(assignment).get(utterance.id)
        return _row_response(assignment, utterance, current, status=422, error=str(exc))
    return _row_response(assignment, utterance, row, message="saved")


@bp.post("/<int:assignment_id>/utterances/<int:utterance_id>/code")
@login_required
def save_code(assignment_id: int, utterance_id: int):
    """Set or clear one utterance's code; answers with the re-rendered row."""
    return _save(assignment_id, utterance_id, "code")


@bp.post("/<int:assignment_id>/utterances/<int:utterance_id>/note")
@login_required
def save_note(assignment_id: int, utterance_id: int):
    """Set one utterance's note; answers with the re-rendered row."""
    return _save(assignment_id, utterance_id, "note")


@bp.get("/<int:assignment_id>/utterances/<int:utterance_id>")
@login_required
def utterance_row(assignment_id: int, utterance_id: int):
    """The row as stored now (after a conflict, "use the saved value")."""
    assignment = load_own_assignment_or_404(assignment_id)
    utterance = utterance_of(assignment, utterance_id)
    if utterance is None:
        abort(404)
    return _row_response(assignment, utterance, codes_by_utterance(assignment).get(utterance.id))


@bp.route("/<int:assignment_id>/submit", methods=["GET", "POST"])
@login_required
def submit_page(assignment_id: int):
    """Check completeness, then lock the assignment."""
    assignment = load_own_assignment_or_404(assignment_id, exclusive=request.method == "POST")
    if request.method == "POST":
        try:
            state = submit(assignment, actor=current_user,
                           allow_uncoded=request.form.get("allow_uncoded") == "1")
        except ServiceError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return redirect(url_for("coding.queue")), 303
        except StaleDataError:
            db.session.rollback()
            state = None
        if state is not None and state.complete:
            db.session.commit()
            flash(f"Submitted: {assignment.session.label}. It is now locked.", "info")
            return redirect(url_for("coding.queue")), 303
        db.session.rollback()
        if state is None:  # a parallel submit won the race; it is submitted either way
            flash(f"Submitted: {assignment.session.label}. It is now locked.", "info")
            return redirect(url_for("coding.queue")), 303
        return render_template("coding/submit.html", assignment=assignment, state=state,
                               attempted=True, **_labels_for(assignment)), 422
    return render_template("coding/submit.html", assignment=assignment,
                           state=completeness(assignment), attempted=False,
                           **_labels_for(assignment))


def _labels_for(assignment):
    scheme = as_scheme(assignment.study.scheme_version)
    names = {}
    for instrument in scheme.instruments:
        for item in instrument.items:
            names[(instrument.id, item.id)] = f"{item.number}. {item.name}"
        for overall in instrument.overall:
            names[(instrument.id, overall.id)] = overall.label
    dims = {d.id: d.label for i in scheme.instruments for d in i.dimensions}
    return {"item_names": names, "dimension_labels": dims}
