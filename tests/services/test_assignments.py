"""Assigning sessions, progress, completeness, submit, reopen and withdraw."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mbtcode.extensions import db
from mbtcode.models import Assignment, AuditEvent
from mbtcode.services import ServiceError
from mbtcode.services.assignments import (
    LockedError,
    assign_sessions,
    completeness,
    progress_for,
    rater_queue,
    reopen,
    required_ratings,
    study_assignments,
    submit,
    withdraw,
)
from mbtcode.services.coding import record_code, record_note
from mbtcode.services.ratings import record_rating
from tests.conftest import check_each, code_everything, rate_everything, row_counts

#: MBT-ACS: items 1, 4, 5 rated for competence only, 14 items for both, two overall ratings.
N_REQUIRED = 3 + 14 * 2 + 2


def _audit(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def _fresh(assignment) -> Assignment:
    db.session.expire_all()
    return db.session.get(Assignment, assignment.id)


@pytest.fixture
def w(coding_world):
    return coding_world


# --------------------------------------------------------------------------- assign


def test_assign_many_sessions_to_many_raters_at_once(w, make_session, make_user, make_member):
    s2, s3 = make_session(w.study), make_session(w.study)
    r3 = make_user("rater")
    make_member(w.study, r3, "rater")
    created = assign_sessions(w.study, [s2, s3], [w.rater_a, w.rater_b, r3], actor=w.coordinator)
    db.session.commit()
    assert sorted((a.session_id, a.rater_id) for a in created) == sorted(
        (s.id, r.id) for s in (s2, s3) for r in (w.rater_a, w.rater_b, r3))
    assert {a.status for a in created} == {"assigned"}
    events = _audit("assignment.create")[-6:]
    assert {e.actor_id for e in events} == {w.coordinator.id}
    assert sorted(e.entity_id for e in events) == sorted(a.id for a in created)


def test_only_raters_of_the_study_can_be_assigned(w):
    before = row_counts()

    def check(user):
        with pytest.raises(ServiceError, match="is not a rater"):
            assign_sessions(w.study, [w.session], [user], actor=w.coordinator)
        db.session.rollback()
        assert row_counts() == before

    check_each([w.analyst, w.coordinator, w.admin, w.outsider], check)


def test_a_rater_of_another_study_cannot_be_assigned(w, make_user, make_member):
    user = make_user("rater")
    make_member(w.other_study, user, "rater")
    with pytest.raises(ServiceError, match="is not a rater"):
        assign_sessions(w.study, [w.session], [user], actor=w.coordinator)


def test_one_bad_rater_refuses_the_whole_batch(w, make_session, make_user):
    s2 = make_session(w.study)
    outsider = make_user("rater")
    with pytest.raises(ServiceError):
        assign_sessions(w.study, [s2], [w.rater_a, outsider], actor=w.coordinator)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).where(Assignment.session_id == s2.id)) == 0


def test_sessions_of_another_study_are_refused(w):
    with pytest.raises(ServiceError, match="another study"):
        assign_sessions(w.study, [w.other_session], [w.rater_a], actor=w.coordinator)
    db.session.rollback()
    assert db.session.scalar(
        select(func.count()).where(Assignment.session_id == w.other_session.id)) == 0


def test_nothing_chosen_is_refused(w):
    def check(case):
        with pytest.raises(ServiceError, match="at least one"):
            assign_sessions(w.study, *case, actor=w.coordinator)

    check_each([([], [w.rater_a]), ([w.session], []), ([], [])], check)


def test_assigning_again_is_idempotent(w):
    before, n_audit = row_counts(), len(_audit("assignment.create"))
    created = assign_sessions(w.study, [w.session], [w.rater_a, w.rater_b], actor=w.coordinator)
    db.session.commit()
    assert created == []
    assert row_counts() == before
    assert len(_audit("assignment.create")) == n_audit


def test_assigning_again_leaves_a_submitted_assignment_locked(w):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    submit(w.a, actor=w.rater_a)
    db.session.commit()
    assign_sessions(w.study, [w.session], [w.rater_a], actor=w.coordinator)
    db.session.commit()
    assert _fresh(w.a).status == "submitted"


def test_a_withdrawn_assignment_is_revived_with_its_work(w):
    record_code(w.a, w.utterance(1), "EV", expected_version=0, actor=w.rater_a)
    withdraw(w.a, actor=w.coordinator, reason="rater on leave")
    db.session.commit()
    created = assign_sessions(w.study, [w.session], [w.rater_a], actor=w.coordinator)
    db.session.commit()
    assert [a.id for a in created] == [w.a.id]
    assert _fresh(w.a).status == "assigned"
    assert progress_for([_fresh(w.a)])[w.a.id].coded == 1
    assert _audit("assignment.create")[-1].entity_id == w.a.id


# --------------------------------------------------------------------------- progress


def test_required_ratings_of_mbt_acs(w):
    needed = required_ratings(w.study)
    assert len(needed) == N_REQUIRED
    for item in ("1", "4", "5"):
        assert ("mbt-acs", item, "competence") in needed
        assert ("mbt-acs", item, "adherence") not in needed
    assert ("mbt-acs", "2", "adherence") in needed and ("mbt-acs", "17", "competence") in needed
    assert ("mbt-acs", "overall_adherence", "adherence") in needed
    assert ("mbt-acs", "overall_competence", "competence") in needed


def test_progress_of_a_new_assignment(w):
    p = progress_for([w.a])[w.a.id]
    # Six utterances, one of them by an "other" speaker, which is not coded.
    assert (p.coded, p.codable, p.rated, p.ratable) == (0, 5, 0, N_REQUIRED)
    assert p.percent == 0 and not p.started


def test_progress_counts_codes_and_ratings(w):
    record_code(w.a, w.utterance(1), "EV", expected_version=0, actor=w.rater_a)
    record_code(w.a, w.utterance(2), "PE", expected_version=0, actor=w.rater_a)
    record_rating(w.a, "mbt-acs", "2", "adherence", "5", expected_version=0, actor=w.rater_a)
    record_rating(w.a, "mbt-acs", "3", "adherence", "na", expected_version=0, actor=w.rater_a)
    db.session.commit()
    p = progress_for([w.a])[w.a.id]
    assert (p.coded, p.codable, p.rated, p.ratable) == (2, 5, 2, N_REQUIRED)
    assert p.percent == round(100 * 4 / (5 + N_REQUIRED))
    assert p.started


def test_progress_ignores_cleared_codes_and_note_only_rows(w):
    row = record_code(w.a, w.utterance(1), "EV", expected_version=0, actor=w.rater_a)
    record_code(w.a, w.utterance(1), None, expected_version=row.version, actor=w.rater_a)
    record_note(w.a, w.utterance(3), "think again", expected_version=0, actor=w.rater_a)
    record_rating(w.a, "mbt-acs", "2", "adherence", "", expected_version=0, actor=w.rater_a)
    db.session.commit()
    p = progress_for([w.a])[w.a.id]
    assert (p.coded, p.rated) == (0, 0)


def test_progress_is_per_assignment(w):
    record_code(w.b, w.utterance(1), "EV", expected_version=0, actor=w.rater_b)
    db.session.commit()
    progress = progress_for([w.a, w.b])
    assert (progress[w.a.id].coded, progress[w.b.id].coded) == (0, 1)


def test_progress_of_a_fully_done_assignment_is_100(w):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    assert progress_for([w.a])[w.a.id].percent == 100


def test_progress_of_nothing(app):
    assert progress_for([]) == {}


# --------------------------------------------------------------------------- completeness


def test_completeness_of_a_new_assignment(w):
    state = completeness(w.a)
    assert len(state.missing_ratings) == N_REQUIRED
    assert state.missing_ratings == required_ratings(w.study)  # in form order
    assert state.uncoded_positions == [1, 2, 3, 4, 6]  # 5 is the "other" speaker
    assert not state.complete


def test_items_1_4_5_need_competence_only(w):
    rate_everything(w.a, w.rater_a, skip={("1", "competence"), ("2", "adherence")})
    assert completeness(w.a).missing_ratings == [
        ("mbt-acs", "1", "competence"), ("mbt-acs", "2", "adherence")]


def test_overall_ratings_are_required(w):
    rate_everything(w.a, w.rater_a, skip={("overall_adherence", "adherence"),
                                          ("overall_competence", "competence")})
    assert completeness(w.a).missing_ratings == [
        ("mbt-acs", "overall_adherence", "adherence"),
        ("mbt-acs", "overall_competence", "competence")]


def test_not_applicable_counts_as_rated(w):
    rate_everything(w.a, w.rater_a, "na")
    assert completeness(w.a).missing_ratings == []


def test_a_cleared_rating_is_missing_again(w):
    rate_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a, "", skip={(i, d) for _, i, d in required_ratings(w.study)
                                               if i != "7" or d != "competence"})
    assert completeness(w.a).missing_ratings == [("mbt-acs", "7", "competence")]


def test_uncoded_positions_exclude_coded_ones(w):
    code_everything(w.a, w.rater_a, skip=(3, 6))
    assert completeness(w.a).uncoded_positions == [3, 6]


def test_completeness_ignores_the_other_raters_work(w):
    code_everything(w.b, w.rater_b)
    rate_everything(w.b, w.rater_b)
    state = completeness(w.a)
    assert len(state.missing_ratings) == N_REQUIRED and len(state.uncoded_positions) == 5


def test_complete_when_everything_is_coded_and_rated(w):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    assert completeness(w.a).complete


# --------------------------------------------------------------------------- submit


def test_incomplete_submit_changes_nothing(w):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a, skip={("9", "adherence")})
    state = submit(w.a, actor=w.rater_a)
    db.session.commit()
    assert state.missing_ratings == [("mbt-acs", "9", "adherence")]
    assert _fresh(w.a).status == "assigned" and _fresh(w.a).submitted_at is None
    assert _audit("assignment.submit") == []


def test_submit_with_uncoded_utterances_needs_allow_uncoded(w):
    code_everything(w.a, w.rater_a, skip=(4,))
    rate_everything(w.a, w.rater_a)
    assert submit(w.a, actor=w.rater_a).uncoded_positions == [4]
    assert _fresh(w.a).status == "assigned"


def test_allow_uncoded_submits_and_records_how_many(w):
    code_everything(w.a, w.rater_a, skip=(4, 6))
    rate_everything(w.a, w.rater_a)
    assert submit(w.a, actor=w.rater_a, allow_uncoded=True).complete
    db.session.commit()
    assert _fresh(w.a).status == "submitted"
    assert _audit("assignment.submit")[0].detail["uncoded"] == 2


def test_allow_uncoded_does_not_excuse_missing_ratings(w):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a, skip={("overall_competence", "competence")})
    state = submit(w.a, actor=w.rater_a, allow_uncoded=True)
    assert state.missing_ratings and _fresh(w.a).status == "assigned"


def test_submit_locks_and_is_audited(w):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    assert submit(w.a, actor=w.rater_a).complete
    db.session.commit()
    a = _fresh(w.a)
    assert a.status == "submitted" and a.locked and a.submitted_at is not None
    (event,) = _audit("assignment.submit")
    assert (event.actor_id, event.entity_id) == (w.rater_a.id, a.id)
    assert (event.detail["old"], event.detail["new"]) == ("assigned", "submitted")


def test_second_submit_is_a_no_op_with_one_audit_row(w):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    submit(w.a, actor=w.rater_a)
    db.session.commit()
    first = _fresh(w.a).submitted_at
    assert submit(_fresh(w.a), actor=w.rater_a).complete
    db.session.commit()
    assert _fresh(w.a).submitted_at == first
    assert len(_audit("assignment.submit")) == 1


def test_a_withdrawn_assignment_cannot_be_submitted(w):
    withdraw(w.a, actor=w.coordinator, reason="wrong rater")
    with pytest.raises(LockedError):
        submit(w.a, actor=w.rater_a)


def test_submitting_one_rater_does_not_lock_the_other(w):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    submit(w.a, actor=w.rater_a)
    db.session.commit()
    assert _fresh(w.b).status == "assigned"
    record_code(_fresh(w.b), w.utterance(1), "SUP", expected_version=0, actor=w.rater_b)


# --------------------------------------------------------------------------- reopen, withdraw


@pytest.fixture
def submitted(w):
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    submit(w.a, actor=w.rater_a)
    db.session.commit()
    return _fresh(w.a)


def test_reopen_needs_a_reason(w, submitted):
    def check(reason):
        with pytest.raises(ServiceError, match="reason"):
            reopen(_fresh(w.a), actor=w.coordinator, reason=reason)
        db.session.rollback()
        assert _fresh(w.a).status == "submitted"

    check_each(["", "   ", "ab", None, "x" * 2001], check)
    assert _audit("assignment.reopen") == []


def test_reopen_needs_a_submitted_assignment(w):
    with pytest.raises(ServiceError, match="only a submitted"):
        reopen(w.a, actor=w.coordinator, reason="please recheck item 3")
    assert _audit("assignment.reopen") == []


def test_reopen_unlocks_and_keeps_the_reason(w, submitted):
    reopen(submitted, actor=w.coordinator, reason="  please recheck item 3 ")
    db.session.commit()
    a = _fresh(w.a)
    assert (a.status, a.submitted_at, a.reopen_reason) == ("assigned", None, "please recheck item 3")
    (event,) = _audit("assignment.reopen")
    assert (event.actor_id, event.reason) == (w.coordinator.id, "please recheck item 3")
    assert (event.detail["old"], event.detail["new"]) == ("submitted", "assigned")


def test_the_rater_can_edit_again_after_reopen(w, submitted):
    with pytest.raises(LockedError):
        record_code(submitted, w.utterance(1), "SUP", expected_version=1, actor=w.rater_a)
    db.session.rollback()
    reopen(_fresh(w.a), actor=w.coordinator, reason="please recheck item 3")
    db.session.commit()
    row = record_code(_fresh(w.a), w.utterance(1), "SUP", expected_version=1, actor=w.rater_a)
    db.session.commit()
    assert (row.code, row.version) == ("SUP", 2)


def test_submit_after_reopen_is_audited_again(w, submitted):
    reopen(submitted, actor=w.coordinator, reason="recheck")
    db.session.commit()
    assert submit(_fresh(w.a), actor=w.rater_a).complete
    db.session.commit()
    assert _fresh(w.a).status == "submitted"
    assert len(_audit("assignment.submit")) == 2


def test_withdraw_needs_a_reason(w):
    def check(reason):
        with pytest.raises(ServiceError, match="reason"):
            withdraw(_fresh(w.a), actor=w.coordinator, reason=reason)
        db.session.rollback()
        assert _fresh(w.a).status == "assigned"

    check_each(["", "  ", "no", None], check)


def test_withdraw_hides_the_assignment_but_keeps_the_work(w):
    record_code(w.a, w.utterance(1), "EV", expected_version=0, actor=w.rater_a)
    withdraw(w.a, actor=w.coordinator, reason="rater left the study")
    db.session.commit()
    assert _fresh(w.a).status == "withdrawn"
    assert rater_queue(w.rater_a) == []
    assert progress_for([_fresh(w.a)])[w.a.id].coded == 1
    (event,) = _audit("assignment.withdraw")
    assert (event.reason, event.detail) == ("rater left the study",
                                            {"old": "assigned", "new": "withdrawn"})


def test_withdrawing_twice_is_audited_once(w):
    withdraw(w.a, actor=w.coordinator, reason="rater left")
    withdraw(_fresh(w.a), actor=w.coordinator, reason="double click")
    db.session.commit()
    assert len(_audit("assignment.withdraw")) == 1


def test_a_withdrawn_assignment_cannot_be_coded(w):
    withdraw(w.a, actor=w.coordinator, reason="rater left")
    with pytest.raises(LockedError, match="withdrawn"):
        record_code(w.a, w.utterance(1), "EV", expected_version=0, actor=w.rater_a)


# --------------------------------------------------------------------------- lists


def test_rater_queue_lists_open_then_submitted_and_only_the_raters_own(w, make_session,
                                                                        make_assignment):
    s2 = make_session(w.study)
    a2 = make_assignment(s2, w.rater_a)
    code_everything(w.a, w.rater_a)
    rate_everything(w.a, w.rater_a)
    submit(w.a, actor=w.rater_a)
    db.session.commit()
    assert [a.id for a in rater_queue(w.rater_a)] == [a2.id, w.a.id]
    assert [a.id for a in rater_queue(w.rater_b)] == [w.b.id]


def test_study_assignments_lists_the_studys_assignments(w, make_session, make_assignment):
    other = make_assignment(w.other_session, w.rater_a)
    assert [a.id for a in study_assignments(w.study)] == [w.a.id, w.b.id]
    assert [a.id for a in study_assignments(w.other_study)] == [other.id]


def test_a_submitted_assignment_cannot_be_withdrawn(w, submitted):
    """Submitted work stays counted: withdrawing it is refused until it is reopened."""
    with pytest.raises(ServiceError, match="reopen it first"):
        withdraw(_fresh(w.a), actor=w.coordinator, reason="rater left the study")
    db.session.rollback()
    assert _fresh(w.a).status == "submitted"
    assert _audit("assignment.withdraw") == []
