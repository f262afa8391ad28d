"""Importing outcome measures: plan (check the whole file) then apply; --replace in one transaction."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import func, select

from mbtcode.extensions import db
from mbtcode.models import AuditEvent, Outcome
from mbtcode.services.imports import SourceFile
from mbtcode.services.outcomes import apply_outcomes_import, plan_outcomes_import
from tests.conftest import check_each, row_counts, transcript_text

HEADER = "patient,date,study_day,measure,value\n"
MANIFEST = ("file,label,therapist,patient\n"
            "a.txt,A1,TH-01,PT-01\n"
            "b.txt,B1,TH-01,PT-02\n")


@pytest.fixture
def study(make_study, import_files):
    """A study whose manifest made patients PT-01 and PT-02 and therapist TH-01."""
    study = make_study("Outcomes study")
    import_files(study, {"a.txt": transcript_text(), "b.txt": transcript_text()}, manifest=MANIFEST)
    return study


def plan(study, text: str, *, replace: bool = False, name: str = "outcomes.csv"):
    return plan_outcomes_import(study, SourceFile(name, text.encode()), replace=replace)


def run(study, text: str, *, replace: bool = False, actor=None, name: str = "outcomes.csv"):
    planned = plan(study, text, replace=replace, name=name)
    assert planned.ok, [str(p) for p in planned.problems]
    n = apply_outcomes_import(planned, actor=actor)
    db.session.commit()
    return planned, n


def _stored() -> list[tuple]:
    rows = db.session.scalars(select(Outcome).order_by(Outcome.id))
    return [(o.patient.code, o.measure, o.outcome_date, o.study_day, o.value, o.source) for o in rows]


def test_outcomes_by_date_day_or_both(study, make_user):
    user = make_user("coordinator")
    text = HEADER + ("PT-01,2024-03-15,,BSI-GSI,1.25\n"
                     "pt-02,,-14,GAF,55\n"  # patient codes match in any case when unambiguous
                     "PT-02,2024-04-01,17,WAI,\"4,5\"\n"
                     "PT-01,2024-05-01,,WAI,\n")  # empty: skipped
    planned, n = run(study, text, actor=user)
    assert n == 3
    assert planned.summary() == ("3 outcomes (BSI-GSI, GAF, WAI) for 2 patients; "
                                 "1 row without a value skipped")
    assert _stored() == [
        ("PT-01", "BSI-GSI", dt.date(2024, 3, 15), None, 1.25, "outcomes.csv:2"),
        ("PT-02", "GAF", None, -14, 55.0, "outcomes.csv:3"),
        ("PT-02", "WAI", dt.date(2024, 4, 1), 17, 4.5, "outcomes.csv:4"),
    ]
    assert set(db.session.scalars(select(Outcome.imported_by_id))) == {user.id}
    (event,) = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "outcomes.import"))
    assert (event.actor_id, event.study_id, event.entity) == (user.id, study.id, "study")
    assert event.detail["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert (event.detail["file"], event.detail["outcomes"], event.detail["replaced"]) == (
        "outcomes.csv", 3, 0)
    assert event.detail["measures"] == ["BSI-GSI", "GAF", "WAI"]


def test_each_bad_row_names_file_and_line_and_writes_nothing(study):
    run(study, HEADER + "PT-01,2024-01-10,,GAF,50\n", name="first.csv")
    before = row_counts()
    cases = [
        ("PT-99,2024-01-01,,GAF,50", ["unknown patient 'PT-99' in study 'Outcomes study'", "manifest"]),
        ("TH-01,2024-01-01,,GAF,50", ["'TH-01' is a therapist in study 'Outcomes study', not a patient"]),
        ("PT-01,01.02.2024,,GAF,50", ["invalid date '01.02.2024' (expected YYYY-MM-DD"]),
        ("PT-01,,,GAF,50", ["row has neither a date nor a study_day"]),
        ("PT-01,,3.5,GAF,50", ["study_day '3.5' is not a whole number of days"]),
        ("PT-01,2024-01-01,,GAF,inf", ["value 'inf' is not a finite number"]),
        ("PT-01,2024-01-01,,GAF,NaN", ["value 'NaN' is not a finite number"]),
        ("PT-01,2024-01-01,,GAF,high", ["value 'high' is not a number"]),
        ("PT-01,2024-01-10,,GAF,51", ["PT-01 already has a GAF value for 2024-01-10 in this study",
                                      "imported from first.csv:2", "--replace"]),
        ("PT-01,2024-01-01,,gaf,50", ["measure 'gaf' is written 'GAF' in this study already"]),
        ("PT-01,2024-01-01,,,50", ["the 'measure' cell is empty"]),
        ("PT-01,2024-01-11,,GAF,50", []),  # valid: checks the harness itself
    ]

    def check(case):
        row, fragments = case
        planned = plan(study, HEADER + "PT-02,2024-01-01,,GAF,40\n" + row + "\n")
        if not fragments:
            assert planned.ok, [str(p) for p in planned.problems]
            return
        assert not planned.ok and planned.rows == []
        assert [p.line for p in planned.problems] == [3], [str(p) for p in planned.problems]
        message = str(planned.problems[0])
        assert message.startswith("outcomes.csv:3: ")
        for fragment in fragments:
            assert fragment in message, message
        with pytest.raises(ValueError):
            apply_outcomes_import(planned, actor=None)
        assert row_counts() == before

    check_each(cases, check)


def test_duplicates_within_the_file(study):
    planned = plan(study, HEADER + "PT-01,2024-01-01,,GAF,50\nPT-01,,3,GAF,50\nPT-01,2024-01-01,,GAF,52\n"
                   "PT-01,2024-01-01,,WAI,3\nPT-01,,3,Gaf,50\n")
    messages = [str(p) for p in planned.problems]
    assert messages[0] == ("outcomes.csv:4: PT-01 has a second GAF value for 2024-01-01 (first on line 2)"
                           " — keep one value per patient, measure and date")
    assert messages[1].startswith("outcomes.csv:6: measure 'Gaf' is written 'GAF' on line 2")
    assert len(messages) == 2


def test_unknown_patient_is_reported_once_with_its_other_lines(study):
    planned = plan(study, HEADER + "PT-9,2024-01-01,,GAF,1\nPT-9,2024-01-02,,GAF,1\nPT-9,2024-01-03,,GAF,1\n")
    (problem,) = planned.problems
    assert problem.line == 2 and problem.message.endswith("(also on lines 3, 4)")


def test_replace_deletes_the_files_measures_first(study):
    run(study, HEADER + "PT-01,2024-01-10,,GAF,50\nPT-02,2024-01-10,,GAF,60\nPT-01,2024-01-10,,WAI,4\n")
    before = row_counts()
    refused = plan(study, HEADER + "PT-01,2024-01-10,,GAF,55\n")
    assert not refused.ok and row_counts() == before
    planned, _n = run(study, HEADER + "PT-01,2024-01-10,,GAF,55\n", replace=True)
    assert planned.summary() == "1 outcome (GAF) for 1 patient; 2 existing outcomes replaced"
    assert sorted((code, measure, value) for code, measure, _d, _day, value, _s in _stored()) == [
        ("PT-01", "GAF", 55.0), ("PT-01", "WAI", 4.0)]
    first, second = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "outcomes.import").order_by(AuditEvent.id))
    assert (first.detail["replace"], second.detail["replace"], second.detail["replaced"]) == (False, True, 2)
    assert "replaced_outcomes" not in first.detail


def test_replace_keeps_the_replaced_values_in_the_audit(study):
    """What --replace deleted is in its audit row, so that it can be traced and imported again."""
    run(study, HEADER + "PT-02,,30,GAF,61.5\nPT-01,2024-01-10,,GAF,50\nPT-01,2024-02-10,40,GAF,52\n"
                        "PT-01,2024-01-10,,WAI,4\n", name="old.csv")
    run(study, HEADER + "PT-01,2024-03-01,,GAF,55\n", replace=True, name="new.csv")
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "outcomes.import")
                               .order_by(AuditEvent.id.desc())).first()
    db.session.expire_all()  # as stored (JSON), not as handed to the session
    assert event.detail["replaced"] == 3
    assert event.detail["replaced_outcomes"] == [
        {"patient": "PT-01", "measure": "GAF", "date": "2024-01-10", "study_day": None, "value": 50.0,
         "source": "old.csv:3"},
        {"patient": "PT-01", "measure": "GAF", "date": "2024-02-10", "study_day": 40, "value": 52.0,
         "source": "old.csv:4"},
        {"patient": "PT-02", "measure": "GAF", "date": None, "study_day": 30, "value": 61.5,
         "source": "old.csv:2"},
    ]
    # the audit row is enough to restore them: as a file, they import again as they were
    restore = HEADER + "".join(f"{o['patient']},{o['date'] or ''},{'' if o['study_day'] is None else o['study_day']},"
                               f"{o['measure']},{o['value']}\n" for o in event.detail["replaced_outcomes"])
    run(study, restore, replace=True, name="restore.csv")
    assert sorted((c, m, d, day, v) for c, m, d, day, v, _s in _stored()) == [
        ("PT-01", "GAF", dt.date(2024, 1, 10), None, 50.0), ("PT-01", "GAF", dt.date(2024, 2, 10), 40, 52.0),
        ("PT-01", "WAI", dt.date(2024, 1, 10), None, 4.0), ("PT-02", "GAF", None, 30, 61.5)]


def test_replace_with_a_problem_deletes_nothing(study):
    run(study, HEADER + "PT-01,2024-01-10,,GAF,50\n")
    before = row_counts()
    planned = plan(study, HEADER + "PT-01,2024-01-10,,GAF,55\nPT-77,2024-01-10,,GAF,1\n", replace=True)
    assert [p.line for p in planned.problems] == [3]
    with pytest.raises(ValueError):
        apply_outcomes_import(planned, actor=None)
    assert row_counts() == before


def test_replace_and_insert_are_one_transaction(study, monkeypatch):
    """A failure after the delete rolls the delete back with everything else."""
    run(study, HEADER + "PT-01,2024-01-10,,GAF,50\n")
    planned = plan(study, HEADER + "PT-01,2024-01-10,,GAF,55\n", replace=True)
    from mbtcode.services import outcomes

    def broken_record(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(outcomes.audit, "record", broken_record)
    with pytest.raises(RuntimeError):
        apply_outcomes_import(planned, actor=None)
    db.session.rollback()
    assert [(m, v) for _c, m, _d, _day, v, _s in _stored()] == [("GAF", 50.0)]


def test_bad_file_is_reported(study):
    for text, message in [("", "file is empty"), ("patient,measure,value\n", "missing column 'date' or"),
                          ("patient,date,measure\n", "missing column(s) 'value'"),
                          (HEADER, "file has a header but no rows")]:
        planned = plan(study, text)
        assert planned.problems and planned.problems[0].message.startswith(message), planned.problems
    assert db.session.scalar(select(func.count(Outcome.id))) == 0
