"""``mbtcode import-ratings``, ``import-codes``, ``import-outcomes``: the fixed interfaces."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from mbtcode.extensions import db
from mbtcode.models import Assignment, AuditEvent, ItemRating, Outcome, UtteranceCode
from tests.conftest import row_counts, transcript_text

RATINGS = "session,rater,instrument,item,dimension,value\n"
CODES = "session,utterance,rater,code_set,code\n"
OUTCOMES = "patient,date,study_day,measure,value\n"
MANIFEST = "file,label,therapist,patient,site,team\nS1.txt,S1,TH-01,PT-01,Oslo,Team A\n"


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def cli(runner):
    """Invoke ``mbtcode ARGS...``; a crash (anything but a clean exit) fails the test."""

    def invoke(*args: str):
        result = runner.invoke(args=list(args))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


@pytest.fixture
def write(tmp_path):
    def do(name: str, content: str | bytes) -> str:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    return do


@pytest.fixture
def study(make_study, import_files, make_user, make_member):
    """Study 'Pilot' with session S1 (T/P/T/P/T/P; patient PT-01) and rater r@example.org."""
    study = make_study("Pilot")
    import_files(study, {"S1.txt": transcript_text(6)}, manifest=MANIFEST)
    rater = make_user("rater", email="r@example.org")
    make_member(study, rater, "rater")
    return study


def _failed(result, file: str, n: int) -> list[str]:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"Error: nothing was imported: {n} problem(s) in {file}; fix them and run again"
    assert "imported" not in result.stdout
    return lines[:-1]


def test_import_ratings(cli, study, write):
    path = write("ratings.csv", RATINGS + "S1,r@example.org,mbt-acs,2,adherence,4\n"
                 "S1,r@example.org,mbt-acs,,overall_competence,5\n")
    result = cli("import-ratings", path, "--study", "Pilot")
    assert result.exit_code == 0, result.output
    assert result.stdout == "imported 2 ratings for 1 session by 1 rater (31 items not rated)\n"
    (assignment,) = db.session.scalars(select(Assignment))
    assert assignment.status == "submitted"
    assert _count(ItemRating) == 2
    assert db.session.scalar(select(func.count()).where(AuditEvent.action == "ratings.import")) == 1


def test_import_ratings_dry_run_writes_nothing(cli, study, write):
    before = row_counts()
    path = write("ratings.csv", RATINGS + "S1,r@example.org,mbt-acs,2,adherence,4\n")
    result = cli("import-ratings", path, "--study", "Pilot", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("Dry run: would import 1 rating for 1 session by 1 rater (32 items not rated); "
                             "nothing was written.\n")
    assert row_counts() == before


def test_import_ratings_failure_lists_every_problem_and_writes_nothing(cli, study, write):
    before = row_counts()
    path = write("ratings.csv", RATINGS + "S1,r@example.org,mbt-acs,2,adherence,4\n"
                 "S1,r@example.org,mbt-acs,3,adherence,9\n"
                 "S1,someone@example.org,mbt-acs,3,adherence,4\n")
    problems = _failed(cli("import-ratings", path, "--study", "Pilot"), path, 2)
    assert problems[0].startswith(f"{path}:3: value 9 is outside the scale of mbt-acs (1 to 7)")
    assert re.match(re.escape(path) + r":4: no account with the e-mail 'someone@example.org' — create it "
                    r"with 'mbtcode user add someone@example.org", problems[1])
    assert row_counts() == before


def test_import_codes(cli, study, write):
    path = write("codes.csv", CODES + "S1,1,r@example.org,intervention-spectrum,EV\n"
                 "S1,2,r@example.org,nonmentalizing-modes,Pretend mode\n")
    result = cli("import-codes", path, "--study", "Pilot")
    assert result.exit_code == 0, result.output
    assert result.stdout == "imported 2 codes for 1 session by 1 rater (4 utterances not coded)\n"
    assert sorted(db.session.scalars(select(UtteranceCode.code))) == ["EV", "PM"]


def test_import_codes_then_ratings(cli, study, write):
    assert cli("import-codes", write("c.csv", CODES + "S1,1,r@example.org,intervention-spectrum,EV\n"),
               "--study", "Pilot").exit_code == 0
    result = cli("import-ratings", write("r.csv", RATINGS + "S1,r@example.org,mbt-acs,2,adherence,4\n"),
                 "--study", "Pilot")
    assert result.exit_code == 0, result.output
    assert _count(Assignment) == 1


def test_import_codes_failure(cli, study, write, make_assignment, make_user):
    before = row_counts()
    path = write("codes.csv", CODES + "S1,9,r@example.org,intervention-spectrum,EV\n"
                 "S1,1,r@example.org,nonmentalizing-modes,PE\n")
    problems = _failed(cli("import-codes", path, "--study", "Pilot"), path, 2)
    assert problems[0].startswith(f"{path}:2: utterance 9 is beyond the end of session 'S1'")
    assert problems[1].startswith(f"{path}:3: utterance 1 of session 'S1' is a therapist utterance")
    assert row_counts() == before


def test_import_outcomes_and_replace(cli, study, write):
    path = write("outcomes.csv", OUTCOMES + "PT-01,2024-01-10,,GAF,50\nPT-01,,30,GAF,55\n")
    result = cli("import-outcomes", path, "--study", "Pilot")
    assert result.exit_code == 0, result.output
    assert result.stdout == "imported 2 outcomes (GAF) for 1 patient\n"
    before = row_counts()
    again = cli("import-outcomes", path, "--study", "Pilot")
    problems = _failed(again, path, 2)
    assert problems[0].startswith(f"{path}:2: PT-01 already has a GAF value for 2024-01-10 in this study")
    assert row_counts() == before
    replaced = cli("import-outcomes", path, "--study", "Pilot", "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert replaced.stdout == "imported 2 outcomes (GAF) for 1 patient; 2 existing outcomes replaced\n"
    assert _count(Outcome) == 2


def test_import_outcomes_dry_run(cli, study, write):
    before = row_counts()
    result = cli("import-outcomes", write("o.csv", "patient,study_day,measure,value\nPT-01,0,WAI,5\n"),
                 "--study", "Pilot", "--replace", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("Dry run: would import 1 outcome (WAI) for 1 patient; 0 existing outcomes "
                             "replaced; nothing was written.\n")
    assert row_counts() == before


@pytest.mark.parametrize("command", ["import-ratings", "import-codes", "import-outcomes"])
def test_bad_files_name_the_file_and_write_nothing(cli, study, write, command):
    before = row_counts()
    cases = [
        (b"", "bad.csv: file is empty"),
        (b"session,rater,comment\nS1,r,x\n", "bad.csv:1: unknown column(s) "),
        ("patient,Sitzung\n\u00c4,1\n".encode("cp1252"), "bad.csv:2: file is not valid UTF-8"),
    ]
    for data, message in cases:
        path = write("bad.csv", data)
        result = cli(command, path, "--study", "Pilot")
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert message in lines[0] and ("'comment'" in lines[0] or "column" not in message), lines
        assert re.fullmatch(r"Error: nothing was imported: \d+ problem\(s\) in .*bad\.csv; fix them and run "
                            r"again", lines[-1]), lines
    assert row_counts() == before


def test_missing_file_and_unknown_study(cli, study, write, tmp_path):
    missing = str(tmp_path / "nope.csv")
    result = cli("import-ratings", missing, "--study", "Pilot")
    assert result.exit_code == 1 and f"{missing}: file not found" in result.stderr
    result = cli("import-codes", write("c.csv", CODES), "--study", "Nope")
    assert result.exit_code == 1
    assert "no study named 'Nope' (known: 'Pilot')" in result.stderr.strip().splitlines()[-1]


def test_manifest_site_and_team_reach_the_session(study):
    from mbtcode.models import TherapySession

    (session,) = db.session.scalars(select(TherapySession))
    assert (session.site, session.team) == ("Oslo", "Team A")
