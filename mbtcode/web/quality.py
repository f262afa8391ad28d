"""Program quality audits: list and chart them (``view_fidelity``), record and edit them
(``manage_quality_audits``: coordinators and admins).

An audit rates a program, site or team on one date against the program-level instrument
(the 20 MBT program quality criteria by default, ``services/quality_audits.py``). Writes are
POST forms with the CSRF token: a problem in the form is a 422 that shows the form again with
a message at each field; an edit of an audit that someone else changed meanwhile is a 409
that keeps the user's values and lists what is saved now; deleting asks for confirmation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_login import current_user, login_required

from ..extensions import db
from ..io.schemes import Instrument
from ..models import QualityAudit, Study
from ..services import ServiceError
from ..services import quality_audits as qa
from ..services.permissions import can
from . import fidelity_charts as fc
from .access import load_study_or_404, require
from .fidelity import nav
from .rendering import render

bp = Blueprint("quality", __name__, url_prefix="/studies/<int:study_id>/quality")

#: Longest value read from any one form field (the service checks the real limits).
MAX_FIELD = 6_000


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"unit_label": qa.unit_label, "num": _num}


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _load_audit_or_404(study: Study, audit_id: int) -> QualityAudit:
    row = qa.get_audit(study, audit_id)
    if row is None:
        abort(404)
    return row


def _back_to_list(study: Study):
    return redirect(url_for("quality.index", study_id=study.id)), 303


def _field(name: str) -> str:
    return (request.form.get(name) or "")[:MAX_FIELD]


def _posted_values(instrument: Instrument) -> dict[str, str]:
    return {item.id: _field(f"item-{item.id}") for item in instrument.items}


def _version() -> int | None:
    raw = (request.form.get("version") or "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None


def grouped_items(instrument: Instrument) -> list[tuple[str, str, list]]:
    """(level id, level label, items) in the instrument's level order; unlevelled items last."""
    groups = [(lv.id, lv.label, [i for i in instrument.items if i.level == lv.id]) for lv in instrument.levels]
    rest = [i for i in instrument.items if i.level not in {lv.id for lv in instrument.levels}]
    if rest:
        groups.append(("", "Other criteria" if groups else "Criteria", rest))
    return [g for g in groups if g[2]]


def _form_of(audit_row: QualityAudit) -> dict[str, Any]:
    return {
        "audit_date": audit_row.audit_date.isoformat(), "unit": audit_row.unit, "note": audit_row.note,
        "values": {r.item: ("na" if r.not_applicable else str(r.value)) for r in audit_row.ratings},
    }


def _posted_form(instrument: Instrument) -> dict[str, Any]:
    return {"audit_date": _field("audit_date"), "unit": _field("unit"), "note": _field("note"),
            "values": _posted_values(instrument)}


def _form_page(study: Study, instrument: Instrument, *, audit_row: QualityAudit | None,
               form: Mapping[str, Any], errors: Mapping[str, str] | None = None,
               conflict: list[tuple[str, str, str]] | None = None, version: int | None = None,
               scheme_ref: str = "", status: int = 200):
    editable = can(current_user, "manage_quality_audits", study)
    return render(
        "quality/form.html", study=study, nav=nav(study), current="quality.index",
        instrument=instrument, groups=grouped_items(instrument), audit=audit_row, form=form,
        errors=dict(errors or {}), conflict=conflict, version=version, editable=editable,
        units=qa.known_units(study), scheme_ref=scheme_ref,
    ), status


# ----------------------------------------------------------------------------- list


def audit_charts(series: qa.AuditSeries) -> list[tuple[str, Any]]:
    """Per audited unit: (unit, chart of the overall and per-level means over audit dates)."""
    instrument = series.instrument
    out = []
    for u, unit in enumerate(series.units, start=1):
        scores = [s for s in series.scores if s.audit.unit == unit]
        lines = [fc.Series("Mean, all criteria", [
            fc.Point(s.audit.audit_date.toordinal(), s.mean, s.audit.audit_date.isoformat())
            for s in scores if s.mean is not None])]
        for level in instrument.levels:
            lines.append(fc.Series(level.label, [
                fc.Point(s.audit.audit_date.toordinal(), s.level_means[level.id], s.audit.audit_date.isoformat())
                for s in scores if s.level_means.get(level.id) is not None]))
        ticks = [(s.audit.audit_date.toordinal(), s.audit.audit_date.isoformat()) for s in scores]
        cid = f"audits-{instrument.id}-{u}"
        cutoff_text = (f" The dashed line is the cut-off {instrument.cutoff}; triangles pointing down mark "
                       "means below it." if instrument.cutoff is not None else "")
        chart = fc.score_chart(
            lines, chart_id=cid, title=f"{instrument.title}: {qa.unit_label(unit)} over time",
            description=(f"Mean rating of the rated criteria per audit, overall and per level, on the "
                         f"scale {instrument.scale_min}–{instrument.scale_max}, by audit date.{cutoff_text}"),
            scale_min=instrument.scale_min, scale_max=instrument.scale_max, cutoff=instrument.cutoff,
            x_ticks=ticks, x_title="audit date", described_by=f"audit-scores-{instrument.id}")
        out.append((unit, chart))
    return out


@bp.get("")
@login_required
def index(study_id: int):
    """The study's audits and their scores over time."""
    study = load_study_or_404(study_id)
    require("view_fidelity", study)
    audits = qa.list_audits(study)
    series = qa.audit_series(audits)
    chosen = qa.program_instrument(study)
    return render(
        "quality/index.html", study=study, nav=nav(study), current="quality.index",
        series=[(s, audit_charts(s)) for s in series], n_audits=len(audits),
        instrument=chosen.instrument if chosen else None,
        can_manage=can(current_user, "manage_quality_audits", study),
    )


# ----------------------------------------------------------------------------- create


@bp.get("/new")
@login_required
def new(study_id: int):
    """The form for a new audit: date, unit, note and every criterion, grouped by level."""
    study = load_study_or_404(study_id)
    require("manage_quality_audits", study)
    chosen = qa.program_instrument(study)
    if chosen is None:
        instrument = _shipped_instrument()
        ref = f"{qa.DEFAULT_PROGRAM_SCHEME} (stored with the first audit)"
    else:
        instrument, ref = chosen.instrument, chosen.version.ref
    return _form_page(study, instrument, audit_row=None, scheme_ref=ref,
                      form={"audit_date": "", "unit": "", "note": "", "values": {}})


def _shipped_instrument() -> Instrument:
    """The shipped program instrument, read from its file (for a form before it is stored)."""
    from ..io.schemes import load_scheme_file, shipped_scheme_files

    for path in shipped_scheme_files():
        if path.stem == qa.DEFAULT_PROGRAM_SCHEME:
            scheme = load_scheme_file(path)
            return next(i for i in scheme.instruments if i.target == "program")
    abort(404)


@bp.post("")
@login_required
def create(study_id: int):
    """Record a new audit; problems in the form are a 422 with the form and its messages."""
    study = load_study_or_404(study_id)
    require("manage_quality_audits", study)
    chosen = qa.program_instrument(study)
    instrument = chosen.instrument if chosen else _shipped_instrument()
    form = _posted_form(instrument)
    try:
        row = qa.create_audit(study, audit_date=form["audit_date"], unit=form["unit"], note=form["note"],
                              values=form["values"], actor=current_user)
    except qa.AuditInvalid as exc:
        db.session.rollback()
        return _form_page(study, instrument, audit_row=None, form=form, errors=exc.errors, status=422,
                          scheme_ref=chosen.version.ref if chosen else "")
    except ServiceError as exc:
        db.session.rollback()
        return _form_page(study, instrument, audit_row=None, form=form, errors={"form": str(exc)},
                          status=422)
    what = f"Audit of the {qa.unit_label(row.unit)} on {row.audit_date.isoformat()}"
    n_rated = sum(1 for r in row.ratings if r.value is not None)
    db.session.commit()
    flash(f"{what} saved ({n_rated} of {len(instrument.items)} criteria rated).", "info")
    return _back_to_list(study)


# ----------------------------------------------------------------------------- edit


@bp.get("/<int:audit_id>")
@login_required
def audit(study_id: int, audit_id: int):
    """One audit: its form for coordinators, its ratings read-only for analysts."""
    study = load_study_or_404(study_id)
    require("view_fidelity", study)
    row = _load_audit_or_404(study, audit_id)
    return _form_page(study, qa.instrument_of(row), audit_row=row, form=_form_of(row),
                      version=row.version, scheme_ref=row.scheme_version.ref)


def _differences(row: QualityAudit, form: Mapping[str, Any], instrument: Instrument) -> list[tuple[str, str, str]]:
    """(field, saved value, your value) where the saved audit and the posted form differ."""
    saved = _form_of(row)
    out = []
    for key, label in (("audit_date", "Date"), ("unit", "Unit"), ("note", "Note")):
        mine = " ".join(str(form[key]).split()) if key != "note" else str(form[key]).strip()
        if saved[key] != mine:
            out.append((label, saved[key] or "—", mine or "—"))
    for item in instrument.items:
        a, b = saved["values"].get(item.id, ""), (form["values"].get(item.id) or "").strip().lower()
        if a != b:
            out.append((f"{item.number}. {item.name}", a or "not rated", b or "not rated"))
    return out


@bp.post("/<int:audit_id>")
@login_required
def update(study_id: int, audit_id: int):
    """Save an edited audit; a stale version is a 409 that keeps the user's values."""
    study = load_study_or_404(study_id)
    require("manage_quality_audits", study)
    row = _load_audit_or_404(study, audit_id)
    instrument = qa.instrument_of(row)
    form = _posted_form(instrument)
    version = _version()
    try:
        if version is None:
            raise qa.AuditInvalid({"form": "the form is incomplete (no version): reload the page"})
        qa.update_audit(row, expected_version=version, audit_date=form["audit_date"], unit=form["unit"],
                        note=form["note"], values=form["values"], actor=current_user)
    except qa.AuditInvalid as exc:
        db.session.rollback()
        return _form_page(study, instrument, audit_row=row, form=form, errors=exc.errors, version=version,
                          scheme_ref=row.scheme_version.ref, status=422)
    except qa.StaleAudit:
        db.session.rollback()
        current = qa.get_audit(study, audit_id)
        if current is None:
            flash("This audit was deleted by someone else meanwhile; your changes were not saved.", "error")
            return _back_to_list(study)
        return _form_page(study, instrument, audit_row=current, form=form, version=current.version,
                          conflict=_differences(current, form, instrument),
                          scheme_ref=current.scheme_version.ref, status=409)
    what = f"Audit of the {qa.unit_label(row.unit)} on {row.audit_date.isoformat()}"
    db.session.commit()
    flash(f"{what} saved.", "info")
    return _back_to_list(study)


# ----------------------------------------------------------------------------- delete


@bp.get("/<int:audit_id>/delete")
@login_required
def confirm_delete(study_id: int, audit_id: int):
    """Ask before deleting an audit."""
    study = load_study_or_404(study_id)
    require("manage_quality_audits", study)
    row = _load_audit_or_404(study, audit_id)
    return render("quality/delete.html", study=study, nav=nav(study), current="quality.index", audit=row,
                  n_ratings=len(row.ratings))


@bp.post("/<int:audit_id>/delete")
@login_required
def delete(study_id: int, audit_id: int):
    """Delete an audit once confirmed (``confirm=yes`` from the confirmation page)."""
    study = load_study_or_404(study_id)
    require("manage_quality_audits", study)
    row = _load_audit_or_404(study, audit_id)
    if request.form.get("confirm") != "yes":
        return redirect(url_for("quality.confirm_delete", study_id=study.id, audit_id=row.id)), 303
    what = f"audit of the {qa.unit_label(row.unit)} on {row.audit_date.isoformat()}"
    try:
        qa.delete_audit(row, expected_version=_version() or 0, actor=current_user)
    except qa.StaleAudit:
        db.session.rollback()
        current = qa.get_audit(study, audit_id)
        if current is None:
            flash(f"The {what} was already deleted.", "info")
            return _back_to_list(study)
        return render("quality/delete.html", study=study, nav=nav(study), current="quality.index",
                      audit=current, n_ratings=len(current.ratings), stale=True), 409
    db.session.commit()
    flash(f"Deleted the {what}; the audit log keeps its ratings.", "info")
    return _back_to_list(study)
