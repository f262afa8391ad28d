"""Recording utterance codes and notes: code sets by role, versions, locks, audit."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import AuditEvent, UtteranceCode
from mbtcode.services.assignments import ConflictError, LockedError, submit
from mbtcode.services.coding import (
    MAX_NOTE_LENGTH,
    InvalidInput,
    codes_by_utterance,
    record_code,
    record_note,
    utterance_of,
)
from tests.conftest import check_each, code_everything, rate_everything, row_counts

THERAPIST, PATIENT, OTHER = 1, 2, 5  # positions in the coding world's transcript


@pytest.fixture
def w(coding_world):
    return coding_world


def _code(w, position, code, version=0, *, assignment=None, actor=None):
    row = record_code(assignment or w.a, w.utterance(position), code, expected_version=version,
                      actor=actor or w.rater_a)
    db.session.commit()
    return row


def _rows(assignment) -> dict[int, tuple]:
    db.session.expire_all()
    return {uid: (r.code, r.note, r.version) for uid, r in codes_by_utterance(assignment).items()}


def _audit() -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action.like("code.%")).order_by(AuditEvent.id)))


# --------------------------------------------------------------------------- valid codes


def test_a_therapist_utterance_takes_an_intervention_code(w):
    row = _code(w, THERAPIST, "EV")
    assert (row.code, row.code_set, row.version) == ("EV", "intervention-spectrum", 1)


def test_a_patient_utterance_takes_a_nonmentalizing_mode_code(w):
    row = _code(w, PATIENT, "PE")
    assert (row.code, row.code_set) == ("PE", "nonmentalizing-modes")


def test_codes_outside_the_roles_code_set_are_refused(w):
    before = row_counts()

    def check(case):
        position, code = case
        with pytest.raises(InvalidInput):
            record_code(w.a, w.utterance(position), code, expected_version=0, actor=w.rater_a)
        db.session.rollback()
        assert row_counts() == before

    check_each([
        (THERAPIST, "PE"),    # a patient-mode code on a therapist utterance
        (PATIENT, "EV"),      # an intervention code on a patient utterance
        (THERAPIST, "GI"),    # a code of the MITI scheme, not this study's
        (THERAPIST, "ev"),    # codes are case-sensitive ids
        (THERAPIST, "EV "),
        (THERAPIST, ""),
        (THERAPIST, "1"),     # a key, not a code
    ], check)


def test_a_code_is_refused_on_an_existing_row_too(w):
    _code(w, THERAPIST, "EV")
    with pytest.raises(InvalidInput):
        record_code(w.a, w.utterance(THERAPIST), "PE", expected_version=1, actor=w.rater_a)
    db.session.rollback()
    assert list(_rows(w.a).values()) == [("EV", "", 1)]


def test_other_speakers_are_not_coded(w):
    with pytest.raises(InvalidInput, match="not coded"):
        record_code(w.a, w.utterance(OTHER), "EV", expected_version=0, actor=w.rater_a)


def test_utterance_of_finds_only_the_assignments_session(w):
    elsewhere = w.other_session.transcript.utterances.select().limit(1)
    (foreign,) = db.session.scalars(elsewhere).all()
    assert utterance_of(w.a, w.utterance(1).id).id == w.utterance(1).id
    assert utterance_of(w.a, foreign.id) is None
    assert utterance_of(w.a, 2**31 - 1) is None


def test_changing_a_code_bumps_the_version_and_audits_old_and_new(w):
    _code(w, THERAPIST, "EV")
    row = _code(w, THERAPIST, "SUP", 1)
    assert (row.code, row.version) == ("SUP", 2)
    events = _audit()
    assert [(e.action, e.detail["old"], e.detail["new"]) for e in events] == [
        ("code.set", None, "EV"), ("code.set", "EV", "SUP")]
    assert {e.actor_id for e in events} == {w.rater_a.id}
    assert events[-1].detail["assignment_id"] == w.a.id and events[-1].detail["position"] == 1
    assert events[-1].study_id == w.study.id and events[-1].entity_id == row.id


def test_clearing_a_code(w):
    _code(w, THERAPIST, "EV")
    row = _code(w, THERAPIST, None, 1)
    assert (row.code, row.version) == (None, 2)
    assert (_audit()[-1].action, _audit()[-1].detail["old"], _audit()[-1].detail["new"]) == (
        "code.clear", "EV", None)


def test_clearing_a_never_coded_utterance_writes_nothing(w):
    before = row_counts()
    _code(w, THERAPIST, None)
    assert row_counts() == before


def test_the_same_code_again_writes_nothing(w):
    _code(w, THERAPIST, "EV")
    before = row_counts()
    row = _code(w, THERAPIST, "EV", 1)
    assert row.version == 1 and row_counts() == before


# --------------------------------------------------------------------------- versions


def test_a_stale_version_is_a_conflict_with_the_current_row(w):
    _code(w, THERAPIST, "EV")
    _code(w, THERAPIST, "SUP", 1)
    with pytest.raises(ConflictError) as caught:
        record_code(w.a, w.utterance(THERAPIST), "CLA", expected_version=1, actor=w.rater_a)
    assert (caught.value.current.code, caught.value.current.version) == ("SUP", 2)
    db.session.rollback()
    assert list(_rows(w.a).values()) == [("SUP", "", 2)]


def test_version_0_when_a_row_exists_is_a_conflict(w):
    """A second tab that never saw the first tab's code must not overwrite it."""
    _code(w, THERAPIST, "EV")
    with pytest.raises(ConflictError) as caught:
        record_code(w.a, w.utterance(THERAPIST), "SUP", expected_version=0, actor=w.rater_a)
    assert caught.value.current.code == "EV"


def test_a_version_for_a_row_that_does_not_exist_is_a_conflict(w):
    with pytest.raises(ConflictError) as caught:
        record_code(w.a, w.utterance(THERAPIST), "EV", expected_version=3, actor=w.rater_a)
    assert caught.value.current is None


def test_a_future_version_is_a_conflict(w):
    _code(w, THERAPIST, "EV")
    with pytest.raises(ConflictError):
        record_code(w.a, w.utterance(THERAPIST), "SUP", expected_version=2, actor=w.rater_a)


def test_each_rater_has_their_own_row_and_version(w):
    _code(w, THERAPIST, "EV")
    row_b = _code(w, THERAPIST, "ADV", assignment=w.b, actor=w.rater_b)
    assert row_b.version == 1
    assert list(_rows(w.a).values()) == [("EV", "", 1)]
    assert list(_rows(w.b).values()) == [("ADV", "", 1)]


# --------------------------------------------------------------------------- locks


def test_a_submitted_assignment_is_locked(w):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    submit(w.a, actor=w.rater_a)
    db.session.commit()
    before = row_counts()
    with pytest.raises(LockedError, match="submitted and locked"):
        record_code(w.a, w.utterance(THERAPIST), "SUP", expected_version=1, actor=w.rater_a)
    with pytest.raises(LockedError):
        record_note(w.a, w.utterance(THERAPIST), "late", expected_version=1, actor=w.rater_a)
    db.session.rollback()
    assert row_counts() == before


# --------------------------------------------------------------------------- notes


def test_a_note_on_an_uncoded_utterance_creates_the_row_without_a_code(w):
    row = record_note(w.a, w.utterance(PATIENT), "ask about the week", expected_version=0,
                      actor=w.rater_a)
    db.session.commit()
    assert (row.code, row.note, row.version) == (None, "ask about the week", 1)


def test_note_and_code_share_the_row_and_its_version(w):
    _code(w, THERAPIST, "EV")
    row = record_note(w.a, w.utterance(THERAPIST), "warm", expected_version=1, actor=w.rater_a)
    db.session.commit()
    assert (row.code, row.note, row.version) == ("EV", "warm", 2)
    with pytest.raises(ConflictError):
        record_code(w.a, w.utterance(THERAPIST), "SUP", expected_version=1, actor=w.rater_a)


def test_notes_are_normalised(w):
    version = {"v": 0}

    def check(case):
        raw, stored = case
        row = record_note(w.a, w.utterance(THERAPIST), raw, expected_version=version["v"],
                          actor=w.rater_a)
        db.session.commit()
        db.session.expire_all()
        row = db.session.get(UtteranceCode, row.id)
        version["v"] = row.version
        assert row.note == stored

    check_each([
        ("a\x00b", "ab"),                      # NUL
        ("a\x1b[31mred", "a[31mred"),         # ESC (terminal escapes)
        ("line 1\r\nline 2", "line 1\nline 2"),
        ("line 1\rline 2", "line 1\nline 2"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("lone \ud800 surrogate", "lone  surrogate"),
        ("e\u0301", "\u00e9"),                  # NFC
    ], check)


def test_a_note_at_the_length_limit_is_kept(w):
    row = record_note(w.a, w.utterance(THERAPIST), "x" * MAX_NOTE_LENGTH, expected_version=0,
                      actor=w.rater_a)
    assert len(row.note) == MAX_NOTE_LENGTH


def test_a_note_over_the_length_limit_is_refused(w):
    before = row_counts()
    with pytest.raises(InvalidInput, match="too long"):
        record_note(w.a, w.utterance(THERAPIST), "x" * (MAX_NOTE_LENGTH + 1), expected_version=0,
                    actor=w.rater_a)
    db.session.rollback()
    assert row_counts() == before


def test_a_note_change_is_audited_old_and_new(w):
    record_note(w.a, w.utterance(THERAPIST), "first", expected_version=0, actor=w.rater_a)
    record_note(w.a, w.utterance(THERAPIST), "second", expected_version=1, actor=w.rater_a)
    db.session.commit()
    assert [(e.action, e.detail["old"], e.detail["new"]) for e in _audit()] == [
        ("code.note", "", "first"), ("code.note", "first", "second")]


def test_an_unchanged_note_writes_nothing(w):
    record_note(w.a, w.utterance(THERAPIST), "same", expected_version=0, actor=w.rater_a)
    db.session.commit()
    before = row_counts()
    row = record_note(w.a, w.utterance(THERAPIST), "same", expected_version=1, actor=w.rater_a)
    db.session.commit()
    assert row.version == 1 and row_counts() == before


# --------------------------------------------------------------------------- transactions


def test_code_and_audit_row_share_the_transaction(w):
    before = row_counts()
    record_code(w.a, w.utterance(THERAPIST), "EV", expected_version=0, actor=w.rater_a)
    record_note(w.a, w.utterance(PATIENT), "n", expected_version=0, actor=w.rater_a)
    db.session.rollback()
    assert row_counts() == before


def test_a_refused_write_in_a_transaction_keeps_the_earlier_one(w):
    """The insert runs in a savepoint: a failed sibling write does not undo the first."""
    record_code(w.a, w.utterance(THERAPIST), "EV", expected_version=0, actor=w.rater_a)
    with pytest.raises(InvalidInput):
        record_code(w.a, w.utterance(PATIENT), "EV", expected_version=0, actor=w.rater_a)
    db.session.commit()
    assert [v[0] for v in _rows(w.a).values()] == ["EV"]
    assert len(_audit()) == 1
