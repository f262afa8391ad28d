"""Program quality audits: rate a treatment program against a program-level instrument.

An audit rates one unit (the whole program, a site or a team) on one date against an
instrument whose ``target`` is ``program`` — by default the 20 MBT program quality criteria
shipped as ``mbt-program-quality`` (organization, organization/team, team and therapist
level, 1–5). Each criterion gets a value on the instrument's scale, N/A where the instrument
allows it, or nothing yet (an audit may be saved part-way). Audits are scored with
``stats.fidelity.audit_scores`` and followed over time.

Every create, change and delete writes one audit event; edits are version-checked
(``QualityAudit.version``), so two coordinators editing the same audit cannot overwrite each
other unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.exc import StaleDataError

from ..extensions import db
from ..io.schemes import Instrument
from ..models import QualityAudit, QualityAuditRating, SchemeVersion, Study, TherapySession, User
from ..models._types import utcnow
from ..stats import fidelity as fs
from . import ServiceError, audit
from .assignments import ConflictError
from .coding import clean_text
from .schemes import as_scheme, register_shipped_schemes

#: The shipped scheme whose program instrument audits use when the study's scheme has none.
DEFAULT_PROGRAM_SCHEME = "mbt-program-quality"
MAX_UNIT_LENGTH = 100
MAX_NOTE_LENGTH = 5_000
#: Audits cannot be dated before this or after this year (typing slips such as 0202).
FIRST_YEAR, LAST_YEAR = 1990, 2100


class AuditInvalid(ServiceError):
    """The form has problems; ``errors`` maps a field (``audit_date``, ``unit``, ``note``,
    ``item-<id>``) to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(errors.values()))


class StaleAudit(ConflictError):
    """The audit changed (or was deleted) since the form was opened."""


@dataclass(frozen=True)
class ProgramInstrument:
    """A program-level instrument and the stored scheme revision that holds it."""

    version: SchemeVersion
    instrument: Instrument


def _program_instrument_of(version: SchemeVersion) -> Instrument | None:
    return next((i for i in as_scheme(version).instruments if i.target == "program"), None)


def program_instrument(study: Study, *, register: bool = False) -> ProgramInstrument | None:
    """The instrument new audits of ``study`` use.

    The study's own scheme when it has a ``target: "program"`` instrument, else the latest
    stored revision of the shipped ``mbt-program-quality``. With ``register``, the shipped
    schemes are stored first if that one is missing (as ``mbtcode init`` does); without it
    (page views), None when it is not stored.
    """
    own = _program_instrument_of(study.scheme_version)
    if own is not None:
        return ProgramInstrument(study.scheme_version, own)

    def latest() -> SchemeVersion | None:
        return db.session.scalar(
            select(SchemeVersion).where(SchemeVersion.key == DEFAULT_PROGRAM_SCHEME)
            .order_by(SchemeVersion.revision.desc()).limit(1))

    version = latest()
    if version is None and register:
        register_shipped_schemes(actor=None)
        version = latest()
    if version is None:
        return None
    instrument = _program_instrument_of(version)
    return ProgramInstrument(version, instrument) if instrument is not None else None


def instrument_of(audit_row: QualityAudit) -> Instrument:
    """The instrument an audit was rated with (its own scheme revision, never a later one)."""
    return as_scheme(audit_row.scheme_version).instrument(audit_row.instrument)


def list_audits(study: Study) -> list[QualityAudit]:
    """The study's audits, oldest first (then by unit), with their ratings loaded."""
    return list(db.session.scalars(
        select(QualityAudit).where(QualityAudit.study_id == study.id)
        .options(joinedload(QualityAudit.auditor), joinedload(QualityAudit.scheme_version),
                 selectinload(QualityAudit.ratings))
        .order_by(QualityAudit.audit_date, QualityAudit.unit, QualityAudit.id)
    ).unique())


def get_audit(study: Study, audit_id: int) -> QualityAudit | None:
    """An audit of this study by id, or None (never another study's)."""
    return db.session.scalar(
        select(QualityAudit).where(QualityAudit.id == audit_id, QualityAudit.study_id == study.id))


def known_units(study: Study) -> list[str]:
    """Site and team names of the study's sessions, for the unit field's suggestions."""
    names: set[str] = set()
    for column in (TherapySession.site, TherapySession.team):
        names.update(v for v in db.session.scalars(
            select(column).where(TherapySession.study_id == study.id, column.is_not(None)).distinct()) if v)
    return sorted(names)


def unit_label(unit: str) -> str:
    """How a unit is shown: its name, or "whole program" for the empty unit."""
    return unit or "whole program"


# ----------------------------------------------------------------------------- validation


@dataclass
class _Parsed:
    audit_date: date | None = None
    unit: str = ""
    note: str = ""
    values: dict[str, tuple[int | None, bool]] = field(default_factory=dict)


def _parse_date(raw: date | str | None) -> date:
    if isinstance(raw, date):
        value = raw
    else:
        text = (raw or "").strip()
        if not text:
            raise ValueError("enter the date of the audit")
        try:
            value = date.fromisoformat(text)
        except ValueError:
            shown = text if len(text) <= 20 else text[:19] + "…"
            raise ValueError(f"'{shown}' is not a date: use YYYY-MM-DD, e.g. 2026-03-31") from None
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"{value.isoformat()} is not a plausible audit date "
                         f"(years {FIRST_YEAR}–{LAST_YEAR})")
    return value


def _parse_value(raw: str | None, instrument: Instrument) -> tuple[int | None, bool]:
    text = (raw or "").strip()
    if text == "":
        return None, False
    if text.lower() in ("na", "n/a"):
        if not instrument.allow_na:
            raise ValueError(f"{instrument.title} does not allow 'not applicable': "
                             f"rate from {instrument.scale_min} to {instrument.scale_max}")
        return None, True
    if not (text.isascii() and text.isdigit() and len(text) <= 3):
        shown = text if len(text) <= 10 else text[:9] + "…"
        raise ValueError(f"'{shown}' is not a rating: choose a whole number from "
                         f"{instrument.scale_min} to {instrument.scale_max}")
    value = int(text)
    if not instrument.scale_min <= value <= instrument.scale_max:
        raise ValueError(f"{value} is outside the scale: rate from {instrument.scale_min} "
                         f"to {instrument.scale_max}")
    return value, False


def _validate(study: Study, instrument_id: str, instrument: Instrument, *, audit_date, unit: str,
              note: str, values: Mapping[str, str | None], exclude_id: int | None = None) -> _Parsed:
    errors: dict[str, str] = {}
    parsed = _Parsed()
    try:
        parsed.audit_date = _parse_date(audit_date)
    except ValueError as exc:
        errors["audit_date"] = str(exc)
    parsed.unit = " ".join((unit or "").split())
    if len(parsed.unit) > MAX_UNIT_LENGTH:
        errors["unit"] = f"the unit name is too long: at most {MAX_UNIT_LENGTH} characters"
    try:
        parsed.note = clean_text(note or "", limit=MAX_NOTE_LENGTH, field="the note").strip()
    except ServiceError as exc:
        errors["note"] = str(exc)
    known = {item.id for item in instrument.items}
    unknown = sorted(set(values) - known)
    if unknown:
        shown = ", ".join(repr(u[:20]) for u in unknown[:3])
        errors["items"] = f"{instrument.title} has no criterion {shown}; reload the form"
    for item in instrument.items:
        try:
            parsed.values[item.id] = _parse_value(values.get(item.id), instrument)
        except ValueError as exc:
            errors[f"item-{item.id}"] = f"criterion {item.number} ({item.name}): {exc}"
    if "audit_date" not in errors and "unit" not in errors:
        clash = db.session.scalar(select(QualityAudit.id).where(
            QualityAudit.study_id == study.id, QualityAudit.instrument == instrument_id,
            QualityAudit.unit == parsed.unit, QualityAudit.audit_date == parsed.audit_date,
            *([QualityAudit.id != exclude_id] if exclude_id is not None else [])))
        if clash is not None:
            errors["audit_date"] = (f"there is already an audit of the {unit_label(parsed.unit)} on "
                                    f"{parsed.audit_date.isoformat()}: open that one, or choose "
                                    "another date or unit")
    if errors:
        raise AuditInvalid(errors)
    return parsed


def _shown(value: int | None, na: bool) -> int | str | None:
    return "na" if na else value


def _snapshot(audit_row: QualityAudit) -> dict:
    return {
        "audit_date": audit_row.audit_date.isoformat(),
        "unit": audit_row.unit,
        "note": audit_row.note,
        "ratings": {r.item: _shown(r.value, r.not_applicable) for r in audit_row.ratings},
    }


def _flush_unique() -> None:
    """Flush; a concurrent audit of the same unit and date is a clear refusal, not a 500."""
    nested = db.session.begin_nested()
    try:
        db.session.flush()
        nested.commit()
    except IntegrityError:
        nested.rollback()
        raise AuditInvalid({"audit_date": "another audit of this unit on this date was saved "
                                          "meanwhile: open that one, or choose another date"}) from None


# ----------------------------------------------------------------------------- writes


def create_audit(study: Study, *, audit_date: date | str | None, unit: str = "", note: str = "",
                 values: Mapping[str, str | None] | None = None, actor: User) -> QualityAudit:
    """Record one audit with its criterion values ("" not rated, "na", or a scale value)."""
    chosen = program_instrument(study, register=True)
    if chosen is None:
        raise ServiceError("no program-level instrument is stored: run 'mbtcode init' to register "
                           f"the shipped '{DEFAULT_PROGRAM_SCHEME}' scheme")
    instrument = chosen.instrument
    parsed = _validate(study, instrument.id, instrument, audit_date=audit_date, unit=unit, note=note,
                       values=values or {})
    row = QualityAudit(study_id=study.id, scheme_version_id=chosen.version.id, instrument=instrument.id,
                       unit=parsed.unit, audit_date=parsed.audit_date, auditor_id=actor.id,
                       note=parsed.note)
    row.scheme_version = chosen.version
    for item in instrument.items:
        value, na = parsed.values[item.id]
        if value is not None or na:
            row.ratings.append(QualityAuditRating(item=item.id, value=value, not_applicable=na))
    db.session.add(row)
    _flush_unique()
    audit.record("quality_audit.create", actor=actor, entity="quality_audit", entity_id=row.id,
                 study_id=study.id, detail={"new": {**_snapshot(row), "instrument": instrument.id,
                                                    "scheme": chosen.version.ref}})
    return row


def update_audit(audit_row: QualityAudit, *, expected_version: int, audit_date: date | str | None,
                 unit: str = "", note: str = "", values: Mapping[str, str | None] | None = None,
                 actor: User) -> QualityAudit:
    """Change an audit seen at ``expected_version``; a stale version raises StaleAudit."""
    instrument = instrument_of(audit_row)
    parsed = _validate(audit_row.study, audit_row.instrument, instrument, audit_date=audit_date,
                       unit=unit, note=note, values=values or {}, exclude_id=audit_row.id)
    if audit_row.version != expected_version:
        raise StaleAudit("this audit was changed by someone else since you opened it",
                         current=audit_row)
    before = _snapshot(audit_row)
    audit_row.audit_date, audit_row.unit, audit_row.note = parsed.audit_date, parsed.unit, parsed.note
    existing = {r.item: r for r in audit_row.ratings}
    for item in instrument.items:
        value, na = parsed.values[item.id]
        row = existing.get(item.id)
        if value is None and not na:
            if row is not None:
                audit_row.ratings.remove(row)
        elif row is None:
            audit_row.ratings.append(QualityAuditRating(item=item.id, value=value, not_applicable=na))
        elif (row.value, row.not_applicable) != (value, na):
            row.value, row.not_applicable = value, na
    after = _snapshot(audit_row)
    changed = {k for k in ("audit_date", "unit", "note") if before[k] != after[k]}
    items = {i for i in set(before["ratings"]) | set(after["ratings"])
             if before["ratings"].get(i) != after["ratings"].get(i)}
    if not changed and not items:
        return audit_row
    # Ratings are rows of their own: bump the audit's version even when only they changed,
    # so another open form of this audit sees that it is stale.
    audit_row.updated_at = utcnow()
    try:
        _flush_unique()
    except StaleDataError:
        raise StaleAudit("this audit was changed by someone else since you opened it",
                         current=audit_row) from None
    detail = {
        "old": {**{k: before[k] for k in sorted(changed)},
                "ratings": {i: before["ratings"].get(i) for i in sorted(items, key=_item_order)}},
        "new": {**{k: after[k] for k in sorted(changed)},
                "ratings": {i: after["ratings"].get(i) for i in sorted(items, key=_item_order)}},
    }
    audit.record("quality_audit.update", actor=actor, entity="quality_audit", entity_id=audit_row.id,
                 study_id=audit_row.study_id, detail=detail)
    return audit_row


def delete_audit(audit_row: QualityAudit, *, expected_version: int, actor: User) -> None:
    """Delete an audit and its ratings (the audit log keeps what they were)."""
    if audit_row.version != expected_version:
        raise StaleAudit("this audit was changed by someone else since you opened it",
                         current=audit_row)
    detail = {"old": {**_snapshot(audit_row), "instrument": audit_row.instrument}}
    audit_id, study_id = audit_row.id, audit_row.study_id
    db.session.delete(audit_row)
    try:
        db.session.flush()
    except StaleDataError:
        raise StaleAudit("this audit was changed or deleted by someone else since you opened it",
                         current=None) from None
    audit.record("quality_audit.delete", actor=actor, entity="quality_audit", entity_id=audit_id,
                 study_id=study_id, detail=detail)


def _item_order(item_id: str) -> tuple[int, str]:
    return (int(item_id), item_id) if item_id.isdigit() else (10**9, item_id)


# ----------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class AuditScore:
    """One audit's scores (``stats.fidelity.audit_scores``), ready to show."""

    audit: QualityAudit
    mean: float | None
    n_items: int
    n_na: int
    n_below_cutoff: int
    adequate: bool | None
    #: level id → mean of the rated criteria of that level (None when none is rated).
    level_means: dict[str, float | None]


@dataclass(frozen=True)
class AuditSeries:
    """The audits of one instrument, oldest first, with their scores."""

    instrument: Instrument
    scores: list[AuditScore]

    @property
    def units(self) -> list[str]:
        return sorted({s.audit.unit for s in self.scores})


def _number(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def audit_series(audits: list[QualityAudit]) -> list[AuditSeries]:
    """Scores of every audit, grouped by the instrument (and revision) they were rated with."""
    groups: dict[tuple[int, str], list[QualityAudit]] = {}
    for a in audits:
        groups.setdefault((a.scheme_version_id, a.instrument), []).append(a)
    out = []
    for group in groups.values():
        instrument = instrument_of(group[0])
        rows = [(a.id, r.item, r.value, r.not_applicable) for a in group for r in a.ratings]
        frame = pd.DataFrame(rows, columns=["audit_id", "item", "value", "not_applicable"])
        frame["value"] = frame["value"].astype(float)
        frame["not_applicable"] = frame["not_applicable"].astype(bool)
        scored = fs.audit_scores(frame, instrument).set_index("audit_id") if len(frame) else None
        scores = []
        for a in group:
            if scored is None or a.id not in scored.index:
                scores.append(AuditScore(a, None, 0, 0, 0, None, {lv.id: None for lv in instrument.levels}))
                continue
            s = scored.loc[a.id]
            adequate = s["adequate"]
            scores.append(AuditScore(
                audit=a, mean=_number(s["mean"]), n_items=int(s["n_items"]), n_na=int(s["n_na"]),
                n_below_cutoff=int(s["n_below_cutoff"]),
                adequate=None if pd.isna(adequate) else bool(adequate),
                level_means={lv.id: _number(s[f"mean_{lv.id}"]) for lv in instrument.levels},
            ))
        out.append(AuditSeries(instrument, scores))
    return out
