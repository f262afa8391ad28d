"""Fidelity from the database: which coding counts per session, scores, profile, study day.

A small study worked by hand: five sessions of two therapists,

* s1 (TH-A, PT-1, day 0): one rater, every item 5 but item 2 adherence 3
  → adherence mean (3 + 5·k) / (k + 1) over the adherence items;
* s2 (TH-A, PT-1, day 14): two raters, 4 and 6 everywhere, no consensus → mean 5;
* s3 (TH-A, PT-1, day 28): two raters 2 and 7, a final consensus of 3 → 3 (not 4.5);
* s4 (TH-B, PT-2): two raters (2 and 6) and a consensus still open → mean of raters 4;
* s5 (TH-B, PT-2): one rater still coding (not submitted) → no score.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import (
    Consensus,
    ConsensusCode,
    ConsensusRating,
    GoldStandard,
    ItemRating,
    UtteranceCode,
)
from mbtcode.services import fidelity
from mbtcode.services.assignments import assign_sessions, codable_roles, required_ratings
from mbtcode.services.schemes import as_scheme
from mbtcode.services.sessions import all_utterances
from tests.conftest import transcript_text

MANIFEST = """file,label,therapist,patient,date,phase,session_number
s1.txt,s1,TH-A,PT-1,2026-01-05,initial,1
s2.txt,s2,TH-A,PT-1,2026-01-19,main,3
s3.txt,s3,TH-A,PT-1,2026-02-02,main,5
s4.txt,s4,TH-B,PT-2,2026-03-01,main,1
s5.txt,s5,TH-B,PT-2,,final,9
"""


@pytest.fixture
def world(make_study, import_files, make_user, make_member):
    study = make_study("Fidelity DB study")
    files = {f"s{i}.txt": transcript_text(6, tag=f"fid {i}") for i in range(1, 6)}
    sessions = {s.label: s for s in import_files(study, files, manifest=MANIFEST)}
    raters = [make_user("rater", name=f"Rater {i}") for i in range(2)]
    for r in raters:
        make_member(study, r, "rater")
    assignments = {}
    for label, who in [("s1", [0]), ("s2", [0, 1]), ("s3", [0, 1]), ("s4", [0, 1]), ("s5", [0])]:
        for a in assign_sessions(study, [sessions[label]], [raters[i] for i in who], actor=None):
            assignments[(label, raters.index(a.rater))] = a
    db.session.commit()
    needed = required_ratings(study)

    def rate(key, value, changes=None, submit=True):
        a = assignments[key]
        for instrument, item, dimension in needed:
            v = (changes or {}).get((item, dimension), value)
            db.session.add(ItemRating(assignment_id=a.id, instrument=instrument, item=item,
                                      dimension=dimension, value=v, not_applicable=False))
        if submit:
            a.status = "submitted"

    rate(("s1", 0), 5, {("2", "adherence"): 3})
    rate(("s2", 0), 4)
    rate(("s2", 1), 6)
    rate(("s3", 0), 2)
    rate(("s3", 1), 7)
    rate(("s4", 0), 2)
    rate(("s4", 1), 6)
    rate(("s5", 0), 1, submit=False)
    db.session.flush()
    for label, status in [("s3", "final"), ("s4", "open")]:
        consensus = Consensus(study_id=study.id, session_id=sessions[label].id,
                              adjudicator_id=raters[0].id, status=status)
        db.session.add(consensus)
        db.session.flush()
        for instrument, item, dimension in needed:
            db.session.add(ConsensusRating(consensus_id=consensus.id, instrument=instrument, item=item,
                                           dimension=dimension, value=3.0, basis="entered"))
    db.session.commit()
    return study, sessions, assignments, needed


def test_scores_follow_the_counting_rule(world):
    study, sessions, _, needed = world
    data = fidelity.load(study)
    scores = data.scores.set_index("session")
    n_adherence = sum(1 for _, item, dim in needed if dim == "adherence" and not item.startswith("overall"))
    assert scores.loc["s1", "source"] == "single_rater"
    assert scores.loc["s1", "adherence_mean"] == pytest.approx((3 + 5 * (n_adherence - 1)) / n_adherence)
    assert scores.loc["s1", "competence_mean"] == 5
    assert scores.loc["s2", ["source", "n_raters"]].tolist() == ["mean_of_raters", 2]
    assert scores.loc["s2", "adherence_mean"] == 5 and scores.loc["s2", "overall_adherence"] == 5
    assert scores.loc["s3", ["source", "n_raters"]].tolist() == ["consensus", 2]
    assert scores.loc["s3", "adherence_mean"] == 3 and not scores.loc["s3", "adherence_adequate"]
    # an open consensus does not count yet
    assert scores.loc["s4", "source"] == "mean_of_raters" and scores.loc["s4", "competence_mean"] == 4
    # work in progress never counts
    assert scores.loc["s5", ["source", "n_raters"]].tolist() == ["none", 0]
    assert pd_isna(scores.loc["s5", "adherence_mean"])


def pd_isna(value) -> bool:
    return value != value or value is None


def test_merge_keys_and_study_day(world):
    study, *_ = world
    s = fidelity.load(study).sessions.set_index("session")
    assert s.loc["s2", ["study", "therapist", "patient", "phase", "modality"]].tolist() == [
        "Fidelity DB study", "TH-A", "PT-1", "main", "individual"]
    assert s.loc["s2", "session_date"] == date(2026, 1, 19)
    assert [s.loc[k, "study_day"] for k in ("s1", "s2", "s3", "s4")] == [0, 14, 28, 0]
    assert s.loc["s5", "study_day"] is pd_na()
    assert fidelity.patient_first_session_dates(study) == {"PT-1": date(2026, 1, 5), "PT-2": date(2026, 3, 1)}


def pd_na():
    import pandas as pd

    return pd.NA


def test_gold_session_counts_the_experts_coding(world):
    study, sessions, assignments, _ = world
    db.session.add(GoldStandard(study_id=study.id, session_id=sessions["s2"].id,
                                assignment_id=assignments[("s2", 1)].id))
    db.session.commit()
    scores = fidelity.load(study).scores.set_index("session")
    assert scores.loc["s2", "source"] == "gold" and scores.loc["s2", "adherence_mean"] == 6


def test_therapist_summaries_and_group_means(world):
    study, _, _, needed = world
    data = fidelity.load(study)
    by_code = {s.therapist: s for s in fidelity.therapist_summaries(data)}
    a = by_code["TH-A"]
    k = sum(1 for _, item, dim in needed if dim == "adherence" and not item.startswith("overall"))
    # s1: (3 + 5(k−1))/k, s2: mean of raters 5, s3: consensus 3
    assert a.n_sessions == 3
    assert a.means["adherence"].mean == pytest.approx(((3 + 5 * (k - 1)) / k + 5 + 3) / 3)
    assert a.last_date == date(2026, 2, 2)
    # the last three adherence means (≈4.9, 5, 3) average under 4? no: ≈4.3 → no flag
    assert not a.flags["adherence"]
    b = by_code["TH-B"]
    assert b.n_sessions == 1 and b.means["competence"].mean == 4
    phases = fidelity.group_means(data, "phase").set_index(["phase", "dimension"])
    assert phases.loc[("initial", "competence"), "mean"] == 5 and phases.loc[("initial", "competence"), "n"] == 1
    assert phases.loc[("main", "competence"), "n"] == 3  # s2, s3, s4


def test_profile_uses_consensus_codes_and_rater_weights(world):
    study, sessions, assignments, _ = world
    roles = codable_roles(study)
    # s3's raters code every therapist turn EV and SUP; the final consensus says EXP
    consensus = db.session.scalar(select(Consensus).where(Consensus.session_id == sessions["s3"].id))
    # s2: rater 0 codes therapist turns EV, rater 1 AFF → ½ level 1, ½ level 3
    for label, rater, code in [("s2", 0, "EV"), ("s2", 1, "AFF"), ("s3", 0, "EV"), ("s3", 1, "SUP")]:
        for u in all_utterances(sessions[label]):
            if u.role == "therapist":
                db.session.add(UtteranceCode(assignment_id=assignments[(label, rater)].id,
                                             utterance_id=u.id, code_set=roles["therapist"], code=code))
    for u in all_utterances(sessions["s3"]):
        if u.role == "therapist":
            db.session.add(ConsensusCode(consensus_id=consensus.id, utterance_id=u.id,
                                         code_set=roles["therapist"], code="EXP", basis="entered"))
    db.session.commit()
    data = fidelity.load(study)
    profile = fidelity.profile(data, "session_id")
    levels = profile.levels.assign(session=lambda f: f["session_id"].map(
        {s.id: label for label, s in sessions.items()})).set_index(["session", "level"])
    assert levels.loc[("s2", "1"), "share"] == 0.5 and levels.loc[("s2", "3"), "share"] == 0.5
    assert levels.loc[("s3", "2"), "share"] == 1.0  # consensus EXP, not the raters' EV/SUP
    n_therapist_turns = sum(u.role == "therapist" for u in all_utterances(sessions["s2"]))
    assert levels.loc[("s2", "1"), "count"] == pytest.approx(n_therapist_turns / 2)
    assert as_scheme(study.scheme_version).code_set(roles["therapist"]).levels


def test_a_reopened_gold_coding_leaves_the_submitted_one_counting(world):
    study, sessions, assignments, _ = world
    db.session.add(GoldStandard(study_id=study.id, session_id=sessions["s2"].id,
                                assignment_id=assignments[("s2", 1)].id))
    assignments[("s2", 1)].status = "assigned"  # the expert's coding reopened
    db.session.commit()
    scores = fidelity.load(study).scores.set_index("session")
    assert scores.loc["s2", ["source", "n_raters"]].tolist() == ["single_rater", 1]
    assert scores.loc["s2", "adherence_mean"] == 4


def test_a_rater_without_codes_does_not_halve_the_codes_of_the_other(world):
    study, sessions, assignments, _ = world
    roles = codable_roles(study)
    for u in all_utterances(sessions["s2"]):  # only rater 0 codes s2; rater 1 only rated it
        if u.role == "therapist":
            db.session.add(UtteranceCode(assignment_id=assignments[("s2", 0)].id, utterance_id=u.id,
                                         code_set=roles["therapist"], code="EV"))
    db.session.commit()
    data = fidelity.load(study)
    n_turns = sum(u.role == "therapist" for u in all_utterances(sessions["s2"]))
    assert set(data.codes["weight"]) == {1.0}
    level = fidelity.profile(data, "session_id").levels.set_index("level").loc["1"]
    assert (level["count"], level["share"]) == (n_turns, 1.0)


def test_study_days_count_from_the_first_session_also_for_a_subset(world):
    study, sessions, *_ = world
    subset = fidelity.load(study, session_ids=[sessions["s2"].id])
    assert subset.sessions["study_day"].tolist() == [14]


def test_a_session_with_codes_but_no_ratings_is_not_scored(world):
    study, sessions, assignments, _ = world
    db.session.query(ItemRating).filter(ItemRating.assignment_id == assignments[("s1", 0)].id).delete()
    db.session.commit()
    data = fidelity.load(study)
    assert data.scores.set_index("session").loc["s1", "source"] == "single_rater"
    assert "s1" not in set(fidelity.scored_sessions(data)["session"])
    by_code = {s.therapist: s for s in fidelity.therapist_summaries(data)}
    assert by_code["TH-A"].n_sessions == 2
