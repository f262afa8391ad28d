"""Double-coding sample, gold standards and the reliability report (coordinators, analysts).

Three pages share an in-page nav: the sample (draw sessions, staff them with second raters,
settings) and the gold standard (mark, unmark, agreement of each rater with gold) are for
coordinators (``manage_reliability``); the report and its JSON download for everyone who may
``view_reliability`` (coordinators, analysts). Raters never reach any of them.

Writes follow the study page: POST with CSRF, one service call, one commit, a flash message
saying what happened (or the service's refusal) and a 303 back to the page.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import Assignment, GoldStandard, SampledSession, Study, TherapySession, User
from ..services import ServiceError
from ..services import double_coding, gold as gold_service
from ..services.permissions import can
from ..services.reliability_report import rater_names, reliability_report
from ..services.schemes import as_scheme
from . import charts
from .access import load_study_or_404, require
from .rendering import render

bp = Blueprint("reliability", __name__, url_prefix="/studies/<int:study_id>/reliability")

#: Bootstrap replicates of the report: ``?boot=`` from 0 to this, default 1000.
MAX_BOOT = 10_000
DEFAULT_BOOT = 1000
#: Seeds are whole numbers below 2**63 (the service's range); the form suggests smaller ones.
MAX_SEED = 2**63 - 1

#: Names of the statistics as the page shows them.
STATISTIC_LABELS = {
    "percent_agreement": "Percent agreement",
    "krippendorff_alpha": "Krippendorff's α",
    "fleiss_kappa": "Fleiss' κ",
    "gwet_ac1": "Gwet's AC1",
    "cohen_kappa": "Cohen's κ",
    "weighted_kappa_linear": "Weighted κ (linear)",
    "weighted_kappa_quadratic": "Weighted κ (quadratic)",
    "icc1": "ICC(1)",
    "icc2": "ICC(2,1)",
    "icc3": "ICC(3,1)",
    "icc1k": "ICC(1,k)",
    "icc2k": "ICC(2,k)",
    "icc3k": "ICC(3,k)",
}

#: The settings form: field → (label, unit, help, input attributes).
SETTINGS_FIELDS = [
    ("sample_fraction", "Share of sessions to double-code", "share, 0–1",
     "0.2 double-codes 20% of the sessions that are not gold standards.",
     {"type": "number", "step": "0.01", "min": "0.01", "max": "1"}),
    ("raters_per_session", "Independent raters per sampled session", "raters",
     "2 to 10; the first rater counts.", {"type": "number", "step": "1", "min": "2", "max": "10"}),
    ("rating_threshold", "Rating difference that goes to adjudication", "scale points",
     "Item ratings that differ by more than this go to adjudication; 0 sends every "
     "difference.", {"type": "number", "step": "1", "min": "0", "max": "10"}),
    ("hide_rater_names", "Hide rater names during adjudication", "",
     "Adjudication pages say “Rater 1 / Rater 2” instead of names.", {"type": "checkbox"}),
    ("certify_min_kappa", "Certification: minimum Cohen's κ on every code set", "κ, −1 to 1",
     "Against the gold-standard coding, pooled over the rater's gold sessions.",
     {"type": "number", "step": "0.01", "min": "-1", "max": "1"}),
    ("certify_min_within_one", "Certification: minimum share of ratings within one point of gold",
     "share, 0–1", "0.8: at least 80% of the item ratings within one scale point of gold.",
     {"type": "number", "step": "0.01", "min": "0", "max": "1"}),
    ("certify_min_sessions", "Certification: gold sessions a rater must have submitted",
     "sessions", "1 to 100; below this a rater is “incomplete”.",
     {"type": "number", "step": "1", "min": "1", "max": "100"}),
]


# ----------------------------------------------------------------------------- helpers


def _back(endpoint: str, study: Study):
    return redirect(url_for(endpoint, study_id=study.id)), 303


def _whole_number(raw: str | None, name: str, *, maximum: int) -> int:
    """A form or query value as a whole number from 0 to ``maximum`` (ServiceError if not)."""
    text = (raw or "").strip()
    if not text:
        raise ServiceError(f"enter the {name}: a whole number from 0 to {maximum:,}")
    if not re.fullmatch(r"\d{1,20}", text) or int(text) > maximum:
        shown = text if len(text) <= 30 else text[:27] + "…"
        raise ServiceError(f"the {name} must be a whole number from 0 to {maximum:,} (got '{shown}')")
    return int(text)


def _fraction(raw: str | None) -> float | None:
    """The sample fraction of the draw form; empty means the study's setting."""
    text = (raw or "").strip()
    if not text:
        return None
    shown = text if len(text) <= 30 else text[:27] + "…"
    try:
        value = float(text)
    except ValueError:
        raise ServiceError(f"the fraction must be a number above 0 and at most 1, e.g. 0.2 "
                           f"(got '{shown}')") from None
    if not 0 < value <= 1:  # also refuses nan and inf
        raise ServiceError(f"the fraction must be above 0 and at most 1, e.g. 0.2 (got '{shown}')")
    return value


def _nav(study: Study) -> list[tuple[str, str]]:
    """(endpoint, title) of the reliability pages the current user may open."""
    links = []
    if can(current_user, "manage_reliability", study):
        links += [("reliability.sample", "Double-coding sample"),
                  ("reliability.gold", "Gold standard & certification")]
    if can(current_user, "adjudicate", study):
        links.append(("adjudication.queue", "Adjudication"))
    if can(current_user, "view_reliability", study):
        links.append(("reliability.report", "Reliability report"))
    return links


def _code_set_titles(study: Study) -> dict[str, str]:
    return {cs.id: cs.title for cs in as_scheme(study.scheme_version).code_sets}


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "STATISTIC_LABELS": STATISTIC_LABELS,
        "number": charts.number,
        "percent": _percent,
        "signed": _signed,
        "utc": _utc,
    }


def _percent(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def _signed(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def _utc(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# ----------------------------------------------------------------------------- sample


@bp.get("/sample")
@login_required
def sample(study_id: int):
    """The double-coding sample against its target, with the forms to grow and staff it."""
    study = load_study_or_404(study_id)
    require("manage_reliability", study)
    progress = double_coding.sample_progress(study)
    return render(
        "reliability/sample.html", "reliability/_sample_progress.html",
        study=study, nav=_nav(study), current="reliability.sample",
        progress=progress,
        settings=double_coding.settings_for(study),
        settings_fields=SETTINGS_FIELDS,
        raters=double_coding.study_raters(study),
        stratifiers=double_coding.STRATIFIERS,
        seed_suggestion=secrets.randbelow(100_000),
        assign_seed_suggestion=secrets.randbelow(100_000),
    )


@bp.post("/sample/draw")
@login_required
def draw(study_id: int):
    """Add sessions to the sample until it holds the fraction (seeded, optionally stratified)."""
    study = load_study_or_404(study_id)
    require("manage_reliability", study)
    # Cut unknown values short: the service names a bad one in its message, and flash
    # messages travel in the session cookie.
    stratify = tuple(v[:40] for v in request.form.getlist("stratify")[:5])
    try:
        seed = _whole_number(request.form.get("seed"), "seed", maximum=MAX_SEED)
        fraction = _fraction(request.form.get("fraction"))
        sample_row = double_coding.draw_sample(study, actor=current_user, seed=seed,
                                               fraction=fraction, stratify=stratify)
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Nothing was drawn: {exc}.", "error")
        return _back("reliability.sample", study)
    drawn = db.session.scalar(
        select(func.count()).select_from(SampledSession).where(SampledSession.sample_id == sample_row.id)
    ) or 0
    progress = double_coding.sample_progress(study)
    db.session.commit()
    how = f"seed {seed}, {sample_row.fraction:.0%} of {progress.eligible} eligible session(s)"
    if stratify:
        how += ", stratified by " + " and ".join(dict.fromkeys(stratify))
    message = f"Drew {drawn} session(s) ({how}); the sample now holds {progress.sampled}."
    flash(message + " Next: assign second raters.", "info")
    return _back("reliability.sample", study)


@bp.post("/sample/assign")
@login_required
def assign_second(study_id: int):
    """Give every sampled session enough independent raters from the chosen ones."""
    study = load_study_or_404(study_id)
    require("manage_reliability", study)
    chosen = request.form.getlist("rater_id")
    raters = {str(r.id): r for r in double_coding.study_raters(study)}
    try:
        if any(value not in raters for value in chosen):
            raise ServiceError("choose raters of this study")
        seed = _whole_number(request.form.get("seed") or "0", "seed", maximum=MAX_SEED)
        plan = double_coding.assign_second_raters(
            study, [raters[value] for value in chosen], actor=current_user, seed=seed)
    except ServiceError as exc:
        db.session.rollback()
        flash(f"No rater was assigned: {exc}.", "error")
        return _back("reliability.sample", study)
    db.session.commit()
    sessions = len({a.session_id for a in plan.created})
    if plan.created:
        message = (f"Created {len(plan.created)} assignment(s) for {sessions} sampled session(s) "
                   f"(seed {seed}).")
    elif plan.unstaffed:
        message = "No new assignment."
    else:
        message = "Every sampled session already has enough raters; nothing was assigned."
    if plan.unstaffed:
        labels = ", ".join(s.label for s in plan.unstaffed[:10])
        more = f" and {len(plan.unstaffed) - 10} more" if len(plan.unstaffed) > 10 else ""
        message += (f" {len(plan.unstaffed)} session(s) could not be staffed: not enough raters "
                    f"who did not code them ({labels}{more}). Choose more raters or add raters "
                    "to the study.")
    flash(message, "warning" if plan.unstaffed else "info")
    return _back("reliability.sample", study)


@bp.post("/settings")
@login_required
def settings(study_id: int):
    """Save the double-coding, adjudication and certification settings."""
    study = load_study_or_404(study_id)
    require("manage_reliability", study)
    changes = {}
    for name, *_rest, attrs in SETTINGS_FIELDS:
        if attrs["type"] == "checkbox":
            # The form sends a hidden "0" before the box, so an unchecked box is a change
            # and a request without the field leaves the setting alone.
            if name in request.form:
                changes[name] = "1" if "1" in request.form.getlist(name) else "0"
        elif name in request.form:
            changes[name] = request.form[name].strip()
    try:
        for name, value in changes.items():
            if len(value) > 30:
                raise ServiceError(f"{name.replace('_', ' ')}: enter a number "
                                   f"(got {len(value):,} characters)")
        double_coding.update_settings(study, changes, actor=current_user)
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Settings not saved: {exc}.", "error")
        return _back("reliability.sample", study)
    db.session.commit()
    flash("Settings saved.", "info")
    return _back("reliability.sample", study)


# ----------------------------------------------------------------------------- gold


def _gold_candidates(study: Study) -> list[Assignment]:
    """Submitted assignments of sessions that are neither gold nor in the sample."""
    excluded = double_coding.gold_session_ids(study) | double_coding.sampled_session_ids(study)
    query = (
        select(Assignment)
        .join(TherapySession, TherapySession.id == Assignment.session_id)
        .join(User, User.id == Assignment.rater_id)
        .where(Assignment.study_id == study.id, Assignment.status == "submitted")
        .options(joinedload(Assignment.session), joinedload(Assignment.rater))
        .order_by(TherapySession.label, User.name)
    )
    if excluded:
        query = query.where(Assignment.session_id.not_in(excluded))
    return list(db.session.scalars(query))


@bp.get("/gold")
@login_required
def gold(study_id: int):
    """Gold-standard sessions and how each rater agrees with them (certification)."""
    study = load_study_or_404(study_id)
    require("manage_reliability", study)
    golds = gold_service.gold_standards(study)
    experts = {
        a.id: a for a in db.session.scalars(
            select(Assignment).where(Assignment.id.in_([g.assignment_id for g in golds]))
            .options(joinedload(Assignment.rater))
        )
    } if golds else {}
    return render(
        "reliability/gold.html", "reliability/_gold_agreement.html",
        study=study, nav=_nav(study), current="reliability.gold",
        golds=golds, experts=experts,
        candidates=_gold_candidates(study),
        agreement=gold_service.agreement_with_gold(study),
        code_set_titles=_code_set_titles(study),
        settings=double_coding.settings_for(study),
    )


@bp.post("/gold")
@login_required
def mark_gold(study_id: int):
    """Make a submitted coding its session's gold standard."""
    study = load_study_or_404(study_id)
    require("manage_reliability", study)
    raw = request.form.get("assignment_id", "")
    assignment = None
    if raw.isdigit() and len(raw) < 10:
        assignment = db.session.scalar(
            select(Assignment).where(Assignment.id == int(raw), Assignment.study_id == study.id))
    try:
        if assignment is None:
            raise ServiceError("choose a submitted coding of this study")
        gold_service.mark_gold(assignment.session, assignment, actor=current_user)
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Not marked: {exc}.", "error")
        return _back("reliability.gold", study)
    label, expert = assignment.session.label, assignment.rater.name
    db.session.commit()
    flash(f"{label} is now a gold-standard session (coding by {expert}). It is left out of "
          "the sample, the report and adjudication.", "info")
    return _back("reliability.gold", study)


@bp.post("/gold/unmark")
@login_required
def unmark_gold(study_id: int):
    """Stop using a session as gold standard (a reason is required and kept in the audit log)."""
    study = load_study_or_404(study_id)
    require("manage_reliability", study)
    raw = request.form.get("gold_id", "")
    gold_row = None
    if raw.isdigit() and len(raw) < 10:
        gold_row = db.session.scalar(
            select(GoldStandard).where(GoldStandard.id == int(raw), GoldStandard.study_id == study.id))
    try:
        if gold_row is None:
            raise ServiceError("that session is not a gold standard (any more); reload the page")
        label = gold_row.session.label
        gold_service.unmark_gold(gold_row, actor=current_user, reason=request.form.get("reason", ""))
    except ServiceError as exc:
        db.session.rollback()
        flash(f"Not unmarked: {exc}.", "error")
        return _back("reliability.gold", study)
    db.session.commit()
    flash(f"{label} is no longer a gold-standard session.", "info")
    return _back("reliability.gold", study)


# ----------------------------------------------------------------------------- report


def _boot() -> int:
    """``?boot=`` (0–10,000 bootstrap replicates, default 1,000); anything else is a 400."""
    raw = request.args.get("boot")
    if raw is None or raw.strip() == "":
        return DEFAULT_BOOT
    try:
        return _whole_number(raw, "number of bootstrap replicates (boot)", maximum=MAX_BOOT)
    except ServiceError as exc:
        abort(400, description=f"{str(exc)[0].upper()}{str(exc)[1:]}. Leave it out for the "
                               f"default ({DEFAULT_BOOT:,}).")


def _stat(statistics: dict, name: str) -> dict | None:
    return statistics.get(name) if statistics else None


def used_codes(code_set: dict) -> list[dict]:
    """The codes somebody used (prevalence above 0): the others have nothing to agree on."""
    return [c for c in code_set["codes"] if c["prevalence"]]


def _code_chart(codes: list[dict]) -> charts.ForestPlot | None:
    """Per code: utterance-level alpha beside the session-tally ICC(1)."""
    if not codes:
        return None
    labels = [f"{c['label']} ({c['code']})" for c in codes]
    alpha = [_stat(c["utterance"]["statistics"], "krippendorff_alpha") for c in codes]
    tally = [_stat(c["session_tally"].get("statistics"), "icc1") for c in codes]
    return charts.forest_plot(labels, [
        charts.PanelSpec("Utterance level: Krippendorff's α", alpha, charts.ALPHA_THRESHOLDS, symbol="α"),
        charts.PanelSpec("Session tally: ICC(1)", tally, charts.ICC_THRESHOLDS, symbol="ICC(1)"),
    ])


def _item_chart(entries: list[dict]) -> charts.ForestPlot | None:
    if not entries:
        return None
    # The dimension must survive shortening: two rows of one item differ only there.
    labels = [f"{charts.shorten(e['label'], 23)} · {e['dimension']}" for e in entries]
    titles = [f"{e['label']} · {e['dimension']}" for e in entries]
    values = [_stat(e["statistics"], "icc1") for e in entries]
    return charts.forest_plot(labels, [
        charts.PanelSpec("ICC(1)", values, charts.ICC_THRESHOLDS, symbol="ICC(1)")], titles=titles)


def _count(value: float) -> str:
    """A coincidence: whole numbers as such, fractions (three or more raters) to one decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def coincidence_view(code_set: dict) -> dict[str, Any]:
    """The coincidence matrix for the page: only codes somebody used, cells formatted.

    ``{"labels": [(code, label)], "rows": [(code, label, [(count, is_diagonal)])],
    "unused": [code]}``.
    """
    labels = {c["code"]: c["label"] for c in code_set["codes"]}
    codes = code_set["confusion"]["labels"]
    matrix = code_set["confusion"]["matrix"]
    used = [i for i, row in enumerate(matrix) if sum(row) > 0]
    return {
        "labels": [(codes[i], labels.get(codes[i], codes[i])) for i in used],
        "rows": [
            (codes[i], labels.get(codes[i], codes[i]),
             [(_count(matrix[i][j]), i == j) for j in used])
            for i in used
        ],
        "unused": [codes[i] for i in range(len(codes)) if i not in used],
    }


def _report_context(study: Study, n_boot: int) -> dict[str, Any]:
    report = reliability_report(study, n_boot=n_boot)
    ratings = report["ratings"]
    return {
        "report": report,
        "names": rater_names(study, report),
        "n_boot": n_boot,
        "used_codes": {cs["id"]: used_codes(cs) for cs in report["code_sets"]},
        "code_charts": {cs["id"]: _code_chart(used_codes(cs)) for cs in report["code_sets"]},
        "coincidences": {cs["id"]: coincidence_view(cs) for cs in report["code_sets"]},
        "item_chart": _item_chart(ratings["items"]),
        "rating_items": [e for e in ratings["items"] if e.get("kind") != "overall"],
        "rating_overall": [e for e in ratings["items"] if e.get("kind") == "overall"],
        "can_manage": can(current_user, "manage_reliability", study),
    }


@bp.get("")
@login_required
def report(study_id: int):
    """The study's inter-rater reliability: codes, session tallies and item ratings."""
    study = load_study_or_404(study_id)
    require("view_reliability", study)
    n_boot = _boot()
    return render("reliability/report.html", "reliability/_report_body.html",
                  study=study, nav=_nav(study), current="reliability.report",
                  **_report_context(study, n_boot))


@bp.get("/report.json")
@login_required
def report_json(study_id: int):
    """The whole report as JSON (rater pseudonyms R<id>, no names), as a download."""
    study = load_study_or_404(study_id)
    require("view_reliability", study)
    data = reliability_report(study, n_boot=_boot())
    slug = re.sub(r"[^A-Za-z0-9]+", "-", study.name).strip("-").lower()[:60] or f"study-{study.id}"
    filename = f"reliability-{slug}-{datetime.now(UTC):%Y%m%d}.json"
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False) + "\n",
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
