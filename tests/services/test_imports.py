"""Transcript import: plan (validate the whole batch) then apply (write it in one transaction)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import select

from mbtcode.extensions import db
from mbtcode.models import AuditEvent, TherapySession, Utterance
from mbtcode.services import audit
from mbtcode.services.imports import apply_import
from tests.conftest import row_counts, transcript_text

SESSION_TXT = (
    "[00:00:01] T: Hello, how has your week been?\n"
    "[00:00:05] P: Not good.\n"
    "It was a hard week.\n"
    "[00:01:10] T: Hard in what way?\n"
)
MANIFEST_HEADER = "file,label,therapist,patient,date,modality,phase,session_number,language\n"
MANIFEST = MANIFEST_HEADER + "s1.txt,TH-01/PT-01 #3,TH-01,PT-01,2026-01-13,individual,initial,3,en\n"


def _utterances(session: TherapySession) -> list[Utterance]:
    return list(db.session.scalars(session.transcript.utterances.select()))


def _messages(plan) -> list[str]:
    return [str(p) for p in plan.problems]


@pytest.fixture
def study(make_study):
    return make_study()


# --------------------------------------------------------------------------- happy path


def test_import_writes_utterances_in_order_with_roles_and_times(study, import_files):
    (session,) = import_files(study, {"s1.txt": SESSION_TXT})
    rows = [(u.position, u.speaker, u.role, u.start_s, u.text) for u in _utterances(session)]
    assert rows == [
        (1, "T", "therapist", 1.0, "Hello, how has your week been?"),
        (2, "P", "patient", 5.0, "Not good. It was a hard week."),
        (3, "T", "therapist", 70.0, "Hard in what way?"),
    ]


def test_import_records_the_transcript_file(study, import_files):
    (session,) = import_files(study, {"dir/s1.txt": SESSION_TXT})
    transcript = session.transcript
    assert transcript.original_filename == "s1.txt"
    assert transcript.format == "txt"
    assert transcript.n_utterances == 3
    assert transcript.sha256 == hashlib.sha256(SESSION_TXT.encode()).hexdigest()


def test_label_defaults_to_the_file_stem(study, import_files):
    (session,) = import_files(study, {"dir/TH-07 session 2.txt": SESSION_TXT})
    assert session.label == "TH-07 session 2"


def test_manifest_sets_session_metadata_and_participants(study, import_files):
    (session,) = import_files(study, {"s1.txt": SESSION_TXT}, manifest=MANIFEST)
    db.session.expire_all()
    assert session.label == "TH-01/PT-01 #3"
    assert session.session_date == dt.date(2026, 1, 13)
    assert (session.modality, session.phase, session.session_number, session.language) == (
        "individual", "initial", 3, "en")
    assert session.participant_codes("therapist") == ["TH-01"]
    assert session.participant_codes("patient") == ["PT-01"]


def test_participants_are_shared_between_sessions_of_a_study(study, import_files):
    manifest = MANIFEST + "s2.txt,TH-01/PT-02 #1,TH-01,PT-02,,,,,\n"
    one, two = import_files(
        study, {"s1.txt": SESSION_TXT, "s2.txt": transcript_text()}, manifest=manifest
    )
    therapist_ids = {
        link.participant_id for s in (one, two) for link in s.participant_links
        if link.participant.kind == "therapist"
    }
    assert len(therapist_ids) == 1


def test_modality_inferred_group_when_several_patient_speakers(study, import_files):
    (session,) = import_files(study, {"g.txt": transcript_text(6, speakers=("T", "P1", "P2"))})
    assert session.modality == "group"


def test_modality_inferred_individual_with_one_patient(study, import_files):
    (session,) = import_files(study, {"i.txt": transcript_text(6, speakers=("T1", "T2", "P"))})
    assert session.modality == "individual"


def test_manifest_modality_wins_over_inference(study, import_files):
    manifest = MANIFEST_HEADER + "g.txt,,,,,psychoeducation,,,\n"
    (session,) = import_files(
        study, {"g.txt": transcript_text(6, speakers=("T", "P1", "P2"))}, manifest=manifest
    )
    assert session.modality == "psychoeducation"


def test_plan_writes_nothing(study, plan_files):
    before = row_counts()
    plan = plan_files(study, {"s1.txt": SESSION_TXT}, manifest=MANIFEST)
    assert plan.ok
    assert row_counts() == before


# --------------------------------------------------------------------------- all-or-nothing

BAD_TXT = "no speaker on this line\n[00:00:01] T: fine\n[00:99:00] P: broken timestamp\n"


def test_batch_with_one_bad_file_writes_nothing(study, plan_files):
    before = row_counts()
    plan = plan_files(study, {"a.txt": transcript_text(), "bad.txt": BAD_TXT, "c.txt": transcript_text()})
    assert not plan.ok
    with pytest.raises(ValueError, match="problems"):
        apply_import(plan, actor=None)
    db.session.rollback()
    assert row_counts() == before


def test_batch_lists_every_problem_of_a_bad_file(study, plan_files):
    plan = plan_files(study, {"a.txt": transcript_text(), "bad.txt": BAD_TXT})
    assert [(p.file, p.line) for p in plan.problems] == [("bad.txt", 1), ("bad.txt", 3)]
    assert "no speaker" in plan.problems[0].message


def test_batch_lists_problems_of_every_bad_file(study, plan_files):
    plan = plan_files(study, {
        "bad1.txt": BAD_TXT,
        "ok.txt": transcript_text(),
        "empty.txt": b"",
        "who.txt": "[00:00:01] Zorro: I am nobody's role\n",
    })
    assert {p.file for p in plan.problems} == {"bad1.txt", "empty.txt", "who.txt"}
    assert any("unknown speaker 'Zorro'" in m for m in _messages(plan))
    assert any("empty" in m for m in _messages(plan))


def test_exception_mid_apply_then_rollback_leaves_no_rows(study, plan_files, monkeypatch):
    plan = plan_files(study, {f"s{i}.txt": transcript_text() for i in range(3)})
    assert plan.ok
    before = row_counts()
    real_record = audit.record
    calls = []

    def failing_record(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real_record(*args, **kwargs)

    monkeypatch.setattr(audit, "record", failing_record)
    with pytest.raises(RuntimeError, match="disk on fire"):
        apply_import(plan, actor=None)
    db.session.rollback()
    assert row_counts() == before
    assert before["therapy_session"] == before["transcript"] == before["utterance"] == 0


def test_empty_batch_is_a_problem(study, plan_files):
    plan = plan_files(study, {})
    assert not plan.ok
    assert "no files given" in _messages(plan)[0]


# --------------------------------------------------------------------------- duplicates


def test_content_already_in_the_study_is_refused(study, import_files, plan_files):
    import_files(study, {"first.txt": SESSION_TXT})
    plan = plan_files(study, {"renamed.txt": SESSION_TXT})
    (problem,) = plan.problems
    assert problem.file == "renamed.txt"
    assert "already imported into study" in problem.message
    assert "'first'" in problem.message


def test_same_content_in_another_study_is_fine(study, make_study, import_files, plan_files):
    import_files(study, {"first.txt": SESSION_TXT})
    assert plan_files(make_study(), {"first.txt": SESSION_TXT}).ok


def test_identical_content_twice_in_one_batch_is_refused(study, plan_files):
    plan = plan_files(study, {"a.txt": SESSION_TXT, "b.txt": SESSION_TXT})
    (problem,) = plan.problems
    assert problem.file == "b.txt"
    assert "identical content to a.txt in this batch" in problem.message


def test_duplicate_label_within_batch_is_refused(study, plan_files):
    plan = plan_files(study, {"one/x.txt": transcript_text(), "two/x.txt": transcript_text()})
    (problem,) = plan.problems
    assert problem.file == "two/x.txt"
    assert "session label 'x' is also used by one/x.txt" in problem.message


def test_label_already_in_study_is_refused(study, import_files, plan_files):
    import_files(study, {"x.txt": transcript_text()})
    plan = plan_files(study, {"elsewhere/x.txt": transcript_text()})
    (problem,) = plan.problems
    assert "already has a session labelled 'x'" in problem.message


def test_manifest_label_already_in_study_is_refused(study, import_files, plan_files):
    import_files(study, {"s1.txt": SESSION_TXT}, manifest=MANIFEST)
    manifest = MANIFEST.replace("s1.txt", "other.txt")
    plan = plan_files(study, {"other.txt": transcript_text()}, manifest=manifest)
    assert any("already has a session labelled 'TH-01/PT-01 #3'" in m for m in _messages(plan))


# --------------------------------------------------------------------------- manifest, speakers


def test_file_missing_from_manifest_is_refused(study, plan_files):
    plan = plan_files(study, {"s1.txt": SESSION_TXT, "s2.txt": transcript_text()}, manifest=MANIFEST)
    (problem,) = plan.problems
    assert problem.file == "s2.txt"
    assert "not listed in the manifest" in problem.message


def test_bad_manifest_is_reported_with_the_files(study, plan_files):
    manifest = MANIFEST_HEADER + "s1.txt,,,,13.01.2026,,,,\n"
    plan = plan_files(study, {"s1.txt": SESSION_TXT}, manifest=manifest)
    assert not plan.ok
    assert any("invalid date '13.01.2026'" in m for m in _messages(plan))


def test_unknown_speaker_label_is_a_problem(study, plan_files):
    plan = plan_files(study, {"s.txt": "[00:00:01] Dr Who: Hello\n[00:00:02] P: Hi\n"})
    (problem,) = plan.problems
    assert "unknown speaker 'Dr Who'" in problem.message
    assert problem.line == 1


def test_speaker_map_maps_an_unknown_label(study, import_files):
    (session,) = import_files(
        study, {"s.txt": "[00:00:01] Dr Who: Hello\n[00:00:02] P: Hi\n"},
        speaker_map={"Dr Who": "therapist"},
    )
    assert [(u.speaker, u.role) for u in _utterances(session)] == [
        ("Dr Who", "therapist"), ("P", "patient")]


def test_speaker_map_overrides_the_default_role(study, import_files):
    (session,) = import_files(study, {"s.txt": SESSION_TXT}, speaker_map={"P": "other"})
    assert {u.speaker: u.role for u in _utterances(session)} == {"T": "therapist", "P": "other"}


def test_manifest_speaker_map_overrides_the_command_line_map(study, import_files):
    manifest = "file,speaker_map\ns.txt,P=patient\n"
    (session,) = import_files(study, {"s.txt": SESSION_TXT}, manifest=manifest,
                              speaker_map={"P": "other"})
    assert {u.speaker: u.role for u in _utterances(session)}["P"] == "patient"


# --------------------------------------------------------------------------- audit


def test_one_transcript_import_audit_row_per_session(study, import_files, make_user):
    user = make_user("coordinator")
    texts = {"a.txt": transcript_text(), "b.txt": transcript_text()}
    sessions = import_files(study, texts, actor=user)
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "transcript.import").order_by(AuditEvent.id)
    ).all()
    assert [e.entity_id for e in events] == [s.id for s in sessions]
    for event, (name, text) in zip(events, texts.items(), strict=True):
        assert event.actor_id == user.id
        assert event.study_id == study.id
        assert event.entity == "therapy_session"
        assert event.detail["new"]["file"] == name
        assert event.detail["new"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
        assert event.detail["new"]["speakers"] == {"T": "therapist", "P": "patient"}


# --------------------------------------------------------------------------- site and team


def test_manifest_site_and_team_are_set_on_the_session(study, import_files):
    manifest = "file,label,site,team\ns1.txt,S1,Oslo,Team A\ns2.txt,S2,,\n"
    one, two = import_files(study, {"s1.txt": SESSION_TXT, "s2.txt": transcript_text()}, manifest=manifest)
    db.session.expire_all()
    assert (one.site, one.team) == ("Oslo", "Team A")
    assert (two.site, two.team) == (None, None)


def test_site_too_long_is_a_manifest_problem_and_nothing_is_written(study, plan_files):
    before = row_counts()
    plan = plan_files(study, {"s1.txt": SESSION_TXT}, manifest=f"file,site\ns1.txt,{'x' * 101}\n")
    assert _messages(plan) == ["manifest.csv:2: site is too long (101 characters; the limit is 100) — "
                               "use a short site name or code"]
    assert row_counts() == before
