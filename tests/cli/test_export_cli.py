"""``mbtcode export --study NAME --level … --format … [--out FILE] [--include-text] [--include-notes]``."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys

import pandas as pd
import pyreadstat
import pytest
from sqlalchemy import select

from mbtcode.cli import export as export_cli
from mbtcode.extensions import db
from mbtcode.io import export_formats as ef
from mbtcode.models import AuditEvent
from mbtcode.services import exports
from tests.services.test_exports import RATER_NAMES, TEXT_TAG, build_world

STUDY = "Export study"


@pytest.fixture
def world(make_study, import_files, make_user, make_member):
    return build_world(make_study, import_files, make_user, make_member, name=STUDY)


@pytest.fixture
def cli(runner):
    def invoke(*args: str):
        result = runner.invoke(args=["export", *args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


def test_choices_are_the_services(world):
    assert export_cli.LEVELS == exports.LEVELS and export_cli.FORMATS == exports.FORMATS == ef.FORMATS


def test_out_writes_data_codebooks_and_manifest(world, cli, tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    out = tmp_path / "scores.sav"
    result = cli("--study", STUDY, "--level", "session", "--format", "sav", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (f"Exported 6 rows (session level, sav) to {out} "
                                     "(+ .codebook.md, .codebook.json, .manifest.json)")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["scores.sav", "scores.sav.codebook.json", "scores.sav.codebook.md",
                     "scores.sav.manifest.json"]
    frame, meta = pyreadstat.read_sav(str(out))
    codebook = json.loads((tmp_path / "scores.sav.codebook.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in codebook["columns"]] == list(frame.columns)
    assert meta.column_names_to_labels["adherence_mean"] == "Adherence: mean over items"
    assert frame["session"].tolist()[0] == "s1" and len(frame) == 6
    manifest = json.loads((tmp_path / "scores.sav.manifest.json").read_text(encoding="utf-8"))
    assert manifest["files"]["scores.sav"]["sha256"] == ef.sha256(out.read_bytes())
    assert manifest["rows"] == 6 and manifest["level"] == "session"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "export.file"))
    assert event.actor_id is None and event.detail["sha256"] == ef.sha256(out.read_bytes())
    assert event.detail["format"] == "sav" and event.detail["rows"] == 6

    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = cli("--study", STUDY, "--level", "session", "--format", "sav", "--out", str(out))
    assert again.exit_code == 0
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert [n for n in sorted(before) if before[n] != after[n]] in ([], ["scores.sav.manifest.json"])
    old, new = (json.loads(d["scores.sav.manifest.json"]) for d in (before, after))
    old.pop("generated_at"), new.pop("generated_at")
    assert old == new


def test_csv_to_standard_output(world, cli):
    result = cli("--study", STUDY, "--level", "rating", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    data = result.stdout_bytes
    assert data.startswith(b"\xef\xbb\xbf")
    frame = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig")
    assert len(frame) == 9 * 33 and "rationale" not in frame.columns
    assert result.stderr.strip().startswith("297 rows (rating level, csv) written to standard output")
    assert not any(name in data.decode("utf-8-sig") for name in RATER_NAMES)


def test_binary_format_is_refused_on_a_terminal(world, cli, monkeypatch):
    monkeypatch.setattr(export_cli, "stdout_is_terminal", lambda: True)
    result = cli("--study", STUDY, "--level", "session", "--format", "parquet")
    assert result.exit_code == 1 and result.stdout == ""
    assert "parquet is a binary format" in _error_line(result) and "--out FILE" in result.stderr
    assert cli("--study", STUDY, "--level", "session", "--format", "csv").exit_code == 0
    monkeypatch.setattr(export_cli, "stdout_is_terminal", lambda: False)  # piped: the bytes
    piped = cli("--study", STUDY, "--level", "session", "--format", "dta")
    assert piped.exit_code == 0 and piped.stdout_bytes.startswith(b"<stata_dta>")


def test_unknown_study_and_bad_choices(world, cli, tmp_path):
    result = cli("--study", "Nope", "--level", "session", "--format", "csv")
    assert result.exit_code == 1
    assert _error_line(result) == "Error: no study named 'Nope'; list the studies with 'mbtcode study list'"
    bad = cli("--study", STUDY, "--level", "patients", "--format", "csv")
    assert bad.exit_code == 2 and "Invalid value for '--level'" in bad.stderr
    missing = cli("--study", STUDY, "--level", "session", "--format", "csv",
                  "--out", str(tmp_path / "no" / "x.csv"))
    assert missing.exit_code == 1 and "does not exist" in _error_line(missing)


def test_include_text_for_the_operator(world, cli, tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    out = tmp_path / "utterances.parquet"
    result = cli("--study", STUDY, "--level", "utterance", "--format", "parquet", "--out", str(out),
                 "--include-text", "--include-notes")
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert f"utterance 1 ({TEXT_TAG} 1)" in set(frame["text"]) and "note" in frame.columns
    manifest = json.loads((tmp_path / "utterances.parquet.manifest.json").read_text(encoding="utf-8"))
    assert manifest["include_text"] is True and manifest["include_notes"] is True
    assert "speaker" in frame.columns  # speaker labels (names, perhaps) come with the text
    # identifying files: readable by the operator only, whatever the umask
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}  # only these four
    assert modes == dict.fromkeys(["utterances.parquet", "utterances.parquet.codebook.md",
                                   "utterances.parquet.codebook.json",
                                   "utterances.parquet.manifest.json"], 0o600)
    notes = tmp_path / "ratings.csv"
    assert cli("--study", STUDY, "--level", "rating", "--format", "csv", "--out", str(notes),
               "--include-notes").exit_code == 0
    assert stat.S_IMODE(notes.stat().st_mode) == 0o600
    # an existing, more open file is replaced by a private one
    plain = tmp_path / "plain.csv"
    assert cli("--study", STUDY, "--level", "utterance", "--format", "csv", "--out", str(plain)).exit_code == 0
    assert stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~export_cli._umask()
    assert "speaker" not in pd.read_csv(plain, encoding="utf-8-sig").columns
    assert cli("--study", STUDY, "--level", "utterance", "--format", "csv", "--out", str(plain),
               "--include-text").exit_code == 0
    assert stat.S_IMODE(plain.stat().st_mode) == 0o600


def test_an_interrupted_write_leaves_the_old_file_and_no_partial_one(world, cli, tmp_path, monkeypatch):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    out = tmp_path / "scores.csv"
    out.write_bytes(b"old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(export_cli.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        cli("--study", STUDY, "--level", "session", "--format", "csv", "--out", str(out))
    monkeypatch.undo()
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]
    # the export was audited (committed) before any file was written: the audit log may
    # name an export whose files never arrived, never a file it does not know
    db.session.rollback()
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "export.file"))
    assert event is not None and event.detail["file"] == str(out)


def test_the_audit_row_is_committed_before_the_first_file(world, cli, tmp_path, monkeypatch):
    seen = []
    write = export_cli.write_atomically

    def spy(path, data, **kwargs):
        with db.engine.connect() as other:  # another connection sees committed rows only
            seen.append(other.execute(select(AuditEvent.detail).where(
                AuditEvent.action == "export.file")).scalars().all())
        write(path, data, **kwargs)

    monkeypatch.setattr(export_cli, "write_atomically", spy)
    out = tmp_path / "scores.dta"
    assert cli("--study", STUDY, "--level", "session", "--format", "dta", "--out", str(out)).exit_code == 0
    assert len(seen) == 4 and all(len(rows) == 1 for rows in seen)
    assert seen[0][0]["sha256"] == ef.sha256(out.read_bytes())


@pytest.mark.skipif(bool(os.environ.get("MBTCODE_TEST_DATABASE_URL")),
                    reason="runs the command on its embedded default; the SQLite pass covers it")
def test_the_real_command_refuses_a_binary_format_on_a_terminal(tmp_path):
    """As a user types it, standard output a real terminal (a pty): refused before any work."""
    import pty

    env = {k: v for k, v in os.environ.items() if not k.startswith("MBTCODE_")}
    env["MBTCODE_INSTANCE_PATH"] = str(tmp_path / "instance")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "mbtcode", "export", "--study", "Any",
                               "--level", "session", "--format", "dta"],
                              env=env, cwd=tmp_path, stdout=follower, stderr=subprocess.PIPE,
                              timeout=120)
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == (
        "Error: dta is a binary format and standard output is a terminal: write it to a file "
        "with --out FILE (or redirect standard output)")
