"""Import codes and ratings done outside mbtcode (spreadsheets) as submitted assignments.

``plan_codes_import`` / ``plan_ratings_import`` parse a file and check every row against the
study (sessions, raters, the scheme, existing assignments) and collect every problem;
``apply_work_import`` writes a clean plan. The caller commits once, so a file is imported
completely or not at all. User documentation: ``docs/importing-work.md``.

Imported work counts as submitted: each (session, rater) becomes a submitted assignment, or
is added to a submitted assignment that has no work of that kind yet (codes first, ratings
later). Work a rater is doing in the app, or has already done, is never overwritten.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from sqlalchemy import insert, select

from ..extensions import db
from ..io.schemes import Code, CodeSet, Instrument, Item, OverallRating, Scheme
from ..io.tabular_imports import (
    CodeRow,
    ParsedTable,
    RatingRow,
    normalise_key,
    parse_codes_csv,
    parse_ratings_csv,
)
from ..io.transcripts import MAX_BYTES, MAX_PROBLEMS, Problem
from ..models import (
    Assignment,
    Consensus,
    ItemRating,
    Study,
    StudyMember,
    TherapySession,
    Transcript,
    User,
    Utterance,
    UtteranceCode,
)
from ..models._types import utcnow
from . import audit
from .assignments import required_ratings
from .imports import SourceFile
from .schemes import as_scheme

_CHUNK = 500  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits


# --------------------------------------------------------------------------- plans


@dataclass
class PlannedAssignment:
    """The work of one rater on one session found in the file."""

    session_id: int
    session_label: str
    rater: User
    first_line: int
    #: The submitted assignment the rows are added to; None: a new one is created.
    existing: Assignment | None = None
    #: Column values of the rows to insert (without ``assignment_id``).
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: Required items / codable utterances the file leaves without a value.
    n_missing: int = 0


@dataclass
class WorkImportPlan:
    """A checked file: what would be written, or every problem that prevents it."""

    study: Study
    kind: str  # "codes" or "ratings"
    filename: str
    sha256: str
    assignments: list[PlannedAssignment] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: Number of problems found (``problems`` lists at most MAX_PROBLEMS of them).
    n_problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def writing(self) -> list[PlannedAssignment]:
        return [p for p in self.assignments if p.rows]

    @property
    def n_rows(self) -> int:
        return sum(len(p.rows) for p in self.assignments)

    def summary(self) -> str:
        """'1,234 ratings for 56 sessions by 3 raters (12 items not rated)'."""
        writing = self.writing
        n_sessions = len({p.session_id for p in writing})
        n_raters = len({p.rater.id for p in writing})
        n_missing = sum(p.n_missing for p in writing)
        thing, missing = (("rating", "item"), "not rated") if self.kind == "ratings" else (
            ("code", "utterance"), "not coded")
        return (f"{plural(self.n_rows, thing[0])} for {plural(n_sessions, 'session')} by "
                f"{plural(n_raters, 'rater')} ({plural(n_missing, thing[1])} {missing})")


def plural(n: int, noun: str) -> str:
    """'1 rater', '1,234 raters'."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------- problems


class FileProblems:
    """Problems of one file; a problem about a name (unknown session…) is reported once.

    A wrong rater e-mail in a 5,000-row file is one mistake, not 5,000: it is reported on
    its first line, with the other lines it occurs on.
    """

    def __init__(self, filename: str):
        self.filename = filename
        self.lines: list[Problem] = []
        self.grouped: dict[Any, tuple[Problem, list[int]]] = {}

    def add(self, line: int | None, message: str, hint: str | None = None) -> None:
        self.lines.append(Problem(self.filename, line, message, hint))

    def once(self, key: Any, line: int, message: str, hint: str | None = None) -> None:
        if key in self.grouped:
            self.grouped[key][1].append(line)
        else:
            self.grouped[key] = (Problem(self.filename, line, message, hint), [])

    def __bool__(self) -> bool:
        return bool(self.lines or self.grouped)

    def finish(self, parsed: Iterable[Problem]) -> tuple[list[Problem], int]:
        """Every problem by line, at most MAX_PROBLEMS of them; and how many there were."""
        found = list(parsed) + self.lines
        for problem, others in self.grouped.values():
            if others:
                problem = Problem(problem.file, problem.line,
                                  f"{problem.message} (also on {_lines(others)})", problem.hint)
            found.append(problem)
        found.sort(key=lambda p: (p.line is None, p.line or 0))
        total = len(found)
        if total > MAX_PROBLEMS:
            found = found[:MAX_PROBLEMS] + [Problem(
                self.filename, None, f"… and {total - MAX_PROBLEMS} more problem(s) in this file not shown")]
        return found, total


def _lines(lines: list[int]) -> str:
    if len(lines) == 1:
        return f"line {lines[0]}"
    shown = ", ".join(str(n) for n in lines[:5])
    more = f" and {len(lines) - 5:,} more" if len(lines) > 5 else ""
    return f"lines {shown}{more}"


# --------------------------------------------------------------------------- shared look-ups


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


class _Sessions:
    """The study's sessions by label: exact first, then case-insensitively if unambiguous."""

    def __init__(self, study: Study):
        self.label: dict[int, str] = {}
        self.exact: dict[str, int] = {}
        folded: dict[str, list[int]] = defaultdict(list)
        for session_id, label in db.session.execute(
            select(TherapySession.id, TherapySession.label).where(TherapySession.study_id == study.id)
        ):
            self.label[session_id] = label
            self.exact[label] = session_id
            folded[_fold(label)].append(session_id)
        self.folded = folded

    def find(self, label: str) -> int | None:
        found = self.exact.get(label)
        if found is None:
            candidates = self.folded.get(_fold(label), [])
            found = candidates[0] if len(candidates) == 1 else None
        return found


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _raters(study: Study, emails: set[str]) -> tuple[dict[str, User], dict[int, str]]:
    """Accounts by e-mail, and the study role of each of them that is a member."""
    users: dict[str, User] = {}
    for chunk in _chunks(sorted(emails)):
        users.update((u.email, u) for u in db.session.scalars(select(User).where(User.email.in_(chunk))))
    roles: dict[int, str] = {}
    ids = sorted(u.id for u in users.values())
    for chunk in _chunks(ids):
        roles.update((user_id, role) for user_id, role in db.session.execute(
            select(StudyMember.user_id, StudyMember.role)
            .where(StudyMember.study_id == study.id, StudyMember.user_id.in_(chunk))
        ))
    return users, roles


def _resolve_row(
    row: CodeRow | RatingRow, study: Study, sessions: _Sessions, users: dict[str, User],
    roles: dict[int, str], problems: FileProblems,
) -> tuple[int | None, User | None]:
    """The row's session id and rater, reporting an unknown session or a rater who may not rate."""
    session_id = sessions.find(row.session)
    if session_id is None:
        problems.once(("session", row.session), row.line,
                      f"unknown session '{row.session}' in study '{study.name}'",
                      "use the session label as 'mbtcode session list --study "
                      f"\"{study.name}\"' shows it")
    rater = users.get(row.rater)
    command = f"mbtcode study member \"{study.name}\" {row.rater} --role rater"
    if rater is None:
        problems.once(("rater", row.rater), row.line, f"no account with the e-mail '{row.rater}'",
                      f"create it with 'mbtcode user add {row.rater} --name \"NAME\" --role rater', "
                      f"then add it to the study with '{command}'")
    elif roles.get(rater.id) != "rater":
        role = roles.get(rater.id)
        article = "an" if role and role[0] in "aeiou" else "a"
        what = f"is {article} {role} in study '{study.name}', not a rater" if role else \
            f"is not a member of study '{study.name}'"
        problems.once(("rater", row.rater), row.line, f"'{row.rater}' {what}",
                      f"make them a rater with '{command}'")
        rater = None
    return session_id, rater


def _check_assignments(
    study: Study, kind: str, planned: dict[tuple[int, int], PlannedAssignment], problems: FileProblems,
) -> None:
    """Refuse adjudicated sessions and (session, rater) pairs whose work exists or is in progress."""
    session_ids = sorted({session_id for session_id, _ in planned})
    adjudicated: set[int] = set()
    existing: dict[tuple[int, int], Assignment] = {}
    for chunk in _chunks(session_ids):
        adjudicated.update(db.session.scalars(
            select(Consensus.session_id).where(Consensus.session_id.in_(chunk))))
        for assignment in db.session.scalars(
            select(Assignment).where(Assignment.study_id == study.id, Assignment.session_id.in_(chunk))
        ):
            existing[(assignment.session_id, assignment.rater_id)] = assignment
    row_model = UtteranceCode if kind == "codes" else ItemRating
    with_rows: set[int] = set()
    ids = sorted(a.id for key, a in existing.items() if key in planned)
    for chunk in _chunks(ids):
        with_rows.update(db.session.scalars(
            select(row_model.assignment_id).where(row_model.assignment_id.in_(chunk)).distinct()))
    work = "codes" if kind == "codes" else "ratings"
    for key, plan in planned.items():
        label, email = plan.session_label, plan.rater.email
        if plan.session_id in adjudicated:
            # Imported work would change the codings the consensus was built from.
            problems.once(("adjudicated", plan.session_id), plan.first_line,
                          f"session '{label}' is already adjudicated (it has a consensus)",
                          "leave its rows out, or discard the consensus in the app first")
            continue
        assignment = existing.get(key)
        if assignment is None:
            continue
        if assignment.status == "assigned":
            problems.add(plan.first_line,
                         f"{email} has an open assignment for session '{label}': they are working "
                         "on it in the app",
                         "leave this rater's rows for this session out, or let them finish and submit "
                         "in the app")
        elif assignment.status == "withdrawn":
            problems.add(plan.first_line,
                         f"{email}'s assignment for session '{label}' was withdrawn",
                         "leave this rater's rows for this session out (withdrawn work is kept as it is)")
        elif assignment.id in with_rows:
            problems.add(plan.first_line,
                         f"{email} already has {work} for session '{label}' (submitted)",
                         f"leave this rater's rows for this session out: imported {work} are never "
                         "mixed with existing ones")
        else:
            plan.existing = assignment


def _plan(
    study: Study, kind: str, parsed: ParsedTable, problems: FileProblems,
    planned: dict[tuple[int, int], PlannedAssignment],
) -> WorkImportPlan:
    # Conflicts are checked even when rows have problems: the user sees everything at once.
    _check_assignments(study, kind, planned, problems)
    found, total = problems.finish(parsed.problems)
    return WorkImportPlan(study=study, kind=kind, filename=parsed.filename, sha256=parsed.sha256,
                          assignments=list(planned.values()), problems=found, n_problems=total)


def _pair(
    planned: dict[tuple[int, int], PlannedAssignment], sessions: _Sessions, session_id: int,
    rater: User, line: int,
) -> PlannedAssignment:
    key = (session_id, rater.id)
    if key not in planned:
        planned[key] = PlannedAssignment(session_id, sessions.label[session_id], rater, line)
    return planned[key]


# --------------------------------------------------------------------------- ratings


def _session_instruments(scheme: Scheme) -> dict[str, Instrument]:
    return {i.id.casefold(): i for i in scheme.instruments if i.target == "session"}


def _find_item(instrument: Instrument, text: str) -> Item | None:
    """An item by id (any case), else by its number."""
    folded = text.casefold()
    found = next((i for i in instrument.items if i.id.casefold() == folded), None)
    if found is None and text.isascii() and text.isdigit():
        found = next((i for i in instrument.items if i.number == int(text)), None)
    return found


def _overall_by_dimension(instrument: Instrument) -> dict[str, OverallRating]:
    """'overall_adherence' (the id, or 'overall_' + the dimension) → the overall rating."""
    found: dict[str, OverallRating] = {}
    for overall in instrument.overall:
        found.setdefault(normalise_key(overall.id), overall)
    for overall in instrument.overall:
        found.setdefault(normalise_key("overall_" + overall.dimension), overall)
    return found


def _rating_target(row: RatingRow, instruments: dict[str, Instrument], problems: FileProblems
                   ) -> tuple[Instrument, str, str] | None:
    """(instrument, stored item id, stored dimension) of a row, or None after reporting why not."""
    instrument = instruments.get(row.instrument.casefold())
    if instrument is None:
        known = ", ".join(i.id for i in instruments.values())
        problems.once(("instrument", row.instrument.casefold()), row.line,
                      f"unknown instrument '{row.instrument}'",
                      f"instruments rated per session in this study: {known}" if known
                      else "this study's scheme has no instrument rated per session")
        return None
    dimensions = {normalise_key(d.id): d.id for d in instrument.dimensions}
    overall = _overall_by_dimension(instrument)
    if row.dimension in dimensions:
        dimension = dimensions[row.dimension]
        if not row.item:
            problems.add(row.line, "the 'item' cell is empty",
                         f"name the {instrument.id} item by its id or number, e.g. {instrument.items[0].id}")
            return None
        item = _find_item(instrument, row.item)
        if item is None:
            first, last = instrument.items[0].number, instrument.items[-1].number
            problems.add(row.line, f"'{row.item}' is not an item of {instrument.id}",
                         f"items are numbered {first}–{last}")
            return None
        if dimension not in item.rated_for:
            problems.add(row.line, f"item {item.id} ({item.name}) is not rated for {dimension}",
                         f"it is rated for {', '.join(item.rated_for)} only; leave this row out")
            return None
        return instrument, item.id, dimension
    if row.dimension in overall:
        rating = overall[row.dimension]
        if row.item and row.item.casefold() != rating.id.casefold():
            problems.add(row.line, f"for dimension {row.dimension} the item must be empty or "
                         f"'{rating.id}', not '{row.item}'",
                         "the overall ratings are entered separately from the items")
            return None
        return instrument, rating.id, rating.dimension
    allowed = ", ".join([*dimensions.values(), *dict.fromkeys(normalise_key("overall_" + o.dimension)
                                                                for o in instrument.overall)])
    problems.add(row.line, f"unknown dimension '{row.dimension}' for {instrument.id}",
                 f"use one of: {allowed}")
    return None


def _rating_value_ok(row: RatingRow, instrument: Instrument, problems: FileProblems) -> bool:
    if row.not_applicable and not instrument.allow_na:
        problems.add(row.line, f"{instrument.id} does not allow NA (not applicable)",
                     f"give a value from {instrument.scale_min} to {instrument.scale_max}, or leave the "
                     "cell empty if it was not rated")
        return False
    if row.value is not None and not instrument.scale_min <= row.value <= instrument.scale_max:
        problems.add(row.line, f"value {row.value} is outside the scale of {instrument.id} "
                     f"({instrument.scale_min} to {instrument.scale_max})")
        return False
    return True


def plan_ratings_import(study: Study, source: SourceFile, *, max_bytes: int = MAX_BYTES) -> WorkImportPlan:
    """Parse and check a ratings file against the study; nothing is written."""
    parsed = parse_ratings_csv(source.data, source.name, max_bytes=max_bytes)
    problems = FileProblems(source.name)
    planned: dict[tuple[int, int], PlannedAssignment] = {}
    if parsed.rows:
        instruments = _session_instruments(as_scheme(study.scheme_version))
        sessions = _Sessions(study)
        users, roles = _raters(study, {r.rater for r in parsed.rows})
        seen: dict[tuple, int] = {}
        for row in parsed.rows:
            session_id, rater = _resolve_row(row, study, sessions, users, roles, problems)
            target = _rating_target(row, instruments, problems)
            value_ok = target is not None and _rating_value_ok(row, target[0], problems)
            if session_id is None or rater is None:
                continue
            pair = _pair(planned, sessions, session_id, rater, row.line)
            if target is None:
                continue
            instrument, item_id, dimension = target
            key = (session_id, rater.id, instrument.id, item_id, dimension)
            if key in seen:
                problems.add(row.line, f"the same rating as on line {seen[key]} (session "
                             f"'{pair.session_label}', {rater.email}, {instrument.id} item {item_id}, "
                             f"{dimension})", "keep one row per rating")
                continue
            seen[key] = row.line
            if value_ok and not row.empty:
                pair.rows.append({"instrument": instrument.id, "item": item_id, "dimension": dimension,
                                  "value": row.value, "not_applicable": row.not_applicable})
        required = set(required_ratings(study))
        for pair in planned.values():
            given = {(r["instrument"], r["item"], r["dimension"]) for r in pair.rows}
            pair.n_missing = len(required - given)
    return _plan(study, "ratings", parsed, problems, planned)


# --------------------------------------------------------------------------- codes


@dataclass(frozen=True)
class _Turn:
    id: int
    role: str
    speaker: str


def _transcripts(study: Study, session_ids: Iterable[int]) -> dict[int, list[_Turn]]:
    """The utterances of the sessions that have a transcript, in order (index = position - 1)."""
    turns: dict[int, list[_Turn]] = {}
    for chunk in _chunks(sorted(set(session_ids)), 50):
        rows = db.session.execute(
            select(Transcript.session_id, Utterance.position, Utterance.id, Utterance.role, Utterance.speaker)
            .join(Utterance, Utterance.transcript_id == Transcript.id)
            .where(Transcript.study_id == study.id, Transcript.session_id.in_(chunk))
            .order_by(Transcript.session_id, Utterance.position)
        )
        for session_id, _position, utterance_id, role, speaker in rows:
            turns.setdefault(session_id, []).append(_Turn(utterance_id, role, speaker))
    return turns


def _find_code(code_set: CodeSet, text: str) -> tuple[Code | None, list[Code]]:
    """A code by id (exact, then any case), else by label (any case); ambiguous matches listed."""
    for match in (lambda c: c.id == text, lambda c: c.id.casefold() == text.casefold(),
                  lambda c: _fold(c.label) == _fold(text)):
        found = [c for c in code_set.codes if match(c)]
        if len(found) == 1:
            return found[0], []
        if found:
            return None, found
    return None, []


def _code_for(row: CodeRow, turn: _Turn, label: str, scheme: Scheme, problems: FileProblems
              ) -> tuple[CodeSet | None, Code | None, bool]:
    """(code set, code, ok) for a row whose utterance exists; reports what is wrong."""
    code_set = scheme.code_set_for_role(turn.role)
    where = f"utterance {row.utterance} of session '{label}'"
    if code_set is None:
        problems.add(row.line, f"{where} is spoken by '{turn.speaker}' ({turn.role}), which takes no "
                     "code in this study's scheme", "leave this row out")
        return None, None, False
    if row.empty:
        return code_set, None, True
    if row.code_set.casefold() != code_set.id.casefold():
        if any(cs.id.casefold() == row.code_set.casefold() for cs in scheme.code_sets):
            problems.add(row.line, f"{where} is a {turn.role} utterance ('{turn.speaker}'): it takes "
                         f"code set '{code_set.id}', not '{row.code_set}'",
                         "check the utterance number (positions start at 1) and the code set")
        else:
            known = ", ".join(f"{cs.id} ({'/'.join(cs.applies_to_roles)} utterances)"
                              for cs in scheme.code_sets)
            problems.once(("code_set", row.code_set.casefold()), row.line,
                          f"unknown code set '{row.code_set}'", f"code sets of this study's scheme: {known}")
        return code_set, None, False
    code, ambiguous = _find_code(code_set, row.code)
    if ambiguous:
        problems.add(row.line, f"'{row.code}' matches several codes of {code_set.id}: "
                     + ", ".join(c.id for c in ambiguous), "write the code's id")
        return code_set, None, False
    if code is None:
        problems.once(("code", code_set.id, row.code), row.line,
                      f"'{row.code}' is not a code of {code_set.id}",
                      "codes: " + ", ".join(c.id for c in code_set.codes) + " (ids, or their labels)")
        return code_set, None, False
    return code_set, code, True


def plan_codes_import(study: Study, source: SourceFile, *, max_bytes: int = MAX_BYTES) -> WorkImportPlan:
    """Parse and check an utterance-codes file against the study; nothing is written."""
    parsed = parse_codes_csv(source.data, source.name, max_bytes=max_bytes)
    problems = FileProblems(source.name)
    planned: dict[tuple[int, int], PlannedAssignment] = {}
    if parsed.rows:
        scheme = as_scheme(study.scheme_version)
        sessions = _Sessions(study)
        users, roles = _raters(study, {r.rater for r in parsed.rows})
        rows = [(row, *_resolve_row(row, study, sessions, users, roles, problems)) for row in parsed.rows]
        transcripts = _transcripts(study, {session_id for _, session_id, _ in rows if session_id})
        seen: dict[tuple[int, int, int], int] = {}
        for row, session_id, rater in rows:
            if session_id is None:
                continue
            label = sessions.label[session_id]
            turns = transcripts.get(session_id)
            if turns is None:
                problems.once(("no transcript", session_id), row.line,
                              f"session '{label}' has no transcript",
                              f"import it first with 'mbtcode import FILE --study \"{study.name}\"'")
                continue
            if row.utterance > len(turns):
                problems.add(row.line, f"utterance {row.utterance} is beyond the end of session '{label}' "
                             f"(its transcript has {len(turns):,} utterances)",
                             "utterances are numbered from 1 in transcript order")
                continue
            turn = turns[row.utterance - 1]
            code_set, code, ok = _code_for(row, turn, label, scheme, problems)
            if rater is None or code_set is None:
                continue
            pair = _pair(planned, sessions, session_id, rater, row.line)
            key = (session_id, row.utterance, rater.id)
            if key in seen:
                problems.add(row.line, f"utterance {row.utterance} of session '{label}' by {rater.email} "
                             f"is also on line {seen[key]}", "keep one code per utterance and rater")
                continue
            seen[key] = row.line
            if ok and code is not None:
                pair.rows.append({"utterance_id": turn.id, "code_set": code_set.id, "code": code.id})
        codable = {session_id: sum(1 for t in turns if scheme.code_set_for_role(t.role) is not None)
                   for session_id, turns in transcripts.items()}
        for pair in planned.values():
            pair.n_missing = codable.get(pair.session_id, 0) - len(pair.rows)
    return _plan(study, "codes", parsed, problems, planned)


# --------------------------------------------------------------------------- writing


def apply_work_import(plan: WorkImportPlan, *, actor: User | None) -> list[Assignment]:
    """Write a checked plan: submitted assignments, their codes or ratings, and audit rows.

    Returns the assignments that received rows. Flushes; the caller commits.
    """
    if not plan.ok:
        raise ValueError("refusing to apply an import plan that has problems")
    study, now = plan.study, utcnow()
    model = UtteranceCode if plan.kind == "codes" else ItemRating
    source = {"file": PurePath(plan.filename.replace("\\", "/")).name, "sha256": plan.sha256}
    written = []
    for planned in plan.writing:
        assignment = planned.existing
        if assignment is None:
            assignment = Assignment(
                study_id=study.id, session_id=planned.session_id, rater_id=planned.rater.id,
                status="submitted", submitted_at=now, created_by_id=actor.id if actor else None,
            )
            db.session.add(assignment)
            db.session.flush()
            audit.record(
                "assignment.create", actor=actor, entity="assignment", entity_id=assignment.id,
                study_id=study.id,
                detail={"new": {"session_id": planned.session_id, "rater_id": planned.rater.id,
                                "status": "submitted"},
                        "imported": {**source, "kind": plan.kind, "rows": len(planned.rows)}},
            )
        else:
            audit.record(
                "assignment.import", actor=actor, entity="assignment", entity_id=assignment.id,
                study_id=study.id, detail={**source, "kind": plan.kind, "rows": len(planned.rows)},
            )
        db.session.execute(insert(model), [{"assignment_id": assignment.id, "updated_at": now, "version": 1,
                                            **row} for row in planned.rows])
        written.append(assignment)
    writing = plan.writing
    audit.record(
        f"{plan.kind}.import", actor=actor, entity="study", entity_id=study.id, study_id=study.id,
        detail={**source, "rows": plan.n_rows, "sessions": len({p.session_id for p in writing}),
                "raters": len({p.rater.id for p in writing}),
                "assignments_created": sum(1 for p in writing if p.existing is None),
                "assignments_added_to": sum(1 for p in writing if p.existing is not None),
                "missing": sum(p.n_missing for p in writing)},
    )
    db.session.flush()
    return written

