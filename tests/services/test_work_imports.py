"""Importing codes and ratings from spreadsheets as submitted work: plan (check all) then apply."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import (
    Assignment,
    AuditEvent,
    Consensus,
    ItemRating,
    TherapySession,
    UtteranceCode,
)
from mbtcode.services.assignments import required_ratings, submit, withdraw
from mbtcode.services.imports import SourceFile
from mbtcode.services.work_imports import apply_work_import, plan_codes_import, plan_ratings_import
from tests.conftest import check_each, code_everything, rate_everything, row_counts, transcript_text

RATINGS = "session,rater,instrument,item,dimension,value\n"
CODES = "session,utterance,rater,code_set,code\n"
#: MBT-ACS: items 1, 4, 5 rated for competence only, 14 items for both, two overall ratings.
N_REQUIRED = 3 + 14 * 2 + 2


@pytest.fixture
def w(make_study, import_files, make_user, make_member):
    """A study with sessions S1 and S2 (T/P/T/P/T/P), raters a@ and b@, a coordinator and an analyst."""
    study = make_study("Moving in")
    s1, s2 = import_files(study, {"S1.txt": transcript_text(6), "S2.txt": transcript_text(6)})
    people = {}
    for key, role in (("a", "rater"), ("b", "rater"), ("coordinator", "coordinator"),
                      ("analyst", "analyst")):
        people[key] = make_user(role, email=f"{key}@example.org")
        make_member(study, people[key], role)
    return SimpleNamespace(study=study, s1=s1, s2=s2, **people)


def _source(text: str | bytes, name: str) -> SourceFile:
    return SourceFile(name, text.encode() if isinstance(text, str) else text)


def plan_ratings(study, text, name="ratings.csv"):
    return plan_ratings_import(study, _source(text, name))


def plan_codes(study, text, name="codes.csv"):
    return plan_codes_import(study, _source(text, name))


def apply(plan, actor=None):
    assert plan.ok, [str(p) for p in plan.problems]
    written = apply_work_import(plan, actor=actor)
    db.session.commit()
    return written


def _ratings(assignment) -> dict[tuple[str, str, str], tuple]:
    rows = db.session.scalars(select(ItemRating).where(ItemRating.assignment_id == assignment.id))
    return {(r.instrument, r.item, r.dimension): (r.value, r.not_applicable) for r in rows}


def _codes(assignment) -> dict[int, tuple[str, str]]:
    rows = db.session.scalars(select(UtteranceCode).where(UtteranceCode.assignment_id == assignment.id))
    return {r.utterance.position: (r.code_set, r.code) for r in rows}


def _audit(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def _refused(plan, line: int, *fragments: str) -> None:
    """The plan names ``line`` of its file with every fragment, and would write nothing."""
    assert not plan.ok
    messages = [str(p) for p in plan.problems if p.line == line]
    assert messages, [str(p) for p in plan.problems]
    text = "\n".join(messages)
    for fragment in fragments:
        assert fragment in text, text
    assert all(str(p).startswith(f"{plan.filename}:") for p in plan.problems if p.line is not None)
    with pytest.raises(ValueError):
        apply_work_import(plan, actor=None)


# --------------------------------------------------------------------------- ratings: happy path


def test_ratings_become_a_submitted_assignment(w):
    text = RATINGS + (
        "S1,a@example.org,mbt-acs,2,adherence,4\n"
        "S1,A@Example.org,MBT-ACS,2,Competence,5\n"
        "S1,a@example.org,mbt-acs,1,competence,NA\n"
        "S1,a@example.org,mbt-acs,,overall_adherence,5\n"
        "S1,a@example.org,mbt-acs,overall_competence,overall_competence,6\n"
    )
    plan = plan_ratings(w.study, text)
    assert plan.summary() == f"5 ratings for 1 session by 1 rater ({N_REQUIRED - 5} items not rated)"
    (assignment,) = apply(plan, actor=w.coordinator)
    db.session.expire_all()
    assert (assignment.session_id, assignment.rater_id, assignment.status) == (w.s1.id, w.a.id, "submitted")
    assert assignment.submitted_at is not None and assignment.created_by_id == w.coordinator.id
    assert _ratings(assignment) == {
        ("mbt-acs", "2", "adherence"): (4, False),
        ("mbt-acs", "2", "competence"): (5, False),
        ("mbt-acs", "1", "competence"): (None, True),
        # stored the way the rating form stores overall ratings: item = id, dimension = its dimension
        ("mbt-acs", "overall_adherence", "adherence"): (5, False),
        ("mbt-acs", "overall_competence", "competence"): (6, False),
    }
    assert set(_ratings(assignment)) <= set(required_ratings(w.study))


def test_ratings_for_several_sessions_and_raters_count_missing_items(w):
    text = RATINGS + "".join(
        f"{s},{r}@example.org,mbt-acs,2,adherence,{v}\n" for s, r, v in
        [("S1", "a", 3), ("S1", "b", 4), ("S2", "a", 7)]
    ) + "S2,a@example.org,mbt-acs,3,adherence,\n"  # empty: not rated
    plan = plan_ratings(w.study, text)
    assert plan.summary() == f"3 ratings for 2 sessions by 2 raters ({3 * (N_REQUIRED - 1)} items not rated)"
    assert len(apply(plan)) == 3
    assert db.session.scalar(select(ItemRating.id).where(ItemRating.item == "3")) is None


def test_a_rater_whose_rows_are_all_empty_gets_no_assignment(w):
    plan = plan_ratings(w.study, RATINGS + "S1,a@example.org,mbt-acs,2,adherence,\n"
                        "S1,b@example.org,mbt-acs,2,adherence,2\n")
    apply(plan)
    assert [a.rater_id for a in db.session.scalars(select(Assignment))] == [w.b.id]


def test_item_by_number_and_na_rule_of_another_scheme(make_study, import_files, make_user, make_member):
    study = make_study("MITI study", scheme="miti-example")
    import_files(study, {"M1.txt": transcript_text(4)})
    rater = make_user("rater", email="m@example.org")
    make_member(study, rater, "rater")
    (assignment,) = apply(plan_ratings(study, RATINGS + "M1,m@example.org,miti-globals,1,technical,3\n"
                                       "M1,m@example.org,miti-globals,Empathy,relational,5\n"))
    assert _ratings(assignment) == {("miti-globals", "cct", "technical"): (3, False),
                                    ("miti-globals", "empathy", "relational"): (5, False)}
    plan = plan_ratings(study, RATINGS + "M1,m@example.org,miti-globals,sst,technical,NA\n"
                        "M1,m@example.org,miti-globals,sst,overall_technical,3\n")
    _refused(plan, 2, "miti-globals does not allow NA")
    _refused(plan, 3, "unknown dimension 'overall_technical'")


def test_ratings_import_audit(w, make_user):
    text = RATINGS + "S1,a@example.org,mbt-acs,2,adherence,4\nS2,a@example.org,mbt-acs,2,adherence,4\n"
    created = apply(plan_ratings(w.study, text, name="dir/old sheet.csv"), actor=w.coordinator)
    events = _audit("assignment.create")
    assert sorted(e.entity_id for e in events) == sorted(a.id for a in created)
    assert {e.actor_id for e in events} == {w.coordinator.id}
    assert events[0].detail["new"]["status"] == "submitted"
    (summary,) = _audit("ratings.import")
    assert (summary.entity, summary.entity_id, summary.study_id) == ("study", w.study.id, w.study.id)
    assert summary.detail["file"] == "old sheet.csv"
    assert summary.detail["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert (summary.detail["rows"], summary.detail["sessions"], summary.detail["raters"]) == (2, 2, 1)
    assert summary.detail["missing"] == 2 * (N_REQUIRED - 1)


# --------------------------------------------------------------------------- ratings: refused


RATING_CASES = [
    ("S9,a@example.org,mbt-acs,2,adherence,4", ["unknown session 'S9' in study 'Moving in'",
                                                "mbtcode session list"]),
    ("S1,nobody@example.org,mbt-acs,2,adherence,4", [
        "no account with the e-mail 'nobody@example.org'", "mbtcode user add nobody@example.org",
        "mbtcode study member \"Moving in\" nobody@example.org"]),
    ("S1,outsider@example.org,mbt-acs,2,adherence,4", ["'outsider@example.org' is not a member of study",
                                                       "mbtcode study member \"Moving in\" outsider@"]),
    ("S1,analyst@example.org,mbt-acs,2,adherence,4", ["is an analyst in study 'Moving in', not a rater"]),
    ("S1,a@example.org,mbt-xyz,2,adherence,4", ["unknown instrument 'mbt-xyz'", "mbt-acs"]),
    ("S1,a@example.org,mbt-acs,18,adherence,4", ["'18' is not an item of mbt-acs", "1–17"]),
    ("S1,a@example.org,mbt-acs,,adherence,4", ["the 'item' cell is empty"]),
    ("S1,a@example.org,mbt-acs,2,quality,4", [
        "unknown dimension 'quality'", "adherence, competence, overall_adherence, overall_competence"]),
    ("S1,a@example.org,mbt-acs,1,adherence,4", ["item 1 (Engagement, interest and warmth) is not rated "
                                                "for adherence", "competence only"]),
    ("S1,a@example.org,mbt-acs,2,overall_adherence,4", ["item must be empty or 'overall_adherence'"]),
    ("S1,a@example.org,mbt-acs,2,adherence,8", ["value 8 is outside the scale of mbt-acs (1 to 7)"]),
    ("S1,a@example.org,mbt-acs,2,adherence,0", ["value 0 is outside the scale"]),
    ("S1,a@example.org,mbt-acs,2,adherence,4.5", ["value '4.5' is not a whole number"]),
    ("S1,a@example.org,mbt-acs,2,adherence,", []),  # valid: checks the harness itself
]


def test_each_bad_rating_names_file_and_line_and_writes_nothing(w, make_user):
    make_user("rater", email="outsider@example.org")
    before = row_counts()

    def check(case):
        row, fragments = case
        plan = plan_ratings(w.study, RATINGS + "S2,b@example.org,mbt-acs,3,adherence,4\n" + row + "\n")
        if not fragments:
            assert plan.ok, [str(p) for p in plan.problems]
            return
        _refused(plan, 3, *fragments)
        assert [p.line for p in plan.problems] == [3], [str(p) for p in plan.problems]
        assert row_counts() == before

    check_each(RATING_CASES, check)


def test_duplicate_rating_in_the_file(w):
    plan = plan_ratings(w.study, RATINGS + "S1,a@example.org,mbt-acs,2,adherence,4\n"
                        "S1,b@example.org,mbt-acs,2,adherence,4\n"
                        "s1,A@example.org,mbt-acs,2,Adherence,5\n")
    _refused(plan, 4, "the same rating as on line 2", "keep one row per rating")


def test_every_problem_is_listed_once_per_name_with_its_other_lines(w):
    text = RATINGS + "".join(f"S1,ghost@example.org,mbt-acs,{i},competence,4\n" for i in range(1, 9)) \
        + "S1,a@example.org,mbt-acs,2,adherence,9\nS7,a@example.org,mbt-acs,3,adherence,4\n"
    plan = plan_ratings(w.study, text)
    messages = [str(p) for p in plan.problems]
    assert len(messages) == 3, messages
    assert messages[0].startswith("ratings.csv:2: no account with the e-mail 'ghost@example.org' "
                                  "(also on lines 3, 4, 5, 6, 7 and 2 more)")
    assert messages[1].startswith("ratings.csv:10: value 9 is outside the scale")
    assert messages[2].startswith("ratings.csv:11: unknown session 'S7'")


def test_problem_list_is_capped_but_counted(w):
    text = RATINGS + "".join(f"X{i},a@example.org,mbt-acs,2,adherence,4\n" for i in range(150))
    plan = plan_ratings(w.study, text)
    assert plan.n_problems == 150
    assert len(plan.problems) == 101
    assert plan.problems[-1].message == "… and 50 more problem(s) in this file not shown"


def test_file_problems_come_back_as_problems(w):
    for data, message in [(b"", "file is empty"), (RATINGS.encode(), "file has a header but no rows"),
                          (b"session,rater\nS1,a\n", "missing column(s) 'instrument'"),
                          (("Sitzung Ä\n").encode("cp1252"), "file is not valid UTF-8")]:
        plan = plan_ratings(w.study, data)
        assert not plan.ok and plan.problems[0].message.startswith(message), plan.problems


# --------------------------------------------------------------------------- existing work


def test_open_or_withdrawn_assignment_is_refused(w, make_assignment):
    open_one = make_assignment(w.s1, w.a)
    withdrawn = make_assignment(w.s2, w.a)
    withdraw(withdrawn, actor=None, reason="on leave")
    db.session.commit()
    before = row_counts()
    plan = plan_ratings(w.study, RATINGS + "S1,b@example.org,mbt-acs,2,adherence,4\n"
                        "S1,a@example.org,mbt-acs,2,adherence,4\nS1,a@example.org,mbt-acs,3,adherence,4\n"
                        "S2,a@example.org,mbt-acs,2,adherence,4\n")
    _refused(plan, 3, "a@example.org has an open assignment for session 'S1'", "working on it in the app")
    _refused(plan, 5, "a@example.org's assignment for session 'S2' was withdrawn")
    assert [p.line for p in plan.problems] == [3, 5]
    assert row_counts() == before
    assert open_one.status == "assigned"


def test_codes_then_ratings_for_the_same_rater_share_one_assignment(w):
    (coded,) = apply(plan_codes(w.study, CODES + "S1,1,a@example.org,intervention-spectrum,EV\n"))
    (rated,) = apply(plan_ratings(w.study, RATINGS + "S1,a@example.org,mbt-acs,2,adherence,4\n"))
    assert coded.id == rated.id
    assert db.session.scalars(select(Assignment)).all() == [coded]
    assert _codes(coded) == {1: ("intervention-spectrum", "EV")} and len(_ratings(coded)) == 1
    (added,) = _audit("assignment.import")
    assert (added.entity_id, added.detail["kind"], added.detail["rows"]) == (coded.id, "ratings", 1)
    # and back again: the assignment now has both kinds, so either import is refused
    _refused(plan_ratings(w.study, RATINGS + "S1,a@example.org,mbt-acs,3,adherence,4\n"), 2,
             "a@example.org already has ratings for session 'S1' (submitted)")
    _refused(plan_codes(w.study, CODES + "S1,2,a@example.org,nonmentalizing-modes,PE\n"), 2,
             "a@example.org already has codes for session 'S1'")


def test_work_submitted_in_the_app_is_never_added_to(w, make_assignment):
    assignment = make_assignment(w.s1, w.a)
    code_everything(assignment, w.a)
    rate_everything(assignment, w.a)
    assert submit(assignment, actor=w.a).complete
    db.session.commit()
    before = row_counts()
    _refused(plan_ratings(w.study, RATINGS + "S1,a@example.org,mbt-acs,2,adherence,4\n"), 2,
             "a@example.org already has ratings for session 'S1' (submitted)", "never mixed")
    _refused(plan_codes(w.study, CODES + "S1,1,a@example.org,intervention-spectrum,EV\n"), 2,
             "a@example.org already has codes for session 'S1' (submitted)")
    assert row_counts() == before


def test_adjudicated_session_is_refused(w):
    db.session.add(Consensus(study_id=w.study.id, session_id=w.s2.id, adjudicator_id=w.coordinator.id))
    db.session.commit()
    before = row_counts()
    plan = plan_ratings(w.study, RATINGS + "S1,a@example.org,mbt-acs,2,adherence,4\n"
                        "S2,a@example.org,mbt-acs,2,adherence,4\nS2,b@example.org,mbt-acs,2,adherence,4\n")
    _refused(plan, 3, "session 'S2' is already adjudicated", "(also on line 4)")
    assert row_counts() == before
    plan = plan_codes(w.study, CODES + "S2,1,a@example.org,intervention-spectrum,EV\n")
    _refused(plan, 2, "session 'S2' is already adjudicated")


# --------------------------------------------------------------------------- codes


def test_codes_become_a_submitted_assignment(w):
    text = CODES + (
        "S1,1,a@example.org,intervention-spectrum,EV\n"
        "S1,2,a@example.org,nonmentalizing-modes,pe\n"  # id in any case
        "S1,3,a@example.org,Intervention-Spectrum,clarification\n"  # label in any case
        "S1,4,a@example.org,,\n"  # not coded
    )
    plan = plan_codes(w.study, text)
    assert plan.summary() == "3 codes for 1 session by 1 rater (3 utterances not coded)"
    (assignment,) = apply(plan, actor=w.coordinator)
    assert assignment.status == "submitted" and assignment.submitted_at is not None
    assert _codes(assignment) == {1: ("intervention-spectrum", "EV"), 2: ("nonmentalizing-modes", "PE"),
                                  3: ("intervention-spectrum", "CLA")}
    assert [e.entity_id for e in _audit("assignment.create")] == [assignment.id]
    (summary,) = _audit("codes.import")
    assert summary.detail["rows"] == 3 and summary.detail["missing"] == 3
    assert summary.actor_id == w.coordinator.id


def test_each_bad_code_names_file_and_line_and_writes_nothing(w, make_session, make_user):
    make_session(w.study, ["T: hello", "Obs: (door opens)", "P: hi"], filename="S3.txt",
                 speaker_map={"Obs": "other"})
    db.session.add(TherapySession(study_id=w.study.id, label="No text"))
    db.session.commit()
    before = row_counts()
    spectrum = "intervention-spectrum"
    cases = [
        (f"S9,1,a@example.org,{spectrum},EV", ["unknown session 'S9'"]),
        (f"S1,1,nobody@example.org,{spectrum},EV", ["no account with the e-mail", "mbtcode user add"]),
        (f"S1,1,analyst@example.org,{spectrum},EV", ["not a rater", "mbtcode study member"]),
        (f"S1,7,a@example.org,{spectrum},EV", ["utterance 7 is beyond the end of session 'S1'",
                                               "6 utterances"]),
        ("S1,1,a@example.org,nonmentalizing-modes,PE", [
            "utterance 1 of session 'S1' is a therapist utterance", f"takes code set '{spectrum}'"]),
        ("S1,1,a@example.org,spectrum,EV", ["unknown code set 'spectrum'", f"{spectrum} (therapist"]),
        (f"S1,1,a@example.org,{spectrum},XX", [f"'XX' is not a code of {spectrum}", "EV, SUP"]),
        (f"S3,2,a@example.org,{spectrum},EV", ["utterance 2 of session 'S3' is spoken by 'Obs' (other)",
                                               "takes no code"]),
        (f"No text,1,a@example.org,{spectrum},EV", ["session 'No text' has no transcript", "mbtcode import"]),
        (f"S1,0,a@example.org,{spectrum},EV", ["utterance '0' is not a position"]),
        ("S1,2,a@example.org,nonmentalizing-modes,", []),  # valid: not coded
    ]

    def check(case):
        row, fragments = case
        plan = plan_codes(w.study, CODES + "S2,1,b@example.org,intervention-spectrum,EV\n" + row + "\n")
        if not fragments:
            assert plan.ok, [str(p) for p in plan.problems]
            return
        _refused(plan, 3, *fragments)
        assert [p.line for p in plan.problems] == [3], [str(p) for p in plan.problems]
        assert row_counts() == before

    check_each(cases, check)


def test_duplicate_code_rows(w):
    plan = plan_codes(w.study, CODES + "S1,1,a@example.org,intervention-spectrum,EV\n"
                      "S1,1,b@example.org,intervention-spectrum,EV\n"
                      "S1,1,a@example.org,intervention-spectrum,SUP\n")
    _refused(plan, 4, "utterance 1 of session 'S1' by a@example.org is also on line 2")


def test_open_assignment_refuses_codes(w, make_assignment):
    make_assignment(w.s1, w.b)
    before = row_counts()
    plan = plan_codes(w.study, CODES + "S1,1,b@example.org,intervention-spectrum,EV\n")
    _refused(plan, 2, "b@example.org has an open assignment for session 'S1'")
    assert row_counts() == before
