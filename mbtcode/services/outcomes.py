"""Import patients' outcome measures (BSI, GAF, WAI…) so exports can merge them with fidelity.

``plan_outcomes_import`` parses a file and checks it against the study (patients, values
already stored) and collects every problem; ``apply_outcomes_import`` writes a clean plan.
The caller commits once, so a file is imported completely or not at all. User
documentation: ``docs/importing-work.md``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import PurePath
from typing import Any

from sqlalchemy import delete, func, insert, select

from ..extensions import db
from ..io.tabular_imports import OutcomeRow, parse_outcomes_csv
from ..io.transcripts import MAX_BYTES, Problem
from ..models import Outcome, Participant, Study, User
from . import audit
from .imports import SourceFile
from .work_imports import FileProblems, plural


@dataclass
class OutcomePlan:
    """A checked outcomes file: the rows to write, or every problem that prevents it."""

    study: Study
    filename: str
    sha256: str
    replace: bool
    #: Column values of the outcomes to insert.
    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    n_problems: int = 0
    #: Rows with an empty value: checked, not stored.
    n_empty: int = 0
    #: Every measure the file names (rows without a value included): what ``replace`` replaces.
    file_measures: list[str] = field(default_factory=list)
    #: With ``replace``: the study's stored outcomes of the file's measures, deleted first.
    n_replaced: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def measures(self) -> list[str]:
        return sorted({row["measure"] for row in self.rows})

    def summary(self) -> str:
        """'120 outcomes (BSI-GSI, GAF) for 40 patients; 12 existing outcomes replaced'."""
        measures = self.measures
        shown = ", ".join(measures[:5]) + (f" and {len(measures) - 5} more" if len(measures) > 5 else "")
        text = plural(len(self.rows), "outcome") + (f" ({shown})" if shown else "")
        text += f" for {plural(len({row['patient_id'] for row in self.rows}), 'patient')}"
        if self.replace:
            text += f"; {plural(self.n_replaced, 'existing outcome')} replaced"
        if self.n_empty:
            text += f"; {plural(self.n_empty, 'row')} without a value skipped"
        return text


class _Patients:
    """The study's participants by code: exact first, then case-insensitively if unambiguous."""

    def __init__(self, study: Study):
        self.by_code: dict[tuple[str, str], int] = {}
        folded: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
        for participant_id, kind, code in db.session.execute(
            select(Participant.id, Participant.kind, Participant.code).where(Participant.study_id == study.id)
        ):
            self.by_code[(kind, code)] = participant_id
            folded[(kind, code.casefold())].append((participant_id, code))
        self.folded = folded

    def find(self, kind: str, code: str) -> tuple[int, str] | None:
        """(participant id, code as stored), or None."""
        if (kind, code) in self.by_code:
            return self.by_code[(kind, code)], code
        candidates = self.folded.get((kind, code.casefold()), [])
        return candidates[0] if len(candidates) == 1 else None


def _when(row: OutcomeRow) -> str:
    parts = []
    if row.date is not None:
        parts.append(row.date.isoformat())
    if row.study_day is not None:
        parts.append(f"study day {row.study_day}")
    return " / ".join(parts)


def plan_outcomes_import(
    study: Study, source: SourceFile, *, replace: bool = False, max_bytes: int = MAX_BYTES
) -> OutcomePlan:
    """Parse and check an outcomes file against the study; nothing is written.

    Without ``replace`` a value the study already holds (same patient, measure, date and
    study day) is a problem; with it, the study's outcomes of the file's measures are
    deleted before the file's are written.
    """
    parsed = parse_outcomes_csv(source.data, source.name, max_bytes=max_bytes)
    problems = FileProblems(source.name)
    plan = OutcomePlan(study=study, filename=source.name, sha256=parsed.sha256, replace=replace)
    basename = PurePath(source.name.replace("\\", "/")).name
    if parsed.rows:
        patients = _Patients(study)
        stored_measures = set(db.session.scalars(
            select(Outcome.measure).where(Outcome.study_id == study.id).distinct()))
        spelling: dict[str, tuple[str, int | None]] = {
            m.casefold(): (m, None) for m in sorted(stored_measures)}
        resolved: list[tuple[OutcomeRow, int, str]] = []
        for row in parsed.rows:
            measure_ok = _measure_spelling_ok(row, spelling, problems)
            found = patients.find("patient", row.patient)
            if found is None:
                therapist = patients.find("therapist", row.patient)
                problems.once(
                    ("patient", row.patient), row.line,
                    f"'{row.patient}' is a therapist in study '{study.name}', not a patient" if therapist
                    else f"unknown patient '{row.patient}' in study '{study.name}'",
                    "patients come from the 'patient' column of the transcript manifest "
                    "(mbtcode import … --manifest); check the code")
                continue
            if measure_ok:
                resolved.append((row, *found))
        seen: dict[tuple, int] = {}
        keys = []
        for row, patient_id, code in resolved:
            key = (patient_id, row.measure, row.date, row.study_day)
            if key in seen:
                problems.add(row.line, f"{code} has a second {row.measure} value for {_when(row)} "
                             f"(first on line {seen[key]})", "keep one value per patient, measure and date")
                continue
            seen[key] = row.line
            keys.append((row, patient_id, code, key))
        measures = sorted({row.measure for row, *_ in keys})
        plan.file_measures = measures
        if replace:
            plan.n_replaced = _count_stored(study, measures)
        else:
            stored = _stored_keys(study, measures)
            for row, _patient_id, code, key in keys:
                if key in stored and not row.empty:
                    problems.add(row.line, f"{code} already has a {row.measure} value for {_when(row)} "
                                 f"in this study (imported from {stored[key]})",
                                 f"leave this row out, or pass --replace to replace the study's "
                                 f"{row.measure} values with this file's")
        for row, patient_id, _code, _key in keys:
            if row.empty:
                plan.n_empty += 1
                continue
            plan.rows.append({
                "study_id": study.id, "patient_id": patient_id, "measure": row.measure,
                "outcome_date": row.date, "study_day": row.study_day, "value": row.value,
                "source": f"{basename}:{row.line}"[-300:],
            })
    plan.problems, plan.n_problems = problems.finish(parsed.problems)
    if plan.problems:
        plan.rows = []
    return plan


def _measure_spelling_ok(row: OutcomeRow, spelling: dict[str, tuple[str, int | None]],
                         problems: FileProblems) -> bool:
    """One spelling per measure: 'gaf' beside 'GAF' would split one measure into two columns."""
    first, line = spelling.setdefault(row.measure.casefold(), (row.measure, row.line))
    if first == row.measure:
        return True
    where = f"on line {line}" if line is not None else "in this study already"
    problems.once(("measure", row.measure), row.line,
                  f"measure '{row.measure}' is written '{first}' {where}",
                  "write each measure the same way (case matters), so its values stay together")
    return False


def _count_stored(study: Study, measures: list[str]) -> int:
    if not measures:
        return 0
    return db.session.scalar(
        select(func.count(Outcome.id)).where(Outcome.study_id == study.id, Outcome.measure.in_(measures))
    ) or 0


def _stored_keys(study: Study, measures: list[str]) -> dict[tuple, str]:
    """(patient id, measure, date, study day) → source of the study's stored outcomes."""
    if not measures:
        return {}
    rows = db.session.execute(
        select(Outcome.patient_id, Outcome.measure, Outcome.outcome_date, Outcome.study_day, Outcome.source)
        .where(Outcome.study_id == study.id, Outcome.measure.in_(measures))
    )
    return {(p, m, d, day): source or "an earlier import" for p, m, d, day, source in rows}


def apply_outcomes_import(plan: OutcomePlan, *, actor: User | None) -> int:
    """Write a checked plan (deleting first with ``replace``); returns the number of outcomes written.

    The audit row (``outcomes.import``) keeps, with ``replace``, every deleted outcome in
    ``replaced_outcomes`` (see :func:`_delete_outcomes`), so that a replace can be undone.

    Flushes; the caller commits, so the deletion and the new values are one change.
    """
    if not plan.ok:
        raise ValueError("refusing to apply an import plan that has problems")
    study = plan.study
    measures = plan.file_measures
    removed: list[dict[str, Any]] = []
    if plan.replace and measures:
        removed = _delete_outcomes(study, measures)
    replaced = len(removed)
    if plan.rows:
        by = actor.id if actor else None
        db.session.execute(insert(Outcome), [{**row, "imported_by_id": by} for row in plan.rows])
    audit.record(
        "outcomes.import", actor=actor, entity="study", entity_id=study.id, study_id=study.id,
        detail={"file": PurePath(plan.filename.replace("\\", "/")).name, "sha256": plan.sha256,
                "outcomes": len(plan.rows), "measures": plan.measures,
                "patients": len({row["patient_id"] for row in plan.rows}),
                "replace": plan.replace, "replaced": replaced, "skipped_empty": plan.n_empty,
                **({"replaced_outcomes": removed} if plan.replace else {})},
    )
    db.session.flush()
    return len(plan.rows)


#: Outcomes deleted per statement (well below every database's limit on bound parameters).
_DELETE_CHUNK = 500


def _delete_outcomes(study: Study, measures: list[str]) -> list[dict[str, Any]]:
    """Delete the study's outcomes of ``measures``; return them as the audit keeps them.

    Each deleted outcome as ``{patient, measure, date, study_day, value, source}`` (patient by
    code, date ISO 8601), ordered by patient, measure, date, study day (missing last): enough to trace a
    replace and to import the old values again. Exactly the rows read are deleted (by id).
    """
    rows = db.session.execute(
        select(Outcome.id, Participant.code, Outcome.measure, Outcome.outcome_date,
               Outcome.study_day, Outcome.value, Outcome.source)
        .join(Participant, Participant.id == Outcome.patient_id)
        .where(Outcome.study_id == study.id, Outcome.measure.in_(measures))
    ).all()
    # sorted here, not by the database: SQLite and PostgreSQL order NULLs differently
    rows = sorted(rows, key=lambda r: (r.code, r.measure, r.outcome_date is None,
                                       r.outcome_date or date.min, r.study_day is None,
                                       r.study_day or 0, r.id))
    ids = [row.id for row in rows]
    for start in range(0, len(ids), _DELETE_CHUNK):
        db.session.execute(
            delete(Outcome).where(Outcome.id.in_(ids[start:start + _DELETE_CHUNK]))
            .execution_options(synchronize_session=False))
    return [{"patient": code, "measure": measure,
             "date": when.isoformat() if when is not None else None, "study_day": day,
             "value": value, "source": source or ""}
            for _id, code, measure, when, day, value, source in rows]
