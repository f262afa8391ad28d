"""Gold-standard sessions: marking, unmarking, agreement with gold and certification."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import AuditEvent, GoldStandard, ItemRating, SampledSession, UtteranceCode
from mbtcode.services import ServiceError
from mbtcode.services.assignments import (
    assign_sessions,
    codable_roles,
    required_ratings,
    submit,
)
from mbtcode.services.coding import codes_by_utterance, record_code
from mbtcode.services.double_coding import update_settings
from mbtcode.services.gold import agreement_with_gold, gold_standards, mark_gold, unmark_gold
from mbtcode.services.ratings import ratings_of, record_rating
from mbtcode.services.sessions import all_utterances
from tests.conftest import check_each, row_counts

#: Twenty turns: ten therapist (intervention spectrum), ten patient (nonmentalizing modes).
LINES = [f"[00:00:{i:02d}] {'T' if i % 2 == 0 else 'P'}: turn {i}" for i in range(20)]

#: Gold and the trainee on the ten therapist turns: a 2×2 table [[4, 1], [1, 4]].
GOLD_T = ["EV"] * 5 + ["SUP"] * 5
TRAINEE_T = ["EV", "EV", "EV", "EV", "SUP", "EV", "SUP", "SUP", "SUP", "SUP"]
#: ... and on the ten patient turns: a 3×3 table with 7 agreements.
GOLD_P = ["PE", "PE", "PE", "PE", "PM", "PM", "PM", "TM", "TM", "TM"]
TRAINEE_P = ["PE", "PE", "PE", "PM", "PM", "PM", "TM", "TM", "TM", "PE"]

#: The trainee's ratings that differ from gold's 4 everywhere: rater − gold = +2, +1, −1, −3;
#: item 3 competence is N/A (left out).
TRAINEE_RATINGS = {("2", "adherence"): "6", ("2", "competence"): "5", ("3", "adherence"): "3",
                   ("3", "competence"): "na", ("overall_adherence", "adherence"): "1"}
N_REQUIRED = 33


def hand_kappa(a: list[str], b: list[str]) -> float:
    """Cohen's kappa from the definition: (po − pe) / (1 − pe)."""
    n = len(a)
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[c] * cb[c] for c in set(a) | set(b)) / n**2
    return (po - pe) / (1 - pe)


@dataclass
class GoldWorld:
    study: Any
    session: Any
    coordinator: Any
    expert: Any
    trainee: Any
    perfect: Any
    sloppy: Any
    assignments: dict  # user name → assignment


def _code(assignment, rater, therapist: list[str], patient: list[str], *, skip=()) -> None:
    """Code the therapist and patient turns in order (rows written directly: the coding
    service is tested in test_coding.py; this keeps the tests fast)."""
    roles = codable_roles(assignment.study)
    codes = {"therapist": iter(therapist), "patient": iter(patient)}
    for u in all_utterances(assignment.session):
        code = next(codes[u.role])
        if u.position not in skip:
            db.session.add(UtteranceCode(assignment_id=assignment.id, utterance_id=u.id,
                                         code_set=roles[u.role], code=code))
    db.session.commit()


def _rate(assignment, rater, changes: dict | None = None, default: str = "4") -> None:
    """Every required rating ``default`` but ``changes`` ((item, dimension) → "5" or "na")."""
    for instrument, item, dimension in required_ratings(assignment.study):
        raw = (changes or {}).get((item, dimension), default)
        db.session.add(ItemRating(assignment_id=assignment.id, instrument=instrument, item=item,
                                  dimension=dimension, value=None if raw == "na" else int(raw),
                                  not_applicable=raw == "na"))
    db.session.commit()


def _submit(assignment, rater) -> None:
    assert submit(assignment, actor=rater, allow_uncoded=True).complete
    db.session.commit()


@pytest.fixture
def g(make_study, make_session, make_user, make_member) -> GoldWorld:
    study = make_study("Training study")
    session = make_session(study, LINES)
    coordinator = make_user("coordinator", name="Cora")
    make_member(study, coordinator, "coordinator")
    people = {name: make_user("rater", name=name) for name in ("Expert", "Trainee", "Perfect", "Sloppy")}
    for person in people.values():
        make_member(study, person, "rater")
    created = assign_sessions(study, [session], list(people.values()), actor=None)
    db.session.commit()
    by_name = {a.rater.name: a for a in created}
    _code(by_name["Expert"], people["Expert"], GOLD_T, GOLD_P)
    _rate(by_name["Expert"], people["Expert"])
    _submit(by_name["Expert"], people["Expert"])
    return GoldWorld(study, session, coordinator, people["Expert"], people["Trainee"],
                     people["Perfect"], people["Sloppy"], by_name)


def _audit(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


# --------------------------------------------------------------------------- mark / unmark


def test_mark_gold_stores_the_expert_coding_and_audits(g):
    gold = mark_gold(g.session, g.assignments["Expert"], actor=g.coordinator)
    db.session.commit()
    assert (gold.study_id, gold.session_id, gold.assignment_id, gold.marked_by_id) == \
        (g.study.id, g.session.id, g.assignments["Expert"].id, g.coordinator.id)
    assert gold_standards(g.study) == [gold]
    (event,) = _audit("gold.mark")
    assert (event.actor_id, event.entity_id, event.study_id) == (g.coordinator.id, gold.id, g.study.id)
    assert event.detail == {"session_id": g.session.id, "old": None, "new": g.assignments["Expert"].id}


def test_only_a_submitted_assignment_of_the_session_can_be_gold(g, make_session, make_assignment):
    other = make_session(g.study)
    elsewhere = make_assignment(other, g.expert)
    elsewhere.status = "submitted"
    db.session.commit()
    before = row_counts()
    cases = [
        (g.assignments["Trainee"], "only a submitted coding"),  # still assigned
        (elsewhere, "an assignment of this session"),
    ]

    def check(case):
        assignment, message = case
        with pytest.raises(ServiceError, match=message):
            mark_gold(g.session, assignment, actor=g.coordinator)
        db.session.rollback()
        assert row_counts() == before

    check_each(cases, check)


def test_a_sampled_session_cannot_be_gold(g):
    from mbtcode.services.double_coding import draw_sample

    draw_sample(g.study, actor=None, seed=0, fraction=1.0)
    db.session.commit()
    assert db.session.scalar(select(SampledSession.session_id)) == g.session.id
    with pytest.raises(ServiceError, match="double-coding sample"):
        mark_gold(g.session, g.assignments["Expert"], actor=g.coordinator)
    db.session.rollback()
    assert gold_standards(g.study) == []


def test_marking_again_switches_the_gold_coding_and_audits_old_and_new(g, make_user):
    admin = make_user("admin")
    first = mark_gold(g.session, g.assignments["Expert"], actor=g.coordinator)
    mark_gold(g.session, g.assignments["Expert"], actor=admin)  # same: nothing to audit or stamp
    assert first.marked_by_id == g.coordinator.id
    _code(g.assignments["Perfect"], g.perfect, GOLD_T, GOLD_P)
    _rate(g.assignments["Perfect"], g.perfect)
    _submit(g.assignments["Perfect"], g.perfect)
    second = mark_gold(g.session, g.assignments["Perfect"], actor=admin)
    db.session.commit()
    assert second.id == first.id and second.assignment_id == g.assignments["Perfect"].id
    assert second.marked_by_id == admin.id  # who chose the current gold coding
    assert len(gold_standards(g.study)) == 1
    assert [(e.detail["old"], e.detail["new"]) for e in _audit("gold.mark")] == [
        (None, g.assignments["Expert"].id), (g.assignments["Expert"].id, g.assignments["Perfect"].id)]


def test_unmark_needs_a_reason_and_keeps_it_in_the_audit(g):
    gold = mark_gold(g.session, g.assignments["Expert"], actor=g.coordinator)
    db.session.commit()

    def check(reason):
        with pytest.raises(ServiceError, match="reason"):
            unmark_gold(gold, actor=g.coordinator, reason=reason)
        db.session.rollback()
        assert gold_standards(g.study) == [gold]

    check_each(["", "  ", "no", None, "x" * 2001], check)
    gold_id = gold.id
    unmark_gold(gold, actor=g.coordinator, reason="the expert recoded it")
    db.session.commit()
    assert gold_standards(g.study) == []
    assert db.session.get(GoldStandard, gold_id) is None
    (event,) = _audit("gold.unmark")
    assert (event.reason, event.entity_id) == ("the expert recoded it", gold_id)
    assert event.detail == {"session_id": g.session.id, "old": g.assignments["Expert"].id, "new": None}


# --------------------------------------------------------------------------- agreement with gold


def _trainee_done(g) -> None:
    a = g.assignments["Trainee"]
    _code(a, g.trainee, TRAINEE_T, TRAINEE_P)
    _rate(a, g.trainee, TRAINEE_RATINGS)
    _submit(a, g.trainee)


def test_no_gold_no_figures(g):
    _trainee_done(g)
    assert agreement_with_gold(g.study) == []


def test_kappa_and_agreement_per_code_set_on_a_hand_worked_example(g):
    mark_gold(g.session, g.assignments["Expert"], actor=g.coordinator)
    _trainee_done(g)
    (result,) = agreement_with_gold(g.study)
    assert result.rater.id == g.trainee.id and result.sessions == 1
    assert set(result.code_sets) == {"intervention-spectrum", "nonmentalizing-modes"}
    t = result.code_sets["intervention-spectrum"]
    assert t["n_units"] == 10 and t["agreement"] == pytest.approx(0.8)
    assert t["kappa"].estimate == pytest.approx(0.6)  # (0.8 − 0.5) / (1 − 0.5)
    assert t["kappa"].estimate == pytest.approx(hand_kappa(GOLD_T, TRAINEE_T))
    p = result.code_sets["nonmentalizing-modes"]
    assert p["n_units"] == 10 and p["agreement"] == pytest.approx(0.7)
    assert p["kappa"].estimate == pytest.approx((0.7 - 0.34) / (1 - 0.34))
    assert p["kappa"].estimate == pytest.approx(hand_kappa(GOLD_P, TRAINEE_P))
    assert t["kappa"].ci_low < t["kappa"].estimate < t["kappa"].ci_high


def test_only_utterances_both_coded_are_compared(g):
    mark_gold(g.session, g.assignments["Expert"], actor=g.coordinator)
    a = g.assignments["Trainee"]
    _code(a, g.trainee, TRAINEE_T, TRAINEE_P, skip=(1, 3))  # first two therapist turns uncoded
    _rate(a, g.trainee)
    _submit(a, g.trainee)
    (result,) = agreement_with_gold(g.study)
    t = result.code_sets["intervention-spectrum"]
    assert t["n_units"] == 8
    assert t["kappa"].estimate == pytest.approx(hand_kappa(GOLD_T[2:], TRAINEE_T[2:]))
    assert result.code_sets["nonmentalizing-modes"]["n_units"] == 10


def test_rating_bias_is_the_mean_signed_difference_from_gold(g):
    mark_gold(g.session, g.assignments["Expert"], actor=g.coordinator)
    _trainee_done(g)
    (result,) = agreement_with_gold(g.study)
    diffs = [2, 1, -1, -3] + [0] * (N_REQUIRED - 5)  # the N/A item is left out
    r = result.ratings
    assert r.n == 32
    assert r.bias == pytest.approx(sum(diffs) / 32) == pytest.approx(-1 / 32)
    assert r.mean_abs == pytest.approx(7 / 32)
    assert r.exact == pytest.approx(28 / 32)
    assert r.within_one == pytest.approx(30 / 32)
    items = result.items
    assert len(items) == 32 and ("mbt-acs", "3", "competence") not in items
    assert vars(items[("mbt-acs", "2", "adherence")]) == \
        {"n": 1, "bias": 2.0, "mean_abs": 2.0, "exact": 0.0, "within_one": 0.0}
    assert vars(items[("mbt-acs", "2", "competence")]) == \
        {"n": 1, "bias": 1.0, "mean_abs": 1.0, "exact": 0.0, "within_one": 1.0}
    assert items[("mbt-acs", "overall_adherence", "adherence")].bias == -3.0
    assert items[("mbt-acs", "5", "competence")].bias == 0.0


def test_gold_not_applicable_leaves_the_item_out(g):
    expert = g.assignments["Expert"]
    from mbtcode.services.assignments import reopen

    reopen(expert, actor=g.coordinator, reason="expert revises")
    row = ratings_of(expert)[("mbt-acs", "2", "adherence")]
    record_rating(expert, "mbt-acs", "2", "adherence", "na", expected_version=row.version, actor=g.expert)
    _submit(expert, g.expert)
    mark_gold(g.session, expert, actor=g.coordinator)
    _trainee_done(g)
    (result,) = agreement_with_gold(g.study)
    assert result.ratings.n == 31 and ("mbt-acs", "2", "adherence") not in result.items
    assert result.ratings.bias == pytest.approx((1 - 1 - 3) / 31)


def test_certification_statuses(g):
    mark_gold(g.session, g.assignments["Expert"], actor=g.coordinator)
    _trainee_done(g)
    perfect = g.assignments["Perfect"]
    _code(perfect, g.perfect, GOLD_T, GOLD_P)
    _rate(perfect, g.perfect, {("2", "adherence"): "5"})
    _submit(perfect, g.perfect)
    sloppy = g.assignments["Sloppy"]
    _code(sloppy, g.sloppy, GOLD_T, GOLD_P)
    _rate(sloppy, g.sloppy, default="6")  # two points above gold everywhere
    _submit(sloppy, g.sloppy)
    results = {r.rater.name: r for r in agreement_with_gold(g.study)}
    assert list(results) == ["Perfect", "Sloppy", "Trainee"]  # by name; the expert is gold
    assert (results["Perfect"].status, results["Perfect"].reasons) == ("certified", [])
    assert results["Perfect"].code_sets["intervention-spectrum"]["kappa"].estimate == pytest.approx(1.0)
    assert results["Trainee"].status == "not certified"
    assert results["Trainee"].reasons == [
        "Therapist interventions (MBT intervention spectrum): kappa 0.60 < 0.70",
        "Patient mentalizing (nonmentalizing modes): kappa 0.55 < 0.70"]
    assert results["Sloppy"].status == "not certified"
    assert results["Sloppy"].reasons == ["ratings within one point 0% < 80%"]
    assert results["Sloppy"].ratings.bias == pytest.approx(2.0)
    # a more lenient criterion certifies the trainee
    update_settings(g.study, {"certify_min_kappa": 0.5}, actor=g.coordinator)
    results = {r.rater.name: r for r in agreement_with_gold(g.study)}
    assert (results["Trainee"].status, results["Trainee"].reasons) == ("certified", [])


def test_fewer_gold_sessions_than_required_is_incomplete(g):
    update_settings(g.study, {"certify_min_sessions": 2}, actor=g.coordinator)
    mark_gold(g.session, g.assignments["Expert"], actor=g.coordinator)
    perfect = g.assignments["Perfect"]
    _code(perfect, g.perfect, GOLD_T, GOLD_P)
    _rate(perfect, g.perfect)
    _submit(perfect, g.perfect)
    (result,) = agreement_with_gold(g.study)
    assert (result.status, result.reasons) == ("incomplete", ["1 of 2 gold session(s) submitted"])


def test_a_kappa_that_cannot_be_estimated_is_a_reason(g):
    """Gold and a rater who both used one code only on a code set: kappa is undefined."""
    mark_gold(g.session, g.assignments["Expert"], actor=g.coordinator)
    db.session.commit()
    # rebuild gold's patient codes as a single code; the perfect rater copies them
    from mbtcode.services.assignments import reopen

    expert = g.assignments["Expert"]
    reopen(expert, actor=g.coordinator, reason="expert revises")
    rows = codes_by_utterance(expert)
    for u in all_utterances(g.session):
        if u.role == "patient":
            record_code(expert, u, "PE", expected_version=rows[u.id].version, actor=g.expert)
    _submit(expert, g.expert)
    perfect = g.assignments["Perfect"]
    _code(perfect, g.perfect, GOLD_T, ["PE"] * 10)
    _rate(perfect, g.perfect)
    _submit(perfect, g.perfect)
    (result,) = agreement_with_gold(g.study)
    kappa = result.code_sets["nonmentalizing-modes"]["kappa"]
    assert kappa.estimate is None and kappa.reason
    assert result.code_sets["nonmentalizing-modes"]["agreement"] == 1.0
    assert result.status == "not certified"
    assert result.reasons == ["Patient mentalizing (nonmentalizing modes): kappa not estimable"]


def test_unsubmitted_trainees_and_non_gold_sessions_do_not_count(g, make_session, make_assignment):
    mark_gold(g.session, g.assignments["Expert"], actor=g.coordinator)
    a = g.assignments["Trainee"]
    _code(a, g.trainee, TRAINEE_T, TRAINEE_P)
    _rate(a, g.trainee, TRAINEE_RATINGS)  # not submitted
    # the perfect rater also coded another (non-gold) session: it is no gold session
    other = make_session(g.study)
    elsewhere = make_assignment(other, g.perfect)
    _rate(elsewhere, g.perfect, default="1")
    _submit(elsewhere, g.perfect)
    assert agreement_with_gold(g.study) == []
    _submit(a, g.trainee)
    (result,) = agreement_with_gold(g.study)
    assert result.rater.id == g.trainee.id and result.sessions == 1
    assert result.ratings.n == 32


def test_figures_pool_over_gold_sessions(g, make_session, make_assignment):
    """Two gold sessions: the trainee's pairs pool; sessions counts both."""
    mark_gold(g.session, g.assignments["Expert"], actor=g.coordinator)
    _trainee_done(g)
    second = make_session(g.study, [f"T: again {i}" if i % 2 == 0 else f"P: again {i}" for i in range(20)])
    gold2 = make_assignment(second, g.expert)
    _code(gold2, g.expert, GOLD_T, GOLD_P)
    _rate(gold2, g.expert)
    _submit(gold2, g.expert)
    mark_gold(second, gold2, actor=g.coordinator)
    mine = make_assignment(second, g.trainee)
    _code(mine, g.trainee, GOLD_T, GOLD_P)  # perfect on the second
    _rate(mine, g.trainee)
    _submit(mine, g.trainee)
    update_settings(g.study, {"certify_min_sessions": 2}, actor=g.coordinator)
    (result,) = agreement_with_gold(g.study)
    assert result.sessions == 2
    t = result.code_sets["intervention-spectrum"]
    assert t["n_units"] == 20
    assert t["kappa"].estimate == pytest.approx(hand_kappa(GOLD_T * 2, TRAINEE_T + GOLD_T))
    assert result.ratings.n == 32 + 33
    assert result.ratings.bias == pytest.approx(-1 / 65)
    p = result.code_sets["nonmentalizing-modes"]
    assert p["kappa"].estimate == pytest.approx(hand_kappa(GOLD_P * 2, TRAINEE_P + GOLD_P))
    # pooled: kappa 0.80 and 0.77, 63 of 65 ratings within one point → certified over two sessions
    assert (result.status, result.reasons) == ("certified", [])
