"""Adjudication: readiness (blinding), who may adjudicate, the consensus and its provenance,
versions, finalize/reopen/discard, the queue, and the raters' codings left untouched."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mbtcode.extensions import db
from mbtcode.models import (
    Assignment,
    AuditEvent,
    Consensus,
    ConsensusCode,
    ConsensusRating,
    GoldStandard,
    ItemRating,
    ItemRationale,
    UtteranceCode,
)
from mbtcode.services import ServiceError
from mbtcode.services.adjudication import (
    NotReady,
    adjudication_queue,
    compare,
    consensus_for,
    discard,
    finalize,
    may_adjudicate,
    rater_labels,
    readiness,
    reopen,
    resolve_code,
    resolve_rating,
    start,
)
from mbtcode.services.assignments import (
    ConflictError,
    LockedError,
    assign_sessions,
    codable_roles,
    required_ratings,
    submit,
)
from mbtcode.services.assignments import reopen as reopen_assignment
from mbtcode.services.coding import InvalidInput
from mbtcode.services.double_coding import update_settings
from mbtcode.services.permissions import add_member
from mbtcode.services.sessions import all_utterances
from tests.conftest import check_each, row_counts

#: Utterance positions of the coding world: 1 T, 2 P, 3 T, 4 P, 5 other (not coded), 6 T.
CODES_A = {1: "EV", 2: "PM", 3: "SUP", 4: "PE", 6: "EV"}
CODES_B = {1: "EV", 2: "PM", 3: "CLA", 6: "EV"}  # 4 left uncoded
#: Ratings that differ from the common 4: A's and B's values.
RATINGS_A = {("2", "adherence"): "4", ("3", "adherence"): "4", ("4", "competence"): "4",
             ("5", "competence"): "na"}
RATINGS_B = {("2", "adherence"): "5", ("3", "adherence"): "6", ("4", "competence"): "na",
             ("5", "competence"): "na"}
CODE_DISAGREEMENTS = [3, 4]


@pytest.fixture
def w(coding_world):
    return coding_world


def _work(assignment, rater, codes: dict[int, str], ratings: dict, *, rationale: str = "",
          do_submit: bool = True) -> None:
    """Code (positions → codes), rate (4 but ``ratings``) and submit, writing the rows directly
    (the coding and rating services are tested elsewhere; this keeps the tests fast)."""
    roles = codable_roles(assignment.study)
    for u in all_utterances(assignment.session):
        if u.position in codes:
            db.session.add(UtteranceCode(assignment_id=assignment.id, utterance_id=u.id,
                                         code_set=roles[u.role], code=codes[u.position]))
    for instrument, item, dimension in required_ratings(assignment.study):
        raw = ratings.get((item, dimension), "4")
        db.session.add(ItemRating(assignment_id=assignment.id, instrument=instrument, item=item,
                                  dimension=dimension, value=None if raw == "na" else int(raw),
                                  not_applicable=raw == "na"))
    if rationale:
        db.session.add(ItemRationale(assignment_id=assignment.id, instrument="mbt-acs", item="2",
                                     text=rationale))
    db.session.commit()
    if do_submit:
        assert submit(assignment, actor=rater, allow_uncoded=True).complete
        db.session.commit()


@pytest.fixture
def done(w):
    """Both raters coded, rated and submitted the world's session."""
    _work(w.a, w.rater_a, CODES_A, RATINGS_A, rationale="A's reasons")
    _work(w.b, w.rater_b, CODES_B, RATINGS_B, rationale="B's reasons")
    return w


def _position(w, utterance_id: int) -> int:
    return next(u.position for u in w.utterances if u.id == utterance_id)


def _audit(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def _snapshot(assignments) -> dict:
    """Every column of the raters' rows (assignments, codes, ratings, rationales)."""
    ids = [a.id for a in assignments]
    db.session.expire_all()
    return {
        table.name: sorted(tuple(row) for row in db.session.execute(
            select(table).where((table.c.id if table is Assignment.__table__ else table.c.assignment_id)
                                .in_(ids))).all())
        for table in (Assignment.__table__, UtteranceCode.__table__, ItemRating.__table__,
                      ItemRationale.__table__)
    }


# --------------------------------------------------------------------------- readiness, blinding


def test_not_ready_until_every_rater_has_submitted(w):
    assert readiness(w.session) == "2 of 2 raters have not submitted yet"
    _work(w.a, w.rater_a, CODES_A, RATINGS_A)
    assert readiness(w.session) == "1 of 2 raters have not submitted yet"
    _work(w.b, w.rater_b, CODES_B, RATINGS_B)
    assert readiness(w.session) is None


def test_a_third_rater_still_coding_keeps_the_session_blind(done, make_user, make_member):
    third = make_user("rater")
    make_member(done.study, third, "rater")
    assign_sessions(done.study, [done.session], [third], actor=None)
    db.session.commit()
    assert readiness(done.session) == "1 of 3 raters have not submitted yet"
    assert adjudication_queue(done.study) == []


def test_nothing_is_opened_before_submission(w):
    _work(w.a, w.rater_a, CODES_A, RATINGS_A)
    before = row_counts()
    with pytest.raises(NotReady, match="not submitted"):
        start(w.session, actor=w.coordinator)
    db.session.rollback()
    assert row_counts() == before
    assert adjudication_queue(w.study) == []


def test_a_single_coded_session_is_not_adjudicated(w, make_session, make_assignment):
    single = make_session(w.study)
    a = make_assignment(single, w.rater_a)
    _work(a, w.rater_a, {1: "EV"}, {})
    assert readiness(single) == "the session is not double-coded"
    with pytest.raises(NotReady):
        start(single, actor=w.coordinator)


def test_a_withdrawn_assignment_does_not_block_or_count(w, make_user, make_member):
    from mbtcode.services.assignments import withdraw

    third = make_user("rater")
    make_member(w.study, third, "rater")
    (c,) = assign_sessions(w.study, [w.session], [third], actor=None)
    _work(w.a, w.rater_a, CODES_A, RATINGS_A)
    _work(w.b, w.rater_b, CODES_B, RATINGS_B)
    assert readiness(w.session) is not None
    withdraw(c, actor=w.coordinator, reason="rater left")
    db.session.commit()
    assert readiness(w.session) is None
    assert [a.id for a in compare(w.session).assignments] == [w.a.id, w.b.id]


def test_gold_sessions_are_not_adjudicated(done):
    db.session.add(GoldStandard(study_id=done.study.id, session_id=done.session.id,
                                assignment_id=done.a.id))
    db.session.commit()
    assert "gold-standard" in readiness(done.session)
    with pytest.raises(NotReady, match="gold"):
        start(done.session, actor=done.coordinator)
    assert adjudication_queue(done.study) == []


# --------------------------------------------------------------------------- who may adjudicate


def test_who_may_adjudicate(done, make_user, make_member):
    idle_rater = make_user("rater")
    make_member(done.study, idle_rater, "rater")
    assert may_adjudicate(done.session, done.coordinator)
    assert may_adjudicate(done.session, done.admin)
    for user in (done.rater_a, done.rater_b, idle_rater, done.analyst, done.outsider):
        assert not may_adjudicate(done.session, user), user.name


def test_a_coordinator_who_coded_the_session_may_not_adjudicate_it(done):
    add_member(done.study, done.rater_a, "coordinator", actor=None)  # promoted after coding
    db.session.commit()
    assert not may_adjudicate(done.session, done.rater_a)
    with pytest.raises(NotReady, match="you coded this session"):
        start(done.session, actor=done.rater_a)
    db.session.rollback()
    assert consensus_for(done.session) is None


def test_an_admin_who_coded_the_session_may_not_adjudicate_it(w, make_member):
    make_member(w.study, w.admin, "rater")
    (c,) = assign_sessions(w.study, [w.session], [w.admin], actor=None)
    db.session.commit()
    assert not may_adjudicate(w.session, w.admin)
    assert may_adjudicate(w.session, w.coordinator)


def test_only_adjudicators_may_change_a_consensus(done):
    consensus = start(done.session, actor=done.coordinator)
    db.session.commit()

    def check(user):
        with pytest.raises(NotReady):
            resolve_code(consensus, done.utterance(3).id, actor=user, pick=done.a.id)

    check_each([done.rater_a, done.rater_b, done.analyst, done.outsider], check)
    with pytest.raises(NotReady):
        finalize(consensus, actor=done.rater_a)
    with pytest.raises(NotReady):
        discard(consensus, actor=done.analyst, reason="not mine to discard")
    # another supervisor (the admin) may continue the coordinator's consensus
    row = resolve_code(consensus, done.utterance(3).id, actor=done.admin, pick=done.b.id)
    assert row.code == "CLA"


def test_an_adjudicator_who_lost_the_role_may_no_longer_change_the_consensus(done):
    consensus = start(done.session, actor=done.coordinator)
    add_member(done.study, done.coordinator, "analyst", actor=None)
    db.session.commit()
    with pytest.raises(NotReady):
        resolve_code(consensus, done.utterance(3).id, actor=done.coordinator, pick=done.a.id)
    with pytest.raises(NotReady):
        resolve_rating(consensus, "mbt-acs", "3", "adherence", actor=done.coordinator, pick=done.a.id)


def test_no_new_rater_joins_an_adjudicated_session(done, make_user, make_member):
    start(done.session, actor=done.coordinator)
    db.session.commit()
    third = make_user("rater")
    make_member(done.study, third, "rater")
    before = row_counts()
    with pytest.raises(ServiceError, match="already adjudicated"):
        assign_sessions(done.study, [done.session], [third], actor=done.coordinator)
    db.session.rollback()
    assert row_counts() == before


# --------------------------------------------------------------------------- comparison and start


def test_disagreements_are_listed_correctly(done):
    comparison = compare(done.session)
    assert [a.id for a in comparison.assignments] == [done.a.id, done.b.id]
    assert [u.utterance.position for u in comparison.codes] == [1, 2, 3, 4, 6]  # not the observer
    assert [u.utterance.position for u in comparison.code_disagreements] == CODE_DISAGREEMENTS
    by_position = {u.utterance.position: u for u in comparison.codes}
    assert by_position[3].codes == {done.a.id: "SUP", done.b.id: "CLA"}
    assert by_position[4].codes == {done.a.id: "PE", done.b.id: None}  # coded vs uncoded
    assert by_position[2].code_set == "nonmentalizing-modes"
    assert by_position[3].code_set == "intervention-spectrum"
    # threshold 0: every difference is a disagreement, N/A against a value too; N/A and N/A agree
    assert [(u.item, u.dimension) for u in comparison.rating_disagreements] == [
        ("2", "adherence"), ("3", "adherence"), ("4", "competence")]
    item4 = next(u for u in comparison.ratings if (u.item, u.dimension) == ("4", "competence"))
    assert item4.values == {done.a.id: 4.0, done.b.id: None}
    assert item4.not_applicable == {done.a.id: False, done.b.id: True}
    assert len(comparison.ratings) == len(required_ratings(done.study)) == 33
    assert comparison.n_disagreements == 5
    assert comparison.share == pytest.approx(5 / (5 + 33))
    assert comparison.unresolved == 5 and comparison.consensus is None


def test_start_prefills_what_the_raters_agree_on(done):
    consensus = start(done.session, actor=done.coordinator)
    db.session.commit()
    assert (consensus.status, consensus.adjudicator_id, consensus.session_id) == \
        ("open", done.coordinator.id, done.session.id)
    codes = {_position(done, r.utterance_id): r for r in db.session.scalars(
        select(ConsensusCode).where(ConsensusCode.consensus_id == consensus.id))}
    assert {p: (r.code, r.basis, r.source_assignment_id) for p, r in codes.items()} == {
        1: ("EV", "agreement", None), 2: ("PM", "agreement", None), 6: ("EV", "agreement", None)}
    ratings = {(r.item, r.dimension): r for r in db.session.scalars(
        select(ConsensusRating).where(ConsensusRating.consensus_id == consensus.id))}
    assert len(ratings) == 33 - 3
    assert all(r.basis == "agreement" for r in ratings.values())
    assert (ratings[("5", "competence")].value, ratings[("5", "competence")].not_applicable) == (None, True)
    assert (ratings[("1", "competence")].value, ratings[("1", "competence")].not_applicable) == (4.0, False)
    assert compare(done.session).unresolved == 5
    (event,) = _audit("consensus.start")
    assert event.detail == {"session_id": done.session.id, "assignments": [done.a.id, done.b.id],
                            "disagreements": 5}
    # starting again returns the same consensus and writes nothing
    before = row_counts()
    assert start(done.session, actor=done.coordinator).id == consensus.id
    assert row_counts() == before


def test_ratings_within_the_threshold_resolve_to_the_mean(done):
    update_settings(done.study, {"rating_threshold": 1}, actor=done.coordinator)
    comparison = compare(done.session)
    assert [(u.item, u.dimension) for u in comparison.rating_disagreements] == [
        ("3", "adherence"), ("4", "competence")]  # 4 vs 5 is within one; 4 vs 6 and N/A are not
    consensus = start(done.session, actor=done.coordinator)
    row = db.session.scalar(select(ConsensusRating).where(
        ConsensusRating.consensus_id == consensus.id, ConsensusRating.item == "2",
        ConsensusRating.dimension == "adherence"))
    assert (row.value, row.not_applicable, row.basis, row.source_assignment_id) == \
        (4.5, False, "within_threshold", None)
    assert compare(done.session).unresolved == 2 + 2


# --------------------------------------------------------------------------- resolving


@pytest.fixture
def consensus(done):
    c = start(done.session, actor=done.coordinator)
    db.session.commit()
    return c


def test_resolve_code_by_picking_a_rater(done, consensus):
    u3 = done.utterance(3)
    row = resolve_code(consensus, u3.id, actor=done.coordinator, pick=done.b.id,
                       note="clarification, not support", expected_version=0)
    db.session.commit()
    assert (row.code, row.basis, row.source_assignment_id, row.note, row.code_set) == \
        ("CLA", "picked", done.b.id, "clarification, not support", "intervention-spectrum")
    event = _audit("consensus.code")[-1]
    assert event.actor_id == done.coordinator.id
    assert event.detail == {"consensus_id": consensus.id, "position": 3, "old": None, "new": {
        "code": "CLA", "basis": "picked", "source_assignment_id": done.b.id,
        "note": "clarification, not support"}}


def test_resolve_code_by_entering_another_code_or_none(done, consensus):
    u3, u4 = done.utterance(3), done.utterance(4)
    row = resolve_code(consensus, u3.id, actor=done.coordinator, code="EXP", note="neither")
    assert (row.code, row.basis, row.source_assignment_id, row.note) == ("EXP", "entered", None, "neither")
    row4 = resolve_code(consensus, u4.id, actor=done.coordinator, code=None, note="not codable")
    assert (row4.code, row4.basis) == (None, "entered")
    # picking the rater who left it uncoded is a pick of "no code"
    row4 = resolve_code(consensus, u4.id, actor=done.coordinator, pick=done.b.id,
                        expected_version=row4.version)
    assert (row4.code, row4.basis, row4.source_assignment_id) == (None, "picked", done.b.id)
    db.session.commit()
    assert compare(done.session).unresolved == 3  # the three ratings


def test_bad_code_resolutions_are_refused(done, consensus, make_assignment):
    other = make_assignment(done.other_session, done.rater_a)
    cases = [
        (done.utterance(3).id, {"code": "PM"}, "not a code of"),  # a patient code on a therapist turn
        (done.utterance(3).id, {"code": "NOPE"}, "not a code of"),
        (done.utterance(3).id, {"pick": other.id}, "pick the value of one of this session's raters"),
        (done.utterance(1).id, {"code": "SUP"}, "the raters agree"),
        (done.utterance(5).id, {"code": "EV"}, "not a codable utterance"),  # the observer's turn
        (done.other_session and 987654, {"code": "EV"}, "not a codable utterance"),
        (done.utterance(3).id, {"code": "EV", "note": "x" * 10_001}, "too long"),
    ]
    before = row_counts()

    def check(case):
        utterance_id, kwargs, message = case
        with pytest.raises(InvalidInput, match=message):
            resolve_code(consensus, utterance_id, actor=done.coordinator, **kwargs)
        db.session.rollback()
        assert row_counts() == before

    check_each(cases, check)


def test_resolve_rating_by_picking_or_entering(done, consensus):
    row = resolve_rating(consensus, "mbt-acs", "3", "adherence", actor=done.coordinator,
                         pick=done.b.id, note="B saw the mentalizing stance")
    assert (row.value, row.not_applicable, row.basis, row.source_assignment_id, row.note) == \
        (6.0, False, "picked", done.b.id, "B saw the mentalizing stance")
    na = resolve_rating(consensus, "mbt-acs", "4", "competence", actor=done.coordinator, pick=done.b.id)
    assert (na.value, na.not_applicable, na.basis) == (None, True, "picked")
    entered = resolve_rating(consensus, "mbt-acs", "2", "adherence", actor=done.coordinator,
                             raw_value="3", note="both too high")
    assert (entered.value, entered.not_applicable, entered.basis, entered.source_assignment_id) == \
        (3.0, False, "entered", None)
    entered = resolve_rating(consensus, "mbt-acs", "2", "adherence", actor=done.coordinator,
                             raw_value="na", expected_version=entered.version)
    assert (entered.value, entered.not_applicable, entered.basis) == (None, True, "entered")
    db.session.commit()
    event = _audit("consensus.rating")[-1]
    assert event.detail["item"] == "mbt-acs:2:adherence"
    assert event.detail["old"] == {"value": 3.0, "not_applicable": False, "basis": "entered",
                                   "note": "both too high"}
    assert event.detail["new"] == {"value": None, "not_applicable": True, "basis": "entered",
                                   "source_assignment_id": None, "note": ""}
    assert compare(done.session).unresolved == 2  # the two codes


def test_bad_rating_resolutions_are_refused(done, consensus):
    cases = [
        (("mbt-acs", "3", "adherence"), {"raw_value": "9"}, "outside the scale"),
        (("mbt-acs", "3", "adherence"), {"raw_value": "0"}, "outside the scale"),
        (("mbt-acs", "3", "adherence"), {"raw_value": "4.5"}, "whole number"),
        (("mbt-acs", "3", "adherence"), {"raw_value": ""}, "enter a rating"),
        (("mbt-acs", "3", "adherence"), {}, "enter a rating"),
        (("mbt-acs", "3", "adherence"), {"pick": 987654}, "pick the value"),
        (("mbt-acs", "1", "competence"), {"raw_value": "5"}, "the raters agree"),
        (("mbt-acs", "1", "adherence"), {"raw_value": "5"}, "not a rating of this study"),
        (("mbt-acs", "99", "adherence"), {"raw_value": "5"}, "not a rating of this study"),
        (("other", "3", "adherence"), {"raw_value": "5"}, "not a rating of this study"),
    ]
    before = row_counts()

    def check(case):
        key, kwargs, message = case
        with pytest.raises(InvalidInput, match=message):
            resolve_rating(consensus, *key, actor=done.coordinator, **kwargs)
        db.session.rollback()
        assert row_counts() == before

    check_each(cases, check)


def test_a_stale_version_is_a_conflict(done, consensus):
    u3 = done.utterance(3).id
    first = resolve_code(consensus, u3, actor=done.coordinator, pick=done.a.id, expected_version=0)
    db.session.commit()
    with pytest.raises(ConflictError) as caught:
        resolve_code(consensus, u3, actor=done.admin, pick=done.b.id, expected_version=0)
    assert caught.value.current.id == first.id
    db.session.rollback()
    assert db.session.get(ConsensusCode, first.id).code == "SUP"
    resolve_code(consensus, u3, actor=done.admin, pick=done.b.id, expected_version=first.version)
    rating = resolve_rating(consensus, "mbt-acs", "3", "adherence", actor=done.coordinator,
                            raw_value="5", expected_version=0)
    db.session.commit()
    with pytest.raises(ConflictError):
        resolve_rating(consensus, "mbt-acs", "3", "adherence", actor=done.coordinator,
                       raw_value="6", expected_version=rating.version - 1)
    with pytest.raises(ConflictError):  # someone resolved it first (the client saw nothing)
        resolve_rating(consensus, "mbt-acs", "3", "adherence", actor=done.coordinator,
                       raw_value="6", expected_version=0)


def _resolve_everything(w, consensus) -> None:
    resolve_code(consensus, w.utterance(3).id, actor=w.coordinator, pick=w.a.id)
    resolve_code(consensus, w.utterance(4).id, actor=w.coordinator, pick=w.a.id)
    for item, dimension in (("2", "adherence"), ("3", "adherence"), ("4", "competence")):
        resolve_rating(consensus, "mbt-acs", item, dimension, actor=w.coordinator, pick=w.b.id)
    db.session.commit()


def test_finalize_only_when_everything_is_resolved_then_locked(done, consensus):
    resolve_code(consensus, done.utterance(3).id, actor=done.coordinator, pick=done.a.id)
    with pytest.raises(ServiceError, match="4 disagreement"):
        finalize(consensus, actor=done.coordinator)
    db.session.rollback()
    assert db.session.get(Consensus, consensus.id).status == "open"
    _resolve_everything(done, consensus)
    finalize(consensus, actor=done.coordinator)
    db.session.commit()
    assert consensus.status == "final" and consensus.finalized_at is not None
    assert [e.detail for e in _audit("consensus.finalize")] == [{"old": "open", "new": "final"}]
    row = db.session.scalar(select(ConsensusCode).where(
        ConsensusCode.consensus_id == consensus.id, ConsensusCode.utterance_id == done.utterance(3).id))
    with pytest.raises(LockedError):
        resolve_code(consensus, done.utterance(3).id, actor=done.coordinator, pick=done.b.id,
                     expected_version=row.version)
    with pytest.raises(LockedError):
        resolve_rating(consensus, "mbt-acs", "3", "adherence", actor=done.coordinator, raw_value="2")
    with pytest.raises(LockedError):
        finalize(consensus, actor=done.coordinator)


def test_reopen_a_final_consensus_needs_a_reason(done, consensus):
    with pytest.raises(ServiceError, match="only a final consensus"):
        reopen(consensus, actor=done.coordinator, reason="look again")
    _resolve_everything(done, consensus)
    finalize(consensus, actor=done.coordinator)
    db.session.commit()

    def check(reason):
        with pytest.raises(ServiceError, match="reason"):
            reopen(consensus, actor=done.coordinator, reason=reason)
        db.session.rollback()
        assert db.session.get(Consensus, consensus.id).status == "final"

    check_each(["", " ", "ok", None], check)
    with pytest.raises(NotReady):
        reopen(consensus, actor=done.rater_a, reason="I want to change it")
    db.session.rollback()
    reopen(consensus, actor=done.coordinator, reason="second opinion on utterance 3")
    db.session.commit()
    assert (consensus.status, consensus.finalized_at) == ("open", None)
    (event,) = _audit("consensus.reopen")
    assert (event.reason, event.detail) == ("second opinion on utterance 3", {"old": "final", "new": "open"})
    row = resolve_code(consensus, done.utterance(3).id, actor=done.coordinator, code="ALT",
                       expected_version=1)
    assert row.code == "ALT"


def test_discard_removes_the_consensus_and_keeps_it_in_the_audit(done):
    update_settings(done.study, {"rating_threshold": 1}, actor=done.coordinator)
    consensus = start(done.session, actor=done.coordinator)
    db.session.commit()
    resolve_code(consensus, done.utterance(3).id, actor=done.coordinator, pick=done.b.id, note="b")
    resolve_rating(consensus, "mbt-acs", "3", "adherence", actor=done.coordinator, raw_value="5",
                   note="middle")
    db.session.commit()
    n_codes = db.session.scalar(select(func.count()).select_from(ConsensusCode))
    n_ratings = db.session.scalar(select(func.count()).select_from(ConsensusRating))
    with pytest.raises(ServiceError, match="reason"):
        discard(consensus, actor=done.coordinator, reason="")
    db.session.rollback()
    consensus_id = consensus.id
    discard(consensus, actor=done.coordinator, reason="rater A must recode")
    db.session.commit()
    assert db.session.get(Consensus, consensus_id) is None
    assert db.session.scalar(select(func.count()).select_from(ConsensusCode)) == 0
    assert db.session.scalar(select(func.count()).select_from(ConsensusRating)) == 0
    (event,) = _audit("consensus.discard")
    assert (event.reason, event.entity_id) == ("rater A must recode", consensus_id)
    detail = event.detail
    assert (detail["session_id"], detail["status"]) == (done.session.id, "open")
    assert len(detail["codes"]) == n_codes == 4 and len(detail["ratings"]) == n_ratings == 32
    assert detail["codes"][str(done.utterance(3).id)] == ["CLA", "picked", done.b.id, "b"]
    assert detail["codes"][str(done.utterance(1).id)] == ["EV", "agreement", None, ""]
    assert detail["ratings"]["mbt-acs:3:adherence"] == [5.0, False, "entered", None, "middle"]
    assert detail["ratings"]["mbt-acs:2:adherence"] == [4.5, False, "within_threshold", None, ""]
    assert detail["ratings"]["mbt-acs:5:competence"] == [None, True, "agreement", None, ""]
    # a new consensus starts afresh: the agreements only, the adjudicator's choices are gone
    fresh = start(done.session, actor=done.coordinator)
    assert fresh.status == "open"
    assert db.session.scalar(select(func.count()).select_from(ConsensusCode)) == 3
    assert compare(done.session).unresolved == 2 + 2


# --------------------------------------------------------------------------- independence


def test_the_raters_codings_are_untouched_by_adjudication(done):
    before = _snapshot([done.a, done.b])
    assert len(before["utterance_code"]) == 9 and len(before["item_rating"]) == 66
    consensus = start(done.session, actor=done.coordinator)
    resolve_code(consensus, done.utterance(3).id, actor=done.coordinator, code="EXP")
    resolve_code(consensus, done.utterance(4).id, actor=done.coordinator, pick=done.a.id)
    for item, dimension in (("2", "adherence"), ("3", "adherence"), ("4", "competence")):
        resolve_rating(consensus, "mbt-acs", item, dimension, actor=done.coordinator, raw_value="2")
    finalize(consensus, actor=done.coordinator)
    db.session.commit()
    assert _snapshot([done.a, done.b]) == before
    reopen(consensus, actor=done.coordinator, reason="another look")
    discard(consensus, actor=done.coordinator, reason="start over")
    db.session.commit()
    assert _snapshot([done.a, done.b]) == before


def test_an_assignment_with_a_consensus_cannot_be_reopened(done):
    start(done.session, actor=done.coordinator)
    db.session.commit()
    with pytest.raises(ServiceError, match="adjudicated consensus"):
        reopen_assignment(done.a, actor=done.coordinator, reason="fix a code")
    db.session.rollback()
    assert db.session.get(Assignment, done.a.id).status == "submitted"
    discard(consensus_for(done.session), actor=done.coordinator, reason="rater must recode")
    reopen_assignment(done.a, actor=done.coordinator, reason="fix a code")
    db.session.commit()
    assert db.session.get(Assignment, done.a.id).status == "assigned"
    assert readiness(done.session) == "1 of 2 raters have not submitted yet"


# --------------------------------------------------------------------------- labels and queue


def test_rater_labels_hide_names_unless_the_study_shows_them(done):
    assignments = compare(done.session).assignments
    assert rater_labels(done.study, assignments) == {done.a.id: "Rater 1", done.b.id: "Rater 2"}
    update_settings(done.study, {"hide_rater_names": False}, actor=done.coordinator)
    assert rater_labels(done.study, assignments) == {done.a.id: done.rater_a.name,
                                                     done.b.id: done.rater_b.name}


def test_queue_has_the_most_disagreement_first_and_final_last(done, make_session):
    # three more double-coded sessions (six codable turns each) with 0, 1 and 4 code disagreements
    lines = [f"[00:00:{i:02d}] {'T' if i % 2 == 0 else 'P'}: line {i} {{tag}}" for i in range(6)]
    sessions = {}
    for name, n_diff in (("none", 0), ("one", 1), ("four", 4)):
        session = make_session(done.study, [line.format(tag=name) for line in lines])
        a, b = assign_sessions(done.study, [session], [done.rater_a, done.rater_b], actor=None)
        db.session.commit()
        codes = {p: ("EV" if p % 2 == 1 else "PM") for p in range(1, 7)}
        other = dict(codes)
        for p in list(codes)[:n_diff]:
            other[p] = "SUP" if p % 2 == 1 else "PE"
        _work(a, done.rater_a, codes, {})
        _work(b, done.rater_b, other, {})
        sessions[name] = session
    not_ready = make_session(done.study)
    assign_sessions(done.study, [not_ready], [done.rater_a, done.rater_b], actor=None)
    db.session.commit()

    queue = adjudication_queue(done.study)
    labels = {s.id: name for name, s in sessions.items()} | {done.session.id: "world"}
    # shares: world 5/38, four 4/39, one 1/39, none 0/39
    assert [labels[r.session.id] for r in queue] == ["world", "four", "one", "none"]
    assert [r.disagreements for r in queue] == [5, 4, 1, 0]
    assert [r.units for r in queue] == [38, 39, 39, 39]
    assert all(r.raters == 2 and r.status == "to do" for r in queue)
    assert queue[0].share == pytest.approx(5 / 38)
    assert [r.share for r in queue] == sorted((r.share for r in queue), reverse=True)

    consensus = start(done.session, actor=done.coordinator)
    _resolve_everything(done, consensus)
    finalize(consensus, actor=done.coordinator)
    start(sessions["one"], actor=done.coordinator)
    db.session.commit()
    queue = adjudication_queue(done.study)
    assert [(labels[r.session.id], r.status) for r in queue] == [
        ("four", "to do"), ("one", "open"), ("none", "to do"), ("world", "final")]
