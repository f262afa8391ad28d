"""The double-coding sample: settings, drawing, second raters, progress, raters not told."""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest
from sqlalchemy import func, select

from mbtcode.extensions import db
from mbtcode.models import (
    Assignment,
    AuditEvent,
    GoldStandard,
    ReliabilitySettings,
    SampledSession,
)
from mbtcode.services import ServiceError
from mbtcode.services.assignments import assign_sessions, submit
from mbtcode.services.double_coding import (
    assign_second_raters,
    draw_sample,
    sample_progress,
    sampled_session_ids,
    settings_for,
    study_raters,
    update_settings,
)
from tests.conftest import check_each, code_everything, rate_everything, row_counts, transcript_text

DEFAULTS = {
    "sample_fraction": 0.2, "raters_per_session": 2, "rating_threshold": 0,
    "hide_rater_names": True, "certify_min_kappa": 0.7, "certify_min_within_one": 0.8,
    "certify_min_sessions": 1,
}

#: (therapist, phase) → number of sessions: 3 therapists × 2 phases of different sizes (30).
STRATA = {("TH-1", "initial"): 5, ("TH-1", "main"): 9, ("TH-2", "initial"): 3,
          ("TH-2", "main"): 7, ("TH-3", "initial"): 2, ("TH-3", "main"): 4}


def _audit(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


@pytest.fixture
def study(make_study):
    return make_study("Fidelity study 2027")


@pytest.fixture
def add_sessions(import_files):
    """``add_sessions(study, strata)``: import sessions with therapist and phase (one batch)."""

    def add(study, strata: dict[tuple[str, str | None], int], *, prefix: str = "s"):
        files, rows = {}, ["file,label,therapist,patient,phase"]
        for (therapist, phase), n in strata.items():
            for i in range(n):
                name = f"{prefix}-{therapist}-{phase}-{i}.txt"
                files[name] = transcript_text(4, tag=name)
                rows.append(f"{name},{prefix} {therapist} {phase} {i},{therapist},PT-{i},{phase or ''}")
        return import_files(study, files, manifest="\n".join(rows) + "\n")

    return add


@pytest.fixture
def sessions(study, add_sessions):
    """Ten sessions of one therapist in one phase."""
    return add_sessions(study, {("TH-1", "main"): 10})


@pytest.fixture
def raters(study, make_user, make_member):
    people = [make_user("rater", name=f"Rater {i}") for i in range(1, 5)]
    for person in people:
        make_member(study, person, "rater")
    return people


def _drawn(sample) -> list[int]:
    return sorted(db.session.scalars(
        select(SampledSession.session_id).where(SampledSession.sample_id == sample.id)))


# --------------------------------------------------------------------------- settings


def test_defaults_when_no_settings_were_saved(study):
    settings = settings_for(study)
    assert {key: getattr(settings, key) for key in DEFAULTS} == DEFAULTS
    assert settings not in db.session  # not stored by reading it
    assert db.session.scalar(select(func.count()).select_from(ReliabilitySettings)) == 0


def test_update_settings_refuses_every_bad_value_and_stores_nothing(study):
    before = row_counts()
    cases = [
        ("sample_fraction", 0), ("sample_fraction", -0.1), ("sample_fraction", 1.01),
        ("sample_fraction", "abc"), ("sample_fraction", float("nan")), ("sample_fraction", float("inf")),
        ("raters_per_session", 1), ("raters_per_session", 11), ("raters_per_session", 2.5),
        ("raters_per_session", "two"), ("rating_threshold", -1), ("rating_threshold", 11),
        ("hide_rater_names", "maybe"), ("certify_min_kappa", -1.5), ("certify_min_kappa", 1.2),
        ("certify_min_within_one", 1.5), ("certify_min_within_one", -0.1),
        ("certify_min_sessions", 0), ("certify_min_sessions", 101), ("no_such_setting", 1),
    ]

    def check(case):
        key, value = case
        with pytest.raises(ServiceError):
            update_settings(study, {key: value}, actor=None)
        db.session.rollback()
        assert row_counts() == before
        assert getattr(settings_for(study), key, None) == DEFAULTS.get(key)

    check_each(cases, check)


def test_one_bad_value_refuses_the_whole_change(study):
    with pytest.raises(ServiceError, match="raters per session"):
        update_settings(study, {"sample_fraction": 0.5, "raters_per_session": 1}, actor=None)
    db.session.rollback()
    assert settings_for(study).sample_fraction == 0.2
    assert db.session.get(ReliabilitySettings, study.id) is None
    # the same with stored settings: the stored row keeps its values
    update_settings(study, {"sample_fraction": 0.3}, actor=None)
    db.session.commit()
    with pytest.raises(ServiceError, match="rating threshold"):
        update_settings(study, {"sample_fraction": 0.5, "rating_threshold": -2}, actor=None)
    db.session.rollback()
    db.session.expire_all()
    assert db.session.get(ReliabilitySettings, study.id).sample_fraction == 0.3
    assert len(_audit("reliability.settings")) == 1


def test_good_values_are_stored_and_audited_with_old_and_new(study, make_user):
    coordinator = make_user("coordinator")
    update_settings(study, {"sample_fraction": "0.25", "raters_per_session": "3",
                            "hide_rater_names": "false", "rating_threshold": 1,
                            "certify_min_kappa": 0.6}, actor=coordinator)
    db.session.commit()
    db.session.expire_all()
    stored = db.session.get(ReliabilitySettings, study.id)
    assert (stored.sample_fraction, stored.raters_per_session, stored.hide_rater_names,
            stored.rating_threshold, stored.certify_min_kappa) == (0.25, 3, False, 1, 0.6)
    (event,) = _audit("reliability.settings")
    assert event.actor_id == coordinator.id and event.study_id == study.id
    assert event.detail == {
        "old": {"sample_fraction": 0.2, "raters_per_session": 2, "hide_rater_names": True,
                "rating_threshold": 0, "certify_min_kappa": 0.7},
        "new": {"sample_fraction": 0.25, "raters_per_session": 3, "hide_rater_names": False,
                "rating_threshold": 1, "certify_min_kappa": 0.6},
    }


def test_unchanged_values_write_no_row_and_no_audit(study):
    update_settings(study, {"sample_fraction": 0.2, "raters_per_session": 2}, actor=None)
    db.session.commit()
    assert db.session.get(ReliabilitySettings, study.id) is None
    assert _audit("reliability.settings") == []
    update_settings(study, {"sample_fraction": 0.3}, actor=None)
    update_settings(study, {"sample_fraction": 0.3}, actor=None)
    db.session.commit()
    assert [e.detail["new"] for e in _audit("reliability.settings")] == [{"sample_fraction": 0.3}]


# --------------------------------------------------------------------------- draw


def test_target_is_the_ceiling_of_the_fraction_of_the_sessions(study, sessions):
    sample = draw_sample(study, actor=None, seed=1, fraction=0.25)
    db.session.commit()
    assert len(_drawn(sample)) == math.ceil(0.25 * 10) == 3
    assert set(_drawn(sample)) <= {s.id for s in sessions}
    assert (sample.seed, sample.fraction, sample.stratify) == (1, 0.25, "")


def test_the_default_fraction_comes_from_the_settings(study, sessions):
    assert len(_drawn(draw_sample(study, actor=None, seed=3))) == 2  # 20% of 10
    db.session.rollback()
    update_settings(study, {"sample_fraction": 0.5}, actor=None)
    assert len(_drawn(draw_sample(study, actor=None, seed=3))) == 5


def test_an_exact_product_is_not_rounded_up(study, add_sessions):
    add_sessions(study, {("TH-1", "main"): 10})
    # 0.3 × 10 is 3.0000000000000004 in floating point; the target is 3, not 4.
    assert len(_drawn(draw_sample(study, actor=None, seed=0, fraction=0.3))) == 3


def test_same_seed_and_data_give_the_same_sample_another_seed_another(study, sessions):
    def draw(seed, stratify=()):
        ids = _drawn(draw_sample(study, actor=None, seed=seed, fraction=0.3, stratify=stratify))
        db.session.rollback()
        return ids

    first = draw(42)
    assert draw(42) == first
    assert draw(42, ("phase",)) == draw(42, ("phase",))
    # 120 possible samples of 3 of 10: five other seeds all giving the same one is (almost) impossible.
    others = [draw(seed) for seed in (1, 2, 3, 4, 5)]
    assert any(ids != first for ids in others)
    assert len({tuple(ids) for ids in [first, *others]}) >= 3


def test_the_same_seed_on_an_identical_copy_of_the_study_draws_the_same_sessions(
        make_study, add_sessions):
    """Reproducible across databases: the same data (by order) and seed, the same labels."""
    labels = []
    for name in ("Copy one", "Copy two"):
        copy = make_study(name)
        add_sessions(copy, {("TH-1", "main"): 6, ("TH-2", "final"): 6}, prefix=name)
        sample = draw_sample(copy, actor=None, seed=2024, fraction=0.5, stratify=("therapist",))
        db.session.commit()
        labels.append(sorted(link.session.label.removeprefix(name) for link in db.session.scalars(
            select(SampledSession).where(SampledSession.sample_id == sample.id))))
    assert labels[0] == labels[1]
    assert len(labels[0]) == 6


def test_stratified_allocation_is_proportional(study, add_sessions):
    sessions = add_sessions(study, STRATA)
    by_id = {s.id: (s.participant_codes("therapist")[0], s.phase) for s in sessions}
    fraction, total = 0.2, 30
    for seed in (0, 1, 7):
        sample = draw_sample(study, actor=None, seed=seed, fraction=fraction,
                             stratify=("therapist", "phase"))
        drawn = _drawn(sample)
        assert len(drawn) == math.ceil(fraction * total) == 6
        per_stratum = Counter(by_id[i] for i in drawn)
        for stratum, size in STRATA.items():
            share = 6 * size / total
            assert per_stratum[stratum] in {math.floor(share), math.ceil(share)}, (seed, stratum)
        # the largest remainders (TH-1/main 1.8, TH-3/main 0.8, TH-2/initial 0.6) get the extra draws
        assert per_stratum[("TH-1", "main")] == 2 and per_stratum[("TH-3", "main")] == 1
        assert per_stratum[("TH-2", "initial")] == 1
        links = db.session.scalars(select(SampledSession).where(SampledSession.sample_id == sample.id))
        for link in links:
            therapist, phase = by_id[link.session_id]
            assert link.stratum == f"therapist={therapist}|phase={phase}"
        assert sample.stratify == "therapist,phase"
        db.session.rollback()


def test_stratified_by_one_variable(study, add_sessions):
    sessions = add_sessions(study, STRATA)
    phase_of = {s.id: s.phase for s in sessions}
    drawn = _drawn(draw_sample(study, actor=None, seed=5, fraction=0.5, stratify=("phase",)))
    # initial: 10 sessions, main: 20 → exactly 5 and 10 of the 15
    assert Counter(phase_of[i] for i in drawn) == {"initial": 5, "main": 10}


def test_sessions_without_a_phase_form_their_own_stratum(study, add_sessions):
    add_sessions(study, {("TH-1", None): 4, ("TH-1", "main"): 4})
    sample = draw_sample(study, actor=None, seed=0, fraction=0.5, stratify=("phase",))
    strata = Counter(db.session.scalars(
        select(SampledSession.stratum).where(SampledSession.sample_id == sample.id)))
    assert strata == {"phase=unknown": 2, "phase=main": 2}


def test_drawing_is_refused_when_the_target_is_met(study, sessions):
    draw_sample(study, actor=None, seed=1)
    db.session.commit()
    before = row_counts()
    with pytest.raises(ServiceError, match="already holds 2 of the 2"):
        draw_sample(study, actor=None, seed=2)
    db.session.rollback()
    assert row_counts() == before


def test_a_top_up_draws_only_the_missing_sessions(study, sessions, add_sessions):
    first = _drawn(draw_sample(study, actor=None, seed=1))  # 2 of 10
    db.session.commit()
    added = add_sessions(study, {("TH-2", "main"): 5}, prefix="later")  # 15 → target 3
    second = draw_sample(study, actor=None, seed=1)
    db.session.commit()
    assert len(_drawn(second)) == 1
    assert not set(_drawn(second)) & set(first)
    assert sampled_session_ids(study) == set(first) | set(_drawn(second))
    assert len(sampled_session_ids(study)) == 3
    assert set(_drawn(second)) <= {s.id for s in [*sessions, *added]}
    # a larger fraction tops up to its own target
    third = draw_sample(study, actor=None, seed=9, fraction=0.6)
    assert len(_drawn(third)) == 9 - 3


def test_gold_sessions_are_never_sampled_nor_counted(study, sessions):
    gold = sessions[:3]
    for g in gold:  # rows as mark_gold would leave them (tests/services/test_gold.py tests it)
        db.session.add(GoldStandard(study_id=study.id, session_id=g.id, assignment_id=_submitted(g)))
    db.session.commit()
    progress = sample_progress(study)
    assert (progress.eligible, progress.target) == (7, 2)  # the default 20% of 7
    sample = draw_sample(study, actor=None, seed=0, fraction=1.0)
    assert set(_drawn(sample)) == {s.id for s in sessions[3:]}
    db.session.rollback()
    assert len(_drawn(draw_sample(study, actor=None, seed=0, fraction=0.5))) == math.ceil(0.5 * 7)
    assert sample_progress(study).target == 4  # the draw's 50% of 7


def _submitted(session) -> int:
    """Id of a (bare) submitted assignment of ``session`` by a new rater."""
    from mbtcode.services.permissions import add_member
    from mbtcode.services.users import create_user

    rater = create_user(f"expert{session.id}@example.org", name=f"Expert {session.id}", role="rater",
                        password="correct horse battery staple", actor=None)
    add_member(session.study, rater, "rater", actor=None)
    (assignment,) = assign_sessions(session.study, [session], [rater], actor=None)
    assignment.status = "submitted"
    db.session.flush()
    return assignment.id


def test_draw_is_audited_with_the_session_ids(study, sessions, make_user):
    coordinator = make_user("coordinator")
    sample = draw_sample(study, actor=coordinator, seed=11, fraction=0.3, stratify=["phase"])
    db.session.commit()
    (event,) = _audit("reliability.sample")
    assert (event.actor_id, event.entity_id, event.study_id) == (coordinator.id, sample.id, study.id)
    assert event.detail == {"seed": 11, "fraction": 0.3, "stratify": ["phase"],
                            "session_ids": _drawn(sample), "target": 3}
    assert sample.created_by_id == coordinator.id


def test_bad_draw_requests_are_refused_and_write_nothing(study, sessions, make_study):
    before = row_counts()
    cases = [
        {"seed": 1, "stratify": ("site",)}, {"seed": 1, "fraction": 0}, {"seed": 1, "fraction": 1.5},
        {"seed": -1}, {"seed": 1.5}, {"seed": True}, {"seed": "1"},
    ]

    def check(kwargs):
        with pytest.raises(ServiceError):
            draw_sample(study, actor=None, **kwargs)
        db.session.rollback()
        assert row_counts() == before

    check_each(cases, check)
    empty = make_study("Empty study")
    with pytest.raises(ServiceError, match="no sessions"):
        draw_sample(empty, actor=None, seed=1)


# --------------------------------------------------------------------------- second raters


def _active_raters(session_id) -> list[int]:
    return list(db.session.scalars(select(Assignment.rater_id).where(
        Assignment.session_id == session_id, Assignment.status != "withdrawn")))


def test_second_raters_are_never_the_first(study, sessions, raters):
    sample = draw_sample(study, actor=None, seed=4, fraction=0.6)  # 6 sessions
    sampled = _drawn(sample)
    by_id = {s.id: s for s in sessions}
    # the first coding of each sampled session is by raters[0] or raters[1]
    first = {sid: raters[i % 2] for i, sid in enumerate(sampled)}
    for sid, rater in first.items():
        assign_sessions(study, [by_id[sid]], [rater], actor=None)
    db.session.commit()
    plan = assign_second_raters(study, raters[:3], actor=None)
    db.session.commit()
    assert plan.unstaffed == []
    assert len(plan.created) == 6
    for sid in sampled:
        on_session = _active_raters(sid)
        assert len(on_session) == len(set(on_session)) == 2
        assert first[sid].id in on_session
    for a in plan.created:
        assert a.rater_id != first[a.session_id].id
    # not-sampled sessions get nobody
    assert db.session.scalar(select(func.count()).select_from(Assignment).where(
        Assignment.session_id.not_in(sampled))) == 0


def test_extra_work_is_spread_evenly(study, sessions, raters):
    draw_sample(study, actor=None, seed=4, fraction=0.6)  # 6 sessions, none assigned yet
    plan = assign_second_raters(study, raters[:3], actor=None, seed=5)
    db.session.commit()
    assert len(plan.created) == 12  # two raters each
    assert Counter(a.rater_id for a in plan.created) == {r.id: 4 for r in raters[:3]}
    for sid in sampled_session_ids(study):
        assert len(set(_active_raters(sid))) == 2


def test_the_least_loaded_rater_is_chosen_first(study, sessions, raters):
    """Existing work counts: a rater with many assignments gets no sample work while others have less."""
    busy, *others = raters[:3]
    not_sampled = sessions  # assign busy to 5 sessions before the draw
    assign_sessions(study, not_sampled[:5], [busy], actor=None)
    db.session.commit()
    draw_sample(study, actor=None, seed=8, fraction=0.2)  # 2 sessions
    sampled = sampled_session_ids(study)
    plan = assign_second_raters(study, [busy, *others], actor=None)
    # sampled sessions busy already codes keep busy; every new assignment goes to the others
    assert all(a.rater_id != busy.id for a in plan.created)
    for sid in sampled:
        assert len(_active_raters(sid)) == 2


def test_too_few_raters_leave_sessions_unstaffed(study, sessions, raters):
    draw_sample(study, actor=None, seed=2, fraction=0.3)  # 3 sessions
    sampled = sorted(sampled_session_ids(study))
    by_id = {s.id: s for s in sessions}
    assign_sessions(study, [by_id[sampled[0]]], [raters[0]], actor=None)
    db.session.commit()
    plan = assign_second_raters(study, [raters[0]], actor=None)
    # the first session has raters[0] already; the other two get raters[0] but need a second
    assert sorted(s.id for s in plan.unstaffed) == sampled
    assert sorted(a.session_id for a in plan.created) == sampled[1:]
    assert _active_raters(sampled[0]) == [raters[0].id]


def test_three_raters_per_session(study, sessions, raters):
    update_settings(study, {"raters_per_session": 3}, actor=None)
    draw_sample(study, actor=None, seed=6, fraction=0.4)  # 4 sessions
    plan = assign_second_raters(study, raters, actor=None)
    db.session.commit()
    assert plan.unstaffed == []
    for sid in sampled_session_ids(study):
        on_session = _active_raters(sid)
        assert len(on_session) == len(set(on_session)) == 3
    assert Counter(a.rater_id for a in plan.created) == {r.id: 3 for r in raters}
    # assigning again adds nobody: every session is staffed
    assert assign_second_raters(study, raters, actor=None).created == []


def test_two_raters_cannot_staff_three_per_session(study, sessions, raters):
    update_settings(study, {"raters_per_session": 3}, actor=None)
    draw_sample(study, actor=None, seed=6, fraction=0.4)  # 4 sessions
    plan = assign_second_raters(study, raters[:2], actor=None)
    assert sorted(s.id for s in plan.unstaffed) == sorted(sampled_session_ids(study))
    assert len(plan.created) == 8  # both raters on every session, still one short
    assert sample_progress(study).staffed == 0


def test_a_withdrawn_assignment_does_not_count_as_a_rater(study, sessions, raters):
    from mbtcode.services.assignments import withdraw

    draw_sample(study, actor=None, seed=6, fraction=0.1)  # 1 session
    (sid,) = sampled_session_ids(study)
    session = next(s for s in sessions if s.id == sid)
    a, _b = assign_sessions(study, [session], raters[:2], actor=None)
    withdraw(a, actor=None, reason="rater left the study")
    plan = assign_second_raters(study, [raters[1], raters[2]], actor=None)
    assert [(x.session_id, x.rater_id) for x in plan.created] == [(sid, raters[2].id)]


def test_second_raters_need_raters_and_a_sample(study, sessions, raters, make_user):
    with pytest.raises(ServiceError, match="draw a double-coding sample first"):
        assign_second_raters(study, raters, actor=None)
    draw_sample(study, actor=None, seed=1)
    with pytest.raises(ServiceError, match="at least one rater"):
        assign_second_raters(study, [], actor=None)
    with pytest.raises(ServiceError, match="is not a rater"):
        assign_second_raters(study, [make_user("rater")], actor=None)


def test_study_raters_lists_active_raters_by_name(study, raters, make_user, make_member):
    make_member(study, make_user("analyst"), "analyst")
    raters[0].active = False
    db.session.commit()
    assert [u.name for u in study_raters(study)] == ["Rater 2", "Rater 3", "Rater 4"]


# --------------------------------------------------------------------------- progress


def test_progress_counts_sampled_staffed_and_complete(study, sessions, raters):
    empty = sample_progress(study)
    assert (empty.eligible, empty.target, empty.sampled, empty.staffed, empty.complete) == (10, 2, 0, 0, 0)
    assert empty.percent_complete == 0 and empty.rows == []
    update_settings(study, {"sample_fraction": 0.3}, actor=None)
    draw_sample(study, actor=None, seed=3)  # 3 sessions
    by_id = {s.id: s for s in sessions}
    s1, s2, s3 = (by_id[i] for i in sorted(sampled_session_ids(study)))
    done = assign_sessions(study, [s1], raters[:2], actor=None)  # staffed, both submit
    assign_sessions(study, [s2], raters[:2], actor=None)  # staffed, nobody submitted
    assign_sessions(study, [s3], raters[:1], actor=None)  # one rater only
    db.session.commit()
    for a in done:
        code_everything(a, a.rater)
        rate_everything(a, a.rater)
        assert submit(a, actor=a.rater).complete
    db.session.commit()
    progress = sample_progress(study)
    assert (progress.eligible, progress.target, progress.sampled, progress.staffed, progress.complete) \
        == (10, 3, 3, 2, 1)
    assert progress.fraction == 0.3
    assert progress.percent_complete == 33
    rows = {r["session"].id: r for r in progress.rows}
    assert {k: rows[s1.id][k] for k in ("raters", "submitted", "staffed", "complete", "stratum")} \
        == {"raters": 2, "submitted": 2, "staffed": True, "complete": True, "stratum": ""}
    assert (rows[s2.id]["submitted"], rows[s2.id]["complete"]) == (0, False)
    assert (rows[s3.id]["raters"], rows[s3.id]["staffed"], rows[s3.id]["complete"]) == (1, False, False)


def test_the_target_follows_the_latest_draw(study, sessions):
    assert (sample_progress(study).target, sample_progress(study).fraction) == (2, 0.2)  # the setting
    draw_sample(study, actor=None, seed=1, fraction=0.3)
    assert (sample_progress(study).target, sample_progress(study).fraction) == (3, 0.3)
    draw_sample(study, actor=None, seed=1, fraction=0.5)
    progress = sample_progress(study)
    assert (progress.target, progress.sampled, progress.fraction) == (5, 5, 0.5)


def test_a_single_submitted_rater_is_not_complete(study, sessions, raters):
    draw_sample(study, actor=None, seed=3, fraction=0.1)
    (sid,) = sampled_session_ids(study)
    (a,) = assign_sessions(study, [next(s for s in sessions if s.id == sid)], raters[:1], actor=None)
    db.session.commit()
    code_everything(a, a.rater)
    rate_everything(a, a.rater)
    submit(a, actor=a.rater)
    progress = sample_progress(study)
    assert (progress.staffed, progress.complete, progress.percent_complete) == (0, 0, 0)


# --------------------------------------------------------------------------- raters are not told

FORBIDDEN = re.compile(r"sampl|double|reliab|gold|adjudic|consensus", re.IGNORECASE)


def _rater_pages(study, assignment) -> list[str]:
    a = assignment.id
    return ["/", "/assignments/", "/studies/", f"/studies/{study.id}", f"/assignments/{a}",
            f"/assignments/{a}/rating/", f"/assignments/{a}/submit"]


def test_nothing_a_rater_can_open_says_which_sessions_are_double_coded(
        study, sessions, raters, client_for):
    draw_sample(study, actor=None, seed=1, fraction=0.1)  # one session
    (sid,) = sampled_session_ids(study)
    sampled = next(s for s in sessions if s.id == sid)
    plain = next(s for s in sessions if s.id != sid)
    rater, second = raters[0], raters[1]
    mine = {s.id: a for s in (sampled, plain)
            for a in assign_sessions(study, [s], [rater], actor=None)}
    assign_second_raters(study, [second], actor=None)
    db.session.commit()
    browser = client_for(rater)

    def page(url: str, session) -> str:
        response = browser.get(url)
        assert response.status_code == 200, url
        body = response.get_data(as_text=True)
        body = re.sub(r'(csrf[_-]token"[^>]*?(?:value|content)=")[^"]+', r"\1TOKEN", body)
        body = re.sub(r'(X-CSRFToken(?:"|&#34;): &#34;)[^&]+', r"\1TOKEN", body)
        body = body.replace(session.label, "LABEL")
        return re.sub(r"\d+", "N", body)

    for url in _rater_pages(study, mine[sid]):
        body = browser.get(url).get_data(as_text=True)
        assert not FORBIDDEN.findall(body), (url, FORBIDDEN.findall(body))
    # the sampled session's workspace, rating form and submit page look like any other's
    for suffix in ("", "/rating/", "/submit"):
        assert page(f"/assignments/{mine[sid].id}{suffix}", sampled) == \
            page(f"/assignments/{mine[plain.id].id}{suffix}", plain), suffix
    # and the second rater's queue lists it as an ordinary assignment
    second_browser = client_for(second)
    queue = second_browser.get("/assignments/").get_data(as_text=True)
    assert sampled.label in queue and not FORBIDDEN.findall(queue)


def test_reliability_pages_are_not_for_raters(study, sessions, raters, client_for):
    draw_sample(study, actor=None, seed=1)
    db.session.commit()
    browser = client_for(raters[0])
    for url in (f"/studies/{study.id}/reliability/", f"/studies/{study.id}/reliability/sample",
                f"/studies/{study.id}/reliability/gold"):
        assert browser.get(url).status_code in (403, 404), url
