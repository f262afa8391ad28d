"""Adjudication: a supervisor resolves the disagreements of a double-coded session.

Rules enforced here (not only in the pages):

* a session is ready once it has two or more active assignments and all are submitted;
  before that nobody sees the codings side by side (blinding);
* the adjudicator may adjudicate in the study and has no assignment on the session;
* the consensus is its own record (``Consensus*`` tables) with the provenance of every value;
  the raters' independent codings are never changed;
* values the raters agree on (and ratings within the study's threshold: their mean) are
  filled in when adjudication starts; the rest must be picked or entered before it is final.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from statistics import fmean

from sqlalchemy import case, delete, func, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import (
    Assignment,
    Consensus,
    ConsensusCode,
    ConsensusRating,
    ItemRating,
    Study,
    TherapySession,
    Transcript,
    User,
    Utterance,
    UtteranceCode,
)
from ..models._types import utcnow
from . import ServiceError, audit
from .assignments import ConflictError, LockedError, codable_roles, required_ratings
from .coding import MAX_NOTE_LENGTH, InvalidInput, clean_text
from .double_coding import gold_session_ids, settings_for
from .permissions import can
from .ratings import parse_rating_value
from .schemes import as_scheme


class NotReady(ServiceError):
    """The session cannot be adjudicated (yet), or not by this user."""


def active_assignments(session: TherapySession) -> list[Assignment]:
    """The session's assignments that are not withdrawn, in a fixed order (Rater 1, 2, …)."""
    return list(
        db.session.scalars(
            select(Assignment)
            .where(Assignment.session_id == session.id, Assignment.status != "withdrawn")
            .options(joinedload(Assignment.rater))
            .order_by(Assignment.id)
        )
    )


def readiness(session: TherapySession) -> str | None:
    """None if the session can be adjudicated, else why not (for the user)."""
    if session.id in gold_session_ids(session.study):
        return "this is a gold-standard session; it is compared with gold, not adjudicated"
    assignments = active_assignments(session)
    if len(assignments) < 2:
        return "the session is not double-coded"
    open_ = sum(a.status != "submitted" for a in assignments)
    if open_:
        return f"{open_} of {len(assignments)} raters have not submitted yet"
    return None


def may_adjudicate(session: TherapySession, user: User) -> bool:
    """Whether ``user`` may adjudicate in the study and did not code this session."""
    if not can(user, "adjudicate", session.study):
        return False
    return db.session.scalar(
        select(Assignment.id).where(Assignment.session_id == session.id, Assignment.rater_id == user.id)
    ) is None


def _check(session: TherapySession, user: User) -> None:
    if not may_adjudicate(session, user):
        raise NotReady("you coded this session (or may not adjudicate in this study): "
                       "another supervisor must adjudicate it")
    reason = readiness(session)
    if reason is not None:
        raise NotReady(reason)


def rater_labels(study: Study, assignments: list[Assignment]) -> dict[int, str]:
    """Assignment id → the name shown: "Rater 1/2…" when the study hides names."""
    hide = settings_for(study).hide_rater_names
    return {
        a.id: (f"Rater {i}" if hide else a.rater.name) for i, a in enumerate(assignments, start=1)
    }


# ----------------------------------------------------------------------------- disagreements


@dataclass
class CodeUnit:
    """One codable utterance: each rater's code and note, and the consensus row if any."""

    utterance: Utterance
    code_set: str
    codes: dict[int, str | None]  # assignment id → code
    notes: dict[int, str]
    consensus: ConsensusCode | None = None

    @property
    def agreed(self) -> bool:
        return len(set(self.codes.values())) == 1


@dataclass
class RatingUnit:
    """One (instrument, item, dimension): each rater's value (None = N/A) and the consensus."""

    instrument: str
    item: str
    dimension: str
    values: dict[int, float | None]
    not_applicable: dict[int, bool]
    consensus: ConsensusRating | None = None
    threshold: int = 0

    @property
    def agreed(self) -> bool:
        return self.resolution() is not None

    def resolution(self) -> tuple[float | None, bool, str] | None:
        """(value, not applicable, basis) when no adjudicator is needed, else None."""
        nas = set(self.not_applicable.values())
        if nas == {True}:
            return None, True, "agreement"
        if True in nas or None in self.values.values():
            return None
        values = list(self.values.values())
        if len(set(values)) == 1:
            return values[0], False, "agreement"
        if max(values) - min(values) <= self.threshold:
            return fmean(values), False, "within_threshold"
        return None


@dataclass
class SessionComparison:
    """The independent codings of a session, side by side."""

    session: TherapySession
    assignments: list[Assignment]
    codes: list[CodeUnit]
    ratings: list[RatingUnit]
    consensus: Consensus | None
    labels: dict[int, str] = field(default_factory=dict)

    @property
    def code_disagreements(self) -> list[CodeUnit]:
        return [u for u in self.codes if not u.agreed]

    @property
    def rating_disagreements(self) -> list[RatingUnit]:
        return [u for u in self.ratings if not u.agreed]

    @property
    def n_disagreements(self) -> int:
        return len(self.code_disagreements) + len(self.rating_disagreements)

    @property
    def share(self) -> float:
        total = len(self.codes) + len(self.ratings)
        return 0.0 if total == 0 else self.n_disagreements / total

    @property
    def unresolved(self) -> int:
        return sum(u.consensus is None for u in self.code_disagreements) + sum(
            u.consensus is None for u in self.rating_disagreements
        )


def consensus_for(session: TherapySession) -> Consensus | None:
    return db.session.scalar(select(Consensus).where(Consensus.session_id == session.id))


def compare(session: TherapySession) -> SessionComparison:
    """Every codable utterance and required rating of the session with all raters' values."""
    study = session.study
    assignments = active_assignments(session)
    ids = [a.id for a in assignments]
    roles = codable_roles(study)
    utterances = list(
        db.session.scalars(
            select(Utterance)
            .join(Transcript, Transcript.id == Utterance.transcript_id)
            .where(Transcript.session_id == session.id, Utterance.role.in_(list(roles)))
            .order_by(Utterance.position)
        )
    )
    codes: dict[int, dict[int, UtteranceCode]] = defaultdict(dict)
    for row in db.session.scalars(select(UtteranceCode).where(UtteranceCode.assignment_id.in_(ids))):
        codes[row.utterance_id][row.assignment_id] = row
    consensus = consensus_for(session)
    c_codes, c_ratings = {}, {}
    if consensus is not None:
        c_codes = {r.utterance_id: r for r in db.session.scalars(
            select(ConsensusCode).where(ConsensusCode.consensus_id == consensus.id))}
        c_ratings = {(r.instrument, r.item, r.dimension): r for r in db.session.scalars(
            select(ConsensusRating).where(ConsensusRating.consensus_id == consensus.id))}
    code_units = []
    for u in utterances:
        rows = codes.get(u.id, {})
        code_units.append(CodeUnit(
            utterance=u, code_set=roles[u.role],
            codes={a: (rows[a].code if a in rows else None) for a in ids},
            notes={a: (rows[a].note if a in rows else "") for a in ids},
            consensus=c_codes.get(u.id),
        ))
    ratings: dict[tuple[str, str, str], dict[int, ItemRating]] = defaultdict(dict)
    for row in db.session.scalars(select(ItemRating).where(ItemRating.assignment_id.in_(ids))):
        ratings[(row.instrument, row.item, row.dimension)][row.assignment_id] = row
    threshold = settings_for(study).rating_threshold
    rating_units = []
    for key in required_ratings(study):
        rows = ratings.get(key, {})
        rating_units.append(RatingUnit(
            *key,
            values={a: (float(rows[a].value) if a in rows and rows[a].value is not None else None)
                    for a in ids},
            not_applicable={a: bool(a in rows and rows[a].not_applicable) for a in ids},
            consensus=c_ratings.get(key), threshold=threshold,
        ))
    return SessionComparison(session, assignments, code_units, rating_units, consensus,
                             rater_labels(study, assignments))


# ----------------------------------------------------------------------------- queue


@dataclass(frozen=True)
class QueueRow:
    session: TherapySession
    raters: int
    disagreements: int
    units: int
    status: str  # "to do", "open", "final"

    @property
    def share(self) -> float:
        return 0.0 if self.units == 0 else self.disagreements / self.units


def adjudication_queue(study: Study) -> list[QueueRow]:
    """Sessions ready for adjudication, the most disagreement (share, then count) first."""
    counts = dict(
        db.session.execute(
            select(Assignment.session_id, func.count())
            .where(Assignment.study_id == study.id, Assignment.status != "withdrawn")
            .group_by(Assignment.session_id)
            .having(func.count() >= 2,
                    func.sum(case((Assignment.status != "submitted", 1), else_=0)) == 0)
        ).all()
    )
    gold = gold_session_ids(study)
    status = dict(db.session.execute(
        select(Consensus.session_id, Consensus.status).where(Consensus.study_id == study.id)
    ).all())
    rows = []
    for session_id in counts:
        if session_id in gold:
            continue
        comparison = compare(db.session.get(TherapySession, session_id))
        rows.append(QueueRow(
            comparison.session, counts[session_id], comparison.n_disagreements,
            len(comparison.codes) + len(comparison.ratings), status.get(session_id, "to do"),
        ))
    rows.sort(key=lambda r: (r.status == "final", -r.share, -r.disagreements, r.session.label))
    return rows


# ----------------------------------------------------------------------------- consensus


def start(session: TherapySession, *, actor: User) -> Consensus:
    """Open the session's consensus, pre-filled with everything the raters agree on."""
    _check(session, actor)
    existing = consensus_for(session)
    if existing is not None:
        return existing
    consensus = Consensus(study_id=session.study_id, session_id=session.id, adjudicator_id=actor.id)
    db.session.add(consensus)
    db.session.flush()
    comparison = compare(session)
    for unit in comparison.codes:
        if unit.agreed:
            db.session.add(ConsensusCode(
                consensus_id=consensus.id, utterance_id=unit.utterance.id, code_set=unit.code_set,
                code=next(iter(unit.codes.values())), basis="agreement",
            ))
    for unit in comparison.ratings:
        resolved = unit.resolution()
        if resolved is not None:
            value, na, basis = resolved
            db.session.add(ConsensusRating(
                consensus_id=consensus.id, instrument=unit.instrument, item=unit.item,
                dimension=unit.dimension, value=value, not_applicable=na, basis=basis,
            ))
    db.session.flush()
    audit.record(
        "consensus.start", actor=actor, entity="consensus", entity_id=consensus.id,
        study_id=session.study_id,
        detail={"session_id": session.id, "assignments": [a.id for a in comparison.assignments],
                "disagreements": comparison.n_disagreements},
    )
    return consensus


def _editable(consensus: Consensus, actor: User) -> None:
    """Refuse unless ``actor`` may adjudicate now, the session is still ready and the consensus open.

    Rights are checked afresh on every change: an adjudicator who lost the role, or was
    since given an assignment on the session, may no longer change the consensus.
    """
    _check(consensus.session, actor)
    if consensus.status != "open":
        raise LockedError("this consensus is final; reopen it to change it")


def _version_check(row, expected_version: int | None, what: str) -> None:
    seen = expected_version or 0
    current = row.version if row is not None else 0
    if seen != current:
        raise ConflictError(f"{what} was changed by someone else since you opened it", current=row)


def resolve_code(
    consensus: Consensus, utterance_id: int, *, actor: User, pick: int | None = None,
    code: str | None = None, note: str = "", expected_version: int | None = None,
) -> ConsensusCode:
    """Set the consensus code of a disagreed utterance: one rater's code (``pick``) or another."""
    _editable(consensus, actor)
    comparison = compare(consensus.session)
    unit = next((u for u in comparison.codes if u.utterance.id == utterance_id), None)
    if unit is None:
        raise InvalidInput("that utterance is not a codable utterance of this session")
    if unit.agreed:
        raise InvalidInput("the raters agree on this utterance; there is nothing to adjudicate")
    _version_check(unit.consensus, expected_version, "this utterance's consensus")
    note = clean_text(note or "", limit=MAX_NOTE_LENGTH, field="the note")
    if pick is not None:
        if pick not in unit.codes:
            raise InvalidInput("pick the value of one of this session's raters")
        basis, value, source = "picked", unit.codes[pick], pick
    else:
        if code is not None:
            code_set = as_scheme(consensus.study.scheme_version).code_set(unit.code_set)
            if code not in {c.id for c in code_set.codes}:
                raise InvalidInput(f"'{code}' is not a code of {code_set.title}")
        basis, value, source = "entered", code, None
    row = unit.consensus
    old = None if row is None else {"code": row.code, "basis": row.basis, "note": row.note}
    if row is None:
        row = ConsensusCode(consensus_id=consensus.id, utterance_id=utterance_id, code_set=unit.code_set,
                            basis=basis)
        db.session.add(row)
    row.code, row.basis, row.source_assignment_id, row.note = value, basis, source, note
    db.session.flush()
    audit.record(
        "consensus.code", actor=actor, entity="consensus_code", entity_id=row.id,
        study_id=consensus.study_id,
        detail={"consensus_id": consensus.id, "position": unit.utterance.position, "old": old,
                "new": {"code": value, "basis": basis, "source_assignment_id": source, "note": note}},
    )
    return row


def resolve_rating(
    consensus: Consensus, instrument: str, item: str, dimension: str, *, actor: User,
    pick: int | None = None, raw_value: str | None = None, note: str = "",
    expected_version: int | None = None,
) -> ConsensusRating:
    """Set the consensus rating of a disagreed item: one rater's value (``pick``) or another."""
    _editable(consensus, actor)
    comparison = compare(consensus.session)
    key = (instrument, item, dimension)
    unit = next((u for u in comparison.ratings if (u.instrument, u.item, u.dimension) == key), None)
    if unit is None:
        raise InvalidInput(f"'{instrument} {item} {dimension}' is not a rating of this study")
    if unit.agreed:
        raise InvalidInput("the raters agree on this rating; there is nothing to adjudicate")
    _version_check(unit.consensus, expected_version, "this item's consensus")
    note = clean_text(note or "", limit=MAX_NOTE_LENGTH, field="the note")
    if pick is not None:
        if pick not in unit.values:
            raise InvalidInput("pick the value of one of this session's raters")
        basis, value, na, source = "picked", unit.values[pick], unit.not_applicable[pick], pick
        if value is None and not na:
            raise InvalidInput("that rater gave no rating here; enter a value instead")
    else:
        spec = next(i for i in as_scheme(consensus.study.scheme_version).instruments if i.id == instrument)
        parsed, na = parse_rating_value(raw_value, spec)
        if parsed is None and not na:
            raise InvalidInput("enter a rating (or 'na')")
        basis, value, source = "entered", None if parsed is None else float(parsed), None
    row = unit.consensus
    old = None if row is None else {"value": row.value, "not_applicable": row.not_applicable,
                                    "basis": row.basis, "note": row.note}
    if row is None:
        row = ConsensusRating(consensus_id=consensus.id, instrument=instrument, item=item,
                              dimension=dimension, basis=basis)
        db.session.add(row)
    row.value, row.not_applicable, row.basis, row.source_assignment_id, row.note = (
        value, na, basis, source, note)
    db.session.flush()
    audit.record(
        "consensus.rating", actor=actor, entity="consensus_rating", entity_id=row.id,
        study_id=consensus.study_id,
        detail={"consensus_id": consensus.id, "item": f"{instrument}:{item}:{dimension}", "old": old,
                "new": {"value": value, "not_applicable": na, "basis": basis,
                        "source_assignment_id": source, "note": note}},
    )
    return row


def finalize(consensus: Consensus, *, actor: User) -> None:
    """Make the consensus final once every disagreement is resolved."""
    _editable(consensus, actor)
    comparison = compare(consensus.session)
    if comparison.unresolved:
        raise ServiceError(
            f"{comparison.unresolved} disagreement(s) are not resolved yet; pick or enter a value for each"
        )
    consensus.status = "final"
    consensus.finalized_at = utcnow()
    db.session.flush()
    audit.record("consensus.finalize", actor=actor, entity="consensus", entity_id=consensus.id,
                 study_id=consensus.study_id, detail={"old": "open", "new": "final"})


def reopen(consensus: Consensus, *, actor: User, reason: str) -> None:
    """Make a final consensus editable again, with a stated reason."""
    from .assignments import _require_reason

    reason = _require_reason(reason)
    if not may_adjudicate(consensus.session, actor):
        raise NotReady("you may not adjudicate this session")
    if consensus.status != "final":
        raise ServiceError("only a final consensus can be reopened")
    consensus.status = "open"
    consensus.finalized_at = None
    db.session.flush()
    audit.record("consensus.reopen", actor=actor, entity="consensus", entity_id=consensus.id,
                 study_id=consensus.study_id, detail={"old": "final", "new": "open"}, reason=reason)


def discard(consensus: Consensus, *, actor: User, reason: str) -> None:
    """Delete a consensus (e.g. before a rater's assignment is reopened); the audit log keeps it."""
    from .assignments import _require_reason

    reason = _require_reason(reason)
    if not may_adjudicate(consensus.session, actor):
        raise NotReady("you may not adjudicate this session")
    codes = db.session.scalars(select(ConsensusCode).where(ConsensusCode.consensus_id == consensus.id)).all()
    ratings = db.session.scalars(
        select(ConsensusRating).where(ConsensusRating.consensus_id == consensus.id)).all()
    detail = {
        "session_id": consensus.session_id, "status": consensus.status,
        "codes": {str(c.utterance_id): [c.code, c.basis, c.source_assignment_id, c.note] for c in codes},
        "ratings": {f"{r.instrument}:{r.item}:{r.dimension}": [r.value, r.not_applicable, r.basis,
                                                               r.source_assignment_id, r.note]
                    for r in ratings},
    }
    db.session.execute(delete(ConsensusCode).where(ConsensusCode.consensus_id == consensus.id))
    db.session.execute(delete(ConsensusRating).where(ConsensusRating.consensus_id == consensus.id))
    audit.record("consensus.discard", actor=actor, entity="consensus", entity_id=consensus.id,
                 study_id=consensus.study_id, detail=detail, reason=reason)
    db.session.delete(consensus)
    db.session.flush()
