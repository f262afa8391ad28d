"""Adjudication: the queue of double-coded sessions and the side-by-side consensus page.

Who may see what:

* only users who may adjudicate in the study (coordinators, site admins) reach these pages:
  raters and analysts get a 403, non-members a 404, and a session of another study is a 404;
* a coordinator who has an assignment on the session gets the reason instead of the
  comparison, and every change they post is refused (403);
* before every rater has submitted (``readiness``), the page shows only why: no codes, no
  ratings, no rater names, to anyone.

Saving a consensus value is an htmx request that answers with the re-rendered row and the
progress counter (out of band); a stale version is a 409 row showing the stored value, a
refused value a 422 row. Without JavaScript the same forms post and redirect back (303).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from ..extensions import db, htmx
from ..models import Assignment, Consensus, TherapySession, Transcript, Utterance
from ..services import ServiceError
from ..services import adjudication as service
from ..services.adjudication import (
    ConflictError,
    InvalidInput,
    LockedError,
    NotReady,
    adjudication_queue,
    compare,
    may_adjudicate,
    readiness,
)
from ..services.assignments import codable_roles, required_ratings
from ..services.double_coding import sampled_session_ids
from ..services.schemes import as_scheme
from ..services.sessions import get_session
from .access import load_study_or_404, require
from .transactions import commit_and_keep_loaded

bp = Blueprint("adjudication", __name__, url_prefix="/studies/<int:study_id>/adjudication")

#: The select option that enters "no code" as the consensus (code ids are tokens, never "-").
NO_CODE = "-"
CODED_IT = ("You coded this session (or may not adjudicate in this study): another supervisor "
            "must adjudicate it, so the codings are not shown to you.")
BASIS_TEXT = {"agreement": "raters agree", "within_threshold": "within the threshold (raters' mean)",
              "entered": "entered by the adjudicator"}


class _Refused(Exception):
    """The request cannot be carried out in the consensus's current state (say so and reload)."""


# ----------------------------------------------------------------------------- loaders


def _study(study_id: int):
    study = load_study_or_404(study_id)
    require("adjudicate", study)
    return study


def _session(study_id: int, session_id: int) -> TherapySession:
    session = get_session(_study(study_id), session_id)
    if session is None:
        abort(404)
    return session


def _must_be_allowed(session: TherapySession) -> None:
    if not may_adjudicate(session, current_user):
        abort(403, description=CODED_IT)


def _locked_consensus(session: TherapySession) -> Consensus | None:
    """The session's consensus with a row lock (PostgreSQL), so a finalize and a save cannot
    interleave; SQLite serialises writers already."""
    return db.session.scalar(
        select(Consensus).where(Consensus.session_id == session.id).with_for_update()
    )


def _changeable(session: TherapySession) -> Consensus:
    """The open consensus the current user may change, or a refusal."""
    _must_be_allowed(session)
    reason = readiness(session)
    if reason is not None:
        raise _Refused(f"This session cannot be adjudicated now: {reason}.")
    consensus = _locked_consensus(session)
    if consensus is None:
        raise _Refused("Adjudication of this session has not started (or was discarded).")
    if consensus.status != "open":
        raise _Refused("This consensus is final; reopen it to change it.")
    return consensus


def _back(session: TherapySession, message: str | None = None, category: str = "info", *,
          anchor: str | None = None, status: int = 409):
    """Back to the session page with a message: a 303 for forms, a full reload for htmx."""
    if message:
        flash(message, category)
    url = url_for("adjudication.session", study_id=session.study_id, session_id=session.id,
                  _anchor=anchor)
    if htmx:
        response = make_response("", status)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url), 303


# ----------------------------------------------------------------------------- page context


def _scheme_context(study) -> dict:
    scheme = as_scheme(study.scheme_version)
    item_names, dimension_labels = {}, {}
    for instrument in scheme.instruments:
        for item in instrument.items:
            item_names[(instrument.id, item.id)] = f"{item.number}. {item.name}"
        for overall in instrument.overall:
            item_names[(instrument.id, overall.id)] = overall.label
        for dimension in instrument.dimensions:
            dimension_labels[(instrument.id, dimension.id)] = dimension.label
    return {
        "code_sets": {cs.id: cs for cs in scheme.code_sets},
        "code_labels": {cs.id: {c.id: c for c in cs.codes} for cs in scheme.code_sets},
        "instruments": {i.id: i for i in scheme.instruments},
        "item_names": item_names,
        "dimension_labels": dimension_labels,
        "NO_CODE": NO_CODE,
        "BASIS_TEXT": BASIS_TEXT,
    }


def _preceding(session: TherapySession, units) -> dict[int, Utterance]:
    """Utterance id → the utterance before it (any speaker), for context."""
    wanted = {u.utterance.position - 1: u.utterance.id for u in units if u.utterance.position > 1}
    if not wanted:
        return {}
    rows = db.session.scalars(
        select(Utterance)
        .join(Transcript, Transcript.id == Utterance.transcript_id)
        .where(Transcript.session_id == session.id, Utterance.position.in_(list(wanted)))
    )
    return {wanted[row.position]: row for row in rows}


def _progress(comparison) -> dict:
    total = comparison.n_disagreements
    unresolved = comparison.unresolved if comparison.consensus is not None else total
    return {"total": total, "resolved": total - unresolved, "unresolved": unresolved}


def _status(consensus: Consensus | None) -> str:
    return "to do" if consensus is None else consensus.status


def _context(session: TherapySession, comparison) -> dict:
    consensus = comparison.consensus
    return {
        "study": session.study,
        "session": session,
        "comparison": comparison,
        "consensus": consensus,
        "labels": comparison.labels,
        "status": _status(consensus),
        "progress": _progress(comparison),
        "editable": consensus is not None and consensus.status == "open",
        **_scheme_context(session.study),
    }


# ----------------------------------------------------------------------------- pages


@bp.get("")
@login_required
def queue(study_id: int):
    """Sessions ready for adjudication, the most disagreement first; then those not ready."""
    study = _study(study_id)
    rows = adjudication_queue(study)
    listed = {row.session.id for row in rows}
    double_coded = set(db.session.scalars(
        select(Assignment.session_id)
        .where(Assignment.study_id == study.id, Assignment.status != "withdrawn")
        .group_by(Assignment.session_id)
        .having(func.count() >= 2)
    )) | sampled_session_ids(study)
    waiting = []
    for session in db.session.scalars(
        select(TherapySession)
        .where(TherapySession.id.in_(double_coded - listed), TherapySession.study_id == study.id)
        .order_by(TherapySession.label)
    ):
        reason = readiness(session)
        if reason is not None:
            waiting.append((session, reason))
    mine = {row.session.id for row in rows if not may_adjudicate(row.session, current_user)}
    return render_template("adjudication/queue.html", study=study, rows=rows, waiting=waiting,
                           coded_by_me=mine)


@bp.get("/<int:session_id>")
@login_required
def session(study_id: int, session_id: int):
    """The disagreements side by side, with a control to resolve each."""
    session = _session(study_id, session_id)
    base = {"study": session.study, "session": session}
    if not may_adjudicate(session, current_user):
        return render_template("adjudication/session.html", blocked=CODED_IT, **base)
    reason = readiness(session)
    if reason is not None:
        # Blinding: nothing of the codings (not even who the raters are) before all submit.
        consensus = service.consensus_for(session)
        return render_template("adjudication/session.html", blocked=None, not_ready=reason,
                               consensus=consensus, status=_status(consensus), **base)
    comparison = compare(session)
    return render_template(
        "adjudication/session.html", blocked=None, not_ready=None,
        context_of=_preceding(session, comparison.code_disagreements),
        **_context(session, comparison),
    )


# ----------------------------------------------------------------------------- state changes


@bp.post("/<int:session_id>/start")
@login_required
def start(study_id: int, session_id: int):
    """Open the consensus, pre-filled with everything the raters agree on."""
    session = _session(study_id, session_id)
    _must_be_allowed(session)
    try:
        service.start(session, actor=current_user)
        db.session.commit()
    except IntegrityError:  # started in another window at the same moment
        db.session.rollback()
        return _back(session, "Adjudication was already started.", status=303)
    except ServiceError as exc:
        db.session.rollback()
        return _back(session, f"Not started: {exc}.", "error", status=409)
    return _back(session, "Adjudication started: agreed values are filled in.", status=303)


@bp.post("/<int:session_id>/finalize")
@login_required
def finalize(study_id: int, session_id: int):
    """Make the consensus final once nothing is unresolved."""
    session = _session(study_id, session_id)
    try:
        consensus = _changeable(session)
        service.finalize(consensus, actor=current_user)
        db.session.commit()
    except _Refused as exc:
        db.session.rollback()
        return _back(session, str(exc), "error")
    except NotReady:
        db.session.rollback()
        abort(403, description=CODED_IT)
    except ServiceError as exc:
        db.session.rollback()
        return _back(session, f"Not final: {exc}.", "error")
    return _back(session, "The consensus is final.", status=303)


@bp.post("/<int:session_id>/reopen")
@login_required
def reopen(study_id: int, session_id: int):
    """Make a final consensus editable again (reason required)."""
    session = _session(study_id, session_id)
    _must_be_allowed(session)
    reason = readiness(session)
    if reason is not None:
        return _back(session, f"This session cannot be adjudicated now: {reason}.", "error")
    consensus = _locked_consensus(session)
    if consensus is None:
        return _back(session, "There is no consensus to reopen.", "error")
    try:
        service.reopen(consensus, actor=current_user, reason=request.form.get("reason", ""))
        db.session.commit()
    except NotReady:
        db.session.rollback()
        abort(403, description=CODED_IT)
    except ServiceError as exc:
        db.session.rollback()
        return _back(session, f"Not reopened: {exc}.", "error")
    return _back(session, "The consensus is open again.", status=303)


@bp.post("/<int:session_id>/discard")
@login_required
def discard(study_id: int, session_id: int):
    """Delete the consensus (reason and confirmation required); the audit log keeps it.

    Allowed while the session is not ready, too: that is when a consensus must go (a
    rater's assignment is to be reopened).
    """
    session = _session(study_id, session_id)
    _must_be_allowed(session)
    consensus = _locked_consensus(session)
    if consensus is None:
        return _back(session, "There is no consensus to discard.", "error")
    if request.form.get("confirm") != "yes":
        return _back(session, "Not discarded: tick the box to confirm.", "error", status=422)
    try:
        service.discard(consensus, actor=current_user, reason=request.form.get("reason", ""))
        db.session.commit()
    except NotReady:
        db.session.rollback()
        abort(403, description=CODED_IT)
    except ServiceError as exc:
        db.session.rollback()
        return _back(session, f"Not discarded: {exc}.", "error", status=422)
    return _back(session, "The consensus was discarded; the raters' codings are unchanged.",
                 status=303)


# ----------------------------------------------------------------------------- resolving


def _version(raw: str | None) -> int:
    raw = (raw or "0").strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        raise InvalidInput("the page sent an invalid version; reload it")
    return int(raw)


def _pick(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        raise InvalidInput("pick the value of one of this session's raters")
    return int(raw)


def _resolve(session: TherapySession, kind: str, key, save, draft: dict):
    """Run ``save(consensus)`` and answer with the row (htmx) or a redirect (forms).

    ``key`` finds the unit in a comparison; ``draft`` is what the user sent, kept in the row
    when it was not saved.
    """
    anchor = _row_id(kind, key)
    find = _finder(kind, key)
    try:
        consensus = _changeable(session)
    except _Refused as exc:
        db.session.rollback()
        return _back(session, str(exc), "error", anchor=anchor)
    if not _exists(session, kind, key):
        abort(404)
    status, message, error = 200, "saved", None
    try:
        save(consensus)
        # The row and the counter are read inside the write, before the commit (see
        # commit_and_keep_loaded); a form post only needs the redirect.
        comparison = compare(session) if htmx else None
        commit_and_keep_loaded()
    except (ConflictError, StaleDataError, IntegrityError) as exc:
        db.session.rollback()
        status, message = 409, (
            f"Not saved: {exc}; the stored value is shown. Save again to replace it."
            if isinstance(exc, ConflictError) else
            "Not saved: this value was changed in another window at the same time; the stored "
            "value is shown. Save again to replace it.")
    except LockedError as exc:
        db.session.rollback()
        return _back(session, str(exc), "error", anchor=anchor)
    except NotReady:
        db.session.rollback()
        abort(403, description=CODED_IT)
    except ServiceError as exc:  # InvalidInput and the like: nothing was written
        db.session.rollback()
        status, message, error = 422, None, f"Not saved: {exc}."
    if not htmx:
        if status == 200:
            return _back(session, "Saved.", anchor=anchor, status=303)
        flash(error or message, "error")
        return redirect(url_for("adjudication.session", study_id=session.study_id,
                                session_id=session.id, _anchor=anchor)), 303
    if status != 200:
        comparison = compare(session)
    unit = find(comparison)
    context = _context(session, comparison)
    if kind == "code":
        context["context_of"] = _preceding(session, [unit])
    html = render_template(
        "adjudication/_row_response.html", kind=kind, unit=unit, message=message, error=error,
        draft=draft if status != 200 else None, conflict=status == 409, **context,
    )
    return html, status


def _exists(session: TherapySession, kind: str, key) -> bool:
    """Whether the URL names a codable utterance / a required rating of this session."""
    study = session.study
    if kind == "rating":
        return key in required_ratings(study)
    return db.session.scalar(
        select(Utterance.id)
        .join(Transcript, Transcript.id == Utterance.transcript_id)
        .where(Utterance.id == key, Transcript.session_id == session.id,
               Utterance.role.in_(list(codable_roles(study))))
    ) is not None


def _row_id(kind: str, key) -> str:
    return f"c-{key}" if kind == "code" else "r-" + "-".join(key)


def _finder(kind: str, key):
    if kind == "code":
        return lambda comparison: next(
            (u for u in comparison.codes if u.utterance.id == key), None)
    return lambda comparison: next(
        (u for u in comparison.ratings if (u.instrument, u.item, u.dimension) == key), None)


@bp.post("/<int:session_id>/codes/<int:utterance_id>")
@login_required
def resolve_code(study_id: int, session_id: int, utterance_id: int):
    """Set the consensus code of one disagreed utterance: a rater's code or another one."""
    session = _session(study_id, session_id)
    form = request.form
    draft = {"pick": form.get("pick"), "code": form.get("code", ""), "note": form.get("note", "")}

    def save(consensus):
        pick = _pick(form.get("pick"))
        code = None
        if pick is None:
            raw = form.get("code", "")
            if raw == "":
                raise InvalidInput("choose a code (or “no code”), or use one rater's code")
            code = None if raw == NO_CODE else raw
        service.resolve_code(
            consensus, utterance_id, actor=current_user, pick=pick, code=code,
            note=form.get("note", ""), expected_version=_version(form.get("expected_version")),
        )

    return _resolve(session, "code", utterance_id, save, draft)


@bp.post("/<int:session_id>/ratings/<instrument_id>/<item_id>/<dimension>")
@login_required
def resolve_rating(study_id: int, session_id: int, instrument_id: str, item_id: str,
                   dimension: str):
    """Set the consensus rating of one disagreed item: a rater's value or another one."""
    session = _session(study_id, session_id)
    form = request.form
    draft = {"pick": form.get("pick"), "value": form.get("value", ""),
             "note": form.get("note", "")}

    def save(consensus):
        pick = _pick(form.get("pick"))
        service.resolve_rating(
            consensus, instrument_id, item_id, dimension, actor=current_user, pick=pick,
            raw_value=None if pick is not None else form.get("value", ""),
            note=form.get("note", ""), expected_version=_version(form.get("expected_version")),
        )

    return _resolve(session, "rating", (instrument_id, item_id, dimension), save, draft)
