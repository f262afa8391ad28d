"""The ``mbtcode`` command as outside scripts call it: exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MBTCODE_TEST_DATABASE_URL")),
    reason="runs the command on its embedded default; the SQLite pass covers it",
)


def run(tmp_path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBTCODE_")}
    env["MBTCODE_INSTANCE_PATH"] = str(tmp_path / "instance")
    return subprocess.run([sys.executable, "-m", "mbtcode", *args], env=env, cwd=tmp_path,
                          input=stdin, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "code", "reason"),
    [
        (["user", "add", "a@example.org", "--name", "A", "--role", "boss"], 2, "Invalid value for '--role'"),
        (["no-such-command"], 2, "No such command"),
        (["import", "--study", "X"], 2, "Missing argument"),
        (["session", "list", "--study", "Nope"], 1, "run 'mbtcode init' first"),
    ],
)
def test_failures_exit_non_zero_with_one_line_on_stderr(tmp_path, args, code, reason):
    result = run(tmp_path, *args)
    assert result.returncode == code
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and reason in lines[0]


def test_domain_error_after_init_is_one_line(tmp_path):
    assert run(tmp_path, "init").returncode == 0
    result = run(tmp_path, "user", "add", "a@example.org", "--name", "A", "--role", "rater",
                 "--password-stdin", stdin="short\n")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: password too short: use at least 12 characters (a passphrase of several words is best)"
    )


def test_json_output_is_the_only_thing_on_stdout(tmp_path):
    assert run(tmp_path, "init").returncode == 0
    result = run(tmp_path, "scheme", "list", "--json")
    assert result.returncode == 0
    import json

    refs = {entry["ref"] for entry in json.loads(result.stdout)}
    assert {"mbt-individual@1", "mbt-program-quality@1", "miti-example@1"} <= refs


def test_help_and_version_exit_zero(tmp_path):
    assert run(tmp_path, "--help").returncode == 0
    version = run(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("mbtcode ")
