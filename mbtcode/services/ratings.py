"""Record a rater's instrument ratings (MBT-ACS items, overall ratings) and rationales."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from ..extensions import db
from ..io.schemes import Instrument
from ..models import Assignment, ItemRating, ItemRationale, User
from . import audit
from .assignments import ConflictError
from .coding import InvalidInput, _editable, clean_text
from .schemes import as_scheme

MAX_RATIONALE_LENGTH = 20_000


def session_instruments(assignment: Assignment) -> list[Instrument]:
    """The instruments of the study's scheme that are rated per session."""
    return [i for i in as_scheme(assignment.study.scheme_version).instruments if i.target == "session"]


def _target(assignment: Assignment, instrument_id: str, item_id: str, dimension: str | None):
    instrument = next((i for i in session_instruments(assignment) if i.id == instrument_id), None)
    if instrument is None:
        raise InvalidInput(f"'{instrument_id}' is not an instrument of this study")
    item = next((i for i in instrument.items if i.id == item_id), None)
    overall = next((o for o in instrument.overall if o.id == item_id), None)
    if item is None and overall is None:
        raise InvalidInput(f"'{item_id}' is not an item of {instrument.title}")
    if dimension is not None:
        allowed = item.rated_for if item is not None else (overall.dimension,)
        if dimension not in allowed:
            raise InvalidInput(f"'{item_id}' is not rated for {dimension}")
    return instrument


def parse_rating_value(raw: str | None, instrument: Instrument) -> tuple[int | None, bool]:
    """Form text → (value, not_applicable); refuses anything but a whole number in range or "na"."""
    text = (raw or "").strip()
    if text == "":
        return None, False
    if text.lower() == "na":
        if not instrument.allow_na:
            raise InvalidInput(f"{instrument.title} does not allow 'not applicable'")
        return None, True
    # isascii: int() would accept Arabic-Indic or full-width digits.
    if not (text.isascii() and text.isdigit()):
        raise InvalidInput(
            f"rate with a whole number from {instrument.scale_min} to {instrument.scale_max}"
        )
    value = int(text)
    if not instrument.scale_min <= value <= instrument.scale_max:
        raise InvalidInput(
            f"{value} is outside the scale: rate from {instrument.scale_min} to {instrument.scale_max}"
        )
    return value, False


def ratings_of(assignment: Assignment) -> dict[tuple[str, str, str], ItemRating]:
    """The assignment's ratings keyed by (instrument, item, dimension)."""
    rows = db.session.scalars(select(ItemRating).where(ItemRating.assignment_id == assignment.id))
    return {(r.instrument, r.item, r.dimension): r for r in rows}


def rationales_of(assignment: Assignment) -> dict[tuple[str, str], ItemRationale]:
    """The assignment's rationales keyed by (instrument, item)."""
    rows = db.session.scalars(select(ItemRationale).where(ItemRationale.assignment_id == assignment.id))
    return {(r.instrument, r.item): r for r in rows}


def record_rating(
    assignment: Assignment, instrument_id: str, item_id: str, dimension: str, raw_value: str | None,
    *, expected_version: int, actor: User,
) -> ItemRating | None:
    """Set one rating (a value, "na", or empty to clear); refuses stale versions.

    Clearing a rating that was never given changes nothing (no row, no audit entry): None.
    """
    _editable(assignment)
    instrument = _target(assignment, instrument_id, item_id, dimension)
    value, na = parse_rating_value(raw_value, instrument)
    row = db.session.scalar(
        select(ItemRating).where(
            ItemRating.assignment_id == assignment.id, ItemRating.instrument == instrument_id,
            ItemRating.item == item_id, ItemRating.dimension == dimension,
        )
    )
    seen = expected_version or 0
    if (row.version if row else 0) != seen:
        raise ConflictError("this rating was changed in another tab or window", current=row)
    old = _shown(row)
    if row is None and value is None and not na:
        return None
    if row is None:
        row = ItemRating(assignment_id=assignment.id, instrument=instrument_id, item=item_id,
                         dimension=dimension)
    elif (row.value, row.not_applicable) == (value, na):
        return row
    row.value, row.not_applicable = value, na
    _save(row)
    audit.record(
        "rating.set", actor=actor, entity="item_rating", entity_id=row.id,
        study_id=assignment.study_id,
        detail={"assignment_id": assignment.id, "instrument": instrument_id, "item": item_id,
                "dimension": dimension, "old": old, "new": _shown(row)},
    )
    return row


def record_rationale(
    assignment: Assignment, instrument_id: str, item_id: str, text: str,
    *, expected_version: int, actor: User,
) -> ItemRationale | None:
    """Set the free-text rationale of one item; refuses stale versions.

    An empty rationale where there was none changes nothing (no row, no audit entry): None.
    """
    _editable(assignment)
    _target(assignment, instrument_id, item_id, None)
    text = clean_text(text, limit=MAX_RATIONALE_LENGTH, field="the rationale")
    row = db.session.scalar(
        select(ItemRationale).where(
            ItemRationale.assignment_id == assignment.id, ItemRationale.instrument == instrument_id,
            ItemRationale.item == item_id,
        )
    )
    if (row.version if row else 0) != (expected_version or 0):
        raise ConflictError("this rationale was changed in another tab or window", current=row)
    old = row.text if row else ""
    if row is None and text == "":
        return None
    if row is None:
        row = ItemRationale(assignment_id=assignment.id, instrument=instrument_id, item=item_id)
    elif row.text == text:
        return row
    row.text = text
    _save(row)
    audit.record(
        "rationale.set", actor=actor, entity="item_rationale", entity_id=row.id,
        study_id=assignment.study_id,
        detail={"assignment_id": assignment.id, "instrument": instrument_id, "item": item_id,
                "old": old, "new": text},
    )
    return row


def _shown(row: ItemRating | None) -> int | str | None:
    if row is None:
        return None
    return "na" if row.not_applicable else row.value


def _save(row) -> None:
    if row.id is not None:
        db.session.flush()
        return
    from sqlalchemy.exc import IntegrityError

    nested = db.session.begin_nested()
    db.session.add(row)
    try:
        nested.commit()
    except IntegrityError as exc:
        nested.rollback()
        raise ConflictError("this was saved in another tab or window") from exc


@dataclass(frozen=True)
class DimensionMean:
    dimension: str
    label: str
    mean: float | None
    n_rated: int
    n_items: int


def item_means(instrument: Instrument, ratings: dict[tuple[str, str, str], ItemRating]) -> list[DimensionMean]:
    """Mean per dimension over the items rated for it; N/A and empty are left out.

    The overall ratings are entered by the rater and never derived from these means.
    """
    result = []
    for dim in instrument.dimensions:
        items = [i for i in instrument.items if dim.id in i.rated_for]
        values = [
            r.value for i in items
            if (r := ratings.get((instrument.id, i.id, dim.id))) is not None and r.value is not None
        ]
        mean = sum(values) / len(values) if values else None
        result.append(DimensionMean(dim.id, dim.label, mean, len(values), len(items)))
    return result
