"""The fixed command-line interface: exit codes, one-line errors, JSON on stdout only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from sqlalchemy import func, select

from mbtcode.cli import _commands, main
from mbtcode.extensions import db
from mbtcode.models import SchemeVersion, Study, TherapySession, User, Utterance
from mbtcode.services.sessions import list_sessions
from mbtcode.services.studies import get_study_by_name
from mbtcode.services.users import authenticate
from tests.conftest import MINIMAL_SCHEME, PASSWORD, row_counts, transcript_text


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def _error_line(result) -> str:
    """The failing command's reason: the last stderr line, which must start with 'Error:'."""
    lines = result.stderr.strip().splitlines()
    assert lines, f"no reason on stderr; stdout was {result.stdout!r}"
    assert lines[-1].startswith("Error: "), lines
    return lines[-1]


@pytest.fixture
def cli(runner):
    """Invoke ``mbtcode ARGS...``; a crash (anything but a clean exit) fails the test."""

    def invoke(*args: str, input: str | None = None):
        result = runner.invoke(args=list(args), input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


@pytest.fixture
def write(tmp_path):
    """Write a file under tmp_path and return its path as a string."""

    def do(name: str, content: str | bytes) -> str:
        path = tmp_path / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    return do


@pytest.fixture
def study(make_study):
    return make_study("Pilot")


def _all_command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command: click.Command, prefix: list[str]) -> None:
        paths.append(prefix)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*prefix, name])

    for command in _commands():
        walk(command, [command.name])
    return paths


# --------------------------------------------------------------------------- help, version


@pytest.mark.parametrize("path", _all_command_paths(), ids=" ".join)
def test_every_command_has_help(cli, path):
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ")
    assert " ".join(path) in result.stdout.splitlines()[0]


def test_main_help_lists_every_command(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "serve", "demo", "user", "study", "scheme", "import", "session"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), command


def test_main_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert re.fullmatch(r"mbtcode \d+\.\d+\.\d+\n", result.stdout)


# --------------------------------------------------------------------------- init


def test_init_twice_on_an_empty_database(make_app, tmp_path):
    fresh = make_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
                      "SECRET_KEY": "x"})
    runner = fresh.test_cli_runner()
    first = runner.invoke(args=["init"])
    second = runner.invoke(args=["init"])
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert first.stdout.startswith("Database created")
    assert second.stdout.startswith("Database up to date")
    assert "mbtcode user add EMAIL --name NAME --role admin" in second.stdout
    with fresh.app_context():
        keys = db.session.scalars(select(SchemeVersion.key).order_by(SchemeVersion.key)).all()
    assert keys == ["mbt-individual", "mbt-program-quality", "miti-example"]


def test_init_on_a_current_database(cli):
    first, second = cli("init"), cli("init")
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert "up to date" in second.stdout
    assert _count(SchemeVersion) == 3


def test_commands_refuse_an_uninitialised_database(make_app, tmp_path):
    fresh = make_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
                      "SECRET_KEY": "x"})
    result = fresh.test_cli_runner().invoke(args=["study", "create", "X"])
    assert result.exit_code == 1
    assert "run 'mbtcode init' first" in result.stderr


# --------------------------------------------------------------------------- users


def test_user_add_with_password_stdin(cli):
    result = cli("user", "add", "Alice@Example.org", "--name", "Alice", "--role", "coordinator",
                 "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "Created coordinator alice@example.org" in result.stdout
    assert authenticate("alice@example.org", PASSWORD).role == "coordinator"


def test_user_add_bad_role(cli):
    result = cli("user", "add", "a@example.org", "--name", "A", "--role", "boss",
                 "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code != 0
    line = _error_line(result)
    assert "'--role'" in line and "boss" in line and "rater" in line
    assert _count(User) == 0


def test_user_add_short_password(cli):
    result = cli("user", "add", "a@example.org", "--name", "A", "--role", "rater",
                 "--password-stdin", input="short\n")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: password too short")
    assert len(result.stderr.strip().splitlines()) == 1
    assert _count(User) == 0


def test_user_add_duplicate(cli, make_user):
    make_user(email="a@example.org")
    result = cli("user", "add", "A@EXAMPLE.ORG", "--name", "A", "--role", "rater",
                 "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 1
    assert "already exists" in _error_line(result)


def test_user_add_without_terminal_needs_password_stdin(cli):
    result = cli("user", "add", "a@example.org", "--name", "A", "--role", "rater", input=PASSWORD)
    assert result.exit_code == 1
    assert "--password-stdin" in _error_line(result)


# --------------------------------------------------------------------------- studies


def test_study_create_uses_the_default_scheme(cli):
    result = cli("study", "create", "Pilot  study")
    assert result.exit_code == 0, result.output
    assert "Created study 'Pilot study'" in result.stdout
    assert get_study_by_name("Pilot study").scheme_version.key == "mbt-individual"


def test_study_create_with_scheme(cli):
    result = cli("study", "create", "MI trial", "--scheme", "miti-example")
    assert result.exit_code == 0, result.output
    assert "using scheme miti-example@1" in result.stdout
    assert get_study_by_name("MI trial").scheme_version.ref == "miti-example@1"


def test_study_create_unknown_scheme_names_the_known_ones(cli):
    result = cli("study", "create", "X", "--scheme", "cts-r")
    assert result.exit_code == 1
    line = _error_line(result)
    assert "no scheme 'cts-r'" in line
    assert "mbt-individual@1" in line and "miti-example@1" in line
    assert _count(Study) == 0


def test_study_create_duplicate_name(cli, study):
    result = cli("study", "create", "Pilot")
    assert result.exit_code == 1
    assert "already exists" in _error_line(result)


def test_study_list_json(cli, study, make_session):
    make_session(study)
    result = cli("study", "list", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {"id": study.id, "name": "Pilot", "scheme": "mbt-individual@1", "n_sessions": 1}]


# --------------------------------------------------------------------------- schemes


def test_scheme_list_json_is_the_only_stdout(cli):
    cli("init")
    result = cli("scheme", "list", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)  # fails on any extra text
    assert result.stderr == ""
    assert {item["ref"] for item in data} == {
        "mbt-individual@1", "mbt-program-quality@1", "miti-example@1"}
    assert all({"id", "revision", "version", "title", "sha256"} <= set(item) for item in data)


def test_scheme_list_text(cli):
    cli("init")
    result = cli("scheme", "list")
    assert result.exit_code == 0
    assert "miti-example@1" in result.stdout


def test_scheme_validate_good_file(cli, scheme_file):
    result = cli("scheme", "validate", str(scheme_file()))
    assert result.exit_code == 0, result.output
    assert "valid scheme 'test-scheme'" in result.stdout
    assert _count(SchemeVersion) == 0  # validate writes nothing


def test_scheme_validate_bad_file(cli, scheme_file):
    doc = dict(MINIMAL_SCHEME)
    del doc["version"]
    path = scheme_file(doc, colour="red")
    result = cli("scheme", "validate", str(path))
    assert result.exit_code == 1
    assert "'version'" in result.stderr
    assert "unknown field 'colour'" in result.stderr
    assert "not a valid scheme (2 problem(s) above)" in _error_line(result)


def test_scheme_validate_missing_file(cli, tmp_path):
    result = cli("scheme", "validate", str(tmp_path / "nope.json"))
    assert result.exit_code != 0
    assert "nope.json" in _error_line(result)


def test_scheme_add_new_then_unchanged_then_changed(cli, scheme_file):
    path = scheme_file()
    added = cli("scheme", "add", str(path))
    unchanged = cli("scheme", "add", str(path))
    changed = cli("scheme", "add", str(scheme_file(version="2", title="Changed")))
    assert [r.exit_code for r in (added, unchanged, changed)] == [0, 0, 0]
    assert "Added scheme test-scheme@1" in added.stdout
    assert "Unchanged: identical to stored scheme test-scheme@1" in unchanged.stdout
    assert "Added scheme test-scheme@2" in changed.stdout
    assert _count(SchemeVersion) == 2


# --------------------------------------------------------------------------- import

TXT = "[00:00:01] T: Hello.\n[00:00:04] P: Hi there.\n[00:00:09] T: What brings you?\n"
MANIFEST = (
    "file,label,therapist,patient,date,modality,phase,session_number,language\n"
    "a.txt,TH-01/PT-01 #1,TH-01,PT-01,2026-02-01,individual,initial,1,en\n"
    "b.txt,TH-01/PT-02 #4,TH-01,PT-02,2026-02-08,individual,main,4,en\n"
)


def test_import_with_manifest(cli, study, write):
    files = [write("a.txt", TXT), write("b.txt", transcript_text())]
    result = cli("import", *files, "--study", "Pilot", "--manifest", write("m.csv", MANIFEST))
    assert result.exit_code == 0, result.output
    assert "Imported 2 session(s) into study 'Pilot'" in result.stdout
    sessions = db.session.scalars(select(TherapySession).order_by(TherapySession.id)).all()
    assert [(s.label, s.phase, s.session_number) for s in sessions] == [
        ("TH-01/PT-01 #1", "initial", 1), ("TH-01/PT-02 #4", "main", 4)]
    assert sessions[0].transcript.n_utterances == 3


def test_import_dry_run_writes_nothing(cli, study, write):
    before = row_counts()
    result = cli("import", write("a.txt", TXT), "--study", "Pilot", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Dry run: 1 file(s) valid; nothing was written." in result.stdout
    assert row_counts() == before


def test_import_failure_writes_nothing_and_lists_every_problem(cli, study, write):
    before = row_counts()
    files = [
        write("good.txt", TXT),
        write("bad.txt", "no speaker here\n[00:00:01] T: ok\n[00:99:00] P: broken\n"),
        write("empty.txt", b""),
    ]
    result = cli("import", *files, "--study", "Pilot")
    assert result.exit_code == 1
    assert row_counts() == before
    lines = result.stderr.strip().splitlines()
    assert any(re.search(r"bad\.txt:1: .*no speaker", line) for line in lines)
    assert any(re.search(r"bad\.txt:3: ", line) for line in lines)
    assert any("empty.txt" in line and "empty" in line.split("empty.txt", 1)[1] for line in lines)
    assert lines[-1] == ("Error: nothing was imported: 3 problem(s) in 2 file(s); "
                         "fix them and run again")
    assert "Imported" not in result.stdout


def test_import_missing_file_is_a_problem(cli, study, write, tmp_path):
    result = cli("import", write("a.txt", TXT), str(tmp_path / "missing.txt"), "--study", "Pilot")
    assert result.exit_code == 1
    assert "missing.txt: file not found" in result.stderr
    assert _count(TherapySession) == 0


def test_import_unknown_study_names_the_known_ones(cli, study, write):
    result = cli("import", write("a.txt", TXT), "--study", "Nope")
    assert result.exit_code == 1
    assert "no study named 'Nope' (known: 'Pilot')" in _error_line(result)


def test_import_again_is_detected(cli, study, write):
    path = write("a.txt", TXT)
    cli("import", path, "--study", "Pilot")
    result = cli("import", path, "--study", "Pilot")
    assert result.exit_code == 1
    assert "already imported" in result.stderr
    assert _count(TherapySession) == 1


def test_import_speaker_map(cli, study, write):
    path = write("s.txt", "[00:00:01] Dr Who: Hello.\n[00:00:02] Rose: Hi.\n")
    result = cli("import", path, "--study", "Pilot", "--speaker-map", "Dr Who=therapist, Rose=patient")
    assert result.exit_code == 0, result.output
    roles = dict(db.session.execute(select(Utterance.speaker, Utterance.role)).all())
    assert roles == {"Dr Who": "therapist", "Rose": "patient"}


def test_import_bad_speaker_map(cli, study, write):
    result = cli("import", write("a.txt", TXT), "--study", "Pilot", "--speaker-map", "T=boss")
    assert result.exit_code == 1
    assert "unknown role 'boss'" in result.stderr
    assert _count(TherapySession) == 0


def test_import_csv_with_custom_columns(cli, study, write):
    path = write("sitzung.dat", "Sprecher,Inhalt\nT,Wie geht es Ihnen?\nP,Nicht so gut.\n")
    result = cli("import", path, "--study", "Pilot", "--format", "csv",
                 "--csv-columns", "speaker=Sprecher,text=Inhalt")
    assert result.exit_code == 0, result.output
    rows = db.session.execute(
        select(Utterance.position, Utterance.speaker, Utterance.text).order_by(Utterance.position)
    ).all()
    assert [tuple(r) for r in rows] == [(1, "T", "Wie geht es Ihnen?"), (2, "P", "Nicht so gut.")]


def test_import_bad_csv_columns_option(cli, study, write):
    result = cli("import", write("a.csv", "a,b\n"), "--study", "Pilot", "--csv-columns", "who=Sprecher")
    assert result.exit_code == 1
    assert "bad --csv-columns part 'who=Sprecher'" in _error_line(result)


# --------------------------------------------------------------------------- sessions


def test_session_list_json_shape(cli, study, import_files):
    (session,) = import_files(study, {"a.txt": TXT})
    result = cli("session", "list", "--study", "Pilot", "--json")
    assert result.exit_code == 0
    assert result.stderr == ""
    (item,) = json.loads(result.stdout)
    assert {k: item[k] for k in ("id", "label", "n_utterances", "speakers")} == {
        "id": session.id, "label": "a", "n_utterances": 3,
        "speakers": {"T": "therapist", "P": "patient"},
    }


def test_session_list_json_has_site_and_team_from_the_manifest(cli, study, import_files):
    manifest = "file,label,therapist,patient,site,team\na.txt,s1,TH-01,PT-01,Oslo,Team A\n"
    import_files(study, {"a.txt": TXT}, manifest=manifest)
    (item,) = json.loads(cli("session", "list", "--study", "Pilot", "--json").stdout)
    assert (item["site"], item["team"], item["therapists"]) == ("Oslo", "Team A", ["TH-01"])


def test_session_list_json_empty_study(cli, study):
    result = cli("session", "list", "--study", "Pilot", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


def test_session_list_text(cli, study, import_files):
    import_files(study, {"a.txt": TXT})
    result = cli("session", "list", "--study", "Pilot")
    assert result.exit_code == 0
    assert "a" in result.stdout and "T=therapist, P=patient" in result.stdout


def test_session_list_unknown_study(cli, study):
    result = cli("session", "list", "--study", "Nope", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no study named 'Nope'" in _error_line(result)


# --------------------------------------------------------------------------- demo


def _accounts(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+\w+\s+(\S+@demo\.example\.org)\s+(\S+)$", stdout, re.M))


def test_demo_is_idempotent(cli):
    first = cli("demo", "--no-serve")
    assert first.exit_code == 0, first.output
    n_sessions, n_users = _count(TherapySession), _count(User)
    second = cli("demo", "--no-serve")
    assert second.exit_code == 0, second.output
    assert "already loaded" in second.stdout
    assert (_count(TherapySession), _count(User)) == (n_sessions, n_users)
    assert n_sessions >= 6
    assert len(_accounts(first.stdout)) == n_users == 7  # 5 roles + 2 simulated raters
    assert _accounts(second.stdout) == _accounts(first.stdout)


def test_demo_accounts_can_sign_in(cli):
    result = cli("demo", "--no-serve")
    for email, password in _accounts(result.stdout).items():
        assert authenticate(email, password) is not None, email


def test_demo_sessions(cli):
    assert cli("demo", "--no-serve").exit_code == 0
    summaries = list_sessions(get_study_by_name("MBT demo study"))
    assert len(summaries) >= 6
    for s in summaries:
        assert 40 <= s.n_utterances <= 150, (s.session.label, s.n_utterances)
        assert "therapist" in s.speakers.values() and "patient" in s.speakers.values()
    assert any(s.session.language == "de" for s in summaries)
    assert any(
        s.session.modality == "group" and list(s.speakers.values()).count("patient") >= 3
        for s in summaries
    )
    assert len({s.session.label for s in summaries}) == len(summaries)


def test_demo_with_broken_transcript_fails_cleanly(cli, monkeypatch, tmp_path):
    from mbtcode.services import demo

    broken = tmp_path / "demo"
    broken.mkdir()
    (broken / "manifest.csv").write_text("file,label\nx.txt,X\n")
    (broken / "x.txt").write_text("this line has no speaker\n")
    monkeypatch.setattr(demo, "TRANSCRIPTS_DIR", Path(broken))
    before = row_counts()
    result = cli("demo", "--no-serve")
    assert result.exit_code == 1
    assert "demo transcripts do not import cleanly" in _error_line(result)
    assert row_counts() == before


def test_demo_fidelity_history(cli, make_user, client_for):
    """The demo's second study: a year of rated sessions of each demo therapist, TH-02 drifting
    below the cut-off, two program audits six months apart; the pages show them (issue 5)."""
    from datetime import date

    from mbtcode.services import fidelity, quality_audits
    from mbtcode.services.demo import FIDELITY_STUDY

    assert cli("demo", "--no-serve").exit_code == 0
    assert len(list_sessions(get_study_by_name("MBT demo study"))) == 7  # unchanged
    study = get_study_by_name(FIDELITY_STUDY)
    data = fidelity.load(study)
    per_therapist = data.therapists.groupby("therapist_code").size().to_dict()
    assert set(per_therapist) == {"TH-01", "TH-02", "TH-03", "TH-04"}
    assert all(12 <= n <= 20 for n in per_therapist.values()), per_therapist
    assert set(data.sessions["source"]) == {"single_rater", "none"}
    assert date(2025, 7, 1) <= min(data.sessions["session_date"]) <= max(data.sessions["session_date"]) \
        <= date(2026, 6, 30)
    assert data.sessions["site"].notna().all() and data.sessions["team"].notna().all()
    assert data.values["not_applicable"].any()  # some items N/A, where the MBT-ACS allows it
    summaries = {s.therapist: s for s in fidelity.therapist_summaries(data)}
    assert [t for t, s in summaries.items() if s.flagged] == ["TH-02"]
    assert "below_cutoff" in {f.kind for f in summaries["TH-02"].flags["adherence"]}
    assert len(fidelity.profile(data, None).responsiveness) > 0  # the tiny transcripts are coded
    audits = quality_audits.list_audits(study)
    assert [a.audit_date for a in audits] == [date(2025, 12, 1), date(2026, 6, 1)]
    assert all(len(a.ratings) == 20 for a in audits)

    admin = client_for(make_user("admin"))
    dashboard = admin.get(f"/studies/{study.id}/fidelity").get_data(as_text=True)
    assert "Needs attention: 1 therapist(s) flagged" in dashboard and "Adherence below cut-off" in dashboard
    assert dashboard.count("<svg ") == 2  # the level profile and the responsiveness
    assert "2025-12-01" in admin.get(f"/studies/{study.id}/quality").get_data(as_text=True)

    before = row_counts()
    assert cli("demo", "--no-serve").exit_code == 0
    assert row_counts() == before  # running it again adds nothing
