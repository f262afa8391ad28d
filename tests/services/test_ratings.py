"""MBT-ACS ratings: values, N/A, overall ratings, rationales, means, versions, audit."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import AuditEvent, ItemRating
from mbtcode.services.assignments import ConflictError, LockedError, submit
from mbtcode.services.coding import InvalidInput
from mbtcode.services.ratings import (
    MAX_RATIONALE_LENGTH,
    item_means,
    parse_rating_value,
    ratings_of,
    rationales_of,
    record_rating,
    record_rationale,
    session_instruments,
)
from tests.conftest import check_each, code_everything, rate_everything, row_counts


@pytest.fixture
def w(coding_world):
    return coding_world


@pytest.fixture
def acs(w):
    (instrument,) = session_instruments(w.a)
    assert instrument.id == "mbt-acs"
    return instrument


def _rate(w, item, dimension, raw, version=0, *, assignment=None):
    row = record_rating(assignment or w.a, "mbt-acs", item, dimension, raw,
                        expected_version=version, actor=w.rater_a)
    db.session.commit()
    return row


def _stored(w, item, dimension, assignment=None):
    db.session.expire_all()
    row = ratings_of(assignment or w.a).get(("mbt-acs", item, dimension))
    return None if row is None else (row.value, row.not_applicable, row.version)


def _audit() -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action.in_(["rating.set", "rationale.set"]))
        .order_by(AuditEvent.id)))


# --------------------------------------------------------------------------- values (E3)


def test_whole_numbers_on_the_scale_are_accepted(w):
    cases = list(zip(["2", "3", "6", "7", "8", "9"], ["1", "4", "7", " 4 ", "\t5\n", "04"]))

    def check(case):
        item, raw = case
        _rate(w, item, "adherence", raw)
        assert _stored(w, item, "adherence") == (int(raw), False, 1)

    check_each(cases, check)


BAD_VALUES = [
    "-1", "0", "8", "3.5", "4.0", "NaN", "nan", "Infinity", "-Infinity", "inf", "1e309", "1e0",
    "\u0664",          # Arabic-Indic 4 (int() would take it)
    "\uff14",          # full-width 4
    "\u00b2",          # superscript 2 (str.isdigit() is True)
    "4 5", "+4", "0x4", "four", "4\x00", "9" * 400,
]


def test_bad_values_are_refused_and_nothing_is_written(w):
    before = row_counts()

    def check(raw):
        with pytest.raises(InvalidInput):
            record_rating(w.a, "mbt-acs", "2", "adherence", raw, expected_version=0,
                          actor=w.rater_a)
        db.session.rollback()
        assert row_counts() == before

    check_each(BAD_VALUES, check)


def test_a_bad_value_leaves_the_stored_one(w):
    _rate(w, "2", "adherence", "5")
    with pytest.raises(InvalidInput):
        record_rating(w.a, "mbt-acs", "2", "adherence", "8", expected_version=1, actor=w.rater_a)
    db.session.rollback()
    assert _stored(w, "2", "adherence") == (5, False, 1)


def test_empty_clears_a_rating(w):
    _rate(w, "2", "adherence", "5")
    _rate(w, "2", "adherence", "", 1)
    assert _stored(w, "2", "adherence") == (None, False, 2)
    assert [(e.detail["old"], e.detail["new"]) for e in _audit()] == [(None, 5), (5, None)]


def test_not_applicable_where_the_scale_allows_it(w):
    def check(case):
        item, raw = case
        _rate(w, item, "adherence", raw)
        assert _stored(w, item, "adherence") == (None, True, 1)
        assert _audit()[-1].detail["new"] == "na"

    check_each([("2", "na"), ("3", "NA"), ("6", " na ")], check)


def test_not_applicable_is_refused_where_the_scale_does_not_allow_it(acs):
    from dataclasses import replace

    strict = replace(acs, allow_na=False)
    with pytest.raises(InvalidInput, match="not applicable"):
        parse_rating_value("na", strict)
    assert parse_rating_value("4", strict) == (4, False)


def test_switching_between_value_and_na(w):
    _rate(w, "2", "adherence", "na")
    _rate(w, "2", "adherence", "6", 1)
    assert _stored(w, "2", "adherence") == (6, False, 2)
    _rate(w, "2", "adherence", "na", 2)
    assert _stored(w, "2", "adherence") == (None, True, 3)


def test_the_same_value_again_writes_nothing(w):
    _rate(w, "2", "adherence", "5")
    before = row_counts()
    assert _rate(w, "2", "adherence", " 5", 1).version == 1
    assert row_counts() == before


# --------------------------------------------------------------------------- what may be rated


def test_items_rated_for_competence_only_refuse_adherence(w):
    def check(item):
        before = row_counts()
        with pytest.raises(InvalidInput, match="not rated for adherence"):
            record_rating(w.a, "mbt-acs", item, "adherence", "4", expected_version=0,
                          actor=w.rater_a)
        db.session.rollback()
        assert row_counts() == before
        _rate(w, item, "competence", "4")

    check_each(["1", "4", "5"], check)


def test_unknown_instruments_items_and_dimensions_are_refused(w):
    def check(case):
        with pytest.raises(InvalidInput):
            record_rating(w.a, *case, "4", expected_version=0, actor=w.rater_a)

    check_each([
        ("mbt-acs", "18", "adherence"),
        ("mbt-acs", "0", "competence"),
        ("mbt-acs", "2", "warmth"),
        ("mbt-acs", "overall_adherence", "competence"),
        ("mbt-acs", "overall_competence", "adherence"),
        ("mbt-acs", "adherence", "adherence"),
        ("program-quality", "1", "adherence"),   # not a session instrument of this scheme
        ("MBT-ACS", "2", "adherence"),
    ], check)


def test_overall_ratings_are_stored_as_their_own_rows(w):
    _rate(w, "overall_adherence", "adherence", "6")
    _rate(w, "overall_competence", "competence", "2")
    assert _stored(w, "overall_adherence", "adherence") == (6, False, 1)
    assert _stored(w, "overall_competence", "competence") == (2, False, 1)


def test_overall_ratings_are_never_derived_from_the_item_means(w, acs):
    rate_everything(w.a, w.rater_a, "7", skip={("overall_adherence", "adherence"),
                                               ("overall_competence", "competence")})
    assert _stored(w, "overall_adherence", "adherence") is None
    _rate(w, "overall_adherence", "adherence", "2")
    rate_everything(w.a, w.rater_a, "1", skip={("overall_adherence", "adherence"),
                                               ("overall_competence", "competence")})
    assert _stored(w, "overall_adherence", "adherence") == (2, False, 1)
    assert _stored(w, "overall_competence", "competence") is None
    means = {m.dimension: m.mean for m in item_means(acs, ratings_of(w.a))}
    assert means == {"adherence": 1.0, "competence": 1.0}


# --------------------------------------------------------------------------- means


def test_item_means_on_hand_worked_numbers(w, acs):
    # adherence: items 2, 3, 6 = 2, 5, 6 and item 7 N/A -> (2+5+6)/3 = 4.333...
    # competence: items 1, 4 = 7, 4 and item 5 empty -> (7+4)/2 = 5.5
    for item, dim, raw in [("2", "adherence", "2"), ("3", "adherence", "5"),
                           ("6", "adherence", "6"), ("7", "adherence", "na"),
                           ("1", "competence", "7"), ("4", "competence", "4"),
                           ("overall_adherence", "adherence", "1"),
                           ("overall_competence", "competence", "1")]:
        _rate(w, item, dim, raw)
    adherence, competence = item_means(acs, ratings_of(w.a))
    assert (adherence.dimension, adherence.n_rated, adherence.n_items) == ("adherence", 3, 14)
    assert adherence.mean == pytest.approx(13 / 3)
    assert (competence.dimension, competence.n_rated, competence.n_items) == ("competence", 2, 17)
    assert competence.mean == 5.5


def test_item_means_without_ratings_are_none(w, acs):
    assert [(m.mean, m.n_rated) for m in item_means(acs, ratings_of(w.a))] == [(None, 0), (None, 0)]


def test_item_means_with_only_na_are_none(w, acs):
    _rate(w, "2", "adherence", "na")
    assert item_means(acs, ratings_of(w.a))[0].mean is None


def test_item_means_are_per_assignment(w, acs):
    _rate(w, "2", "adherence", "7", assignment=w.b)
    assert item_means(acs, ratings_of(w.a))[0].mean is None
    assert item_means(acs, ratings_of(w.b))[0].mean == 7


# --------------------------------------------------------------------------- versions, locks


def test_a_stale_rating_version_is_a_conflict(w):
    _rate(w, "2", "adherence", "5")
    _rate(w, "2", "adherence", "6", 1)
    with pytest.raises(ConflictError) as caught:
        record_rating(w.a, "mbt-acs", "2", "adherence", "3", expected_version=1, actor=w.rater_a)
    assert caught.value.current.value == 6
    db.session.rollback()
    assert _stored(w, "2", "adherence") == (6, False, 2)


def test_version_0_when_a_rating_exists_is_a_conflict(w):
    _rate(w, "2", "adherence", "5")
    with pytest.raises(ConflictError):
        record_rating(w.a, "mbt-acs", "2", "adherence", "3", expected_version=0, actor=w.rater_a)


def test_ratings_of_a_submitted_assignment_are_locked(w):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    submit(w.a, actor=w.rater_a)
    db.session.commit()
    with pytest.raises(LockedError):
        record_rating(w.a, "mbt-acs", "2", "adherence", "3", expected_version=1, actor=w.rater_a)
    with pytest.raises(LockedError):
        record_rationale(w.a, "mbt-acs", "2", "why", expected_version=0, actor=w.rater_a)


# --------------------------------------------------------------------------- rationales


def test_a_rationale_is_saved_normalised_and_versioned(w):
    row = record_rationale(w.a, "mbt-acs", "2", "curious\r\nstance\x00", expected_version=0,
                           actor=w.rater_a)
    db.session.commit()
    assert (row.text, row.version) == ("curious\nstance", 1)
    row = record_rationale(w.a, "mbt-acs", "2", "changed", expected_version=1, actor=w.rater_a)
    db.session.commit()
    assert (row.text, row.version) == ("changed", 2)
    assert [(e.detail["old"], e.detail["new"]) for e in _audit()] == [
        ("", "curious\nstance"), ("curious\nstance", "changed")]


def test_a_stale_rationale_is_a_conflict(w):
    record_rationale(w.a, "mbt-acs", "2", "one", expected_version=0, actor=w.rater_a)
    db.session.commit()
    with pytest.raises(ConflictError):
        record_rationale(w.a, "mbt-acs", "2", "two", expected_version=0, actor=w.rater_a)


def test_a_rationale_over_the_limit_is_refused(w):
    with pytest.raises(InvalidInput, match="too long"):
        record_rationale(w.a, "mbt-acs", "2", "x" * (MAX_RATIONALE_LENGTH + 1),
                         expected_version=0, actor=w.rater_a)


def test_a_rationale_for_an_unknown_item_is_refused(w):
    with pytest.raises(InvalidInput):
        record_rationale(w.a, "mbt-acs", "99", "why", expected_version=0, actor=w.rater_a)


def test_rationales_are_per_assignment(w):
    record_rationale(w.a, "mbt-acs", "2", "A's reason", expected_version=0, actor=w.rater_a)
    db.session.commit()
    assert rationales_of(w.b) == {}


# --------------------------------------------------------------------------- audit


def test_every_rating_change_is_audited_with_old_and_new(w):
    _rate(w, "3", "competence", "4")
    _rate(w, "3", "competence", "na", 1)
    (first, second) = _audit()
    assert first.detail == {"assignment_id": w.a.id, "instrument": "mbt-acs", "item": "3",
                            "dimension": "competence", "old": None, "new": 4}
    assert (second.detail["old"], second.detail["new"]) == (4, "na")
    assert second.actor_id == w.rater_a.id and second.study_id == w.study.id
    assert second.entity == "item_rating" and second.entity_id == first.entity_id


def test_rolled_back_rating_leaves_no_audit_row(w):
    before = row_counts()
    record_rating(w.a, "mbt-acs", "2", "adherence", "5", expected_version=0, actor=w.rater_a)
    record_rationale(w.a, "mbt-acs", "2", "why", expected_version=0, actor=w.rater_a)
    db.session.rollback()
    assert row_counts() == before


def test_clearing_a_rating_that_was_never_given_writes_nothing(w):
    """No empty row and no audit entry "None -> None" (as for codes)."""
    before = row_counts()
    assert _rate(w, "2", "adherence", "") is None
    assert row_counts() == before


def test_the_database_refuses_a_value_together_with_na(w):
    from sqlalchemy.exc import IntegrityError

    _rate(w, "2", "adherence", "5")
    row = db.session.scalar(select(ItemRating))
    row.not_applicable = True
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_an_empty_rationale_where_there_was_none_writes_nothing(w):
    before = row_counts()
    assert record_rationale(w.a, "mbt-acs", "2", "", expected_version=0, actor=w.rater_a) is None
    db.session.commit()
    assert row_counts() == before
