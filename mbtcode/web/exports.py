"""The export page: a study's tables for outcome analyses, downloaded as a zip.

GET shows the form (what one row is, the file format, and, for users with
``export_identifying`` only, utterance text and notes); POST (CSRF) builds the table with
``services.exports``, writes it with ``io.export_formats`` and sends a zip holding the data
file, its codebooks (Markdown and JSON) and the manifest. Zip members carry fixed times, so
two downloads of unchanged data differ only in the manifest's ``generated_at``. Every
download is audited (``export.table`` and ``export.file``). Who may: ``export``
(coordinators, analysts, site admins); others get a 403, non-members a 404.
"""

from __future__ import annotations


from flask import Blueprint, Response, abort, request
from flask_login import current_user, login_required

from ..database import reading
from ..extensions import db
from ..io import export_formats as ef
from ..models import Study
from ..services import ServiceError, exports
from ..services.permissions import can
from .access import load_study_or_404, require
from .rendering import render

bp = Blueprint("exports", __name__, url_prefix="/studies/<int:study_id>/export")

#: (level, title, what one row is) in the form's order.
LEVEL_CHOICES = [
    ("session", "Sessions",
     "One row per session: merge keys (site, team, therapist, patient, date, study day, phase, "
     "modality, session number), which rating counts, MBT-ACS means, adequacy, overall "
     "ratings and every item."),
    ("therapist", "Therapists",
     "One row per therapist: scored sessions, mean with 95% CI per dimension, trend across "
     "sessions, drift flags."),
    ("utterance", "Utterances",
     "One row per utterance and coding (each rater as R<number>, and the consensus): position, "
     "speaker role, code, spectrum level, whether it counts."),
    ("rating", "Single ratings",
     "One row per rating of an item or overall rating by a rater or the consensus."),
    ("outcomes", "Outcomes with fidelity",
     "One row per imported outcome value, merged with the patient's nearest scored session "
     "(its keys and scores, days between them): a long table for mixed models."),
]
FORMAT_CHOICES = [
    ("csv", "CSV (UTF-8, for R, pandas, Excel)"),
    ("xlsx", "Excel workbook (.xlsx)"),
    ("parquet", "Parquet (R arrow, pandas, Python)"),
    ("sav", "SPSS (.sav, with variable and value labels)"),
    ("dta", "Stata (.dta, with variable and value labels)"),
]


def _page(study: Study, *, errors: list[str] | None = None, chosen: dict | None = None,
          status: int = 200):
    chosen = chosen or {}
    return render(
        "exports/export.html",
        study=study,
        levels=LEVEL_CHOICES, formats=FORMAT_CHOICES,
        may_identify=can(current_user, "export_identifying", study),
        errors=errors or [],
        level=chosen.get("level", "session"), fmt=chosen.get("format", "csv"),
        include_text=chosen.get("include_text", False),
        include_notes=chosen.get("include_notes", False),
    ), status


@bp.get("", endpoint="form")
@login_required
def form(study_id: int):
    """Choose a table and a format."""
    study = load_study_or_404(study_id)
    require("export", study)
    return _page(study)


@bp.post("", endpoint="download")
@login_required
def download(study_id: int):
    """Build the chosen table and send it as a zip (data file, codebooks, manifest)."""
    study = load_study_or_404(study_id)
    require("export", study)
    level = request.form.get("level", "")
    fmt = request.form.get("format", "")
    include_text = request.form.get("include_text") == "1"
    include_notes = request.form.get("include_notes") == "1"
    chosen = {"level": level, "format": fmt, "include_text": include_text,
              "include_notes": include_notes}
    errors = []
    if level not in exports.LEVELS:
        errors.append("Choose what one row of the table is.")
    if fmt not in exports.FORMATS:
        errors.append("Choose a file format.")
    if errors:
        return _page(study, errors=errors, chosen=chosen, status=422)
    try:
        with reading():  # raters keep saving while a large table is built
            table = exports.export_table(study, level, actor=current_user, include_text=include_text,
                                         include_notes=include_notes)
            data = ef.write(table, fmt)
    except exports.ExportDenied as exc:
        db.session.rollback()
        abort(403, description=f"Not exported: {exc}.")
    except (ServiceError, ef.ExportFormatError) as exc:
        db.session.rollback()
        return _page(study, errors=[f"Not exported: {exc}."], chosen=chosen, status=422)
    stem = exports.file_stem(table)
    data_name = f"{stem}.{ef.EXTENSIONS[fmt]}"
    files = ef.bundle(table, fmt, data_name, data=data)
    exports.record_file(table, fmt, data, actor=current_user, name=data_name)
    db.session.commit()
    return Response(
        ef.zip_files(files),
        mimetype="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{stem}-{fmt}.zip"',
            "Cache-Control": "no-store",
        },
    )
