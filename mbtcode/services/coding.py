"""Record a rater's utterance codes and notes, version-checked and audited."""

from __future__ import annotations

import unicodedata

from sqlalchemy import select

from ..extensions import db
from ..models import Assignment, Transcript, User, Utterance, UtteranceCode
from . import ServiceError, audit
from .assignments import ConflictError, LockedError, codable_roles
from .schemes import as_scheme

MAX_NOTE_LENGTH = 10_000


class InvalidInput(ServiceError):
    """A value the scheme or the field does not allow (HTTP 422)."""


def clean_text(text: str, *, limit: int, field: str) -> str:
    """Normalise free text: NFC, no control characters but newlines and tabs, length-checked."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs"))
    if len(text) > limit:
        raise InvalidInput(f"{field} is too long: at most {limit:,} characters")
    return text


def utterance_of(assignment: Assignment, utterance_id: int) -> Utterance | None:
    """The utterance if it belongs to the assignment's session, else None."""
    return db.session.scalar(
        select(Utterance)
        .join(Transcript, Transcript.id == Utterance.transcript_id)
        .where(Utterance.id == utterance_id, Transcript.session_id == assignment.session_id)
    )


def codes_by_utterance(assignment: Assignment) -> dict[int, UtteranceCode]:
    """The rater's rows for this assignment, keyed by utterance id."""
    rows = db.session.scalars(
        select(UtteranceCode).where(UtteranceCode.assignment_id == assignment.id)
    )
    return {row.utterance_id: row for row in rows}


def _editable(assignment: Assignment) -> None:
    if assignment.locked:
        raise LockedError(
            "this assignment is submitted and locked; ask a coordinator to reopen it"
            if assignment.status == "submitted" else "this assignment was withdrawn"
        )


def _row_for(assignment: Assignment, utterance: Utterance, expected_version: int) -> UtteranceCode:
    """The existing row at the expected version, or a new one if the client saw none."""
    row = db.session.scalar(
        select(UtteranceCode).where(
            UtteranceCode.assignment_id == assignment.id, UtteranceCode.utterance_id == utterance.id
        )
    )
    seen = expected_version or 0
    if row is None:
        if seen != 0:
            raise ConflictError("this utterance changed elsewhere", current=None)
        code_set = codable_roles(assignment.study).get(utterance.role)
        if code_set is None:
            raise InvalidInput(f"{utterance.role} utterances are not coded in this scheme")
        return UtteranceCode(assignment_id=assignment.id, utterance_id=utterance.id, code_set=code_set)
    if row.version != seen:
        raise ConflictError("this utterance was changed in another tab or window", current=row)
    return row


def _insert_or_update(row: UtteranceCode) -> None:
    if row.id is None:
        nested = db.session.begin_nested()
        db.session.add(row)
        try:
            nested.commit()
        except Exception as exc:  # IntegrityError: a parallel request inserted it first
            from sqlalchemy.exc import IntegrityError

            nested.rollback()
            if isinstance(exc, IntegrityError):
                raise ConflictError("this utterance was coded in another tab or window") from exc
            raise
    else:
        db.session.flush()


def record_code(
    assignment: Assignment, utterance: Utterance, code: str | None, *,
    expected_version: int, actor: User,
) -> UtteranceCode:
    """Set (or with None, clear) the code of an utterance; refuses stale versions."""
    _editable(assignment)
    row = _row_for(assignment, utterance, expected_version)
    if code is not None:
        code_set = as_scheme(assignment.study.scheme_version).code_set(row.code_set)
        valid = {c.id for c in code_set.codes}
        if code not in valid:
            raise InvalidInput(f"'{code}' is not a code of {code_set.title}")
    old = row.code
    if old == code and (row.id is not None or code is None):
        return row  # nothing changes (clearing a never-coded utterance included)
    row.code = code
    _insert_or_update(row)
    audit.record(
        "code.set" if code is not None else "code.clear", actor=actor, entity="utterance_code",
        entity_id=row.id, study_id=assignment.study_id,
        detail={"assignment_id": assignment.id, "position": utterance.position, "old": old, "new": code},
    )
    return row


def record_note(
    assignment: Assignment, utterance: Utterance, note: str, *, expected_version: int, actor: User
) -> UtteranceCode:
    """Set the rater's note on an utterance (same row and version as its code)."""
    _editable(assignment)
    note = clean_text(note, limit=MAX_NOTE_LENGTH, field="the note")
    row = _row_for(assignment, utterance, expected_version)
    old = row.note or ""
    if row.id is not None and old == note:
        return row
    row.note = note
    _insert_or_update(row)
    audit.record(
        "code.note", actor=actor, entity="utterance_code", entity_id=row.id,
        study_id=assignment.study_id,
        detail={"assignment_id": assignment.id, "position": utterance.position, "old": old, "new": note},
    )
    return row
